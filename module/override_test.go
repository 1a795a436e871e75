package outergate

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestIsOverrideName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"X-Http-Method-Override", true},
		{"x-http-method-override", true},
		{"X_HTTP_METHOD_OVERRIDE", true}, // CGI and PHP read it as the header
		{"X-Http-Method", true},
		{"X-Method-Override", true},
		{"_method", true},
		{"_METHOD", true}, // Slim
		{"_Method", true},
		{".method", true},                // PHP makes it _method
		{" _method", true},               // PHP drops leading spaces
		{"_method[]", true},              // PHP and Rack array notation
		{"_method[x]", true},             // idem
		{"x-http-method-overrıde", true}, // dotless i, as encoding/json folds it
		{"method", false},
		{"_methods", false},
		{"deviceid", false},
		{"X-Http-Method-Overrides", false},
		{"[_method", false},
		{"", false},
	} {
		if got := isOverrideName(tc.name); got != tc.want {
			t.Errorf("isOverrideName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestOverrideInForm(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  bool
	}{
		{"deviceid=d1", false},
		{"deviceid=d1&method=PUT", false},
		{"deviceid=d1&note=%5Fmethod", false}, // a value, not a name
		{"_method=PUT", true},
		{"deviceid=d1&_method=DELETE", true},
		{"%5Fmethod=PUT", true},
		{"%5fMETHOD=PUT", true},
		{"_%6Dethod=PUT", true},
		{"deviceid=d1;_method=PUT", true}, // Rack 2 splits on ';'
		{"X-HTTP-Method-Override=PUT", true},
		{"x_http_method=PUT", true},
		{"_method", true}, // no value: still the name
		{"_method[]=PUT", true},
		{"%zz=1&_method=PUT", true},
		{"", false},
	} {
		if _, got := overrideInForm(tc.query); got != tc.want {
			t.Errorf("overrideInForm(%q) = %v, want %v", tc.query, got, tc.want)
		}
	}
}

func TestOverrideInJSON(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"deviceid":"d1"}`, false},
		{`{"deviceid":"_method"}`, false},
		{`{"nested":{"_method":"PUT"}}`, false}, // backends look at the top level
		{`{"_method":"PUT"}`, true},
		{`{"deviceid":"d1","_METHOD":"DELETE"}`, true},
		{`{"\u005fmethod":"PUT"}`, true},
		{`{"_\u006Dethod":"PUT"}`, true},
		{`{"X-HTTP-Method-Override":"PUT"}`, true},
		{`{"a":[1,{"b":2}],"_method":"PUT"}`, true},
		{`[{"_method":"PUT"}]`, false}, // no object: refused by checkParams
		{`not json`, false},
	} {
		if _, got := overrideInJSON([]byte(tc.body)); got != tc.want {
			t.Errorf("overrideInJSON(%s) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

func TestOverrideInMultipart(t *testing.T) {
	body := func(name string) []byte {
		return []byte("--zz\r\nContent-Disposition: form-data; name=\"deviceid\"\r\n\r\nd1\r\n" +
			"--zz\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\nPUT\r\n--zz--\r\n")
	}
	if _, ok := overrideInMultipart(body("_method"), "zz"); !ok {
		t.Error("_method field not found")
	}
	if _, ok := overrideInMultipart(body("_METHOD"), "zz"); !ok {
		t.Error("_METHOD field not found")
	}
	if _, ok := overrideInMultipart(body("note"), "zz"); ok {
		t.Error("note taken for an override")
	}
	// A quoted name's quoted-pairs (RFC 9110 §5.6.4), which Go keeps
	// before a letter and other parsers unescape, spell it without
	// "method" in the bytes.
	for _, name := range []string{`_m\ethod`, `_\m\e\th\o\d`, `\_method`} {
		if _, ok := overrideInMultipart(body(name), "zz"); !ok {
			t.Errorf("%s field not found", name)
		}
	}
}

// TestMethodOverrideParams: an override in a parameter is refused on a
// protected path whatever the token's scope, and next never runs.
func TestMethodOverrideParams(t *testing.T) {
	for _, tc := range []struct {
		name, method, target, contentType, body string
		opaque                                  []string
		wantNext                                bool
		status                                  int
	}{
		{name: "plain GET", method: "GET", target: "/outer/device/info/?deviceid=d1", wantNext: true},
		{name: "query _method", method: "GET", target: "/outer/device/info/?deviceid=d1&_method=PUT", status: 400},
		{name: "query %5Fmethod", method: "POST", target: "/outer/device/info/?%5Fmethod=DELETE", contentType: formType, body: "deviceid=d1", status: 400},
		{name: "form _method", method: "POST", target: "/outer/device/unbind/", contentType: formType, body: "deviceid=d1&_method=DELETE", status: 400},
		{name: "form X-HTTP-Method-Override", method: "POST", target: "/outer/device/unbind/", contentType: formType, body: "X-HTTP-Method-Override=DELETE&deviceid=d1", status: 400},
		{name: "JSON _METHOD", method: "POST", target: "/outer/device/unbind/", contentType: "application/json", body: `{"deviceid":"d1","_METHOD":"DELETE"}`, status: 400},
		{name: "opaque +json", method: "POST", target: "/outer/device/unbind/?deviceid=d1", contentType: "application/vnd.api+json", body: `{"_method":"DELETE"}`, opaque: []string{"application/vnd.api+json"}, status: 400},
		{name: "opaque multipart", method: "POST", target: "/outer/device/unbind/?deviceid=d1", contentType: "multipart/form-data; boundary=zz",
			body: "--zz\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--zz--\r\n", opaque: []string{"multipart/form-data"}, status: 400},
		{name: "opaque text whose Content-Type says json", method: "POST", target: "/outer/device/unbind/?deviceid=d1", contentType: `text/plain; x="/json"`,
			body: `{"_method":"DELETE"}`, opaque: []string{"text/plain"}, status: 400},
		{name: "opaque any, form type mime cannot parse, JSON body", method: "POST", target: "/outer/device/unbind/?deviceid=d1", contentType: formType + "; x=/json",
			body: `{"_method":"DELETE"}`, opaque: []string{"*"}, status: 400},
		{name: "opaque any, form type mime cannot parse, form body", method: "POST", target: "/outer/device/unbind/?deviceid=d1", contentType: formType + "; x=/json",
			body: `_method=DELETE`, opaque: []string{"*"}, status: 400},
		{name: "opaque text", method: "POST", target: "/outer/device/unbind/?deviceid=d1", contentType: "text/plain", body: "_method=DELETE", opaque: []string{"text/plain"}, wantNext: true},
		{name: "header in CGI spelling", method: "POST", target: "/outer/device/unbind/", contentType: formType, body: "deviceid=d1", status: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, func(h *Handler) {
				h.RequireParams = []string{"deviceid"}
				h.OpaqueBody = tc.opaque
			})
			r, _ := newRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			if tc.name == "header in CGI spelling" {
				r.Header["X_http_method_override"] = []string{"DELETE"}
			}
			r.Header.Set("Authorization", "Bearer "+issueToken(t, h, testClientID, testClientSecret, ""))
			next := &nextRecorder{}
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r, next.handler()); err != nil {
				t.Fatal(err)
			}
			if next.called != tc.wantNext {
				t.Fatalf("next called = %v, want %v (answer %d %s)", next.called, tc.wantNext, rec.Code, rec.Body)
			}
			if !tc.wantNext {
				checkErrorEnvelope(t, rec, tc.status, CodeBadRequest)
				return
			}
			if string(next.body) != tc.body {
				t.Errorf("next read body %q, want %q", next.body, tc.body)
			}
		})
	}
}

func TestForeignCharset(t *testing.T) {
	for _, tc := range []struct {
		contentType, body string
		want              int // 0: accepted
	}{
		{"application/json", `{"a":"b"}`, 0},
		{"application/json; charset=utf-8", `{"a":"b"}`, 0},
		{"application/json; charset=UTF-8", `{"a":"b"}`, 0},
		{`application/json; charset="utf-8"`, `{"a":"b"}`, 0},
		{"application/json; charset=us-ascii", `{"a":"b"}`, 0},
		{formType + "; charset=utf-8", "a=b", 0},
		{"text/plain; charset=utf-16", "x", 0}, // not read as text by outergate
		{"application/json; charset=utf-16", `{"a":"b"}`, 415},
		{"application/json; charset=UTF-16LE", `{"a":"b"}`, 415},
		{`application/json; charset="UTF-32"`, `{"a":"b"}`, 415},
		{"application/json; Charset=iso-8859-1", `{"a":"b"}`, 415},
		{"application/merge-patch+json; charset=utf-16be", `{"a":"b"}`, 415},
		{formType + "; charset=ISO-8859-1", "a=b", 415},
		{formType + "; charset=windows-1252", "a=b", 415},
		{"application/json", "\xef\xbb\xbf{\"a\":\"b\"}", 415},
		{"application/json", "\xff\xfe{\x00}\x00", 415},
		{"application/json", "\xfe\xff\x00{\x00}", 415},
		{"application/json", "{\x00\"\x00", 415},   // UTF-16LE without a BOM
		{"application/json", "\x00\x00\x00{", 415}, // UTF-32BE
		{formType, "\xef\xbb\xbfa=b", 0},           // a form has no BOM rule
		{formType + `; x="/json"`, "a=b", 415},     // Laravel would read it as JSON
		{"application/json; boundary=zz", "{}", 415},
		{"text/plain; x=/json", "{}", 0}, // not read as form or JSON by outergate (opaque_body's call)
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", tc.contentType)
		_, aerr := readBody(r)
		got := 0
		if aerr != nil {
			got = aerr.status
		}
		if got != tc.want {
			t.Errorf("%s %q: status %d, want %d", tc.contentType, tc.body, got, tc.want)
		}
	}
}

// BenchmarkOverrideParam measures the override check on a protected
// request as it runs after checkParams: a query and a restored JSON or
// form body without an override.
func BenchmarkOverrideParam(b *testing.B) {
	for _, bc := range []struct{ name, contentType, body string }{
		{"query only", "", ""},
		{"JSON body", jsonType, `{"deviceid":"e22cfa2e-9752-11e6-9baf-00163e120d98","name":"kitchen","n":[1,2,3]}`},
		{"form body", formType, "deviceid=e22cfa2e-9752-11e6-9baf-00163e120d98&name=kitchen%20lamp"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("PUT", "/outer/device/unbind/?deviceid=e22cfa2e-9752-11e6-9baf-00163e120d98&x=1", nil)
			if bc.body != "" {
				r.Header.Set("Content-Type", bc.contentType)
				restoreBody(r, []byte(bc.body))
			}
			b.ReportAllocs()
			for b.Loop() {
				if aerr := overrideParam(r); aerr != nil {
					b.Fatal(aerr)
				}
			}
		})
	}
}
