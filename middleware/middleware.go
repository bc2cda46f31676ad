// Package middleware holds the session glue between onboard and a web app:
// [SCS] identifies each browser through an app's
// github.com/alexedwards/scs/v2 session manager, so that a flow counts only
// in the browser that started it, and [RequireOwner] admits only requests
// with a signed-in owner.
package middleware

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/onboardkit/onboard"
)

// sessionKey is the one session key SCS writes: the browser's secret key.
// It is saved once per session, with the browser's first start; SCS writes
// no other key and never renews, clears or destroys the session, so the
// app's own session data stays as it is.
const sessionKey = "onboard.browser"

// SCS implements [onboard.Sessions] over an scs session manager.
type SCS struct {
	sm *scs.SessionManager
}

// NewSCS returns the browser binding for sm. The app must wrap the onboard
// handler (or its whole router) in sm.LoadAndSave.
//
// The session cookie decides which requests carry the binding:
//   - SameSite=Lax (the scs default) is right: the cookie is sent on the
//     top-level navigation back from the provider's page.
//   - SameSite=Strict is refused: browsers drop such a cookie on the
//     navigation back from the provider, so every return would look like
//     another browser's and be quarantined.
//   - SameSite=None also works, but gives up the browser's own defence
//     against cross-site requests for every request of the app, and
//     browsers accept it only with Secure, so it is refused without Secure.
//     onboard does not rely on SameSite (a POST start checks its origin, a
//     cross-site GET start is confirmed on a page of the app), but the
//     app's own pages may.
func NewSCS(sm *scs.SessionManager) (*SCS, error) {
	if sm == nil {
		return nil, errors.New("middleware: nil session manager")
	}
	switch sm.Cookie.SameSite {
	case http.SameSiteStrictMode:
		return nil, fmt.Errorf("%w: the session cookie is SameSite=Strict, which browsers drop on the return from the provider, so every return would be refused; use http.SameSiteLaxMode (the scs default)", onboard.ErrConfig)
	case http.SameSiteNoneMode:
		if !sm.Cookie.Secure {
			return nil, fmt.Errorf("%w: the session cookie is SameSite=None without Secure, which browsers refuse; use http.SameSiteLaxMode (the scs default)", onboard.ErrConfig)
		}
	}
	return &SCS{sm: sm}, nil
}

// SessionEnd returns when the request's session ends if its browser makes
// no request of the app meanwhile (as while its user is on a provider's
// page), on the clock of now (onboard's Config.Now): what is left of the
// session's absolute deadline (scs's Lifetime, counted from the session's
// creation on the wall clock), or IdleTimeout after now when that comes
// first. Without a session in ctx, it is what a new session would have.
// onboard's start keeps a flow within it: a browser that came back after
// its session ended would be taken for another browser.
func (s *SCS) SessionEnd(ctx context.Context, now time.Time) time.Time {
	left := s.sm.Lifetime
	if d, ok := s.deadline(ctx); ok {
		left = time.Until(d) // scs set the deadline on the wall clock
	}
	if s.sm.IdleTimeout > 0 && s.sm.IdleTimeout < left {
		left = s.sm.IdleTimeout
	}
	return now.Add(left)
}

// deadline returns the absolute deadline of the session in ctx; ok is
// false when ctx has none.
func (s *SCS) deadline(ctx context.Context) (d time.Time, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return s.sm.Deadline(ctx), true
}

var errNoSession = fmt.Errorf("%w: wrap the handler in middleware.LoadAndSave(sessionManager, ob.SessionError)", onboard.ErrNoSession)

// read returns the browser's key, "" when it has none, and the session's
// token, "" for a session not saved yet. scs panics when a request reaches
// it without its LoadAndSave middleware; that panic is turned here into
// onboard.ErrNoSession.
func (s *SCS) read(ctx context.Context) (key, token string, err error) {
	defer func() {
		if recover() != nil {
			err = errNoSession
		}
	}()
	return s.sm.GetString(ctx, sessionKey), s.sm.Token(ctx), nil
}

// BrowserKey returns the browser's secret key: 32 bytes, base64url. With
// create, a browser without one gets one, put in the session and saved
// with it by LoadAndSave at the end of that request: the session is written
// once per browser, at its first start, and never again by onboard. If
// that save fails, the user gets the app's error page, and the flow the
// start made is left to expire; the runner then settles it and removes
// what the provider made for it.
//
// An app may make the key at sign-in instead, where it saves the session
// anyway: call BrowserKey(ctx, true) after RenewToken, so that the key
// comes from the signed-in session's token. Then no start writes the
// session.
//
// A saved session (one the user signed in to) gets a key derived from its
// token, SHA-256 with a label of onboard's own, so that tabs whose first
// starts overlap, each on its own copy of the session, make the same key
// and none of their flows is lost. The key is kept in the session, so it
// outlives the token: renewing the token at sign-in keeps the browser's
// flows. A session not saved yet gets 32 random bytes.
func (s *SCS) BrowserKey(ctx context.Context, create bool) (string, error) {
	key, token, err := s.read(ctx)
	if err != nil || key != "" || !create {
		return key, err
	}
	var raw [32]byte
	if token != "" {
		raw = sha256.Sum256([]byte("onboard browser key\x00" + token))
	} else {
		_, _ = rand.Read(raw[:]) // never fails
	}
	key = base64.RawURLEncoding.EncodeToString(raw[:])
	s.sm.Put(ctx, sessionKey, key)
	return key, nil
}

// LoadAndSave returns sm.LoadAndSave, made to answer a failure of the
// session store, in loading or in saving the session, exactly once and
// with onError: never scs's bare "Internal Server Error", and never two
// bodies when the save fails as the handler writes its answer. With
// onboard, onError is the Onboarder's SessionError, which renders the
// app's Config.Error page:
//
//	handler := middleware.LoadAndSave(sessionManager, ob.SessionError)(mux)
//
// It sets sm.ErrorFunc; use it in place of sm.LoadAndSave, once per
// session manager. onError must not use the session: when loading failed,
// the request has none.
func LoadAndSave(sm *scs.SessionManager, onError func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	sm.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
		g, _ := w.(*answerOnce)
		if g != nil {
			if g.answered {
				return
			}
			// What the handler set for its own answer does not belong to
			// the error page.
			h := g.Header()
			h.Del("Location")
			h.Del("Content-Length")
		}
		onError(w, r, err)
		if g != nil {
			g.answered = true
		}
	}
	return func(next http.Handler) http.Handler {
		h := sm.LoadAndSave(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(&answerOnce{ResponseWriter: w}, r)
		})
	}
}

// answerOnce drops what the handler writes after the session layer has
// answered with an error page.
type answerOnce struct {
	http.ResponseWriter
	answered bool
}

func (a *answerOnce) WriteHeader(code int) {
	if !a.answered {
		a.ResponseWriter.WriteHeader(code)
	}
}

func (a *answerOnce) Write(b []byte) (int, error) {
	if a.answered {
		return len(b), nil
	}
	return a.ResponseWriter.Write(b)
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (a *answerOnce) Unwrap() http.ResponseWriter { return a.ResponseWriter }

type ownerKey struct{}

// WithOwner returns ctx carrying the signed-in owner.
func WithOwner(ctx context.Context, o onboard.Owner) context.Context {
	return context.WithValue(ctx, ownerKey{}, o)
}

// OwnerFromContext returns the owner [RequireOwner] put in the context,
// for the app's own handlers behind it. onboard.Config.Owner is not one of
// those: give it the identify function that RequireOwner is given.
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
//
// It is for the app's own routes (a page that deletes a connection, say).
// Never wrap onboard's handler with it: a webhook carries no session, and
// a return in a browser where nobody is signed in must reach onboard,
// which refuses it and quarantines what its flow made. onboard asks
// Config.Owner itself; give it identify:
//
//	ob, err := onboard.New(onboard.Config{Owner: identify, ...})
//	mux.Handle("/connect/", ob.Handler())
//	mux.Handle("POST /connections/delete", middleware.RequireOwner(identify, nil)(deleteHandler))
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
