package integration

// Client authentication under attack (issue 12, items 6-8): concurrent
// wrong secrets against the throttle, on one gateway and on two sharing
// Redis; the time a failure takes for unknown, SHA-256 and bcrypt ids; and
// the lockout of unknown ids.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"golang.org/x/crypto/bcrypt"
)

// postToken posts form credentials on its own connection-pooled client
// and returns the status and the envelope code.
func postToken(client *http.Client, base, id, secret string) (int, string, error) {
	resp, err := client.PostForm(base+"/outer/token/", cc(id, secret))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var env envelope
	_ = json.NewDecoder(resp.Body).Decode(&env)
	code := ""
	if env.Meta.Code != nil {
		code = fmt.Sprint(*env.Meta.Code)
	}
	return resp.StatusCode, code, nil
}

// TestConcurrentWrongSecrets: 60 concurrent wrong secrets from one address
// with `throttle 10 1m` get at most 10 answers 401 (secret checks) and the
// rest 429 + 23029, for a bcrypt, a SHA-256 and an unknown id; with two
// gateways sharing Redis, the 10 hold for both together.
func TestConcurrentWrongSecrets(t *testing.T) {
	// A bcrypt client of cost 10 (~70 ms a check) keeps the attempts in
	// flight together, as a real human-chosen secret's hash does.
	slow, err := bcrypt.GenerateFromPassword([]byte("slow-secret-0005"), 10)
	if err != nil {
		t.Fatal(err)
	}
	extra := "\t\tclient slow-bcrypt " + string(slow) + "\n\t\tthrottle 10 1m\n\t\tthrottle_client off"
	single := func(t *testing.T) []string {
		return []string{startGateway(t, gatewayConfig{Extra: extra}).base}
	}
	shared := func(t *testing.T) []string {
		rd := harness.StartRedis(t)
		cfg := gatewayConfig{Extra: extra + "\n\t\tstore redis " + rd.URL()}
		return []string{startGateway(t, cfg).base, startGateway(t, cfg).base}
	}
	for _, tc := range []struct {
		name  string
		bases func(t *testing.T) []string
		id    string
	}{
		{name: "bcrypt id, memory store", bases: single, id: "slow-bcrypt"},
		{name: "cheap bcrypt id, memory store", bases: single, id: readerID},
		{name: "sha256 id, memory store", bases: single, id: appID},
		{name: "unknown id, memory store", bases: single, id: "nobody"},
		{name: "bcrypt id, two gateways sharing redis", bases: shared, id: "slow-bcrypt"},
		{name: "unknown id, two gateways sharing redis", bases: shared, id: "nobody"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bases := tc.bases(t)
			client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			t.Cleanup(client.CloseIdleConnections)
			var mu sync.Mutex
			counts := map[string]int{}
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < 60; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					status, code, err := postToken(client, bases[i%len(bases)], tc.id, fmt.Sprintf("wrong-%d", i))
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						counts["error"]++
						return
					}
					counts[fmt.Sprintf("%d/%s", status, code)]++
				}()
			}
			close(start)
			wg.Wait()
			t.Logf("answers: %v", counts)
			if counts["401/23020"] > 10 || counts["401/23020"] == 0 || counts["401/23020"]+counts["429/23029"] != 60 {
				t.Fatalf("answers %v; want at most 10×401 + 23020 and the rest 429 + 23029", counts)
			}
		})
	}
}

// TestFailureTiming: with SHA-256 and bcrypt clients mixed, a failure for
// an unknown id, a known SHA-256 id and a known bcrypt id takes the same
// time (item 7): medians of 200 interleaved tries each, within a factor 2.
// The gateway's bcrypt client has cost 4 (~1 ms): without the decoy on
// SHA-256 failures, the SHA-256 median is a fraction of the others.
func TestFailureTiming(t *testing.T) {
	g := startGateway(t, gatewayConfig{Extra: "\t\tthrottle off\n\t\tthrottle_client off"})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	ids := []string{"nobody-at-all", appID, readerID}
	times := make([][]time.Duration, len(ids))
	form := func(id string) string { return cc(id, "wrong-secret").Encode() }
	for i := 0; i < 200; i++ {
		for k, id := range ids {
			start := time.Now()
			resp, err := client.Post(g.base+"/outer/token/", "application/x-www-form-urlencoded", strings.NewReader(form(id)))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			times[k] = append(times[k], time.Since(start))
			if resp.StatusCode != 401 {
				t.Fatalf("%s: %d, want 401", id, resp.StatusCode)
			}
		}
	}
	medians := make([]time.Duration, len(ids))
	for k := range ids {
		sort.Slice(times[k], func(a, b int) bool { return times[k][a] < times[k][b] })
		medians[k] = times[k][len(times[k])/2]
	}
	t.Logf("median failure through the gateway: unknown %v, sha256 %v, bcrypt %v", medians[0], medians[1], medians[2])
	for a := range ids {
		for b := a + 1; b < len(ids); b++ {
			if r := float64(medians[a]) / float64(medians[b]); r > 2 || r < 0.5 {
				t.Errorf("median failure %s / %s = %.2f, want within [0.5, 2]", ids[a], ids[b], r)
			}
		}
	}
}

// TestUnknownIDLockout: past `throttle_client`, an unknown id gets the
// same answer as a configured one (item 8), while another id is untouched.
func TestUnknownIDLockout(t *testing.T) {
	g := startGateway(t, gatewayConfig{Extra: "\t\tthrottle off\n\t\tthrottle_client 3 1m"})
	answers := map[string][]string{}
	for _, id := range []string{appID, readerID, "nobody-1"} {
		for i := 0; i < 5; i++ {
			r := g.do(tokenForm(cc(id, "wrong")))
			ra := r.header.Get("Retry-After")
			if ra != "" {
				ra = "set"
			}
			answers[id] = append(answers[id], fmt.Sprintf("%d %s retry=%s", r.status, r.body, ra))
		}
	}
	for _, id := range []string{readerID, "nobody-1"} {
		if strings.Join(answers[id], "\n") != strings.Join(answers[appID], "\n") {
			t.Errorf("%s answers\n%s\nwant, as for %s\n%s", id, strings.Join(answers[id], "\n"), appID, strings.Join(answers[appID], "\n"))
		}
	}
	if !strings.HasPrefix(answers[appID][3], "429 ") || !strings.Contains(answers[appID][3], "23029") || !strings.HasSuffix(answers[appID][3], "retry=set") {
		t.Errorf("4th failure: %s", answers[appID][3])
	}
	expect(t, g.do(tokenForm(cc("nobody-2", "wrong"))), 401, 23020, "")
	// The configured client is locked even with its right secret, until the
	// window ends; so is the unknown id, whatever it sends.
	expect(t, g.do(tokenForm(cc(appID, appSecret))), 429, 23029, "")
	expect(t, g.do(tokenForm(cc("nobody-1", appSecret))), 429, 23029, "")
	if logs := g.caddy.Logs(); strings.Contains(logs, "nobody-1") {
		t.Errorf("an unknown id reached the logs as it is")
	}
}
