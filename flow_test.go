package onboard_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
)

func TestRoundTripOutcomes(t *testing.T) {
	tests := []struct {
		outcome   onboard.State
		stored    int
		atFake    int // connections left at the provider
		cancelled int // Cancel calls
	}{
		{onboard.Connected, 1, 1, 0},
		{onboard.Failed, 1, 1, 0},
		{onboard.Abandoned, 0, 0, 1}, // nothing attached: what the flow made is removed
	}
	for _, tt := range tests {
		t.Run(string(tt.outcome), func(t *testing.T) {
			e := newEnv(t)
			b := e.browser("alice", "acme")
			id := b.start("source=Salesforce&name=Sales&return_to=%2Fsettings%3Ftab%3Ddata")
			res := b.get(b.finish(id, tt.outcome))
			require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
			loc, err := url.Parse(res.Location)
			require.NoError(t, err)
			assert.Equal(t, "/settings", loc.Path)
			assert.Equal(t, "data", loc.Query().Get("tab"))
			assert.NotEmpty(t, loc.Query().Get("onboard_flow"))
			assert.NotContains(t, res.Location, id, "the page's URL never carries the flow id")

			got, status := b.Outcome(e.App, res.Location)
			require.Equal(t, http.StatusOK, status)
			assert.Equal(t, tt.outcome, got.State)
			assert.Equal(t, "fake", got.Provider)
			assert.Equal(t, id, got.FlowID)

			cs := e.Connections("acme")
			require.Len(t, cs, tt.stored)
			if tt.stored == 1 {
				c := cs[0]
				assert.Equal(t, got.ID, c.ID)
				assert.Equal(t, tt.outcome, c.State)
				assert.Equal(t, onboard.Owner{Tenant: "acme", User: "alice"}, c.Owner)
				assert.Equal(t, "Salesforce", c.Source)
				assert.Equal(t, "Sales", c.Name)
				assert.Equal(t, id, c.FlowID)
			}
			assert.Len(t, e.fake.Connections(), tt.atFake)
			assert.Equal(t, tt.cancelled, e.fake.Calls().Cancel)
			assert.Equal(t, []string{string(tt.outcome)}, e.hooks.list(), "exactly one hook call")
			f := e.flow(id)
			assert.Equal(t, onboard.FlowDone, f.State)
			assert.Equal(t, tt.outcome, f.Outcome)
			// An abandoned flow is cleaned up again once it expires (its
			// page may still make something); the others are done.
			assert.Equal(t, tt.outcome == onboard.Abandoned, f.Cleanup, "cleanup left")
			// The app's own session data survived.
			assert.Equal(t, "alice|3 apples", b.get(e.URL()+"/whoami").Body)
			// The user can start again after any outcome.
			b.start("source=Salesforce")
		})
	}
}

// TestFollowAllRedirects drives the whole flow with a client that follows
// redirects, as a browser does.
func TestFollowAllRedirects(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	b.Client.CheckRedirect = nil
	res := b.get(e.URL() + "/connect/fake/start?source=Salesforce")
	require.Equal(t, http.StatusOK, res.Code)
	require.True(t, strings.HasPrefix(res.Body, "page /?onboard_flow="), res.Body)
	require.Len(t, e.Connections("acme"), 1)
}

func TestRefusedReturns(t *testing.T) {
	e := newEnv(t)
	type setup func(t *testing.T) (b *browser, target string)
	tests := []struct {
		name    string
		setup   setup
		code    int
		message string
	}{
		{"malformed flow id", func(t *testing.T) (*browser, string) {
			return e.browser("alice", "acme"), e.URL() + "/connect/fake/return/not-a-flow?conn=x"
		}, http.StatusBadRequest, "setup id is not valid"},
		{"no flow id", func(t *testing.T) (*browser, string) {
			return e.browser("alice", "acme"), e.URL() + "/connect/fake/return/"
		}, http.StatusNotFound, ""},
		{"unknown flow", func(t *testing.T) (*browser, string) {
			return e.browser("alice", "acme"), e.URL() + "/connect/fake/return/" + strings.Repeat("A", 43) + "?conn=x&status=connected"
		}, http.StatusNotFound, "unknown"},
		{"unknown provider", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			id := b.start("")
			return b, e.URL() + "/connect/other/return/" + id
		}, http.StatusNotFound, "not available"},
		{"another browser, same user", func(t *testing.T) (*browser, string) {
			a := e.browser("alice", "acme")
			back := a.finish(a.start(""), onboard.Connected)
			return e.browser("alice", "acme"), back
		}, http.StatusForbidden, "another browser"},
		{"link sent to a victim", func(t *testing.T) (*browser, string) {
			attacker := e.browser("mallory", "evil")
			back := attacker.finish(attacker.start(""), onboard.Connected)
			return e.browser("alice", "acme"), back
		}, http.StatusForbidden, "another browser"},
		{"another owner in the same browser", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			b.Login(e.App, "bob", "acme")
			return b, back
		}, http.StatusForbidden, "another user"},
		{"signed out before the return", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			b.Login(e.App, "", "")
			return b, back
		}, http.StatusUnauthorized, "sign in"},
		{"forged connection id", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			return b, strings.Replace(back, "conn=conn-", "conn=conn-0", 1)
		}, http.StatusForbidden, "does not confirm"},
		{"another tenant's connection id", func(t *testing.T) (*browser, string) {
			other := e.browser("eve", "globex")
			otherBack := other.finish(other.start(""), onboard.Connected)
			ou, _ := url.Parse(otherBack)
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			u, _ := url.Parse(back)
			q := u.Query()
			q.Set("conn", ou.Query().Get("conn"))
			u.RawQuery = q.Encode()
			return b, u.String()
		}, http.StatusForbidden, "does not confirm"},
		{"oversized query", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			return b, back + "&pad=" + strings.Repeat("x", 9000)
		}, http.StatusBadRequest, "malformed"},
		{"invalid UTF-8", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			return b, back + "&name=%ff%fe"
		}, http.StatusBadRequest, "malformed"},
		{"bad escape", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			return b, back + "&name=%zz"
		}, http.StatusBadRequest, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, target := tt.setup(t)
			before := len(e.Connections("acme"))
			res := b.get(target)
			require.Equal(t, tt.code, res.Code, res.Body)
			require.Contains(t, res.Body, tt.message)
			require.Len(t, e.Connections("acme"), before, "a refused return must store nothing")
			require.NotContains(t, res.Body, "onboard:", "no internal error text")
		})
	}
}

// TestSharedComputer: a flow started by one user comes back in the same
// browser signed in as another (who entered what it made): refused and
// quarantined, so that its owner, signed in again, cannot replay the
// return and attach the other user's credentials to his tenant.
func TestSharedComputer(t *testing.T) {
	e := newEnv(t)
	b := e.browser("mallory", "evil")
	id := b.start("")
	back := b.finish(id, onboard.Connected)
	b.Login(e.App, "alice", "acme")
	res := b.get(back)
	require.Equal(t, http.StatusForbidden, res.Code)
	require.Contains(t, res.Body, "another user")
	f := e.flow(id)
	require.Equal(t, onboard.FlowDone, f.State)
	require.Equal(t, onboard.Revoked, f.Outcome)
	require.Equal(t, 1, e.fake.Calls().Cancel, "what the flow made was removed")

	b.Login(e.App, "mallory", "evil")
	res = b.get(back)
	require.Equal(t, http.StatusSeeOther, res.Code, "the stored result again")
	c, status := b.Outcome(e.App, res.Location)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, onboard.Revoked, c.State)

	// The same with nobody signed in when it comes back.
	id = b.start("")
	back = b.finish(id, onboard.Connected)
	b.Login(e.App, "", "")
	require.Equal(t, http.StatusUnauthorized, b.get(back).Code)
	require.Equal(t, onboard.Revoked, e.flow(id).Outcome)
	b.Login(e.App, "mallory", "evil")
	res = b.get(back)
	require.Equal(t, http.StatusSeeOther, res.Code, "the stored result again")
	c, status = b.Outcome(e.App, res.Location)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, onboard.Revoked, c.State)
	require.Empty(t, e.Connections("evil"))
	require.Empty(t, e.Connections("acme"))

	// A done flow is not quarantined by another user of its browser: its
	// result stays.
	b = e.browser("alice", "acme")
	back = b.finish(b.start(""), onboard.Connected)
	require.Equal(t, http.StatusSeeOther, b.get(back).Code)
	b.Login(e.App, "bob", "acme")
	require.Equal(t, http.StatusForbidden, b.get(back).Code)
	cs := e.Connections("acme")
	require.Len(t, cs, 1)
	require.Equal(t, onboard.Connected, cs[0].State)
}

func TestReplay(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	back := b.finish(b.start(""), onboard.Connected)
	first := b.get(back)
	require.Equal(t, http.StatusSeeOther, first.Code)

	// A reload in the browser that completed the flow is shown the same
	// result and stores nothing, even after the flow's lifetime.
	want, status := b.Outcome(e.App, first.Location)
	require.Equal(t, http.StatusOK, status)
	for _, wait := range []time.Duration{0, onboard.DefaultFlowTTL + time.Second} {
		e.clock.Add(wait)
		again := b.get(back)
		require.Equal(t, http.StatusSeeOther, again.Code)
		got, status := b.Outcome(e.App, again.Location)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, want.ID, got.ID)
	}
	require.Len(t, e.Connections("acme"), 1)
	require.Equal(t, []string{"connected"}, e.hooks.list(), "no second hook call")

	// Once the flow's lifetime is over, another browser is told it
	// expired; nothing changes.
	res := e.browser("mallory", "evil").get(back)
	require.Equal(t, http.StatusGone, res.Code)
	require.Len(t, e.Connections("acme"), 1)
	require.Equal(t, onboard.Connected, e.Connections("acme")[0].State)
}

func TestConcurrentReturnsStoreOne(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	back := b.finish(b.start(""), onboard.Connected)
	const n = 20
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := b.Client.Get(back)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes[i] = res.StatusCode
		}()
	}
	wg.Wait()
	// Every return in the starting browser is shown the one result;
	// exactly one completes the flow.
	for _, c := range codes {
		require.Equal(t, http.StatusSeeOther, c)
	}
	require.Equal(t, []string{"connected"}, e.hooks.list(), "exactly one return completes the flow")
	require.Len(t, e.Connections("acme"), 1)
}

func TestReturnAfterStoreFailureCompletesOnReload(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	id := b.start("")
	back := b.finish(id, onboard.Connected)
	e.store.Fail("CompleteFlow", 1)
	res := b.get(back)
	require.Equal(t, http.StatusServiceUnavailable, res.Code)
	require.Contains(t, res.Body, "try again in a moment")
	require.Contains(t, res.Body, `Try again</a>`, "a failed return links to itself: a GET, safe to repeat")
	require.NotContains(t, res.Body, "onboard:")
	require.Equal(t, onboard.FlowPending, e.flow(id).State, "the flow stays pending")
	require.Len(t, e.fake.Connections(), 1, "the provider's connection is not lost")

	res = b.get(back)
	require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
	require.Len(t, e.Connections("acme"), 1)
}

func TestProviderDownAtReturnIsRetryable(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	id := b.start("")
	back := b.finish(id, onboard.Connected)
	e.fake.FailComplete(onboard.ErrProvider)
	res := b.get(back)
	require.Equal(t, http.StatusBadGateway, res.Code)
	require.Equal(t, onboard.FlowPending, e.flow(id).State)
	require.Equal(t, http.StatusSeeOther, b.get(back).Code)
	require.Len(t, e.Connections("acme"), 1)
}

func TestReconnect(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	b.get(b.finish(b.start("source=Salesforce&name=Sales"), onboard.Failed))
	c := e.Connections("acme")[0]
	e.clock.Add(time.Minute)
	require.Equal(t, onboard.Failed, c.State)

	start := e.Onboarder.StartURL("fake", onboard.StartOptions{Connection: c.ID})
	loc := b.Start(e.App, "fake", strings.TrimPrefix(start, "/connect/fake/start?"))
	u, _ := url.Parse(loc)
	id := u.Query().Get("flow")
	f := e.flow(id)
	require.True(t, f.Reconnect)
	require.Equal(t, c.ID, f.ConnectionID)
	require.Equal(t, "Salesforce", f.Source)
	res := b.get(b.finish(id, onboard.Connected))
	require.Equal(t, http.StatusSeeOther, res.Code)
	cs := e.Connections("acme")
	require.Len(t, cs, 1)
	require.Equal(t, onboard.Connected, cs[0].State)
	require.Equal(t, "Sales", cs[0].Name)
	require.True(t, c.CreatedAt.Equal(cs[0].CreatedAt), "a reconnect keeps when the connection was made")

	// A reconnect left unfinished leaves the connection as it is.
	loc = b.Start(e.App, "fake", strings.TrimPrefix(start, "/connect/fake/start?"))
	u, _ = url.Parse(loc)
	res = b.get(b.finish(u.Query().Get("flow"), onboard.Abandoned))
	require.Equal(t, http.StatusSeeOther, res.Code)
	cs = e.Connections("acme")
	require.Len(t, cs, 1)
	require.Equal(t, onboard.Connected, cs[0].State)
	require.Len(t, e.fake.Connections(), 1)
	require.Zero(t, e.fake.Calls().Cancel, "an unfinished reconnect removes nothing")

	// Another tenant cannot reconnect it.
	res = e.browser("eve", "globex").get(e.URL() + start)
	require.Equal(t, http.StatusNotFound, res.Code)
}

func TestContextHelpers(t *testing.T) {
	ctx := context.Background()
	_, ok := onboard.ResultFromContext(ctx)
	require.False(t, ok)
	require.NoError(t, onboard.ErrorFromContext(ctx))
	c := onboard.Connection{ID: "x"}
	ctx = onboard.WithError(onboard.WithResult(ctx, c), onboard.ErrForged)
	got, ok := onboard.ResultFromContext(ctx)
	require.True(t, ok)
	require.Equal(t, c, got)
	require.ErrorIs(t, onboard.ErrorFromContext(ctx), onboard.ErrForged)
	_, ok = onboard.FlowFromContext(ctx)
	require.False(t, ok)
}

// TestCustomResultAndErrorHandlers mounts an app's own Result and Error
// handlers: they are given the flow, the stored connection and the error
// through the request context.
func TestCustomResultAndErrorHandlers(t *testing.T) {
	type seen struct {
		flow     onboard.Flow
		hasFlow  bool
		result   onboard.Connection
		hasConn  bool
		err      error
		token    string
		handlers string
	}
	var got seen
	record := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			got = seen{handlers: name, err: onboard.ErrorFromContext(ctx)}
			got.flow, got.hasFlow = onboard.FlowFromContext(ctx)
			got.result, got.hasConn = onboard.ResultFromContext(ctx)
			got.token, _ = onboard.ResultTokenFromContext(ctx)
			w.WriteHeader(http.StatusTeapot)
		})
	}
	e := newEnv(t, func(c *onboard.Config) { c.Result, c.Error = record("result"), record("error") })
	b := e.browser("alice", "acme")
	id := b.start("source=Salesforce&return_to=/settings")
	back := b.finish(id, onboard.Connected)

	// The browser that started it: the Result handler sees both.
	require.Equal(t, http.StatusTeapot, b.get(back).Code)
	assert.Equal(t, "result", got.handlers)
	assert.NoError(t, got.err)
	assert.Equal(t, "/settings", got.flow.ReturnTo)
	assert.True(t, got.hasConn)
	assert.Equal(t, connOf(t, back), got.result.ID)
	assert.Equal(t, onboard.Connected, got.result.State)
	// The token it puts in a page's URL reads as the result there.
	c, status := b.Outcome(e.App, "/?onboard_flow="+got.token)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, got.result.ID, c.ID)

	// A reload is shown the stored connection again.
	require.Equal(t, http.StatusTeapot, b.get(back).Code)
	assert.Equal(t, "result", got.handlers)
	assert.Equal(t, connOf(t, back), got.result.ID)

	// Another browser: refused, and the Error handler sees nothing of
	// the flow, which is not that browser's.
	require.Equal(t, http.StatusTeapot, e.browser("mallory", "evil").get(back).Code)
	assert.Equal(t, "error", got.handlers)
	assert.ErrorIs(t, got.err, onboard.ErrOtherBrowser)
	assert.False(t, got.hasFlow)
	assert.False(t, got.hasConn)

	// A start refused before any flow exists: the error alone.
	require.Equal(t, http.StatusTeapot, b.get(e.URL()+"/connect/fake/start?return_to=https%3A%2F%2Fevil.example").Code)
	assert.Equal(t, "error", got.handlers)
	assert.ErrorIs(t, got.err, onboard.ErrBadReturnTo)
	assert.False(t, got.hasFlow)
}
