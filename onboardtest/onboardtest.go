// Package onboardtest is the test kit for apps that mount onboard, and the
// harness of onboard's own tests.
//
//   - [Browser] is a browser-like client: a cookie jar that does not follow
//     redirects, so a test sees every step of a flow.
//   - [Emulators] runs both providers' emulators on loopback, with
//     onboard providers wired to them, and plays the user on their hosted
//     pages ([Emulators.Finish]) as success, failure or abandon.
//   - [App] is a small app with onboard mounted at /connect, scs sessions
//     and a sign-in endpoint.
//   - [FaultyStore] makes a Store fail, as a database that drops its
//     connection does. The emulators' faults are in providers/emulate.
//
// An app tests its own connect page in a few lines:
//
//	emu := onboardtest.NewEmulators(t, nil)
//	app := onboardtest.ServeApp(t, func(url string) http.Handler {
//		return myapp.Routes(url+"/connect", emu.Providers()) // the app builds onboard with them
//	})
//	b := onboardtest.NewBrowser(t)
//	b.PostForm(app+"/login", url.Values{"user": {"alice"}, "tenant": {"acme"}})
//	hosted := b.Get(app + "/connect/cdata/start?source=Salesforce").Location
//	back, err := emu.Finish(t.Context(), b, hosted, onboard.Connected)
//	res := b.Get(back) // 303 to the app's page, which reads ob.Outcome
package onboardtest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/store/memstore"
)

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

// Response is what a browser got.
type Response struct {
	Code     int
	Location string
	Body     string
}

func (b *Browser) do(req *http.Request) Response {
	b.T.Helper()
	res, err := b.Client.Do(req)
	require.NoError(b.T, err)
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return Response{res.StatusCode, res.Header.Get("Location"), string(body)}
}

// Get fetches u as a browser does for a typed URL or a bookmark: with
// Sec-Fetch-Site: none, which a GET start takes as the user's own
// request. (A request sent through b.Client carries only the headers it
// is given: with none at all, a GET start is taken as a link from an
// unknown page and answered with the confirmation page.)
func (b *Browser) Get(u string) Response {
	b.T.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(b.T, err)
	req.Header.Set("Sec-Fetch-Site", "none")
	return b.do(req)
}

// PostForm posts form to u as a form of u's own site does (with its
// Origin and Sec-Fetch-Site: same-origin).
func (b *Browser) PostForm(u string, form url.Values) Response {
	b.T.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	require.NoError(b.T, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", req.URL.Scheme+"://"+req.URL.Host)
	return b.do(req)
}

// Serve serves h on loopback until the test ends and returns its URL.
func Serve(t testing.TB, h http.Handler) string {
	return ServeApp(t, func(string) http.Handler { return h })
}

// ServeApp serves, on loopback until the test ends, the handler that build
// returns for the server's URL, and returns that URL: for an app whose
// onboard Config.URL must name the address it is served at.
//
//	app := onboardtest.ServeApp(t, func(url string) http.Handler { return newApp(url+"/connect", emu.Providers()) })
func ServeApp(t testing.TB, build func(url string) http.Handler) string {
	s := httptest.NewUnstartedServer(nil)
	s.Config.Handler = build("http://" + s.Listener.Addr().String())
	s.Start()
	t.Cleanup(s.Close)
	return s.URL
}

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

// App is a small app with onboard mounted at /connect, on loopback. Its
// pages: /login?user=&tenant= signs in (and also stores app data "cart"),
// /whoami answers "user|cart", /outcome?onboard_flow= answers the JSON of
// Onboarder.Outcome (or its error's status), and any other path echoes
// "page " and the request URI.
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

// New starts an App on 127.0.0.1 until the test ends.
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
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	a.Server = httptest.NewUnstartedServer(nil)
	cfg := onboard.Config{
		URL:       "http://" + a.Server.Listener.Addr().String() + "/connect",
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
	a.Server.Config.Handler = middleware.LoadAndSave(a.Sessions, a.Onboarder.SessionError)(a.Mux(ob))
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
	mux.HandleFunc("/outcome", func(w http.ResponseWriter, r *http.Request) {
		c, err := a.Onboarder.Outcome(r)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(onboard.StatusCode(err))
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(c)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "page "+r.URL.RequestURI())
	})
	return mux
}

// URL returns the app's base URL.
func (a *App) URL() string { return a.Server.URL }

// Connections lists the tenant's stored connections, newest first.
func (a *App) Connections(tenant string) []onboard.Connection {
	a.T.Helper()
	cs, err := a.Store.Connections(context.Background(), onboard.ConnectionQuery{Tenant: tenant})
	require.NoError(a.T, err)
	return cs
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

// Start starts a flow at the app and returns the hosted page's URL the
// app redirected to; the start must answer 302.
func (b *Browser) Start(a *App, provider, query string) string {
	b.T.Helper()
	res := b.Get(a.URL() + "/connect/" + provider + "/start?" + query)
	require.Equal(b.T, http.StatusFound, res.Code, res.Body)
	return res.Location
}

// Outcome asks the app for the verified outcome of the flow that the
// result redirect location names, as the app's page would with
// Onboarder.Outcome; status is 200 or the error's status.
func (b *Browser) Outcome(a *App, location string) (c onboard.Connection, status int) {
	b.T.Helper()
	u, err := url.Parse(location)
	require.NoError(b.T, err)
	res, err := b.Client.Get(a.URL() + "/outcome?" + u.RawQuery)
	require.NoError(b.T, err)
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		require.NoError(b.T, json.NewDecoder(res.Body).Decode(&c))
	}
	return c, res.StatusCode
}

// FlowID returns the flow id in a return URL's path.
func FlowID(t testing.TB, returnURL string) string {
	u, err := url.Parse(returnURL)
	require.NoError(t, err)
	return path.Base(u.Path)
}

// Clock is a clock a test moves, for onboard.Config.Now: it stands at the
// time it was made with, and moves only by Add. It is safe for concurrent
// use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock standing at now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
