// Package middleware holds the session glue between onboard and a web app:
// [SCS] binds each flow to the browser session that started it, over an
// app's github.com/alexedwards/scs/v2 session manager, and [RequireOwner]
// admits only requests with a signed-in owner.
package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/onboardkit/onboard"
)

// keyPrefix prefixes the session keys SCS writes. It writes no other key
// and never renews, clears or destroys the session: the app's own session
// data stays as it is.
const keyPrefix = "onboard.flow."

// DefaultMaxBound is how many flows one session may have bound at once.
const DefaultMaxBound = 16

// SCS implements [onboard.Sessions] over an scs session manager. Each
// bound flow is one session key holding its expiry time.
type SCS struct {
	sm       *scs.SessionManager
	maxBound int
	now      func() time.Time
}

// NewSCS returns the session binding for sm. The app must wrap the onboard
// handler (or its whole router) in sm.LoadAndSave. It refuses a session
// cookie with SameSite=Strict: browsers do not send such a cookie on the
// cross-site navigation back from the provider, so every return would
// look like another browser. Use SameSite=Lax (the scs default).
func NewSCS(sm *scs.SessionManager) (*SCS, error) {
	if sm == nil {
		return nil, errors.New("middleware: nil session manager")
	}
	if sm.Cookie.SameSite == http.SameSiteStrictMode {
		return nil, errors.New("middleware: the session cookie is SameSite=Strict, which browsers drop on the return from the provider; use http.SameSiteLaxMode")
	}
	return &SCS{sm: sm, maxBound: DefaultMaxBound, now: time.Now}, nil
}

// loaded reports whether ctx carries a session of s.sm. scs panics when
// a request reaches it without its LoadAndSave middleware; that panic is
// turned here into [onboard.ErrNoSession].
func (s *SCS) loaded(ctx context.Context) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	s.sm.Status(ctx)
	return true
}

var errNoSession = fmt.Errorf("%w: wrap the handler in the scs session manager's LoadAndSave", onboard.ErrNoSession)

// Bind records the flow in the session, dropping expired bindings and,
// past the limit, the oldest ones.
func (s *SCS) Bind(ctx context.Context, flowID string, expires time.Time) error {
	if !s.loaded(ctx) {
		return errNoSession
	}
	type bound struct {
		key string
		exp int64
	}
	var live []bound
	now := s.now().Unix()
	for _, k := range s.sm.Keys(ctx) {
		if !strings.HasPrefix(k, keyPrefix) {
			continue
		}
		exp, err := strconv.ParseInt(s.sm.GetString(ctx, k), 10, 64)
		if err != nil || exp <= now {
			s.sm.Remove(ctx, k)
			continue
		}
		live = append(live, bound{k, exp})
	}
	if len(live) >= s.maxBound {
		sort.Slice(live, func(i, j int) bool { return live[i].exp < live[j].exp })
		for _, b := range live[:len(live)-s.maxBound+1] {
			s.sm.Remove(ctx, b.key)
		}
	}
	s.sm.Put(ctx, keyPrefix+flowID, strconv.FormatInt(expires.Unix(), 10))
	return nil
}

// Bound reports whether the session holds an unexpired binding of the
// flow.
func (s *SCS) Bound(ctx context.Context, flowID string) (bool, error) {
	if !s.loaded(ctx) {
		return false, errNoSession
	}
	exp, err := strconv.ParseInt(s.sm.GetString(ctx, keyPrefix+flowID), 10, 64)
	if err != nil {
		return false, nil
	}
	return exp > s.now().Unix(), nil
}

// Release removes the flow's binding from the session.
func (s *SCS) Release(ctx context.Context, flowID string) error {
	if !s.loaded(ctx) {
		return errNoSession
	}
	s.sm.Remove(ctx, keyPrefix+flowID)
	return nil
}

type ownerKey struct{}

// WithOwner returns ctx carrying the signed-in owner.
func WithOwner(ctx context.Context, o onboard.Owner) context.Context {
	return context.WithValue(ctx, ownerKey{}, o)
}

// OwnerFromContext returns the owner [RequireOwner] put in the context.
// It has the signature of a part of onboard.Config.Owner:
//
//	Owner: func(r *http.Request) (onboard.Owner, error) { return middleware.OwnerFromContext(r.Context()) }
func OwnerFromContext(ctx context.Context) (onboard.Owner, error) {
	o, ok := ctx.Value(ownerKey{}).(onboard.Owner)
	if !ok || o.IsZero() {
		return onboard.Owner{}, onboard.ErrNotSignedIn
	}
	return o, nil
}

// RequireOwner returns middleware that identifies the signed-in owner with
// identify and puts it in the request context ([OwnerFromContext]). A
// request with nobody signed in goes to denied; a nil denied answers 401.
func RequireOwner(identify func(*http.Request) (onboard.Owner, error), denied http.Handler) func(http.Handler) http.Handler {
	if denied == nil {
		denied = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Please sign in.", http.StatusUnauthorized)
		})
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o, err := identify(r)
			if err != nil || o.IsZero() {
				denied.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithOwner(r.Context(), o)))
		})
	}
}
