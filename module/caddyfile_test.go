package outergate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	const (
		hashA = "sha256:0f3e2f8b7e1c5a3f9e4b6d2a8c0e1f3a5b7d9c1e3f5a7b9d1c3e5f7a9b1d3c5e"
		hashB = "$2a$04$3bM5cQnTpA6vQb6H0Yp3Ae5rJx8GfQfO3nQ0u2nX6cV0m9zO9y1eK"
	)
	for _, tc := range []struct {
		name      string
		input     string
		want      Handler // exported config, StoreRaw left out
		wantStore string  // StoreRaw as JSON; "" means none
		wantErr   string  // part of the error; "" means success
	}{
		// successes
		{name: "bare directive keeps every default", input: `outergate`},
		{name: "empty block keeps every default", input: "outergate {\n}"},
		{name: "token_path", input: "outergate {\n token_path /auth/token/\n}", want: Handler{TokenPath: "/auth/token/"}},
		{name: "protect one pattern", input: "outergate {\n protect /api/*\n}", want: Handler{Protect: []string{"/api/*"}}},
		{name: "protect several patterns", input: "outergate {\n protect /api/* /admin\n}",
			want: Handler{Protect: []string{"/api/*", "/admin"}}},
		{name: "protect is repeatable", input: "outergate {\n protect /api/*\n protect /admin /x/*\n}",
			want: Handler{Protect: []string{"/api/*", "/admin", "/x/*"}}},
		{name: "token_ttl in seconds", input: "outergate {\n token_ttl 36000s\n}",
			want: Handler{TokenTTL: caddy.Duration(36000 * time.Second)}},
		{name: "token_ttl in hours", input: "outergate {\n token_ttl 2h\n}", want: Handler{TokenTTL: caddy.Duration(2 * time.Hour)}},
		{name: "token_ttl in days", input: "outergate {\n token_ttl 1d\n}", want: Handler{TokenTTL: caddy.Duration(24 * time.Hour)}},
		{name: "scope quoted", input: "outergate {\n scope \"read write groups\"\n}", want: Handler{Scope: "read write groups"}},
		{name: "scope as several arguments", input: "outergate {\n scope read write\n}", want: Handler{Scope: "read write"}},
		{name: "client", input: "outergate {\n client app " + hashA + "\n}",
			want: Handler{Clients: []Client{{ID: "app", SecretHashes: []string{hashA}}}}},
		{name: "client with two hashes for rotation", input: "outergate {\n client app " + hashA + " " + hashB + "\n}",
			want: Handler{Clients: []Client{{ID: "app", SecretHashes: []string{hashA, hashB}}}}},
		{name: "client with a scope block", input: "outergate {\n client app " + hashA + " {\n  scope read\n }\n}",
			want: Handler{Clients: []Client{{ID: "app", SecretHashes: []string{hashA}, Scope: "read"}}}},
		{name: "client scope with several scopes", input: "outergate {\n client app " + hashA + " {\n  scope read groups\n }\n}",
			want: Handler{Clients: []Client{{ID: "app", SecretHashes: []string{hashA}, Scope: "read groups"}}}},
		{name: "client is repeatable", input: "outergate {\n client a " + hashA + "\n client b " + hashB + " {\n  scope write\n }\n}",
			want: Handler{Clients: []Client{{ID: "a", SecretHashes: []string{hashA}}, {ID: "b", SecretHashes: []string{hashB}, Scope: "write"}}}},
		{name: "client hash from a placeholder", input: "outergate {\n client app {env.APP_HASH}\n}",
			want: Handler{Clients: []Client{{ID: "app", SecretHashes: []string{"{env.APP_HASH}"}}}}},
		{name: "client auth_method and introspect", input: "outergate {\n client rs " + hashA + " {\n  auth_method basic\n  introspect any\n }\n}",
			want: Handler{Clients: []Client{{ID: "rs", SecretHashes: []string{hashA}, AuthMethod: "basic", Introspect: "any"}}}},
		{name: "client auth_method post, introspect own", input: "outergate {\n client app " + hashA + " {\n  auth_method post\n  introspect own\n }\n}",
			want: Handler{Clients: []Client{{ID: "app", SecretHashes: []string{hashA}, AuthMethod: "post", Introspect: "own"}}}},
		{name: "handler auth_method as the clients' default", input: "outergate {\n auth_method basic\n}", want: Handler{AuthMethod: "basic"}},
		{name: "require_scope", input: "outergate {\n require_scope /outer/device/groups/* groups\n}",
			want: Handler{ScopeRules: []ScopeRule{{Paths: []string{"/outer/device/groups/*"}, Scope: "groups"}}}},
		{name: "require_scope with several paths", input: "outergate {\n require_scope /a /b/* admin\n}",
			want: Handler{ScopeRules: []ScopeRule{{Paths: []string{"/a", "/b/*"}, Scope: "admin"}}}},
		{name: "require_scope is repeatable", input: "outergate {\n require_scope /a x\n require_scope /b y\n}",
			want: Handler{ScopeRules: []ScopeRule{{Paths: []string{"/a"}, Scope: "x"}, {Paths: []string{"/b"}, Scope: "y"}}}},
		{name: "allow_websocket is repeatable", input: "outergate {\n allow_websocket /a/* /b\n allow_websocket /c\n}",
			want: Handler{AllowWebSocket: []string{"/a/*", "/b", "/c"}}},
		{name: "opaque_body", input: "outergate {\n opaque_body text/plain *\n}",
			want: Handler{OpaqueBody: []string{"text/plain", "*"}}},
		{name: "allow_websocket without argument", input: "outergate {\n allow_websocket\n}", wantErr: "wrong argument count"},
		{name: "opaque_body without argument", input: "outergate {\n opaque_body\n}", wantErr: "wrong argument count"},
		{name: "require_param one", input: "outergate {\n require_param deviceid\n}", want: Handler{RequireParams: []string{"deviceid"}}},
		{name: "require_param several", input: "outergate {\n require_param deviceid ts\n}",
			want: Handler{RequireParams: []string{"deviceid", "ts"}}},
		{name: "require_param is repeatable", input: "outergate {\n require_param deviceid\n require_param ts\n}",
			want: Handler{RequireParams: []string{"deviceid", "ts"}}},
		{name: "require_param off", input: "outergate {\n require_param off\n}", want: Handler{RequireParamsOff: true}},
		{name: "identity_header", input: "outergate {\n identity_header X-Device-Owner\n}", want: Handler{IdentityHeader: "X-Device-Owner"}},
		{name: "throttle count and window", input: "outergate {\n throttle 5 30s\n}",
			want: Handler{ThrottleFailures: 5, ThrottleWindow: caddy.Duration(30 * time.Second)}},
		{name: "throttle default values written out", input: "outergate {\n throttle 10 1m\n}",
			want: Handler{ThrottleFailures: 10, ThrottleWindow: caddy.Duration(time.Minute)}},
		{name: "throttle off", input: "outergate {\n throttle off\n}", want: Handler{ThrottleOff: true}},
		{name: "error_code", input: "outergate {\n error_code 409 23010\n}", want: Handler{ErrorCodes: map[int]int{409: 23010}}},
		{name: "error_code is repeatable", input: "outergate {\n error_code 409 23030\n error_code 422 23010\n}",
			want: Handler{ErrorCodes: map[int]int{409: 23030, 422: 23010}}},
		{name: "store memory", input: "outergate {\n store memory\n}", wantStore: `{"module":"memory"}`},
		{name: "store memory with a name", input: "outergate {\n store memory {\n  name x\n }\n}",
			wantStore: `{"module":"memory","name":"x"}`},
		{name: "store redis with a url", input: "outergate {\n store redis redis://host:6379/0\n}",
			wantStore: `{"module":"redis","url":"redis://host:6379/0"}`},
		{name: "store redis with a block", input: "outergate {\n store redis {\n  address a:6379 b:6379\n  key_prefix og:\n }\n}",
			wantStore: `{"module":"redis","addresses":["a:6379","b:6379"],"key_prefix":"og:"}`},
		{name: "max_tokens_per_client", input: "outergate {\n max_tokens_per_client 7\n}",
			want: Handler{MaxTokensPerClient: 7}},
		{name: "throttle_client", input: "outergate {\n throttle_client 30 5m\n}",
			want: Handler{ThrottleClientFailures: 30, ThrottleClientWindow: caddy.Duration(5 * time.Minute)}},
		{name: "throttle_client off", input: "outergate {\n throttle_client off\n}", want: Handler{ThrottleClientOff: true}},
		{name: "max_tokens_per_client must be a positive number", input: "outergate {\n max_tokens_per_client 0\n}",
			wantErr: "max_tokens_per_client"},
		{name: "every subdirective together", input: `outergate {
			token_path /outer/token/
			protect /outer/device/*
			token_ttl 36000s
			scope "read write groups"
			client app ` + hashA + ` {
				scope read
			}
			require_param deviceid
			identity_header X-Outer-Client-Id
			throttle 10 1m
			error_code 409 23010
			store memory
		}`,
			want: Handler{TokenPath: "/outer/token/", Protect: []string{"/outer/device/*"}, TokenTTL: caddy.Duration(36000 * time.Second),
				Scope: "read write groups", Clients: []Client{{ID: "app", SecretHashes: []string{hashA}, Scope: "read"}},
				RequireParams: []string{"deviceid"}, IdentityHeader: "X-Outer-Client-Id", ThrottleFailures: 10,
				ThrottleWindow: caddy.Duration(time.Minute), ErrorCodes: map[int]int{409: 23010}},
			wantStore: `{"module":"memory"}`},

		// errors
		{name: "argument after the directive", input: "outergate /x {\n}", wantErr: "wrong argument count"},
		{name: "unknown subdirective", input: "outergate {\n bogus 1\n}", wantErr: `unrecognized subdirective "bogus"`},
		{name: "token_path without argument", input: "outergate {\n token_path\n}", wantErr: "wrong argument count"},
		{name: "token_path with two arguments", input: "outergate {\n token_path /a /b\n}", wantErr: "wrong argument count"},
		{name: "token_path twice", input: "outergate {\n token_path /a\n token_path /b\n}", wantErr: "more than once"},
		{name: "protect without argument", input: "outergate {\n protect\n}", wantErr: "wrong argument count"},
		{name: "token_ttl without argument", input: "outergate {\n token_ttl\n}", wantErr: "wrong argument count"},
		{name: "token_ttl with two arguments", input: "outergate {\n token_ttl 1h 2h\n}", wantErr: "wrong argument count"},
		{name: "token_ttl not a duration", input: "outergate {\n token_ttl soon\n}", wantErr: "token_ttl"},
		{name: "token_ttl twice", input: "outergate {\n token_ttl 1h\n token_ttl 2h\n}", wantErr: "more than once"},
		{name: "scope without argument", input: "outergate {\n scope\n}", wantErr: "wrong argument count"},
		{name: "scope twice", input: "outergate {\n scope read\n scope write\n}", wantErr: "more than once"},
		{name: "client without arguments", input: "outergate {\n client\n}", wantErr: "wrong argument count"},
		{name: "client without hash", input: "outergate {\n client app\n}", wantErr: "wrong argument count"},
		{name: "client block unknown subdirective", input: "outergate {\n client app " + hashA + " {\n  secret x\n }\n}",
			wantErr: `unrecognized client subdirective "secret"`},
		{name: "client scope twice", input: "outergate {\n client app " + hashA + " {\n  scope read\n  scope write\n }\n}",
			wantErr: "more than once"},
		{name: "client scope without argument", input: "outergate {\n client app " + hashA + " {\n  scope\n }\n}",
			wantErr: "wrong argument count"},
		{name: "client auth_method unknown", input: "outergate {\n client app " + hashA + " {\n  auth_method jwt\n }\n}",
			wantErr: "auth_method must be"},
		{name: "client auth_method without argument", input: "outergate {\n client app " + hashA + " {\n  auth_method\n }\n}",
			wantErr: "wrong argument count"},
		{name: "client auth_method twice", input: "outergate {\n client app " + hashA + " {\n  auth_method basic\n  auth_method post\n }\n}",
			wantErr: "more than once"},
		{name: "client introspect unknown", input: "outergate {\n client app " + hashA + " {\n  introspect all\n }\n}",
			wantErr: "introspect must be"},
		{name: "client introspect with two arguments", input: "outergate {\n client app " + hashA + " {\n  introspect any own\n }\n}",
			wantErr: "wrong argument count"},
		{name: "client introspect twice", input: "outergate {\n client app " + hashA + " {\n  introspect any\n  introspect any\n }\n}",
			wantErr: "more than once"},
		{name: "handler auth_method unknown", input: "outergate {\n auth_method client_secret_jwt\n}", wantErr: "auth_method must be"},
		{name: "handler auth_method twice", input: "outergate {\n auth_method basic\n auth_method post\n}", wantErr: "more than once"},
		{name: "require_scope without arguments", input: "outergate {\n require_scope\n}", wantErr: "wrong argument count"},
		{name: "require_scope without a path", input: "outergate {\n require_scope groups\n}", wantErr: "wrong argument count"},
		{name: "require_param without argument", input: "outergate {\n require_param\n}", wantErr: "wrong argument count"},
		{name: "require_param off then names", input: "outergate {\n require_param off\n require_param deviceid\n}",
			wantErr: "require_param off"},
		{name: "require_param names then off", input: "outergate {\n require_param deviceid\n require_param off\n}",
			wantErr: "require_param off"},
		{name: "require_param off with names on one line", input: "outergate {\n require_param off deviceid\n}",
			wantErr: "require_param off"},
		{name: "identity_header without argument", input: "outergate {\n identity_header\n}", wantErr: "wrong argument count"},
		{name: "identity_header with two arguments", input: "outergate {\n identity_header A B\n}", wantErr: "wrong argument count"},
		{name: "identity_header twice", input: "outergate {\n identity_header A\n identity_header B\n}", wantErr: "more than once"},
		{name: "throttle without argument", input: "outergate {\n throttle\n}", wantErr: "wrong argument count"},
		{name: "throttle with one number", input: "outergate {\n throttle 10\n}", wantErr: "wrong argument count"},
		{name: "throttle with three arguments", input: "outergate {\n throttle 10 1m 2\n}", wantErr: "wrong argument count"},
		{name: "throttle count not a number", input: "outergate {\n throttle ten 1m\n}", wantErr: "throttle"},
		{name: "throttle count zero", input: "outergate {\n throttle 0 1m\n}", wantErr: "throttle"},
		{name: "throttle count negative", input: "outergate {\n throttle -1 1m\n}", wantErr: "throttle"},
		{name: "throttle window not a duration", input: "outergate {\n throttle 10 soon\n}", wantErr: "throttle"},
		{name: "throttle window zero", input: "outergate {\n throttle 10 0s\n}", wantErr: "throttle"},
		{name: "throttle window negative", input: "outergate {\n throttle 10 -1m\n}", wantErr: "throttle"},
		{name: "throttle twice", input: "outergate {\n throttle 10 1m\n throttle 5 1m\n}", wantErr: "more than once"},
		{name: "error_code with one argument", input: "outergate {\n error_code 409\n}", wantErr: "wrong argument count"},
		{name: "error_code with three arguments", input: "outergate {\n error_code 409 23010 x\n}", wantErr: "wrong argument count"},
		{name: "error_code status not a number", input: "outergate {\n error_code conflict 23010\n}", wantErr: "error_code"},
		{name: "error_code code not a number", input: "outergate {\n error_code 409 bad\n}", wantErr: "error_code"},
		{name: "store without module", input: "outergate {\n store\n}", wantErr: "wrong argument count"},
		{name: "store unknown module", input: "outergate {\n store etcd\n}", wantErr: "outergate.stores.etcd"},
		{name: "store memory with an argument", input: "outergate {\n store memory x\n}", wantErr: "wrong argument count"},
		{name: "store memory unknown subdirective", input: "outergate {\n store memory {\n  size 10\n }\n}",
			wantErr: `unrecognized subdirective "size"`},
		{name: "store memory name without argument", input: "outergate {\n store memory {\n  name\n }\n}", wantErr: "wrong argument count"},
		{name: "store memory name with two arguments", input: "outergate {\n store memory {\n  name a b\n }\n}", wantErr: "wrong argument count"},
		{name: "store memory name twice", input: "outergate {\n store memory {\n  name a\n  name b\n }\n}", wantErr: "already specified"},
		{name: "store twice", input: "outergate {\n store memory\n store memory\n}", wantErr: "more than once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Handler
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, want one containing %q; got %+v", tc.wantErr, got)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			if tc.wantStore == "" {
				if got.StoreRaw != nil {
					t.Errorf("StoreRaw = %s, want none", got.StoreRaw)
				}
			} else if !jsonEqual(t, got.StoreRaw, []byte(tc.wantStore)) {
				t.Errorf("StoreRaw = %s, want %s", got.StoreRaw, tc.wantStore)
			}
			got.StoreRaw = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	return bytes.Equal(normalizeJSON(t, a), normalizeJSON(t, b))
}

// normalizeJSON re-encodes JSON with sorted keys and indentation.
func normalizeJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("bad JSON %q: %v", b, err)
	}
	out, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCaddyfileAdapt adapts each testdata/*.caddyfiletest (a Caddyfile, a
// line "----------", the expected JSON) and compares the JSON by value.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.caddyfiletest files")
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("caddyfile adapter not registered")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfileText, wantJSON, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatalf("%s: no ---------- separator line", file)
			}
			got, warnings, err := adapter.Adapt([]byte(caddyfileText+"\n"), nil)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("warning: %s:%d: %s: %s", file, w.Line, w.Directive, w.Message)
			}
			if g, w := normalizeJSON(t, got), normalizeJSON(t, []byte(wantJSON)); !bytes.Equal(g, w) {
				t.Errorf("adapted JSON differs\n--- got\n%s\n--- want\n%s", g, w)
			}
		})
	}
}

// TestDirectiveSortsBeforeReverseProxy checks, without a golden file, that
// the adapter puts outergate ahead of reverse_proxy in the same route even
// when the Caddyfile lists it after and has no global order option.
func TestDirectiveSortsBeforeReverseProxy(t *testing.T) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`:8080 {
	reverse_proxy 127.0.0.1:9000
	outergate {
		client app `+sha256Hash("s")+`
	}
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Handler string `json:"handler"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			for _, h := range r.Handle {
				order = append(order, h.Handler)
			}
		}
	}
	if strings.Join(order, ",") != "outergate,reverse_proxy" {
		t.Fatalf("handler order = %q, want outergate before reverse_proxy", order)
	}
}
