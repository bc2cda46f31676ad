package onboard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
)

func TestKindsCarryStatusAndMessage(t *testing.T) {
	secret := errors.New("pq: password=hunter2 rejected")
	tests := []struct {
		err    error
		status int
		says   string
	}{
		{fmt.Errorf("%w: %w", onboard.ErrStore, secret), http.StatusServiceUnavailable, "could not be saved or read"},
		{fmt.Errorf("%w: %w", onboard.ErrRefused, secret), http.StatusUnprocessableEntity, "did not accept"},
		{fmt.Errorf("%w: %w", onboard.ErrProvider, secret), http.StatusBadGateway, "did not answer as expected"},
		{fmt.Errorf("%w: %w", onboard.ErrSession, secret), http.StatusServiceUnavailable, "session"},
		{onboard.ErrBadFlowID, http.StatusBadRequest, "setup id is not valid"},
		{onboard.ErrFlowExpired, http.StatusGone, "expired"},
		{onboard.ErrOtherBrowser, http.StatusForbidden, "another browser"},
		{onboard.ErrTooManyFlows, http.StatusTooManyRequests, "Too many"},
		{secret, http.StatusInternalServerError, "Something went wrong"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.status, onboard.StatusCode(tt.err), tt.err)
		assert.Contains(t, onboard.Message(tt.err), tt.says)
		assert.NotContains(t, onboard.Message(tt.err), "hunter2")
	}
	// Classification keeps the cause chain: a cause of no kind gets the
	// fallback kind and stays reachable; an error of a kind keeps it.
	classified := onboard.Classify(secret, onboard.ErrStore)
	assert.ErrorIs(t, classified, onboard.ErrStore)
	assert.ErrorIs(t, classified, secret)
	assert.Equal(t, http.StatusServiceUnavailable, onboard.StatusCode(classified))
	refused := fmt.Errorf("%w: %w", onboard.ErrRefused, secret)
	assert.Equal(t, refused, onboard.Classify(refused, onboard.ErrStore), "a kind is kept")
}

// TestProviderRefusalIsNotAnOutage: a provider refusing the request (a
// 4xx such as an unknown data source) is shown as such, with what the
// user can do, not as an outage.
func TestProviderRefusalIsNotAnOutage(t *testing.T) {
	e := newEnv(t)
	e.fake.FailBegin(fmt.Errorf("%w: 400 unknown data source", onboard.ErrRefused))
	res := e.browser("alice", "acme").get(e.URL() + "/connect/fake/start?source=Salesforc")
	require.Equal(t, http.StatusUnprocessableEntity, res.Code)
	require.Contains(t, res.Body, "did not accept this setup")
	require.Contains(t, res.Body, "Start again")
	require.NotContains(t, res.Body, "did not answer as expected")
	require.NotContains(t, res.Body, "unknown data source", "provider text stays in the logs")
}

// hangingProvider is the fake whose Begin hangs until its
// context ends, as a provider that stopped answering.
type hangingProvider struct{ *fake.Provider }

func (h hangingProvider) Begin(ctx context.Context, f onboard.Flow, returnURL string) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

// TestOneDeadlinePerRequest: a hanging provider costs the user the
// configured deadline, then the error page.
func TestOneDeadlinePerRequest(t *testing.T) {
	p := hangingProvider{fake.New("fake")}
	a := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{p}, Config: func(c *onboard.Config) {
		c.Timeout = 300 * time.Millisecond
	}})
	b := a.Browser("alice", "acme")
	t0 := time.Now()
	res := b.Get(a.URL() + "/connect/fake/start?source=Salesforce")
	took := time.Since(t0)
	require.Equal(t, http.StatusBadGateway, res.Code)
	require.GreaterOrEqual(t, took, 300*time.Millisecond)
	require.Less(t, took, 2*time.Second)
	require.Contains(t, res.Body, "Start again")
}

// TestDefaultTimeoutIsAtMostTwentySeconds guards the documented default.
func TestDefaultTimeoutIsAtMostTwentySeconds(t *testing.T) {
	require.LessOrEqual(t, onboard.DefaultTimeout, 20*time.Second)
}

// TestDefaultErrorPage: the status, the safe message, a way back to
// DonePath and, where it helps, a link to try again.
func TestDefaultErrorPage(t *testing.T) {
	e := newEnv(t, func(c *onboard.Config) { c.DonePath = "/integrations" })
	b := e.browser("alice", "acme")
	res := b.get(e.URL() + "/connect/fake/return/" + strings.Repeat("A", 43))
	require.Equal(t, http.StatusNotFound, res.Code)
	require.Contains(t, res.Body, `<a href="/integrations">`)
	require.NotContains(t, res.Body, `href="/"`)
	require.Contains(t, res.Body, "404 Not Found")
}

// TestStoreDownAtStart: the store failing at admission is a clear 503 and
// no provider call; the page offers a fresh start.
func TestStoreDownAtStart(t *testing.T) {
	e := newEnv(t)
	e.store.Fail("CreateFlow", 1)
	res := e.browser("alice", "acme").get(e.URL() + "/connect/fake/start?source=Salesforce")
	require.Equal(t, http.StatusServiceUnavailable, res.Code)
	require.Contains(t, res.Body, "Start again")
	require.NotContains(t, res.Body, "eload")
	require.Zero(t, e.fake.Calls().Begin)
}

// TestSessionStoreDown: a session store that fails renders the app's
// error page exactly once, through Config.Error, with no provider call.
func TestSessionStoreDown(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	e.sessions.setFail(true)
	res := b.get(e.URL() + "/connect/fake/start?source=Salesforce")
	require.Equal(t, http.StatusServiceUnavailable, res.Code, res.Body)
	require.Equal(t, 1, strings.Count(res.Body, "<html"), "one page: %s", res.Body)
	require.Contains(t, res.Body, "session")
	require.Zero(t, e.fake.Calls().Begin)

	// A browser that already has its key needs no session write to
	// start; only the load can fail then.
	e.sessions.setFail(false)
	b.start("")
	e.sessions.setFail(true)
	res = b.get(e.URL() + "/connect/fake/start?source=Salesforce")
	require.Equal(t, http.StatusServiceUnavailable, res.Code, res.Body)
	require.Equal(t, 1, strings.Count(res.Body, "<html"), "one page: %s", res.Body)
	e.sessions.setFail(false)
	id := b.start("")
	require.Equal(t, http.StatusSeeOther, b.get(b.finish(id, onboard.Connected)).Code)
}

// TestSessionSaveFailsAsTheAnswerIsWritten: the session store fails when
// LoadAndSave saves the session as the start writes its redirect: one
// error page, no redirect and no second body.
func TestSessionSaveFailsAsTheAnswerIsWritten(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	// Commit 1 was the sign-in; 2 is LoadAndSave's, with the new browser
	// key, as the redirect is written.
	e.sessions.mu.Lock()
	e.sessions.failAt = 2
	e.sessions.mu.Unlock()
	res := b.get(e.URL() + "/connect/fake/start?source=Salesforce")
	require.Equal(t, http.StatusServiceUnavailable, res.Code, res.Body)
	require.Empty(t, res.Location)
	require.Equal(t, 1, strings.Count(res.Body, "<html"), res.Body)
	require.Equal(t, 1, strings.Count(res.Body, "</html>"), res.Body)
	// The key was not saved: the next start gives the browser a new one,
	// and its flow returns fine.
	id := b.start("source=Salesforce")
	require.Equal(t, http.StatusSeeOther, b.get(b.finish(id, onboard.Connected)).Code)
	// The flow whose redirect was lost is settled by the runner.
	e.clock.Add(onboard.DefaultFlowTTL + onboard.DefaultTimeout + 1)
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Settled)
}

func TestDeleteConnection(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	b.get(b.finish(b.start("source=Salesforce"), onboard.Connected))
	c := e.Connections("acme")[0]
	ctx := t.Context()
	err := e.Onboarder.DeleteConnection(ctx, onboard.Owner{Tenant: "globex", User: "eve"}, "fake", c.ID)
	require.ErrorIs(t, err, onboard.ErrUnknownConnection, "another tenant's connection is unknown to globex")
	require.Len(t, e.fake.Connections(), 1)
	require.ErrorIs(t, e.Onboarder.DeleteConnection(ctx, c.Owner, "nope", c.ID), onboard.ErrUnknownProvider)
	require.NoError(t, e.Onboarder.DeleteConnection(ctx, c.Owner, "fake", c.ID))
	require.Empty(t, e.Connections("acme"))
	require.Empty(t, e.fake.Connections())
	require.Equal(t, []string{"connected", "deleted"}, e.hooks.list())
	require.ErrorIs(t, e.Onboarder.DeleteConnection(ctx, c.Owner, "fake", c.ID), onboard.ErrUnknownConnection)
}

func TestStartURL(t *testing.T) {
	e := newEnv(t)
	got := e.Onboarder.StartURL("fake", onboard.StartOptions{Source: "Sales force", Name: "A&B", ReturnTo: "/x?y=1"})
	u, err := url.Parse(got)
	require.NoError(t, err)
	require.Equal(t, "/connect/fake/start", u.Path)
	require.Equal(t, url.Values{"source": {"Sales force"}, "name": {"A&B"}, "return_to": {"/x?y=1"}}, u.Query())
	require.Equal(t, "/connect/fake/start", e.Onboarder.StartURL("fake", onboard.StartOptions{}))
}

// TestRetryLinkStaysOnSite: the error page's "Try again" repeats a
// return, and a path the router did not clean (//evil.example/return/x,
// /\evil.example/popup/x) must not make that a link to another host.
// Through the handler, a session failure is routed first and an unclean
// path redirected to a clean one on this site.
func TestRetryLinkStaysOnSite(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"//evil.example/return/x?a=1", "/%2Fevil.example/return/x", "/\\evil.example/popup/x"} {
		req := httptest.NewRequest(http.MethodGet, "http://app.example"+"/connect", nil)
		req.URL.Path, req.URL.RawPath, req.URL.RawQuery = path, "", ""
		if p, q, ok := strings.Cut(path, "?"); ok {
			req.URL.Path, req.URL.RawQuery = p, q
		}
		if u, err := url.Parse(path); err == nil && u.RawPath != "" {
			req.URL.Path, req.URL.RawPath = u.Path, u.RawPath
		}
		href, text := e.Onboarder.RetryLink(req, onboard.ErrStore)
		require.Equal(t, "Try again", text, path)
		require.Regexp(t, `^/[^/\\]`, href, path)
	}

	b := e.browser("alice", "acme")
	u, err := url.Parse(e.URL())
	require.NoError(t, err)
	e.sessions.setFail(true)
	for _, path := range []string{"//evil.example/return/x?a=1", "/%2Fevil.example/return/x", "/\\evil.example/popup/x"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		for _, c := range b.Client.Jar.Cookies(u) {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		e.App.Server.Config.Handler.ServeHTTP(rec, req)
		require.NotRegexp(t, `href="(//|/\\|\\)`, rec.Body.String(), path)
		require.NotRegexp(t, `^(//|/\\|\\)`, rec.Header().Get("Location"), path)
	}
}

// lostAnswers is a store whose next n completions are stored but answer an
// error, as a database connection that drops after COMMIT does; with
// other, each is stored as another call's (a later UpdatedAt).
type lostAnswers struct {
	onboard.Store
	n     atomic.Int32
	other bool
}

func (s *lostAnswers) CompleteFlow(ctx context.Context, id string, c onboard.Connection, cleanup bool) error {
	if s.other && s.n.Load() > 0 {
		c.UpdatedAt = c.UpdatedAt.Add(time.Millisecond)
	}
	err := s.Store.CompleteFlow(ctx, id, c, cleanup)
	if err == nil && s.n.Add(-1) >= 0 {
		return errors.New("read tcp 10.0.0.5:5432: connection reset by peer")
	}
	return err
}

// TestCompletionWhoseAnswerWasLost: the store stored a return's
// completion but its answer was lost. The flow and its connection are read
// again and found as this call stored them: the return shows the result
// and fires its hook, once; a reload fires nothing more. One stored for
// another call is not taken for this one's.
func TestCompletionWhoseAnswerWasLost(t *testing.T) {
	for _, tt := range []struct {
		name  string
		other bool     // the store completed the flow for another call (another UpdatedAt)
		hooks []string // what this call fires (another call fires its own)
	}{
		{"this call's completion", false, []string{"connected"}},
		{"another call's completion", true, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &lostAnswers{other: tt.other}
			e := newEnv(t, func(c *onboard.Config) { s.Store = c.Store; c.Store = s })
			b := e.browser("alice", "acme")
			back := b.finish(b.start("source=Salesforce"), onboard.Connected)
			s.n.Store(1)
			res := b.get(back)
			require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
			require.Equal(t, tt.hooks, e.hooks.list())
			require.Equal(t, http.StatusSeeOther, b.get(back).Code, "a reload")
			require.Equal(t, tt.hooks, e.hooks.list())
			require.Len(t, e.Connections("acme"), 1)
		})
	}
	t.Run("the store is down", func(t *testing.T) {
		// A completion that failed, and a flow that is still pending when
		// read again: the error page, and a retry later completes.
		e := newEnv(t)
		b := e.browser("alice", "acme")
		back := b.finish(b.start("source=Salesforce"), onboard.Connected)
		e.store.Fail("CompleteFlow", 1)
		require.Equal(t, http.StatusServiceUnavailable, b.get(back).Code)
		require.Empty(t, e.hooks.list())
		require.Equal(t, http.StatusSeeOther, b.get(back).Code)
		require.Equal(t, []string{"connected"}, e.hooks.list())
	})
}
