package onboard

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// callback handles the browser's return from the provider's hosted page:
//
//	GET {prefix}/{provider}/return/{flow}?...
//
// One path from the flow id to a verified outcome. It refuses, in this
// order: a malformed flow id; an unknown flow or one of another provider;
// a flow started in another browser (and within its lifetime quarantines
// what that flow made); a flow of another owner; an expired flow (410
// with a way to start again); a malformed query; and a result the
// provider's API does not confirm. A done flow returned to in its own
// browser is shown its result again. Otherwise the store completes the
// flow and saves the connection in one atomic step: of concurrent
// returns, exactly one stores a connection.
func (o *Onboarder) callback(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := o.deadline(r)
	defer cancel()
	p, f := o.requestFlow(ctx, w, r, true)
	if f == nil {
		return
	}
	id := f.ID
	if f.State == FlowDone {
		// A reload, or a return after the flow was settled without its
		// browser: show the stored result again; nothing is stored, no
		// hook fires. A settled flow's page may have been finished since
		// (CData's link outlives an eviction): remove what that made.
		if !f.Reconnect && (f.Outcome == Abandoned || f.Outcome == Revoked) {
			o.cleanup(ctx, *f)
		}
		if f.Outcome == Abandoned && f.Expired(o.cfg.Now()) {
			// Settled because it expired: say so, with a way to start
			// again, as for an expired flow not settled yet.
			o.fail(w, r, f, ErrFlowExpired, "flow", id)
			return
		}
		o.showResult(ctx, w, r, f)
		return
	}
	// The query is read only now, after the checks above: part of it is
	// the provider echoing what the page was given (CData's connection
	// name), which an attacker can make malformed, and a refusal of it
	// must not spare another browser's return its quarantine.
	ret, err := returnParams(r.URL.RawQuery)
	if err != nil {
		o.fail(w, r, f, err, "flow", id)
		return
	}
	pctx, end := o.tel.provider(ctx, f.Provider, "Complete")
	c, err := p.Complete(pctx, *f, ret)
	err = classify(err, ErrProvider)
	end(err)
	if err != nil {
		o.fail(w, r, f, err, "flow", id)
		return
	}
	c = o.fill(c, *f)
	cleanup := c.ID == "" && !f.Reconnect // nothing attached: remove what the flow made
	err = o.completeFlow(ctx, *f, c, cleanup)
	if errors.Is(err, ErrRevoked) {
		// Its connection was quarantined since this flow started (another
		// flow of it came back elsewhere): it is never connected again
		// (the store's rule), and this flow settles as revoked.
		if _, serr := o.settle(ctx, *f, Revoked, "its connection was revoked meanwhile"); serr != nil {
			err = serr
		}
	}
	if err != nil {
		if errors.Is(err, ErrFlowUsed) { // a concurrent return won
			o.showDone(ctx, w, r, f.ID)
			return
		}
		o.fail(w, r, f, classify(err, ErrStore), "flow", id, "connection", c.ID)
		return
	}
	o.tel.flow(ctx, o.tel.completed, f.Provider, c.State)
	if o.cfg.Logger.Enabled(ctx, slog.LevelInfo) {
		o.cfg.Logger.InfoContext(ctx, "onboard: flow completed", "flow", f.ID, "provider", f.Provider,
			"tenant", f.Owner.Tenant, "connection", c.ID, "state", c.State)
	}
	f.State, f.Outcome, f.Message, f.ConnectionID = FlowDone, c.State, c.Message, c.ID
	if cleanup {
		o.cleanup(ctx, *f)
	}
	o.cfg.Hooks.fire(ctx, c, false)
	o.showResultOf(w, r, f, c)
}

// requestFlow reads the provider and the flow of a request's path, loads
// the flow and checks that this request may use it (checkFlow, with
// quarantine). When it may not, requestFlow answers the request itself
// and returns a nil flow.
func (o *Onboarder) requestFlow(ctx context.Context, w http.ResponseWriter, r *http.Request, quarantine bool) (Provider, *Flow) {
	p, ok := o.providers[r.PathValue("provider")]
	if !ok {
		o.fail(w, r, nil, ErrUnknownProvider)
		return nil, nil
	}
	id := r.PathValue("flow")
	if !validFlowID(id) {
		o.fail(w, r, nil, ErrBadFlowID)
		return nil, nil
	}
	f, err := o.loadFlow(ctx, p.Name(), id)
	if err != nil {
		o.fail(w, r, nil, err, "flow", id)
		return nil, nil
	}
	if bound, err := o.checkFlow(ctx, r, f, quarantine); err != nil {
		shown := f
		if !bound {
			shown = nil // not this browser's and owner's: nothing of the flow is shown
		}
		o.fail(w, r, shown, err, "flow", id)
		return nil, nil
	}
	return p, f
}

// loadFlow loads flow id of provider (of any provider for "").
func (o *Onboarder) loadFlow(ctx context.Context, provider, id string) (*Flow, error) {
	f, found, err := o.cfg.Store.Flow(ctx, id)
	if err != nil {
		return nil, classify(err, ErrStore)
	}
	if !found || (provider != "" && f.Provider != provider) {
		return nil, ErrUnknownFlow
	}
	return &f, nil
}

// checkFlow checks that flow f may be used by this request: the browser
// is the one that started it, the owner is the one signed in now, and it
// has not expired (unless it is done: its result can still be shown).
// bound reports that the request is the flow's browser and owner: only
// then may an answer show anything of the flow (the error page's link to
// start again carries its source, name, return_to and connection).
// With quarantine, a flow within its lifetime (a pending one until it
// closes) seen in another browser has what it made quarantined, and so
// has a pending one seen in its own browser signed in as another owner
// (user or tenant), or signed out (a shared computer): whoever entered
// what it made was not its owner, and the owner's later return must not
// attach it.
func (o *Onboarder) checkFlow(ctx context.Context, r *http.Request, f *Flow, quarantine bool) (bound bool, err error) {
	now := o.cfg.Now()
	if f.Browser == "" {
		// A flow made before flows kept their browser (an upgrade): no
		// browser can prove it started it. It is settled by the runner.
		return false, ErrFlowExpired
	}
	key, err := o.browserKey(ctx, false)
	if err != nil {
		return false, err
	}
	if !sameBrowser(*f, key) {
		// A pending flow can complete until it closes, a done one could
		// until it expired: past that, what it made is left to the runner.
		if (f.State == FlowDone && f.Expired(now)) || (f.State != FlowDone && now.After(o.closedAt(*f))) {
			return false, ErrFlowExpired
		}
		if quarantine {
			o.quarantine(ctx, *f, "another browser")
		}
		return false, ErrOtherBrowser
	}
	owner, err := o.owner(r)
	if err == nil && owner != f.Owner {
		err = ErrOwnerMismatch
	}
	if err != nil {
		// Nobody, or another owner (user or tenant), signed in: whoever
		// entered what a pending flow made was not its owner.
		if quarantine && f.State == FlowPending && !now.After(o.closedAt(*f)) &&
			(errors.Is(err, ErrOwnerMismatch) || errors.Is(err, ErrNotSignedIn)) {
			o.quarantine(ctx, *f, "its browser, signed in as another owner or signed out")
		}
		return false, err
	}
	if f.State != FlowDone && f.Expired(now) {
		return true, ErrFlowExpired
	}
	return true, nil
}

// result is what flow f produced: its stored connection when it attached
// one (with the state it has now), or the outcome kept with the flow.
func (o *Onboarder) result(ctx context.Context, f Flow) (Connection, error) {
	c := Connection{Provider: f.Provider, ID: f.ConnectionID, Owner: f.Owner, Name: f.Name, Source: f.Source,
		State: f.Outcome, Message: f.Message, FlowID: f.ID}
	if f.Outcome == Abandoned || f.Outcome == Revoked {
		c.ID = ""
	}
	if c.ID == "" {
		return c, nil
	}
	stored, found, err := o.cfg.Store.FindConnection(ctx, f.Provider, c.ID)
	if err != nil {
		return c, classify(err, ErrStore)
	}
	if found && stored.Owner.Tenant == f.Owner.Tenant {
		return stored, nil
	}
	return c, nil
}

// showDone shows the result of a flow that another request completed.
func (o *Onboarder) showDone(ctx context.Context, w http.ResponseWriter, r *http.Request, id string) {
	f, err := o.loadFlow(ctx, "", id)
	if err != nil {
		o.fail(w, r, nil, err, "flow", id)
		return
	}
	o.showResult(ctx, w, r, f)
}

// showResult shows the stored result of a done flow, within the request's
// deadline ctx.
func (o *Onboarder) showResult(ctx context.Context, w http.ResponseWriter, r *http.Request, f *Flow) {
	c, err := o.result(ctx, *f)
	if err != nil {
		o.fail(w, r, f, err, "flow", f.ID)
		return
	}
	o.showResultOf(w, r, f, c)
}

// showResultOf hands a return's result to the Result handler. The default
// one redirects to the flow's return_to (or DonePath) with onboard_flow
// (the flow's result token). A
// return in a popup gets the popup page instead.
func (o *Onboarder) showResultOf(w http.ResponseWriter, r *http.Request, f *Flow, c Connection) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	// The request is the flow's browser (checkFlow): its key is there.
	key, _ := o.browserKey(r.Context(), false)
	token := resultToken(key, f.ID)
	if isPopup(r) {
		o.popupPage(w, r, popupMessage{Type: "onboard", Flow: f.ID, Result: token, Provider: f.Provider, State: string(c.State),
			Connection: c.ID, Name: c.Name, Source: c.Source, Message: c.Message}, resultURL(o.target(f), token))
		return
	}
	if o.cfg.Result != nil {
		out := &outcome{flow: *f, hasFlow: true, result: c, hasResult: true, token: token}
		o.cfg.Result.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), outcomeKey{}, out)))
		return
	}
	http.Redirect(w, r, resultURL(o.target(f), token), http.StatusSeeOther)
}

// target is the same-origin path shown after flow f: its return_to, or
// DonePath.
func (o *Onboarder) target(f *Flow) string {
	if f.ReturnTo != "" {
		return f.ReturnTo
	}
	return o.cfg.DonePath
}

// isPopup reports whether r came to the popup form of the return route.
func isPopup(r *http.Request) bool { return strings.Contains(r.Pattern, "/popup/") }

// popupMessage is the JSON of the status endpoint, and what the popup page
// posts to the window that opened it.
type popupMessage struct {
	Type       string `json:"type"` // always "onboard"
	Flow       string `json:"flow"`
	Result     string `json:"result,omitempty"` // the flow's result token, for Outcome (popup page only)
	Provider   string `json:"provider"`
	State      string `json:"state"` // pending, connected, failed, abandoned, revoked; error for a refusal
	Connection string `json:"connection,omitempty"`
	Name       string `json:"name,omitempty"`
	Source     string `json:"source,omitempty"`
	Message    string `json:"message,omitempty"`
	Status     int    `json:"status,omitempty"` // of a refusal
}

// status answers GET {prefix}/{provider}/status/{flow}: the flow's
// verified state as JSON, only to the browser that started it, signed in
// as its owner.
func (o *Onboarder) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := o.deadline(r)
	defer cancel()
	_, f := o.requestFlow(ctx, w, r, false)
	if f == nil {
		return
	}
	id := f.ID
	msg := popupMessage{Type: "onboard", Flow: f.ID, Provider: f.Provider, State: string(FlowPending), Source: f.Source, Name: f.Name}
	if f.State == FlowDone {
		c, err := o.result(ctx, *f)
		if err != nil {
			o.fail(w, r, f, err, "flow", id)
			return
		}
		msg.State, msg.Connection, msg.Name, msg.Source, msg.Message = string(c.State), c.ID, c.Name, c.Source, c.Message
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, msg)
}

// resultParam is the query parameter that carries a flow to the page
// shown after a return (as a result token); [Onboarder.Outcome] reads it.
const resultParam = "onboard_flow"

// resultToken is what the page shown after a return is given for flow id
// in place of the id: the id sealed (AES-256-GCM) with a key derived from
// the browser's secret key (key, which only its session holds; the store
// keeps a digest of it), so that only the browser that started the flow
// reads it back ([Onboarder.Outcome]). The id is the key to the flow's
// return URL, with which anyone can, within the flow's lifetime,
// quarantine what the flow made; a page's URL ends up in analytics, error
// trackers and shared links, so it never carries the id itself.
func resultToken(key, id string) string {
	aead := resultAEAD(key)
	if aead == nil || key == "" {
		return ""
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(id)+aead.Overhead())
	_, _ = rand.Read(nonce) // never fails
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(id), nil))
}

// resultTokenLen is the length of a result token: base64url of a 12-byte
// nonce, a sealed flow id and a 16-byte tag.
var resultTokenLen = base64.RawURLEncoding.EncodedLen(12 + flowIDLen + 16)

// openResult returns the flow id that token seals for the browser whose
// key is key. ok is false when it seals none for that browser; malformed
// is true when token is not a result token at all.
func openResult(token, key string) (id string, ok, malformed bool) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || !base64URL(token, resultTokenLen) {
		return "", false, true
	}
	aead := resultAEAD(key)
	if aead == nil || key == "" {
		return "", false, false
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], nil)
	if err != nil || !validFlowID(string(plain)) {
		return "", false, false
	}
	return string(plain), true, false
}

// resultAEAD is the cipher of the result tokens of the browser whose
// secret key is key.
func resultAEAD(key string) cipher.AEAD {
	k := sha256.Sum256([]byte("onboard/result\x00" + key))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil // not with a 32-byte key
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil // not with AES
	}
	return aead
}

// resultURL returns target (a same-origin path) with onboard_flow=token
// in its query, after removing every onboard_* parameter already there, so
// a crafted return_to cannot smuggle a result in. A fragment stays last.
func resultURL(target, token string) string {
	frag := ""
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target, frag = target[:i], target[i:]
	}
	path, query, _ := strings.Cut(target, "?")
	var kept []string
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, _, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil && strings.HasPrefix(strings.ToLower(uk), "onboard_") {
			continue
		}
		if strings.HasPrefix(strings.ToLower(k), "onboard_") {
			continue
		}
		kept = append(kept, kv)
	}
	kept = append(kept, resultParam+"="+token)
	return path + "?" + strings.Join(kept, "&") + frag
}

// Outcome returns the verified result of the flow named by the request's
// onboard_flow parameter: the connection it stored (with its state now),
// or its abandoned or revoked outcome. It answers only the browser that
// started the flow, signed in as its owner, and only once the flow is
// done (ErrFlowPending before). Pages shown after a return read the
// outcome here, never from other query parameters: a crafted link can
// name a flow, but not one that is this browser's. The parameter is the
// result token the return's redirect put there, which only this browser
// can read, or a flow id (a single-page app has it from the start's JSON
// answer or the popup's message). Errors have kinds ([StatusCode],
// [Message]); ErrNoFlow means the request names no flow.
func (o *Onboarder) Outcome(r *http.Request) (Connection, error) {
	ids := r.URL.Query()[resultParam]
	switch {
	case len(ids) == 0 || ids[0] == "":
		return Connection{}, ErrNoFlow
	case len(ids) > 1:
		return Connection{}, ErrBadFlowID
	}
	ctx, cancel := o.deadline(r)
	defer cancel()
	id := ids[0]
	if !validFlowID(id) {
		key, err := o.browserKey(ctx, false)
		if err != nil {
			return Connection{}, err
		}
		var ok, malformed bool
		switch id, ok, malformed = openResult(ids[0], key); {
		case malformed:
			return Connection{}, ErrBadFlowID
		case !ok:
			return Connection{}, ErrOtherBrowser
		}
	}
	f, err := o.loadFlow(ctx, "", id)
	if err != nil {
		return Connection{}, err
	}
	if _, err := o.checkFlow(ctx, r, f, false); err != nil {
		return Connection{}, err
	}
	if f.State != FlowDone {
		return Connection{}, ErrFlowPending
	}
	return o.result(ctx, *f)
}

// returnParams parses the query of a return, refusing oversized or
// malformed input and invalid UTF-8.
func returnParams(raw string) (url.Values, error) {
	if len(raw) > maxQueryBytes {
		return nil, fmt.Errorf("%w: query of %d bytes", ErrBadRequest, len(raw))
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := checkValues(v); err != nil {
		return nil, err
	}
	return v, nil
}

// outcome is what the handlers tell the Result and Error handlers: the
// flow a request was for, the connection it produced and the error it was
// refused with. It travels as one context value.
type outcome struct {
	flow      Flow
	hasFlow   bool
	result    Connection
	hasResult bool
	token     string // the flow's result token (Result only)
	err       error
}

type outcomeKey struct{}

func outcomeOf(ctx context.Context) *outcome {
	out, _ := ctx.Value(outcomeKey{}).(*outcome)
	return out
}

// withOutcome returns ctx carrying a copy of its outcome changed by set.
func withOutcome(ctx context.Context, set func(*outcome)) context.Context {
	var out outcome
	if old := outcomeOf(ctx); old != nil {
		out = *old
	}
	set(&out)
	return context.WithValue(ctx, outcomeKey{}, &out)
}

// WithResult returns ctx carrying the connection a return produced, as the
// handlers give it to Config.Result (for tests of a Result handler).
func WithResult(ctx context.Context, c Connection) context.Context {
	return withOutcome(ctx, func(out *outcome) { out.result, out.hasResult = c, true })
}

// ResultFromContext returns the connection of a return given to
// Config.Result.
func ResultFromContext(ctx context.Context) (Connection, bool) {
	if out := outcomeOf(ctx); out != nil && out.hasResult {
		return out.result, true
	}
	return Connection{}, false
}

// ResultTokenFromContext returns the result token of the flow a request
// given to Config.Result completed: what a Result handler of its own puts
// in the onboard_flow parameter of the page it sends the browser to, for
// [Onboarder.Outcome] to read, rather than the flow id (which is the key
// to the flow's return URL).
func ResultTokenFromContext(ctx context.Context) (string, bool) {
	if out := outcomeOf(ctx); out != nil && out.token != "" {
		return out.token, true
	}
	return "", false
}

// WithError returns ctx carrying err, as the handlers give it to
// Config.Error (for tests of an Error handler).
func WithError(ctx context.Context, err error) context.Context {
	return withOutcome(ctx, func(out *outcome) { out.err = err })
}

// ErrorFromContext returns the error a request given to Config.Error was
// refused with.
func ErrorFromContext(ctx context.Context) error {
	if out := outcomeOf(ctx); out != nil {
		return out.err
	}
	return nil
}

// FlowFromContext returns the flow a request given to Config.Result or
// Config.Error was for, when one was known and the request came from the
// browser that started it, signed in as its owner: a refusal of another
// browser or user is given the error alone, so that nothing of the flow
// (its source, name, return_to, connection) is shown to them.
func FlowFromContext(ctx context.Context) (Flow, bool) {
	if out := outcomeOf(ctx); out != nil && out.hasFlow {
		return out.flow, true
	}
	return Flow{}, false
}
