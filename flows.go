package onboard

import (
	"context"
	"errors"
	"time"
)

// evictTries bounds how often a start at the owner's cap settles an older
// flow and asks again: concurrent starts of one owner race for the slots
// their evictions free, and every round admits at least one of them.
const evictTries = 64

// admit saves a new flow through the Store's atomic admission. At the
// owner's cap it settles the owner's oldest pending flow as abandoned and
// tries again, so that walk-aways never lock a user out; at the tenant's
// cap the start is refused. Either way the provider has not been asked
// for anything yet.
func (o *Onboarder) admit(ctx context.Context, f Flow) error {
	lim := Limits{PerOwner: o.cfg.MaxFlowsPerOwner, PerTenant: o.cfg.MaxFlowsPerTenant}
	for try := 1; ; try++ {
		err := o.cfg.Store.CreateFlow(ctx, f, lim)
		if !errors.Is(err, ErrOwnerLimit) || try == evictTries || ctx.Err() != nil {
			return classify(err, ErrStore)
		}
		if err := o.evictOldest(ctx, f.Owner, f.CreatedAt); err != nil {
			return err
		}
	}
}

// evictOldest settles the owner's oldest unexpired pending flow as
// abandoned, and the closed ones met on the way (the runner would settle
// those anyway); expired flows not closed yet are left to complete.
func (o *Onboarder) evictOldest(ctx context.Context, owner Owner, now time.Time) error {
	flows, err := o.cfg.Store.Flows(ctx, FlowQuery{Owner: owner, Limit: o.cfg.MaxFlowsPerOwner + 1})
	if err != nil {
		return classify(err, ErrStore)
	}
	for _, old := range flows {
		if old.Expired(now) && !now.After(o.closedAt(old)) {
			continue // expired, so not counted by the cap, and not closed: a return may still complete it
		}
		_, err := o.settle(ctx, old, Abandoned, "replaced by a newer start of the same user")
		switch {
		case errors.Is(err, ErrFlowUsed):
			continue // settled by a concurrent start, or its browser came back
		case err != nil:
			return err
		}
		if !old.Expired(now) {
			return nil
		}
	}
	return nil
}

// settle completes a pending flow without its browser, as Abandoned or
// Revoked, fires the hook, and removes what the flow made at the
// provider. The flow is marked for cleanup in the same atomic step that
// completes it, so what the provider call below fails to remove, the
// runner removes later: clean reports whether nothing is left to remove.
// It returns ErrFlowUsed when the flow was done already.
func (o *Onboarder) settle(ctx context.Context, f Flow, outcome State, why string) (clean bool, err error) {
	cleanup := !f.Reconnect || outcome == Revoked
	c := o.fill(Connection{State: outcome}, f)
	if err := o.completeFlow(ctx, f, c, cleanup); err != nil {
		return false, classify(err, ErrStore)
	}
	o.tel.flow(ctx, o.tel.completed, f.Provider, outcome)
	o.cfg.Logger.InfoContext(ctx, "onboard: flow settled", "flow", f.ID, "provider", f.Provider,
		"tenant", f.Owner.Tenant, "user", f.Owner.User, "state", outcome, "why", why)
	if outcome != Revoked {
		o.cfg.Hooks.fire(ctx, c, false)
	}
	f.State, f.Outcome = FlowDone, outcome
	return !cleanup || o.cleanup(ctx, f), nil
}

// closedAt is when pending flow f closes: Config.Timeout after it
// expired. Until then a return that came within the flow's lifetime may
// still be asking its provider (or have reached an instance whose clock is
// a little behind): the runner leaves the flow pending, and another
// browser's return still has what it made quarantined.
func (o *Onboarder) closedAt(f Flow) time.Time { return f.ExpiresAt.Add(o.cfg.Timeout) }

// closedBefore is the expiry before which pending flows have closed at now
// (closedAt before now), for a store's query.
func (o *Onboarder) closedBefore(now time.Time) time.Time { return now.Add(-o.cfg.Timeout) }

// recheckTimeout bounds completeFlow's reading again after a store error.
const recheckTimeout = 2 * time.Second

// completeFlow completes pending flow f with c through the store
// (Store.CompleteFlow). A store's error may come after its write
// committed: the connection dropped, or the deadline ended, as the
// database answered. So when c attaches a connection, on an error other
// than the store's answers, the flow and the connection are read again
// (within recheckTimeout, whatever is left of ctx's deadline). When they
// show this call's own completion (the flow done as asked; the connection
// as c saved it, with c's UpdatedAt, in microseconds, which another call
// has only if made in the same microsecond), it goes on as completed: its
// hook fires and the user sees the result. When the flow
// is done but the connection is not c's (another return completed the
// flow, or a quarantine revoked the connection since), it answers
// ErrFlowUsed, as for a concurrent completion: the stored result is shown
// and this call fires nothing. An outcome without a connection (abandoned,
// revoked) leaves nothing that tells one call from another: its error
// stands, and a lost answer loses its hook.
func (o *Onboarder) completeFlow(ctx context.Context, f Flow, c Connection, cleanup bool) error {
	err := o.cfg.Store.CompleteFlow(ctx, f.ID, c, cleanup)
	if err == nil || c.ID == "" ||
		errors.Is(err, ErrFlowUsed) || errors.Is(err, ErrUnknownFlow) || errors.Is(err, ErrRevoked) {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recheckTimeout)
	defer cancel()
	got, found, rerr := o.cfg.Store.Flow(rctx, f.ID)
	if rerr != nil || !found || got.State != FlowDone {
		return err
	}
	stored, found, rerr := o.cfg.Store.FindConnection(rctx, c.Provider, c.ID)
	switch {
	case rerr != nil:
		return err
	case got.Outcome != c.State || got.Message != c.Message || got.ConnectionID != c.ID || !found ||
		stored.FlowID != f.ID || stored.State != c.State || !stored.UpdatedAt.Equal(c.UpdatedAt):
		return ErrFlowUsed
	}
	o.cfg.Logger.WarnContext(ctx, "onboard: the store failed to answer a completion it had stored; going on as completed",
		"flow", f.ID, "provider", f.Provider, "err", err)
	return nil
}

// cleanup removes what a done flow made at the provider and clears the
// flow's Cleanup. A failure is logged; the runner tries again.
//
// An abandoned flow keeps its Cleanup until it expires: its hosted page
// can still make something after it was settled (a user who finishes the
// page of a flow a newer start replaced, or a Begin still running when
// the flow was settled), and the runner's pass after the flow expired
// removes that too.
func (o *Onboarder) cleanup(ctx context.Context, f Flow) bool {
	err := o.cancel(ctx, f)
	if errors.Is(err, ErrUnknownProvider) {
		return false
	}
	if err == nil && !o.awaitsExpiry(f) {
		err = o.cfg.Store.SetCleanup(ctx, f.ID, false)
	}
	if err != nil {
		o.cfg.Logger.WarnContext(ctx, "onboard: provider cleanup failed; the runner retries it", "flow", f.ID,
			"provider", f.Provider, "err", err)
		return false
	}
	return true
}

// cancel asks flow f's provider to remove what the flow made (Cancel).
func (o *Onboarder) cancel(ctx context.Context, f Flow) error {
	p, ok := o.providers[f.Provider]
	if !ok { // a flow of a provider the app no longer configures
		o.cfg.Logger.WarnContext(ctx, "onboard: cleanup of a flow whose provider is not configured; configure it again to clean up",
			"flow", f.ID, "provider", f.Provider)
		return ErrUnknownProvider
	}
	pctx, end := o.tel.provider(ctx, f.Provider, "Cancel")
	err := classify(p.Cancel(pctx, f), ErrProvider)
	end(err)
	return err
}

// awaitsExpiry reports whether done flow f is an abandoned flow that has
// not expired yet, whose Cleanup is kept until it has (see cleanup).
func (o *Onboarder) awaitsExpiry(f Flow) bool {
	return f.Outcome == Abandoned && !f.Expired(o.cfg.Now())
}

// quarantine handles a flow that came back, within its lifetime, where
// it must not: in a browser that did not start it, or (pending) in its own
// browser signed in as another owner or signed out (where says which).
// Whether the flow is pending or done, what it made is deleted (or, for a
// reconnect, disabled for good) at the provider, the stored connection is
// marked Revoked, Hooks.Revoked fires and a security event is logged. A link to a hosted
// page sent to a victim can therefore never put the victim's credentials
// in the sender's tenant through the victim's browser. A failure is
// logged. When the store cannot settle a pending flow, the provider is
// still asked to remove what the flow made, so that the flow's next
// return, which is then let through, finds nothing to attach.
func (o *Onboarder) quarantine(ctx context.Context, f Flow, where string) {
	o.cfg.Logger.WarnContext(ctx, "onboard: security: a flow came back where it must not; quarantining what it made",
		"security", true, "where", where, "flow", f.ID, "provider", f.Provider, "tenant", f.Owner.Tenant,
		"user", f.Owner.User, "state", f.State, "connection", f.ConnectionID, "reconnect", f.Reconnect)
	if err := o.revoke(ctx, f, where); err != nil {
		o.cfg.Logger.ErrorContext(ctx, "onboard: security: quarantine incomplete: the flow may stay pending, and the provider was asked to remove what it made",
			"security", true, "flow", f.ID, "err", err)
	}
}

// revoke settles or marks flow f Revoked and removes what it made: the
// work of quarantine.
func (o *Onboarder) revoke(ctx context.Context, f Flow, where string) error {
	if f.State == FlowPending {
		_, err := o.settle(ctx, f, Revoked, "came back in "+where)
		switch {
		case err == nil:
			return o.revokeStored(ctx, f)
		case !errors.Is(err, ErrFlowUsed):
			// The flow stays pending: fail closed at the provider.
			if cerr := o.cancel(ctx, f); cerr != nil {
				return errors.Join(err, cerr)
			}
			return err
		}
		// Completed meanwhile: quarantine the done flow.
		var found bool
		if f, found, err = o.cfg.Store.Flow(ctx, f.ID); err != nil || !found {
			return classify(err, ErrStore)
		}
	}
	// An abandoned reconnect attached nothing, but the page it opened
	// edits its connection still, and may have been sent to a victim: the
	// connection is quarantined as if the flow had attached it.
	if f.Outcome == Revoked || (f.Outcome == Abandoned && !f.Reconnect) {
		if f.Cleanup {
			o.cleanup(ctx, f)
		}
		return nil // nothing attached
	}
	if err := o.cfg.Store.SetCleanup(ctx, f.ID, true); err != nil {
		return classify(err, ErrStore)
	}
	if err := o.revokeStored(ctx, f); err != nil {
		return err
	}
	o.cleanup(ctx, f)
	return nil
}

// revokeStored marks the stored connection of flow f Revoked (the one it
// reconnects, or the one it attached) and fires Hooks.Revoked. The mark
// is written with SwapConnection, so that a concurrent deletion is not
// undone.
func (o *Onboarder) revokeStored(ctx context.Context, f Flow) error {
	c := o.fill(Connection{State: Revoked}, f)
	for try := 0; f.ConnectionID != ""; try++ {
		if try == swapTries {
			return errConnectionBusy
		}
		stored, found, err := o.cfg.Store.FindConnection(ctx, f.Provider, f.ConnectionID)
		if err != nil {
			return classify(err, ErrStore)
		}
		if !found || stored.Owner.Tenant != f.Owner.Tenant {
			break
		}
		next := stored
		next.State, next.UpdatedAt = Revoked, o.cfg.Now()
		next.Message = "This connection was stopped because its setup came back in a browser that did not start it. Delete it, and connect again from your own browser."
		ok, err := o.cfg.Store.SwapConnection(ctx, stored, next)
		if err != nil {
			return classify(err, ErrStore)
		}
		if ok {
			c = next
			break
		}
	}
	o.cfg.Hooks.fire(ctx, c, false)
	return nil
}

// fill completes what a provider left out of a connection from its flow.
// A connection that is not attached (Abandoned, Revoked) has no ID.
func (o *Onboarder) fill(c Connection, f Flow) Connection {
	now := o.cfg.Now().Truncate(time.Microsecond) // as stores keep it: completeFlow compares it
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
	if c.State == Abandoned || c.State == Revoked {
		c.ID = ""
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt, c.CheckedAt = now, now // just verified with the provider
	return c
}
