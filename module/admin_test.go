package outergate

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// adminCall runs one admin route handler; it returns the recorder and the
// caddy.APIError status, 0 when there is none.
func adminCall(t *testing.T, handle func(http.ResponseWriter, *http.Request) error, method, body string) (*httptest.ResponseRecorder, int) {
	t.Helper()
	r := httptest.NewRequest(method, "/outergate/x", strings.NewReader(body))
	rec := httptest.NewRecorder()
	err := handle(rec, r)
	if err == nil {
		return rec, 0
	}
	var apiErr caddy.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v is not a caddy.APIError", err)
	}
	return rec, apiErr.HTTPStatus
}

func TestAdminRevoke(t *testing.T) {
	a := new(AdminAPI)
	for _, tc := range []struct {
		name        string
		method      string
		body        func(token string) string
		wantStatus  int // APIError status, 0 for success
		wantRevoked int
	}{
		{name: "by token", method: http.MethodPost,
			body: func(tok string) string { return `{"token":"` + tok + `"}` }, wantRevoked: 1},
		{name: "by client id, every token", method: http.MethodPost,
			body: func(string) string { return `{"client_id":"` + testClientID + `"}` }, wantRevoked: 2},
		{name: "an unknown token revokes nothing", method: http.MethodPost,
			body: func(string) string { return `{"token":"nope"}` }, wantRevoked: 0},
		{name: "both fields is 400", method: http.MethodPost,
			body: func(tok string) string { return `{"token":"` + tok + `","client_id":"app"}` }, wantStatus: 400},
		{name: "an unknown field is 400", method: http.MethodPost,
			body: func(string) string { return `{"tokens":"x"}` }, wantStatus: 400},
		{name: "GET is 405", method: http.MethodGet,
			body: func(string) string { return "" }, wantStatus: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, nil)
			tok := issueToken(t, h, testClientID, testClientSecret, "")
			issueToken(t, h, testClientID, testClientSecret, "")
			rec, status := adminCall(t, a.handleRevoke, tc.method, tc.body(tok))
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d", status, tc.wantStatus)
			}
			if status != 0 {
				return
			}
			var got map[string]int
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["revoked"] != tc.wantRevoked {
				t.Errorf("revoked %d, want %d", got["revoked"], tc.wantRevoked)
			}
		})
	}
}

// clientInfo is the part of a GET /outergate/clients entry this test reads.
type clientInfo struct {
	ID         string `json:"id"`
	LiveTokens int    `json:"live_tokens"`
}

func TestAdminClients(t *testing.T) {
	h := newTestHandler(t, nil)
	issueToken(t, h, testClientID, testClientSecret, "")
	issueToken(t, h, testClientID, testClientSecret, "")
	issueToken(t, h, readerClientID, readerSecret, "")
	rec, status := adminCall(t, new(AdminAPI).handleClients, http.MethodGet, "")
	if status != 0 {
		t.Fatalf("status %d", status)
	}
	var got struct {
		Clients []clientInfo `json:"clients"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []clientInfo{{ID: testClientID, LiveTokens: 2}, {ID: readerClientID, LiveTokens: 1}}
	if len(got.Clients) != len(want) || got.Clients[0] != want[0] || got.Clients[1] != want[1] {
		t.Errorf("clients %+v, want %+v", got.Clients, want)
	}
	if strings.Contains(rec.Body.String(), "secret") {
		t.Errorf("the listing mentions a secret: %s", rec.Body)
	}
}
