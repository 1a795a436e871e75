// Command upstream is the benchmark's stand-in for the legacy device backend
// and for a do-it-yourself forward_auth service, in one small, fast process:
//
//	GET  /outer/device/info/?deviceid=ID  the documented device-info envelope
//	POST /issue                           a new random access token (forward_auth's store)
//	GET  /check                           forward_auth: 200 + X-Client-Id for a live Bearer
//	                                      token and a deviceid in X-Forwarded-Uri, else 401/400
//
// /check keeps tokens the way a small hand-written auth service would: the
// SHA-256 of each token in an in-memory map under a read-write lock. The
// benchmark driver (integration/bench/run) starts, kills and restarts it.
//
// Usage:
//
//	upstream -listen 127.0.0.1:9180
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// deviceInfo is the answer of GET /outer/device/info/ (docs/API.md), the
// same device the demo backend knows.
var deviceInfo = []byte(`{"meta":{"message":"Device info","code":0},"data":{"mac":"agxhl0012ab","online":true,"pname":"test","createtime":"2016-10-21T13:54:51.950","productid":"c33d3908-9752-11e6-9baf-00163e120d98"}}`)

var (
	missingDevice = []byte(`{"meta":{"message":"deviceid is required","code":23010},"data":null}`)
	notFound      = []byte(`{"meta":{"message":"not found","code":23010},"data":null}`)
	deviceInfoLen = strconv.Itoa(len(deviceInfo))
)

// tokens is the forward_auth service's token store: SHA-256(token) to
// client id.
type tokens struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]string
}

func (t *tokens) issue(clientID string) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	t.mu.Lock()
	t.m[sha256.Sum256([]byte(tok))] = clientID
	t.mu.Unlock()
	return tok
}

func (t *tokens) lookup(tok string) (string, bool) {
	key := sha256.Sum256([]byte(tok))
	t.mu.RLock()
	id, ok := t.m[key]
	t.mu.RUnlock()
	return id, ok
}

type server struct {
	tokens tokens
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/outer/device/info/", "/outer/device/info":
		s.info(w, r)
	case "/check":
		s.check(w, r)
	case "/issue":
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		client := r.URL.Query().Get("client")
		if client == "" {
			client = "bench"
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(s.tokens.issue(client)))
	default:
		writeJSON(w, http.StatusNotFound, notFound)
	}
}

// info answers the device-info envelope; a request without deviceid gets
// the platform's parameter error, as the legacy backend would.
func (s *server) info(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.RawQuery, "deviceid=") {
		writeJSON(w, http.StatusBadRequest, missingDevice)
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json; charset=utf-8"}
	h["Content-Length"] = []string{deviceInfoLen}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(deviceInfo)
}

// check is the forward_auth endpoint: Caddy sends the client's headers
// and the original URI in X-Forwarded-Uri.
func (s *server) check(w http.ResponseWriter, r *http.Request) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outer"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	client, ok := s.tokens.lookup(tok)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outer", error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	_, query, _ := strings.Cut(r.Header.Get("X-Forwarded-Uri"), "?")
	if q, err := url.ParseQuery(query); err != nil || q.Get("deviceid") == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Client-Id", client)
	w.WriteHeader(http.StatusOK)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9180", "address to listen on (loopback only)")
	flag.Parse()
	log.SetOutput(os.Stderr)

	host, _, err := net.SplitHostPort(*listen)
	if err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("upstream: -listen must be a loopback address, got %q", *listen)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("upstream: %v", err)
	}
	srv := &http.Server{
		Handler:           &server{tokens: tokens{m: make(map[[sha256.Size]byte]string)}},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Fatal(srv.Serve(ln))
}
