package cdatatest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/emulate"
)

func call(t *testing.T, srv, method, path, tok string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, srv+"/api/poweredby"+path, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

func TestEmulatorAPI(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	emu, srv := cdatatest.NewServer(cdatatest.Options{AccountID: "oem", PublicKey: &key.PublicKey})
	defer srv.Close()

	now := time.Now()
	claims := func(sub string) jwt.MapClaims {
		c := jwt.MapClaims{"tokenType": "powered-by", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "iss": "oem"}
		if sub != "" {
			c["sub"] = sub
		}
		return c
	}
	sign := func(c jwt.MapClaims, k *rsa.PrivateKey) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(k)
		require.NoError(t, err)
		return s
	}
	code, out := call(t, srv.URL, "POST", "/account/create", sign(claims(""), key), map[string]string{"externalId": "acme"})
	require.Equal(t, 200, code)
	sub := out["accountId"].(string)
	code, _ = call(t, srv.URL, "POST", "/account/create", sign(claims(""), key), map[string]string{"externalId": "acme"})
	require.Equal(t, http.StatusConflict, code, "duplicate externalId")

	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(sub)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs256, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(sub)).SignedString(pubPEM)
	with := func(mod func(jwt.MapClaims)) string { c := claims(sub); mod(c); return sign(c, key) }

	refused := map[string]string{
		"no token":                            "",
		"alg none":                            none,
		"HS256 with the public key as secret": hs256,
		"another key":                         sign(claims(sub), other),
		"wrong iss":                           with(func(c jwt.MapClaims) { c["iss"] = "someone" }),
		"expired":                             with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }),
		"no exp":                              with(func(c jwt.MapClaims) { delete(c, "exp") }),
		"no iat":                              with(func(c jwt.MapClaims) { delete(c, "iat") }),
		"wrong tokenType":                     with(func(c jwt.MapClaims) { c["tokenType"] = "user" }),
		"no sub":                              sign(claims(""), key),
		"unknown sub":                         with(func(c jwt.MapClaims) { c["sub"] = "nope" }),
	}
	for name, tok := range refused {
		t.Run(name, func(t *testing.T) {
			code, out := call(t, srv.URL, "GET", "/connection/list", tok, nil)
			require.Equal(t, http.StatusUnauthorized, code)
			require.NotEmpty(t, out["error"].(map[string]any)["message"])
		})
	}

	tok := sign(claims(sub), key)
	code, _ = call(t, srv.URL, "POST", "/connection/create", tok, map[string]string{"dataSource": "Salesforce"})
	require.Equal(t, http.StatusBadRequest, code, "redirectURL is required")
	code, _ = call(t, srv.URL, "POST", "/connection/create", tok, map[string]string{"redirectURL": "https://a.example/r", "dataSource": "Nope"})
	require.Equal(t, http.StatusBadRequest, code, "unknown data source")

	require.NoError(t, emu.AddConnection(sub, cdatatest.Connection{ID: "c1", Name: "S1", DataSource: "Salesforce", ExternalID: "Ext-1", Status: cdatatest.Authenticated}))
	require.NoError(t, emu.AddConnection(sub, cdatatest.Connection{ID: "c2", Name: "F1", DataSource: "Snowflake", ExternalID: "ext-2", Status: cdatatest.NotAuthenticated}))
	code, _ = call(t, srv.URL, "POST", "/connection/create", tok, map[string]string{"redirectURL": "https://a.example/r", "externalId": "Ext-1"})
	require.Equal(t, http.StatusConflict, code, "externalId is unique in the sub-account")

	list := func(q string) []string {
		code, out := call(t, srv.URL, "GET", "/connection/list"+q, tok, nil)
		require.Equal(t, 200, code)
		var ids []string
		for _, c := range out["connections"].([]any) {
			ids = append(ids, c.(map[string]any)["id"].(string))
		}
		return ids
	}
	require.Equal(t, []string{"c1", "c2"}, list(""))
	require.Equal(t, []string{"c1"}, list("?driver=salesforce"), "driver is case-insensitive")
	require.Equal(t, []string{"c1"}, list("?externalId=Ext-1"))
	require.Empty(t, list("?externalId=ext-1"), "externalId is case-sensitive")

	code, _ = call(t, srv.URL, "DELETE", "/connection/delete/c2", tok, nil)
	require.Equal(t, 200, code)
	code, _ = call(t, srv.URL, "DELETE", "/connection/delete/c2", tok, nil)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = call(t, srv.URL, "POST", "/connection/edit/c2", tok, map[string]string{"redirectURL": "https://a.example/r"})
	require.Equal(t, http.StatusNotFound, code)
	code, out = call(t, srv.URL, "GET", "/account/acme", tok, nil)
	require.Equal(t, 200, code)
	require.Equal(t, sub, out["id"])
}

// signer signs partner tokens for the emulator's tests.
type signer struct {
	t   *testing.T
	key *rsa.PrivateKey
}

func (s signer) token(sub string) string {
	now := time.Now()
	c := jwt.MapClaims{"tokenType": "powered-by", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "iss": "oem"}
	if sub != "" {
		c["sub"] = sub
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(s.key)
	require.NoError(s.t, err)
	return tok
}

func newEmulator(t *testing.T, opt cdatatest.Options) (*cdatatest.Server, string, signer) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	opt.AccountID, opt.PublicKey = "oem", &key.PublicKey
	emu, srv := cdatatest.NewServer(opt)
	t.Cleanup(srv.Close)
	return emu, srv.URL, signer{t, key}
}

func TestEmulatorAccountLookup(t *testing.T) {
	emu, srv, s := newEmulator(t, cdatatest.Options{})
	code, out := call(t, srv, "POST", "/account/create", s.token(""), map[string]string{"externalId": "ext-a", "accountName": "A"})
	require.Equal(t, 200, code)
	a := out["accountId"].(string)
	b, err := emu.AddAccount(cdatatest.Account{ID: "ext-a", ExternalID: "ext-b"})
	require.NoError(t, err)
	_, err = emu.AddAccount(cdatatest.Account{ID: b})
	require.Error(t, err, "ids are unique")

	for _, tt := range []struct{ path, id string }{
		{a, a}, {"ext-b", b},
		{"ext-a", b}, // an id wins over another account's externalId
	} {
		code, out := call(t, srv, "GET", "/account/"+tt.path, s.token(""), nil)
		require.Equal(t, 200, code, tt.path)
		require.Equal(t, tt.id, out["id"], tt.path)
	}
	code, _ = call(t, srv, "GET", "/account/nope", s.token(""), nil)
	require.Equal(t, http.StatusNotFound, code)
	accts := emu.Accounts()
	require.Len(t, accts, 2)
	require.Equal(t, cdatatest.Account{ID: a, ExternalID: "ext-a", AccountName: "A", Created: accts[0].Created}, accts[0])
}

func TestEmulatorSourcesWithoutSub(t *testing.T) {
	for _, without := range []bool{false, true} {
		emu, srv, s := newEmulator(t, cdatatest.Options{SourcesWithoutSub: without})
		code, _ := call(t, srv, "GET", "/sources/list", s.token(""), nil)
		if without {
			require.Equal(t, 200, code)
		} else {
			require.Equal(t, http.StatusUnauthorized, code, "sub is required by default")
		}
		sub, err := emu.AddAccount(cdatatest.Account{ExternalID: "x"})
		require.NoError(t, err)
		code, out := call(t, srv, "GET", "/sources/list", s.token(sub), nil)
		require.Equal(t, 200, code)
		require.NotEmpty(t, out["dataSources"])
	}
}

func TestEmulatorKnobs(t *testing.T) {
	emu, srv, s := newEmulator(t, cdatatest.Options{})
	sub, err := emu.AddAccount(cdatatest.Account{ExternalID: "t"})
	require.NoError(t, err)
	require.NoError(t, emu.AddConnection(sub, cdatatest.Connection{ID: "c1", DataSource: "Salesforce", ExternalID: "e1", Status: cdatatest.Authenticated}))
	require.NoError(t, emu.AddConnection(sub, cdatatest.Connection{ID: "c2", DataSource: "Salesforce", Status: cdatatest.Authenticated}))
	status := func() map[string]string {
		code, out := call(t, srv, "GET", "/connection/list", s.token(sub), nil)
		require.Equal(t, 200, code)
		m := map[string]string{}
		for _, c := range out["connections"].([]any) {
			m[c.(map[string]any)["id"].(string)] = c.(map[string]any)["status"].(string)
		}
		return m
	}
	require.NoError(t, emu.SetStatus("c1", cdatatest.NotAuthenticated))
	require.Equal(t, map[string]string{"c1": "NotAuthenticated", "c2": "Authenticated"}, status())
	require.NoError(t, emu.Remove("c2"))
	require.Equal(t, map[string]string{"c1": "NotAuthenticated"}, status())
	require.Error(t, emu.Remove("c2"))
	require.Error(t, emu.SetStatus("c2", cdatatest.Authenticated))
	all := emu.AllConnections()
	require.Len(t, all, 1)
	require.Equal(t, sub, all[0].SubAccount)
	require.Equal(t, "e1", all[0].ExternalID)

	emu.API.Fail(emulate.Fault{Status: http.StatusTooManyRequests, RetryAfter: 3 * time.Second})
	req, _ := http.NewRequest("GET", srv+"/api/poweredby/connection/list", nil)
	req.Header.Set("Authorization", "Bearer "+s.token(sub))
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	require.Equal(t, "3", res.Header.Get("Retry-After"))
}

// TestEmulatorPageStatePerBrowser: what Save & Test saved is returned
// only to the browser that saved it.
func TestEmulatorPageStatePerBrowser(t *testing.T) {
	emu, srv, s := newEmulator(t, cdatatest.Options{})
	sub, err := emu.AddAccount(cdatatest.Account{ExternalID: "t"})
	require.NoError(t, err)
	code, out := call(t, srv, "POST", "/connection/create", s.token(sub),
		map[string]string{"redirectURL": "https://app.example/back/1?keep=1", "dataSource": "Salesforce", "externalId": "flow-1"})
	require.Equal(t, 200, code)
	hosted := out["redirectURL"].(string)
	require.Empty(t, emu.Connections(sub), "a create makes no connection")

	ctx := context.Background()
	newClient := func() *http.Client { jar, _ := cookiejar.New(nil); return &http.Client{Jar: jar} }
	first := newClient()
	back, err := cdatatest.Fill(ctx, first, hosted, "CRM", "pw")
	require.NoError(t, err)
	u, _ := url.Parse(back)
	held := emu.Connections(sub)
	require.Len(t, held, 1)
	require.Equal(t, url.Values{"keep": {"1"}, "cdata_connection_id": {held[0].ID}, "cdata_connection_name": {"CRM"},
		"cdata_connection_status": {"success"}}, u.Query())
	require.Equal(t, "flow-1", held[0].ExternalID)

	back, err = cdatatest.Fill(ctx, newClient(), hosted, "", "")
	require.NoError(t, err)
	require.Contains(t, back, "cdata_connection_status=none", "another browser is not told")
	_, err = cdatatest.Fill(ctx, &http.Client{}, hosted, "", "pw")
	require.ErrorContains(t, err, "400", "the externalId is taken")
	require.Len(t, emu.Connections(sub), 1)

	again, err := cdatatest.Fill(ctx, first, hosted, "", "")
	require.NoError(t, err)
	require.Contains(t, again, "cdata_connection_id="+held[0].ID, "the saving browser is")
}
