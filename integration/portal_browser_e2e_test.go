package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/outergate/outergate/integration/legacy"
)

// cspRecorder collects the page's Content-Security-Policy violations; the
// browser runs it before any script of the page.
const cspRecorder = `window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});`

// TestPortalInBrowser loads the developer portal from the built binary in
// headless Chromium, checks that it lists every operation of the served
// document, obtains a client-credentials token through the console's
// Authorize dialog, calls a device route against the demo backend from the
// page, and checks the rendered answer. The page must raise no CSP
// violation. The screenshot is saved in the test's temp dir (and at
// $OUTERGATE_PORTAL_SCREENSHOT when set).
func TestPortalInBrowser(t *testing.T) {
	chromium := findChromium(t)
	g := startGateway(t, gatewayConfig{})
	want := servedOperations(t, g)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.WindowSize(1280, 1500),
		chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // stops the browser process it started
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 120*time.Second)
	t.Cleanup(cancelTimeout)
	if err := chromedp.Do(ctx); err != nil { // starts the browser on ctx, not on a step's
		t.Fatalf("starting chromium: %v", err)
	}
	// step runs actions with a bound of their own, and on failure saves
	// what the page showed.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			if shot, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
				file := filepath.Join(t.TempDir(), "failed.png")
				_ = os.WriteFile(file, shot, 0o644)
				t.Logf("page when %s failed: %s", what, file)
				if dst := os.Getenv("OUTERGATE_PORTAL_SCREENSHOT"); dst != "" {
					_ = os.WriteFile(dst, shot, 0o644)
				}
			}
			t.Fatalf("%s: %v", what, err)
		}
	}

	const op = "#operations-Devices-getDeviceInfo"
	step("loading the portal",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspRecorder})
			return err
		}),
		chromedp.Navigate(g.base+portalPath),
		chromedp.WaitVisible(chromedp.CSS(`.opblock`)),
	)
	listed, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll(".opblock")].map(e =>
		e.querySelector(".opblock-summary-method").textContent + " " +
		e.querySelector(".opblock-summary-path").getAttribute("data-path"))`))
	if err != nil {
		t.Fatalf("listing the operations: %v", err)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("the page lists\n  %v\nthe document has\n  %v", listed, want)
	}

	// The console's Authorize dialog: client credentials against the
	// standard token endpoint, typed in as an integrator would.
	step("authorizing in the console",
		chromedp.Click(chromedp.CSS(`button.btn.authorize`)),
		chromedp.WaitVisible(chromedp.CSS(`#client_id_clientCredentials`)),
		chromedp.SendKeys(chromedp.CSS(`#client_id_clientCredentials`), appID),
		chromedp.SendKeys(chromedp.CSS(`#client_secret_clientCredentials`), appSecret),
		chromedp.Click(chromedp.CSS(`button[aria-label="Apply given OAuth2 credentials"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[aria-label="Remove authorization"]`)),
		chromedp.Click(chromedp.CSS(`button.close-modal`)),
		chromedp.WaitNotPresent(chromedp.CSS(`.dialog-ux`)),
	)

	// Try it: the device route, called from the page with the token. The
	// parameter comes filled in with the document's example, the demo
	// backend's online device.
	step("opening the device route",
		chromedp.Click(chromedp.CSS(op+` .opblock-summary-control`)),
		chromedp.WaitVisible(chromedp.CSS(op+` tr[data-param-name="deviceid"] input`)),
	)
	prefilled, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(op+` tr[data-param-name="deviceid"] input`)))
	if err != nil || prefilled != legacy.DeviceOnline {
		t.Fatalf("deviceid filled in with %q (%v), want the example %q", prefilled, err, legacy.DeviceOnline)
	}
	step("trying the device route",
		chromedp.Click(chromedp.CSS(op+` button.execute`)),
		chromedp.WaitVisible(chromedp.CSS(op+` .live-responses-table tbody .response-col_status`)),
	)
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return v
	}
	status := text(op + ` .live-responses-table tbody .response-col_status`)
	body := text(op + ` .live-responses-table .response-col_description pre`)
	requestURL := text(op + ` .request-url pre`)
	if strings.TrimSpace(status) != "200" {
		t.Errorf("rendered status %q, want 200 (body %s)", status, body)
	}
	for _, want := range []string{`"message": "Device info"`, `"code": 0`, `"online": true`, `"mac": "agxhl0012ab"`} {
		if !strings.Contains(body, want) {
			t.Errorf("rendered answer lacks %s:\n%s", want, body)
		}
	}
	if !strings.Contains(requestURL, "deviceid="+legacy.DeviceOnline) {
		t.Errorf("request URL %q", requestURL)
	}
	// The call went through the gateway with the console's token: the
	// backend saw the verified client, and no credentials.
	seen := g.backend.Requests()
	if len(seen) == 0 {
		t.Fatal("the backend saw no request")
	}
	last := seen[len(seen)-1]
	if last.Path != "/outer/device/info/" || last.Header.Get("X-Outer-Client-Id") != appID || last.Header.Get("Authorization") != "" {
		t.Errorf("backend saw %s with client %q, Authorization %q", last.Path, last.Header.Get("X-Outer-Client-Id"), last.Header.Get("Authorization"))
	}

	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__cspViolations`))
	if err != nil {
		t.Fatal(err)
	}
	if len(violations) > 0 {
		t.Errorf("CSP violations: %v", violations)
	}
	// Offline: every resource the page loaded came from the gateway.
	resources, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`performance.getEntriesByType("resource").map(e => e.name)`))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range resources {
		if !strings.HasPrefix(u, g.base+"/") {
			t.Errorf("the page loaded %s, not from the gateway", u)
		}
	}
	if len(resources) < 4 {
		t.Errorf("resources loaded: %v", resources)
	}
	// The page keeps no credentials: nothing of the secret in cookies or
	// web storage.
	kept, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage)`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(kept, appSecret) || strings.Contains(kept, "access_token") || strings.Contains(kept, appID) {
		t.Errorf("the page kept credentials: %s", kept)
	}

	// Two pictures: the whole page, and the window on the device route
	// with the console's answer (the one README shows).
	full, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	step("scrolling to the device routes",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#operations-Devices-getDeviceInfo").scrollIntoView()`))
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"portal-full.png": full, "portal.png": shot} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots: %s (%d bytes), %s", filepath.Join(dir, "portal.png"), len(shot), filepath.Join(dir, "portal-full.png"))
	if dst := os.Getenv("OUTERGATE_PORTAL_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// findChromium finds Debian's Chromium; CI (OUTERGATE_REQUIRE_CHROMIUM=1)
// fails without it, elsewhere the test is skipped.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("OUTERGATE_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("chromium not found and OUTERGATE_REQUIRE_CHROMIUM=1")
	}
	t.Skip("chromium not found")
	return ""
}

// servedOperations lists "METHOD path" of every operation in the document
// the gateway serves, sorted.
func servedOperations(t *testing.T, g *gateway) []string {
	t.Helper()
	resp, err := http.Get(g.base + portalPath + "openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for p, item := range doc.Paths {
		for m := range item {
			if slices.Contains([]string{"get", "put", "post", "delete", "patch", "head", "options"}, m) {
				ops = append(ops, strings.ToUpper(m)+" "+p)
			}
		}
	}
	slices.Sort(ops)
	if len(ops) < 10 {
		t.Fatalf("the document lists only %v", ops)
	}
	return ops
}
