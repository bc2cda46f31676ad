package cdata_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/emulate"
)

const oem = "oem-0001"

// hooks records what the onboard hooks were called with.
type hooks struct {
	mu    sync.Mutex
	calls map[string][]onboard.Connection
}

func (h *hooks) record(kind string) func(context.Context, onboard.Connection) {
	return func(_ context.Context, c onboard.Connection) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.calls == nil {
			h.calls = make(map[string][]onboard.Connection)
		}
		h.calls[kind] = append(h.calls[kind], c)
	}
}

func (h *hooks) get(kind string) []onboard.Connection {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls[kind])
}

// opts configure a cenv.
type opts struct {
	emu  cdatatest.Options
	cfg  func(*cdata.Config)
	app  func(*onboard.Config)
	wrap func(emu http.Handler) http.Handler
}

// cenv is the CData provider against its emulator, behind the onboard
// handlers.
type cenv struct {
	t     *testing.T
	emu   *cdatatest.Server
	api   string
	p     *cdata.Provider
	app   *onboardtest.App
	hooks *hooks
}

func newCEnv(t *testing.T, o opts) *cenv {
	t.Helper()
	o.emu.AccountID, o.emu.PublicKey = oem, &testutil.RSAKey().PublicKey
	e := &cenv{t: t, emu: cdatatest.New(o.emu), hooks: &hooks{}}
	var h http.Handler = e.emu
	if o.wrap != nil {
		h = o.wrap(e.emu)
	}
	e.api = onboardtest.Serve(t, h) + "/api"
	e.p = e.provider(o.cfg)
	e.app = onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{e.p}, Config: func(c *onboard.Config) {
		c.Hooks = onboard.Hooks{Connected: e.hooks.record("connected"), Failed: e.hooks.record("failed"),
			Abandoned: e.hooks.record("abandoned"), Revoked: e.hooks.record("revoked"), Deleted: e.hooks.record("deleted")}
		if o.app != nil {
			o.app(c)
		}
	}})
	return e
}

// provider returns a new provider instance on the emulator.
func (e *cenv) provider(mod func(*cdata.Config)) *cdata.Provider {
	cfg := cdata.Config{BaseURL: e.api, AccountID: oem, PrivateKey: testutil.RSAKey(),
		HTTPClient: &http.Client{Timeout: 2 * time.Second}, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	p, err := cdata.New(cfg)
	require.NoError(e.t, err)
	return p
}

// sub returns the tenant's sub-account at the emulator.
func (e *cenv) sub(tenant string) string {
	e.t.Helper()
	sub, ok := e.emu.Account(cdata.AccountExternalID(tenant))
	require.True(e.t, ok, "tenant %q has a sub-account", tenant)
	return sub
}

// run starts a flow as the browser, fills the hosted page and returns the
// URL CData sends the browser back to.
func (e *cenv) run(b *onboardtest.Browser, query, name, credential string) string {
	e.t.Helper()
	hosted := b.Start(e.app, "cdata", query)
	back, err := cdatatest.Fill(context.Background(), b.Client, hosted, name, credential)
	require.NoError(e.t, err)
	require.True(e.t, strings.HasPrefix(back, e.app.URL()+"/connect/cdata/return/"), back)
	return back
}

// connect runs a whole flow that ends connected and returns the stored
// connection.
func (e *cenv) connect(b *onboardtest.Browser, tenant, query string) onboard.Connection {
	e.t.Helper()
	before := len(e.app.Connections(tenant))
	res := b.Get(e.run(b, query, "", "pw"))
	require.Equal(e.t, http.StatusSeeOther, res.Code, res.Body)
	cs := e.app.Connections(tenant)
	require.Len(e.t, cs, before+1)
	require.Equal(e.t, onboard.Connected, cs[0].State)
	return cs[0]
}

// requests returns the API requests received since from (an index).
func (e *cenv) requests(from int) []emulate.Request { return e.emu.API.Requests()[from:] }

// count counts the requests to path among reqs.
func count(reqs []emulate.Request, method, path string) (n int) {
	for _, r := range reqs {
		if r.Method == method && r.Path == "/api/poweredby"+path {
			n++
		}
	}
	return n
}

// returnURLOf reads the return URL a hosted page sends its browser to.
func returnURLOf(t *testing.T, hosted string) string {
	u, err := url.Parse(hosted)
	require.NoError(t, err)
	return u.Query().Get("redirectUrl")
}

func TestRoundTrips(t *testing.T) {
	tests := []struct {
		name       string
		drop       bool
		query      string
		credential string
		state      onboard.State
		status     string // cdata_connection_status
		source     string
		message    string
	}{
		{"success", false, "source=Salesforce&name=CRM", "s3cret", onboard.Connected, "success", "Salesforce", ""},
		{"success, query dropped", true, "source=Salesforce&name=CRM", "s3cret", onboard.Connected, "success", "Salesforce", ""},
		{"source as CData spells it", false, "source=salesforce&name=CRM", "s3cret", onboard.Connected, "success", "Salesforce", ""},
		{"test failed", false, "source=Salesforce&name=CRM", "fail", onboard.Failed, "error", "Salesforce", "connection test failed"},
		{"returned without saving", false, "source=Salesforce&name=CRM", "", onboard.Abandoned, "none", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCEnv(t, opts{emu: cdatatest.Options{DropRedirectQuery: tt.drop}})
			b := e.app.Browser("alice", "acme")
			back := e.run(b, tt.query, "", tt.credential)
			assert.Contains(t, back, "cdata_connection_status="+tt.status)
			res := b.Get(back)
			require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
			require.Contains(t, res.Location, "onboard_flow=")

			held := e.emu.Connections(e.sub("acme"))
			cs := e.app.Connections("acme")
			if tt.state == onboard.Abandoned {
				require.Empty(t, cs)
				require.Empty(t, held)
				require.Len(t, e.hooks.get("abandoned"), 1)
				return
			}
			require.Len(t, cs, 1)
			require.Len(t, held, 1)
			assert.Equal(t, held[0].ID, cs[0].ID)
			assert.Equal(t, "CRM", cs[0].Name)
			assert.Equal(t, tt.source, cs[0].Source, "the data source exactly as CData reports it")
			assert.Equal(t, tt.state, cs[0].State)
			assert.Contains(t, cs[0].Message, tt.message)
			require.Len(t, e.hooks.get(string(tt.state)), 1)
		})
	}
}

// TestPickedOnCDataPage starts without a data source: the user picks one
// on CData's page, and the stored connection has CData's name and source.
func TestPickedOnCDataPage(t *testing.T) {
	e := newCEnv(t, opts{})
	b := e.app.Browser("alice", "acme")
	c := e.connect(b, "acme", "")
	assert.Equal(t, "ActOn", c.Source)
	assert.Equal(t, "ActOn1", c.Name)
}

func TestConnectionFixation(t *testing.T) {
	for _, tt := range []struct {
		name   string
		attack func(e *cenv, mallory *onboardtest.Browser, hosted string) onboardtest.Response
	}{
		{"attacker returns with status none", func(e *cenv, mallory *onboardtest.Browser, hosted string) onboardtest.Response {
			return mallory.Get(returnURLOf(e.t, hosted) + "?cdata_connection_status=none")
		}},
		{"attacker returns with no parameters", func(e *cenv, mallory *onboardtest.Browser, hosted string) onboardtest.Response {
			return mallory.Get(returnURLOf(e.t, hosted))
		}},
		{"attacker opens the same hosted link and returns from it", func(e *cenv, mallory *onboardtest.Browser, hosted string) onboardtest.Response {
			back, err := cdatatest.Fill(context.Background(), mallory.Client, hosted, "", "")
			require.NoError(e.t, err)
			require.Contains(e.t, back, "cdata_connection_status=none", "the page tells only the browser that saved")
			return mallory.Get(back)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newCEnv(t, opts{})
			mallory := e.app.Browser("mallory", "evil")
			hosted := mallory.Start(e.app, "cdata", "source=Salesforce")
			// The victim fills the attacker's hosted page with her own
			// credentials, and closes the tab.
			victim := onboardtest.NewBrowser(t)
			_, err := cdatatest.Fill(context.Background(), victim.Client, hosted, "", "victims-password")
			require.NoError(t, err)
			require.Len(t, e.emu.AllConnections(), 1)

			res := tt.attack(e, mallory, hosted)
			require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
			require.Empty(t, e.app.Connections("evil"), "nothing is attached")
			require.Empty(t, e.emu.AllConnections(), "what the victim saved is deleted at CData")
			require.Len(t, e.hooks.get("abandoned"), 1)
			require.Empty(t, e.hooks.get("connected"))
		})
	}
	t.Run("victim returns in her own browser", func(t *testing.T) {
		e := newCEnv(t, opts{})
		mallory := e.app.Browser("mallory", "evil")
		hosted := mallory.Start(e.app, "cdata", "source=Salesforce")
		victim := e.app.Browser("victor", "victims-company")
		back, err := cdatatest.Fill(context.Background(), victim.Client, hosted, "", "victims-password")
		require.NoError(t, err)
		res := victim.Get(back)
		require.Equal(t, http.StatusForbidden, res.Code, res.Body)
		require.Empty(t, e.app.Connections("evil"))
		require.Empty(t, e.app.Connections("victims-company"))
		require.Empty(t, e.emu.AllConnections(), "quarantined: deleted at CData")
		require.Len(t, e.hooks.get("revoked"), 1)
		// The attacker's own return now attaches nothing either.
		res = mallory.Get(back)
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
		require.Empty(t, e.app.Connections("evil"))
	})
}

// TestSavedAfterItsFlowWasSettled: a flow evicted at the owner's cap
// (its CData link still live), whose page the user then finishes and
// returns from in her own browser: nothing is attached, and what was
// saved is deleted at CData.
func TestSavedAfterItsFlowWasSettled(t *testing.T) {
	e := newCEnv(t, opts{app: func(c *onboard.Config) { c.MaxFlowsPerOwner = 1 }})
	b := e.app.Browser("alice", "acme")
	first := b.Start(e.app, "cdata", "source=Salesforce")
	b.Start(e.app, "cdata", "source=Salesforce") // settles the first
	back, err := cdatatest.Fill(context.Background(), b.Client, first, "", "pw")
	require.NoError(t, err)
	require.Len(t, e.emu.AllConnections(), 1)
	res := b.Get(back)
	require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
	c, status := b.Outcome(e.app, res.Location)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, onboard.Abandoned, c.State)
	require.Empty(t, e.app.Connections("acme"))
	require.Empty(t, e.emu.AllConnections(), "no orphan at CData")
}

func TestForgedReturns(t *testing.T) {
	e := newCEnv(t, opts{})
	// Another tenant's connection, made through its own flow.
	eve := e.app.Browser("eve", "globex")
	evesConn := e.connect(eve, "globex", "source=Salesforce").ID

	alice := e.app.Browser("alice", "acme")
	// A connection of another flow in alice's own sub-account.
	othersConn := e.connect(alice, "acme", "source=Salesforce").ID
	back := e.run(alice, "source=Salesforce", "", "pw")
	require.NoError(t, e.emu.AddConnection(e.sub("acme"), cdatatest.Connection{ID: "added-elsewhere", Name: "X",
		DataSource: "Salesforce", Status: cdatatest.Authenticated}))

	with := func(set map[string]string) string {
		u, _ := url.Parse(back)
		q := u.Query()
		for k, v := range set {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for _, tt := range []struct {
		name   string
		target string
		code   int
	}{
		{"another sub-account's connection", with(map[string]string{"cdata_connection_id": evesConn}), http.StatusForbidden},
		{"another flow's connection", with(map[string]string{"cdata_connection_id": othersConn}), http.StatusForbidden},
		{"a connection made outside onboard", with(map[string]string{"cdata_connection_id": "added-elsewhere"}), http.StatusForbidden},
		{"an id CData never issued", with(map[string]string{"cdata_connection_id": "00000000-0000-0000-0000-000000000000"}), http.StatusForbidden},
		{"an id with status none", with(map[string]string{"cdata_connection_status": "none"}), http.StatusBadRequest},
		{"an unknown status", with(map[string]string{"cdata_connection_status": "connected"}), http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := alice.Get(tt.target)
			require.Equal(t, tt.code, res.Code, res.Body)
			require.Len(t, e.app.Connections("acme"), 1)
		})
	}
	t.Run("the genuine return still completes", func(t *testing.T) {
		require.Equal(t, http.StatusSeeOther, alice.Get(back).Code)
		require.Len(t, e.app.Connections("acme"), 2)
	})
	t.Run("status success claimed for a failed test", func(t *testing.T) {
		back := e.run(alice, "source=Salesforce", "", "fail")
		res := alice.Get(strings.Replace(back, "cdata_connection_status=error", "cdata_connection_status=success", 1))
		require.Equal(t, http.StatusSeeOther, res.Code)
		c := e.app.Connections("acme")[0]
		require.Equal(t, onboard.Failed, c.State, "CData's record wins over the query")
		require.Contains(t, c.Message, "NotAuthenticated")
	})
	t.Run("a Conditional connection works", func(t *testing.T) {
		back := e.run(alice, "source=Salesforce", "", "conditional")
		require.Contains(t, back, "cdata_connection_status=success")
		require.Equal(t, http.StatusSeeOther, alice.Get(back).Code)
		c := e.app.Connections("acme")[0]
		require.Equal(t, onboard.Connected, c.State)
		require.Empty(t, c.Message)
	})
	t.Run("status error for a working connection", func(t *testing.T) {
		back := e.run(alice, "source=Salesforce", "", "pw")
		res := alice.Get(strings.Replace(back, "cdata_connection_status=success", "cdata_connection_status=error", 1))
		require.Equal(t, http.StatusSeeOther, res.Code)
		c := e.app.Connections("acme")[0]
		require.Equal(t, onboard.Failed, c.State)
		require.NotEmpty(t, c.ID, "saved: the user can reconnect it")
	})
}

func TestReconnect(t *testing.T) {
	e := newCEnv(t, opts{})
	b := e.app.Browser("alice", "acme")
	require.Equal(t, http.StatusSeeOther, b.Get(e.run(b, "source=Salesforce", "", "fail")).Code)
	c := e.app.Connections("acme")[0]
	require.Equal(t, onboard.Failed, c.State)

	t.Run("edited and verified with the driver filter", func(t *testing.T) {
		from := len(e.emu.API.Requests())
		back := e.run(b, "connection="+c.ID, "", "good-now")
		res := b.Get(back)
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
		cs := e.app.Connections("acme")
		require.Len(t, cs, 1)
		require.Equal(t, c.ID, cs[0].ID)
		require.Equal(t, onboard.Connected, cs[0].State)
		reqs := e.requests(from)
		require.Equal(t, 1, count(reqs, "POST", "/connection/edit/"+c.ID), "a reconnect calls connection/edit")
		require.Zero(t, count(reqs, "POST", "/connection/create"))
		i := slices.IndexFunc(reqs, func(r emulate.Request) bool { return r.Path == "/api/poweredby/connection/list" })
		require.GreaterOrEqual(t, i, 0)
		require.Equal(t, "driver=Salesforce", reqs[i].Query)
	})
	t.Run("another connection's id is forged", func(t *testing.T) {
		other := e.connect(b, "acme", "source=Salesforce")
		back := e.run(b, "connection="+c.ID, "", "pw")
		res := b.Get(strings.Replace(back, c.ID, other.ID, 1))
		require.Equal(t, http.StatusForbidden, res.Code, res.Body)
	})
	t.Run("left without saving", func(t *testing.T) {
		require.NoError(t, e.emu.SetStatus(c.ID, cdatatest.NotAuthenticated))
		back := e.run(b, "connection="+c.ID, "", "")
		require.Contains(t, back, "cdata_connection_status=none")
		require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
		stored, found, err := e.app.Store.FindConnection(context.Background(), "cdata", c.ID)
		require.NoError(t, err)
		require.True(t, found, "the connection stays")
		require.Equal(t, onboard.Connected, stored.State)
		require.True(t, slices.ContainsFunc(e.emu.AllConnections(), func(h cdatatest.Held) bool { return h.ID == c.ID }))
	})
	t.Run("quarantined edit deletes the connection", func(t *testing.T) {
		back := e.run(b, "connection="+c.ID, "", "pw")
		res := e.app.Browser("alice", "acme").Get(back)
		require.Equal(t, http.StatusForbidden, res.Code)
		require.False(t, slices.ContainsFunc(e.emu.AllConnections(), func(h cdatatest.Held) bool { return h.ID == c.ID }),
			"CData cannot disable a connection: it is deleted")
		stored, _, err := e.app.Store.FindConnection(context.Background(), "cdata", c.ID)
		require.NoError(t, err)
		require.Equal(t, onboard.Revoked, stored.State)
	})
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func jsonKeys(t *testing.T, body []byte) (map[string]any, []string) {
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return m, keys
}

func urlSafe(s string) bool {
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == ""
}

// TestWhatLeavesTheApp checks what the package doc says goes to CData:
// the return URL with the flow id in its path, a digest of the flow id as
// the connection's externalId, a digest of the tenant id as the
// sub-account's externalId and the tenant id as its name.
func TestWhatLeavesTheApp(t *testing.T) {
	e := newCEnv(t, opts{})
	b := e.app.Browser("alice", "acme")
	hosted := b.Start(e.app, "cdata", "source=Salesforce&name=CRM")
	u, _ := url.Parse(hosted)
	assert.Equal(t, "/oem/user/connections/edit", u.Path)
	assert.Equal(t, "Salesforce", u.Query().Get("driver"))

	reqs := e.emu.API.Requests()
	i := slices.IndexFunc(reqs, func(r emulate.Request) bool { return r.Path == "/api/poweredby/account/create" })
	require.GreaterOrEqual(t, i, 0)
	acct, keys := jsonKeys(t, reqs[i].Body)
	require.Equal(t, []string{"accountName", "externalId"}, keys)
	assert.Equal(t, "acme", acct["accountName"])
	ext := acct["externalId"].(string)
	assert.Equal(t, cdata.AccountExternalID("acme"), ext)
	assert.Len(t, ext, 51, "fixed length")
	assert.True(t, urlSafe(ext), ext)
	assert.NotContains(t, ext, "acme")

	i = slices.IndexFunc(reqs, func(r emulate.Request) bool { return r.Path == "/api/poweredby/connection/create" })
	require.GreaterOrEqual(t, i, 0)
	create := reqs[i]
	require.Equal(t, "POST", create.Method)
	require.Equal(t, "application/json", create.Header.Get("Content-Type"))
	body, keys := jsonKeys(t, create.Body)
	require.Equal(t, []string{"dataSource", "externalId", "name", "redirectURL"}, keys)
	assert.Equal(t, "Salesforce", body["dataSource"])
	assert.Equal(t, "CRM", body["name"])
	ret := body["redirectURL"].(string)
	require.True(t, strings.HasPrefix(ret, e.app.URL()+"/connect/cdata/return/"), ret)
	flowID := onboardtest.FlowID(t, ret)
	assert.Len(t, flowID, 43, "the flow id travels in the return URL's path")
	require.NotContains(t, ret, "?", "and nothing else")
	cext := body["externalId"].(string)
	assert.Equal(t, cdata.ConnectionExternalID(flowID), cext)
	assert.NotContains(t, cext, flowID, "the externalId is a digest, not the flow id")
	assert.NotEqual(t, cdata.ConnectionExternalID(flowID+"x"), cext)

	tok, ok := strings.CutPrefix(create.Header.Get("Authorization"), "Bearer ")
	require.True(t, ok)
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	require.Equal(t, map[string]any{"alg": "RS256", "typ": "JWT"}, decodeSegment(t, parts[0]))
	claims := decodeSegment(t, parts[1])
	iat, exp := claims["iat"].(float64), claims["exp"].(float64)
	assert.InDelta(t, float64(time.Now().Unix()), iat, 5)
	assert.Equal(t, 300.0, exp-iat, "five minute lifetime")
	delete(claims, "iat")
	delete(claims, "exp")
	require.Equal(t, map[string]any{"tokenType": "powered-by", "iss": oem, "sub": e.sub("acme")}, claims)
}

func TestWithoutDataSourceNameIsNotSent(t *testing.T) {
	e := newCEnv(t, opts{})
	b := e.app.Browser("alice", "acme")
	b.Start(e.app, "cdata", "name=CRM")
	reqs := e.emu.API.Requests()
	_, keys := jsonKeys(t, reqs[len(reqs)-1].Body)
	require.Equal(t, []string{"externalId", "redirectURL"}, keys)
}

func TestHostedLinkExpires(t *testing.T) {
	e := newCEnv(t, opts{emu: cdatatest.Options{LinkTTL: 300 * time.Millisecond}})
	b := e.app.Browser("alice", "acme")
	hosted := b.Start(e.app, "cdata", "source=Salesforce")
	require.Equal(t, http.StatusOK, b.Get(hosted).Code)
	time.Sleep(400 * time.Millisecond)
	res := b.Get(hosted)
	require.Equal(t, http.StatusUnauthorized, res.Code)
	require.Contains(t, res.Body, "expired")
}

func TestTokenLifetime(t *testing.T) {
	for _, tt := range []struct {
		life time.Duration
		ok   bool
	}{
		{0, true}, {time.Minute, true}, {time.Hour, true},
		{time.Hour + time.Second, false}, {10 * 365 * 24 * time.Hour, false}, {-time.Minute, false},
	} {
		t.Run(tt.life.String(), func(t *testing.T) {
			_, err := cdata.New(cdata.Config{AccountID: oem, PrivateKey: testutil.RSAKey(), TokenLifetime: tt.life})
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "TokenLifetime")
			require.ErrorContains(t, err, "at most one hour")
		})
	}
}

// TestSourcesCreateNoSubAccount lists data sources for tenants with and
// without a sub-account: it never creates one.
func TestSourcesCreateNoSubAccount(t *testing.T) {
	ctx := context.Background()
	srcs := []string{"Salesforce", "Snowflake"}
	t.Run("partner token accepted", func(t *testing.T) {
		e := newCEnv(t, opts{emu: cdatatest.Options{Sources: srcs, SourcesWithoutSub: true}})
		for range 3 {
			got, err := e.p.Sources(ctx, "acme")
			require.NoError(t, err)
			require.Equal(t, srcs, got)
		}
		require.Empty(t, e.emu.Accounts())
		reqs := e.emu.API.Requests()
		require.Equal(t, 1, count(reqs, "GET", "/sources/list"), "cached")
		require.Zero(t, count(reqs, "POST", "/account/create"))
	})
	t.Run("partner token refused", func(t *testing.T) {
		e := newCEnv(t, opts{emu: cdatatest.Options{Sources: srcs}})
		_, err := e.p.Sources(ctx, "acme")
		require.ErrorIs(t, err, cdata.ErrUnauthorized)
		require.ErrorIs(t, err, onboard.ErrProvider)
		require.Empty(t, e.emu.Accounts())
	})
	t.Run("the tenant's sub-account when it has one", func(t *testing.T) {
		e := newCEnv(t, opts{emu: cdatatest.Options{Sources: srcs}})
		sub, err := e.p.SubAccount(ctx, "acme")
		require.NoError(t, err)
		other := e.provider(nil) // another instance, which has not seen the tenant yet
		got, err := other.Sources(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, srcs, got)
		require.Len(t, e.emu.Accounts(), 1)
		reqs := e.emu.API.Requests()
		list := reqs[slices.IndexFunc(reqs, func(r emulate.Request) bool { return r.Path == "/api/poweredby/sources/list" })]
		tok, _ := strings.CutPrefix(list.Header.Get("Authorization"), "Bearer ")
		require.Equal(t, sub, decodeSegment(t, strings.Split(tok, ".")[1])["sub"])
	})
}

// TestRefresh runs the onboard runner against CData's current state.
func TestRefresh(t *testing.T) {
	ctx := context.Background()
	newEnv := func(t *testing.T, mod func(*cdata.Config)) *cenv {
		return newCEnv(t, opts{cfg: mod, app: func(c *onboard.Config) { c.RefreshEvery = time.Millisecond }})
	}
	pass := func(t *testing.T, e *cenv) onboard.Report {
		time.Sleep(5 * time.Millisecond) // past RefreshEvery
		rep, err := e.app.Onboarder.RunOnce(ctx)
		require.NoError(t, err)
		return rep
	}
	t.Run("a connection that stops authenticating is marked failed", func(t *testing.T) {
		e := newEnv(t, nil)
		b := e.app.Browser("alice", "acme")
		c := e.connect(b, "acme", "source=Salesforce")
		e.connect(b, "acme", "source=HubSpot")
		require.Equal(t, 2, pass(t, e).Refreshed)

		require.NoError(t, e.emu.SetStatus(c.ID, cdatatest.NotAuthenticated))
		from := len(e.emu.API.Requests())
		rep := pass(t, e)
		require.Equal(t, 2, rep.Refreshed)
		require.Equal(t, 1, rep.Changed)
		require.Equal(t, 1, count(e.requests(from), "GET", "/connection/list"), "one list per tenant")
		stored, _, err := e.app.Store.FindConnection(ctx, "cdata", c.ID)
		require.NoError(t, err)
		require.Equal(t, onboard.Failed, stored.State)
		require.Contains(t, stored.Message, "CData reports the connection as NotAuthenticated: reconnect it")
		failed := e.hooks.get("failed")
		require.Len(t, failed, 1)
		require.Equal(t, c.ID, failed[0].ID)

		require.Zero(t, pass(t, e).Changed, "no change, no event")
		require.NoError(t, e.emu.SetStatus(c.ID, cdatatest.Conditional))
		require.Equal(t, 1, pass(t, e).Changed, "Conditional works: a recovery")
		require.Len(t, e.hooks.get("connected"), 3, "two flows and the recovery")
		require.NoError(t, e.emu.SetStatus(c.ID, cdatatest.Authenticated))
		require.Zero(t, pass(t, e).Changed, "Conditional to Authenticated changes nothing")
	})
	t.Run("a connection deleted in CData's UI is noticed", func(t *testing.T) {
		e := newEnv(t, nil)
		b := e.app.Browser("alice", "acme")
		c := e.connect(b, "acme", "source=Salesforce")
		require.NoError(t, e.emu.Remove(c.ID))
		rep := pass(t, e)
		require.Equal(t, 1, rep.Changed)
		require.Empty(t, e.app.Connections("acme"))
		deleted := e.hooks.get("deleted")
		require.Len(t, deleted, 1)
		require.Equal(t, c.ID, deleted[0].ID)
	})
	t.Run("a failing API leaves the connections for the next pass", func(t *testing.T) {
		e := newEnv(t, func(c *cdata.Config) { c.Retries = -1 })
		b := e.app.Browser("alice", "acme")
		c := e.connect(b, "acme", "source=Salesforce")
		require.NoError(t, e.emu.SetStatus(c.ID, cdatatest.NotAuthenticated))
		e.emu.API.Fail(emulate.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Minute})
		time.Sleep(5 * time.Millisecond)
		rep, err := e.app.Onboarder.RunOnce(ctx)
		require.ErrorIs(t, err, onboard.ErrProvider)
		require.Equal(t, 1, rep.Errors)
		require.Equal(t, onboard.Connected, e.app.Connections("acme")[0].State)
		require.Equal(t, 1, pass(t, e).Changed, "the next pass catches up")
	})
	t.Run("a tenant without a sub-account deletes nothing", func(t *testing.T) {
		// Its connections were made in a sub-account: one not found now is
		// an answer to doubt (a gateway's 404, a lookup that changed).
		e := newEnv(t, nil)
		events, err := e.p.Refresh(ctx, "ghost", []onboard.Connection{{Provider: "cdata", ID: "c1", State: onboard.Connected}})
		require.ErrorIs(t, err, onboard.ErrRefused)
		require.Empty(t, events)
		events, err = e.p.Refresh(ctx, "ghost", nil)
		require.NoError(t, err)
		require.Empty(t, events)
		require.Empty(t, e.emu.Accounts(), "none is created")
	})
}

// TestRateLimitedCreateIsRetried: a 429 means the create was not carried
// out, so it is repeated within the start's deadline.
func TestRateLimitedCreateIsRetried(t *testing.T) {
	e := newCEnv(t, opts{})
	b := e.app.Browser("alice", "acme")
	e.connect(b, "acme", "source=Salesforce")
	from := len(e.emu.API.Requests())
	e.emu.API.Fail(emulate.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second})
	start := time.Now()
	back := e.run(b, "source=HubSpot", "", "pw")
	require.GreaterOrEqual(t, time.Since(start), time.Second, "Retry-After was honoured")
	require.Equal(t, 2, count(e.requests(from), "POST", "/connection/create"))
	require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
	require.Len(t, e.app.Connections("acme"), 2)
}

// hijackClose closes the connection of w without an answer.
func hijackClose(t *testing.T, w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	require.NoError(t, err)
	conn.Close()
}

func TestLostCreateAnswer(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault emulate.Fault
	}{
		{"connection closed after the create", emulate.Fault{Drop: true, AfterHandling: true}},
		{"502 from a gateway", emulate.Fault{Status: http.StatusBadGateway, AfterHandling: true}},
		{"junk", emulate.Fault{Body: "<html>", AfterHandling: true}},
	} {
		t.Run(tt.name+": checked, then asked again", func(t *testing.T) {
			e := newCEnv(t, opts{})
			b := e.app.Browser("alice", "acme")
			e.connect(b, "acme", "source=Salesforce")
			from := len(e.emu.API.Requests())
			e.emu.API.Fail(tt.fault)
			hosted := b.Start(e.app, "cdata", "source=HubSpot")
			reqs := e.requests(from)
			var seq []string
			for _, r := range reqs {
				seq = append(seq, r.Method+" "+strings.TrimPrefix(r.Path, "/api/poweredby"))
			}
			require.Equal(t, []string{"POST /connection/create", "GET /connection/list", "POST /connection/create"}, seq)
			var body map[string]string
			require.NoError(t, json.Unmarshal(reqs[0].Body, &body))
			require.Equal(t, url.Values{"externalId": {body["externalId"]}}.Encode(), reqs[1].Query)
			back, err := cdatatest.Fill(context.Background(), b.Client, hosted, "", "pw")
			require.NoError(t, err)
			require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
			require.Len(t, e.app.Connections("acme"), 2)
		})
	}
	t.Run("no retries configured: not asked again", func(t *testing.T) {
		e := newCEnv(t, opts{cfg: func(c *cdata.Config) { c.Retries = -1 }})
		b := e.app.Browser("alice", "acme")
		e.connect(b, "acme", "source=Salesforce")
		from := len(e.emu.API.Requests())
		e.emu.API.Fail(emulate.Fault{Drop: true, AfterHandling: true})
		res := b.Get(e.app.URL() + "/connect/cdata/start?source=HubSpot")
		require.Equal(t, http.StatusBadGateway, res.Code)
		require.Equal(t, 1, count(e.requests(from), "POST", "/connection/create"))
	})
	t.Run("a connection with the flow's externalId exists: never asked again", func(t *testing.T) {
		var armed atomic.Bool
		var saved atomic.Value
		var e *cenv
		e = newCEnv(t, opts{wrap: func(emu http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/api/poweredby/connection/create" || !armed.CompareAndSwap(true, false) {
					emu.ServeHTTP(w, r)
					return
				}
				// The create is carried out and its link reaches someone
				// who saves a connection, but the answer is lost on the
				// way back.
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				emu.ServeHTTP(httptest.NewRecorder(), r)
				var in map[string]string
				assert.NoError(t, json.Unmarshal(body, &in))
				c := cdatatest.Connection{ID: "saved-by-someone", ExternalID: in["externalId"], Name: "Saved",
					DataSource: "HubSpot", Status: cdatatest.Authenticated}
				assert.NoError(t, e.emu.AddConnection(e.sub("acme"), c))
				saved.Store(c.ID)
				hijackClose(t, w)
			})
		}})
		_, err := e.p.SubAccount(context.Background(), "acme")
		require.NoError(t, err)
		b := e.app.Browser("alice", "acme")
		from := len(e.emu.API.Requests())
		armed.Store(true)
		res := b.Get(e.app.URL() + "/connect/cdata/start?source=HubSpot")
		require.Equal(t, http.StatusBadGateway, res.Code, res.Body)
		reqs := e.requests(from)
		require.Equal(t, 1, count(reqs, "POST", "/connection/create"), "never repeated blindly")
		require.Equal(t, 1, count(reqs, "DELETE", "/connection/delete/"+saved.Load().(string)),
			"the failed start is settled and what was saved is deleted")
		require.Empty(t, e.emu.AllConnections(), "nothing is left behind")
		require.Empty(t, e.app.Connections("acme"))
	})
}

// TestTenantsNeverShareASubAccount maps tenant ids that collide under a
// naive mapping (the tenant id as externalId) to sub-accounts.
func TestTenantsNeverShareASubAccount(t *testing.T) {
	ctx := context.Background()
	e := newCEnv(t, opts{})
	first, err := e.p.SubAccount(ctx, "acme")
	require.NoError(t, err)
	tenants := []string{
		"acme",
		"acme ", "ACME", "acme-1", "acme1", "acm", "acme/1", "acme?x=1", "../acme", "acme%2F1", "a\x00cme",
		"ａｃｍｅ", "émilie", "e\u0301milie",
		strings.Repeat("a", 5000), strings.Repeat("a", 5000) + "b",
		first,                           // another account's id
		cdata.AccountExternalID("acme"), // another account's externalId
	}
	subs := make(map[string]string)
	for _, tenant := range tenants {
		sub, err := e.p.SubAccount(ctx, tenant)
		require.NoError(t, err, "%q", tenant)
		if other, dup := subs[sub]; dup {
			t.Fatalf("tenants %q and %q share sub-account %s", other, tenant, sub)
		}
		subs[sub] = tenant
	}
	accts := e.emu.Accounts()
	require.Len(t, accts, len(tenants))
	for _, a := range accts {
		tenant := subs[a.ID]
		require.Equal(t, tenant, a.AccountName)
		require.Equal(t, cdata.AccountExternalID(tenant), a.ExternalID)
		require.Len(t, a.ExternalID, 51)
		require.True(t, urlSafe(a.ExternalID))
	}

	t.Run("an account whose id is a tenant's externalId is never taken", func(t *testing.T) {
		impostor, err := e.emu.AddAccount(cdatatest.Account{ID: cdata.AccountExternalID("victim"), ExternalID: "other"})
		require.NoError(t, err)
		sub, err := e.provider(nil).SubAccount(ctx, "victim")
		require.ErrorIs(t, err, onboard.ErrProvider)
		require.NotEqual(t, impostor, sub)
	})
}

func TestSubAccountFoundOrCreatedOnce(t *testing.T) {
	ctx := context.Background()
	e := newCEnv(t, opts{})
	var wg sync.WaitGroup
	subs := make([]string, 8)
	for i := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			subs[i], err = e.p.SubAccount(ctx, "acme")
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	for _, s := range subs {
		require.Equal(t, subs[0], s)
	}
	require.Equal(t, 1, count(e.emu.API.Requests(), "POST", "/account/create"), "concurrent starts create one sub-account")

	t.Run("another instance finds it and remembers it", func(t *testing.T) {
		from := len(e.emu.API.Requests())
		p2 := e.provider(nil)
		for range 3 {
			sub, err := p2.SubAccount(ctx, "acme")
			require.NoError(t, err)
			require.Equal(t, subs[0], sub)
		}
		reqs := e.requests(from)
		require.Len(t, reqs, 1)
		require.Equal(t, "/api/poweredby/account/"+cdata.AccountExternalID("acme"), reqs[0].Path)
	})
	t.Run("a conflict on create looks it up again", func(t *testing.T) {
		from := len(e.emu.API.Requests())
		// Not there yet when looked up, nor when looked up again before
		// creating it.
		e.emu.API.Fail(emulate.Fault{Status: http.StatusNotFound}, emulate.Fault{Status: http.StatusNotFound})
		sub, err := e.provider(nil).SubAccount(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, subs[0], sub)
		var seq []string
		for _, r := range e.requests(from) {
			seq = append(seq, r.Method+" "+strings.TrimPrefix(r.Path, "/api/poweredby"))
		}
		ext := cdata.AccountExternalID("acme")
		require.Equal(t, []string{"GET /account/" + ext, "GET /account/" + ext, "POST /account/create", "GET /account/" + ext}, seq)
	})
	t.Run("a lost create answer finds the account made", func(t *testing.T) {
		e.emu.API.Fail(emulate.Fault{Drop: true, AfterHandling: true})
		sub, err := e.p.SubAccount(ctx, "globex")
		require.NoError(t, err)
		require.Len(t, e.emu.Accounts(), 2)
		require.Equal(t, e.sub("globex"), sub)
	})
}

// TestSubAccountOverride: an app that keeps the tenant mapping itself.
func TestSubAccountOverride(t *testing.T) {
	ctx := context.Background()
	var e *cenv
	e = newCEnv(t, opts{cfg: func(c *cdata.Config) {
		c.SubAccount = func(_ context.Context, tenant string) (string, error) {
			if tenant != "acme" {
				return "", nil
			}
			return e.emu.AddAccount(cdatatest.Account{ID: "mine-" + tenant})
		}
	}})
	b := e.app.Browser("alice", "acme")
	c := e.connect(b, "acme", "source=Salesforce")
	require.Equal(t, "mine-acme", e.emu.AllConnections()[0].SubAccount)
	reqs := e.emu.API.Requests()
	require.False(t, slices.ContainsFunc(reqs, func(r emulate.Request) bool { return strings.Contains(r.Path, "/account/") }))

	res := e.app.Browser("bob", "globex").Get(e.app.URL() + "/connect/cdata/start?source=Salesforce")
	require.Equal(t, http.StatusInternalServerError, res.Code, "no sub-account for the tenant: a setup mistake")
	events, err := e.p.Refresh(ctx, "globex", []onboard.Connection{c})
	require.ErrorIs(t, err, onboard.ErrRefused, "no sub-account for connections stored: nothing is taken for deleted")
	require.Empty(t, events)
}

// TestCostsBounded: a start and a return make the same API calls whatever
// the number of connections in the sub-account.
func TestCostsBounded(t *testing.T) {
	e := newCEnv(t, opts{})
	calls := func(tenant, query string) []emulate.Request {
		b := e.app.Browser("alice", tenant)
		from := len(e.emu.API.Requests())
		res := b.Get(e.run(b, query, "", "pw"))
		require.Equal(t, http.StatusSeeOther, res.Code)
		return e.requests(from)
	}
	calls("small", "source=Salesforce") // the sub-accounts are made
	calls("big", "source=Salesforce")
	sub := e.sub("big")
	for i := range 2000 {
		require.NoError(t, e.emu.AddConnection(sub, cdatatest.Connection{Name: fmt.Sprint("H", i), DataSource: "HubSpot",
			ExternalID: fmt.Sprint("ext-", i), Status: cdatatest.Authenticated}))
	}
	small, big := calls("small", "source=Salesforce"), calls("big", "source=Salesforce")
	require.Len(t, small, 2)
	require.Len(t, big, len(small))
	for _, r := range big {
		if r.Method == "GET" {
			require.Contains(t, r.Query, "externalId=", "the list is filtered to the flow's connection")
		}
	}
	t.Run("reconnect", func(t *testing.T) {
		c := e.app.Connections("big")[0]
		small := calls("small", "connection="+e.app.Connections("small")[0].ID)
		big := calls("big", "connection="+c.ID)
		require.Len(t, big, len(small))
		for _, r := range big {
			if r.Method == "GET" {
				require.Equal(t, "driver=Salesforce", r.Query)
			}
		}
	})
}

func TestCancel(t *testing.T) {
	ctx := context.Background()
	e := newCEnv(t, opts{})
	b := e.app.Browser("alice", "acme")
	hosted := b.Start(e.app, "cdata", "source=Salesforce")
	_, err := cdatatest.Fill(ctx, b.Client, hosted, "", "pw")
	require.NoError(t, err)
	f := onboard.Flow{ID: onboardtest.FlowID(t, returnURLOf(t, hosted)), Owner: onboard.Owner{Tenant: "acme", User: "alice"}}
	require.NoError(t, e.emu.AddConnection(e.sub("acme"), cdatatest.Connection{ExternalID: "kept", DataSource: "Salesforce"}))
	require.NoError(t, e.p.Cancel(ctx, f))
	held := e.emu.AllConnections()
	require.Len(t, held, 1)
	require.Equal(t, "kept", held[0].ExternalID, "only the flow's connections are deleted")
	require.NoError(t, e.p.Cancel(ctx, f), "idempotent")
	require.NoError(t, e.p.Cancel(ctx, onboard.Flow{ID: f.ID, Owner: onboard.Owner{Tenant: "ghost", User: "x"}}))
	require.Len(t, e.emu.Accounts(), 1, "no sub-account is created to cancel")
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	e := newCEnv(t, opts{})
	b := e.app.Browser("alice", "acme")
	c := e.connect(b, "acme", "source=Salesforce")
	require.NoError(t, e.app.Onboarder.DeleteConnection(ctx, c.Owner, "cdata", c.ID))
	require.Empty(t, e.emu.AllConnections())
	require.Empty(t, e.app.Connections("acme"))
	require.Len(t, e.hooks.get("deleted"), 1)
	require.NoError(t, e.p.Delete(ctx, c), "deleting twice is fine")
	c.Owner.Tenant = "ghost"
	require.NoError(t, e.p.Delete(ctx, c))
	require.Len(t, e.emu.Accounts(), 1)
}

func TestAPIErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("401 with a key CData does not know", func(t *testing.T) {
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		e := newCEnv(t, opts{cfg: func(c *cdata.Config) { c.PrivateKey = other }})
		_, err = e.p.SubAccount(ctx, "acme")
		require.ErrorIs(t, err, cdata.ErrUnauthorized)
		require.ErrorIs(t, err, onboard.ErrProvider)
		var ae *cdata.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, http.StatusUnauthorized, ae.Status)
		require.Contains(t, ae.Message, "invalid token")
		b := e.app.Browser("alice", "acme")
		res := b.Get(e.app.URL() + "/connect/cdata/start")
		require.Equal(t, http.StatusBadGateway, res.Code)
		require.NotContains(t, res.Body, "invalid token")
	})
	t.Run("a number as the error code keeps the message", func(t *testing.T) {
		e := newCEnv(t, opts{})
		_, err := e.p.SubAccount(ctx, "acme")
		require.NoError(t, err)
		e.emu.API.Fail(emulate.Fault{Status: 400, Body: `{"error":{"code":27,"message":"the driver is not allowed"}}`})
		_, err = e.p.Sources(ctx, "acme")
		require.ErrorIs(t, err, onboard.ErrRefused)
		var ae *cdata.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, "27", ae.Code)
		require.Equal(t, "the driver is not allowed", ae.Message)
		require.EqualError(t, ae, "cdata: 400 the driver is not allowed")
	})
	t.Run("an unknown data source is a refusal", func(t *testing.T) {
		e := newCEnv(t, opts{})
		b := e.app.Browser("alice", "acme")
		res := b.Get(e.app.URL() + "/connect/cdata/start?source=Nope")
		require.Equal(t, http.StatusUnprocessableEntity, res.Code, res.Body)
		require.NotContains(t, res.Body, "unknown dataSource")
	})
	t.Run("GET retried after 503 and 429", func(t *testing.T) {
		e := newCEnv(t, opts{})
		_, err := e.p.SubAccount(ctx, "acme")
		require.NoError(t, err)
		e.emu.API.Fail(emulate.Fault{Status: 503}, emulate.Fault{Status: 429, RetryAfter: time.Second})
		start := time.Now()
		_, err = e.p.Sources(ctx, "acme")
		require.NoError(t, err)
		require.GreaterOrEqual(t, time.Since(start), time.Second, "Retry-After was honoured")
	})
	t.Run("a Retry-After past the deadline fails at once", func(t *testing.T) {
		e := newCEnv(t, opts{})
		_, err := e.p.SubAccount(ctx, "acme")
		require.NoError(t, err)
		e.emu.API.Fail(emulate.Fault{Status: 429, RetryAfter: time.Minute})
		start := time.Now()
		b := e.app.Browser("alice", "acme")
		res := b.Get(e.app.URL() + "/connect/cdata/start?source=Salesforce")
		require.Equal(t, http.StatusBadGateway, res.Code)
		require.Less(t, time.Since(start), time.Second)
	})
	t.Run("timeout is bounded", func(t *testing.T) {
		e := newCEnv(t, opts{cfg: func(c *cdata.Config) {
			c.HTTPClient = &http.Client{Timeout: 200 * time.Millisecond}
			c.Retries = -1
		}})
		e.emu.API.SetDelay(5 * time.Second)
		defer e.emu.API.SetDelay(0)
		start := time.Now()
		_, err := e.p.SubAccount(ctx, "acme")
		require.ErrorIs(t, err, onboard.ErrProvider)
		require.Less(t, time.Since(start), 2*time.Second)
	})
	t.Run("malformed answer", func(t *testing.T) {
		e := newCEnv(t, opts{cfg: func(c *cdata.Config) { c.Retries = -1 }})
		e.emu.API.Fail(emulate.Fault{Body: "{not json"})
		_, err := e.p.SubAccount(ctx, "acme")
		require.ErrorIs(t, err, onboard.ErrProvider)
	})
}

func TestProviderDownAtReturnLeavesFlowRetryable(t *testing.T) {
	e := newCEnv(t, opts{cfg: func(c *cdata.Config) { c.Retries = -1 }})
	b := e.app.Browser("alice", "acme")
	back := e.run(b, "source=Salesforce", "", "pw")
	e.emu.API.Fail(emulate.Fault{Status: 500})
	require.Equal(t, http.StatusBadGateway, b.Get(back).Code)
	require.Empty(t, e.app.Connections("acme"))
	require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
	require.Len(t, e.app.Connections("acme"), 1)
}

func TestKeys(t *testing.T) {
	k := testutil.RSAKey()
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	file := filepath.Join(t.TempDir(), "key.pem")
	require.NoError(t, os.WriteFile(file, pkcs8, 0o600))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)

	tests := []struct {
		name string
		cfg  cdata.Config
		err  error
	}{
		{"key", cdata.Config{PrivateKey: k}, nil},
		{"PKCS#1 PEM", cdata.Config{PrivateKeyPEM: pkcs1}, nil},
		{"PKCS#8 PEM", cdata.Config{PrivateKeyPEM: pkcs8}, nil},
		{"file", cdata.Config{PrivateKeyFile: file}, nil},
		{"no key", cdata.Config{}, cdata.ErrKey},
		{"junk PEM", cdata.Config{PrivateKeyPEM: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}, cdata.ErrKey},
		{"missing file", cdata.Config{PrivateKeyFile: filepath.Join(t.TempDir(), "none.pem")}, cdata.ErrKey},
		{"1024-bit key", cdata.Config{PrivateKey: small}, cdata.ErrKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.AccountID = oem
			_, err := cdata.New(tt.cfg)
			if tt.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.err)
		})
	}
	_, err = cdata.New(cdata.Config{PrivateKey: k})
	require.ErrorContains(t, err, "AccountID")
	_, err = cdata.New(cdata.Config{PrivateKey: k, AccountID: oem, BaseURL: "ftp://x"})
	require.ErrorContains(t, err, "BaseURL")
}

func TestTokenReuse(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	p, err := cdata.New(cdata.Config{AccountID: oem, PrivateKey: testutil.RSAKey(),
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	require.NoError(t, err)
	var wg sync.WaitGroup
	toks := make([]string, 16)
	for i := range toks {
		wg.Add(1)
		go func() { defer wg.Done(); toks[i], _ = p.Token("sub-1") }()
	}
	wg.Wait()
	first, _ := p.Token("sub-1")
	other, _ := p.Token("sub-2")
	require.NotEqual(t, first, other, "one token per sub-account")
	mu.Lock()
	now = now.Add(3 * time.Minute)
	mu.Unlock()
	again, _ := p.Token("sub-1")
	require.Equal(t, first, again, "reused within four fifths of the lifetime")
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	renewed, _ := p.Token("sub-1")
	require.NotEqual(t, first, renewed, "renewed before it expires")
}

// TestTokenRenewedInRealTime uses a real short lifetime: a token is
// renewed before CData would refuse it as expired.
func TestTokenRenewedInRealTime(t *testing.T) {
	e := newCEnv(t, opts{cfg: func(c *cdata.Config) { c.TokenLifetime = 2 * time.Second }})
	ctx := context.Background()
	sub, err := e.p.SubAccount(ctx, "acme")
	require.NoError(t, err)
	first, _ := e.p.Token(sub)
	time.Sleep(2100 * time.Millisecond)
	_, err = e.p.Refresh(ctx, "acme", nil)
	require.NoError(t, err, "an expired token is never sent")
	renewed, _ := e.p.Token(sub)
	require.NotEqual(t, first, renewed)
}

func TestParseReturn(t *testing.T) {
	tests := []struct {
		q    string
		want cdata.Return
		ok   bool
	}{
		{"cdata_connection_id=da77460c&cdata_connection_name=OData1&cdata_connection_status=success&zx=1&no_sw_cr=1",
			cdata.Return{ID: "da77460c", Name: "OData1", Status: "success"}, true},
		{"cdata_connection_status=none&zx=1773252769892&no_sw_cr=1", cdata.Return{Status: "none"}, true},
		{"cdata_connection_id=507b&cdata_connection_name=Salesforce1&cdata_connection_status=error",
			cdata.Return{ID: "507b", Name: "Salesforce1", Status: "error"}, true},
		{"", cdata.Return{}, true},
		{"cdata_connection_status=success", cdata.Return{Status: "success"}, true},
		{"cdata_connection_status=weird&cdata_connection_id=x", cdata.Return{}, false},
		{"cdata_connection_status=none&cdata_connection_id=x", cdata.Return{}, false},
		{"cdata_connection_id=x", cdata.Return{}, false},
		{"cdata_connection_id=a&cdata_connection_id=b&cdata_connection_status=success", cdata.Return{}, false},
		{"cdata_connection_id=a&cdata_connection_status=success&cdata_connection_status=error", cdata.Return{}, false},
		{"cdata_connection_id=" + strings.Repeat("a", 129) + "&cdata_connection_status=success", cdata.Return{}, false},
	}
	for _, tt := range tests {
		v, err := url.ParseQuery(tt.q)
		require.NoError(t, err)
		got, err := cdata.ParseReturn(v)
		if !tt.ok {
			require.ErrorIs(t, err, onboard.ErrBadRequest, tt.q)
			continue
		}
		require.NoError(t, err, tt.q)
		require.Equal(t, tt.want, got)
	}
}

func FuzzParseReturn(f *testing.F) {
	f.Add("cdata_connection_id=da77460c-7438-4288-be66-ea0059c160ae&cdata_connection_name=OData1&cdata_connection_status=success")
	f.Add("cdata_connection_status=none")
	f.Add("cdata_connection_status=error&cdata_connection_id=%ff")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		r, err := cdata.ParseReturn(v)
		if err != nil {
			if !errors.Is(err, onboard.ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		if r.ID != "" && r.Status != "success" && r.Status != "error" {
			t.Fatalf("accepted id %q with status %q", r.ID, r.Status)
		}
		if r.Status != "success" && r.Status != "error" && r.Status != "none" && r.Status != "" {
			t.Fatalf("accepted status %q", r.Status)
		}
		if len(r.ID) > 128 || len(r.Name) > 512 {
			t.Fatalf("accepted oversized values")
		}
	})
}
