package outergate

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestCaptureSwitchingProtocols: a 101 the upstream answers (an upgrade the
// handler let through) passes with its headers, and the connection can be
// hijacked through the capture.
func TestCaptureSwitchingProtocols(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := newCapture(w, new(bytes.Buffer), func() {})
		defer c.done()
		c.Header().Set("Upgrade", "websocket")
		c.Header().Set("Connection", "Upgrade")
		c.WriteHeader(http.StatusSwitchingProtocols)
		conn, brw, err := http.NewResponseController(c).Hijack()
		if err != nil {
			t.Errorf("hijack through the capture: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("hello")
		_ = brw.Flush()
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("answer %d %v, want 101 with Upgrade", resp.StatusCode, resp.Header)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "hello" {
		t.Fatalf("after the upgrade: %q", rest)
	}
}

// TestCaptureCutsErrorBodies: an error body is recorded up to maxInspect
// and the upstream cancelled; the headers stay staged and trailers set
// after the body never reach the real header map.
func TestCaptureCutsErrorBodies(t *testing.T) {
	rec := httptest.NewRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	c := newCapture(rec, new(bytes.Buffer), cancel)
	defer c.done()
	c.Header().Set("Set-Cookie", "a=b")
	c.Header().Set("Trailer", "X-Trace")
	c.WriteHeader(http.StatusEarlyHints) // dropped
	c.WriteHeader(http.StatusInternalServerError)
	chunk := bytes.Repeat([]byte("x"), 10_000)
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		_, err = c.Write(chunk)
	}
	if err != errBodyCut || ctx.Err() == nil || !c.cut.Load() {
		t.Fatalf("after 200 kB: error %v, upstream context %v, cut %v", err, ctx.Err(), c.cut.Load())
	}
	if n := c.buf.Len(); n != maxInspect {
		t.Fatalf("recorded %d bytes, want %d", n, maxInspect)
	}
	c.Header().Set("X-Trace", "internal")
	if len(rec.Header()) != 0 || rec.Code != 200 || rec.Body.Len() != 0 {
		t.Fatalf("the real answer was touched: %d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}
	if !c.recorded() || c.staged.Get("Set-Cookie") != "a=b" {
		t.Fatal("the error is not recorded with its staged headers")
	}
}

// TestCaptureErrorBodyWait: a body that trickles is cut after
// errorBodyWait, which cancels the upstream request.
func TestCaptureErrorBodyWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := newCapture(httptest.NewRecorder(), new(bytes.Buffer), cancel)
	defer c.done()
	c.WriteHeader(http.StatusBadGateway)
	select {
	case <-ctx.Done():
	case <-time.After(errorBodyWait + 5*time.Second):
		t.Fatal("the upstream request was not cancelled")
	}
	if !c.cut.Load() {
		t.Fatal("not marked cut")
	}
}
