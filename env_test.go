package onboard_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// env is an app with onboard mounted at /connect, scs sessions, a sign-in
// page, and the fake provider's hosted page on its own server.
type env struct {
	t     testing.TB
	app   *httptest.Server
	fake  *fake.Provider
	store *flakyStore
	ob    *onboard.Onboarder
	sm    *scs.SessionManager
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

// flakyStore fails CompleteFlow while failComplete is set.
type flakyStore struct {
	*memstore.Store
	mu           sync.Mutex
	failComplete int
}

func (s *flakyStore) CompleteFlow(ctx context.Context, id string, c onboard.Connection) error {
	s.mu.Lock()
	fail := s.failComplete > 0
	if fail {
		s.failComplete--
	}
	s.mu.Unlock()
	if fail {
		return errors.New("connection reset by peer")
	}
	return s.Store.CompleteFlow(ctx, id, c)
}

func ownerOf(sm *scs.SessionManager) func(r *http.Request) (onboard.Owner, error) {
	return func(r *http.Request) (onboard.Owner, error) {
		o := onboard.Owner{Tenant: sm.GetString(r.Context(), "tenant"), User: sm.GetString(r.Context(), "user")}
		if o.IsZero() {
			return o, errors.New("not signed in")
		}
		return o, nil
	}
}

func newEnv(t testing.TB, mod ...func(*onboard.Config)) *env {
	t.Helper()
	e := &env{t: t, fake: fake.New("fake"), clock: &clock{now: time.Now()}}
	hosted := httptest.NewServer(e.fake)
	t.Cleanup(hosted.Close)
	e.fake.URL = hosted.URL

	e.sm = scs.New()
	e.sm.Cookie.Secure = false
	sessions, err := middleware.NewSCS(e.sm)
	require.NoError(t, err)
	e.store = &flakyStore{Store: memstore.New(memstore.Options{Now: e.clock.Now})}

	e.app = httptest.NewUnstartedServer(nil)
	cfg := onboard.Config{
		URL:       "http://" + e.app.Listener.Addr().String() + "/connect",
		Providers: []onboard.Provider{e.fake},
		Store:     e.store,
		Sessions:  sessions,
		Owner:     ownerOf(e.sm),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:       e.clock.Now,
	}
	for _, m := range mod {
		m(&cfg)
	}
	e.ob, err = onboard.New(cfg)
	require.NoError(t, err)

	mux := http.NewServeMux()
	mux.Handle("/connect/", e.ob.Handler())
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		e.sm.Put(r.Context(), "user", r.URL.Query().Get("user"))
		e.sm.Put(r.Context(), "tenant", r.URL.Query().Get("tenant"))
		e.sm.Put(r.Context(), "cart", "3 apples") // the app's own data
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, e.sm.GetString(r.Context(), "user")+"|"+e.sm.GetString(r.Context(), "cart"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "page "+r.URL.RequestURI())
	})
	e.app.Config.Handler = e.sm.LoadAndSave(mux)
	e.app.Start()
	t.Cleanup(e.app.Close)
	return e
}

// browser is one browser: a cookie jar that does not follow redirects.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser(user, tenant string) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(e.t, err)
	b := &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
	if user != "" {
		b.login(user, tenant)
	}
	return b
}

func (b *browser) login(user, tenant string) {
	res := b.get(b.e.app.URL + "/login?" + url.Values{"user": {user}, "tenant": {tenant}}.Encode())
	require.Equal(b.e.t, http.StatusOK, res.code)
}

type response struct {
	code     int
	location string
	body     string
}

func (b *browser) get(u string) response {
	b.e.t.Helper()
	res, err := b.c.Get(u)
	require.NoError(b.e.t, err)
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header.Get("Location"), string(body)}
}

// start starts a flow and returns its id; the response must redirect to
// the fake hosted page.
func (b *browser) start(query string) string {
	b.e.t.Helper()
	res := b.get(b.e.app.URL + "/connect/fake/start?" + query)
	require.Equal(b.e.t, http.StatusFound, res.code, res.body)
	require.True(b.e.t, strings.HasPrefix(res.location, b.e.fake.URL+"/hosted?"), res.location)
	u, err := url.Parse(res.location)
	require.NoError(b.e.t, err)
	return u.Query().Get("flow")
}

// finish plays the hosted page and returns the return URL.
func (b *browser) finish(flowID string, outcome onboard.State) string {
	b.e.t.Helper()
	back, err := b.e.fake.Finish(flowID, outcome)
	require.NoError(b.e.t, err)
	return back
}

func (e *env) connections(tenant string) []onboard.Connection {
	cs, err := e.store.Connections(context.Background(), tenant)
	require.NoError(e.t, err)
	return cs
}
