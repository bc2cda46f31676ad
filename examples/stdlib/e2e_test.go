package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/examples/internal/demo"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

// chrome returns the Chromium binary, or skips the test (fails it when
// ONBOARD_E2E_REQUIRED=1, as CI sets).
func chrome(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ONBOARD_CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found: install it (Debian: apt-get update && apt-get install -y chromium) " +
		"or set ONBOARD_CHROME, then run go test ./examples/stdlib"
	if os.Getenv("ONBOARD_E2E_REQUIRED") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// stepTimeout bounds each step of TestBrowserEndToEnd: each takes well
// under a second.
const stepTimeout = 20 * time.Second

// row is a row of the page's connections table.
type row struct {
	Provider string `json:"provider"`
	ID       string `json:"id"`
	Source   string `json:"source"`
	State    string `json:"state"`
}

// flashView is the page's flash message.
type flashView struct {
	Class string `json:"class"`
	Text  string `json:"text"`
}

const (
	rowsJS = `Array.from(document.querySelectorAll("#connections tbody tr")).map(function (tr) {
  return {provider: tr.cells[0].textContent.trim(), id: tr.cells[1].querySelector("small").textContent.trim(),
    source: tr.cells[2].textContent.trim(), state: tr.cells[3].querySelector(".badge").textContent.trim()};
})`
	flashJS = `(function () { var f = document.getElementById("flash");
  return f ? {class: f.className, text: f.textContent} : null; })()`
)

// otherSite is a page of another site that opens the app's start URL in
// a popup, as a page a phishing mail links to would, and records every
// message any window posts to it. Once the popup has closed, it posts a
// control message to itself.
func otherSite(appURL string) http.Handler {
	start, _ := json.Marshal(appURL + "/connect/cdata/start?source=Salesforce&display=popup")
	page := `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Another site</title></head>
<body><h1>Another site</h1><button id="open">Connect your Salesforce</button>
<p id="closed" hidden>The popup closed.</p><p id="done" hidden>Done.</p>
<p>Messages received:</p><pre id="log">none</pre>
<script>
window.received = [];
window.addEventListener("message", function (ev) {
  window.received.push({origin: ev.origin, data: ev.data});
  document.getElementById("log").textContent = JSON.stringify(window.received, null, 1);
  if (ev.source === window && ev.data && ev.data.type === "control") document.getElementById("done").hidden = false;
});
document.getElementById("open").addEventListener("click", function () {
  var popup = window.open(` + string(start) + `, "other", "width=760,height=820");
  var timer = setInterval(function () {
    if (!popup.closed) return;
    clearInterval(timer);
    document.getElementById("closed").hidden = false;
    window.postMessage({type: "control"}, location.origin);
  }, 10);
});
</script></body></html>`
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	})
}

// e2e drives the browser for TestBrowserEndToEnd.
type e2e struct {
	t        *testing.T
	ctx      context.Context // the main tab
	shots    string
	n        int
	cdata    *cdatatest.Server
	fivetran *fivetrantest.Server
}

// step runs actions in ctx and fails the test with the step's name; a
// step that waits for what never comes fails after stepTimeout.
func (e *e2e) step(ctx context.Context, name string, actions ...chromedp.Action) {
	e.t.Helper()
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	require.NoError(e.t, chromedp.Run(ctx, actions...), name)
	e.t.Logf("%-55s %4d ms", name, time.Since(began).Milliseconds())
}

// shot saves a screenshot of the page of the context it runs in.
func (e *e2e) shot(name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var png []byte
		if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
			return err
		}
		e.n++
		return os.WriteFile(filepath.Join(e.shots, fmt.Sprintf("%02d-%s.png", e.n, name)), png, 0o644)
	})
}

// page reads the flash, the connections table and the URL of the page in
// ctx.
func (e *e2e) page(ctx context.Context) (*flashView, []row, string) {
	e.t.Helper()
	var f *flashView
	var rows []row
	var loc string
	require.NoError(e.t, chromedp.Run(ctx, chromedp.Evaluate(flashJS, &f), chromedp.Evaluate(rowsJS, &rows),
		chromedp.Location(&loc)))
	return f, rows, loc
}

// providersHold checks that the emulators hold exactly the connections
// the table lists: nothing a flow made is left behind at a provider.
func (e *e2e) providersHold(rows []row) {
	e.t.Helper()
	var cdataIDs, fivetranIDs, listedCData, listedFivetran []string
	for _, c := range e.cdata.AllConnections() {
		cdataIDs = append(cdataIDs, c.ID)
	}
	for _, c := range e.fivetran.All() {
		fivetranIDs = append(fivetranIDs, c.ID)
	}
	for _, r := range rows {
		switch r.Provider {
		case "cdata":
			listedCData = append(listedCData, r.ID)
		case "fivetran":
			listedFivetran = append(listedFivetran, r.ID)
		}
	}
	require.ElementsMatch(e.t, listedCData, cdataIDs, "CData holds exactly the listed connections")
	require.ElementsMatch(e.t, listedFivetran, fivetranIDs, "Fivetran holds exactly the listed connections")
}

// popup runs click in ctx, which opens a popup, waits until the popup
// shows a page whose URL starts with prefix, and returns a context
// attached to the popup. Cancel it once the popup has closed.
func (e *e2e) popup(ctx context.Context, name string, click chromedp.Action, prefix string) (context.Context, context.CancelFunc, target.ID) {
	e.t.Helper()
	opened := chromedp.WaitNewTarget(ctx, func(info *target.Info) bool { return info.Type == "page" })
	e.step(ctx, name, click)
	var id target.ID
	select {
	case id = <-opened:
	case <-time.After(stepTimeout):
		e.t.Fatalf("%s: no popup opened", name)
	}
	// Attaching to a page that is navigating fails: attach once the
	// popup has left about:blank for the page.
	e.targets(name+": the popup shows "+prefix, func(targets []*target.Info) bool {
		return slices.ContainsFunc(targets, func(i *target.Info) bool {
			return i.TargetID == id && strings.HasPrefix(i.URL, prefix)
		})
	})
	pctx, cancel := chromedp.NewContext(ctx, chromedp.WithTargetID(id))
	// Attach under pctx itself: a step's shorter context would end the
	// attachment with the step.
	if err := chromedp.Run(pctx); err != nil {
		cancel()
		e.t.Fatalf("%s: attach to the popup: %v", name, err)
	}
	return pctx, cancel, id
}

// closed waits until the browser no longer has target id: the popup
// closed itself.
func (e *e2e) closed(id target.ID) {
	e.t.Helper()
	e.targets("the popup closes itself", func(targets []*target.Info) bool {
		return !slices.ContainsFunc(targets, func(i *target.Info) bool { return i.TargetID == id })
	})
}

// targets waits, up to stepTimeout, until the browser's targets satisfy
// cond.
func (e *e2e) targets(what string, cond func([]*target.Info) bool) {
	e.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		targets, err := chromedp.Targets(e.ctx)
		require.NoError(e.t, err, what)
		if cond(targets) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not after %v", what, stepTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rowXPath selects the table row of connection id.
func rowXPath(id string) string {
	return fmt.Sprintf(`//table[@id="connections"]//tr[td/small[normalize-space()=%q]]`, id)
}

// added returns the rows of now that before does not have.
func added(before, now []row) []row {
	var out []row
	for _, r := range now {
		if !slices.ContainsFunc(before, func(b row) bool { return b.Provider == r.Provider && b.ID == r.ID }) {
			out = append(out, r)
		}
	}
	return out
}

// strictCookie gives the browser's cookie name for appURL the attribute
// SameSite=Strict, keeping the rest.
func strictCookie(appURL, name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		cookies, err := network.GetCookies().WithURLs([]string{appURL}).Do(ctx)
		if err != nil {
			return err
		}
		for _, c := range cookies {
			if c.Name != name {
				continue
			}
			set := network.SetCookie(c.Name, c.Value).WithURL(appURL).WithPath(c.Path).WithHTTPOnly(c.HTTPOnly).
				WithSecure(c.Secure).WithSameSite(network.CookieSameSiteStrict)
			if !c.Session {
				expires := cdp.TimeSinceEpoch(time.Unix(int64(c.Expires), 0))
				set = set.WithExpires(&expires)
			}
			return set.Do(ctx)
		}
		return fmt.Errorf("no cookie %s for %s", name, appURL)
	})
}

// waitFlash polls the page in ctx until its flash contains text (a page
// updated in place has no navigation to wait for).
func waitFlash(text string) chromedp.Action {
	q, _ := json.Marshal(text)
	return chromedp.Poll(`((document.getElementById("flash") || {}).textContent || "").indexOf(`+string(q)+`) >= 0`,
		nil, chromedp.WithPollingInterval(20*time.Millisecond))
}

// TestBrowserEndToEnd clicks through the example in headless Chromium:
// connecting through CData and through Fivetran by redirect and in a
// popup, failed setups, a reconnect and a delete; a popup opened by
// another site, which must learn nothing; and a return refused because
// the session cookie is SameSite=Strict. The app is served as
// http://localhost:PORT and the providers' emulators (configured as the
// real providers are, so that the test sees what they hold) as
// http://127.0.0.1:PORT, so every return is a cross-site navigation.
// Screenshots go to ONBOARD_SCREENSHOTS (default a temporary folder).
func TestBrowserEndToEnd(t *testing.T) {
	exe := chrome(t)
	began := time.Now()
	shots := os.Getenv("ONBOARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))

	// The providers: the emulators, as the real accounts are configured.
	key := testutil.RSAKey()
	keyFile := filepath.Join(t.TempDir(), "cdata.pem")
	require.NoError(t, os.WriteFile(keyFile,
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600))
	cdataEmu := cdatatest.New(cdatatest.Options{AccountID: demo.EmulatorAccountID, PublicKey: &key.PublicKey})
	fivetranEmu := fivetrantest.New(fivetrantest.Options{APIKey: demo.EmulatorAPIKey, APISecret: demo.EmulatorAPISecret})
	cdataURL, fivetranURL := onboardtest.Serve(t, cdataEmu), onboardtest.Serve(t, fivetranEmu)
	a := start(t, map[string]string{
		"CDATA_ACCOUNT_ID": demo.EmulatorAccountID, "CDATA_PRIVATE_KEY_FILE": keyFile, "CDATA_BASE_URL": cdataURL + "/api",
		"FIVETRAN_API_KEY": demo.EmulatorAPIKey, "FIVETRAN_API_SECRET": demo.EmulatorAPISecret, "FIVETRAN_BASE_URL": fivetranURL,
	})
	require.True(t, strings.HasPrefix(a.URL, "http://localhost:"), a.URL)
	require.True(t, strings.HasPrefix(cdataURL, "http://127.0.0.1:"), "the providers are another site")
	otherURL := onboardtest.Serve(t, otherSite(a.URL))

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.WindowSize(1200, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		// chromedp turns site isolation off; users' browsers have it on.
		chromedp.Flag("disable-features", "Translate"))
	// No UserDataDir: chromedp makes a profile folder and removes it once
	// Chromium has exited.
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancelTimeout := context.WithTimeout(bctx, 90*time.Second)
	defer cancelTimeout()
	e := &e2e{t: t, ctx: ctx, shots: shots, cdata: cdataEmu, fivetran: fivetranEmu}
	// Start Chromium under ctx itself: a step's shorter context would end
	// it with the step.
	require.NoError(t, chromedp.Run(ctx), "start Chromium")

	var loc string
	e.step(ctx, "sign in",
		chromedp.Navigate(a.URL), chromedp.WaitVisible("#signin"), e.shot("sign-in"),
		chromedp.SetValue("#user", "alice"), chromedp.Click("#signin"),
		chromedp.WaitVisible("#connect-cdata"), e.shot("dashboard"))

	// 1. CData by redirect. A tenant without a CData sub-account yet gets
	// no source list (CData lists sources for a sub-account): the source
	// is picked on CData's page.
	var picked string
	e.step(ctx, "CData: the hosted page, on another site",
		chromedp.Value("#cdata-source", &picked), chromedp.Click("#connect-cdata"),
		chromedp.WaitVisible("#credential"), chromedp.Location(&loc), e.shot("cdata-hosted-page"))
	require.Empty(t, picked)
	require.True(t, strings.HasPrefix(loc, cdataURL+"/oem/user/connections/edit?"), loc)
	e.step(ctx, "CData: pick Salesforce, Save & Test, then Return to",
		chromedp.SetValue("select#dataSource", "Salesforce", chromedp.ByQuery),
		chromedp.SendKeys("#credential", "s3cret"), chromedp.Click("#save"), chromedp.WaitVisible("#result"),
		e.shot("cdata-saved"), chromedp.Click("#return"), chromedp.WaitVisible("#flash"), e.shot("cdata-connected"))
	flash, rows, loc := e.page(ctx)
	require.Equal(t, "flash connected", flash.Class)
	require.Contains(t, flash.Text, "Connected. The cdata connection")
	require.Len(t, rows, 1)
	require.Equal(t, row{"cdata", rows[0].ID, "Salesforce", "connected"}, rows[0])
	back, err := url.Parse(loc)
	require.NoError(t, err)
	require.Equal(t, strings.TrimPrefix(a.URL, "http://"), back.Host)
	require.Equal(t, []string{"onboard_flow"}, slices.Collect(maps.Keys(back.Query())),
		"the app is told the flow, nothing else: %s", loc)
	e.providersHold(rows)
	resultURL := loc

	// The flash is the verified outcome: the same result URL in another
	// browser, signed in as the same user, shows nothing connected.
	other := onboardtest.NewBrowser(t)
	require.Equal(t, http.StatusSeeOther, other.PostForm(a.URL+"/login", url.Values{"user": {"alice"}}).Code)
	res := other.Get(resultURL)
	require.Equal(t, http.StatusOK, res.Code)
	require.Contains(t, res.Body, `<div class="flash failed" id="flash">`)
	require.Contains(t, res.Body, "made in another browser")
	require.NotContains(t, res.Body, "Connected.")
	require.NotContains(t, res.Body, "stopped", "reading a result stops nothing")

	// 2. Fivetran by redirect, then a Fivetran setup whose tests fail.
	e.step(ctx, "Fivetran: the Connect Card",
		chromedp.SetValue("#fivetran-source", "Salesforce"), chromedp.Click("#connect-fivetran"),
		chromedp.WaitVisible("#credential"), chromedp.Location(&loc), e.shot("fivetran-card"))
	require.True(t, strings.HasPrefix(loc, fivetranURL+"/connect-card/setup?"), loc)
	e.step(ctx, "Fivetran: Save & Test",
		chromedp.SendKeys("#credential", "token"), chromedp.Click("#save"), chromedp.WaitVisible("#flash"),
		e.shot("fivetran-connected"))
	before := rows
	flash, rows, _ = e.page(ctx)
	require.Equal(t, "flash connected", flash.Class)
	require.Equal(t, "Connected. The fivetran connection Salesforce is ready.", flash.Text)
	newRows := added(before, rows)
	require.Len(t, newRows, 1)
	require.Equal(t, row{"fivetran", newRows[0].ID, "Salesforce", "connected"}, newRows[0])
	require.Len(t, rows, 2)
	e.providersHold(rows)
	fivetranSalesforce := newRows[0].ID

	var card string
	e.step(ctx, "Fivetran: the setup tests fail",
		chromedp.SetValue("#fivetran-source", "HubSpot"), chromedp.Click("#connect-fivetran"),
		chromedp.WaitVisible("#credential"), chromedp.Location(&card),
		chromedp.SendKeys("#credential", "fail"), chromedp.Click("#save"), chromedp.WaitVisible("#result"),
		e.shot("fivetran-setup-failed"))
	require.Len(t, fivetranEmu.All(), 2, "the broken connection exists at Fivetran while its card is open")
	e.step(ctx, "Fivetran: Close",
		chromedp.Click("#close"), chromedp.WaitVisible("#flash"), e.shot("fivetran-failed"))
	before = rows
	flash, rows, _ = e.page(ctx)
	require.Equal(t, "flash failed", flash.Class)
	require.Contains(t, flash.Text, "Fivetran could not connect")
	require.Equal(t, before, rows, "a failed new Fivetran setup adds nothing")
	e.providersHold(rows) // and the broken connection was deleted at Fivetran
	e.step(ctx, "Fivetran: the failed setup's card is gone",
		chromedp.Navigate(card), chromedp.WaitVisible("#expired"), e.shot("fivetran-card-gone"),
		chromedp.Navigate(a.URL), chromedp.WaitVisible("#connect-cdata"))

	// 3. A CData setup whose test fails, then its reconnect.
	e.step(ctx, "CData: the connection test fails, then Return to",
		chromedp.SetValue("#cdata-source", "HubSpot"), chromedp.Click("#connect-cdata"),
		chromedp.WaitVisible("#credential"), chromedp.SendKeys("#credential", "fail"), chromedp.Click("#save"),
		chromedp.WaitVisible("#result"), e.shot("cdata-test-failed"),
		chromedp.Click("#return"), chromedp.WaitVisible("#flash"), e.shot("cdata-failed"))
	before = rows
	flash, rows, _ = e.page(ctx)
	require.Equal(t, "flash failed", flash.Class)
	require.Contains(t, flash.Text, "connection test failed")
	newRows = added(before, rows)
	require.Len(t, newRows, 1)
	require.Equal(t, row{"cdata", newRows[0].ID, "HubSpot", "failed"}, newRows[0])
	e.providersHold(rows)
	hubspot := newRows[0].ID

	e.step(ctx, "CData: Reconnect the failed connection",
		chromedp.Click(rowXPath(hubspot)+"//a[normalize-space()='Reconnect']", chromedp.BySearch),
		chromedp.WaitVisible("#credential"), chromedp.Location(&loc), e.shot("cdata-reconnect"),
		chromedp.SendKeys("#credential", "s3cret"), chromedp.Click("#save"), chromedp.WaitVisible("#result"),
		chromedp.Click("#return"), chromedp.WaitVisible("#flash"), e.shot("cdata-reconnected"))
	require.True(t, strings.HasPrefix(loc, cdataURL+"/oem/user/connections/edit?"), loc)
	before = rows
	flash, rows, _ = e.page(ctx)
	require.Equal(t, "flash connected", flash.Class)
	require.Contains(t, flash.Text, "Connected. The cdata connection")
	require.Len(t, rows, len(before), "a reconnect adds no row")
	i := slices.IndexFunc(rows, func(r row) bool { return r.ID == hubspot })
	require.GreaterOrEqual(t, i, 0)
	require.Equal(t, row{"cdata", hubspot, "HubSpot", "connected"}, rows[i], "the same row, connected")
	e.providersHold(rows)

	// 4. Delete.
	e.step(ctx, "delete the Fivetran connection",
		chromedp.Click(rowXPath(fivetranSalesforce)+"//button", chromedp.BySearch),
		// The page being left has a #flash too: wait for the new one.
		chromedp.WaitVisible("#flash.info", chromedp.ByQuery), e.shot("deleted"))
	before = rows
	flash, rows, _ = e.page(ctx)
	require.Contains(t, flash.Text, "deleted")
	require.Len(t, rows, len(before)-1)
	require.False(t, slices.ContainsFunc(rows, func(r row) bool { return r.ID == fivetranSalesforce }))
	e.providersHold(rows)

	// 5. Popups: the main page is updated in place, never navigated.
	for _, p := range []struct{ provider, source, credential string }{
		{"cdata", "Snowflake", "s3cret"},
		{"fivetran", "Stripe", "token"},
	} {
		var mainURL, mark string
		e.step(ctx, p.provider+": before the popup",
			chromedp.Location(&mainURL), chromedp.Evaluate(`window.e2eMark = "not navigated"`, nil),
			chromedp.SetValue("#"+p.provider+"-source", p.source))
		hosted := map[string]string{"cdata": cdataURL + "/oem/", "fivetran": fivetranURL + "/connect-card/"}[p.provider]
		pctx, cancelPopup, id := e.popup(ctx, p.provider+": In a popup", chromedp.Click("#popup-"+p.provider), hosted)
		finish := []chromedp.Action{chromedp.WaitVisible("#credential"), chromedp.Location(&loc),
			e.shot(p.provider + "-popup"), chromedp.SendKeys("#credential", p.credential), chromedp.Click("#save")}
		if p.provider == "cdata" { // Fivetran's card returns once the tests pass; CData's page waits
			finish = append(finish, chromedp.WaitVisible("#result"), chromedp.Click("#return"))
		}
		e.step(pctx, p.provider+": the hosted page in the popup", finish...)
		require.True(t, strings.HasPrefix(loc, hosted), loc)
		e.closed(id)
		cancelPopup()
		e.step(ctx, p.provider+": the main page updates in place",
			waitFlash("Connected. The "+p.provider+" connection"),
			chromedp.Location(&loc), chromedp.Evaluate(`window.e2eMark`, &mark), e.shot(p.provider+"-popup-connected"))
		require.Equal(t, mainURL, loc, "the main page did not navigate")
		require.Equal(t, "not navigated", mark, "the main page did not reload")
		before = rows
		flash, rows, _ = e.page(ctx)
		require.Equal(t, "flash connected", flash.Class)
		newRows = added(before, rows)
		require.Len(t, newRows, 1)
		require.Equal(t, row{p.provider, newRows[0].ID, p.source, "connected"}, newRows[0])
		e.providersHold(rows)
	}

	// 6. A popup opened by another site: the start asks for confirmation
	// first, and the verified outcome is posted to the app's origin only.
	// What changes anything at a provider is a POST (a link minted, a
	// connection or sub-account created), a PATCH or a DELETE; the
	// runner's refresh may GET at any time.
	changes := func() int {
		n := 0
		for _, r := range append(cdataEmu.API.Requests(), fivetranEmu.API.Requests()...) {
			if r.Method != http.MethodGet {
				n++
			}
		}
		return n
	}
	calls := changes()
	e.step(ctx, "another site", chromedp.Navigate(otherURL), chromedp.WaitVisible("#open"), e.shot("another-site"))
	pctx, cancelPopup, id := e.popup(ctx, "another site opens the start in a popup", chromedp.Click("#open"),
		a.URL+"/connect/cdata/start?")
	var confirm string
	e.step(pctx, "the start asks for confirmation",
		chromedp.WaitVisible(`//button[normalize-space()="Continue"]`, chromedp.BySearch),
		chromedp.Location(&loc), chromedp.Text("body", &confirm), e.shot("confirm-in-popup"))
	require.True(t, strings.HasPrefix(loc, a.URL+"/connect/cdata/start?"), loc)
	require.Contains(t, confirm, "Connect Salesforce?")
	require.Equal(t, calls, changes(), "no provider call before the user confirms")
	held := cdataEmu.AllConnections()
	e.step(pctx, "Continue, then the hosted page",
		chromedp.Click(`//button[normalize-space()="Continue"]`, chromedp.BySearch),
		chromedp.WaitVisible("#credential"), chromedp.Location(&loc), e.shot("another-site-popup-hosted-page"),
		chromedp.SendKeys("#credential", "s3cret"), chromedp.Click("#save"), chromedp.WaitVisible("#result"),
		chromedp.Click("#return"))
	require.True(t, strings.HasPrefix(loc, cdataURL+"/oem/user/connections/edit?"), loc)
	require.Greater(t, changes(), calls, "the start reached CData once confirmed")
	e.closed(id)
	cancelPopup()
	// The popup closed itself right after posting the outcome to the
	// app's origin. Once the other site's page has seen it closed, it
	// posts a control message to itself: by the time that one is
	// received, the popup's would have been too.
	var received []map[string]any
	e.step(ctx, "the other site received nothing",
		chromedp.WaitVisible("#done"), chromedp.Evaluate(`window.received`, &received),
		e.shot("another-site-received-nothing"))
	require.Equal(t, []map[string]any{{"origin": otherURL, "data": map[string]any{"type": "control"}}}, received,
		"the other site received its own control message, nothing else")
	made := cdataEmu.AllConnections()
	require.Len(t, made, len(held)+1, "the flow made one connection")
	conn := made[slices.IndexFunc(made, func(c cdatatest.Held) bool {
		return !slices.ContainsFunc(held, func(h cdatatest.Held) bool { return h.ID == c.ID })
	})]
	stored, err := a.Onboarder.Connections(t.Context(), "acme", 0, 100)
	require.NoError(t, err)
	i = slices.IndexFunc(stored, func(c onboard.Connection) bool { return c.ID == conn.ID })
	require.GreaterOrEqual(t, i, 0, "the connection is stored")
	require.Equal(t, onboard.Owner{Tenant: "acme", User: "alice"}, stored[i].Owner, "it is the user's")
	require.Equal(t, onboard.Connected, stored[i].State)
	e.step(ctx, "the app lists it", chromedp.Navigate(a.URL), chromedp.WaitVisible("#connections"),
		e.shot("another-site-connection-listed"))
	before = rows
	_, rows, _ = e.page(ctx)
	require.Equal(t, []row{{"cdata", conn.ID, "Salesforce", "connected"}}, added(before, rows))
	e.providersHold(rows)

	// 7. A SameSite=Strict session cookie is not sent with the provider's
	// cross-site redirect back: the return is refused, and what the flow
	// made is deleted at the provider. The example's cookie is Lax (it
	// must be); the browser's copy is made Strict, as an app that sets it
	// Strict would have it, while the user is on the provider's page.
	held = cdataEmu.AllConnections()
	var sameSite []network.CookieSameSite
	e.step(ctx, "Strict cookie: the hosted page, saved",
		chromedp.SetValue("#cdata-source", "PostgreSQL"), chromedp.Click("#connect-cdata"),
		chromedp.WaitVisible("#credential"), chromedp.SendKeys("#credential", "s3cret"), chromedp.Click("#save"),
		chromedp.WaitVisible("#result"), strictCookie(a.URL, a.Sessions.Cookie.Name),
		chromedp.ActionFunc(func(ctx context.Context) error {
			cookies, err := network.GetCookies().WithURLs([]string{a.URL}).Do(ctx)
			for _, c := range cookies {
				sameSite = append(sameSite, c.SameSite)
			}
			return err
		}))
	require.Equal(t, []network.CookieSameSite{network.CookieSameSiteStrict}, sameSite)
	require.Len(t, cdataEmu.AllConnections(), len(held)+1, "Save & Test made a connection")
	var body string
	e.step(ctx, "Strict cookie: the return is refused",
		chromedp.Click("#return"), chromedp.WaitVisible(`//h1[contains(., "403")]`, chromedp.BySearch),
		chromedp.Location(&loc), chromedp.Text("body", &body), e.shot("strict-cookie-refused"))
	require.True(t, strings.HasPrefix(loc, a.URL+"/connect/cdata/return/"), loc)
	require.Contains(t, body, "started in another browser")
	require.Equal(t, held, cdataEmu.AllConnections(), "what the flow made was deleted at CData")
	e.step(ctx, "Strict cookie: the app lists nothing new", chromedp.Navigate(a.URL), chromedp.WaitVisible("#connections"))
	before = rows
	_, rows, _ = e.page(ctx)
	require.Equal(t, before, rows)
	e.providersHold(rows)

	t.Logf("%d screenshots in %s; %.1f s in all", e.n, shots, time.Since(began).Seconds())
}
