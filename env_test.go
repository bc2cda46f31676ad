package onboard_test

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// env is the test app with the fake provider, a store that can be made to
// fail, a session store that counts its writes, a clock the test moves,
// and a log the test can read.
type env struct {
	*onboardtest.App
	t        testing.TB
	fake     *fake.Provider
	store    *onboardtest.FaultyStore
	sessions *countingSessions
	clock    *onboardtest.Clock
	log      *testutil.Buffer
	hooks    *hookLog
}

// hookLog records the kind of every hook call.
type hookLog struct {
	mu    sync.Mutex
	kinds []string
}

func (h *hookLog) hooks() onboard.Hooks {
	rec := func(kind string) func(context.Context, onboard.Connection) {
		return func(context.Context, onboard.Connection) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.kinds = append(h.kinds, kind)
		}
	}
	return onboard.Hooks{Connected: rec("connected"), Failed: rec("failed"), Abandoned: rec("abandoned"),
		Revoked: rec("revoked"), Deleted: rec("deleted")}
}

func (h *hookLog) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.kinds...)
}

// countingSessions is scs's in-memory session store, counting commits.
type countingSessions struct {
	*scsmem.MemStore
	mu      sync.Mutex
	commits int
	fail    bool
	failAt  int // the number of a commit that fails
	// held loads wait for each other until release is closed.
	held    int
	release chan struct{}
}

// holdLoads makes the next n session loads wait for each other, so that n
// requests of one browser hold copies of the same session at once.
func (s *countingSessions) holdLoads(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held, s.release = n, make(chan struct{})
}

func (s *countingSessions) Commit(token string, b []byte, expiry time.Time) error {
	s.mu.Lock()
	s.commits++
	fail := s.fail || s.commits == s.failAt
	s.mu.Unlock()
	if fail {
		return errors.New("session database unreachable")
	}
	return s.MemStore.Commit(token, b, expiry)
}

func (s *countingSessions) Find(token string) ([]byte, bool, error) {
	s.mu.Lock()
	fail := s.fail
	var wait chan struct{}
	if s.held > 0 {
		s.held--
		wait = s.release
		if s.held == 0 {
			close(s.release)
		}
	}
	s.mu.Unlock()
	if wait != nil {
		<-wait
	}
	if fail {
		return nil, false, errors.New("session database unreachable")
	}
	return s.MemStore.Find(token)
}

func (s *countingSessions) count() int { s.mu.Lock(); defer s.mu.Unlock(); return s.commits }
func (s *countingSessions) setFail(f bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = f
}

func newEnv(t testing.TB, mod ...func(*onboard.Config)) *env {
	t.Helper()
	e := &env{t: t, fake: fake.New("fake"), clock: onboardtest.NewClock(time.Now()), log: &testutil.Buffer{}, hooks: &hookLog{}}
	e.fake.URL = onboardtest.Serve(t, e.fake)
	e.store = onboardtest.NewFaultyStore(memstore.New(memstore.Options{}))
	e.sessions = &countingSessions{MemStore: scsmem.NewWithCleanupInterval(0)}
	e.App = onboardtest.New(t, onboardtest.Options{
		Providers:    []onboard.Provider{e.fake},
		Store:        e.store,
		SessionStore: e.sessions,
		Logger:       slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Config: func(c *onboard.Config) {
			c.Now = e.clock.Now
			c.Hooks = e.hooks.hooks()
			for _, m := range mod {
				m(c)
			}
		},
	})
	return e
}

// browser is a signed-in browser of the env.
type browser struct {
	*onboardtest.Browser
	e *env
}

func (e *env) browser(user, tenant string) *browser {
	return &browser{e.App.Browser(user, tenant), e}
}

func (b *browser) get(u string) onboardtest.Response { b.T.Helper(); return b.Get(u) }

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

// flow returns the stored flow.
func (e *env) flow(id string) onboard.Flow {
	e.t.Helper()
	f, found, err := e.store.Flow(context.Background(), id)
	require.NoError(e.t, err)
	require.True(e.t, found, "flow %s", id)
	return f
}
