package outergate

import (
	"encoding/json"
	"net/http"
	"testing"
)

func TestIntrospect(t *testing.T) {
	h := newTestHandler(t, nil)
	own := issueToken(t, h, testClientID, testClientSecret, "read")
	other := issueToken(t, h, readerClientID, readerSecret, "")
	for _, tc := range []struct {
		name  string
		token string
		want  introspection
	}{
		{name: "the caller's live token is active", token: own,
			want: introspection{Active: true, ClientID: testClientID, Scope: "read", TokenType: "Bearer"}},
		{name: "another client's token is inactive", token: other, want: introspection{}},
		{name: "an unknown token is inactive", token: "no-such-token", want: introspection{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := postForm(t, h, http.MethodPost, "/outer/token/introspect/",
				creds(testClientID, testClientSecret, "token", tc.token))
			env := checkEnvelope(t, rec, http.StatusOK, CodeOK)
			if env.Meta.Message != "token introspection" {
				t.Errorf("message = %q", env.Meta.Message)
			}
			var got introspection
			if err := json.Unmarshal(env.Data, &got); err != nil {
				t.Fatal(err)
			}
			if got.Active && (got.Exp <= got.Iat || got.Iat == 0) {
				t.Errorf("exp %d, iat %d", got.Exp, got.Iat)
			}
			got.Exp, got.Iat = 0, 0
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if !tc.want.Active && string(env.Data) != `{"active":false}` {
				t.Errorf("inactive answer carries more than active: %s", env.Data)
			}
		})
	}
}
