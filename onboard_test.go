package onboard_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

func TestRoundTripOutcomes(t *testing.T) {
	tests := []struct {
		outcome onboard.State
		stored  int
	}{
		{onboard.Connected, 1},
		{onboard.Failed, 1},
		{onboard.Abandoned, 0}, // nothing was saved at the provider
	}
	for _, tt := range tests {
		t.Run(string(tt.outcome), func(t *testing.T) {
			var hooked []onboard.Connection
			e := newEnv(t, func(c *onboard.Config) {
				c.Hooks = onboard.Hooks{
					Connected: func(_ context.Context, c onboard.Connection) { hooked = append(hooked, c) },
					Failed:    func(_ context.Context, c onboard.Connection) { hooked = append(hooked, c) },
					Abandoned: func(_ context.Context, c onboard.Connection) { hooked = append(hooked, c) },
				}
			})
			b := e.browser("alice", "acme")
			id := b.start("source=Salesforce&name=Sales&return_to=%2Fsettings%3Ftab%3Ddata")
			res := b.get(b.finish(id, tt.outcome))
			require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
			loc, err := url.Parse(res.Location)
			require.NoError(t, err)
			assert.Equal(t, "/settings", loc.Path)
			assert.Equal(t, "data", loc.Query().Get("tab"))
			assert.Equal(t, string(tt.outcome), loc.Query().Get("onboard_status"))
			assert.Equal(t, "fake", loc.Query().Get("onboard_provider"))

			cs := e.connections("acme")
			require.Len(t, cs, tt.stored)
			if tt.stored == 1 {
				c := cs[0]
				assert.Equal(t, e.fake.ConnectionID(id), c.ID)
				assert.Equal(t, loc.Query().Get("onboard_connection"), c.ID)
				assert.Equal(t, tt.outcome, c.State)
				assert.Equal(t, onboard.Owner{Tenant: "acme", User: "alice"}, c.Owner)
				assert.Equal(t, "Salesforce", c.Source)
				assert.Equal(t, "Sales", c.Name)
				assert.Equal(t, id, c.FlowID)
			}
			require.Len(t, hooked, 1, "exactly one hook call")
			assert.Equal(t, tt.outcome, hooked[0].State)
			f, _, err := e.store.Flow(context.Background(), id)
			require.NoError(t, err)
			assert.Equal(t, onboard.FlowDone, f.State)
			assert.Equal(t, tt.outcome, f.Outcome)
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
	require.True(t, strings.HasPrefix(res.Body, "page /?onboard_connection=conn-"), res.Body)
	require.Len(t, e.connections("acme"), 1)
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
		}, http.StatusBadRequest, "not a valid return"},
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
		{"another browser session, same user", func(t *testing.T) (*browser, string) {
			a := e.browser("alice", "acme")
			back := a.finish(a.start(""), onboard.Connected)
			return e.browser("alice", "acme"), back
		}, http.StatusForbidden, "another browser"},
		{"link sent to a victim", func(t *testing.T) (*browser, string) {
			attacker := e.browser("mallory", "evil")
			back := attacker.finish(attacker.start(""), onboard.Connected)
			return e.browser("alice", "acme"), back
		}, http.StatusForbidden, "another browser"},
		{"another owner in the same session", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			b.login("bob", "acme")
			return b, back
		}, http.StatusForbidden, "another user"},
		{"signed out before the return", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			b.login("", "")
			return b, back
		}, http.StatusUnauthorized, "sign in"},
		{"forged connection id", func(t *testing.T) (*browser, string) {
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			return b, strings.Replace(back, "conn=conn-", "conn=conn-0", 1)
		}, http.StatusForbidden, "does not confirm"},
		{"another tenant's connection id", func(t *testing.T) (*browser, string) {
			other := e.browser("eve", "globex")
			otherID := other.start("")
			other.finish(otherID, onboard.Connected)
			b := e.browser("alice", "acme")
			back := b.finish(b.start(""), onboard.Connected)
			u, _ := url.Parse(back)
			q := u.Query()
			q.Set("conn", e.fake.ConnectionID(otherID))
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
			before := len(e.connections("acme"))
			res := b.get(target)
			require.Equal(t, tt.code, res.Code, res.Body)
			require.Contains(t, res.Body, tt.message)
			require.Len(t, e.connections("acme"), before, "a refused return must store nothing")
			require.NotContains(t, res.Body, "onboard:", "no internal error text")
		})
	}
}

func TestReplay(t *testing.T) {
	hooks := 0
	e := newEnv(t, func(c *onboard.Config) {
		c.Hooks.Connected = func(context.Context, onboard.Connection) { hooks++ }
	})
	b := e.browser("alice", "acme")
	back := b.finish(b.start(""), onboard.Connected)
	first := b.get(back)
	require.Equal(t, http.StatusSeeOther, first.Code)

	// A reload in the session that completed the flow is shown the same
	// result, and stores nothing.
	again := b.get(back)
	require.Equal(t, http.StatusSeeOther, again.Code)
	require.Equal(t, first.Location, again.Location)
	require.Len(t, e.connections("acme"), 1)
	require.Equal(t, 1, hooks, "no second hook call")

	// A replay from anywhere else is refused.
	res := e.browser("alice", "acme").get(back)
	require.Equal(t, http.StatusConflict, res.Code)
	require.Contains(t, res.Body, "already completed")
	res = e.browser("mallory", "evil").get(back)
	require.Equal(t, http.StatusConflict, res.Code)
	// So is one in the same session once the flow's lifetime is over.
	e.clock.Add(onboard.DefaultFlowTTL + time.Second)
	require.Equal(t, http.StatusConflict, b.get(back).Code)
	require.Len(t, e.connections("acme"), 1)
	require.Equal(t, 1, hooks)
}

func TestExpiredFlowOffersRestart(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	id := b.start("source=Salesforce")
	back := b.finish(id, onboard.Connected)
	e.clock.Add(onboard.DefaultFlowTTL + time.Second)
	res := b.get(back)
	require.Equal(t, http.StatusGone, res.Code)
	require.Contains(t, res.Body, `href="/connect/fake/start?source=Salesforce"`)
	require.Empty(t, e.connections("acme"))
}

func TestConcurrentReturnsStoreOne(t *testing.T) {
	var mu sync.Mutex
	hooked := 0
	e := newEnv(t, func(c *onboard.Config) {
		c.Hooks.Connected = func(context.Context, onboard.Connection) { mu.Lock(); hooked++; mu.Unlock() }
	})
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
	// Every return is refused (409) or, in the session that started the
	// flow, shown the one result (303); exactly one completes it.
	require.Contains(t, codes, http.StatusSeeOther)
	for _, c := range codes {
		require.Contains(t, []int{http.StatusSeeOther, http.StatusConflict}, c)
	}
	require.Equal(t, 1, hooked, "exactly one return completes the flow")
	require.Len(t, e.connections("acme"), 1)
	_, completes := e.fake.Calls()
	require.LessOrEqual(t, completes, n)
}

func TestReconcilerSettlesFlowsWhoseBrowserNeverCameBack(t *testing.T) {
	var hooked []onboard.Connection
	e := newEnv(t, func(c *onboard.Config) {
		c.Hooks.Connected = func(_ context.Context, c onboard.Connection) { hooked = append(hooked, c) }
		c.Hooks.Abandoned = func(_ context.Context, c onboard.Connection) { hooked = append(hooked, c) }
	})
	ctx := context.Background()
	b := e.browser("alice", "acme")
	madeIt := b.start("source=Salesforce")
	back := b.finish(madeIt, onboard.Connected) // connected at the provider; the browser is gone
	gaveUp := b.start("source=HubSpot")         // never finished
	recent := b.start("source=Stripe")

	rep, err := e.Onboarder.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, onboard.ReconcileReport{}, rep, "flows younger than ReconcileAfter are left alone")

	e.clock.Add(11 * time.Minute)
	rep, err = e.Onboarder.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, onboard.ReconcileReport{Checked: 3, Completed: 1, Pending: 2}, rep)
	cs := e.connections("acme")
	require.Len(t, cs, 1)
	require.Equal(t, e.fake.ConnectionID(madeIt), cs[0].ID)
	require.Equal(t, "Salesforce", cs[0].Source)
	require.Len(t, hooked, 1)

	// The browser comes back after all: it is shown the result, once.
	res := b.get(back)
	require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
	require.Contains(t, res.Location, "onboard_status=connected")
	require.Equal(t, http.StatusConflict, e.browser("alice", "acme").get(back).Code, "a replay from elsewhere")
	require.Len(t, hooked, 1, "no second hook call")

	// Past expiry, the unfinished flows are abandoned.
	e.clock.Add(onboard.DefaultFlowTTL)
	rep, err = e.Onboarder.Reconcile(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Completed)
	for _, id := range []string{gaveUp, recent} {
		f, _, err := e.store.Flow(ctx, id)
		require.NoError(t, err)
		require.Equal(t, onboard.FlowDone, f.State)
		require.Equal(t, onboard.Abandoned, f.Outcome)
	}
	rep, err = e.Onboarder.Reconcile(ctx)
	require.NoError(t, err)
	require.Zero(t, rep.Checked)
}

func TestReconcilerRetriesProviderErrors(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	b.finish(b.start(""), onboard.Connected)
	e.clock.Add(11 * time.Minute)
	e.fake.FailComplete(errors.New("provider down"))
	rep, err := e.Onboarder.Reconcile(context.Background())
	require.NoError(t, err)
	require.Equal(t, onboard.ReconcileReport{Checked: 1, Errors: 1}, rep)
	require.Empty(t, e.connections("acme"))
	rep, err = e.Onboarder.Reconcile(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Completed)
	require.Len(t, e.connections("acme"), 1)
}

func TestRunReconcilerStops(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Onboarder.RunReconciler(ctx, time.Millisecond); close(done) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("RunReconciler did not stop")
	}
}

func TestOpenRedirect(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	for _, bad := range []string{"https://evil.example/", "//evil.example/x", `/\evil.example`, "evil", "javascript:alert(1)", "/a\tb", "%2F%2Fevil.example"} {
		res := b.get(e.URL() + "/connect/fake/start?" + url.Values{"return_to": {bad}}.Encode())
		require.Equal(t, http.StatusBadRequest, res.Code, "return_to=%q", bad)
	}
	back := b.finish(b.start("return_to=%2Fok%3Fx%3D1"), onboard.Connected)
	res := b.get(back)
	require.True(t, strings.HasPrefix(res.Location, "/ok?"), res.Location)
}

func TestStartRefusals(t *testing.T) {
	e := newEnv(t)
	res := e.browser("", "").get(e.URL() + "/connect/fake/start")
	require.Equal(t, http.StatusUnauthorized, res.Code)
	b := e.browser("alice", "acme")
	res = b.get(e.URL() + "/connect/nope/start")
	require.Equal(t, http.StatusNotFound, res.Code)
	res = b.get(e.URL() + "/connect/fake/start?connection=conn-unknown")
	require.Equal(t, http.StatusNotFound, res.Code)
	require.Contains(t, res.Body, "does not exist")
	res = b.get(e.URL() + "/connect/fake/start?source=" + strings.Repeat("s", 300))
	require.Equal(t, http.StatusBadRequest, res.Code)
	begins, _ := e.fake.Calls()
	require.Zero(t, begins, "the provider is not asked for refused starts")
}

func TestCrossOriginPostStartRefused(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	req, _ := http.NewRequest(http.MethodPost, e.URL()+"/connect/fake/start", strings.NewReader("source=Salesforce"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := b.Client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusForbidden, res.StatusCode)

	req, _ = http.NewRequest(http.MethodPost, e.URL()+"/connect/fake/start", strings.NewReader("source=Salesforce"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err = b.Client.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
}

func TestReconnect(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	id := b.start("source=Salesforce&name=Sales")
	require.Equal(t, http.StatusSeeOther, b.get(b.finish(id, onboard.Failed)).Code)
	conn := e.fake.ConnectionID(id)
	require.Equal(t, onboard.Failed, e.connections("acme")[0].State)

	// Another tenant cannot reconnect it.
	res := e.browser("eve", "globex").get(e.URL() + e.Onboarder.ReconnectURL("fake", conn))
	require.Equal(t, http.StatusNotFound, res.Code)

	id2 := b.start(strings.TrimPrefix(e.Onboarder.ReconnectURL("fake", conn), "/connect/fake/start?"))
	require.Equal(t, conn, e.fake.ConnectionID(id2), "a reconnect works on the same connection")
	require.Equal(t, http.StatusSeeOther, b.get(b.finish(id2, onboard.Connected)).Code)
	cs := e.connections("acme")
	require.Len(t, cs, 1)
	require.Equal(t, onboard.Connected, cs[0].State)
	require.Equal(t, "Sales", cs[0].Name)
}

func TestProviderDownAtStart(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	e.fake.FailBegin(errors.New("dial tcp: connection refused"))
	res := b.get(e.URL() + "/connect/fake/start")
	require.Equal(t, http.StatusBadGateway, res.Code)
	require.Contains(t, res.Body, "could not be reached")
	require.NotContains(t, res.Body, "connection refused", "internal error text stays in the logs")
	require.Zero(t, e.store.Len(), "no flow is saved when the provider failed")
	b.start("") // and the next try works
}

func TestProviderDownAtReturnIsRetryable(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	back := b.finish(b.start(""), onboard.Connected)
	e.fake.FailComplete(errors.New("503 from provider"))
	res := b.get(back)
	require.Equal(t, http.StatusBadGateway, res.Code)
	require.Empty(t, e.connections("acme"))
	require.Equal(t, http.StatusSeeOther, b.get(back).Code, "a reload completes the flow")
	require.Len(t, e.connections("acme"), 1)
}

func TestStoreFailureAtReturnIsRetryable(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	back := b.finish(b.start(""), onboard.Connected)
	e.store.Fail(1)
	res := b.get(back)
	require.Equal(t, http.StatusServiceUnavailable, res.Code)
	require.Contains(t, res.Body, "reload")
	require.Empty(t, e.connections("acme"))
	require.Equal(t, http.StatusSeeOther, b.get(back).Code, "a reload completes the flow")
	require.Len(t, e.connections("acme"), 1)
}

func TestMissingSessionMiddleware(t *testing.T) {
	sm := scs.New()
	sessions, err := middleware.NewSCS(sm)
	require.NoError(t, err)
	p := fake.New("fake")
	ob, err := onboard.New(onboard.Config{
		URL: "http://app.example/connect", Providers: []onboard.Provider{p},
		Store: memstore.New(memstore.Options{}), Sessions: sessions,
		Owner:  func(*http.Request) (onboard.Owner, error) { return onboard.Owner{Tenant: "t", User: "u"}, nil },
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	ob.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/connect/fake/start", nil))
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Contains(t, rec.Body.String(), "Sessions are not set up")
	begins, _ := p.Calls()
	require.Zero(t, begins)
}

func TestNewValidates(t *testing.T) {
	sm := scs.New()
	sessions, _ := middleware.NewSCS(sm)
	valid := func() onboard.Config {
		return onboard.Config{
			URL: "https://app.example/connect", Providers: []onboard.Provider{fake.New("fake")},
			Store: memstore.New(memstore.Options{}), Sessions: sessions,
			Owner: func(*http.Request) (onboard.Owner, error) { return onboard.Owner{}, nil },
		}
	}
	tests := []struct {
		name string
		mod  func(*onboard.Config)
		want string
	}{
		{"empty URL", func(c *onboard.Config) { c.URL = "" }, "URL is empty"},
		{"relative URL", func(c *onboard.Config) { c.URL = "/connect" }, "not an absolute"},
		{"URL with query", func(c *onboard.Config) { c.URL = "https://a.example/c?x=1" }, "query"},
		{"no providers", func(c *onboard.Config) { c.Providers = nil }, "no Providers"},
		{"nil provider", func(c *onboard.Config) { c.Providers = []onboard.Provider{nil} }, "nil"},
		{"bad provider name", func(c *onboard.Config) { c.Providers = []onboard.Provider{fake.New("Bad Name")} }, "lower-case"},
		{"duplicate provider", func(c *onboard.Config) { c.Providers = append(c.Providers, fake.New("fake")) }, "two providers"},
		{"no store", func(c *onboard.Config) { c.Store = nil }, "Store is nil"},
		{"no sessions", func(c *onboard.Config) { c.Sessions = nil }, "Sessions is nil"},
		{"no owner", func(c *onboard.Config) { c.Owner = nil }, "Owner is nil"},
		{"negative TTL", func(c *onboard.Config) { c.FlowTTL = -1 }, "FlowTTL"},
		{"unsafe DonePath", func(c *onboard.Config) { c.DonePath = "https://evil.example" }, "DonePath"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mod(&c)
			_, err := onboard.New(c)
			require.ErrorIs(t, err, onboard.ErrConfig)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err := onboard.New(valid())
	require.NoError(t, err)
}

func TestSafeReturnPath(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want string
	}{
		{"/", true, "/"},
		{"/settings?tab=data#x", true, "/settings?tab=data#x"},
		{"", false, ""},
		{"settings", false, ""},
		{"//evil.example", false, ""},
		{`/\evil.example`, false, ""},
		{"https://evil.example/", false, ""},
		{"/a\x00b", false, ""},
		{"/a\\b", false, ""},
		{"/" + strings.Repeat("a", 2000), false, ""},
	}
	for _, tt := range tests {
		got, ok := onboard.SafeReturnPath(tt.in)
		require.Equal(t, tt.ok, ok, "%q", tt.in)
		require.Equal(t, tt.want, got, "%q", tt.in)
	}
}

func TestStatusAndMessage(t *testing.T) {
	err := errors.Join(errors.New("pq: password=hunter2 rejected"), onboard.ErrStore)
	require.Equal(t, http.StatusServiceUnavailable, onboard.StatusCode(err))
	require.NotContains(t, onboard.Message(err), "hunter2")
	require.Equal(t, http.StatusInternalServerError, onboard.StatusCode(errors.New("x")))
}

func TestRequestSizeLimits(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	post := func(body string) int {
		req, _ := http.NewRequest(http.MethodPost, e.URL()+"/connect/fake/start", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		res, err := b.Client.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusSeeOther, post("source=Salesforce"))
	require.Equal(t, http.StatusBadRequest, post("source=Salesforce&pad="+strings.Repeat("x", 70<<10)), "form body over 64 KiB")
	require.Equal(t, http.StatusBadRequest, b.get(e.URL()+"/connect/fake/start?pad="+strings.Repeat("x", 9<<10)).Code, "query over 8 KiB")
	begins, _ := e.fake.Calls()
	require.Equal(t, 1, begins)
}

func TestResultURL(t *testing.T) {
	c := onboard.Connection{Provider: "cdata", ID: "a b&c", State: onboard.Connected}
	for _, tt := range []struct{ target, want string }{
		{"/", "/?onboard_connection=a+b%26c&onboard_provider=cdata&onboard_status=connected"},
		{"/s?tab=data", "/s?tab=data&onboard_connection=a+b%26c&onboard_provider=cdata&onboard_status=connected"},
		{"/s#top", "/s?onboard_connection=a+b%26c&onboard_provider=cdata&onboard_status=connected#top"},
	} {
		got := onboard.ResultURL(tt.target, c)
		require.Equal(t, tt.want, got)
		u, err := url.Parse(got)
		require.NoError(t, err)
		require.Equal(t, "a b&c", u.Query().Get("onboard_connection"))
	}
	require.Equal(t, "/?onboard_provider=fivetran&onboard_status=abandoned",
		onboard.ResultURL("/", onboard.Connection{Provider: "fivetran", State: onboard.Abandoned}))
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
		handlers string
	}
	var got seen
	record := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			got = seen{handlers: name, err: onboard.ErrorFromContext(ctx)}
			got.flow, got.hasFlow = onboard.FlowFromContext(ctx)
			got.result, got.hasConn = onboard.ResultFromContext(ctx)
			w.WriteHeader(http.StatusTeapot)
		})
	}
	e := newEnv(t, func(c *onboard.Config) { c.Result, c.Error = record("result"), record("error") })
	b := e.browser("alice", "acme")
	id := b.start("source=Salesforce&return_to=/settings")
	back := b.finish(id, onboard.Connected)

	// Another browser: refused, and the Error handler sees the flow.
	require.Equal(t, http.StatusTeapot, e.browser("mallory", "evil").get(back).Code)
	assert.Equal(t, "error", got.handlers)
	assert.ErrorIs(t, got.err, onboard.ErrSessionMismatch)
	assert.True(t, got.hasFlow)
	assert.Equal(t, id, got.flow.ID)
	assert.False(t, got.hasConn)

	// The browser that started it: the Result handler sees both.
	require.Equal(t, http.StatusTeapot, b.get(back).Code)
	assert.Equal(t, "result", got.handlers)
	assert.NoError(t, got.err)
	assert.Equal(t, "/settings", got.flow.ReturnTo)
	assert.True(t, got.hasConn)
	assert.Equal(t, e.fake.ConnectionID(id), got.result.ID)
	assert.Equal(t, onboard.Connected, got.result.State)

	// A reload is shown the stored connection again.
	require.Equal(t, http.StatusTeapot, b.get(back).Code)
	assert.Equal(t, "result", got.handlers)
	assert.Equal(t, e.fake.ConnectionID(id), got.result.ID)

	// A start refused before any flow exists: the error alone.
	require.Equal(t, http.StatusTeapot, b.get(e.URL()+"/connect/fake/start?return_to=https%3A%2F%2Fevil.example").Code)
	assert.Equal(t, "error", got.handlers)
	assert.ErrorIs(t, got.err, onboard.ErrBadReturnTo)
	assert.False(t, got.hasFlow)
}
