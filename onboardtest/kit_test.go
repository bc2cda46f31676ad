package onboardtest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/store/memstore"
)

// TestEmulatorsFinishEveryOutcome: the kit's browser finishes both hosted
// pages as success, failure and abandon, and the app's verified outcome
// says the same.
func TestEmulatorsFinishEveryOutcome(t *testing.T) {
	emu := onboardtest.NewEmulators(t, nil)
	app := onboardtest.New(t, onboardtest.Options{Providers: emu.Providers()})
	for _, provider := range []string{"cdata", "fivetran"} {
		for _, outcome := range []onboard.State{onboard.Connected, onboard.Failed, onboard.Abandoned} {
			t.Run(provider+"/"+string(outcome), func(t *testing.T) {
				b := app.Browser("alice", "acme")
				hosted := b.Start(app, provider, "source=Salesforce")
				back, err := emu.Finish(t.Context(), b, hosted, outcome)
				require.NoError(t, err)
				res := b.Get(back)
				require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
				c, status := b.Outcome(app, res.Location)
				require.Equal(t, http.StatusOK, status)
				require.Equal(t, outcome, c.State)
			})
		}
	}
	_, err := emu.Finish(t.Context(), onboardtest.NewBrowser(t), "https://elsewhere.example/page", onboard.Connected)
	require.ErrorContains(t, err, "not a hosted page")
}

func TestFaultyStore(t *testing.T) {
	s := onboardtest.NewFaultyStore(memstore.New(memstore.Options{}))
	s.Fail("Flow", 1)
	_, _, err := s.Flow(t.Context(), "x")
	require.ErrorIs(t, err, onboardtest.ErrStoreDown)
	_, found, err := s.Flow(t.Context(), "x")
	require.NoError(t, err)
	require.False(t, found)
}

func TestBrowserPostsFromItsSite(t *testing.T) {
	emu := onboardtest.NewEmulators(t, nil)
	app := onboardtest.New(t, onboardtest.Options{Providers: emu.Providers()})
	b := app.Browser("alice", "acme")
	res := b.PostForm(app.URL()+"/connect/cdata/start", map[string][]string{"source": {"Salesforce"}})
	require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
	require.True(t, strings.HasPrefix(res.Location, emu.CDataURL+"/"), res.Location)
}

// TestServeApp: the handler is built for the URL it is then served at.
func TestServeApp(t *testing.T) {
	var built string
	app := onboardtest.ServeApp(t, func(url string) http.Handler {
		built = url
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") })
	})
	require.Equal(t, app, built)
	res := onboardtest.NewBrowser(t).Get(app + "/")
	require.Equal(t, "served", res.Body)
}
