package integration

// Issue 12, tokens: items 10 (two outergate blocks accept each other's
// tokens) and 11 (revoked tokens pile up outside the cap), through the
// built binary, on the memory and the Redis store.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
)

// storeRows are the stores these tests run on: the default memory store
// (one per process, shared by every site that names none) and one Redis.
var storeRows = []struct {
	name  string
	store func(t *testing.T) (line string, rd *harness.Redis)
}{
	{"default memory store", func(*testing.T) (string, *harness.Redis) { return "", nil }},
	{"redis store", func(t *testing.T) (string, *harness.Redis) {
		rd := harness.StartRedis(t)
		return "\t\tstore redis " + rd.URL(), rd
	}},
}

// TestTokensBoundToTheirIssuer runs three sites in one process on one
// store: sites 1 and 2 each have a client "shared" with its own secret;
// site 3 shares site 1's credential on purpose. A token of site 1 is
// refused, not introspectable and not revocable on site 2, and accepted on
// site 3.
func TestTokensBoundToTheirIssuer(t *testing.T) {
	const id = "shared"
	secrets := []string{"site-one-secret-0001", "site-two-secret-0002", "site-one-secret-0001"}
	for _, row := range storeRows {
		t.Run(row.name, func(t *testing.T) {
			storeLine, _ := row.store(t)
			backend := legacy.New(legacy.Options{})
			up := httptest.NewServer(backend)
			t.Cleanup(up.Close)
			var body strings.Builder
			sites := make([]*gateway, len(secrets))
			for i, secret := range secrets {
				port := harness.FreePort(t)
				fmt.Fprintf(&body, ":%d {\n\toutergate {\n\t\tclient %s %s\n\t\tthrottle off\n%s\n\t}\n\treverse_proxy %s\n}\n",
					port, id, sha256Hash(secret), storeLine, strings.TrimPrefix(up.URL, "http://"))
				sites[i] = &gateway{t: t, port: port, base: "http://127.0.0.1:" + strconv.Itoa(port), backend: backend,
					client: &http.Client{Transport: &http.Transport{}}}
			}
			harness.StartCaddy(t, bin, body.String())
			for _, s := range sites {
				harness.WaitHTTP(t, s.base+"/", 10*time.Second)
			}
			one, two, three := sites[0], sites[1], sites[2]
			tok := one.issue(id, secrets[0])
			device := opsDevice(tok)

			backend.Reset()
			expect(t, two.do(device), 401, 23021, "invalid access token")
			if n := len(backend.Requests()); n != 0 {
				t.Fatalf("site 2 forwarded %d request(s) with site 1's token", n)
			}
			r := two.do(opsIntrospect(tok, id, secrets[1]))
			if r.status != 200 || !strings.Contains(string(r.env.Data), `"active":false`) {
				t.Errorf("site 2 introspects site 1's token: %d %s", r.status, r.body)
			}
			if r := two.do(opsRevoke(tok, id, secrets[1])); r.status != 200 || r.code() != 0 {
				t.Errorf("site 2 revoke: %d %s", r.status, r.body)
			}
			if r := one.do(device); r.status != 200 || r.code() != 0 {
				t.Fatalf("site 1 refuses its own token after site 2's revoke: %d %s", r.status, r.body)
			}
			if r := three.do(device); r.status != 200 || r.code() != 0 {
				t.Errorf("site 3, sharing site 1's credential and store, refuses its token: %d %s", r.status, r.body)
			}
			// And the other way round: site 2's token works only on site 2.
			tok2 := two.issue(id, secrets[1])
			expect(t, one.do(opsDevice(tok2)), 401, 23021, "invalid access token")
			expect(t, three.do(opsDevice(tok2)), 401, 23021, "invalid access token")
			if r := two.do(opsDevice(tok2)); r.status != 200 {
				t.Errorf("site 2 refuses its own token: %d %s", r.status, r.body)
			}
		})
	}
}

// TestRevokedTokensWithinCap: with max_tokens_per_client 5, 40 issue +
// revoke cycles leave at most 5 records of the client: the earlier
// tombstones were evicted (their tokens are now unknown, refused all the
// same), and a live token kept meanwhile was never evicted for them.
func TestRevokedTokensWithinCap(t *testing.T) {
	for _, row := range storeRows {
		t.Run(row.name, func(t *testing.T) {
			storeLine, rd := row.store(t)
			g := startGateway(t, gatewayConfig{Extra: "\t\tthrottle off\n\t\tmax_tokens_per_client 5\n" + storeLine})
			kept := g.issue(appID, appSecret)
			var revoked []string
			for range 40 {
				tok := g.issue(appID, appSecret)
				if r := g.do(opsRevoke(tok, appID, appSecret)); r.status != 200 || r.code() != 0 {
					t.Fatalf("revoke: %d %s", r.status, r.body)
				}
				revoked = append(revoked, tok)
			}
			tombstones := 0
			for i, tok := range revoked {
				r := g.do(opsDevice(tok))
				if r.status != 401 || r.code() != 23021 {
					t.Fatalf("revoked token %d: %d %s", i, r.status, r.body)
				}
				if r.env.Meta.Message == "access token revoked" {
					tombstones++
				}
			}
			if tombstones == 0 || tombstones > 4 {
				t.Errorf("%d revoked tokens still have a tombstone, want 1..4 (the cap is 5, one token is live)", tombstones)
			}
			if r := g.do(opsDevice(revoked[len(revoked)-1])); r.env.Meta.Message != "access token revoked" {
				t.Errorf("the last revoked token lost its tombstone: %s", r.body)
			}
			if r := g.do(opsDevice(kept)); r.status != 200 {
				t.Errorf("the live token was evicted for tombstones: %d %s", r.status, r.body)
			}
			if rd != nil {
				for pattern, limit := range map[string]int{"outergate:t:*": 5} {
					reply, err := rd.Command("EVAL", "return #redis.call('KEYS', ARGV[1])", "0", pattern)
					if err != nil {
						t.Fatal(err)
					}
					if n, _ := strconv.Atoi(strings.TrimPrefix(reply, ":")); n > limit || n == 0 {
						t.Errorf("redis holds %s keys %s, want 1..%d", pattern, reply, limit)
					}
				}
				if reply, _ := rd.Command("ZCARD", "outergate:c:"+appID); reply != ":5" {
					t.Errorf("client index ZCARD = %s, want :5", reply)
				}
			}
		})
	}
}
