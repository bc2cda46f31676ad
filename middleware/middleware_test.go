package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
)

func loaded(t *testing.T, sm *scs.SessionManager) context.Context {
	ctx, err := sm.Load(context.Background(), "")
	require.NoError(t, err)
	return ctx
}

func TestNewSCSRefusesStrictCookies(t *testing.T) {
	sm := scs.New()
	sm.Cookie.SameSite = http.SameSiteStrictMode
	_, err := middleware.NewSCS(sm)
	require.ErrorContains(t, err, "SameSite=Strict")
	_, err = middleware.NewSCS(nil)
	require.Error(t, err)
}

func TestNewSCSCookieSettings(t *testing.T) {
	none := scs.New()
	none.Cookie.SameSite = http.SameSiteNoneMode
	_, err := middleware.NewSCS(none)
	require.ErrorIs(t, err, onboard.ErrConfig, "None without Secure")
	none.Cookie.Secure = true
	_, err = middleware.NewSCS(none)
	require.NoError(t, err, "None with Secure works, with what it gives up documented")
	_, err = middleware.NewSCS(scs.New())
	require.NoError(t, err, "Lax, the scs default")
}

func TestBrowserKey(t *testing.T) {
	sm := scs.New()
	s, err := middleware.NewSCS(sm)
	require.NoError(t, err)
	ctx := loaded(t, sm)
	sm.Put(ctx, "user", "alice")

	key, err := s.BrowserKey(ctx, false)
	require.NoError(t, err)
	require.Empty(t, key, "no key is made without create")

	key, err = s.BrowserKey(ctx, true)
	require.NoError(t, err)
	require.Len(t, key, 43, "32 random bytes, base64url")
	again, err := s.BrowserKey(ctx, true)
	require.NoError(t, err)
	require.Equal(t, key, again, "one key per browser")
	read, err := s.BrowserKey(ctx, false)
	require.NoError(t, err)
	require.Equal(t, key, read)
	require.Equal(t, "alice", sm.GetString(ctx, "user"), "the app's data is untouched")
	require.Len(t, sm.Keys(ctx), 2, "one key of its own")

	other, err := s.BrowserKey(loaded(t, sm), true)
	require.NoError(t, err)
	require.NotEqual(t, key, other)
}

// failingStore is an scs store that cannot save.
type failingStore struct{}

func (failingStore) Find(string) ([]byte, bool, error)      { return nil, false, nil }
func (failingStore) Commit(string, []byte, time.Time) error { return errors.New("database down") }
func (failingStore) Delete(string) error                    { return nil }

// countingStore is an scs memory store that counts its commits.
type countingStore struct {
	scs.Store
	commits int
}

func (c *countingStore) Commit(token string, b []byte, expiry time.Time) error {
	c.commits++
	return c.Store.Commit(token, b, expiry)
}

// countedSessions returns a session manager whose store counts its
// commits, and the SCS over it.
func countedSessions(t *testing.T) (*scs.SessionManager, *countingStore, *middleware.SCS) {
	sm := scs.New()
	store := &countingStore{Store: sm.Store}
	sm.Store = store
	s, err := middleware.NewSCS(sm)
	require.NoError(t, err)
	return sm, store, s
}

// loadAndSave wraps h in sm's LoadAndSave, failing the test on a session
// error.
func loadAndSave(t *testing.T, sm *scs.SessionManager, h http.Handler) http.Handler {
	return middleware.LoadAndSave(sm, func(w http.ResponseWriter, r *http.Request, err error) {
		t.Errorf("session error: %v", err)
	})(h)
}

// TestBrowserKeyIsSavedWithTheSession: the key is written to the session
// store once per browser, by LoadAndSave with the first start's answer, and
// later requests read it without writing.
func TestBrowserKeyIsSavedWithTheSession(t *testing.T) {
	sm, store, s := countedSessions(t)
	h := loadAndSave(t, sm, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := s.BrowserKey(r.Context(), true)
		require.NoError(t, err)
		require.Zero(t, store.commits, "BrowserKey itself writes nothing")
		fmt.Fprint(w, key)
	}))
	first := httptest.NewRecorder()
	h.ServeHTTP(first, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, 1, store.commits, "the first start saves the session once")
	cookies := first.Result().Cookies()
	require.Len(t, cookies, 1)
	store.commits = 0
	for range 3 {
		again := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(cookies[0])
		h.ServeHTTP(again, req)
		require.Equal(t, first.Body.String(), again.Body.String(), "one key per browser")
	}
	require.Zero(t, store.commits, "later starts write nothing")
}

// TestBrowserKeyMadeAtSignIn: an app that makes the key in its sign-in
// handler, whose session is saved anyway, keeps the write off the first
// start: the start finds the key and writes nothing.
func TestBrowserKeyMadeAtSignIn(t *testing.T) {
	sm, store, s := countedSessions(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, sm.RenewToken(r.Context()))
		sm.Put(r.Context(), "user", "alice")
		key, err := s.BrowserKey(r.Context(), true)
		require.NoError(t, err)
		fmt.Fprint(w, key)
	})
	mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		key, err := s.BrowserKey(r.Context(), true)
		require.NoError(t, err)
		fmt.Fprint(w, key)
	})
	h := loadAndSave(t, sm, mux)
	login := httptest.NewRecorder()
	h.ServeHTTP(login, httptest.NewRequest("GET", "/login", nil))
	require.Equal(t, 1, store.commits, "the sign-in saves the session, with the key")
	cookies := login.Result().Cookies()
	require.Len(t, cookies, 1)
	start := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/start", nil)
	req.AddCookie(cookies[0])
	h.ServeHTTP(start, req)
	require.Equal(t, login.Body.String(), start.Body.String(), "the start finds the key made at sign-in")
	require.Equal(t, 1, store.commits, "the first start writes nothing")
}

func TestNoSessionIsAnErrorNotAPanic(t *testing.T) {
	s, _ := middleware.NewSCS(scs.New())
	for _, create := range []bool{false, true} {
		_, err := s.BrowserKey(context.Background(), create)
		require.ErrorIs(t, err, onboard.ErrNoSession)
	}
}

// TestLoadAndSaveAnswersOnce: a session store that fails to load or to
// save is answered once, by onError, with nothing of the handler's own
// answer mixed in.
func TestLoadAndSaveAnswersOnce(t *testing.T) {
	onError := func(w http.ResponseWriter, r *http.Request, err error) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "app error page")
	}
	tests := []struct {
		name  string
		store scs.Store
		want  string
	}{
		{"save fails", failingStore{}, "app error page"},
		{"load fails", loadFails{}, "app error page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := scs.New()
			sm.Store = tt.store
			h := middleware.LoadAndSave(sm, onError)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sm.Put(r.Context(), "user", "alice")
				http.Redirect(w, r, "/next", http.StatusSeeOther)
			}))
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/", nil)
			req.AddCookie(&http.Cookie{Name: sm.Cookie.Name, Value: "token"})
			h.ServeHTTP(rec, req)
			require.Equal(t, http.StatusServiceUnavailable, rec.Code)
			require.Equal(t, tt.want, rec.Body.String())
			require.Empty(t, rec.Header().Get("Location"))
		})
	}
	// A store that works: the handler's answer as it is.
	sm := scs.New()
	h := middleware.LoadAndSave(sm, onError)(http.RedirectHandler("/next", http.StatusSeeOther))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, http.StatusSeeOther, rec.Code)
}

type loadFails struct{ failingStore }

func (loadFails) Find(string) ([]byte, bool, error) { return nil, false, errors.New("database down") }

func TestRequireOwner(t *testing.T) {
	identify := func(r *http.Request) (onboard.Owner, error) {
		if u := r.Header.Get("X-User"); u != "" {
			return onboard.Owner{Tenant: "acme", User: u}, nil
		}
		return onboard.Owner{}, errors.New("no user")
	}
	h := middleware.RequireOwner(identify, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, err := middleware.OwnerFromContext(r.Context())
		require.NoError(t, err)
		fmt.Fprint(w, o.Tenant+"/"+o.User)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, http.StatusUnauthorized, rec.Code)

	rec = httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-User", "alice")
	h.ServeHTTP(rec, req)
	require.Equal(t, "acme/alice", rec.Body.String())

	_, err := middleware.OwnerFromContext(context.Background())
	require.ErrorIs(t, err, onboard.ErrNotSignedIn)
}

// TestFirstKeysOfOneSessionAgree: two requests of one signed-in browser
// that each load the session before either saves it (two tabs starting at
// once) make the same key, so neither tab's flow is lost; another session,
// and a session not saved yet, get keys of their own.
func TestFirstKeysOfOneSessionAgree(t *testing.T) {
	sm := scs.New()
	s, err := middleware.NewSCS(sm)
	require.NoError(t, err)
	ctx := loaded(t, sm)
	sm.Put(ctx, "user", "alice")
	token, _, err := sm.Commit(ctx)
	require.NoError(t, err)

	var tabs []context.Context
	for range 2 {
		tab, err := sm.Load(context.Background(), token)
		require.NoError(t, err)
		tabs = append(tabs, tab)
	}
	var keys []string
	for _, tab := range tabs {
		key, err := s.BrowserKey(tab, true)
		require.NoError(t, err)
		require.Len(t, key, 43, "32 bytes, base64url")
		_, _, err = sm.Commit(tab)
		require.NoError(t, err)
		keys = append(keys, key)
	}
	require.Equal(t, keys[0], keys[1])
	require.NotContains(t, keys[0], token, "the key is not the token")

	other, _ := sm.Load(context.Background(), "")
	sm.Put(other, "user", "bob")
	otherToken, _, err := sm.Commit(other)
	require.NoError(t, err)
	other, _ = sm.Load(context.Background(), otherToken)
	otherKey, err := s.BrowserKey(other, true)
	require.NoError(t, err)
	require.NotEqual(t, keys[0], otherKey)

	unsaved, err := s.BrowserKey(loaded(t, sm), true)
	require.NoError(t, err)
	again, err := s.BrowserKey(loaded(t, sm), true)
	require.NoError(t, err)
	require.NotEqual(t, unsaved, again, "random for sessions not saved yet")
}
