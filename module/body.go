package outergate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// drainLimit bounds how much of an oversized body is read and thrown away
// before answering 413, so that the client sees the answer instead of a
// reset connection.
const drainLimit = 1 << 20

// bodyKind is the content type of a request body outergate can read.
type bodyKind int

const (
	bodyOther bodyKind = iota
	bodyForm
	bodyJSON
)

// contentKind classifies a Content-Type header value.
func contentKind(contentType string) bodyKind {
	if contentType == "" {
		return bodyOther
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return bodyOther
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		return bodyForm
	case "application/json":
		return bodyJSON
	}
	return bodyOther
}

// hasBody reports whether the request carries a body.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// readBody reads the whole request body, up to maxBodyBytes. Past the limit
// it discards a bounded remainder and answers 413, closing the connection.
func readBody(r *http.Request) ([]byte, *apiError) {
	if !hasBody(r) {
		return nil, nil
	}
	if r.ContentLength > maxBodyBytes {
		return nil, tooLarge(r)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, badRequest("could not read the request body")
	}
	if len(body) > maxBodyBytes {
		return nil, tooLarge(r)
	}
	return body, nil
}

func tooLarge(r *http.Request) *apiError {
	_, _ = io.CopyN(io.Discard, r.Body, drainLimit)
	return newAPIError(http.StatusRequestEntityTooLarge, CodeBadRequest,
		"request body too large (limit 64 KiB)", "Connection", "close")
}

// restoreBody puts a body that was read back on the request, byte for byte.
func restoreBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(body)), nil
	}
}

// params are request parameters by name, as a form or a JSON object gives
// them. A JSON value that is not a string is recorded with notString set.
type params map[string][]paramValue

type paramValue struct {
	value     string
	notString bool
}

// parseFormParams parses an application/x-www-form-urlencoded body strictly.
func parseFormParams(s string) (params, error) {
	vals, err := url.ParseQuery(s)
	if err != nil {
		return nil, errors.New("malformed form body")
	}
	p := make(params, len(vals))
	for k, vs := range vals {
		for _, v := range vs {
			p[k] = append(p[k], paramValue{value: v})
		}
	}
	return p, nil
}

// parseJSONParams parses a body that must be one JSON object, keeping
// repeated keys (which encoding/json would silently merge) as repeats.
func parseJSONParams(body []byte) (params, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("malformed JSON body")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("JSON body must be an object")
	}
	p := make(params)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("malformed JSON body")
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("malformed JSON body")
		}
		// null is no string either: json.Unmarshal would leave s "".
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || bytes.Equal(raw, []byte("null")) {
			p[key] = append(p[key], paramValue{notString: true})
			continue
		}
		p[key] = append(p[key], paramValue{value: s})
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("malformed JSON body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return p, nil
}

// parseBodyParams parses a form or JSON body; other kinds yield no params.
func parseBodyParams(kind bodyKind, body []byte) (params, error) {
	switch kind {
	case bodyForm:
		return parseFormParams(string(body))
	case bodyJSON:
		if len(bytes.TrimSpace(body)) == 0 {
			return params{}, nil
		}
		return parseJSONParams(body)
	}
	return params{}, nil
}

// single returns the one string value of name in any of the sources. It
// fails when the parameter is repeated, empty, not a string, or holds
// control characters; found is false when it is absent everywhere.
func single(name string, sources ...params) (value string, found bool, err error) {
	n := 0
	for _, src := range sources {
		for _, v := range src[name] {
			n++
			if v.notString {
				return "", true, fmt.Errorf("%s must be a string", name)
			}
			value = v.value
		}
	}
	switch {
	case n == 0:
		return "", false, nil
	case n > 1:
		return "", true, fmt.Errorf("duplicate parameter %s", name)
	case value == "":
		return "", true, fmt.Errorf("%s must not be empty", name)
	case hasControl(value):
		return "", true, fmt.Errorf("%s holds control characters", name)
	}
	return value, true, nil
}

// optional is single for a parameter whose empty value means the same as
// its absence (RFC 6749 §2.3.1 for client_secret, §3.3 for scope): a
// present, empty value yields "", not an error. Repeats still fail.
func optional(name string, p params) (string, error) {
	if vs := p[name]; len(vs) == 1 && !vs[0].notString && vs[0].value == "" {
		return "", nil
	}
	v, _, err := single(name, p)
	return v, err
}

// hasControl reports whether s holds an ASCII control character.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
