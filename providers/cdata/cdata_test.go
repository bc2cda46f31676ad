package cdata_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apptest"
	"github.com/onboardkit/onboard/internal/emulate"
	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
)

const oem = "oem-0001"

type cenv struct {
	t   *testing.T
	emu *cdatatest.Server
	api string
	p   *cdata.Provider
	app *apptest.App
}

func newCEnv(t *testing.T, opt cdatatest.Options, mod ...func(*cdata.Config)) *cenv {
	t.Helper()
	opt.AccountID, opt.PublicKey = oem, &apptest.RSAKey().PublicKey
	e := &cenv{t: t, emu: cdatatest.New(opt)}
	e.api = apptest.Serve(t, e.emu) + "/api"
	cfg := cdata.Config{BaseURL: e.api, AccountID: oem, PrivateKey: apptest.RSAKey(),
		HTTPClient: &http.Client{Timeout: 2 * time.Second}}
	for _, m := range mod {
		m(&cfg)
	}
	var err error
	e.p, err = cdata.New(cfg)
	require.NoError(t, err)
	e.app = apptest.New(t, apptest.Options{Providers: []onboard.Provider{e.p}})
	return e
}

// run starts a flow as the browser, fills the hosted page and returns the
// URL CData sends the browser back to.
func (e *cenv) run(b *apptest.Browser, query, name, credential string) string {
	e.t.Helper()
	hosted := b.Start(e.app, "cdata", query)
	back, err := cdatatest.Fill(context.Background(), b.Client, hosted, name, credential)
	require.NoError(e.t, err)
	require.True(e.t, strings.HasPrefix(back, e.app.URL()+"/connect/cdata/return/"), back)
	return back
}

func TestRoundTrips(t *testing.T) {
	tests := []struct {
		name       string
		drop       bool
		credential string
		status     onboard.State
		cdata      string
		stored     int
	}{
		{"success", false, "s3cret", onboard.Connected, "success", 1},
		{"success, query dropped", true, "s3cret", onboard.Connected, "success", 1},
		{"test failed", false, "fail", onboard.Failed, "error", 1},
		{"returned without saving", false, "", onboard.Abandoned, "none", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCEnv(t, cdatatest.Options{DropRedirectQuery: tt.drop})
			b := e.app.Browser("alice", "acme")
			back := e.run(b, "source=Salesforce&name=CRM", "", tt.credential)
			assert.Contains(t, back, "cdata_connection_status="+tt.cdata)
			res := b.Get(back)
			require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
			assert.Contains(t, res.Location, "onboard_status="+string(tt.status))

			cs := e.app.Connections("acme")
			require.Len(t, cs, tt.stored)
			sub, ok := e.emu.Account("acme")
			require.True(t, ok, "a sub-account was created for the tenant")
			if tt.stored == 1 {
				held := e.emu.Connections(sub)
				require.Len(t, held, 1)
				assert.Equal(t, held[0].ID, cs[0].ID)
				assert.Equal(t, "CRM", cs[0].Name)
				assert.Equal(t, "Salesforce", cs[0].Source)
				assert.Equal(t, tt.status, cs[0].State)
				if tt.status == onboard.Failed {
					assert.Contains(t, cs[0].Message, "NotAuthenticated")
				}
			}
		})
	}
}

func TestForgedReturns(t *testing.T) {
	e := newCEnv(t, cdatatest.Options{})
	// Another tenant's connection, made through its own flow.
	eve := e.app.Browser("eve", "globex")
	require.Equal(t, http.StatusSeeOther, eve.Get(e.run(eve, "source=Salesforce", "", "pw")).Code)
	evesConn := e.app.Connections("globex")[0].ID

	alice := e.app.Browser("alice", "acme")
	back := e.run(alice, "source=Salesforce", "", "pw")
	aliceSub, _ := e.emu.Account("acme")
	// A connection in alice's own sub-account that this flow did not make.
	require.NoError(t, e.emu.AddConnection(aliceSub, cdatatest.Connection{ID: "other-flow-conn", Name: "X",
		DataSource: "Salesforce", ExternalID: "someone-else", Status: cdatatest.Authenticated}))

	with := func(id string) string {
		u, _ := url.Parse(back)
		q := u.Query()
		q.Set("cdata_connection_id", id)
		u.RawQuery = q.Encode()
		return u.String()
	}
	for name, target := range map[string]string{
		"another sub-account's connection":   with(evesConn),
		"a connection not made by this flow": with("other-flow-conn"),
		"an id CData never issued":           with("00000000-0000-0000-0000-000000000000"),
	} {
		t.Run(name, func(t *testing.T) {
			res := alice.Get(target)
			require.Equal(t, http.StatusForbidden, res.Code, res.Body)
			require.Empty(t, e.app.Connections("acme"))
		})
	}
	t.Run("the genuine return still completes", func(t *testing.T) {
		require.Equal(t, http.StatusSeeOther, alice.Get(back).Code)
		require.Len(t, e.app.Connections("acme"), 1)
	})
	t.Run("status success claimed for a failed test", func(t *testing.T) {
		back := e.run(alice, "source=Salesforce", "", "fail")
		res := alice.Get(strings.Replace(back, "cdata_connection_status=error", "cdata_connection_status=success", 1))
		require.Equal(t, http.StatusSeeOther, res.Code)
		require.Contains(t, res.Location, "onboard_status=failed", "CData's record wins over the query")
	})
}

func TestReconnectUsesEdit(t *testing.T) {
	e := newCEnv(t, cdatatest.Options{})
	b := e.app.Browser("alice", "acme")
	require.Equal(t, http.StatusSeeOther, b.Get(e.run(b, "source=Salesforce", "", "fail")).Code)
	c := e.app.Connections("acme")[0]
	require.Equal(t, onboard.Failed, c.State)

	back := e.run(b, "connection="+c.ID, "", "good-now")
	res := b.Get(back)
	require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
	cs := e.app.Connections("acme")
	require.Len(t, cs, 1)
	require.Equal(t, c.ID, cs[0].ID)
	require.Equal(t, onboard.Connected, cs[0].State)
	reqs := e.emu.API.Requests()
	require.True(t, slices.ContainsFunc(reqs, func(r emulate.Request) bool {
		return r.Method == "POST" && r.Path == "/api/poweredby/connection/edit/"+c.ID
	}), "a reconnect calls connection/edit")
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func TestJWTAndCreateBody(t *testing.T) {
	e := newCEnv(t, cdatatest.Options{})
	b := e.app.Browser("alice", "acme")
	hosted := b.Start(e.app, "cdata", "source=Salesforce&name=CRM")
	u, _ := url.Parse(hosted)
	assert.Equal(t, "/oem/user/connections/edit", u.Path)
	assert.Equal(t, "Salesforce", u.Query().Get("driver"))

	var create emulate.Request
	for _, r := range e.emu.API.Requests() {
		if r.Path == "/api/poweredby/connection/create" {
			create = r
		}
	}
	require.Equal(t, "POST", create.Method)
	require.Equal(t, "application/json", create.Header.Get("Content-Type"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(create.Body, &body))
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range body {
			if !yield(k) {
				return
			}
		}
	})
	require.Equal(t, []string{"dataSource", "externalId", "name", "redirectURL"}, keys)
	assert.Equal(t, "Salesforce", body["dataSource"])
	assert.Equal(t, "CRM", body["name"])
	ret := body["redirectURL"].(string)
	require.True(t, strings.HasPrefix(ret, e.app.URL()+"/connect/cdata/return/"), ret)
	flowID := apptest.FlowID(t, ret)
	assert.Len(t, flowID, 43, "the flow id travels in the path")
	assert.Equal(t, cdata.ExternalID(flowID), body["externalId"])
	assert.NotContains(t, body["externalId"], flowID, "the flow id itself never leaves the app")

	tok, ok := strings.CutPrefix(create.Header.Get("Authorization"), "Bearer ")
	require.True(t, ok)
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	require.Equal(t, map[string]any{"alg": "RS256", "typ": "JWT"}, decodeSegment(t, parts[0]))
	claims := decodeSegment(t, parts[1])
	sub, _ := e.emu.Account("acme")
	iat, exp := claims["iat"].(float64), claims["exp"].(float64)
	assert.InDelta(t, float64(time.Now().Unix()), iat, 5)
	assert.Equal(t, 300.0, exp-iat, "five minute lifetime")
	delete(claims, "iat")
	delete(claims, "exp")
	require.Equal(t, map[string]any{"tokenType": "powered-by", "iss": oem, "sub": sub}, claims)
}

func TestWithoutDataSourceNameIsNotSent(t *testing.T) {
	e := newCEnv(t, cdatatest.Options{})
	b := e.app.Browser("alice", "acme")
	b.Start(e.app, "cdata", "name=CRM")
	reqs := e.emu.API.Requests()
	var body map[string]any
	require.NoError(t, json.Unmarshal(reqs[len(reqs)-1].Body, &body))
	require.NotContains(t, body, "name")
	require.NotContains(t, body, "dataSource")
}

func TestHostedLinkExpires(t *testing.T) {
	e := newCEnv(t, cdatatest.Options{})
	b := e.app.Browser("alice", "acme")
	hosted := b.Start(e.app, "cdata", "source=Salesforce")
	e.emu.Expire()
	res := b.Get(hosted)
	require.Equal(t, http.StatusUnauthorized, res.Code)
	require.Contains(t, res.Body, "expired")
}

func TestSubAccountFoundOrCreatedOnce(t *testing.T) {
	e := newCEnv(t, cdatatest.Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	subs := make([]string, 8)
	for i := range subs {
		wg.Add(1)
		go func() { defer wg.Done(); subs[i], _ = e.p.SubAccount(ctx, "acme") }()
	}
	wg.Wait()
	for _, s := range subs {
		require.Equal(t, subs[0], s)
	}
	count := func(path string) (n int) {
		for _, r := range e.emu.API.Requests() {
			if r.Path == path {
				n++
			}
		}
		return n
	}
	require.Equal(t, 1, count("/api/poweredby/account/create"), "concurrent starts create one sub-account")

	// Another instance (a new provider) finds the existing sub-account.
	p2, err := cdata.New(cdata.Config{BaseURL: e.api, AccountID: oem, PrivateKey: apptest.RSAKey()})
	require.NoError(t, err)
	sub, err := p2.SubAccount(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, subs[0], sub)
	require.Equal(t, 1, count("/api/poweredby/account/list"))
	_, err = p2.SubAccount(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, 1, count("/api/poweredby/account/list"), "remembered")
}

func TestSourcesCached(t *testing.T) {
	e := newCEnv(t, cdatatest.Options{Sources: []string{"Salesforce", "Snowflake"}})
	for range 3 {
		got, err := e.p.Sources(context.Background(), "acme")
		require.NoError(t, err)
		require.Equal(t, []string{"Salesforce", "Snowflake"}, got)
	}
	n := 0
	for _, r := range e.emu.API.Requests() {
		if r.Path == "/api/poweredby/sources/list" {
			n++
		}
	}
	require.Equal(t, 1, n)
}

func TestDelete(t *testing.T) {
	e := newCEnv(t, cdatatest.Options{})
	b := e.app.Browser("alice", "acme")
	require.Equal(t, http.StatusSeeOther, b.Get(e.run(b, "source=Salesforce", "", "pw")).Code)
	c := e.app.Connections("acme")[0]
	ctx := context.Background()
	require.NoError(t, e.app.Onboarder.DeleteConnection(ctx, c.Owner, "cdata", c.ID))
	sub, _ := e.emu.Account("acme")
	require.Empty(t, e.emu.Connections(sub))
	require.Empty(t, e.app.Connections("acme"))
	require.NoError(t, e.p.Delete(ctx, c.Owner, c.ID), "deleting twice is fine")
}

func TestAPIErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("401 with a key CData does not know", func(t *testing.T) {
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		e := newCEnv(t, cdatatest.Options{}, func(c *cdata.Config) { c.PrivateKey = other })
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
	t.Run("GET retried after 503 and 429", func(t *testing.T) {
		e := newCEnv(t, cdatatest.Options{})
		_, err := e.p.SubAccount(ctx, "acme")
		require.NoError(t, err)
		e.emu.API.Fail(emulate.Fault{Status: 503}, emulate.Fault{Status: 429, RetryAfter: time.Second})
		start := time.Now()
		_, err = e.p.Sources(ctx, "acme")
		require.NoError(t, err)
		require.GreaterOrEqual(t, time.Since(start), time.Second, "Retry-After was honoured")
	})
	t.Run("POST never repeated", func(t *testing.T) {
		e := newCEnv(t, cdatatest.Options{})
		_, err := e.p.SubAccount(ctx, "acme")
		require.NoError(t, err)
		for _, f := range []emulate.Fault{{Status: 503}, {Status: 429, RetryAfter: time.Second}, {Drop: true}} {
			before := len(e.emu.API.Requests())
			e.emu.API.Fail(f)
			b := e.app.Browser("alice", "acme")
			res := b.Get(e.app.URL() + "/connect/cdata/start?source=Salesforce")
			require.Equal(t, http.StatusBadGateway, res.Code)
			require.Equal(t, before+1, len(e.emu.API.Requests()), "fault %+v: one create call", f)
		}
	})
	t.Run("timeout is bounded", func(t *testing.T) {
		e := newCEnv(t, cdatatest.Options{}, func(c *cdata.Config) {
			c.HTTPClient = &http.Client{Timeout: 200 * time.Millisecond}
			c.Retries = -1
		})
		e.emu.API.SetDelay(5 * time.Second)
		start := time.Now()
		_, err := e.p.SubAccount(ctx, "acme")
		require.ErrorIs(t, err, onboard.ErrProvider)
		require.Less(t, time.Since(start), 2*time.Second)
		e.emu.API.SetDelay(0)
	})
	t.Run("malformed answer", func(t *testing.T) {
		e := newCEnv(t, cdatatest.Options{})
		e.emu.API.Fail(emulate.Fault{Body: "{not json"})
		_, err := e.p.SubAccount(ctx, "acme")
		require.ErrorIs(t, err, onboard.ErrProvider)
	})
}

func TestProviderDownAtReturnLeavesFlowRetryable(t *testing.T) {
	e := newCEnv(t, cdatatest.Options{}, func(c *cdata.Config) { c.Retries = -1 })
	b := e.app.Browser("alice", "acme")
	back := e.run(b, "source=Salesforce", "", "pw")
	e.emu.API.Fail(emulate.Fault{Status: 500})
	require.Equal(t, http.StatusBadGateway, b.Get(back).Code)
	require.Empty(t, e.app.Connections("acme"))
	require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
	require.Len(t, e.app.Connections("acme"), 1)
}

func TestKeys(t *testing.T) {
	k := apptest.RSAKey()
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
	p, err := cdata.New(cdata.Config{AccountID: oem, PrivateKey: apptest.RSAKey(),
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
		{"cdata_connection_status=success", cdata.Return{}, false},
		{"cdata_connection_status=weird&cdata_connection_id=x", cdata.Return{}, false},
		{"", cdata.Return{}, false},
		{"cdata_connection_id=a&cdata_connection_id=b&cdata_connection_status=success", cdata.Return{}, false},
	}
	for _, tt := range tests {
		v, _ := url.ParseQuery(tt.q)
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
		if r.Status != "none" && r.ID == "" {
			t.Fatalf("accepted %q without an id", q)
		}
		if r.Status != "success" && r.Status != "error" && r.Status != "none" {
			t.Fatalf("accepted status %q", r.Status)
		}
	})
}
