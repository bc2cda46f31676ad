package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/examples/internal/demo"
	"github.com/onboardkit/onboard/examples/internal/demotest"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

// start runs the example on a free port with an SQLite file of the
// test's, until the test ends.
func start(t *testing.T) *app {
	t.Helper()
	a, _ := demotest.Start(t, nil, run)
	return a
}

// TestChiRoutes runs both providers' flows through the chi example's
// routes with a cookie-jar browser, reads the results from the page,
// deletes a connection, and pages through many.
func TestChiRoutes(t *testing.T) {
	a := start(t)
	demotest.SameHost(t, a.URL)
	ctx := context.Background()
	b := onboardtest.NewBrowser(t)
	require.Contains(t, b.Get(a.URL+"/").Body, `id="signin"`)
	res := b.PostForm(a.URL+"/login", url.Values{"user": {"alice"}})
	require.Equal(t, http.StatusSeeOther, res.Code)

	connect := func(provider, source, credential string) string {
		res := b.PostForm(a.URL+"/connect/"+provider+"/start", url.Values{"source": {source}})
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
		var back string
		var err error
		if provider == "cdata" {
			back, err = cdatatest.Fill(ctx, b.Client, res.Location, "", credential)
		} else {
			back, err = fivetrantest.Fill(ctx, b.Client, res.Location, credential)
		}
		require.NoError(t, err)
		res = b.Get(back)
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
		return b.Get(a.URL + res.Location).Body
	}
	page := connect("cdata", "Salesforce", "pw")
	require.Contains(t, page, "Connected. The cdata connection")
	page = connect("fivetran", "HubSpot", "token")
	require.Contains(t, page, "Connected. The fivetran connection")
	require.Equal(t, 2, strings.Count(page, `class="badge connected"`), page)
	page = connect("fivetran", "Stripe", "fail")
	require.Contains(t, page, "Try again with working credentials")
	require.Equal(t, 2, strings.Count(page, `class="badge connected"`), "a broken Fivetran setup attaches nothing")

	// A crafted link claiming success shows nothing of the kind.
	page = b.Get(a.URL + "/?onboard_status=connected&onboard_provider=evil&onboard_connection=x").Body
	require.NotContains(t, page, "Connected.")
	require.NotContains(t, page, "evil")

	conns, err := a.Onboarder.Connections(ctx, "acme", 0, 10)
	require.NoError(t, err)
	res = b.PostForm(a.URL+"/connections/delete", url.Values{"provider": {conns[0].Provider}, "id": {conns[0].ID}})
	require.Equal(t, http.StatusSeeOther, res.Code)
	require.Contains(t, b.Get(a.URL+"/").Body, "The connection was deleted.")
	left, err := a.Onboarder.Connections(ctx, "acme", 0, 10)
	require.NoError(t, err)
	require.Len(t, left, 1)

	// Another tenant's connection, or none at all: nothing is deleted,
	// and the page says so.
	eve := onboardtest.NewBrowser(t)
	eve.PostForm(a.URL+"/login", url.Values{"user": {"eve"}})
	for _, id := range []string{left[0].ID, "no-such-connection"} {
		res = eve.PostForm(a.URL+"/connections/delete", url.Values{"provider": {left[0].Provider}, "id": {id}})
		require.Equal(t, http.StatusSeeOther, res.Code)
		require.Contains(t, eve.Get(a.URL+"/").Body, "That connection does not exist")
	}
	still, err := a.Onboarder.Connections(ctx, "acme", 0, 10)
	require.NoError(t, err)
	require.Len(t, still, 1)

	// Signed out, onboard's start refuses.
	b.PostForm(a.URL+"/logout", nil)
	require.Equal(t, http.StatusUnauthorized, b.PostForm(a.URL+"/connect/cdata/start", nil).Code)
}

// TestConnectionsArePaged: the connections page lists a page at a time.
func TestConnectionsArePaged(t *testing.T) {
	a := start(t)
	b := onboardtest.NewBrowser(t)
	b.PostForm(a.URL+"/login", url.Values{"user": {"eve"}})
	for i := range demo.PageSize + 3 {
		res := b.PostForm(a.URL+"/connect/cdata/start", url.Values{"source": {"Salesforce"}})
		require.Equal(t, http.StatusSeeOther, res.Code, "start %d: %s", i, res.Body)
		back, err := cdatatest.Fill(context.Background(), b.Client, res.Location, "", "pw")
		require.NoError(t, err)
		require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
	}
	first := b.Get(a.URL + "/").Body
	require.Equal(t, demo.PageSize, strings.Count(first, `class="badge connected"`))
	require.Contains(t, first, `href="/?page=1"`)
	second := b.Get(a.URL + "/?page=1").Body
	require.Equal(t, 3, strings.Count(second, `class="badge connected"`))
	require.NotContains(t, second, `id="next"`)
	c, err := a.Onboarder.Connections(context.Background(), "globex", 0, 1)
	require.NoError(t, err)
	require.Equal(t, onboard.Connected, c[0].State)
}
