package outergate

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func bcryptHash(t *testing.T, secret string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(secret), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// leaksHash reports whether msg repeats any 8-character piece of hash
// (past a "sha256:" prefix, which names the format, not the hash).
func leaksHash(msg, hash string) bool {
	hash = strings.TrimPrefix(hash, "sha256:")
	if hash == "" {
		return false
	}
	if len(hash) < 8 {
		return strings.Contains(msg, hash)
	}
	for i := 0; i+8 <= len(hash); i++ {
		if strings.Contains(msg, hash[i:i+8]) {
			return true
		}
	}
	return false
}

func TestParseSecretHash(t *testing.T) {
	const secret = "correct horse battery staple"
	b := bcryptHash(t, secret, bcrypt.MinCost) // $2a$04$...
	for _, tc := range []struct {
		name    string
		hash    string
		wantErr bool
	}{
		{name: "sha256", hash: sha256Hash(secret)},
		{name: "sha256 upper-case hex", hash: "sha256:" + strings.ToUpper(strings.TrimPrefix(sha256Hash(secret), "sha256:"))},
		{name: "sha256 too short", hash: sha256Hash(secret)[:len(sha256Hash(secret))-2], wantErr: true},
		{name: "sha256 too long", hash: sha256Hash(secret) + "00", wantErr: true},
		{name: "sha256 odd length", hash: sha256Hash(secret) + "0", wantErr: true},
		{name: "sha256 bad hex", hash: "sha256:" + strings.Repeat("zq", 32), wantErr: true},
		{name: "sha256 empty", hash: "sha256:", wantErr: true},
		{name: "bcrypt $2a$", hash: b},
		{name: "bcrypt $2b$", hash: "$2b$" + b[4:]},
		{name: "bcrypt $2y$", hash: "$2y$" + b[4:]},
		{name: "bcrypt truncated", hash: b[:20], wantErr: true},
		{name: "bcrypt bad cost", hash: "$2a$99$" + b[7:], wantErr: true},
		{name: "bcrypt $2x$ is not supported", hash: "$2x$" + b[4:], wantErr: true},
		{name: "md5 crypt is not supported", hash: "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", wantErr: true},
		{name: "plain secret is not a hash", hash: "my-plain-secret-value", wantErr: true},
		{name: "sha512 prefix is not supported", hash: "sha512:" + strings.Repeat("ab", 64), wantErr: true},
		{name: "upper-case prefix is not supported", hash: "SHA256:" + strings.TrimPrefix(sha256Hash(secret), "sha256:"), wantErr: true},
		{name: "empty", hash: "", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseSecretHash(tc.hash)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseSecretHash(%q) accepted it", tc.hash)
				}
				if tc.hash != "" && leaksHash(err.Error(), tc.hash) {
					t.Fatalf("error %q repeats the hash %q", err, tc.hash)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSecretHash: %v", err)
			}
			if !v.verify(secret) {
				t.Error("the right secret is refused")
			}
			for _, wrong := range []string{"", "wrong", secret + " ", strings.ToUpper(secret)} {
				if v.verify(wrong) {
					t.Errorf("wrong secret %q is accepted", wrong)
				}
			}
		})
	}
}

func TestClientAuthenticate(t *testing.T) {
	oldHash, newHash := sha256Hash("old-secret"), bcryptHash(t, "new-secret", bcrypt.MinCost)
	for _, tc := range []struct {
		name   string
		hashes []string
		secret string
		want   bool
	}{
		{name: "one hash, right secret", hashes: []string{oldHash}, secret: "old-secret", want: true},
		{name: "one hash, wrong secret", hashes: []string{oldHash}, secret: "new-secret", want: false},
		{name: "rotation: the old secret still works", hashes: []string{oldHash, newHash}, secret: "old-secret", want: true},
		{name: "rotation: the new secret works", hashes: []string{oldHash, newHash}, secret: "new-secret", want: true},
		{name: "rotation: the new secret works when listed first", hashes: []string{newHash, oldHash}, secret: "new-secret", want: true},
		{name: "rotation: any other secret fails", hashes: []string{oldHash, newHash}, secret: "other-secret", want: false},
		{name: "rotation: empty secret fails", hashes: []string{oldHash, newHash}, secret: "", want: false},
		{name: "no verifiers fail closed", hashes: nil, secret: "old-secret", want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{ID: "c", SecretHashes: tc.hashes}
			for _, h := range tc.hashes {
				v, err := parseSecretHash(h)
				if err != nil {
					t.Fatal(err)
				}
				c.verifiers = append(c.verifiers, v)
				c.bindings = append(c.bindings, tokenBinding("", c.ID, h))
			}
			binding, got := c.authenticate(tc.secret)
			if got != tc.want {
				t.Fatalf("authenticate(%q) = %v, want %v", tc.secret, got, tc.want)
			}
			// The binding is that of the hash that matched.
			if got && !slices.ContainsFunc(tc.hashes, func(h string) bool {
				v, _ := parseSecretHash(h)
				return v.verify(tc.secret) && binding == tokenBinding("", c.ID, h)
			}) {
				t.Errorf("binding %q is not that of a matching hash", binding)
			}
		})
	}
}

func TestDecoyVerifier(t *testing.T) {
	mk := func(t *testing.T, hashes ...string) Client {
		c := Client{ID: "c", SecretHashes: hashes}
		for _, h := range hashes {
			v, err := parseSecretHash(h)
			if err != nil {
				t.Fatal(err)
			}
			c.verifiers = append(c.verifiers, v)
		}
		return c
	}
	for _, tc := range []struct {
		name       string
		clients    func(t *testing.T) []Client
		wantBcrypt bool
		wantCost   int
	}{
		{name: "no clients: sha256 decoy", clients: func(*testing.T) []Client { return nil }},
		{name: "sha256 clients only: sha256 decoy", clients: func(t *testing.T) []Client {
			return []Client{mk(t, sha256Hash("a")), mk(t, sha256Hash("b"))}
		}},
		{name: "a bcrypt client: bcrypt decoy", clients: func(t *testing.T) []Client {
			return []Client{mk(t, sha256Hash("a")), mk(t, bcryptHash(t, "b", bcrypt.MinCost))}
		}, wantBcrypt: true, wantCost: bcrypt.MinCost},
		{name: "a bcrypt rotation hash: bcrypt decoy", clients: func(t *testing.T) []Client {
			return []Client{mk(t, sha256Hash("a"), bcryptHash(t, "b", bcrypt.MinCost))}
		}, wantBcrypt: true, wantCost: bcrypt.MinCost},
		{name: "several bcrypt costs: the highest", clients: func(t *testing.T) []Client {
			return []Client{mk(t, bcryptHash(t, "a", bcrypt.MinCost+1)), mk(t, bcryptHash(t, "b", bcrypt.MinCost))}
		}, wantBcrypt: true, wantCost: bcrypt.MinCost + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clients := tc.clients(t)
			v, err := decoyVerifier(clients)
			if err != nil {
				t.Fatal(err)
			}
			b, isBcrypt := v.(*bcryptVerifier)
			if isBcrypt != tc.wantBcrypt {
				t.Fatalf("decoy is %T, want bcrypt %v", v, tc.wantBcrypt)
			}
			if isBcrypt {
				if cost, err := bcrypt.Cost(b.hash); err != nil || cost != tc.wantCost {
					t.Fatalf("decoy cost = %d (%v), want %d", cost, err, tc.wantCost)
				}
			}
			for _, s := range []string{"", "a", "b", "secret"} {
				if v.verify(s) {
					t.Errorf("decoy accepts %q", s)
				}
			}
		})
	}
}

func TestUnknownClientUsesTheDecoy(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) {
		h.Clients = append(h.Clients, Client{ID: "legacy", SecretHashes: []string{bcryptHash(t, "legacy-secret", bcrypt.MinCost)}})
	})
	if _, ok := h.auth.decoy.(*bcryptVerifier); !ok {
		t.Fatalf("decoy is %T with a bcrypt client configured", h.auth.decoy)
	}
	spy := &countingVerifier{}
	h.auth.decoy = spy
	if _, _, ok := h.auth.verify("nobody", "x"); ok {
		t.Fatal("unknown client authenticated")
	}
	if spy.n != 1 {
		t.Fatalf("decoy checked %d times for an unknown client, want 1", spy.n)
	}
	if c, _, ok := h.auth.verify("legacy", "legacy-secret"); !ok || c.ID != "legacy" {
		t.Fatal("bcrypt client refused")
	}
	if spy.n != 1 {
		t.Fatal("decoy checked for a success")
	}
	// Every failure costs the same (issue 12 item 7): a SHA-256 client's
	// wrong secret pays the decoy, a bcrypt client's its own hash.
	if _, _, ok := h.auth.verify(testClientID, "wrong"); ok {
		t.Fatal("wrong secret accepted")
	}
	if spy.n != 2 {
		t.Fatalf("decoy checked %d times after a SHA-256 client's failure, want 2", spy.n)
	}
	if _, _, ok := h.auth.verify("legacy", "wrong"); ok {
		t.Fatal("wrong bcrypt secret accepted")
	}
	if spy.n != 2 {
		t.Fatal("decoy checked beside a bcrypt client's own hash at the highest cost")
	}
}

type countingVerifier struct{ n int }

func (c *countingVerifier) verify(string) bool { c.n++; return false }

// TestBcryptVerifierRemembersMatchesOnly checks the bcrypt cache: a match is
// remembered (as a hash of the secret), a wrong secret never is, and the
// memory per hash is bounded.
func TestBcryptVerifierRemembersMatchesOnly(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("right-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	v := newBcryptVerifier(h)
	for _, tc := range []struct {
		secret  string
		want    bool
		entries int
	}{
		{"wrong", false, 0},
		{"right-secret", true, 1},
		{"right-secret", true, 1},
		{"wrong", false, 1},
	} {
		if got := v.verify(tc.secret); got != tc.want || len(v.ok) != tc.entries {
			t.Errorf("verify(%q) = %v with %d cached, want %v with %d", tc.secret, got, len(v.ok), tc.want, tc.entries)
		}
	}
	// bcrypt reads 72 bytes: secrets differing after that all match, and
	// the cache stops growing at its bound.
	long := strings.Repeat("x", 72)
	v = newBcryptVerifier(must(bcrypt.GenerateFromPassword([]byte(long), bcrypt.MinCost)))
	for i := range 3 * maxBcryptCache {
		if !v.verify(long + strings.Repeat("y", i)) {
			t.Fatalf("suffix %d did not match", i)
		}
	}
	if len(v.ok) != maxBcryptCache {
		t.Errorf("cache holds %d entries, want the bound %d", len(v.ok), maxBcryptCache)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
