package onboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
)

// callback handles the browser's return from the provider's hosted page:
//
//	GET {prefix}/{provider}/return/{flow}?...
//
// It refuses, in this order: a malformed flow id or query, an unknown
// flow or one of another provider, a flow bound to another browser
// session (a completed one there is a replay: 409), a flow of another
// owner, an expired flow, and a result the provider's API does not
// confirm. A completed flow returned to in the session that started it
// is shown its result again. Otherwise it completes the flow and saves
// the connection in one atomic step of the store: of concurrent returns,
// exactly one stores a connection.
func (o *Onboarder) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	provider := r.PathValue("provider")
	p, ok := o.providers[provider]
	if !ok {
		o.fail(w, r, ErrUnknownProvider)
		return
	}
	id := r.PathValue("flow")
	if !validFlowID(id) {
		o.fail(w, r, ErrNoFlow)
		return
	}
	ret, err := returnParams(r.URL.RawQuery)
	if err != nil {
		o.fail(w, r, err, "flow", id)
		return
	}
	// out carries the flow to the Error handler and, once set below, the
	// result to the Result handler.
	out := new(outcome)
	f := &out.flow
	var found bool
	if *f, found, err = o.cfg.Store.Flow(ctx, id); err != nil {
		o.fail(w, r, fmt.Errorf("%w: %v", ErrStore, err), "flow", id)
		return
	}
	if !found || f.Provider != provider {
		o.fail(w, r, ErrUnknownFlow, "flow", id)
		return
	}
	out.hasFlow = true
	bound, err := o.cfg.Sessions.Bound(ctx, f.ID)
	if err != nil {
		o.failFlow(w, r, out, asKind(err, ErrStore), "flow", id)
		return
	}
	if !bound {
		if f.State == FlowDone {
			o.failFlow(w, r, out, ErrFlowUsed, "flow", id) // a replay from elsewhere
			return
		}
		o.failFlow(w, r, out, ErrSessionMismatch, "flow", id)
		return
	}
	owner, err := o.owner(r)
	if err != nil {
		o.failFlow(w, r, out, err, "flow", id)
		return
	}
	if owner != f.Owner {
		o.failFlow(w, r, out, ErrOwnerMismatch, "flow", id)
		return
	}
	if f.State == FlowDone {
		if f.Expired(o.cfg.Now()) {
			o.failFlow(w, r, out, ErrFlowUsed, "flow", id)
			return
		}
		// A reload, or the reconciler settled the flow while the user was
		// still on the provider's page: show the stored result again.
		o.showAgain(w, r, out)
		return
	}
	if f.State == FlowExpired || f.Expired(o.cfg.Now()) {
		o.release(ctx, f.ID)
		o.failFlow(w, r, out, ErrFlowExpired, "flow", id)
		return
	}
	c, err := p.Complete(ctx, f, ret)
	if err != nil {
		o.failFlow(w, r, out, asKind(err, ErrProvider), "flow", id)
		return
	}
	c = o.fill(c, f)
	if err := o.cfg.Store.CompleteFlow(ctx, f.ID, c); err != nil {
		o.failFlow(w, r, out, asKind(err, ErrStore), "flow", id, "connection", c.ID)
		return
	}
	// The binding stays until the flow expires: a reload in this session
	// is shown the same result (showAgain) and stores nothing, and keeping
	// it saves a session write on every return.
	if o.cfg.Logger.Enabled(ctx, slog.LevelInfo) {
		o.cfg.Logger.InfoContext(ctx, "onboard: flow completed", "flow", f.ID, "provider", f.Provider,
			"tenant", f.Owner.Tenant, "connection", c.ID, "state", c.State)
	}
	o.cfg.Hooks.fire(ctx, c)
	out.result, out.hasResult = c, true
	o.showResult(w, r, out)
}

// showAgain answers a return of a flow that is already done, in the
// session that started it and by its owner, with the stored result. It
// stores nothing and fires no hook.
func (o *Onboarder) showAgain(w http.ResponseWriter, r *http.Request, out *outcome) {
	ctx, f := r.Context(), &out.flow
	c := Connection{Provider: f.Provider, Owner: f.Owner, State: f.Outcome, FlowID: f.ID, Source: f.Source, Name: f.Name}
	if f.ConnectionID != "" {
		stored, found, err := o.cfg.Store.Connection(ctx, f.Owner.Tenant, f.Provider, f.ConnectionID)
		if err != nil {
			o.failFlow(w, r, out, fmt.Errorf("%w: %v", ErrStore, err), "flow", f.ID)
			return
		}
		if found {
			c = stored
		}
	}
	out.result, out.hasResult = c, true
	o.showResult(w, r, out)
}

// fill completes what a provider left out of a connection from its flow.
func (o *Onboarder) fill(c Connection, f *Flow) Connection {
	now := o.cfg.Now()
	c.Provider, c.Owner, c.FlowID = f.Provider, f.Owner, f.ID
	if c.Source == "" {
		c.Source = f.Source
	}
	if c.Name == "" {
		c.Name = f.Name
	}
	if c.State == "" {
		c.State = Failed
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt = now
	return c
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

// maxWebhookBytes bounds a webhook delivery's body.
const maxWebhookBytes = 64 << 10

// webhook applies a provider's event delivery to the stored connections.
// It answers 200 once every event is applied (or ignored: an unknown
// connection, a stale or duplicate event), 401 for a bad signature, 413
// for an oversized body, and 503 when the store fails, so that the
// provider delivers again later.
func (o *Onboarder) webhook(w http.ResponseWriter, r *http.Request) {
	p, ok := o.providers[r.PathValue("provider")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	wr, ok := p.(WebhookReceiver)
	if !ok {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxWebhookBytes)
	events, err := wr.Webhook(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		code := http.StatusBadRequest
		switch {
		case errors.As(err, &tooBig):
			code = http.StatusRequestEntityTooLarge
		case errors.Is(err, ErrWebhook):
			code = http.StatusUnauthorized
		}
		o.cfg.Logger.WarnContext(ctx, "onboard: webhook refused", "provider", p.Name(), "status", code, "err", err)
		http.Error(w, http.StatusText(code), code)
		return
	}
	finder := o.cfg.Store.(ConnectionFinder) // checked by New
	for _, ev := range events {
		if err := o.apply(ctx, finder, p.Name(), ev); err != nil {
			o.cfg.Logger.ErrorContext(ctx, "onboard: webhook event not stored", "provider", p.Name(), "connection", ev.ConnectionID, "err", err)
			http.Error(w, "store unavailable, deliver again later", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// apply stores one event. Stale and duplicate events change nothing.
func (o *Onboarder) apply(ctx context.Context, finder ConnectionFinder, provider string, ev Event) error {
	c, found, err := finder.FindConnection(ctx, provider, ev.ConnectionID)
	if err != nil {
		return err
	}
	if !found {
		o.cfg.Logger.InfoContext(ctx, "onboard: webhook for an unknown connection ignored", "provider", provider, "connection", ev.ConnectionID)
		return nil
	}
	if !ev.At.After(c.UpdatedAt) {
		o.cfg.Logger.DebugContext(ctx, "onboard: stale or duplicate webhook event ignored", "provider", provider, "connection", c.ID)
		return nil
	}
	if ev.Deleted {
		return o.cfg.Store.DeleteConnection(ctx, c.Owner.Tenant, provider, c.ID)
	}
	changed := ev.State != "" && ev.State != c.State
	if ev.State != "" {
		c.State = ev.State
	}
	c.Message, c.UpdatedAt = ev.Message, ev.At
	if err := o.cfg.Store.SaveConnection(ctx, c); err != nil {
		return err
	}
	if changed {
		o.cfg.Hooks.fire(ctx, c)
	}
	return nil
}
