// Package leaky is an upstream that misbehaves on purpose, for the tests of
// what a device backend must not leak through the gateway: internal headers,
// trailers, 103 Early Hints, challenges, redirects to internal hosts,
// envelopes holding markup and stack traces, and error bodies that never
// end. Each answer is chosen by the last path segment of the request, e.g.
// /outer/device/redirect-302/.
package leaky

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// InternalHost is the backend host name that must never reach a client.
const InternalHost = "backend-7.corp.internal"

// StackTrace is a Java stack trace as a Tomcat backend sends it.
const StackTrace = "java.lang.IllegalStateException: device table locked\n" +
	"\tat com.acme.devices.DeviceDao.find(DeviceDao.java:142)\n" +
	"\tat org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:199)"

// Upstream is the misbehaving backend. Its zero value is not usable: use New.
type Upstream struct {
	mu       sync.Mutex
	requests []string

	// StreamsEnded counts the endless error bodies that ended because the
	// gateway hung up; StreamedBytes what they had sent by then.
	StreamsEnded  atomic.Int64
	StreamedBytes atomic.Int64
}

// New returns a misbehaving upstream.
func New() *Upstream { return &Upstream{} }

// Requests returns the paths received so far.
func (u *Upstream) Requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.requests...)
}

// internalHeaders sets the headers a leaky backend stack adds to every
// answer.
func internalHeaders(h http.Header) {
	h.Set("Set-Cookie", "JSESSIONID=ABCDEF0123456789; Path=/; HttpOnly")
	h.Add("Set-Cookie", "BACKEND_ROUTE="+InternalHost+"; Path=/")
	h.Set("X-Powered-By", "Servlet/4.0 JSP/2.3 (Apache Tomcat/9.0.31 Java/Oracle Corporation/1.8.0_241)")
	h.Set("X-Backend-Server", InternalHost+":8009")
	h.Set("Server", "Apache-Coyote/1.1")
	h.Set("X-Debug-Query", "SELECT * FROM devices WHERE id = ?")
}

func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.requests = append(u.requests, r.URL.Path)
	u.mu.Unlock()
	name := r.URL.Path
	name = strings.TrimSuffix(name, "/")
	name = name[strings.LastIndex(name, "/")+1:]
	h := w.Header()
	internalHeaders(h)
	switch {
	case name == "ok":
		h.Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"meta":{"message":"ok","code":0},"data":{"id":"d1"}}`)
	case name == "html-500":
		h.Set("Content-Type", "text/html")
		h.Set("Trailer", "X-Internal-Trace")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "<html><body><h1>HTTP Status 500</h1><pre>%s</pre><p>%s</p></body></html>", StackTrace, InternalHost)
		h.Set("X-Internal-Trace", "trace-id-42@"+InternalHost)
	case name == "json-502":
		h.Set("Content-Type", "application/json")
		h.Set("Trailer", "X-Internal-Trace")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, `{"message":"pool exhausted"}`)
		h.Set("X-Internal-Trace", "trace-id-43@"+InternalHost)
	case name == "challenge-401":
		h.Set("WWW-Authenticate", `Basic realm="`+InternalHost+`"`)
		h.Add("WWW-Authenticate", `Bearer realm="`+InternalHost+`", error="invalid_token"`)
		h.Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "<html>401 Unauthorized</html>")
	case name == "challenge-407":
		h.Set("Proxy-Authenticate", `Basic realm="`+InternalHost+`"`)
		w.WriteHeader(http.StatusProxyAuthRequired)
	case strings.HasPrefix(name, "hints-"): // hints-200, hints-500
		status, _ := strconv.Atoi(strings.TrimPrefix(name, "hints-"))
		hint := w.Header()
		hint.Set("Link", "<http://"+InternalHost+"/static/app.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		hint.Del("Link")
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, `{"meta":{"message":"ok","code":0},"data":null}`)
	case strings.HasPrefix(name, "redirect-"): // redirect-301, -302, -303, -307, -308
		status, _ := strconv.Atoi(strings.TrimPrefix(name, "redirect-"))
		h.Set("Location", "http://"+InternalHost+"/admin/devices?session=ABCDEF")
		h.Set("Content-Type", "text/html")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<a href="http://%s/admin/devices">Moved</a>`, InternalHost)
	case name == "not-modified":
		h.Set("Etag", `"v7"`)
		w.WriteHeader(http.StatusNotModified)
	case name == "envelope-500-html":
		h.Set("Content-Type", "text/html")
		msg := "<div class=\"error\"><b>Internal error</b> on " + InternalHost + "</div>" + strings.Repeat("<p>detail</p>", 200) + StackTrace
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"meta":{"message":%q,"code":23090},"data":{"trace":%q}}`, msg, StackTrace)
	case name == "envelope-403-markup":
		h.Set("Content-Type", "text/html; charset=iso-8859-1")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"meta":{"message":"<script>alert(1)</script>device <b>disabled</b> by owner","code":23031},"data":{"owner":"ops@`+InternalHost+`"}}`)
	case name == "envelope-409-long":
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, `{"meta":{"message":%q,"code":23010},"data":null}`, strings.Repeat("busy ", 700))
	case name == "retry-503":
		h.Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
	case name == "bad-retry-503":
		h.Set("Retry-After", "<script>"+InternalHost)
		w.WriteHeader(http.StatusServiceUnavailable)
	case name == "endless-500":
		u.endless(w, r, http.StatusInternalServerError, 0)
	case name == "big-502":
		u.endless(w, r, http.StatusBadGateway, 96<<20)
	case name == "trickle-500":
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"message":"slow`)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			u.StreamsEnded.Add(1)
		case <-time.After(60 * time.Second):
		}
	default:
		http.NotFound(w, r)
	}
}

// endless streams an error body of limit bytes (0: without end) until the
// client hangs up.
func (u *Upstream) endless(w http.ResponseWriter, r *http.Request, status int, limit int64) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	chunk := []byte(strings.Repeat("<p>"+StackTrace+"</p>\n", 64))
	var sent int64
	defer func() { u.StreamedBytes.Add(sent) }()
	for limit == 0 || sent < limit {
		n, err := w.Write(chunk)
		sent += int64(n)
		if err != nil || r.Context().Err() != nil {
			u.StreamsEnded.Add(1)
			return
		}
	}
}
