package onboard_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/onboardkit/onboard"
)

// request builds a request to the test app carrying a browser's cookies.
func request(method string, u *url.URL, path, rawQuery string, cookies []*http.Cookie) *http.Request {
	req := &http.Request{
		Method: method, URL: &url.URL{Path: path, RawQuery: rawQuery}, Header: http.Header{},
		Host: u.Host, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return req
}

// FuzzReturn sends arbitrary flow ids and query strings to the return
// handler, in the browser that has a real pending flow. An empty id
// stands for that flow. No input may panic or fail with a 5xx, no
// internal error text may reach the page, and at most one connection is
// stored.
func FuzzReturn(f *testing.F) {
	e := newEnv(f)
	b := e.browser("alice", "acme")
	id := b.start("source=Salesforce")
	back := b.finish(id, onboard.Connected)
	u, _ := url.Parse(back)
	cookies := b.Client.Jar.Cookies(u)

	f.Add("", u.RawQuery)
	f.Add("", "conn=x&status=connected")
	f.Add("", "conn=%ff&status=%zz")
	f.Add("", strings.Repeat("a=b&", 3000))
	f.Add(strings.Repeat("A", 43), "conn=x")
	f.Add("..%2f..%2f", "")
	f.Add("\x00", ";;;=&&&")
	f.Fuzz(func(t *testing.T, flow, rawQuery string) {
		if flow == "" {
			flow = id
		}
		req := request(http.MethodGet, u, "/connect/fake/return/"+flow, rawQuery, cookies).WithContext(t.Context())
		rec := httptest.NewRecorder()
		e.Server.Config.Handler.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusSeeOther, http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound,
			http.StatusConflict, http.StatusGone, http.StatusMovedPermanently, http.StatusTemporaryRedirect:
		default:
			t.Fatalf("return %q?%q answered %d:\n%s", flow, rawQuery, rec.Code, rec.Body.String())
		}
		if strings.Contains(rec.Body.String(), "onboard:") {
			t.Fatalf("internal error text in the page: %s", rec.Body.String())
		}
		cs, err := e.store.Connections(t.Context(), onboard.ConnectionQuery{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) > 1 {
			t.Fatalf("%d connections stored for one flow", len(cs))
		}
	})
}

// FuzzOutcome sends arbitrary onboard_flow values to Outcome (through the
// test app's /outcome page), in the browser whose flow completed. Only
// that flow's result token (or its id) may read as its result; nothing
// may panic or fail with a 5xx.
func FuzzOutcome(f *testing.F) {
	e := newEnv(f)
	b := e.browser("alice", "acme")
	id := b.start("source=Salesforce")
	res := b.get(b.finish(id, onboard.Connected))
	loc, _ := url.Parse(res.Location)
	token := loc.Query().Get("onboard_flow")
	u, _ := url.Parse(e.URL())
	cookies := b.Client.Jar.Cookies(u)

	f.Add(token)
	f.Add(id)
	flipped := []byte(token)
	flipped[len(flipped)/2] ^= 1 // another base64url character
	f.Add(string(flipped))
	f.Add(token[:10] + "\n" + token[10:]) // base64 decoders skip newlines
	f.Add(strings.Repeat("A", len(token)))
	f.Add("%ff%00")
	f.Add(strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, value string) {
		req := request(http.MethodGet, u, "/outcome", url.Values{"onboard_flow": {value}}.Encode(), cookies).WithContext(t.Context())
		rec := httptest.NewRecorder()
		e.Server.Config.Handler.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			if value != token && value != id {
				t.Fatalf("onboard_flow %q read as the flow's result", value)
			}
		case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound:
		default:
			t.Fatalf("onboard_flow %q answered %d:\n%s", value, rec.Code, rec.Body.String())
		}
	})
}

// FuzzStart sends arbitrary query strings to the start handler, as a GET
// from this site. No input may panic or fail with a 5xx; a start either
// redirects to the provider or is refused with a 4xx.
func FuzzStart(f *testing.F) {
	e := newEnv(f, func(c *onboard.Config) { c.MaxFlowsPerOwner, c.MaxFlowsPerTenant = 1000, 1000 })
	b := e.browser("alice", "acme")
	u, _ := url.Parse(e.URL())
	cookies := b.Client.Jar.Cookies(u)
	f.Add("source=Salesforce&name=Sales&return_to=%2Fs")
	f.Add("return_to=%2F%2Fevil.example")
	f.Add("connection=conn-x")
	f.Add("source=%ff")
	f.Add(strings.Repeat("source=x&", 1000))
	f.Fuzz(func(t *testing.T, rawQuery string) {
		req := request(http.MethodGet, u, "/connect/fake/start", rawQuery, cookies).WithContext(t.Context())
		req.Header.Set("Sec-Fetch-Site", "same-origin") // a link on this site
		rec := httptest.NewRecorder()
		e.Server.Config.Handler.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusFound:
			if !strings.HasPrefix(rec.Header().Get("Location"), e.fake.URL+"/hosted?") {
				t.Fatalf("start %q redirected to %q", rawQuery, rec.Header().Get("Location"))
			}
		case rec.Code >= 400 && rec.Code < 500:
		default:
			t.Fatalf("start %q answered %d:\n%s", rawQuery, rec.Code, rec.Body.String())
		}
	})
}
