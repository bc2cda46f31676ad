package onboard_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
)

// TestRefusalsShowNothingOfTheFlow: a browser or user that the flow is
// not bound to learns nothing of it from a refusal, in HTML or JSON: not
// its source, name or return_to, nor the connection a reconnect names.
func TestRefusalsShowNothingOfTheFlow(t *testing.T) {
	e := newEnv(t)
	alice := e.browser("alice", "acme")
	conn := alice.get(alice.finish(alice.start("source=Salesforce"), onboard.Connected))
	require.Equal(t, http.StatusSeeOther, conn.Code)
	c := e.Connections("acme")[0]
	secret := []string{"Salesforce", "Quarterly", "private-report", c.ID}
	id := alice.start("connection=" + url.QueryEscape(c.ID) + "&name=Quarterly&return_to=%2Fprivate-report")
	for _, tt := range []struct {
		name   string
		b      *browser
		target string
	}{
		{"another browser, status", e.browser("mallory", "evil"), "/connect/fake/status/" + id},
		{"another user, status", e.browser("bob", "acme"), "/connect/fake/status/" + id},
		{"not signed in, status", e.browser("", ""), "/connect/fake/status/" + id},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := tt.b.get(e.URL() + tt.target)
			require.GreaterOrEqual(t, res.Code, 400)
			for _, s := range secret {
				require.NotContains(t, res.Body, s)
			}
		})
	}
	// The same browser, signed in as another user, at the return: refused
	// (and quarantined), showing nothing of the flow.
	alice.Login(e.App, "bob", "acme")
	res := alice.get(e.URL() + "/connect/fake/return/" + id)
	require.Equal(t, http.StatusForbidden, res.Code)
	for _, s := range secret {
		require.NotContains(t, res.Body, s)
	}
	// Another browser at the return, in HTML.
	res = e.browser("mallory", "evil").get(e.URL() + "/connect/fake/return/" + id)
	require.GreaterOrEqual(t, res.Code, 400)
	for _, s := range secret {
		require.NotContains(t, res.Body, s)
	}
}

// status asks the status endpoint about a flow in browser b.
func (b *browser) status(id string) (map[string]any, int) {
	b.T.Helper()
	res, body := b.do("GET", b.e.URL()+"/connect/fake/status/"+id, "", nil)
	var v map[string]any
	require.NoError(b.T, json.Unmarshal([]byte(body), &v), body)
	return v, res.StatusCode
}

// TestPopupFlow: a start with display=popup sends the provider back to the
// popup return route, whose page posts the verified outcome to the window
// that opened it, on the app's own origin only, and closes.
func TestPopupFlow(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	res, body := b.do("POST", e.URL()+"/connect/fake/start", "source=Salesforce&display=popup",
		map[string]string{"Sec-Fetch-Site": "same-origin", "Accept": "application/json"})
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	var started struct{ Flow, URL string }
	require.NoError(t, json.Unmarshal([]byte(body), &started))

	st, code := b.status(started.Flow)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "pending", st["state"])

	back := b.finish(started.Flow, onboard.Connected)
	u, _ := url.Parse(back)
	require.Equal(t, "/connect/fake/popup/"+started.Flow, u.Path)
	page := b.get(back)
	require.Equal(t, http.StatusOK, page.Code, page.Body)
	origin, _ := json.Marshal(e.URL())
	require.Contains(t, page.Body, "window.opener.postMessage(m,o)")
	require.Contains(t, page.Body, ",o="+string(origin)+",", "the app's own origin is the target origin")
	require.Contains(t, page.Body, `"state":"connected"`)
	require.Contains(t, page.Body, `"flow":"`+started.Flow+`"`)
	require.Contains(t, page.Body, "window.close()")
	require.Len(t, e.Connections("acme"), 1)
	// The message's result token reads as the result, in this browser.
	m := regexp.MustCompile(`"result":"([A-Za-z0-9_-]+)"`).FindStringSubmatch(page.Body)
	require.Len(t, m, 2, page.Body)
	c, code := b.Outcome(e.App, "/?onboard_flow="+m[1])
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, onboard.Connected, c.State)

	st, _ = b.status(started.Flow)
	require.Equal(t, "connected", st["state"])
	require.Equal(t, connOf(t, back), st["connection"])

	// Only the browser that started it is answered, and it is not
	// quarantined for asking.
	other := e.browser("alice", "acme")
	st, code = other.status(started.Flow)
	require.Equal(t, http.StatusForbidden, code)
	require.NotContains(t, st, "state")
	st, _ = b.status(started.Flow)
	require.Equal(t, "connected", st["state"])
}

// TestPopupRefusal: a refused return in a popup shows the error and tells
// the opener, without closing; its restart link stays in popup mode.
func TestPopupRefusal(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	loc := b.Start(e.App, "fake", "source=Salesforce&display=popup")
	u, _ := url.Parse(loc)
	back := b.finish(u.Query().Get("flow"), onboard.Connected)
	e.clock.Add(onboard.DefaultFlowTTL + 1)
	page := b.get(back)
	require.Equal(t, http.StatusGone, page.Code)
	require.Contains(t, page.Body, `"state":"error"`)
	require.Contains(t, page.Body, `"status":410`)
	require.NotContains(t, page.Body, "window.close()")
	require.Contains(t, page.Body, "display=popup")
	require.True(t, strings.Contains(page.Body, "expired"))
}
