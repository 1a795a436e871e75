// Package legacy is a reference stand-in for the old IoT device platform that
// outergate fronts. It is used by the demo and by end-to-end tests and is not
// part of the plugin.
//
// Like a real old backend, it answers success inside the JSON envelope
// {"meta":{"message":..,"code":0},"data":..} but reports errors in a mix of
// styles: enveloped business errors, non-envelope JSON, HTML pages and plain
// text. A handful of sample devices (the Device* constants) trigger each style.
package legacy

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sample device ids. Each one drives a particular behaviour of the backend.
const (
	// DeviceOnline is an online device with two bound users (roles 1 and 3).
	DeviceOnline = "e22cfa2e-9752-11e6-9baf-00163e120d98"
	// DeviceOffline is an offline device with one bound user (role 2).
	DeviceOffline = "7d1f0c52-3b1a-11e7-a919-92ebcb67fe33"
	// DeviceDisabled answers info with HTTP 403 and the enveloped business
	// error 23031 "device disabled"; endusers and unbind behave normally.
	DeviceDisabled = "0b6a2c9e-1f4d-11e8-b467-0ed5f89f718b"
	// DeviceFault answers every route with an HTTP 500 HTML page that leaks a
	// fake Java stack trace and an internal host name.
	DeviceFault = "f00dfa17-dead-beef-0000-000000000500"
	// DeviceSlow hangs for Options.SlowDelay (or until the request context is
	// cancelled) on every route, then answers like an online device.
	DeviceSlow = "5104f00d-0000-4000-8000-000000000504"
	// DeviceUnknown is a well-formed id that is not in the data; like any
	// other unknown id it gets an HTTP 404 HTML page.
	DeviceUnknown = "00000000-0000-4000-8000-000000000404"
)

// FaultHost is the fake internal host name leaked by DeviceFault's 500 page.
const FaultHost = "db-internal-3.vendor.local"

// DefaultSlowDelay is how long DeviceSlow hangs when Options.SlowDelay is zero.
const DefaultSlowDelay = 30 * time.Second

// maxSeen is how many requests the recorder keeps.
const maxSeen = 1000

// maxBody bounds how much of a request body is read.
const maxBody = 1 << 20

const (
	ctJSON  = "application/json;charset=UTF-8"
	ctHTML  = "text/html"
	ctPlain = "text/plain; charset=utf-8"
)

var deviceIDRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Options configures a Backend.
type Options struct {
	// SlowDelay is how long DeviceSlow hangs before answering.
	// Zero or negative means DefaultSlowDelay.
	SlowDelay time.Duration
}

// Seen is one request recorded by a Backend.
type Seen struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header // a clone of the request headers
	Body     []byte
	Trailer  http.Header // a clone of the request trailers, after the body
}

// EndUser is one user bound to a device, as returned by endusers.
type EndUser struct {
	EndUserID string `json:"enduserid"`
	Phone     string `json:"phone"`
	Email     string `json:"email"`
	App       string `json:"app"`
	Role      int    `json:"role"` // 1 super user, 2 administrator, 3 ordinary user
}

// DeviceInfo is the data returned by info.
type DeviceInfo struct {
	MAC        string `json:"mac"`
	Online     bool   `json:"online"`
	PName      string `json:"pname"`
	CreateTime string `json:"createtime"`
	ProductID  string `json:"productid"`
}

type device struct {
	info  DeviceInfo
	users []EndUser
}

const (
	productID = "c33d3908-9752-11e6-9baf-00163e120d98"
	appID     = "e22cfa2e-9752-11e6-9baf-00163e12a001"
)

// initialDevices returns a fresh copy of the sample data.
func initialDevices() map[string]*device {
	return map[string]*device{
		DeviceOnline: {
			info: DeviceInfo{MAC: "agxhl0012ab", Online: true, PName: "test", CreateTime: "2016-10-21T13:54:51.950", ProductID: productID},
			users: []EndUser{
				{EndUserID: "e22cfa2e-9752-11e6-9baf-00163e12f001", Phone: "13026500001", Email: "abc@126.com", App: appID, Role: 1},
				{EndUserID: "e22cfa2e-9752-11e6-9baf-00163e12f002", Phone: "13026500002", Email: "def@126.com", App: appID, Role: 3},
			},
		},
		DeviceOffline: {
			info: DeviceInfo{MAC: "agxhl0034cd", Online: false, PName: "test", CreateTime: "2017-05-12T08:30:12.104", ProductID: productID},
			users: []EndUser{
				{EndUserID: "7d1f0c52-3b1a-11e7-a919-92ebcb67f001", Phone: "13926500003", Email: "ghi@126.com", App: appID, Role: 2},
			},
		},
		DeviceDisabled: {
			info: DeviceInfo{MAC: "agxhl0056ef", Online: false, PName: "test", CreateTime: "2018-03-02T11:04:40.318", ProductID: productID},
			users: []EndUser{
				{EndUserID: "0b6a2c9e-1f4d-11e8-b467-0ed5f89f7001", Phone: "13826500004", Email: "jkl@126.com", App: appID, Role: 1},
			},
		},
		DeviceSlow: {
			info: DeviceInfo{MAC: "agxhl0078aa", Online: true, PName: "test", CreateTime: "2019-01-15T16:20:05.001", ProductID: productID},
			users: []EndUser{
				{EndUserID: "5104f00d-0000-4000-8000-00000000f001", Phone: "13726500005", Email: "mno@126.com", App: appID, Role: 1},
			},
		},
	}
}

// Backend is the reference legacy device backend. It implements http.Handler
// and is safe for concurrent use.
type Backend struct {
	slow time.Duration

	mu      sync.Mutex
	seen    []Seen
	devices map[string]*device
}

// New returns a Backend holding the initial sample data.
func New(opts Options) *Backend {
	d := opts.SlowDelay
	if d <= 0 {
		d = DefaultSlowDelay
	}
	return &Backend{slow: d, devices: initialDevices()}
}

// Requests returns a copy of the recorded requests, oldest first (at most the
// last 1000, including /healthz and unknown paths).
func (b *Backend) Requests() []Seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Seen(nil), b.seen...)
}

// Reset forgets the recorded requests and restores the initial device data.
func (b *Backend) Reset() {
	b.mu.Lock()
	b.seen = nil
	b.mu.Unlock()
	b.ResetDevices()
}

// ResetDevices restores the initial device data (undoing unbinds) without
// touching the recorded requests.
func (b *Backend) ResetDevices() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.devices = initialDevices()
}

// route names a known path and the methods it accepts.
type route struct {
	name    string
	methods []string
}

var routes = map[string]route{
	"/outer/device/endusers": {"endusers", []string{http.MethodGet}},
	"/outer/device/info":     {"info", []string{http.MethodGet}},
	"/outer/device/unbind":   {"unbind", []string{http.MethodPut}},
	"/healthz":               {"healthz", []string{http.MethodGet, http.MethodHead}},
}

// ServeHTTP implements http.Handler.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	r.Body = io.NopCloser(bytes.NewReader(body))
	b.record(r, body)

	rt, ok := routes[strings.TrimSuffix(r.URL.Path, "/")]
	if !ok {
		writeHTML(w, http.StatusNotFound, page404)
		return
	}
	if !slices.Contains(rt.methods, r.Method) {
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		writeHTML(w, http.StatusMethodNotAllowed, page405)
		return
	}
	if rt.name == "healthz" {
		writeText(w, http.StatusOK, "ok")
		return
	}

	id := r.URL.Query().Get("deviceid")
	if id == "" && rt.name == "unbind" {
		id = bodyDeviceID(r.Header.Get("Content-Type"), body)
	}
	switch {
	case id == "":
		writeText(w, http.StatusBadRequest, "deviceid required")
		return
	case !deviceIDRe.MatchString(id):
		writeText(w, http.StatusBadRequest, "invalid deviceid")
		return
	case id == DeviceFault:
		writeHTML(w, http.StatusInternalServerError, page500)
		return
	case id == DeviceSlow:
		t := time.NewTimer(b.slow)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}

	switch rt.name {
	case "endusers":
		users, ok := b.users(id)
		if !ok {
			writeHTML(w, http.StatusNotFound, pageDevice404)
			return
		}
		writeEnvelope(w, http.StatusOK, "get users success", 0, users)
	case "info":
		info, ok := b.info(id)
		switch {
		case !ok:
			writeHTML(w, http.StatusNotFound, pageDevice404)
		case id == DeviceDisabled:
			writeEnvelope(w, http.StatusForbidden, "device disabled", 23031, nil)
		default:
			writeEnvelope(w, http.StatusOK, "Device info", 0, info)
		}
	case "unbind":
		known, unbound := b.unbind(id)
		switch {
		case !known:
			writeHTML(w, http.StatusNotFound, pageDevice404)
		case !unbound:
			writeJSON(w, http.StatusConflict, map[string]any{"error": "device has no bound users", "status": http.StatusConflict})
		default:
			writeEnvelope(w, http.StatusOK, "unbind success", 0, map[string]string{"deviceid": id})
		}
	}
}

// users returns a copy of the users bound to device id (never nil).
func (b *Backend) users(id string) ([]EndUser, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.devices[id]
	if !ok {
		return nil, false
	}
	return append([]EndUser{}, d.users...), true
}

// info returns the info of device id.
func (b *Backend) info(id string) (DeviceInfo, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.devices[id]
	if !ok {
		return DeviceInfo{}, false
	}
	return d.info, true
}

// unbind drops the users of device id, reporting whether the device exists
// and whether it had any users to drop.
func (b *Backend) unbind(id string) (known, unbound bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.devices[id]
	if !ok {
		return false, false
	}
	if len(d.users) == 0 {
		return true, false
	}
	d.users = nil
	return true, true
}

func (b *Backend) record(r *http.Request, body []byte) {
	s := Seen{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     body,
		Trailer:  r.Trailer.Clone(),
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = append(b.seen, s)
	if n := len(b.seen); n > maxSeen {
		b.seen = append([]Seen(nil), b.seen[n-maxSeen:]...)
	}
}

// bodyDeviceID finds deviceid in a form or JSON request body.
func bodyDeviceID(contentType string, body []byte) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" {
		v, _ := url.ParseQuery(string(body))
		return v.Get("deviceid")
	}
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		var v struct {
			DeviceID string `json:"deviceid"`
		}
		_ = json.Unmarshal(t, &v)
		return v.DeviceID
	}
	return ""
}

func writeEnvelope(w http.ResponseWriter, status int, message string, code int, data any) {
	type meta struct {
		Message string `json:"message"`
		Code    int    `json:"code"`
	}
	writeJSON(w, status, struct {
		Meta meta `json:"meta"`
		Data any  `json:"data"`
	}{meta{message, code}, data})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	buf, err := json.Marshal(v)
	if err != nil {
		writeHTML(w, http.StatusInternalServerError, page500)
		return
	}
	w.Header().Set("Content-Type", ctJSON)
	w.WriteHeader(status)
	w.Write(buf)
}

func writeHTML(w http.ResponseWriter, status int, page string) {
	w.Header().Set("Content-Type", ctHTML)
	w.WriteHeader(status)
	io.WriteString(w, page)
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", ctPlain)
	w.WriteHeader(status)
	io.WriteString(w, text)
}

const page404 = `<html><head><title>404 Not Found</title></head>
<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p>
<hr><address>Apache Tomcat/7.0.69</address></body></html>
`

const pageDevice404 = `<html><head><title>404 Not Found</title></head>
<body><h1>Device Not Found</h1><p>No device with the requested deviceid.</p>
<hr><address>Apache Tomcat/7.0.69</address></body></html>
`

const page405 = `<html><head><title>405 Method Not Allowed</title></head>
<body><h1>Method Not Allowed</h1><p>The requested method is not allowed for this URL.</p>
<hr><address>Apache Tomcat/7.0.69</address></body></html>
`

const page500 = `<html><head><title>500 Internal Server Error</title></head>
<body><h1>HTTP Status 500 - Internal Server Error</h1>
<pre>java.lang.NullPointerException
	at com.vendor.device.DeviceService.info(DeviceService.java:212)
	at com.vendor.device.DeviceController.handle(DeviceController.java:88)
	at org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:166)
Caused by: java.sql.SQLException: Connection refused: ` + FaultHost + `:3306
	at com.mysql.jdbc.ConnectionImpl.createNewIO(ConnectionImpl.java:2181)
</pre>
<hr><address>Apache Tomcat/7.0.69 (` + FaultHost + `)</address></body></html>
`
