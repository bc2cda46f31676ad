package onboard_test

import (
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apptest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// env is the test app with the fake provider, a store whose completion
// can be made to fail, and a clock the test moves.
type env struct {
	*apptest.App
	t     testing.TB
	fake  *fake.Provider
	store *apptest.FlakyStore
	clock *clock
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newEnv(t testing.TB, mod ...func(*onboard.Config)) *env {
	t.Helper()
	e := &env{t: t, fake: fake.New("fake"), clock: &clock{now: time.Now()}}
	hosted := apptest.Serve(t, e.fake)
	e.fake.URL, e.fake.Now = hosted, e.clock.Now
	e.store = apptest.NewFlakyStore(memstore.Options{Now: e.clock.Now})
	e.App = apptest.New(t, apptest.Options{
		Providers: []onboard.Provider{e.fake},
		Store:     e.store,
		Config: func(c *onboard.Config) {
			c.Now = e.clock.Now
			for _, m := range mod {
				m(c)
			}
		},
	})
	return e
}

// browser is a signed-in browser of the env.
type browser struct {
	*apptest.Browser
	e *env
}

func (e *env) browser(user, tenant string) *browser {
	return &browser{e.App.Browser(user, tenant), e}
}

func (b *browser) login(user, tenant string) { b.Login(b.e.App, user, tenant) }

func (b *browser) get(u string) apptest.Response { b.T.Helper(); return b.Get(u) }

// start starts a flow and returns its id; the app must redirect to the
// fake hosted page.
func (b *browser) start(query string) string {
	b.T.Helper()
	loc := b.Start(b.e.App, "fake", query)
	require.True(b.T, strings.HasPrefix(loc, b.e.fake.URL+"/hosted?"), loc)
	u, err := url.Parse(loc)
	require.NoError(b.T, err)
	return u.Query().Get("flow")
}

// finish plays the hosted page and returns the return URL.
func (b *browser) finish(flowID string, outcome onboard.State) string {
	b.T.Helper()
	back, err := b.e.fake.Finish(flowID, outcome)
	require.NoError(b.T, err)
	return back
}

func (e *env) connections(tenant string) []onboard.Connection { return e.Connections(tenant) }
