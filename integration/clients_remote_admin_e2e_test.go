package integration

// The remote admin endpoint of Caddy (admin.remote: TLS with client
// certificates and per-key access control) in front of the client
// management routes, as README "Managing clients at runtime" recommends
// for operating beyond localhost.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
)

// clientCert makes a self-signed client certificate.
func clientCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestManagedClientsRemoteAdmin runs the binary with a JSON config whose
// admin endpoint stays on loopback and whose remote admin endpoint serves
// TLS with client certificates: the operator's certificate may list and
// create clients and nothing else; no certificate, or an unknown one, gets
// no answer at all.
func TestManagedClientsRemoteAdmin(t *testing.T) {
	dir := t.TempDir()
	operator := clientCert(t, "operator")
	intruder := clientCert(t, "intruder")
	adminPort, remotePort, sitePort := harness.FreePort(t), harness.FreePort(t), harness.FreePort(t)
	config := map[string]any{
		"admin": map[string]any{
			"listen":   fmt.Sprintf("127.0.0.1:%d", adminPort),
			"identity": map[string]any{"identifiers": []string{"127.0.0.1"}, "issuers": []any{map[string]any{"module": "internal"}}},
			"remote": map[string]any{
				"listen": fmt.Sprintf("127.0.0.1:%d", remotePort),
				"access_control": []any{map[string]any{
					"public_keys": []string{base64.StdEncoding.EncodeToString(operator.Certificate[0])},
					"permissions": []any{map[string]any{"paths": []string{"/outergate/clients"}, "methods": []string{"GET", "POST"}}},
				}},
			},
			"config": map[string]any{"persist": false},
		},
		"storage": map[string]any{"module": "file_system", "root": filepath.Join(dir, "storage")},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "DEBUG"}}},
		"apps": map[string]any{
			"pki": map[string]any{"certificate_authorities": map[string]any{"local": map[string]any{"install_trust": false}}},
			"http": map[string]any{"servers": map[string]any{"s": map[string]any{
				"listen":          []string{fmt.Sprintf("127.0.0.1:%d", sitePort)},
				"automatic_https": map[string]any{"disable": true},
				"routes": []any{map[string]any{"handle": []any{
					map[string]any{"handler": "outergate", "clients": []any{map[string]any{"id": appID, "secret_hashes": []string{sha256Hash(appSecret)}}}},
					map[string]any{"handler": "static_response", "body": "upstream"},
				}}},
			}}},
		},
	}
	raw, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := new(harness.SyncBuffer)
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("caddy logs:\n%s", logs.String())
		}
	})

	// The remote endpoint's certificate comes from Caddy's local CA.
	rootPath := filepath.Join(dir, "storage", "pki", "authorities", "local", "root.crt")
	remote := func(cert *tls.Certificate) *http.Client {
		pool := x509.NewCertPool()
		if pem, err := os.ReadFile(rootPath); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		tc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	base := fmt.Sprintf("https://127.0.0.1:%d", remotePort)
	call := func(c *http.Client, method, path, body string) (int, string, error) {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if _, ok := waitUntil(20*time.Second, func() bool {
		s, _, err := call(remote(&operator), http.MethodGet, "/outergate/clients", "")
		return err == nil && s == http.StatusOK
	}); !ok {
		s, body, err := call(remote(&operator), http.MethodGet, "/outergate/clients", "")
		t.Fatalf("the remote admin endpoint does not answer the operator: %d %s %v", s, body, err)
	}

	status, body, err := call(remote(&operator), http.MethodPost, "/outergate/clients", `{"id":"acme-remote","scope":"read"}`)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create through the remote endpoint: %d %s %v", status, body, err)
	}
	var created struct {
		Secret string `json:"client_secret"`
	}
	if json.Unmarshal([]byte(body), &created) != nil || created.Secret == "" {
		t.Fatalf("create answer: %s", body)
	}
	site := fmt.Sprintf("http://127.0.0.1:%d/outer/token/", sitePort)
	resp, err := http.PostForm(site, cc("acme-remote", created.Secret))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a token of the client created remotely: %d", resp.StatusCode)
	}

	if s, b, err := call(remote(&operator), http.MethodGet, "/outergate/clients/acme-remote", ""); err != nil || s != http.StatusOK {
		t.Errorf("a sub-path of an allowed path: %d %s %v, want 200", s, b, err)
	}
	for _, tc := range []struct {
		name, method, path string
	}{
		{"a method the key is not allowed", http.MethodDelete, "/outergate/clients/acme-remote"},
		{"a path the key is not allowed", http.MethodGet, "/config/"},
		{"revocation is not in the key's paths", http.MethodPost, "/outergate/revoke"},
	} {
		if s, b, err := call(remote(&operator), tc.method, tc.path, `{}`); err != nil || s != http.StatusForbidden {
			t.Errorf("%s (%s %s): %d %s %v, want 403", tc.name, tc.method, tc.path, s, b, err)
		}
	}
	for name, c := range map[string]*http.Client{"no client certificate": remote(nil), "an unknown certificate": remote(&intruder)} {
		if s, b, err := call(c, http.MethodGet, "/outergate/clients", ""); err == nil {
			t.Errorf("%s: answered %d %s, want the TLS handshake refused", name, s, b)
		}
	}
	if strings.Contains(logs.String(), created.Secret) {
		t.Error("the logs hold the secret created through the remote endpoint")
	}
}
