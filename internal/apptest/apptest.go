// Package apptest runs a small app with onboard mounted at /connect, scs
// sessions and a sign-in endpoint on loopback, and drives it with
// browser-like clients (each its own cookie jar). The tests of the core,
// the providers and the stores share it.
package apptest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path"
	"sync"
	"testing"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/store/memstore"
)

// Options configure an App.
type Options struct {
	Providers []onboard.Provider
	// Store defaults to a new memstore.
	Store onboard.Store
	// SessionStore is scs's store; default scs's in-memory store. Share
	// one between Apps to run several instances.
	SessionStore scs.Store
	// Config, when set, edits the onboard config before New.
	Config func(*onboard.Config)
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// Wrap, when set, wraps the onboard handler (to time it, say).
	Wrap func(http.Handler) http.Handler
}

// App is the running app.
type App struct {
	T         testing.TB
	Server    *httptest.Server
	Onboarder *onboard.Onboarder
	Sessions  *scs.SessionManager
	Store     onboard.Store
}

// Owner reads the signed-in owner from the app's session.
func Owner(sm *scs.SessionManager) func(*http.Request) (onboard.Owner, error) {
	return func(r *http.Request) (onboard.Owner, error) {
		o := onboard.Owner{Tenant: sm.GetString(r.Context(), "tenant"), User: sm.GetString(r.Context(), "user")}
		if o.IsZero() {
			return o, errors.New("not signed in")
		}
		return o, nil
	}
}

// New starts an App on 127.0.0.1. Its pages: /login?user=&tenant=
// (signs in and also stores app data "cart"), /whoami ("user|cart"), and
// any other path echoes "page " and the request URI.
func New(t testing.TB, opt Options) *App {
	t.Helper()
	a := &App{T: t, Store: opt.Store}
	if a.Store == nil {
		a.Store = memstore.New(memstore.Options{})
	}
	a.Sessions = scs.New()
	a.Sessions.Cookie.Secure = false
	if opt.SessionStore != nil {
		a.Sessions.Store = opt.SessionStore
	} else {
		// No cleanup goroutine: the store lives as long as the test.
		a.Sessions.Store = scsmem.NewWithCleanupInterval(0)
	}
	sessions, err := middleware.NewSCS(a.Sessions)
	require.NoError(t, err)
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a.Server = &httptest.Server{Listener: l, Config: &http.Server{}}
	cfg := onboard.Config{
		URL:       "http://" + l.Addr().String() + "/connect",
		Providers: opt.Providers,
		Store:     a.Store,
		Sessions:  sessions,
		Owner:     Owner(a.Sessions),
		Logger:    opt.Logger,
	}
	if opt.Config != nil {
		opt.Config(&cfg)
	}
	a.Onboarder, err = onboard.New(cfg)
	require.NoError(t, err)
	ob := a.Onboarder.Handler()
	if opt.Wrap != nil {
		ob = opt.Wrap(ob)
	}
	a.Server.Config.Handler = a.Sessions.LoadAndSave(a.Mux(ob))
	a.Server.Start()
	t.Cleanup(a.Server.Close)
	return a
}

// Mux returns the app's routes around the onboard handler.
func (a *App) Mux(ob http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/connect/", ob)
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		a.Sessions.Put(r.Context(), "user", r.URL.Query().Get("user"))
		a.Sessions.Put(r.Context(), "tenant", r.URL.Query().Get("tenant"))
		a.Sessions.Put(r.Context(), "cart", "3 apples") // the app's own data
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, a.Sessions.GetString(r.Context(), "user")+"|"+a.Sessions.GetString(r.Context(), "cart"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "page "+r.URL.RequestURI())
	})
	return mux
}

// URL returns the app's base URL.
func (a *App) URL() string { return a.Server.URL }

// Connections lists the tenant's stored connections.
func (a *App) Connections(tenant string) []onboard.Connection {
	cs, err := a.Store.Connections(context.Background(), tenant)
	require.NoError(a.T, err)
	return cs
}

// Browser is one browser: a cookie jar that does not follow redirects.
type Browser struct {
	T      testing.TB
	Client *http.Client
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser(t testing.TB) *Browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &Browser{T: t, Client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// Browser returns a new browser signed in as user of tenant (none when
// user is empty).
func (a *App) Browser(user, tenant string) *Browser {
	b := NewBrowser(a.T)
	if user != "" {
		b.Login(a, user, tenant)
	}
	return b
}

// Login signs the browser in to the app.
func (b *Browser) Login(a *App, user, tenant string) {
	b.T.Helper()
	res := b.Get(a.URL() + "/login?" + url.Values{"user": {user}, "tenant": {tenant}}.Encode())
	require.Equal(b.T, http.StatusOK, res.Code)
}

// Response is what a browser got.
type Response struct {
	Code     int
	Location string
	Body     string
}

// Get fetches u without following redirects.
func (b *Browser) Get(u string) Response {
	b.T.Helper()
	res, err := b.Client.Get(u)
	require.NoError(b.T, err)
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return Response{res.StatusCode, res.Header.Get("Location"), string(body)}
}

// Start starts a flow at the app and returns the hosted page's URL the
// app redirected to; the start must answer 302.
func (b *Browser) Start(a *App, provider, query string) string {
	b.T.Helper()
	res := b.Get(a.URL() + "/connect/" + provider + "/start?" + query)
	require.Equal(b.T, http.StatusFound, res.Code, res.Body)
	return res.Location
}

// FlowID returns the flow id in a return URL's path.
func FlowID(t testing.TB, returnURL string) string {
	u, err := url.Parse(returnURL)
	require.NoError(t, err)
	return path.Base(u.Path)
}

// Serve serves h on loopback until the test ends and returns its URL.
func Serve(t testing.TB, h http.Handler) string {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// FlakyStore is a memstore whose CompleteFlow fails while Fail is above
// zero, as a database that drops its connection would.
type FlakyStore struct {
	*memstore.Store
	mu   sync.Mutex
	fail int
}

// NewFlakyStore wraps a new memstore with opt.
func NewFlakyStore(opt memstore.Options) *FlakyStore {
	return &FlakyStore{Store: memstore.New(opt)}
}

// Fail makes the next n completions fail.
func (s *FlakyStore) Fail(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = n
}

// CompleteFlow fails while completions are to fail.
func (s *FlakyStore) CompleteFlow(ctx context.Context, id string, c onboard.Connection) error {
	s.mu.Lock()
	fail := s.fail > 0
	s.fail--
	s.mu.Unlock()
	if fail {
		return errors.New("database connection lost")
	}
	return s.Store.CompleteFlow(ctx, id, c)
}

// RSAKey returns a 2048-bit key made once per test binary.
var RSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return k
})

// Concurrently calls fn(i) for every i below n from workers goroutines
// and returns how many calls failed and the first failure.
func Concurrently(n, workers int, fn func(i int) error) (failed int, first error) {
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if failed++; failed == 1 {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return failed, first
}
