package onboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
)

// TestRefreshNoticesChangesAtTheProvider: the runner asks a Refresher for
// connections not checked for RefreshEvery: a connection that broke is
// marked failed and a deleted one removed, with the hooks; one checked
// recently is not asked about again.
func TestRefreshNoticesChangesAtTheProvider(t *testing.T) {
	e := newEnv(t)
	broken := e.connected("alice", "acme")
	gone := e.connected("bob", "acme")
	fine := e.connected("eve", "globex")
	e.fake.SetState(broken.ID, onboard.Failed)
	e.fake.Remove(gone.ID)

	// Nothing is due yet.
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Zero(t, rep.Refreshed)

	e.clock.Add(onboard.DefaultRefreshEvery + time.Second)
	rep, err = e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 3, rep.Refreshed)
	require.Equal(t, 2, rep.Changed)
	require.Equal(t, 2, e.fake.Calls().Refresh, "one call per tenant")
	require.Equal(t, onboard.Failed, e.stored(broken.ID).State)
	require.Equal(t, onboard.Connected, e.stored(fine.ID).State)
	_, found, err := e.store.FindConnection(t.Context(), "fake", gone.ID)
	require.NoError(t, err)
	require.False(t, found)
	hooks := e.hooks.list()
	require.ElementsMatch(t, []string{"failed", "deleted"}, hooks[3:])

	// Checked just now: not asked again in the next pass.
	rep, err = e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Zero(t, rep.Refreshed)
}

// TestRunnerSettlesAndRetries: a cleanup the provider refused is
// retried by the next pass; flows completed meanwhile are left alone.
func TestRunnerSettlesAndRetries(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	stale := b.start("")
	back := b.finish(b.start(""), onboard.Connected)
	e.clock.Add(onboard.DefaultFlowTTL / 2)
	fresh := b.start("")
	e.clock.Add(onboard.DefaultFlowTTL/2 + time.Second)
	// The second flow's browser came back in time; the first walked away.
	e.clock.Add(-2 * time.Second)
	require.Equal(t, 303, b.get(back).Code)
	e.clock.Add(2*time.Second + onboard.DefaultTimeout) // the runner settles a flow Timeout after its expiry

	e.fake.FailCancel(onboard.ErrProvider)
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.Error(t, err, "the failed cleanup is reported")
	require.Equal(t, 1, rep.Settled)
	require.True(t, e.flow(stale).Cleanup)
	require.Equal(t, onboard.FlowPending, e.flow(fresh).State, "a flow within its lifetime is left alone")

	rep, err = e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Cleaned)
	require.False(t, e.flow(stale).Cleanup)
	require.Len(t, e.Connections("acme"), 1)
}

// TestRunnerPrunesOldFlows: done flows are kept for Retain after they
// expire, so a late return says "expired", then deleted.
func TestRunnerPrunesOldFlows(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	id := b.start("")
	back := b.finish(id, onboard.Connected)
	require.Equal(t, 303, b.get(back).Code)
	e.clock.Add(onboard.DefaultFlowTTL + onboard.DefaultRetain - time.Minute)
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Zero(t, rep.Pruned)
	require.Equal(t, 410, e.browser("eve", "globex").get(back).Code)
	e.clock.Add(2 * time.Minute)
	rep, err = e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Pruned)
	require.Equal(t, 404, b.get(back).Code)
	require.Len(t, e.Connections("acme"), 1, "connections stay")
}

func TestRunStops(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { e.Onboarder.Run(ctx, time.Millisecond); close(done) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// TestRunnerWithAProviderNoLongerConfigured: flows of a provider the app
// has removed are settled without a provider call and reported, never a
// panic; their cleanup waits for the provider to be configured again.
func TestRunnerWithAProviderNoLongerConfigured(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	f := onboard.Flow{ID: strings.Repeat("g", 43), Owner: onboard.Owner{Tenant: "acme", User: "alice"}, Provider: "gone",
		Browser: "digest", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
	require.NoError(t, e.store.CreateFlow(t.Context(), f, onboard.Limits{}))
	e.clock.Add(2 * time.Minute)
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.Error(t, err)
	require.Equal(t, 1, rep.Settled)
	require.True(t, e.flow(f.ID).Cleanup, "left to clean up once the provider is back")
	require.Contains(t, e.log.String(), "provider is not configured")
}

// pausedRefresh is the fake provider whose next Refresh, once it has its
// answer, waits until released: the runner then holds an answer and the
// connections it read while the test changes them, as a provider's slow
// answer lets happen.
type pausedRefresh struct {
	*fake.Provider
	once             sync.Once
	entered, release chan struct{}
}

func (p *pausedRefresh) Refresh(ctx context.Context, tenant string, cs []onboard.Connection) ([]onboard.Event, error) {
	evs, err := p.Provider.Refresh(ctx, tenant, cs)
	p.once.Do(func() {
		close(p.entered)
		<-p.release
	})
	return evs, err
}

// TestRefreshUndoesNothing: what changes a connection while the runner
// waits for the provider (a deletion by the app, an event) stays: the
// runner records its check only on the connection as it read it, and
// never writes back what it read.
func TestRefreshUndoesNothing(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(e *env, c onboard.Connection)
		check  func(t *testing.T, e *env, c onboard.Connection)
	}{
		{"deleted by the app", func(e *env, c onboard.Connection) {
			require.NoError(t, e.Onboarder.DeleteConnection(t.Context(), c.Owner, "fake", c.ID))
		}, func(t *testing.T, e *env, c onboard.Connection) {
			require.Empty(t, e.Connections("acme"), "not brought back")
			require.Len(t, e.hooks.list(), 2, "connected, then one deletion")
		}},
		{"an event", func(e *env, c onboard.Connection) {
			require.Equal(t, http.StatusOK, e.deliver(fake.WebhookEvent{Connection: c.ID, State: onboard.Failed,
				Message: "token revoked", At: time.Now()}))
		}, func(t *testing.T, e *env, c onboard.Connection) {
			got := e.stored(c.ID)
			require.Equal(t, onboard.Failed, got.State)
			require.Equal(t, "token revoked", got.Message)
			require.False(t, got.EventAt.IsZero())
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := &pausedRefresh{entered: make(chan struct{}), release: make(chan struct{})}
			e := newEnv(t, func(c *onboard.Config) {
				p.Provider = c.Providers[0].(*fake.Provider)
				c.Providers = []onboard.Provider{p}
			})
			c := e.connected("alice", "acme")
			e.clock.Add(onboard.DefaultRefreshEvery + time.Second)
			done := make(chan error, 1)
			go func() { _, err := e.Onboarder.RunOnce(context.Background()); done <- err }()
			<-p.entered
			tt.change(e, c)
			close(p.release)
			require.NoError(t, <-done)
			tt.check(t, e, c)
		})
	}
}

// playFlow starts a flow with provider "fake" in b, plays its hosted page
// as outcome and returns the return URL.
func playFlow(t *testing.T, a *onboardtest.App, p *fake.Provider, b *onboardtest.Browser, outcome onboard.State) string {
	t.Helper()
	loc := b.Start(a, "fake", "source=Salesforce")
	u, err := url.Parse(loc)
	require.NoError(t, err)
	back, err := p.Finish(u.Query().Get("flow"), outcome)
	require.NoError(t, err)
	return back
}

type tenantFailing struct {
	*fake.Provider
	bad string
}

func (p tenantFailing) Refresh(ctx context.Context, tenant string, cs []onboard.Connection) ([]onboard.Event, error) {
	if tenant == p.bad {
		return nil, fmt.Errorf("%w: 403 this sub-account is disabled", onboard.ErrProvider)
	}
	return p.Provider.Refresh(ctx, tenant, cs)
}

// TestOneFailingTenantDoesNotStopRefresh: a tenant whose refresh fails for
// good (its sub-account disabled, a permission removed) does not stop the
// runner from noticing changes of every other tenant's connections.
func TestOneFailingTenantDoesNotStopRefresh(t *testing.T) {
	f := fake.New("fake")
	f.URL = onboardtest.Serve(t, f)
	clock := onboardtest.NewClock(time.Now())
	a := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{tenantFailing{f, "broken-tenant"}},
		Config: func(c *onboard.Config) { c.Now = clock.Now }})

	mallory := a.Browser("mallory", "broken-tenant")
	require.Equal(t, http.StatusSeeOther, mallory.Get(playFlow(t, a, f, mallory, onboard.Connected)).Code)
	clock.Add(time.Second)
	alice := a.Browser("alice", "acme")
	require.Equal(t, http.StatusSeeOther, alice.Get(playFlow(t, a, f, alice, onboard.Connected)).Code)
	c := a.Connections("acme")[0]
	f.SetState(c.ID, onboard.Failed) // alice's credentials broke at the provider

	for range 5 {
		clock.Add(2 * onboard.DefaultRefreshEvery)
		rep, err := a.Onboarder.RunOnce(t.Context())
		t.Logf("pass: %+v err=%v", rep, err)
	}
	require.Equal(t, onboard.Failed, a.Connections("acme")[0].State,
		"after 5 passes (10 h) acme's broken connection is still shown as connected")
}

// TestRunnerStepsHaveDeadlines: the runner's store calls are bounded
// as its provider calls are (Config.Timeout per step): a database that
// stops answering costs a pass a bounded time, not the pass itself.
func TestRunnerStepsHaveDeadlines(t *testing.T) {
	e := newEnv(t, func(c *onboard.Config) { c.Timeout = 200 * time.Millisecond })
	b := e.browser("alice", "acme")
	b.start("source=Salesforce")
	e.clock.Add(onboard.DefaultFlowTTL + time.Second)
	e.store.Hang("Flows", 5*time.Second) // the database stops answering (for 5 s here)
	done := make(chan error, 1)
	go func() { _, err := e.Onboarder.RunOnce(context.Background()); done <- err }()
	select {
	case err := <-done:
		t.Logf("pass ended: %v", err)
	case <-time.After(3 * time.Second):
		e.store.Hang("Flows", 0)
		<-done // the hang ends by itself
		t.Fatal("a runner pass was still waiting on the database after 3 s (Timeout 200 ms)")
	}
}
