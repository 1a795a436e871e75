// Command legacybackend serves the reference legacy device backend
// (package integration/legacy) for demos and end-to-end tests.
//
// Usage:
//
//	legacybackend -listen 127.0.0.1:9080 -slow 30s
//
// It logs one line per request to stderr (method, path, status, duration) and
// shuts down gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/outergate/outergate/integration/legacy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9080", "address to listen on")
	slow := flag.Duration("slow", legacy.DefaultSlowDelay, "how long the slow sample device hangs")
	flag.Parse()
	log.SetOutput(os.Stderr)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("legacybackend: %v", err)
	}
	srv := &http.Server{
		Handler:           logRequests(legacy.New(legacy.Options{SlowDelay: *slow})),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("legacybackend listening on %s (slow device delay %s)", ln.Addr(), *slow)

	select {
	case err := <-errc:
		log.Fatalf("legacybackend: %v", err)
	case <-ctx.Done():
	}
	log.Printf("legacybackend shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Hanging requests (the slow device) are cut off here; closing
		// their connections cancels their contexts.
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("legacybackend: %v", err)
	}
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// logRequests logs method, path, status and duration of every request.
// Headers (in particular Authorization) and query strings are never logged.
func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		status := sw.status
		if status == 0 {
			status = http.StatusOK
			if r.Context().Err() != nil {
				status = 499 // client went away before an answer was written
			}
		}
		log.Printf("%s %s %d %s", r.Method, r.URL.Path, status, time.Since(start).Round(time.Millisecond))
	})
}
