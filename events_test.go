package onboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/providers/fake"
)

// deliver posts a fake webhook event and returns the status.
func (e *env) deliver(ev fake.WebhookEvent) int {
	e.t.Helper()
	body, err := json.Marshal(ev)
	require.NoError(e.t, err)
	req, err := http.NewRequest(http.MethodPost, e.URL()+"/connect/fake/webhook", bytes.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("X-Fake-Secret", fake.WebhookSecret)
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	res.Body.Close()
	return res.StatusCode
}

// connected runs a flow to a stored connected connection.
func (e *env) connected(user, tenant string) onboard.Connection {
	e.t.Helper()
	b := e.browser(user, tenant)
	id := b.start("source=Salesforce")
	require.Equal(e.t, http.StatusSeeOther, b.get(b.finish(id, onboard.Connected)).Code)
	return e.stored(e.flow(id).ConnectionID)
}

// stored returns the stored connection with this id.
func (e *env) stored(id string) onboard.Connection {
	e.t.Helper()
	c, found, err := e.store.FindConnection(context.Background(), "fake", id)
	require.NoError(e.t, err)
	require.True(e.t, found)
	return c
}

// TestEventOrdering: events of a connection are ordered by the
// provider's time, never the app's; of two in the same second a failure
// counts after a success; stale and duplicate events change nothing and
// are logged at info with the reason.
func TestEventOrdering(t *testing.T) {
	e := newEnv(t)
	c := e.connected("alice", "acme")
	t0 := time.Unix(1_900_000_000, 0) // the provider's clock, far from the app's
	steps := []struct {
		ev    fake.WebhookEvent
		state onboard.State
		hooks []string // the hooks the step fires
	}{
		{fake.WebhookEvent{State: onboard.Failed, At: t0}, onboard.Failed, []string{"failed"}},
		{fake.WebhookEvent{State: onboard.Connected, At: t0}, onboard.Failed, []string{}},                 // same second: failure counts after
		{fake.WebhookEvent{State: onboard.Failed, At: t0}, onboard.Failed, []string{}},                    // duplicate
		{fake.WebhookEvent{State: onboard.Connected, At: t0.Add(-time.Hour)}, onboard.Failed, []string{}}, // stale
		{fake.WebhookEvent{State: onboard.Connected, At: t0.Add(time.Second)}, onboard.Connected, []string{"connected"}},
	}
	for i, s := range steps {
		before := len(e.hooks.list())
		s.ev.Connection = c.ID
		require.Equal(t, http.StatusOK, e.deliver(s.ev), "step %d", i)
		got := e.stored(c.ID)
		require.Equal(t, s.state, got.State, "step %d", i)
		require.Equal(t, s.hooks, e.hooks.list()[before:], "step %d", i)
	}
	require.Contains(t, e.log.String(), `level=INFO msg="onboard: event dropped" `)
	require.Contains(t, e.log.String(), "why=\"older than the last event applied\"")

	// The same two events in the other order end the same way.
	d := e.connected("bob", "acme")
	e.deliver(fake.WebhookEvent{Connection: d.ID, State: onboard.Connected, At: t0})
	e.deliver(fake.WebhookEvent{Connection: d.ID, State: onboard.Failed, At: t0})
	require.Equal(t, onboard.Failed, e.stored(d.ID).State)
}

// TestEventBeforeTheBrowser: an event that arrives before the flow's
// browser comes back is kept, never attached by itself, and merged once
// the browser completes the flow.
func TestEventBeforeTheBrowser(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	id := b.start("source=Salesforce")
	back := b.finish(id, onboard.Connected)
	conn := connOf(t, back)
	at := time.Unix(1_900_000_000, 0)
	require.Equal(t, http.StatusOK, e.deliver(fake.WebhookEvent{Connection: conn, State: onboard.Connected, At: at}))
	require.Empty(t, e.Connections("acme"), "an event attaches nothing by itself")
	require.Empty(t, e.hooks.list())

	require.Equal(t, http.StatusSeeOther, b.get(back).Code)
	c := e.stored(conn)
	require.Equal(t, onboard.Owner{Tenant: "acme", User: "alice"}, c.Owner)
	require.Equal(t, onboard.Connected, c.State)
	require.True(t, at.Equal(c.EventAt), "the early event's time is kept: %v", c.EventAt)
	// A stale redelivery after completion changes nothing.
	e.deliver(fake.WebhookEvent{Connection: conn, State: onboard.Failed, At: at.Add(-time.Minute)})
	require.Equal(t, onboard.Connected, e.stored(conn).State)

	// Detached records nobody completed are pruned.
	e.deliver(fake.WebhookEvent{Connection: "conn-nobody", State: onboard.Connected, At: at})
	e.clock.Add(onboard.DefaultRetain + time.Hour)
	_, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	_, found, err := e.store.FindConnection(t.Context(), "fake", "conn-nobody")
	require.NoError(t, err)
	require.False(t, found)
}

func TestWebhookDeletion(t *testing.T) {
	e := newEnv(t)
	c := e.connected("alice", "acme")
	require.Equal(t, http.StatusOK, e.deliver(fake.WebhookEvent{Connection: c.ID, Deleted: true, At: time.Now()}))
	require.Empty(t, e.Connections("acme"))
	require.Equal(t, []string{"connected", "deleted"}, e.hooks.list())
	require.Equal(t, http.StatusOK, e.deliver(fake.WebhookEvent{Connection: c.ID, Deleted: true, At: time.Now()}), "a duplicate is fine")
}

func TestWebhookRefusals(t *testing.T) {
	e := newEnv(t)
	post := func(secret, body string) int {
		req, _ := http.NewRequest(http.MethodPost, e.URL()+"/connect/fake/webhook", bytes.NewReader([]byte(body)))
		req.Header.Set("X-Fake-Secret", secret)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, post("wrong", `{"connection":"x"}`))
	require.Equal(t, http.StatusBadRequest, post(fake.WebhookSecret, `{`))
	require.Equal(t, http.StatusRequestEntityTooLarge, post(fake.WebhookSecret, `{"connection":"`+string(bytes.Repeat([]byte("x"), 70<<10))+`"}`))
	// A failing store answers 503, so that the provider delivers again.
	c := e.connected("alice", "acme")
	e.store.Fail("FindConnection", 1)
	require.Equal(t, http.StatusServiceUnavailable, e.deliver(fake.WebhookEvent{Connection: c.ID, State: onboard.Failed, At: time.Now()}))
	require.Equal(t, onboard.Connected, e.stored(c.ID).State)
	require.Equal(t, http.StatusOK, e.deliver(fake.WebhookEvent{Connection: c.ID, State: onboard.Failed, At: time.Now()}))
	require.Equal(t, onboard.Failed, e.stored(c.ID).State)
}

// barrierFind is a Store whose next two FindConnection calls, once armed,
// both answer before either returns: two events of one connection, on
// two instances, read it before either writes.
type barrierFind struct {
	onboard.Store
	mu    sync.Mutex
	armed int
	both  chan struct{}
}

func (s *barrierFind) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed, s.both = 2, make(chan struct{})
}

func (s *barrierFind) FindConnection(ctx context.Context, provider, id string) (onboard.Connection, bool, error) {
	c, found, err := s.Store.FindConnection(ctx, provider, id)
	s.mu.Lock()
	wait := s.armed > 0
	if wait {
		if s.armed--; s.armed == 0 {
			close(s.both)
		}
	}
	both := s.both
	s.mu.Unlock()
	if wait {
		<-both
	}
	return c, found, err
}

// TestConcurrentEventsKeepTheProvidersOrder: two events of one
// connection, delivered at once (to two instances), both read the
// connection before either writes; the later event (by the provider's
// time) wins whichever is written last, and its hook fires once.
func TestConcurrentEventsKeepTheProvidersOrder(t *testing.T) {
	for round := range 10 {
		s := &barrierFind{}
		e := newEnv(t, func(c *onboard.Config) { s.Store = c.Store; c.Store = s })
		c := e.connected("alice", "acme")
		at := time.Now()
		s.arm()
		var wg sync.WaitGroup
		for _, ev := range []fake.WebhookEvent{
			{Connection: c.ID, State: onboard.Failed, Message: "token revoked", At: at.Add(2 * time.Second)},
			{Connection: c.ID, State: onboard.Connected, At: at.Add(time.Second)},
		} {
			wg.Go(func() { assert.Equal(t, http.StatusOK, e.deliver(ev)) })
		}
		wg.Wait()
		got := e.stored(c.ID)
		require.Equal(t, onboard.Failed, got.State, "round %d", round)
		require.True(t, got.EventAt.Equal(at.Add(2*time.Second)), "round %d: %v", round, got.EventAt)
		require.Equal(t, []string{"connected", "failed"}, e.hooks.list(), "round %d", round)
	}
}
