package outergate

import (
	"fmt"
	"net/http"
	"testing"
)

func TestStripHeader(t *testing.T) {
	const key = "x-outer-client-id"
	for _, tc := range []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{name: "canonical spelling removed", in: http.Header{"X-Outer-Client-Id": {"a"}, "Accept": {"*/*"}},
			want: http.Header{"Accept": {"*/*"}}},
		{name: "lower case removed", in: http.Header{"x-outer-client-id": {"a"}}, want: http.Header{}},
		{name: "underscores removed", in: http.Header{"X_Outer_Client_Id": {"a"}}, want: http.Header{}},
		{name: "mixed underscores and dashes removed", in: http.Header{"x_outer-CLIENT_id": {"a"}}, want: http.Header{}},
		{name: "every spelling removed", in: http.Header{"X-Outer-Client-Id": {"a"}, "x_outer_client_id": {"b"}, "X-OUTER-CLIENT-ID": {"c"}},
			want: http.Header{}},
		{name: "similar names kept", in: http.Header{"X-Outer-Client-Idx": {"a"}, "X-Outer-Client": {"b"}, "Xx-Outer-Client-Id": {"c"}},
			want: http.Header{"X-Outer-Client-Idx": {"a"}, "X-Outer-Client": {"b"}, "Xx-Outer-Client-Id": {"c"}}},
		{name: "connection naming only it is removed", in: http.Header{"Connection": {"X-Outer-Client-Id"}}, want: http.Header{}},
		{name: "connection keeps other options", in: http.Header{"Connection": {"keep-alive, x_outer_client_id, Upgrade"}},
			want: http.Header{"Connection": {"keep-alive, Upgrade"}}},
		{name: "several connection headers are merged once changed", in: http.Header{"Connection": {"keep-alive", "X-OUTER-CLIENT-ID, te"}},
			want: http.Header{"Connection": {"keep-alive, te"}}},
		{name: "connection without it is untouched", in: http.Header{"Connection": {"keep-alive,  Upgrade"}},
			want: http.Header{"Connection": {"keep-alive,  Upgrade"}}},
		{name: "empty connection options dropped with it", in: http.Header{"Connection": {" , X-Outer-Client-Id ,"}},
			want: http.Header{}},
		{name: "nothing to do", in: http.Header{"Accept": {"*/*"}}, want: http.Header{"Accept": {"*/*"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Clone()
			stripHeader(h, key)
			if fmt.Sprint(h) != fmt.Sprint(tc.want) {
				t.Fatalf("stripHeader(%v) = %v, want %v", tc.in, h, tc.want)
			}
		})
	}
}

func TestNormalizeHeaderName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"X-Outer-Client-Id", "x-outer-client-id"},
		{"X_OUTER_CLIENT_ID", "x-outer-client-id"},
		{"x-outer_client-id", "x-outer-client-id"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := normalizeHeaderName(tc.in); got != tc.want {
				t.Fatalf("normalizeHeaderName(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if !sameHeaderName(tc.in, tc.want) {
				t.Fatalf("sameHeaderName(%q, %q) = false", tc.in, tc.want)
			}
		})
	}
	if sameHeaderName("X-Outer-Client-Ix", "x-outer-client-id") || sameHeaderName("X-Outer", "x-outer-client-id") {
		t.Fatal("sameHeaderName matched a different name")
	}
}
