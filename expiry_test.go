package onboard_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	scsmem "github.com/alexedwards/scs/v2/memstore"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// TestExpiryBoundary: a flow is valid up to its ExpiresAt exactly, judged
// by Config.Now alone; after that, the browser that started it gets 410
// with a way to start again, never "another browser".
func TestExpiryBoundary(t *testing.T) {
	tests := []struct {
		name  string
		after time.Duration // past the flow's lifetime
		code  int
	}{
		{"a second before", -time.Second, http.StatusSeeOther},
		{"exactly at expiry", 0, http.StatusSeeOther},
		{"a nanosecond after", time.Nanosecond, http.StatusGone},
		{"an hour after", time.Hour, http.StatusGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			b := e.browser("alice", "acme")
			id := b.start("source=Salesforce&name=Sales&return_to=%2Fdone")
			back := b.finish(id, onboard.Connected)
			e.clock.Add(onboard.DefaultFlowTTL + tt.after)
			res := b.get(back)
			require.Equal(t, tt.code, res.Code, res.Body)
			if tt.code == http.StatusGone {
				require.Contains(t, res.Body, "expired")
				require.NotContains(t, res.Body, "another browser")
				require.Contains(t, res.Body, `href="/connect/fake/start?name=Sales&amp;return_to=%2Fdone&amp;source=Salesforce"`,
					"the restart link keeps source, name and return_to")
				require.Empty(t, e.Connections("acme"))
			}
		})
	}
}

// TestFlowWithoutBrowser: a flow stored before flows kept their browser
// (an upgrade) is told expired in any browser, never quarantined.
func TestFlowWithoutBrowser(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	f := onboard.Flow{ID: strings.Repeat("B", 43), Owner: onboard.Owner{Tenant: "acme", User: "alice"}, Provider: "fake",
		State: onboard.FlowPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.NoError(t, e.store.CreateFlow(t.Context(), f, onboard.Limits{}))
	res := e.browser("alice", "acme").get(e.URL() + "/connect/fake/return/" + f.ID + "?conn=x")
	require.Equal(t, http.StatusGone, res.Code)
	require.Empty(t, e.hooks.list())
	require.NotContains(t, e.log.String(), "security")
}

// TestExpiryWithTheWallClock runs a real 2 s lifetime on time.Now: a
// return in the last moments is accepted, one after it gets 410.
func TestExpiryWithTheWallClock(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a real lifetime")
	}
	e := newEnv(t, func(c *onboard.Config) {
		c.Now = time.Now
		c.FlowTTL = 2 * time.Second
		c.Timeout = 500 * time.Millisecond // the runner settles a flow that long after its expiry
	})
	b := e.browser("alice", "acme")
	late := b.start("source=Salesforce")
	lateBack := b.finish(late, onboard.Connected)
	inTime := b.start("source=Salesforce")
	inTimeBack := b.finish(inTime, onboard.Connected)

	// Just inside the lifetime of inTime.
	time.Sleep(time.Until(e.flow(inTime).ExpiresAt.Add(-150 * time.Millisecond)))
	res := b.get(inTimeBack)
	require.Equal(t, http.StatusSeeOther, res.Code, res.Body)

	time.Sleep(time.Until(e.flow(late).ExpiresAt.Add(50 * time.Millisecond)))
	res = b.get(lateBack)
	require.Equal(t, http.StatusGone, res.Code, res.Body)
	require.Contains(t, res.Body, "Start again")
	require.Len(t, e.Connections("acme"), 1)

	// Within Timeout of its expiry, the runner leaves it: a return that
	// came in time may still be asking its provider.
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Zero(t, rep.Settled)
	time.Sleep(time.Until(e.flow(late).ExpiresAt.Add(600 * time.Millisecond)))

	// The runner settles the expired flow and removes what it made.
	rep, err = e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Settled)
	require.Equal(t, onboard.Abandoned, e.flow(late).Outcome)
	require.Len(t, e.fake.Connections(), 1, "only the connection of the flow that came back in time")
}

// TestExpiredAfterTheRunnerSettledIt: a flow the runner settled because it
// expired is still answered 410 with a way to start again when its browser
// comes back, not shown as abandoned.
func TestExpiredAfterTheRunnerSettledIt(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	back := b.finish(b.start("source=Salesforce&name=Sales"), onboard.Connected)
	e.clock.Add(onboard.DefaultFlowTTL + onboard.DefaultTimeout + time.Second)
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Settled)
	res := b.get(back)
	require.Equal(t, http.StatusGone, res.Code, res.Body)
	require.Contains(t, res.Body, "source=Salesforce")
	require.Empty(t, e.Connections("acme"))
	require.Empty(t, e.fake.Connections(), "what the flow made is removed")
}

type slowComplete struct {
	*fake.Provider
	mu      sync.Mutex
	entered chan struct{}
	release chan struct{}
}

func (p *slowComplete) arm() (entered, release chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.entered, p.release = make(chan struct{}), make(chan struct{})
	return p.entered, p.release
}

func (p *slowComplete) Complete(ctx context.Context, f onboard.Flow, ret url.Values) (onboard.Connection, error) {
	p.mu.Lock()
	entered, release := p.entered, p.release
	p.entered = nil
	p.mu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
	return p.Provider.Complete(ctx, f, ret)
}

// TestExpiryDuringReturn: a return that reached the app within its
// flow's lifetime, and was verified by the provider, ends connected, even
// when the flow's lifetime ends while the provider is being asked and the
// runner passes then, or the runner's instance has a clock a little ahead
// (less than Config.Timeout).
func TestExpiryDuringReturn(t *testing.T) {
	t.Run("one instance, runner passes during Complete", func(t *testing.T) {
		f := fake.New("fake")
		f.URL = onboardtest.Serve(t, f)
		p := &slowComplete{Provider: f}
		clock := onboardtest.NewClock(time.Now())
		a := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{p},
			Config: func(c *onboard.Config) { c.Now = clock.Now }})
		b := a.Browser("alice", "acme")
		back := playFlow(t, a, f, b, onboard.Connected)
		clock.Add(onboard.DefaultFlowTTL - 500*time.Millisecond) // the browser comes back just in time
		entered, release := p.arm()
		done := make(chan onboardtest.Response, 1)
		go func() { done <- b.Get(back) }()
		<-entered                               // the app is asking the provider
		clock.Add(time.Second)                  // meanwhile the lifetime ends ...
		_, _ = a.Onboarder.RunOnce(t.Context()) // ... and the runner passes
		close(release)
		res := <-done
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
		got, _ := b.Outcome(a, res.Location)
		require.Equal(t, onboard.Connected, got.State, "a return that came in time and was verified was thrown away")
		require.Len(t, a.Connections("acme"), 1)
	})
	t.Run("two instances, clocks 10 s apart", func(t *testing.T) {
		f := fake.New("fake")
		f.URL = onboardtest.Serve(t, f)
		store := memstore.New(memstore.Options{})
		sessions := scsmem.NewWithCleanupInterval(0)
		slow := onboardtest.NewClock(time.Now())
		fast := onboardtest.NewClock(slow.Now().Add(10 * time.Second))
		web := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{f}, Store: store, SessionStore: sessions,
			Config: func(c *onboard.Config) { c.Now = slow.Now }})
		worker := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{f}, Store: store, SessionStore: sessions,
			Config: func(c *onboard.Config) { c.Now = fast.Now; c.URL = web.URL() + "/connect" }})
		b := web.Browser("alice", "acme")
		back := playFlow(t, web, f, b, onboard.Connected)
		slow.Add(onboard.DefaultFlowTTL - 5*time.Second) // 5 s left, by the instance the user reaches
		fast.Add(onboard.DefaultFlowTTL - 5*time.Second)
		_, _ = worker.Onboarder.RunOnce(t.Context()) // the runner on the other instance
		res := b.Get(back)
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
		got, _ := b.Outcome(web, res.Location)
		require.Equal(t, onboard.Connected, got.State, "the flow was settled as abandoned 5 s before its end")
	})
}

// TestEvictionLeavesAReturnInProgress: a start at the owner's cap evicts
// the owner's oldest flow and the closed ones before it, never a flow
// that expired but has not closed: a return that came in time may still
// be asking its provider.
func TestEvictionLeavesAReturnInProgress(t *testing.T) {
	f := fake.New("fake")
	f.URL = onboardtest.Serve(t, f)
	p := &slowComplete{Provider: f}
	clock := onboardtest.NewClock(time.Now())
	a := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{p},
		Config: func(c *onboard.Config) { c.Now, c.MaxFlowsPerOwner = clock.Now, 3 }})
	b := a.Browser("alice", "acme")
	back := playFlow(t, a, f, b, onboard.Connected)
	clock.Add(onboard.DefaultFlowTTL - 500*time.Millisecond)
	b.Start(a, "fake", "source=Salesforce") // two more tabs
	b.Start(a, "fake", "source=Salesforce")
	entered, release := p.arm()
	done := make(chan onboardtest.Response, 1)
	go func() { done <- b.Get(back) }() // the first flow's return, just in time
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the return never asked the provider")
	}
	clock.Add(time.Second)                  // its lifetime ends while the provider is asked
	b.Start(a, "fake", "source=Salesforce") // a fourth tab: admitted (the first flow is expired)
	b.Start(a, "fake", "source=Salesforce") // a fifth: at the cap, evicts the oldest, and every expired flow before it
	close(release)
	res := <-done
	got, _ := b.Outcome(a, res.Location)
	require.Equal(t, onboard.Connected, got.State, "a return that came in time and was verified was thrown away")
}
