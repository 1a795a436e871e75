package outergate

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestPortalSubdirective(t *testing.T) {
	for _, tt := range []struct {
		name, input    string
		portal, doc    string
		wantErrContain string
	}{
		{name: "path", input: "outergate {\n portal /outer/docs/\n}", portal: "/outer/docs/"},
		{name: "path and backend document", input: "outergate {\n portal /docs/ api.json\n}", portal: "/docs/", doc: "api.json"},
		{name: "no path", input: "outergate {\n portal\n}", wantErrContain: "wrong argument count"},
		{name: "too many arguments", input: "outergate {\n portal /docs/ a.json b.json\n}", wantErrContain: "wrong argument count"},
		{name: "twice", input: "outergate {\n portal /a/\n portal /b/\n}", wantErrContain: "more than once"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErrContain != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrContain) {
					t.Fatalf("err = %v, want one with %q", err, tt.wantErrContain)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Portal != tt.portal || h.PortalDocument != tt.doc {
				t.Errorf("portal %q document %q, want %q %q", h.Portal, h.PortalDocument, tt.portal, tt.doc)
			}
		})
	}
}
