package onboard_test

import (
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
)

// TestTwoTabsAtOnce: starts at the same moment in one browser all return
// fine (the binding is per browser, not a session value rewritten per
// start), including the browser's first starts, each of which finds no key
// in its copy of the session.
func TestTwoTabsAtOnce(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	for round := range 5 {
		const tabs = 2
		e.sessions.holdLoads(tabs) // both requests load the session before either saves it
		ids := make([]string, tabs)
		var wg sync.WaitGroup
		for i := range tabs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodGet, e.URL()+"/connect/fake/start?source=Salesforce", nil)
				req.Header.Set("Sec-Fetch-Site", "same-origin") // a link on the app's page
				res, err := b.Client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				u, _ := url.Parse(res.Header.Get("Location"))
				ids[i] = u.Query().Get("flow")
			}()
		}
		wg.Wait()
		for _, id := range ids {
			res := b.get(b.finish(id, onboard.Connected))
			require.Equal(t, http.StatusSeeOther, res.Code, "round %d: %s", round, res.Body)
		}
	}
	require.Len(t, e.Connections("acme"), 10)
}

// TestManyFlowsInOneBrowser: 50 flows started in one browser, returned in
// reverse order, all complete; the session is written once for all of
// them, and the app's own session data is untouched.
func TestManyFlowsInOneBrowser(t *testing.T) {
	e := newEnv(t) // the default cap per owner holds 50 flows
	b := e.browser("alice", "acme")
	signIn := e.sessions.count()
	var backs []string
	for range 50 {
		backs = append(backs, b.finish(b.start("source=Salesforce"), onboard.Connected))
	}
	// The first start gives the browser its key, saved by LoadAndSave at
	// the end of that request. No later start writes the session.
	require.Equal(t, signIn+1, e.sessions.count(), "session writes for 50 starts")
	for i := len(backs) - 1; i >= 0; i-- {
		res := b.get(backs[i])
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
	}
	require.Len(t, e.Connections("acme"), 50)
	require.Equal(t, signIn+1, e.sessions.count(), "returns write nothing")
	require.Equal(t, "alice|3 apples", b.get(e.URL()+"/whoami").Body)
}

// TestBrowserKeySurvivesSignIn: signing in again in the same browser (a
// new user of the same app session) keeps the browser's key, so a user's
// flow still returns once the user is signed in as its owner again.
func TestBrowserKeySurvivesSignIn(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	back := b.finish(b.start(""), onboard.Connected)
	b.Login(e.App, "bob", "acme")
	require.Equal(t, http.StatusForbidden, b.get(back).Code, "bob is not the owner")
	b.Login(e.App, "alice", "acme")
	require.Equal(t, http.StatusSeeOther, b.get(back).Code)
}
