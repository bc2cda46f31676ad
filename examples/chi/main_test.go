package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/examples/internal/demo"
	"github.com/onboardkit/onboard/internal/apptest"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

// TestChiRoutes runs both providers' flows through the chi example's
// routes with a cookie-jar client, and deletes a connection.
func TestChiRoutes(t *testing.T) {
	cfg := demo.Config{Addr: "127.0.0.1:0", SQLitePath: filepath.Join(t.TempDir(), "chi.db")}
	srv, err := demo.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), routes)
	require.NoError(t, err)
	defer srv.Close()
	app := srv.App
	cfg.PublicURL = srv.URL

	b := apptest.NewBrowser(t)
	require.Contains(t, b.Get(cfg.PublicURL+"/").Body, `id="signin"`)
	res, err := b.Client.PostForm(cfg.PublicURL+"/login", url.Values{"user": {"alice"}})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)

	start := func(provider, source string) string {
		res := b.Get(cfg.PublicURL + "/connect/" + provider + "/start?source=" + source)
		require.Equal(t, http.StatusFound, res.Code, res.Body)
		return res.Location
	}
	ctx := context.Background()
	back, err := cdatatest.Fill(ctx, b.Client, start("cdata", "Salesforce"), "", "pw")
	require.NoError(t, err)
	res2 := b.Get(back)
	require.Equal(t, http.StatusSeeOther, res2.Code, res2.Body)
	require.Contains(t, res2.Location, "onboard_status=connected")

	back, err = fivetrantest.Fill(ctx, b.Client, start("fivetran", "hubspot"), "token")
	require.NoError(t, err)
	require.Contains(t, b.Get(back).Location, "onboard_status=connected")

	home := b.Get(cfg.PublicURL + "/")
	require.Equal(t, 2, strings.Count(home.Body, `class="badge connected"`), home.Body)

	conns, err := app.Onboarder.Store().Connections(ctx, "acme")
	require.NoError(t, err)
	res, err = b.Client.PostForm(cfg.PublicURL+"/connections/delete", url.Values{"provider": {conns[0].Provider}, "id": {conns[0].ID}})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	left, err := app.Onboarder.Store().Connections(ctx, "acme")
	require.NoError(t, err)
	require.Len(t, left, 1)

	// Signed out, onboard's start refuses and the app's delete redirects.
	res, err = b.Client.PostForm(cfg.PublicURL+"/logout", nil)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, b.Get(cfg.PublicURL+"/connect/cdata/start").Code)
}
