package onboard_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// do sends a request with headers from the browser.
func (b *browser) do(method, target, body string, header map[string]string) (*http.Response, string) {
	b.T.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	require.NoError(b.T, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// The kit's browser marks requests as a modern browser does; this one
	// sends exactly the headers given, as an older browser may.
	c := &http.Client{Jar: b.Client.Jar, CheckRedirect: b.Client.CheckRedirect}
	res, err := c.Do(req)
	require.NoError(b.T, err)
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res, string(data)
}

// TestCrossSiteGetStartNeedsConfirmation: a GET start that the browser
// marks as coming from another site makes no flow and no provider call;
// it answers a page of this site whose button POSTs the same start.
func TestCrossSiteGetStartNeedsConfirmation(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		header  map[string]string
		confirm bool
	}{
		{"link on another site", "GET", map[string]string{"Sec-Fetch-Site": "cross-site"}, true},
		{"link on a sibling subdomain", "GET", map[string]string{"Sec-Fetch-Site": "same-site"}, true},
		{"old browser, foreign Origin", "GET", map[string]string{"Origin": "https://evil.example"}, true},
		{"opaque Origin", "GET", map[string]string{"Origin": "null"}, true},
		{"prefetch", "GET", map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Purpose": "prefetch"}, true},
		{"HEAD", "HEAD", nil, true},
		{"same-origin link", "GET", map[string]string{"Sec-Fetch-Site": "same-origin"}, false},
		{"typed URL or bookmark", "GET", map[string]string{"Sec-Fetch-Site": "none"}, false},
		{"old browser, link on this site", "GET", map[string]string{"Referer": "{app}/connections"}, false},
		{"old browser, link on another site", "GET", map[string]string{"Referer": "https://evil.example/page"}, true},
		{"no Fetch Metadata, no Referer: a typed URL, or no browser", "GET", nil, false},
		{"old browser, opaque Referer", "GET", map[string]string{"Referer": "about:blank"}, true},
		{"old browser, foreign Origin, own Referer", "GET", map[string]string{"Origin": "https://evil.example", "Referer": "{app}/x"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			b := e.browser("alice", "acme")
			header := map[string]string{}
			for k, v := range tt.header {
				header[k] = strings.ReplaceAll(v, "{app}", e.URL())
			}
			res, body := b.do(tt.method, e.URL()+"/connect/fake/start?source=Salesforce&name=My+Sales&return_to=%2Fs", "", header)
			if !tt.confirm {
				require.Equal(t, http.StatusFound, res.StatusCode, body)
				require.Equal(t, 1, e.fake.Calls().Begin)
				return
			}
			require.Equal(t, http.StatusOK, res.StatusCode)
			require.Zero(t, e.fake.Calls().Begin, "no provider call")
			require.Zero(t, e.pending(onboard.Owner{Tenant: "acme", User: "alice"}), "no flow")
			require.Zero(t, e.sessions.count()-1, "no session write beyond the sign-in")
			if tt.method == "HEAD" {
				return
			}
			require.Contains(t, body, `<form method="post" action="/connect/fake/start">`)
			require.Contains(t, body, `name="source" value="Salesforce"`)
			require.Contains(t, body, `name="name" value="My Sales"`)
			require.Contains(t, body, `name="return_to" value="/s"`)
			require.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))

			// The user confirms: the page's form posts from this site.
			res, body = b.do("POST", e.URL()+"/connect/fake/start", "source=Salesforce&name=My+Sales&return_to=%2Fs",
				map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": e.URL()})
			require.Equal(t, http.StatusSeeOther, res.StatusCode, body)
			u, _ := url.Parse(res.Header.Get("Location"))
			f := e.flow(u.Query().Get("flow"))
			require.Equal(t, "My Sales", f.Name)
			require.Equal(t, "/s", f.ReturnTo)
		})
	}
}

// TestCustomConfirmPage: an app restyles the confirmation page.
func TestCustomConfirmPage(t *testing.T) {
	e := newEnv(t, func(c *onboard.Config) {
		c.Confirm = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "confirm "+r.URL.Path+" "+r.URL.Query().Get("source"))
		})
	})
	res, body := e.browser("alice", "acme").do("GET", e.URL()+"/connect/fake/start?source=Salesforce", "",
		map[string]string{"Sec-Fetch-Site": "cross-site"})
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "confirm /connect/fake/start Salesforce", body)
	require.Zero(t, e.fake.Calls().Begin)
}

// TestCrossOriginPostGoesThroughConfigError: a cross-origin POST start is
// refused through the app's Error handler.
func TestCrossOriginPostGoesThroughConfigError(t *testing.T) {
	var seen error
	e := newEnv(t, func(c *onboard.Config) {
		c.Error = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = onboard.ErrorFromContext(r.Context())
			w.WriteHeader(onboard.StatusCode(seen))
			io.WriteString(w, "app page: "+onboard.Message(seen))
		})
	})
	b := e.browser("alice", "acme")
	res, body := b.do("POST", e.URL()+"/connect/fake/start", "source=Salesforce",
		map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	require.ErrorIs(t, seen, onboard.ErrCrossOrigin)
	require.Contains(t, body, "app page: This request came from another site")
	require.Zero(t, e.fake.Calls().Begin)
}

// TestJSONStart: a POST asking for JSON (a popup or a single-page app)
// gets the hosted page's URL, bound to the browser as a redirect start.
func TestJSONStart(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	res, body := b.do("POST", e.URL()+"/connect/fake/start", "source=Salesforce",
		map[string]string{"Sec-Fetch-Site": "same-origin", "Accept": "application/json"})
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	var got struct {
		Flow      string    `json:"flow"`
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.True(t, strings.HasPrefix(got.URL, e.fake.URL+"/hosted?"), got.URL)
	require.WithinDuration(t, e.clock.Now().Add(onboard.DefaultFlowTTL), got.ExpiresAt, time.Second)
	require.Equal(t, http.StatusSeeOther, b.get(b.finish(got.Flow, onboard.Connected)).Code)
	require.Len(t, e.Connections("acme"), 1)
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
	require.True(t, strings.HasPrefix(res.Location, "/ok?x=1&onboard_flow="), res.Location)
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
	for _, c := range []string{"%00", "%09", "%7F", "%C2%85", "%C2%9B31m"} { // C0, DEL, C1 (NEL, CSI)
		res = b.get(e.URL() + "/connect/fake/start?source=Sales" + c + "force")
		require.Equal(t, http.StatusBadRequest, res.Code, "control character %s", c)
	}
	require.Zero(t, e.fake.Calls().Begin, "the provider is not asked for refused starts")
}

func TestRequestSizeLimits(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	post := func(body string) int {
		res, _ := b.do("POST", e.URL()+"/connect/fake/start", body, map[string]string{"Sec-Fetch-Site": "same-origin"})
		return res.StatusCode
	}
	require.Equal(t, http.StatusSeeOther, post("source=Salesforce"))
	require.Equal(t, http.StatusBadRequest, post("source=Salesforce&pad="+strings.Repeat("x", 70<<10)), "form body over 64 KiB")
	require.Equal(t, http.StatusBadRequest, b.get(e.URL()+"/connect/fake/start?pad="+strings.Repeat("x", 9<<10)).Code, "query over 8 KiB")
	require.Equal(t, 1, e.fake.Calls().Begin)
}

// TestMissingSessionMiddleware: a handler mounted outside LoadAndSave
// answers the page that says sessions are not set up, also when the app's
// Owner reads the scs session (which panics without LoadAndSave).
func TestMissingSessionMiddleware(t *testing.T) {
	sm := scs.New()
	sessions, err := middleware.NewSCS(sm)
	require.NoError(t, err)
	for name, owner := range map[string]func(*http.Request) (onboard.Owner, error){
		"an Owner of its own":             func(*http.Request) (onboard.Owner, error) { return onboard.Owner{Tenant: "t", User: "u"}, nil },
		"an Owner that reads the session": onboardtest.Owner(sm),
	} {
		t.Run(name, func(t *testing.T) {
			p := fake.New("fake")
			ob, err := onboard.New(onboard.Config{
				URL: "http://app.example/connect", Providers: []onboard.Provider{p},
				Store: memstore.New(memstore.Options{}), Sessions: sessions, Owner: owner,
				Logger: slog.New(slog.DiscardHandler),
			})
			require.NoError(t, err)
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/connect/fake/start", nil)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			ob.Handler().ServeHTTP(rec, req)
			require.Equal(t, http.StatusInternalServerError, rec.Code)
			require.Contains(t, rec.Body.String(), "Sessions are not set up")
			require.Zero(t, p.Calls().Begin)
		})
	}
}

func TestResultURLReplacesResultParameters(t *testing.T) {
	id := strings.Repeat("A", 43)
	for _, tt := range []struct{ target, want string }{
		{"/", "/?onboard_flow=" + id},
		{"/s?tab=data", "/s?tab=data&onboard_flow=" + id},
		{"/s#top", "/s?onboard_flow=" + id + "#top"},
		{"/s?onboard_status=connected&onboard_provider=x&tab=1", "/s?tab=1&onboard_flow=" + id},
		{"/s?onboard_flow=other", "/s?onboard_flow=" + id},
		{"/s?onboard%5Fstatus=connected&ONBOARD_STATUS=1", "/s?onboard_flow=" + id},
	} {
		got := onboard.ResultURL(tt.target, id)
		assert.Equal(t, tt.want, got, tt.target)
		u, err := url.Parse(got)
		require.NoError(t, err)
		assert.Equal(t, []string{id}, u.Query()["onboard_flow"])
		assert.Empty(t, u.Query().Get("onboard_status"))
	}
}

// TestForgedResultLinks: a crafted link carrying result parameters never
// reads as a result: Outcome verifies the flow against this browser.
func TestForgedResultLinks(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	_, status := b.Outcome(e.App, "/?onboard_status=connected&onboard_provider=fake&onboard_connection=conn-1")
	require.Equal(t, http.StatusBadRequest, status, "no flow named")
	_, status = b.Outcome(e.App, "/?onboard_flow=not-a-flow")
	require.Equal(t, http.StatusBadRequest, status)
	_, status = b.Outcome(e.App, "/?onboard_flow="+strings.Repeat("A", 43))
	require.Equal(t, http.StatusNotFound, status)

	// Another user's finished flow, linked to alice: not hers.
	mallory := e.browser("mallory", "evil")
	res := mallory.get(mallory.finish(mallory.start(""), onboard.Connected))
	_, status = b.Outcome(e.App, res.Location)
	require.Equal(t, http.StatusForbidden, status)
	c, status := mallory.Outcome(e.App, res.Location)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, onboard.Connected, c.State)

	// Her own flow, still pending: not a result yet.
	id := b.start("")
	_, status = b.Outcome(e.App, "/?onboard_flow="+id)
	require.Equal(t, http.StatusConflict, status)

	// A token of the right length that seals nothing for this browser.
	_, status = b.Outcome(e.App, "/?onboard_flow="+strings.Repeat("A", len(onboard.ResultToken(strings.Repeat("k", 43), id))))
	require.Equal(t, http.StatusForbidden, status)
}

// TestResultPageURLIsNoKey: the page shown after a return is given a
// token only the browser that started the flow can read, never the flow
// id: its URL, kept by analytics or shared, cannot be turned into the
// flow's return URL, which within the flow's lifetime would let anyone
// quarantine (delete) what the flow made.
func TestResultPageURLIsNoKey(t *testing.T) {
	e := newEnv(t)
	for _, reconnect := range []bool{false, true} {
		alice := e.browser("alice", "acme")
		q := "source=Salesforce"
		if reconnect {
			q = "connection=" + url.QueryEscape(e.Connections("acme")[0].ID)
		}
		id := alice.start(q)
		res := alice.get(alice.finish(id, onboard.Connected))
		require.Equal(t, http.StatusSeeOther, res.Code)
		require.NotContains(t, res.Location, id)
		u, err := url.Parse(res.Location)
		require.NoError(t, err)
		token := u.Query().Get("onboard_flow")

		// What a holder of the page's URL can do with its parameter.
		for _, stranger := range []*browser{e.browser("mallory", "evil"), e.browser("", "")} {
			back := stranger.get(e.URL() + "/connect/fake/return/" + token)
			require.Equal(t, http.StatusBadRequest, back.Code, "not a flow id")
			_, status := stranger.Outcome(e.App, "/?onboard_flow="+token)
			require.Equal(t, http.StatusForbidden, status)
		}
		cs := e.Connections("acme")
		require.Len(t, cs, 1)
		require.Equal(t, onboard.Connected, cs[0].State)
		require.Zero(t, e.fake.Calls().Cancel, "nothing quarantined")
		c, status := alice.Outcome(e.App, res.Location)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, cs[0].ID, c.ID)
	}
}

// TestNoRoute: a request that matches none of the handler's routes gets
// the app's error page (404, ErrNoRoute), never the standard library's
// line of text; one outside Config.URL's path (the handler mounted behind
// http.StripPrefix, say) also logs a warning that says how to mount it.
func TestNoRoute(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	for _, tt := range []struct{ method, path string }{
		{http.MethodGet, "/connect/"},
		{http.MethodGet, "/connect/fake/"},
		{http.MethodGet, "/connect/fake/nothing"},
		{http.MethodDelete, "/connect/fake/start"},
		{http.MethodGet, "/connect/fake/webhook"},
	} {
		res, body := b.do(tt.method, e.URL()+tt.path, "", nil)
		require.Equal(t, http.StatusNotFound, res.StatusCode, "%s %s", tt.method, tt.path)
		require.Contains(t, res.Header.Get("Content-Type"), "text/html")
		require.Contains(t, body, "This page does not exist.")
	}
	require.NotContains(t, e.log.String(), "outside Config.URL's path")

	// Mounted behind http.StripPrefix: the start arrives without the
	// prefix.
	stripped := http.StripPrefix("/connect", e.Onboarder.Handler())
	rec := httptest.NewRecorder()
	stripped.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/connect/fake/start?source=x", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Contains(t, rec.Body.String(), "This page does not exist.")
	require.Contains(t, e.log.String(), "outside Config.URL's path")
	require.Contains(t, e.log.String(), "want_prefix=/connect/")
}

// TestSameOriginSubresourceDoesNotStart: an <img src="/connect/fake/start?source=x">
// in content shown on the app's own pages is sent with Sec-Fetch-Site
// same-origin, Sec-Fetch-Mode no-cors, Sec-Fetch-Dest image and the
// session cookie. It gets the confirmation page: no flow is admitted, the
// provider is not asked, and the setup the user has in progress in
// another tab is not evicted.
func TestSameOriginSubresourceDoesNotStart(t *testing.T) {
	e := newEnv(t)
	alice := e.browser("alice", "acme")
	inProgress := alice.start("source=Salesforce") // her real setup, in another tab

	img := map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
	begins := e.fake.Calls().Begin
	started := 0
	for range onboard.DefaultMaxFlowsPerOwner {
		e.clock.Add(time.Second)
		if res, _ := alice.do(http.MethodGet, e.URL()+"/connect/fake/start?source=Attacker", "", img); res.StatusCode == http.StatusFound {
			started++
		}
	}
	t.Logf("image loads that started a flow: %d; provider Begin calls: %d; her setup: %s %s",
		started, e.fake.Calls().Begin-begins, e.flow(inProgress).State, e.flow(inProgress).Outcome)
	require.Zero(t, started, "image loads started flows")
	require.Equal(t, begins, e.fake.Calls().Begin, "image loads called the provider")
	require.Equal(t, onboard.FlowPending, e.flow(inProgress).State, "her setup in progress was evicted")
}

// TestStartOnAnotherHostWarns: a start that came to another host name
// than Config.URL's (127.0.0.1 where it says localhost) will not get its
// session cookie back at the return: the first logs a warning that names
// both, later ones log at Debug. Another port of the same name (cookies do
// not keep ports apart), or the right name in X-Forwarded-Host behind a
// proxy, warns nothing.
func TestStartOnAnotherHostWarns(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	b.start("source=Salesforce")
	require.NotContains(t, e.log.String(), "another host")

	u, err := url.Parse(e.URL())
	require.NoError(t, err)
	start := func(host, fwd string) {
		req := httptest.NewRequest(http.MethodGet, "/connect/fake/start?source=Salesforce", nil)
		req.Host = host
		req.Header.Set("Sec-Fetch-Site", "none")
		if fwd != "" {
			req.Header.Set("X-Forwarded-Host", fwd)
		}
		for _, c := range b.Client.Jar.Cookies(u) {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		e.App.Server.Config.Handler.ServeHTTP(rec, req)
		require.Equal(t, http.StatusFound, rec.Code, rec.Body.String())
	}
	start(u.Hostname()+":1", "")                 // another port
	start("internal.example:8080", u.Host+", x") // behind a proxy
	require.NotContains(t, e.log.String(), "another host")
	start("other.example", "")
	require.Contains(t, e.log.String(), "host=other.example url_host="+u.Host)
	start("other.example", "")
	require.Equal(t, 1, strings.Count(e.log.String(), "another host"), "once at Warn")
}

// TestFlowWithinTheSession: a flow never outlives the browser's session,
// which its return needs: with scs's IdleTimeout or Lifetime ending the
// session sooner than FlowTTL, the flow closes (Timeout after it expires)
// by the session's end; a start in a session with less than 5 minutes
// left (and Timeout) is refused: sign in again. The session's end is
// judged on the core's clock, wherever that is.
func TestFlowWithinTheSession(t *testing.T) {
	for _, tt := range []struct {
		name           string
		idle, lifetime time.Duration
		left           time.Duration // the session's time left, set before the start (0: as made)
		ahead          time.Duration // the core's clock ahead of the wall clock
		want           time.Duration // the flow's lifetime; 0: refused
	}{
		{"sessions that outlast flows", 0, 0, 0, 0, onboard.DefaultFlowTTL},
		{"an idle timeout", 15 * time.Minute, 0, 0, 0, 15*time.Minute - onboard.DefaultTimeout},
		{"a lifetime", 0, 10 * time.Minute, 0, 0, 10*time.Minute - onboard.DefaultTimeout},
		{"a session about to end", 0, 0, 4 * time.Minute, 0, 0},
		{"a session with 10 minutes left", 0, 0, 10 * time.Minute, 0, 10*time.Minute - onboard.DefaultTimeout},
		{"the core's clock a day ahead", 0, 10 * time.Minute, 0, 24 * time.Hour, 10*time.Minute - onboard.DefaultTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sm := scs.New()
			sm.Cookie.Secure = false
			sm.Store = scsmem.NewWithCleanupInterval(0)
			sm.IdleTimeout = tt.idle
			if tt.lifetime > 0 {
				sm.Lifetime = tt.lifetime
			}
			sessions, err := middleware.NewSCS(sm)
			require.NoError(t, err)
			p := fake.New("fake")
			p.URL = onboardtest.Serve(t, p)
			store := memstore.New(memstore.Options{})
			srv := httptest.NewUnstartedServer(nil)
			ob, err := onboard.New(onboard.Config{URL: "http://" + srv.Listener.Addr().String() + "/connect",
				Providers: []onboard.Provider{p}, Store: store, Sessions: sessions, Owner: onboardtest.Owner(sm),
				Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return time.Now().Add(tt.ahead) }})
			require.NoError(t, err)
			a := &onboardtest.App{T: t, Server: srv, Onboarder: ob, Sessions: sm, Store: store}
			mux := http.NewServeMux()
			mux.HandleFunc("/age", func(w http.ResponseWriter, r *http.Request) {
				sm.SetDeadline(r.Context(), time.Now().Add(tt.left)) // a session made long ago
				w.WriteHeader(http.StatusNoContent)
			})
			mux.Handle("/", a.Mux(ob.Handler()))
			srv.Config.Handler = middleware.LoadAndSave(sm, ob.SessionError)(mux)
			srv.Start()
			t.Cleanup(srv.Close)

			b := a.Browser("alice", "acme")
			if tt.left > 0 {
				require.Equal(t, http.StatusNoContent, b.Get(a.URL()+"/age").Code)
			}
			res := b.Get(a.URL() + "/connect/fake/start?source=Salesforce")
			flows, err := store.Flows(t.Context(), onboard.FlowQuery{Owner: onboard.Owner{Tenant: "acme", User: "alice"}})
			require.NoError(t, err)
			if tt.want == 0 {
				require.Equal(t, http.StatusUnauthorized, res.Code, res.Body)
				require.Contains(t, res.Body, "sign in again")
				require.Empty(t, flows)
				require.Zero(t, p.Calls().Begin)
				return
			}
			require.Equal(t, http.StatusFound, res.Code, res.Body)
			require.Len(t, flows, 1)
			got := flows[0].ExpiresAt.Sub(flows[0].CreatedAt)
			require.InDelta(t, tt.want.Seconds(), got.Seconds(), 2, "the flow's lifetime")
		})
	}
}
