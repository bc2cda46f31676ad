package providers_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/emulate"
	"github.com/onboardkit/onboard/store/memstore"
)

// TestRefreshJunkDeletesNothing: one junk answer from the provider
// during the runner's refresh (a 200 whose JSON lacks the expected list,
// a gateway's HTML 404) must not be read as "every connection was deleted
// at the provider".
func TestRefreshJunkDeletesNothing(t *testing.T) {
	for _, tt := range []struct {
		provider, name string
		fault          emulate.Fault
	}{
		{"cdata", "200 with an empty JSON object", emulate.Fault{Body: `{}`}},
		{"cdata", "200 with a null list", emulate.Fault{Body: `{"connections":null}`}},
		{"fivetran", "gateway HTML 404", emulate.Fault{Status: http.StatusNotFound, Body: "<html><body><h1>404 Not Found</h1>nginx</body></html>"}},
		{"fivetran", "gateway JSON 404", emulate.Fault{Status: http.StatusNotFound, Body: `{"message":"Not Found"}`}},
		{"cdata", "gateway JSON 404", emulate.Fault{Status: http.StatusNotFound, Body: `{"message":"Not Found"}`}},
	} {
		t.Run(tt.provider+"/"+tt.name, func(t *testing.T) {
			r := newRig(t, tt.provider, rigOptions{})
			b := r.app.Browser("alice", "acme")
			require.Equal(t, http.StatusSeeOther, b.Get(r.flow(t, b, "Salesforce")).Code)
			require.Len(t, r.app.Connections("acme"), 1)
			require.Equal(t, 1, r.held())

			r.clock.Add(2 * time.Hour) // past RefreshEvery
			r.api.Fail(tt.fault)
			rep, err := r.app.Onboarder.RunOnce(context.Background())
			t.Logf("report %+v err %v", rep, err)
			require.Equal(t, 1, r.held(), "the connection still exists at the provider")
			require.Len(t, r.app.Connections("acme"), 1, "one junk answer deleted the app's record of a live connection")
		})
	}
}

// TestRefreshAfterRestartJunk404: a freshly started instance (its
// sub-account ids not remembered yet) whose first refresh meets a
// gateway's 404 on the sub-account lookup must not take every connection
// of the tenant for deleted.
func TestRefreshAfterRestartJunk404(t *testing.T) {
	emu := onboardtest.NewEmulators(t, nil)
	store := memstore.New(memstore.Options{})
	clock := onboardtest.NewClock(time.Now())
	first := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{emu.CData}, Store: store,
		Config: func(c *onboard.Config) { c.Now = clock.Now }})
	b := first.Browser("alice", "acme")
	hosted := b.Start(first, "cdata", "source=Salesforce")
	back, err := emu.Finish(t.Context(), b, hosted, onboard.Connected)
	require.NoError(t, err)
	require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
	require.Len(t, first.Connections("acme"), 1)

	restarted, err := cdata.New(cdata.Config{AccountID: onboardtest.EmulatorAccountID, PrivateKey: testutil.RSAKey(),
		BaseURL: emu.CDataURL + "/api", Retries: -1, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	second := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{restarted}, Store: store,
		Config: func(c *onboard.Config) { c.Now = clock.Now }})
	clock.Add(2 * time.Hour)
	emu.CDataServer.API.Fail(emulate.Fault{Status: http.StatusNotFound, Body: "<html>404 Not Found</html>"})
	rep, err := second.Onboarder.RunOnce(context.Background())
	t.Logf("report %+v err %v", rep, err)
	require.Len(t, first.Connections("acme"), 1, "one 404 from a gateway deleted the tenant's connections")
}
