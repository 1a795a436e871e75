package legacy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type envelope struct {
	Meta struct {
		Message string `json:"message"`
		Code    int    `json:"code"`
	} `json:"meta"`
	Data json.RawMessage `json:"data"`
}

func do(t *testing.T, h http.Handler, method, target, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("body is not an envelope: %v: %s", err, rec.Body)
	}
	return e
}

func TestRoutes(t *testing.T) {
	const (
		jsonCT  = "application/json;charset=UTF-8"
		htmlCT  = "text/html"
		plainCT = "text/plain; charset=utf-8"
	)
	q := func(path, id string) string { return path + "?deviceid=" + id }
	tests := []struct {
		name     string
		method   string
		target   string
		status   int
		ct       string
		contains []string // substrings of the body
		code     int      // envelope code, checked when ct is JSON and message != ""
		message  string   // envelope message
		allow    string
	}{
		{"healthz", "GET", "/healthz", 200, plainCT, []string{"ok"}, 0, "", ""},
		{"healthz head", "HEAD", "/healthz", 200, plainCT, nil, 0, "", ""},
		{"unknown path", "GET", "/nope", 404, htmlCT, []string{"<title>404 Not Found</title>"}, 0, "", ""},
		{"root", "GET", "/", 404, htmlCT, []string{"404 Not Found"}, 0, "", ""},

		{"endusers online", "GET", q("/outer/device/endusers/", DeviceOnline), 200, jsonCT, []string{`"role":1`, `"role":3`, `"enduserid"`, `"phone"`, `"email"`, `"app"`}, 0, "get users success", ""},
		{"endusers no slash", "GET", q("/outer/device/endusers", DeviceOnline), 200, jsonCT, nil, 0, "get users success", ""},
		{"endusers offline", "GET", q("/outer/device/endusers/", DeviceOffline), 200, jsonCT, []string{`"role":2`}, 0, "get users success", ""},
		{"endusers disabled", "GET", q("/outer/device/endusers/", DeviceDisabled), 200, jsonCT, nil, 0, "get users success", ""},
		{"endusers fault", "GET", q("/outer/device/endusers/", DeviceFault), 500, htmlCT, []string{"java.lang.NullPointerException", FaultHost}, 0, "", ""},
		{"endusers unknown", "GET", q("/outer/device/endusers/", DeviceUnknown), 404, htmlCT, []string{"404 Not Found", "Device Not Found"}, 0, "", ""},
		{"endusers malformed", "GET", q("/outer/device/endusers/", "E22CFA2E-9752-11E6-9BAF-00163E120D98"), 400, plainCT, []string{"invalid deviceid"}, 0, "", ""},
		{"endusers missing", "GET", "/outer/device/endusers/", 400, plainCT, []string{"deviceid required"}, 0, "", ""},
		{"endusers empty", "GET", q("/outer/device/endusers/", ""), 400, plainCT, []string{"deviceid required"}, 0, "", ""},
		{"endusers wrong method", "POST", q("/outer/device/endusers/", DeviceOnline), 405, htmlCT, []string{"Method Not Allowed"}, 0, "", "GET"},

		{"info online", "GET", q("/outer/device/info/", DeviceOnline), 200, jsonCT, []string{`"mac":"agxhl0012ab"`, `"online":true`, `"pname":"test"`, `"createtime":"2016-10-21T13:54:51.950"`, `"productid":"c33d3908-9752-11e6-9baf-00163e120d98"`}, 0, "Device info", ""},
		{"info no slash", "GET", q("/outer/device/info", DeviceOnline), 200, jsonCT, nil, 0, "Device info", ""},
		{"info offline", "GET", q("/outer/device/info/", DeviceOffline), 200, jsonCT, []string{`"online":false`}, 0, "Device info", ""},
		{"info disabled", "GET", q("/outer/device/info/", DeviceDisabled), 403, jsonCT, []string{`"data":null`}, 23031, "device disabled", ""},
		{"info fault", "GET", q("/outer/device/info/", DeviceFault), 500, htmlCT, []string{"at com.vendor.device.DeviceService.info(DeviceService.java:212)", FaultHost}, 0, "", ""},
		{"info unknown", "GET", q("/outer/device/info/", DeviceUnknown), 404, htmlCT, []string{"Device Not Found"}, 0, "", ""},
		{"info other unknown", "GET", q("/outer/device/info/", "12345678-1234-1234-1234-123456789abc"), 404, htmlCT, []string{"Device Not Found"}, 0, "", ""},
		{"info malformed", "GET", q("/outer/device/info/", "not-a-uuid"), 400, plainCT, []string{"invalid deviceid"}, 0, "", ""},
		{"info missing", "GET", "/outer/device/info/", 400, plainCT, []string{"deviceid required"}, 0, "", ""},
		{"info wrong method", "DELETE", q("/outer/device/info/", DeviceOnline), 405, htmlCT, nil, 0, "", "GET"},

		{"unbind online", "PUT", q("/outer/device/unbind/", DeviceOnline), 200, jsonCT, []string{`"deviceid":"` + DeviceOnline + `"`}, 0, "unbind success", ""},
		{"unbind disabled", "PUT", q("/outer/device/unbind", DeviceDisabled), 200, jsonCT, nil, 0, "unbind success", ""},
		{"unbind fault", "PUT", q("/outer/device/unbind/", DeviceFault), 500, htmlCT, []string{"java.lang.NullPointerException"}, 0, "", ""},
		{"unbind unknown", "PUT", q("/outer/device/unbind/", DeviceUnknown), 404, htmlCT, []string{"Device Not Found"}, 0, "", ""},
		{"unbind malformed", "PUT", q("/outer/device/unbind/", "xyz"), 400, plainCT, []string{"invalid deviceid"}, 0, "", ""},
		{"unbind missing", "PUT", "/outer/device/unbind/", 400, plainCT, []string{"deviceid required"}, 0, "", ""},
		{"unbind wrong method", "GET", q("/outer/device/unbind/", DeviceOnline), 405, htmlCT, nil, 0, "", "PUT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Options{})
			rec := do(t, b, tc.method, tc.target, "", "")
			if rec.Code != tc.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if got := rec.Header().Get("Content-Type"); got != tc.ct {
				t.Errorf("Content-Type = %q, want %q", got, tc.ct)
			}
			for _, s := range tc.contains {
				if !strings.Contains(rec.Body.String(), s) {
					t.Errorf("body lacks %q: %s", s, rec.Body)
				}
			}
			if got := rec.Header().Get("Allow"); (tc.status == 405 || got != "") && got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if tc.message != "" {
				e := decode(t, rec)
				if e.Meta.Code != tc.code || e.Meta.Message != tc.message {
					t.Errorf("meta = %+v, want {%q %d}", e.Meta, tc.message, tc.code)
				}
			}
		})
	}
}

func TestPlainTextBodiesExact(t *testing.T) {
	b := New(Options{})
	for target, want := range map[string]string{
		"/healthz":                          "ok",
		"/outer/device/info/?deviceid=bad":  "invalid deviceid",
		"/outer/device/info/?deviceid=":     "deviceid required",
		"/outer/device/endusers/?foo=bar":   "deviceid required",
		"/outer/device/endusers/?deviceid=": "deviceid required",
	} {
		if got := do(t, b, "GET", target, "", "").Body.String(); got != want {
			t.Errorf("%s: body %q, want %q", target, got, want)
		}
	}
}

func TestDataShapes(t *testing.T) {
	b := New(Options{})
	var users []EndUser
	if err := json.Unmarshal(decode(t, do(t, b, "GET", "/outer/device/endusers/?deviceid="+DeviceOnline, "", "")).Data, &users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Role != 1 || users[1].Role != 3 {
		t.Errorf("online users = %+v", users)
	}
	for _, u := range users {
		if !deviceIDRe.MatchString(u.EndUserID) || u.Phone == "" || u.Email == "" || u.App == "" {
			t.Errorf("incomplete user %+v", u)
		}
	}
	users = nil
	json.Unmarshal(decode(t, do(t, b, "GET", "/outer/device/endusers/?deviceid="+DeviceOffline, "", "")).Data, &users)
	if len(users) != 1 || users[0].Role != 2 {
		t.Errorf("offline users = %+v", users)
	}
	var info DeviceInfo
	json.Unmarshal(decode(t, do(t, b, "GET", "/outer/device/info/?deviceid="+DeviceOnline, "", "")).Data, &info)
	want := DeviceInfo{MAC: "agxhl0012ab", Online: true, PName: "test", CreateTime: "2016-10-21T13:54:51.950", ProductID: "c33d3908-9752-11e6-9baf-00163e120d98"}
	if info != want {
		t.Errorf("info = %+v, want %+v", info, want)
	}
	for _, id := range []string{DeviceOnline, DeviceOffline, DeviceDisabled, DeviceFault, DeviceSlow, DeviceUnknown} {
		if !deviceIDRe.MatchString(id) {
			t.Errorf("sample id %s is not a lowercase UUID", id)
		}
	}
}

func TestUnbindDeviceIDPlaces(t *testing.T) {
	tests := []struct {
		name, target, contentType, body string
	}{
		{"query", "/outer/device/unbind/?deviceid=" + DeviceOnline, "", ""},
		{"form", "/outer/device/unbind/", "application/x-www-form-urlencoded", "deviceid=" + DeviceOnline},
		{"form charset", "/outer/device/unbind", "application/x-www-form-urlencoded; charset=UTF-8", "foo=1&deviceid=" + DeviceOnline},
		{"json", "/outer/device/unbind/", "application/json", `{"deviceid":"` + DeviceOnline + `"}`},
		{"json no content type", "/outer/device/unbind/", "", ` {"deviceid":"` + DeviceOnline + `"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Options{})
			rec := do(t, b, "PUT", tc.target, tc.contentType, tc.body)
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			e := decode(t, rec)
			if e.Meta.Message != "unbind success" || string(e.Data) != `{"deviceid":"`+DeviceOnline+`"}` {
				t.Errorf("got %s", rec.Body)
			}
			// Second unbind: 409 non-envelope JSON.
			rec = do(t, b, "PUT", tc.target, tc.contentType, tc.body)
			if rec.Code != http.StatusConflict {
				t.Fatalf("second unbind status %d: %s", rec.Code, rec.Body)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json;charset=UTF-8" {
				t.Errorf("Content-Type %q", got)
			}
			var conflict map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &conflict); err != nil || conflict["error"] != "device has no bound users" || conflict["status"] != float64(409) || conflict["meta"] != nil {
				t.Errorf("409 body %s (%v)", rec.Body, err)
			}
		})
	}
	t.Run("bad bodies", func(t *testing.T) {
		b := New(Options{})
		for _, body := range []string{`{"deviceid":42}`, `{broken`, `deviceid=` + DeviceOnline} {
			if rec := do(t, b, "PUT", "/outer/device/unbind/", "application/json", body); rec.Code != 400 || rec.Body.String() != "deviceid required" {
				t.Errorf("body %s: %d %s", body, rec.Code, rec.Body)
			}
		}
		if rec := do(t, b, "PUT", "/outer/device/unbind/", "application/x-www-form-urlencoded", "deviceid=oops"); rec.Code != 400 || rec.Body.String() != "invalid deviceid" {
			t.Errorf("malformed form id: %d %s", rec.Code, rec.Body)
		}
	})
}

func TestUnbindStateAndReset(t *testing.T) {
	b := New(Options{})
	usersOf := func(id string) string {
		return string(decode(t, do(t, b, "GET", "/outer/device/endusers/?deviceid="+id, "", "")).Data)
	}
	if rec := do(t, b, "PUT", "/outer/device/unbind/?deviceid="+DeviceOnline, "", ""); rec.Code != 200 {
		t.Fatalf("unbind: %d", rec.Code)
	}
	if got := usersOf(DeviceOnline); got != "[]" {
		t.Errorf("users after unbind = %s, want []", got)
	}
	if got := usersOf(DeviceOffline); got == "[]" {
		t.Error("unbinding one device emptied another")
	}
	if other := New(Options{}); string(decode(t, do(t, other, "GET", "/outer/device/endusers/?deviceid="+DeviceOnline, "", "")).Data) == "[]" {
		t.Error("unbind state leaked between backends")
	}
	b.ResetDevices()
	if got := usersOf(DeviceOnline); got == "[]" {
		t.Error("ResetDevices did not restore users")
	}
	if len(b.Requests()) == 0 {
		t.Error("ResetDevices cleared the recorder")
	}
	do(t, b, "PUT", "/outer/device/unbind/?deviceid="+DeviceOnline, "", "")
	b.Reset()
	if len(b.Requests()) != 0 {
		t.Error("Reset kept requests")
	}
	if rec := do(t, b, "PUT", "/outer/device/unbind/?deviceid="+DeviceOnline, "", ""); rec.Code != 200 {
		t.Errorf("unbind after Reset: %d", rec.Code)
	}
}

func TestRecorder(t *testing.T) {
	b := New(Options{})
	req := httptest.NewRequest("PUT", "/outer/device/unbind/?x=1", strings.NewReader("deviceid="+DeviceOffline))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer abc")
	b.ServeHTTP(httptest.NewRecorder(), req)
	do(t, b, "GET", "/nowhere?a=b", "", "")

	seen := b.Requests()
	if len(seen) != 2 {
		t.Fatalf("recorded %d requests, want 2", len(seen))
	}
	s := seen[0]
	if s.Method != "PUT" || s.Path != "/outer/device/unbind/" || s.RawQuery != "x=1" || string(s.Body) != "deviceid="+DeviceOffline || s.Header.Get("Authorization") != "Bearer abc" {
		t.Errorf("recorded %+v", s)
	}
	if seen[1].Path != "/nowhere" || seen[1].RawQuery != "a=b" {
		t.Errorf("recorded %+v", seen[1])
	}
	// The header is a clone and Requests returns a copy.
	req.Header.Set("Authorization", "changed")
	seen[0].Method = "changed"
	if s := b.Requests()[0]; s.Header.Get("Authorization") != "Bearer abc" || s.Method != "PUT" {
		t.Error("recorder shares state with callers")
	}

	for i := 0; i < maxSeen+5; i++ {
		do(t, b, "GET", "/healthz", "", "")
	}
	if seen := b.Requests(); len(seen) != maxSeen || seen[0].Path != "/healthz" {
		t.Errorf("recorder holds %d, first %q", len(seen), seen[0].Path)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	b := New(Options{})
	srv := httptest.NewServer(b)
	defer srv.Close()
	done := make(chan struct{})
	for i := 0; i < 20; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			resp, err := http.Get(srv.URL + "/outer/device/info/?deviceid=" + DeviceOnline)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.Requests()
		}()
	}
	for i := 0; i < 20; i++ {
		<-done
	}
	if n := len(b.Requests()); n != 20 {
		t.Errorf("recorded %d, want 20", n)
	}
}

func TestSlowDeviceAnswersAfterDelay(t *testing.T) {
	b := New(Options{SlowDelay: 50 * time.Millisecond})
	for _, tc := range []struct{ method, target, message string }{
		{"GET", "/outer/device/info/?deviceid=" + DeviceSlow, "Device info"},
		{"GET", "/outer/device/endusers/?deviceid=" + DeviceSlow, "get users success"},
		{"PUT", "/outer/device/unbind/?deviceid=" + DeviceSlow, "unbind success"},
	} {
		start := time.Now()
		rec := do(t, b, tc.method, tc.target, "", "")
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Errorf("%s answered after %s, before the delay", tc.target, d)
		}
		if rec.Code != 200 || decode(t, rec).Meta.Message != tc.message {
			t.Errorf("%s: %d %s", tc.target, rec.Code, rec.Body)
		}
	}
	if !strings.Contains(do(t, b, "GET", "/outer/device/info/?deviceid="+DeviceSlow, "", "").Body.String(), `"online":true`) {
		t.Error("slow device is not online")
	}
}

func TestSlowDeviceCancelled(t *testing.T) {
	b := New(Options{SlowDelay: 5 * time.Second})
	handlerDone := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.ServeHTTP(w, r)
		handlerDone <- time.Now()
	}))
	defer srv.Close()

	client := &http.Client{Timeout: 200 * time.Millisecond}
	start := time.Now()
	resp, err := client.Get(srv.URL + "/outer/device/info/?deviceid=" + DeviceSlow)
	if err == nil {
		resp.Body.Close()
		t.Fatal("slow device answered before the client timeout")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("client returned after %s", d)
	}
	select {
	case end := <-handlerDone:
		if d := end.Sub(start); d > 2*time.Second {
			t.Errorf("handler returned after %s", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("handler still hanging after the client went away")
	}

	// Same with an explicit context on a direct call.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req := httptest.NewRequest("GET", "/outer/device/endusers/?deviceid="+DeviceSlow, nil).WithContext(ctx)
	start = time.Now()
	b.ServeHTTP(httptest.NewRecorder(), req)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("direct call returned after %s", d)
	}
}
