package onboard

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ReconcileReport counts what one Reconcile pass did.
type ReconcileReport struct {
	// Checked is how many pending flows were looked at.
	Checked int
	// Completed flows were settled: connected, failed or abandoned.
	Completed int
	// Pending flows are still undecided (the user may be on the page).
	Pending int
	// Errors are flows the provider or the store could not settle now;
	// the next pass tries again.
	Errors int
}

// reconcileBatch bounds one pass.
const reconcileBatch = 500

// Reconcile settles pending flows whose browser has not come back within
// Config.ReconcileAfter: it asks each flow's provider (a [Reconciler])
// whether a connection was made, and completes the flow as connected,
// failed or abandoned. A flow that expired at a provider that cannot tell
// is abandoned. Hooks fire as for a return. The Store must be a
// [FlowLister].
func (o *Onboarder) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	lister, ok := o.cfg.Store.(FlowLister)
	if !ok {
		return rep, fmt.Errorf("%w: the Store is not an onboard.FlowLister", ErrConfig)
	}
	now := o.cfg.Now()
	flows, err := lister.PendingFlows(ctx, now.Add(-o.cfg.ReconcileAfter), reconcileBatch)
	if err != nil {
		return rep, fmt.Errorf("%w: %v", ErrStore, err)
	}
	for i := range flows {
		f := &flows[i]
		rep.Checked++
		c, done, err := o.reconcile(ctx, f, now)
		if err == nil && done {
			c = o.fill(c, f)
			err = lister.ResolveFlow(ctx, f.ID, c)
			if errors.Is(err, ErrFlowUsed) {
				continue // the browser came back meanwhile
			}
		}
		switch {
		case err != nil:
			rep.Errors++
			o.cfg.Logger.WarnContext(ctx, "onboard: reconcile", "flow", f.ID, "provider", f.Provider, "err", err)
		case !done:
			rep.Pending++
		default:
			rep.Completed++
			o.cfg.Logger.InfoContext(ctx, "onboard: flow reconciled", "flow", f.ID, "provider", f.Provider,
				"tenant", f.Owner.Tenant, "connection", c.ID, "state", c.State)
			o.cfg.Hooks.fire(ctx, c)
		}
	}
	return rep, nil
}

func (o *Onboarder) reconcile(ctx context.Context, f *Flow, now time.Time) (Connection, bool, error) {
	if r, ok := o.providers[f.Provider].(Reconciler); ok {
		return r.Reconcile(ctx, f)
	}
	if f.Expired(now) {
		return Connection{State: Abandoned}, true, nil
	}
	return Connection{}, false, nil
}

// RunReconciler calls Reconcile every interval until ctx ends. Run it in
// its own goroutine on one or more instances (passes on several
// instances are safe: each flow completes once).
func (o *Onboarder) RunReconciler(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rep, err := o.Reconcile(ctx)
		if err != nil {
			o.cfg.Logger.ErrorContext(ctx, "onboard: reconcile pass", "err", err)
		} else if rep.Checked > 0 {
			o.cfg.Logger.InfoContext(ctx, "onboard: reconcile pass", "checked", rep.Checked, "completed", rep.Completed,
				"pending", rep.Pending, "errors", rep.Errors)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
