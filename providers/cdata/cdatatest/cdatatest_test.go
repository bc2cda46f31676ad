package cdatatest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
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
