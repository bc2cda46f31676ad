package fivetran_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apptest"
	"github.com/onboardkit/onboard/internal/emulate"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

const secret = "whsec-test"

type fenv struct {
	t      *testing.T
	emu    *fivetrantest.Server
	p      *fivetran.Provider
	app    *apptest.App
	mu     sync.Mutex
	hooked []onboard.Connection
}

func newFEnv(t *testing.T, opt fivetrantest.Options, mod ...func(*fivetran.Config)) *fenv {
	t.Helper()
	opt.APIKey, opt.APISecret = "key", "s3cret"
	e := &fenv{t: t, emu: fivetrantest.New(opt)}
	base := apptest.Serve(t, e.emu)
	cfg := fivetran.Config{BaseURL: base, APIKey: "key", APISecret: "s3cret", WebhookSecret: secret,
		HTTPClient: &http.Client{Timeout: 2 * time.Second}}
	for _, m := range mod {
		m(&cfg)
	}
	var err error
	e.p, err = fivetran.New(cfg)
	require.NoError(t, err)
	hook := func(_ context.Context, c onboard.Connection) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.hooked = append(e.hooked, c)
	}
	e.app = apptest.New(t, apptest.Options{Providers: []onboard.Provider{e.p}, Config: func(c *onboard.Config) {
		c.Hooks = onboard.Hooks{Connected: hook, Failed: hook, Abandoned: hook}
	}})
	return e
}

func (e *fenv) hooks() []onboard.Connection {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]onboard.Connection(nil), e.hooked...)
}

func (e *fenv) run(b *apptest.Browser, query, credential string) string {
	e.t.Helper()
	card := b.Start(e.app, "fivetran", query)
	back, err := fivetrantest.Fill(context.Background(), b.Client, card, credential)
	require.NoError(e.t, err)
	require.True(e.t, strings.HasPrefix(back, e.app.URL()+"/connect/fivetran/return/"), back)
	return back
}

func (e *fenv) group(tenant string) string {
	id, ok := e.emu.GroupByName(fivetran.GroupName(tenant))
	require.True(e.t, ok)
	return id
}

func TestRoundTrips(t *testing.T) {
	tests := []struct {
		name       string
		drop       bool
		credential string
		want       onboard.State
		withID     bool
		message    string
	}{
		{"connected", false, "token", onboard.Connected, true, ""},
		{"connected, query dropped", true, "token", onboard.Connected, true, ""},
		{"setup not finished", false, "", onboard.Abandoned, false, "not finished"},
		{"broken", false, "fail", onboard.Failed, false, "Invalid credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFEnv(t, fivetrantest.Options{DropRedirectQuery: tt.drop})
			b := e.app.Browser("alice", "acme")
			back := e.run(b, "source=Salesforce", tt.credential)
			assert.Equal(t, tt.withID, strings.Contains(back, "id="), back)
			res := b.Get(back)
			require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
			assert.Contains(t, res.Location, "onboard_status="+string(tt.want))

			held := e.emu.Connections(e.group("acme"))
			require.Len(t, held, 1)
			cs := e.app.Connections("acme")
			require.Len(t, cs, 1, "the connection exists at Fivetran, so it is stored, as "+string(tt.want))
			assert.Equal(t, held[0].ID, cs[0].ID)
			assert.Equal(t, tt.want, cs[0].State)
			assert.Equal(t, "salesforce", cs[0].Source)
			assert.Contains(t, cs[0].Message, tt.message)
			require.Len(t, e.hooks(), 1)
		})
	}
}

func TestRetriedStartReusesUnfinishedConnection(t *testing.T) {
	e := newFEnv(t, fivetrantest.Options{})
	b := e.app.Browser("alice", "acme")
	first := b.Start(e.app, "fivetran", "source=Salesforce")
	second := b.Start(e.app, "fivetran", "source=Salesforce")
	require.Len(t, e.emu.Connections(e.group("acme")), 1, "no pile of unfinished connections")
	res := b.Get(first)
	require.Equal(t, http.StatusUnauthorized, res.Code, "only the newest Connect Card works")
	back, err := fivetrantest.Fill(context.Background(), b.Client, second, "token")
	require.NoError(t, err)
	require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
	// Another source, or another tenant, gets its own connection.
	b.Start(e.app, "fivetran", "source=HubSpot")
	e.app.Browser("eve", "globex").Start(e.app, "fivetran", "source=Salesforce")
	require.Len(t, e.emu.Connections(e.group("acme")), 2)
	require.Len(t, e.emu.Connections(e.group("globex")), 1)
}

func TestForgedID(t *testing.T) {
	e := newFEnv(t, fivetrantest.Options{})
	eve := e.app.Browser("eve", "globex")
	require.Equal(t, http.StatusSeeOther, eve.Get(e.run(eve, "source=Salesforce", "token")).Code)
	evesConn := e.app.Connections("globex")[0].ID

	alice := e.app.Browser("alice", "acme")
	back := e.run(alice, "source=Salesforce", "token")
	u, _ := url.Parse(back)
	q := u.Query()
	q.Set("id", evesConn)
	u.RawQuery = q.Encode()
	res := alice.Get(u.String())
	require.Equal(t, http.StatusForbidden, res.Code, res.Body)
	require.Empty(t, e.app.Connections("acme"))
	res = alice.Get(back + "&id=x")
	require.Equal(t, http.StatusBadRequest, res.Code, "a repeated id is malformed")
	require.Equal(t, http.StatusSeeOther, alice.Get(back).Code, "the genuine return still completes")
}

func TestReconnect(t *testing.T) {
	e := newFEnv(t, fivetrantest.Options{})
	b := e.app.Browser("alice", "acme")
	require.Equal(t, http.StatusSeeOther, b.Get(e.run(b, "source=Salesforce", "fail")).Code)
	c := e.app.Connections("acme")[0]
	require.Equal(t, onboard.Failed, c.State)
	res := b.Get(e.run(b, "connection="+c.ID, "token"))
	require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
	cs := e.app.Connections("acme")
	require.Len(t, cs, 1)
	require.Equal(t, c.ID, cs[0].ID)
	require.Equal(t, onboard.Connected, cs[0].State)
	require.Len(t, e.emu.Connections(e.group("acme")), 1)
}

func TestRequestsHaveDocumentedShape(t *testing.T) {
	e := newFEnv(t, fivetrantest.Options{}, func(c *fivetran.Config) { c.HideSetupGuide = true })
	b := e.app.Browser("alice", "acme")
	card := b.Start(e.app, "fivetran", "source=Salesforce")
	require.Contains(t, card, "hide_setup_guide=true")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("key:s3cret"))
	var create map[string]any
	for _, r := range e.emu.API.Requests() {
		require.Equal(t, basic, r.Header.Get("Authorization"), r.Path)
		require.Equal(t, "application/json;version=2", r.Header.Get("Accept"), r.Path)
		if r.Method == "POST" && r.Path == "/v1/connections" {
			require.Equal(t, "application/json", r.Header.Get("Content-Type"))
			require.NoError(t, json.Unmarshal(r.Body, &create))
		}
	}
	require.NotNil(t, create)
	assert.Equal(t, false, create["run_setup_tests"])
	assert.Equal(t, true, create["paused"])
	assert.Equal(t, "salesforce", create["service"])
	assert.Equal(t, e.group("acme"), create["group_id"])
	cc := create["connect_card_config"].(map[string]any)
	assert.Equal(t, true, cc["hide_setup_guide"])
	ret := cc["redirect_uri"].(string)
	require.True(t, strings.HasPrefix(ret, e.app.URL()+"/connect/fivetran/return/"), ret)
	assert.Len(t, apptest.FlowID(t, ret), 43)
	assert.NotEmpty(t, create["config"].(map[string]any)["schema"])
}

func TestEmulatorChecksAuthAndVersion(t *testing.T) {
	emu := fivetrantest.New(fivetrantest.Options{APIKey: "key", APISecret: "s3cret"})
	srv := apptest.Serve(t, emu)
	for _, tt := range []struct {
		user, pass, accept string
		want               int
	}{
		{"key", "s3cret", fivetran.Accept, 200},
		{"key", "wrong", fivetran.Accept, 401},
		{"", "", fivetran.Accept, 401},
		{"key", "s3cret", "application/json", 406},
	} {
		req, _ := http.NewRequest("GET", srv+"/v1/groups", nil)
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pass)
		}
		req.Header.Set("Accept", tt.accept)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var body struct{ Code string }
		require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
		res.Body.Close()
		require.Equal(t, tt.want, res.StatusCode, tt)
		require.NotEmpty(t, body.Code)
	}
	// A wrong key reaches the user as a provider error.
	e := newFEnv(t, fivetrantest.Options{}, func(c *fivetran.Config) { c.APISecret = "nope" })
	_, err := e.p.GroupID(context.Background(), "acme")
	var ae *fivetran.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 401, ae.Status)
	require.Equal(t, "AuthFailed", ae.Code)
	require.ErrorIs(t, err, onboard.ErrProvider)
}

func count(e *fenv, method, path string) (n int) {
	for _, r := range e.emu.API.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func TestRetryRules(t *testing.T) {
	t.Run("429 on create waits for Retry-After and retries", func(t *testing.T) {
		e := newFEnv(t, fivetrantest.Options{})
		b := e.app.Browser("alice", "acme")
		_, err := e.p.GroupID(context.Background(), "acme")
		require.NoError(t, err)
		e.emu.API.Fail(emulate.Fault{}, emulate.Fault{Status: 429, RetryAfter: time.Second}) // list ok, create 429
		start := time.Now()
		b.Start(e.app, "fivetran", "source=Salesforce")
		require.GreaterOrEqual(t, time.Since(start), time.Second)
		require.Equal(t, 2, count(e, "POST", "/v1/connections"))
		require.Len(t, e.emu.Connections(e.group("acme")), 1)
	})
	t.Run("a Retry-After beyond the bound fails at once", func(t *testing.T) {
		e := newFEnv(t, fivetrantest.Options{}, func(c *fivetran.Config) { c.MaxRetryWait = time.Second })
		e.emu.API.Fail(emulate.Fault{Status: 429, RetryAfter: time.Hour})
		start := time.Now()
		_, err := e.p.GroupID(context.Background(), "acme")
		require.ErrorIs(t, err, onboard.ErrProvider)
		require.Less(t, time.Since(start), time.Second)
	})
	t.Run("5xx on create is not repeated", func(t *testing.T) {
		e := newFEnv(t, fivetrantest.Options{})
		b := e.app.Browser("alice", "acme")
		_, err := e.p.GroupID(context.Background(), "acme")
		require.NoError(t, err)
		e.emu.API.Fail(emulate.Fault{}, emulate.Fault{Status: 503})
		res := b.Get(e.app.URL() + "/connect/fivetran/start?source=Salesforce")
		require.Equal(t, http.StatusBadGateway, res.Code)
		require.Equal(t, 1, count(e, "POST", "/v1/connections"))
		b.Start(e.app, "fivetran", "source=Salesforce")
		require.Len(t, e.emu.Connections(e.group("acme")), 1)
	})
	t.Run("create carried out but its answer lost: the next start reuses it", func(t *testing.T) {
		e := newFEnv(t, fivetrantest.Options{})
		b := e.app.Browser("alice", "acme")
		_, err := e.p.GroupID(context.Background(), "acme")
		require.NoError(t, err)
		e.emu.API.Fail(emulate.Fault{}, emulate.Fault{Drop: true, AfterHandling: true})
		res := b.Get(e.app.URL() + "/connect/fivetran/start?source=Salesforce")
		require.Equal(t, http.StatusBadGateway, res.Code)
		require.Equal(t, 1, count(e, "POST", "/v1/connections"), "never blindly repeated")
		require.Len(t, e.emu.Connections(e.group("acme")), 1)
		back, err := fivetrantest.Fill(context.Background(), b.Client, b.Start(e.app, "fivetran", "source=Salesforce"), "token")
		require.NoError(t, err)
		require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
		require.Len(t, e.emu.Connections(e.group("acme")), 1, "no duplicate connection")
		require.Equal(t, 1, count(e, "POST", "/v1/connections"))
	})
	t.Run("GET retried after 5xx and a dropped connection", func(t *testing.T) {
		e := newFEnv(t, fivetrantest.Options{})
		e.emu.API.Fail(emulate.Fault{Status: 502}, emulate.Fault{Drop: true})
		_, err := e.p.GroupID(context.Background(), "acme")
		require.NoError(t, err)
		require.Equal(t, 3, count(e, "GET", "/v1/groups"))
	})
	t.Run("provider down at the return leaves the flow retryable", func(t *testing.T) {
		e := newFEnv(t, fivetrantest.Options{}, func(c *fivetran.Config) { c.Retries = -1 })
		b := e.app.Browser("alice", "acme")
		back := e.run(b, "source=Salesforce", "token")
		e.emu.API.Fail(emulate.Fault{Status: 500})
		require.Equal(t, http.StatusBadGateway, b.Get(back).Code)
		require.Empty(t, e.app.Connections("acme"))
		require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
		require.Len(t, e.app.Connections("acme"), 1)
	})
}

func TestDelete(t *testing.T) {
	e := newFEnv(t, fivetrantest.Options{})
	b := e.app.Browser("alice", "acme")
	require.Equal(t, http.StatusSeeOther, b.Get(e.run(b, "source=Salesforce", "token")).Code)
	c := e.app.Connections("acme")[0]
	require.NoError(t, e.app.Onboarder.DeleteConnection(context.Background(), c.Owner, "fivetran", c.ID))
	_, held := e.emu.Connection(c.ID)
	require.False(t, held)
	require.Empty(t, e.app.Connections("acme"))
	require.ErrorIs(t, e.app.Onboarder.DeleteConnection(context.Background(), c.Owner, "fivetran", c.ID), onboard.ErrUnknownConnection)
}

func post(t *testing.T, u string, body []byte, sig string) int {
	req, _ := http.NewRequest("POST", u, bytes.NewReader(body))
	if sig != "" {
		req.Header.Set("X-Fivetran-Signature-256", sig)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	return res.StatusCode
}

func TestWebhooks(t *testing.T) {
	e := newFEnv(t, fivetrantest.Options{})
	hook := e.app.URL() + "/connect/fivetran/webhook"
	_, err := e.p.RegisterWebhook(context.Background(), hook)
	require.NoError(t, err)
	b := e.app.Browser("alice", "acme")
	require.Equal(t, http.StatusSeeOther, b.Get(e.run(b, "source=Salesforce", "token")).Code)
	c := e.app.Connections("acme")[0]
	require.Equal(t, onboard.Connected, c.State)
	require.Len(t, e.hooks(), 1)

	// The connection_successful delivery came before the browser's return:
	// unknown then, acknowledged and ignored.
	ds := e.emu.Deliveries()
	require.Len(t, ds, 1)
	require.Equal(t, "connection_successful", ds[0].Event)
	require.Equal(t, 200, ds[0].Status)

	t.Run("valid: a failed sync marks the connection failed", func(t *testing.T) {
		require.NoError(t, e.emu.Sync(c.ID, false))
		got := e.app.Connections("acme")[0]
		require.Equal(t, onboard.Failed, got.State)
		require.Contains(t, got.Message, "sync failed")
		hooks := e.hooks()
		require.Len(t, hooks, 2)
		require.Equal(t, onboard.Failed, hooks[1].State)
	})
	t.Run("duplicate delivery changes nothing", func(t *testing.T) {
		ds := e.emu.Deliveries()
		last := len(ds) - 1
		require.Equal(t, "sync_end", ds[last].Event)
		require.Equal(t, 200, e.emu.Redeliver(last))
		require.Len(t, e.hooks(), 2, "no second hook call")
	})
	t.Run("a late delivery of an older event is ignored", func(t *testing.T) {
		require.Equal(t, 200, e.emu.Redeliver(0)) // the first connection_successful
		require.Equal(t, onboard.Failed, e.app.Connections("acme")[0].State)
	})
	body := e.emu.Deliveries()[0].Body
	t.Run("wrong signature", func(t *testing.T) {
		require.Equal(t, 401, post(t, hook, body, fivetrantest.Sign("other-secret", body)))
		require.Equal(t, 401, post(t, hook, body, "zz-not-hex"))
	})
	t.Run("missing signature", func(t *testing.T) {
		require.Equal(t, 401, post(t, hook, body, ""))
	})
	t.Run("lower-case signature accepted", func(t *testing.T) {
		require.Equal(t, 200, post(t, hook, body, strings.ToLower(fivetrantest.Sign(secret, body))))
	})
	t.Run("oversized body", func(t *testing.T) {
		big := append(bytes.Repeat([]byte(" "), 70<<10), body...)
		require.Equal(t, http.StatusRequestEntityTooLarge, post(t, hook, big, fivetrantest.Sign(secret, big)))
	})
	t.Run("malformed payload", func(t *testing.T) {
		junk := []byte(`{"event":`)
		require.Equal(t, 400, post(t, hook, junk, fivetrantest.Sign(secret, junk)))
	})
	t.Run("delete_connector removes the connection", func(t *testing.T) {
		require.NoError(t, e.p.Delete(context.Background(), c.Owner, c.ID))
		require.Empty(t, e.app.Connections("acme"))
	})
}

func TestParseReturn(t *testing.T) {
	for _, tt := range []struct {
		q, id string
		ok    bool
	}{
		{"", "", true},
		{"id=conn_1", "conn_1", true},
		{"id=a&id=b", "", false},
		{"id=" + strings.Repeat("x", 200), "", false},
	} {
		v, _ := url.ParseQuery(tt.q)
		id, err := fivetran.ParseReturn(v)
		if !tt.ok {
			require.ErrorIs(t, err, onboard.ErrBadRequest)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.id, id)
	}
}

func TestConfig(t *testing.T) {
	_, err := fivetran.New(fivetran.Config{})
	require.ErrorContains(t, err, "APIKey")
	_, err = fivetran.New(fivetran.Config{APIKey: "k", APISecret: "s", BaseURL: "nope"})
	require.ErrorContains(t, err, "BaseURL")
	p, err := fivetran.New(fivetran.Config{APIKey: "k", APISecret: "s"})
	require.NoError(t, err)
	_, err = p.RegisterWebhook(context.Background(), "https://app.example/connect/fivetran/webhook")
	require.ErrorContains(t, err, "WebhookSecret")
	_, _, err = fivetran.DefaultService(&onboard.Flow{})
	require.ErrorIs(t, err, onboard.ErrBadRequest)
}

func FuzzParseReturn(f *testing.F) {
	f.Add("id=conn_abc")
	f.Add("id=a&id=b")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		id, err := fivetran.ParseReturn(v)
		if err != nil && !errors.Is(err, onboard.ErrBadRequest) {
			t.Fatal(err)
		}
		if err == nil && len(v["id"]) == 1 && id != v.Get("id") {
			t.Fatalf("id %q, want %q", id, v.Get("id"))
		}
	})
}

func FuzzWebhook(f *testing.F) {
	f.Add([]byte(`{"event":"sync_end","created":"2026-11-22T10:00:00Z","connector_id":"c1","data":{"status":"FAILURE"}}`), true)
	f.Add([]byte(`{"event":"delete_connector","created":"2026-11-22T10:00:00Z","connector_id":"c1"}`), true)
	f.Add([]byte(`{"event":1}`), false)
	f.Add([]byte(`null`), true)
	f.Fuzz(func(t *testing.T, body []byte, signed bool) {
		evs, err := fivetran.ParsePayload(body)
		if err == nil {
			for _, ev := range evs {
				if ev.ConnectionID == "" || ev.At.IsZero() {
					t.Fatalf("event without connection or time from %q", body)
				}
			}
		}
		sig := ""
		if signed {
			sig = fivetrantest.Sign(secret, body)
		}
		if fivetran.VerifySignature(secret, body, sig) != signed {
			t.Fatalf("signature check wrong for signed=%v", signed)
		}
		if fivetran.VerifySignature(secret, append(body, 'x'), sig) {
			t.Fatal("a changed body verified")
		}
	})
}
