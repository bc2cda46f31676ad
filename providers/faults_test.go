package providers_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apptest"
	"github.com/onboardkit/onboard/internal/emulate"
	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
	"github.com/onboardkit/onboard/store/memstore"
)

// rig is one provider behind the onboard handlers, with its emulator's
// fault knobs. Provider calls time out after 300 ms and are not retried,
// so that every fault reaches the handlers.
type rig struct {
	name  string
	app   *apptest.App
	api   *emulate.API
	store *apptest.FlakyStore
	fill  func(b *apptest.Browser, hosted string) (string, error)
}

func newRig(t *testing.T, name string) *rig {
	r := &rig{name: name, store: apptest.NewFlakyStore(memstore.Options{})}
	client := &http.Client{Timeout: 300 * time.Millisecond}
	quiet := slog.New(slog.DiscardHandler)
	var p onboard.Provider
	switch name {
	case "cdata":
		emu := cdatatest.New(cdatatest.Options{AccountID: "oem", PublicKey: &apptest.RSAKey().PublicKey})
		cp, err := cdata.New(cdata.Config{BaseURL: apptest.Serve(t, emu) + "/api", AccountID: "oem", PrivateKey: apptest.RSAKey(),
			HTTPClient: client, Retries: -1, Logger: quiet})
		require.NoError(t, err)
		p, r.api = cp, emu.API
		r.fill = func(b *apptest.Browser, hosted string) (string, error) {
			return cdatatest.Fill(context.Background(), b.Client, hosted, "", "pw")
		}
	case "fivetran":
		emu := fivetrantest.New(fivetrantest.Options{APIKey: "k", APISecret: "s"})
		fp, err := fivetran.New(fivetran.Config{BaseURL: apptest.Serve(t, emu), APIKey: "k", APISecret: "s",
			HTTPClient: client, Retries: -1, Logger: quiet})
		require.NoError(t, err)
		p, r.api = fp, emu.API
		r.fill = func(b *apptest.Browser, hosted string) (string, error) {
			return fivetrantest.Fill(context.Background(), b.Client, hosted, "token")
		}
	}
	r.app = apptest.New(t, apptest.Options{Providers: []onboard.Provider{p}, Store: r.store,
		Config: func(c *onboard.Config) { c.ReconcileAfter = time.Nanosecond }})
	return r
}

// flow starts and fills a flow and returns the browser's return URL.
func (r *rig) flow(t *testing.T, b *apptest.Browser, source string) string {
	back, err := r.fill(b, b.Start(r.app, r.name, "source="+source))
	require.NoError(t, err)
	return back
}

func pending(t *testing.T, r *rig) int {
	fs, err := r.store.PendingFlows(context.Background(), time.Now().Add(time.Hour), 1000)
	require.NoError(t, err)
	return len(fs)
}

var faults = []struct {
	name   string
	faults []emulate.Fault
}{
	{"timeout", []emulate.Fault{{Delay: 2 * time.Second}}},
	{"5xx", []emulate.Fault{{Status: http.StatusServiceUnavailable}}},
	{"429", []emulate.Fault{{Status: http.StatusTooManyRequests, RetryAfter: 30 * time.Second}}},
	{"malformed JSON", []emulate.Fault{{Body: `{"data": [1, 2`}}},
	{"body that never ends", []emulate.Fault{{Hang: true}}},
	// net/http's transport retries an idempotent request once by itself
	// when a reused connection closes before answering: close two.
	{"closed connection", []emulate.Fault{{Drop: true}, {Drop: true}}},
}

func TestFaultsAtStart(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		for _, tt := range faults {
			t.Run(provider+"/"+tt.name, func(t *testing.T) {
				r := newRig(t, provider)
				b := r.app.Browser("alice", "acme")
				r.flow(t, b, "Salesforce") // the tenant's account or group exists now
				before := pending(t, r)
				r.api.Fail(tt.faults...)
				start := time.Now()
				res := b.Get(r.app.URL() + "/connect/" + provider + "/start?source=HubSpot")
				require.Less(t, time.Since(start), 2*time.Second, "bounded")
				require.Equal(t, http.StatusBadGateway, res.Code, res.Body)
				require.Contains(t, res.Body, "could not be reached")
				require.Equal(t, before, pending(t, r), "no flow is saved for a failed start")
				r.api.Clear()
				back := r.flow(t, b, "HubSpot") // the user tries again
				require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
			})
		}
	}
}

func TestFaultsAtReturn(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		for _, tt := range faults {
			for _, recovery := range []string{"reload", "reconciler"} {
				t.Run(provider+"/"+tt.name+"/"+recovery, func(t *testing.T) {
					r := newRig(t, provider)
					b := r.app.Browser("alice", "acme")
					back := r.flow(t, b, "Salesforce")
					r.api.Fail(tt.faults...)
					res := b.Get(back)
					require.Equal(t, http.StatusBadGateway, res.Code, res.Body)
					require.NotContains(t, res.Body, "emulated")
					r.api.Clear()
					require.Empty(t, r.app.Connections("acme"), "nothing half-done is stored")
					require.Equal(t, 1, pending(t, r), "the flow stays pending")
					if recovery == "reconciler" {
						rep, err := r.app.Onboarder.Reconcile(context.Background())
						require.NoError(t, err)
						require.Equal(t, onboard.ReconcileReport{Checked: 1, Completed: 1}, rep)
						require.Len(t, r.app.Connections("acme"), 1)
					}
					res = b.Get(back)
					require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
					require.Contains(t, res.Location, "onboard_status=connected")
					cs := r.app.Connections("acme")
					require.Len(t, cs, 1)
					require.Equal(t, onboard.Connected, cs[0].State)
				})
			}
		}
	}
}

func TestStoreFailsAtCompletion(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		t.Run(provider, func(t *testing.T) {
			r := newRig(t, provider)
			b := r.app.Browser("alice", "acme")
			back := r.flow(t, b, "Salesforce")
			r.store.Fail(1)
			res := b.Get(back)
			require.Equal(t, http.StatusServiceUnavailable, res.Code)
			require.Contains(t, res.Body, "reload")
			require.Empty(t, r.app.Connections("acme"))
			require.Equal(t, 1, pending(t, r))
			require.Equal(t, http.StatusSeeOther, b.Get(back).Code, "the reload completes it")
			require.Len(t, r.app.Connections("acme"), 1)
		})
	}
}
