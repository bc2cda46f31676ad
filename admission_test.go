package onboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// pending counts the store's pending flows of an owner.
func (e *env) pending(owner onboard.Owner) int {
	e.t.Helper()
	fs, err := e.store.Flows(context.Background(), onboard.FlowQuery{Owner: owner})
	require.NoError(e.t, err)
	return len(fs)
}

// TestTenantCapRefusesBeforeTheProvider: a start past the tenant's cap is
// refused with 429 and makes no provider call.
func TestTenantCapRefusesBeforeTheProvider(t *testing.T) {
	e := newEnv(t, func(c *onboard.Config) { c.MaxFlowsPerOwner, c.MaxFlowsPerTenant = 2, 3 })
	for i := range 3 {
		e.browser(fmt.Sprint("user", i), "acme").start("source=Salesforce")
	}
	begins := e.fake.Calls().Begin
	res := e.browser("user9", "acme").get(e.URL() + "/connect/fake/start?source=Salesforce")
	require.Equal(t, http.StatusTooManyRequests, res.Code, res.Body)
	require.Contains(t, res.Body, "Too many connection setups")
	require.Equal(t, begins, e.fake.Calls().Begin, "a refused start asks the provider nothing")
	// Another tenant is not affected.
	e.browser("eve", "globex").start("source=Salesforce")
}

// TestWalkAwaysNeverLockOut: an owner at the cap who starts again gets the
// new flow; the oldest pending one is settled as abandoned and what it
// made at the provider is removed.
func TestWalkAwaysNeverLockOut(t *testing.T) {
	e := newEnv(t, func(c *onboard.Config) { c.MaxFlowsPerOwner = 3 })
	alice := onboard.Owner{Tenant: "acme", User: "alice"}
	b := e.browser("alice", "acme")
	var ids []string
	for range 3 {
		ids = append(ids, b.start("source=Salesforce"))
		e.clock.Add(time.Second)
	}
	// The user saved credentials on the first page and walked away.
	b.finish(ids[0], onboard.Connected)
	require.Len(t, e.fake.Connections(), 1)
	for range 7 {
		ids = append(ids, b.start("source=Salesforce"))
		e.clock.Add(time.Second)
	}
	require.Equal(t, 3, e.pending(alice), "the cap still bounds the owner's pending flows")
	for i, id := range ids {
		f := e.flow(id)
		if i < 7 {
			require.Equal(t, onboard.Abandoned, f.Outcome, "flow %d", i)
			require.True(t, f.Cleanup, "flow %d: cleaned up again once it expires", i)
		} else {
			require.Equal(t, onboard.FlowPending, f.State, "flow %d", i)
		}
	}
	require.Empty(t, e.fake.Connections(), "what the abandoned flow made is removed")
	require.Equal(t, 7, e.fake.Calls().Cancel)
	require.Empty(t, e.Connections("acme"), "nothing is attached without a return")
	// The walked-away browser coming back later is shown its abandoned
	// result; nothing is attached.
	res := b.get(e.URL() + "/connect/fake/return/" + ids[0] + "?status=connected")
	require.Equal(t, http.StatusSeeOther, res.Code)
	c, status := b.Outcome(e.App, res.Location)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, onboard.Abandoned, c.State)
	require.Empty(t, e.Connections("acme"))
	// Once they expired, the runner cleans the replaced flows up again
	// and clears their Cleanup.
	e.clock.Add(onboard.DefaultFlowTTL)
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 7, rep.Cleaned)
	for _, id := range ids[:7] {
		require.False(t, e.flow(id).Cleanup)
	}
}

// TestConcurrentStartsOfOneOwner: 60 starts at once by one owner with a
// cap of 20 never hold more than 20 pending flows, and every start
// succeeds, settling an older one.
func TestConcurrentStartsOfOneOwner(t *testing.T) {
	e := newEnv(t, func(c *onboard.Config) { c.MaxFlowsPerOwner = 20 })
	b := e.browser("alice", "acme")
	codes, err := testutil.GetAll(60, func(int) *http.Client { return b.Client }, e.URL()+"/connect/fake/start?source=Salesforce")
	require.NoError(t, err)
	require.Equal(t, map[int]int{http.StatusFound: 60}, codes, "no start of an owner at the cap is refused")
	require.Equal(t, 20, e.pending(onboard.Owner{Tenant: "acme", User: "alice"}))
	require.Equal(t, codes[http.StatusFound], e.fake.Calls().Begin, "only admitted starts reach the provider")
	require.Equal(t, codes[http.StatusFound]-20, e.fake.Calls().Cancel, "every settled flow is cleaned up")
}

// TestConcurrentStartsOfOneTenant: 60 users of one tenant starting at
// once against a tenant cap of 20: exactly 20 are admitted.
func TestConcurrentStartsOfOneTenant(t *testing.T) {
	e := newEnv(t, func(c *onboard.Config) { c.MaxFlowsPerOwner, c.MaxFlowsPerTenant = 5, 20 })
	browsers := make([]*browser, 60)
	for i := range browsers {
		browsers[i] = e.browser(fmt.Sprint("user", i), "acme")
	}
	codes, err := testutil.GetAll(60, func(i int) *http.Client { return browsers[i].Client }, e.URL()+"/connect/fake/start?source=Salesforce")
	require.NoError(t, err)
	require.Equal(t, map[int]int{http.StatusFound: 20, http.StatusTooManyRequests: 40}, codes)
	require.Equal(t, 20, e.fake.Calls().Begin)
}

// TestFailedBeginLeavesNothing: a start whose provider call fails frees
// its admission slot and asks the provider to remove what it may have
// made; the error page offers a fresh start, never a reload.
func TestFailedBeginLeavesNothing(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	e.fake.FailBegin(fmt.Errorf("%w: connection reset", onboard.ErrProvider))
	res := b.get(e.URL() + "/connect/fake/start?source=Salesforce&name=Sales")
	require.Equal(t, http.StatusBadGateway, res.Code)
	require.Contains(t, res.Body, "did not answer as expected")
	require.Contains(t, res.Body, `href="/connect/fake/start?name=Sales&amp;source=Salesforce">Start again`)
	require.NotContains(t, res.Body, "eload")
	require.Zero(t, e.pending(onboard.Owner{Tenant: "acme", User: "alice"}))
	require.Equal(t, 1, e.fake.Calls().Cancel)
}

// TestOneUserCannotFillTheStore: a user who starts again and again, each
// start settling his oldest pending flow (whose cleanup waits for its
// expiry), fills only his tenant's share of memstore: other tenants still
// start, and a completed flow of theirs, within its lifetime, still shows
// its result and is still quarantined when it comes back elsewhere.
func TestOneUserCannotFillTheStore(t *testing.T) {
	p := fake.New("fake")
	p.URL = onboardtest.Serve(t, p)
	app := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{p},
		Store:  memstore.New(memstore.Options{MaxFlows: 60, MaxOpenPerTenant: 20}),
		Config: func(c *onboard.Config) { c.MaxFlowsPerOwner, c.MaxFlowsPerTenant = 5, 20 }})
	alice := app.Browser("alice", "acme")
	hosted := alice.Start(app, "fake", "source=Salesforce")
	u, err := url.Parse(hosted)
	require.NoError(t, err)
	back, err := p.Finish(u.Query().Get("flow"), onboard.Connected)
	require.NoError(t, err)
	require.Equal(t, http.StatusSeeOther, alice.Get(back).Code)

	mallory := app.Browser("mallory", "evil")
	refused := 0
	for range 80 {
		if mallory.Get(app.URL()+"/connect/fake/start?source=x").Code == http.StatusTooManyRequests {
			refused++
		}
	}
	require.Equal(t, 80-20, refused, "his tenant's share of the store")
	bob := app.Browser("bob", "globex")
	require.Equal(t, http.StatusFound, bob.Get(app.URL()+"/connect/fake/start?source=x").Code)
	require.Equal(t, http.StatusSeeOther, alice.Get(back).Code, "her result is still there")
}

// TestTenantBoundEndsWithTheFlowsLifetime: a tenant held back by
// memstore's per-tenant bound (its flows settled as abandoned keep their
// cleanup until they expire) starts again once the runner has settled
// and cleaned them up, without waiting for them to be pruned.
func TestTenantBoundEndsWithTheFlowsLifetime(t *testing.T) {
	e := newEnv(t, func(c *onboard.Config) {
		c.Store = memstore.New(memstore.Options{MaxFlows: 100, MaxOpenPerTenant: 10})
		c.MaxFlowsPerOwner, c.MaxFlowsPerTenant = 2, 4
	})
	mallory := e.browser("mallory", "acme")
	for range 10 {
		require.Equal(t, http.StatusFound, mallory.get(e.URL()+"/connect/fake/start?source=x").Code)
	}
	alice := e.browser("alice", "acme")
	require.Equal(t, http.StatusTooManyRequests, alice.get(e.URL()+"/connect/fake/start?source=x").Code)

	e.clock.Add(onboard.DefaultFlowTTL + time.Minute)
	_, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, http.StatusFound, alice.get(e.URL()+"/connect/fake/start?source=x").Code)
}
