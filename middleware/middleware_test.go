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

func TestBindBoundRelease(t *testing.T) {
	sm := scs.New()
	s, err := middleware.NewSCS(sm)
	require.NoError(t, err)
	ctx := loaded(t, sm)
	sm.Put(ctx, "user", "alice")

	require.NoError(t, s.Bind(ctx, "f1", time.Now().Add(time.Hour)))
	ok, err := s.Bound(ctx, "f1")
	require.NoError(t, err)
	require.True(t, ok)
	ok, _ = s.Bound(ctx, "f2")
	require.False(t, ok)

	require.NoError(t, s.Bind(ctx, "old", time.Now().Add(-time.Second)))
	ok, _ = s.Bound(ctx, "old")
	require.False(t, ok, "an expired binding does not count")

	require.NoError(t, s.Release(ctx, "f1"))
	ok, _ = s.Bound(ctx, "f1")
	require.False(t, ok)
	require.Equal(t, "alice", sm.GetString(ctx, "user"), "the app's data is untouched")
}

func TestBindingsAreBounded(t *testing.T) {
	sm := scs.New()
	s, _ := middleware.NewSCS(sm)
	ctx := loaded(t, sm)
	sm.Put(ctx, "user", "alice")
	now := time.Now()
	for i := range 50 {
		require.NoError(t, s.Bind(ctx, fmt.Sprint("f", i), now.Add(time.Hour+time.Duration(i)*time.Second)))
	}
	require.Len(t, sm.Keys(ctx), 2, "one key for all bindings, and the app's own")
	bound := 0
	for i := range 50 {
		if ok, _ := s.Bound(ctx, fmt.Sprint("f", i)); ok {
			bound++
		}
	}
	require.Equal(t, middleware.DefaultMaxBound, bound)
	ok, _ := s.Bound(ctx, "f49")
	require.True(t, ok, "the newest binding is kept")
	ok, _ = s.Bound(ctx, "f0")
	require.False(t, ok, "the oldest bindings are dropped")
	ok, _ = s.Bound(ctx, "9")
	require.False(t, ok, "a suffix of a bound id is not bound")
	require.NoError(t, s.Release(ctx, "f49"))
	ok, _ = s.Bound(ctx, "f49")
	require.False(t, ok)
	ok, _ = s.Bound(ctx, "f48")
	require.True(t, ok, "releasing one keeps the others")
}

func TestNoSessionIsAnErrorNotAPanic(t *testing.T) {
	s, _ := middleware.NewSCS(scs.New())
	ctx := context.Background()
	require.ErrorIs(t, s.Bind(ctx, "f", time.Now().Add(time.Hour)), onboard.ErrNoSession)
	_, err := s.Bound(ctx, "f")
	require.ErrorIs(t, err, onboard.ErrNoSession)
	require.ErrorIs(t, s.Release(ctx, "f"), onboard.ErrNoSession)
}

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
