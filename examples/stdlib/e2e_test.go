package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/examples/internal/demo"
)

// chrome returns the Chromium binary, or skips the test (fails it when
// ONBOARD_E2E_REQUIRED=1, as CI sets).
func chrome(t *testing.T) string {
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

// TestBrowserEndToEnd clicks through the example in headless Chromium:
// sign in, connect through CData and through Fivetran, a failed setup
// and its reconnect, a delete, and a return refused when the session
// cookie is SameSite=Strict. The
// app is served as http://localhost:PORT and the emulators as
// http://127.0.0.1:PORT, so every return is a cross-site navigation.
// Screenshots go to ONBOARD_SCREENSHOTS (default a temporary folder).
func TestBrowserEndToEnd(t *testing.T) {
	exe := chrome(t)
	shots := os.Getenv("ONBOARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))

	cfg := demo.Config{Addr: "127.0.0.1:0", SQLitePath: filepath.Join(t.TempDir(), "e2e.db")}
	srv, err := demo.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), routes)
	require.NoError(t, err)
	defer srv.Close()
	app := srv.App
	cfg.PublicURL = srv.URL
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	require.True(t, strings.HasPrefix(app.Emulators["cdata"], "http://127.0.0.1:"), "emulators on another site")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1200, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true))
	// No UserDataDir: chromedp makes a profile folder and removes it once
	// Chromium has exited.
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var png []byte
			if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		})
	}
	var loc, flash, table string
	run := func(step string, actions ...chromedp.Action) {
		t.Helper()
		require.NoError(t, chromedp.Run(ctx, actions...), step)
	}

	run("sign in",
		chromedp.Navigate(cfg.PublicURL), chromedp.WaitVisible("#signin"), shot("01-sign-in"),
		chromedp.SetValue("#user", "alice"), chromedp.Click("#signin"),
		chromedp.WaitVisible("#connect-cdata"), shot("02-dashboard"))

	run("CData: hosted page on another site",
		chromedp.SetValue("#cdata-source", "Salesforce"), chromedp.Click("#connect-cdata"),
		chromedp.WaitVisible("#credential"), chromedp.Location(&loc), shot("03-cdata-add-connection"))
	require.True(t, strings.HasPrefix(loc, app.Emulators["cdata"]+"/oem/user/connections/edit?"), loc)
	run("CData: Save & Test, Return to",
		chromedp.SendKeys("#credential", "s3cret"), chromedp.Click("#save"),
		chromedp.WaitVisible("#result"), shot("04-cdata-saved"),
		chromedp.Click("#return"), chromedp.WaitVisible("#flash"),
		chromedp.Text("#flash", &flash), chromedp.Text("#connections", &table), chromedp.Location(&loc),
		shot("05-cdata-connected"))
	require.Contains(t, flash, "Connected")
	require.Contains(t, table, "Salesforce")
	require.Contains(t, table, "connected")
	back, err := url.Parse(loc)
	require.NoError(t, err)
	require.Equal(t, "localhost:"+port, back.Host)
	require.Equal(t, "connected", back.Query().Get("onboard_status"), loc)

	run("Fivetran: Connect Card",
		chromedp.SetValue("#fivetran-source", "salesforce"), chromedp.Click("#connect-fivetran"),
		chromedp.WaitVisible("#credential"), chromedp.Location(&loc), shot("06-fivetran-connect-card"))
	require.True(t, strings.HasPrefix(loc, app.Emulators["fivetran"]+"/connect-card/setup?"), loc)
	run("Fivetran: Save & Test",
		chromedp.SendKeys("#credential", "token"), chromedp.Click("#save"),
		chromedp.WaitVisible("#flash"), chromedp.Text("#flash", &flash), chromedp.Text("#connections", &table),
		shot("07-fivetran-connected"))
	require.Contains(t, flash, "Connected. The fivetran connection")
	require.Equal(t, 2, strings.Count(table, "connected"))

	run("Fivetran: failing setup tests, then Close",
		chromedp.SetValue("#fivetran-source", "hubspot"), chromedp.Click("#connect-fivetran"),
		chromedp.WaitVisible("#credential"), chromedp.SendKeys("#credential", "fail"), chromedp.Click("#save"),
		chromedp.WaitVisible("#result"), shot("08-fivetran-setup-failed"),
		chromedp.Click("#close"), chromedp.WaitVisible("#flash"), chromedp.Text("#flash", &flash),
		chromedp.Text("#connections", &table), shot("09-fivetran-failed"))
	require.Contains(t, flash, "test failed")
	require.Contains(t, table, "failed")

	// The failed connection is the newest, the first row: reconnect it.
	run("Fivetran: reconnect the failed connection",
		chromedp.Click("#connections tbody tr:first-child a", chromedp.ByQuery),
		chromedp.WaitVisible("#credential"), chromedp.Location(&loc),
		chromedp.SendKeys("#credential", "token"), chromedp.Click("#save"),
		chromedp.WaitVisible("#flash"), chromedp.Text("#flash", &flash), chromedp.Text("#connections", &table),
		shot("10-fivetran-reconnected"))
	require.True(t, strings.HasPrefix(loc, app.Emulators["fivetran"]+"/connect-card/setup?"), loc)
	require.Contains(t, flash, "Connected")
	require.Equal(t, 3, strings.Count(table, "connected"))
	require.NotContains(t, table, "failed")

	run("delete a connection",
		chromedp.Click("#connections tbody tr:first-child button", chromedp.ByQuery),
		// The page being left has a #flash too: wait for the new one.
		chromedp.WaitVisible("#flash.info", chromedp.ByQuery),
		chromedp.Text("#flash", &flash), chromedp.Text("#connections", &table),
		shot("11-deleted"))
	require.Contains(t, flash, "deleted")
	require.Equal(t, 2, strings.Count(table, "connected"))

	// The same cross-site return with a SameSite=Strict session cookie:
	// the browser does not send it, so the return is refused.
	app.Sessions.Cookie.SameSite = http.SameSiteStrictMode
	var body string
	run("Strict cookie: sign in again to get the new cookie",
		chromedp.Click("#logout"), chromedp.WaitVisible("#signin"),
		chromedp.SetValue("#user", "bob"), chromedp.Click("#signin"), chromedp.WaitVisible("#connect-cdata"))
	run("Strict cookie: CData hosted page",
		chromedp.Click("#connect-cdata"), chromedp.WaitVisible("#credential"),
		chromedp.SendKeys("#credential", "s3cret"), chromedp.Click("#save"), chromedp.WaitVisible("#result"))
	run("Strict cookie: the return is refused",
		chromedp.Click("#return"), chromedp.WaitNotPresent("#return"), chromedp.WaitReady("body"), chromedp.Location(&loc), chromedp.Text("body", &body),
		shot("12-strict-cookie-refused"))
	require.True(t, strings.HasPrefix(loc, cfg.PublicURL+"/connect/cdata/return/"), loc)
	require.Contains(t, body, "403")
	require.Contains(t, body, "started in another browser")
	t.Logf("screenshots in %s", shots)
}
