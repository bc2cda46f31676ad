package onboard_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/onboardkit/onboard"
)

// FuzzReturn sends arbitrary flow ids and query strings to the return
// handler, in a browser session that has a real pending flow. An empty
// id stands for that flow. No input may panic or fail with a 5xx, and no
// internal error text may reach the page.
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
		req := &http.Request{
			Method:     http.MethodGet,
			URL:        &url.URL{Path: "/connect/fake/return/" + flow, RawQuery: rawQuery},
			Header:     http.Header{},
			Host:       u.Host,
			Proto:      "HTTP/1.1",
			ProtoMajor: 1, ProtoMinor: 1,
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		req = req.WithContext(t.Context())
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
		cs, err := e.store.Connections(t.Context(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(cs); n > 1 {
			t.Fatalf("%d connections stored for one flow", n)
		}
	})
}
