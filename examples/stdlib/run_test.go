package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

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
