package onboard_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
)

// TestPopupReturnThatFails: a popup's return that fails (its provider
// down, or the session store) tells the window that opened it, and offers
// to try that return again (as the same-window return does), not a fresh
// start that makes the user fill in the provider's page once more.
func TestPopupReturnThatFails(t *testing.T) {
	for _, tt := range []struct {
		name string
		fail func(e *env)
		code int
	}{
		{"provider", func(e *env) { e.fake.FailComplete(fmt.Errorf("%w: 503", onboard.ErrProvider)) }, http.StatusBadGateway},
		{"sessions", func(e *env) { e.sessions.setFail(true) }, http.StatusServiceUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			b := e.browser("alice", "acme")
			loc := b.Start(e.App, "fake", "source=Salesforce&display=popup")
			u, _ := url.Parse(loc)
			back := b.finish(u.Query().Get("flow"), onboard.Connected)
			tt.fail(e)
			page := b.get(back)
			e.sessions.setFail(false)
			require.Equal(t, tt.code, page.Code)
			bu, _ := url.Parse(back)
			require.Contains(t, page.Body, "postMessage", "the opener is never told: %s", page.Body)
			require.Contains(t, page.Body, `href="`+bu.Path, "no way to try the return again: %s", page.Body)
		})
	}
}

// TestStatusJSONWhenSessionsFail: the status endpoint, polled by a
// page's script, answers JSON even when the session store fails.
func TestStatusJSONWhenSessionsFail(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	id := b.start("source=Salesforce")
	e.sessions.setFail(true)
	res, body := b.do("GET", e.URL()+"/connect/fake/status/"+id, "", nil)
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	require.Equal(t, "application/json", res.Header.Get("Content-Type"), body)
}

// TestErrorPageUsingTheSession: an app's own Config.Error page that
// shows who is signed in (as an app's layout does) still renders, with
// 503, when the session store is down.
func TestErrorPageUsingTheSession(t *testing.T) {
	for _, tt := range []struct {
		name   string
		before string // what the page writes before it reads the session
		whole  bool   // the answer is a whole page
	}{
		{"status only", "", true},
		{"part of its body", "<html><body>", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var sm *scs.SessionManager
			a := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{fake.New("fake")},
				SessionStore: &downSessions{MemStore: scsmem.NewWithCleanupInterval(0)},
				Config: func(c *onboard.Config) {
					c.Error = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						err := onboard.ErrorFromContext(r.Context())
						w.WriteHeader(onboard.StatusCode(err))
						io.WriteString(w, tt.before)
						fmt.Fprintf(w, "<p>Signed in as %s</p><p>%s</p>", sm.GetString(r.Context(), "user"), onboard.Message(err))
					})
				}})
			sm = a.Sessions
			b := onboardtest.NewBrowser(t)
			b.Client.Jar.SetCookies(mustURL(t, a.URL()), []*http.Cookie{{Name: sm.Cookie.Name, Value: "sometoken"}})
			res, err := b.Client.Get(a.URL() + "/connect/fake/start?source=Salesforce")
			if !tt.whole {
				// Part of the app's page went out: the answer ends broken,
				// never passed off as whole.
				if err == nil {
					_, err = io.ReadAll(res.Body)
					res.Body.Close()
				}
				require.Error(t, err)
				return
			}
			require.NoError(t, err, "no answer at all: the error page panicked")
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
			require.Contains(t, string(body), "session could not be loaded")
		})
	}
}

type downSessions struct{ *scsmem.MemStore }

func (downSessions) Find(string) ([]byte, bool, error) {
	return nil, false, errors.New("redis: connection refused")
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}
