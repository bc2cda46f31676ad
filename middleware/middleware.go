// Package middleware holds the session glue between onboard and a web app:
// [SCS] binds each flow to the browser session that started it, over an
// app's github.com/alexedwards/scs/v2 session manager, and [RequireOwner]
// admits only requests with a signed-in owner.
package middleware

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/onboardkit/onboard"
)

// sessionKey is the one session key SCS writes: the session's bound flows
// as "id expiry" pairs separated by commas. It writes no other key and
// never renews, clears or destroys the session: the app's own session
// data stays as it is.
const sessionKey = "onboard.flows"

// DefaultMaxBound is how many flows one session may have bound at once.
const DefaultMaxBound = 16

// SCS implements [onboard.Sessions] over an scs session manager.
type SCS struct {
	sm *scs.SessionManager
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
	return &SCS{sm: sm}, nil
}

var errNoSession = fmt.Errorf("%w: wrap the handler in the scs session manager's LoadAndSave", onboard.ErrNoSession)

// read returns the session's bindings. scs panics when a request reaches
// it without its LoadAndSave middleware; that panic is turned here into
// onboard.ErrNoSession.
func (s *SCS) read(ctx context.Context) (v string, err error) {
	defer func() {
		if recover() != nil {
			err = errNoSession
		}
	}()
	return s.sm.GetString(ctx, sessionKey), nil
}

type binding struct {
	id  string
	exp int64
}

// parse reads "id exp,id exp", skipping malformed and expired entries.
func parse(v string, now int64) []binding {
	var out []binding
	for v != "" {
		var item string
		item, v, _ = strings.Cut(v, ",")
		id, exp, ok := strings.Cut(item, " ")
		if !ok {
			continue
		}
		if e, err := strconv.ParseInt(exp, 10, 64); err == nil && e > now {
			out = append(out, binding{id, e})
		}
	}
	return out
}

func (s *SCS) write(ctx context.Context, bs []binding) {
	if len(bs) == 0 {
		s.sm.Remove(ctx, sessionKey)
		return
	}
	var b strings.Builder
	b.Grow(len(bs) * (len(bs[0].id) + 12))
	var exp [20]byte
	for i, x := range bs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x.id)
		b.WriteByte(' ')
		b.Write(strconv.AppendInt(exp[:0], x.exp, 10))
	}
	s.sm.Put(ctx, sessionKey, b.String())
}

// Bind records the flow in the session, dropping expired bindings and,
// past the limit, the oldest ones.
func (s *SCS) Bind(ctx context.Context, flowID string, expires time.Time) error {
	v, err := s.read(ctx)
	if err != nil {
		return err
	}
	b := binding{flowID, expires.Unix()}
	if v == "" {
		s.write(ctx, []binding{b})
		return nil
	}
	bs := parse(v, time.Now().Unix())
	if len(bs) >= DefaultMaxBound {
		slices.SortFunc(bs, func(a, b binding) int { return cmp.Compare(a.exp, b.exp) })
		bs = bs[len(bs)-DefaultMaxBound+1:]
	}
	s.write(ctx, append(bs, b))
	return nil
}

// Bound reports whether the session holds an unexpired binding of the
// flow.
func (s *SCS) Bound(ctx context.Context, flowID string) (bool, error) {
	v, err := s.read(ctx)
	if err != nil {
		return false, err
	}
	if flowID == "" {
		return false, nil
	}
	for v != "" {
		var item string
		item, v, _ = strings.Cut(v, ",")
		id, exp, _ := strings.Cut(item, " ")
		if id == flowID {
			e, err := strconv.ParseInt(exp, 10, 64)
			return err == nil && e > time.Now().Unix(), nil
		}
	}
	return false, nil
}

// Release removes the flow's binding from the session.
func (s *SCS) Release(ctx context.Context, flowID string) error {
	v, err := s.read(ctx)
	if err != nil {
		return err
	}
	bs := parse(v, time.Now().Unix())
	s.write(ctx, slices.DeleteFunc(bs, func(b binding) bool { return b.id == flowID }))
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
