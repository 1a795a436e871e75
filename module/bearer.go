package outergate

import (
	"net/http"
	"strings"
)

// Bearer challenges (RFC 6750 §3).
const (
	bearerChallenge       = `Bearer realm="outer"`
	invalidTokenChallenge = `Bearer realm="outer", error="invalid_token"`
	// maxTokenLen bounds the tokens worth looking up; outergate's are 43.
	maxTokenLen = 1024
)

// invalidToken is the 401 + 23021 answer when a token was sent.
func invalidToken(message string) *apiError {
	return newAPIError(http.StatusUnauthorized, CodeInvalidToken, message,
		"WWW-Authenticate", invalidTokenChallenge)
}

// insufficientScope is the 403 + 23022 answer to a token without the
// scope a protected request needs.
func insufficientScope(want string) *apiError {
	return newAPIError(http.StatusForbidden, CodeInsufficientScope, "insufficient scope: "+want+" required",
		"WWW-Authenticate", `Bearer realm="outer", error="insufficient_scope", scope="`+want+`"`)
}

// bearerToken extracts the access token from the request (RFC 6750 §2.1):
// exactly one Authorization header, scheme Bearer in any case, one token of
// b64token characters and nothing after it. A token in the query string is
// refused, even beside a good header.
func bearerToken(r *http.Request) (string, *apiError) {
	if r.URL.RawQuery != "" && strings.ContainsAny(r.URL.RawQuery, "_%") && r.URL.Query().Has("access_token") {
		return "", invalidToken("access token must be sent in the Authorization header, not the query string")
	}
	value, n := authorizationHeader(r.Header)
	switch n {
	case 0:
		return "", newAPIError(http.StatusUnauthorized, CodeInvalidToken,
			"access token required", "WWW-Authenticate", bearerChallenge)
	case 1:
	default:
		return "", invalidToken("more than one Authorization header")
	}
	return parseBearer(value)
}

// parseBearer parses one Authorization header value.
func parseBearer(v string) (string, *apiError) {
	scheme, rest, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", newAPIError(http.StatusUnauthorized, CodeInvalidToken,
			"access token required: use the Bearer scheme", "WWW-Authenticate", bearerChallenge)
	}
	token := strings.TrimLeft(rest, " ")
	if token == "" || len(token) > maxTokenLen || !isB64Token(token) {
		return "", invalidToken("malformed access token")
	}
	return token, nil
}

// isB64Token reports whether s is an RFC 6750 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' {
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
