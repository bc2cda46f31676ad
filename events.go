package onboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// maxWebhookBytes bounds a webhook delivery's body.
const maxWebhookBytes = 64 << 10

// webhook applies a provider's event delivery to the stored connections.
// It answers 200 once every event is applied or dropped (a stale or
// duplicate event, a deletion of an unknown connection), 401 for a bad
// signature, 413 for an oversized body, and 503 when the store fails, so
// that the provider delivers again later.
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
	ctx, cancel := o.deadline(r)
	defer cancel()
	r.Body = http.MaxBytesReader(w, r.Body, maxWebhookBytes)
	pctx, end := o.tel.provider(ctx, p.Name(), "Webhook")
	events, err := wr.Webhook(r.WithContext(pctx))
	end(err)
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
	for _, ev := range events {
		if _, err := o.apply(ctx, p.Name(), ev, time.Time{}); err != nil {
			o.cfg.Logger.ErrorContext(ctx, "onboard: webhook event not stored", "provider", p.Name(),
				"connection", ev.ConnectionID, "err", err)
			http.Error(w, "store unavailable, deliver again later", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// rank orders events of one connection at the same provider time: a
// failure counts after a success, a deletion after both.
func rank(deleted bool, s State) int {
	switch {
	case deleted:
		return 3
	case s == Failed:
		return 2
	case s == Connected:
		return 1
	}
	return 0
}

// staleness says why ev must not change c, or "" when it applies. Events
// are ordered by the provider's time (EventAt), never the app's clock.
func staleness(ev Event, c Connection) string {
	switch {
	case c.State == Revoked && !ev.Deleted:
		return "the connection is revoked"
	case ev.At.IsZero(): // a state observed now by a refresh
		if !ev.Deleted && (ev.State == "" || ev.State == c.State) {
			return "no change"
		}
		return ""
	case ev.At.Before(c.EventAt):
		return "older than the last event applied"
	case ev.At.Equal(c.EventAt) && rank(ev.Deleted, ev.State) <= rank(false, c.State):
		return "duplicate, or outranked by an event of the same time"
	}
	return ""
}

// swapTries bounds how often a write of a connection read before is
// tried again after a concurrent write came between (SwapConnection).
const swapTries = 16

// errConnectionBusy is the error of a connection that kept changing while
// it was written.
var errConnectionBusy = fmt.Errorf("%w: the connection kept changing while it was written", ErrStore)

// apply stores one provider event and fires the hooks of a change. An
// event for a connection that is not stored yet (its flow has not
// completed) is kept as a detached record, which completion merges: it is
// never attached to a tenant by itself. With a non-zero checked, the
// connection's CheckedAt is set (a refresh). It reports whether the event
// changed anything. The connection is written with SwapConnection: when
// another write (an event on another instance, a quarantine, a refresh)
// came between its read and its write, it is read again and the event
// decided again, so that events are ordered by the provider's time
// whatever instance receives them.
func (o *Onboarder) apply(ctx context.Context, provider string, ev Event, checked time.Time) (bool, error) {
	log := o.cfg.Logger.With("provider", provider, "connection", ev.ConnectionID, "event_state", ev.State,
		"deleted", ev.Deleted, "event_at", ev.At)
	for range swapTries {
		c, found, err := o.cfg.Store.FindConnection(ctx, provider, ev.ConnectionID)
		if err != nil {
			return false, classify(err, ErrStore)
		}
		now := o.cfg.Now()
		if !found {
			if ev.Deleted || ev.At.IsZero() {
				log.InfoContext(ctx, "onboard: event dropped: unknown connection")
				return false, nil
			}
			c = Connection{Provider: provider, ID: ev.ConnectionID, State: ev.State, Message: ev.Message,
				EventAt: ev.At, CreatedAt: now, UpdatedAt: now}
			ok, err := o.cfg.Store.SwapConnection(ctx, Connection{}, c)
			switch {
			case err != nil:
				return false, classify(err, ErrStore)
			case !ok:
				continue // stored meanwhile: decide again
			}
			log.InfoContext(ctx, "onboard: event kept for a connection whose flow has not completed")
			return true, nil
		}
		if why := staleness(ev, c); why != "" {
			log.InfoContext(ctx, "onboard: event dropped", "why", why, "stored_state", c.State, "stored_event_at", c.EventAt)
			if !checked.IsZero() {
				next := c
				next.CheckedAt = checked
				// Changed meanwhile: it is checked again at the next pass.
				_, err := o.cfg.Store.SwapConnection(ctx, c, next)
				return false, classify(err, ErrStore)
			}
			return false, nil
		}
		detached := c.Owner.IsZero()
		if ev.Deleted {
			deleted, err := o.cfg.Store.DeleteConnection(ctx, provider, c.ID)
			if err != nil {
				return false, classify(err, ErrStore)
			}
			log.InfoContext(ctx, "onboard: connection deleted at the provider")
			if deleted && !detached { // else a concurrent deletion fired the hook
				o.cfg.Hooks.fire(ctx, c, true)
			}
			return deleted, nil
		}
		next := c
		changed := ev.State != "" && ev.State != c.State
		if ev.State != "" {
			next.State = ev.State
		}
		next.Message, next.UpdatedAt = ev.Message, now
		if !ev.At.IsZero() {
			next.EventAt = ev.At
		}
		if !checked.IsZero() {
			next.CheckedAt = checked
		}
		ok, err := o.cfg.Store.SwapConnection(ctx, c, next)
		switch {
		case err != nil:
			return false, classify(err, ErrStore)
		case !ok:
			continue // changed meanwhile: decide again
		}
		log.InfoContext(ctx, "onboard: event applied", "state", next.State, "changed", changed)
		if changed && !detached {
			o.cfg.Hooks.fire(ctx, next, false)
		}
		return changed, nil
	}
	return false, errConnectionBusy
}
