package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/examples/internal/demo"
	"github.com/onboardkit/onboard/examples/internal/demotest"
	"github.com/onboardkit/onboard/onboardtest"
)

// start runs the example as `go run` does, on a free port with an SQLite
// file of the test's (unless env names a database), until the test ends.
func start(t *testing.T, env map[string]string) *app {
	t.Helper()
	a, out := demotest.Start(t, env, run)
	require.Contains(t, out, "open "+a.URL)
	return a
}

// TestRunServesAndStops is what `go run ./examples/stdlib` does: it
// serves the app with no configuration and stops when told.
func TestRunServesAndStops(t *testing.T) {
	a := start(t, nil)
	res, err := http.Get(a.URL + "/")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Len(t, a.Emulators, 2, "both providers on their emulators")
	demotest.SameHost(t, a.URL)
}

// TestPartialConfigurationIsAnError: a provider configured halfway is an
// error that names what is missing, never a silent emulator.
func TestPartialConfigurationIsAnError(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CDATA_ACCOUNT_ID": "acct"}, "CDATA_PRIVATE_KEY_FILE missing"},
		{map[string]string{"CDATA_BASE_URL": "https://cdata.example/api"}, "CDATA_ACCOUNT_ID and CDATA_PRIVATE_KEY_FILE missing"},
		{map[string]string{"FIVETRAN_API_SECRET": "s"}, "FIVETRAN_API_KEY missing"},
		{map[string]string{"FIVETRAN_WEBHOOK_SECRET": "w"}, "FIVETRAN_API_KEY and FIVETRAN_API_SECRET missing"},
		{map[string]string{"ONBOARD_PUBLIC_URL": "localhost:8080"}, "not an absolute http(s) URL"},
		{map[string]string{"ONBOARD_FLOW_TTL": "20"}, "ONBOARD_FLOW_TTL \"20\" is not a positive duration"},
		{map[string]string{"ONBOARD_TIMEOUT": "-1s"}, "ONBOARD_TIMEOUT \"-1s\" is not a positive duration"},
		{map[string]string{"ONBOARD_DEMO_USERS": "alice@acme,bob"}, `"bob" is not user@tenant`},
		{map[string]string{"ONBOARD_DEMO_USERS": "alice@acme,alice@globex"}, `user "alice" is named twice`},
	} {
		tt.env["ONBOARD_ADDR"] = "127.0.0.1:0"
		err := run(t.Context(), func(k string) string { return tt.env[k] }, &strings.Builder{}, nil)
		require.ErrorContains(t, err, tt.want)
	}
}

// TestDemoUsers: ONBOARD_DEMO_USERS replaces the demo's accounts on the
// sign-in page and in the sign-in; any other name gets the app's page
// saying what to do.
func TestDemoUsers(t *testing.T) {
	a := start(t, map[string]string{"ONBOARD_DEMO_USERS": "zoe@zeta, yan@zeta"})
	b := onboardtest.NewBrowser(t)
	page := b.Get(a.URL + "/")
	require.Contains(t, page.Body, `<option value="zoe">zoe (zeta)</option><option value="yan">yan (zeta)</option></select>`)
	res := b.PostForm(a.URL+"/login", url.Values{"user": {"alice"}})
	require.Equal(t, http.StatusBadRequest, res.Code)
	require.Contains(t, res.Body, "There is no such demo user. Go back and pick one from the list.")
	require.Equal(t, 1, strings.Count(res.Body, "</html>"))
	res = b.PostForm(a.URL+"/login", url.Values{"user": {"yan"}})
	require.Equal(t, http.StatusSeeOther, res.Code)
	require.Contains(t, b.Get(a.URL+"/").Body, "Connections of zeta")
}

// TestCrossOriginPostGetsTheAppsPage: a state-changing request from
// another site, refused by the standard library's cross-origin
// protection, gets the app's page, not a line of plain text.
func TestCrossOriginPostGetsTheAppsPage(t *testing.T) {
	a := start(t, nil)
	req, err := http.NewRequest(http.MethodPost, a.URL+"/connect/cdata/start", strings.NewReader("source=Salesforce"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	require.Contains(t, res.Header.Get("Content-Type"), "text/html")
	require.Contains(t, string(body), "came from another site")
}

// TestSessionsTableOnAFreshDatabase: instances that start at once on a
// fresh database all create (or find) the sessions table.
func TestSessionsTableOnAFreshDatabase(t *testing.T) {
	raw := os.Getenv("ONBOARD_TEST_POSTGRES_URL")
	if raw == "" {
		t.Skip("ONBOARD_TEST_POSTGRES_URL is not set")
	}
	ctx := t.Context()
	admin, err := pgxpool.New(ctx, raw)
	require.NoError(t, err)
	t.Cleanup(admin.Close) // after the schemas are dropped: cleanups run last first
	for round := range 5 {
		schema := fmt.Sprintf("zz_sessions_%d_%d", os.Getpid(), round)
		_, err := admin.Exec(ctx, "CREATE SCHEMA "+schema)
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
		cfg, err := pgxpool.ParseConfig(raw)
		require.NoError(t, err)
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() {
				_, err := pool.Exec(ctx, demo.SessionsTable)
				errs <- err
			})
		}
		wg.Wait()
		pool.Close()
		close(errs)
		for err := range errs {
			require.NoError(t, err, "round %d", round)
		}
	}
}
