package onboard

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// runBatch bounds what one pass of the runner takes on of each kind.
const runBatch = 500

// Report counts what one pass of the runner did.
type Report struct {
	// Settled is how many expired pending flows (their browser never
	// came back) were settled as abandoned.
	Settled int
	// Cleaned is how many done flows had what they made at the provider
	// removed by this pass: after an earlier attempt failed, or, for an
	// abandoned flow, once it expired.
	Cleaned int
	// Pruned is how many old flows and detached records were deleted.
	Pruned int
	// Refreshed is how many connections were checked at their provider,
	// and Changed how many of those changed state.
	Refreshed, Changed int
	// Errors is how many steps failed; the next pass tries them again.
	Errors int
}

// RunOnce does one pass of the background work, in this order:
//   - it retries the provider cleanup of flows whose cleanup failed, and
//     cleans up again abandoned flows that have expired since (what their
//     hosted page made after they were settled);
//   - it settles expired pending flows (their browser never came back) as
//     abandoned and removes what they made at the provider: it never
//     attaches a connection, whatever the provider holds, since only the
//     flow's own browser can do that;
//   - it deletes flows that expired more than Config.Retain ago;
//   - it asks each [Refresher] provider for the state of connections not
//     checked for Config.RefreshEvery, a tenant at a time, and applies
//     what changed as events. A tenant whose refresh fails is asked again
//     after Config.RefreshEvery; after a refusal of that tenant (ErrRefused)
//     the other tenants go on, after any other error (a 429, a 5xx, no
//     answer) the provider is left alone until the next pass.
//
// Each step takes at most 500 items a pass, and each call to the store or
// a provider has its own deadline (Config.Timeout). Passes on several
// instances at once are safe: each flow completes once.
func (o *Onboarder) RunOnce(ctx context.Context) (Report, error) {
	var rep Report
	var errs []error
	now := o.cfg.Now()
	note := func(err error) {
		if err != nil {
			rep.Errors++
			errs = append(errs, err)
		}
	}

	// Flows to clean up: those expired first, then the others, except
	// abandoned flows that have not expired yet (cleaned once they have).
	expired, err := o.flows(ctx, FlowQuery{Cleanup: true, ExpiredBefore: now, Limit: runBatch})
	note(err)
	dirty, err := o.flows(ctx, FlowQuery{Cleanup: true, Limit: runBatch})
	note(err)
	seen := make(map[string]bool, len(expired))
	for _, f := range append(expired, dirty...) {
		if seen[f.ID] || o.awaitsExpiry(f) {
			continue
		}
		seen[f.ID] = true
		if clean, _ := step(ctx, o, func(ctx context.Context) (bool, error) { return o.cleanup(ctx, f), nil }); !clean {
			note(fmt.Errorf("%w: flow %s: cleanup failed again", ErrProvider, f.ID))
			continue
		}
		rep.Cleaned++
	}

	// A pending flow is settled once it has closed (closedAt: Timeout
	// after its expiry).
	stale, err := o.flows(ctx, FlowQuery{ExpiredBefore: o.closedBefore(now), Limit: runBatch})
	note(err)
	for _, f := range stale {
		clean, serr := step(ctx, o, func(ctx context.Context) (bool, error) {
			return o.settle(ctx, f, Abandoned, "expired without its browser coming back")
		})
		switch {
		case errors.Is(serr, ErrFlowUsed): // its browser came back meanwhile
		case serr != nil:
			note(serr)
		default:
			rep.Settled++
			if !clean {
				note(fmt.Errorf("%w: flow %s: what it made is still at the provider; the next pass retries", ErrProvider, f.ID))
			}
		}
	}

	rep.Pruned, err = step(ctx, o, func(ctx context.Context) (int, error) {
		return o.cfg.Store.Prune(ctx, now.Add(-o.cfg.Retain))
	})
	note(classify(err, ErrStore))

	for _, p := range o.cfg.Providers {
		if r, ok := p.(Refresher); ok {
			o.refresh(ctx, p.Name(), r, now, &rep, note)
		}
	}
	return rep, errors.Join(errs...)
}

// step runs fn under its own deadline (o's Config.Timeout), as a user's
// request would be: every call of the runner to the store or a provider
// is one step, so that one that hangs costs a pass that long, not the
// pass.
func step[T any](ctx context.Context, o *Onboarder, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	return fn(ctx)
}

// flows queries the store's flows as one step.
func (o *Onboarder) flows(ctx context.Context, q FlowQuery) ([]Flow, error) {
	fs, err := step(ctx, o, func(ctx context.Context) ([]Flow, error) { return o.cfg.Store.Flows(ctx, q) })
	return fs, classify(err, ErrStore)
}

// refresh checks one provider's least recently checked connections, a
// tenant at a time. A tenant whose refresh fails has its connections
// checked again after Config.RefreshEvery, like the others: left at the
// front of the queue, it would stop every pass before the other tenants.
// A refusal (ErrRefused: the provider refused this tenant's request) goes
// on with the next tenant; any other error (the provider is down, slow or
// rate-limited) stops the provider's refresh until the next pass.
func (o *Onboarder) refresh(ctx context.Context, provider string, r Refresher, now time.Time, rep *Report, note func(error)) {
	cs, err := step(ctx, o, func(ctx context.Context) ([]Connection, error) {
		return o.cfg.Store.Connections(ctx, ConnectionQuery{Provider: provider,
			CheckedBefore: now.Add(-o.cfg.RefreshEvery), Limit: runBatch})
	})
	if err != nil {
		note(classify(err, ErrStore))
		return
	}
	byTenant := make(map[string][]Connection)
	var tenants []string
	for _, c := range cs {
		if c.State == Revoked { // quarantined: nothing to learn, keep the record
			o.checked(ctx, c, now, note)
			continue
		}
		if _, seen := byTenant[c.Owner.Tenant]; !seen {
			tenants = append(tenants, c.Owner.Tenant)
		}
		byTenant[c.Owner.Tenant] = append(byTenant[c.Owner.Tenant], c)
	}
	for _, tenant := range tenants {
		events, err := step(ctx, o, func(ctx context.Context) ([]Event, error) {
			pctx, end := o.tel.provider(ctx, provider, "Refresh")
			events, err := r.Refresh(pctx, tenant, byTenant[tenant])
			end(err)
			return events, err
		})
		if err != nil {
			// The tenant goes to the back of the queue either way: left at
			// the front, a tenant that always fails would stop every pass
			// before the others.
			err = classify(err, ErrProvider)
			note(err)
			for _, c := range byTenant[tenant] {
				o.checked(ctx, c, now, note)
			}
			if !errors.Is(err, ErrRefused) {
				o.cfg.Logger.WarnContext(ctx, "onboard: refresh stopped until the next pass", "provider", provider,
					"tenant", tenant, "err", err)
				return
			}
			o.cfg.Logger.WarnContext(ctx, "onboard: refresh of a tenant refused; its connections are checked again after RefreshEvery",
				"provider", provider, "tenant", tenant, "connections", len(byTenant[tenant]), "err", err)
			continue
		}
		changed := make(map[string]bool, len(events))
		for _, ev := range events {
			ok, err := step(ctx, o, func(ctx context.Context) (bool, error) { return o.apply(ctx, provider, ev, now) })
			note(err)
			changed[ev.ConnectionID] = true
			if ok {
				rep.Changed++
			}
		}
		for _, c := range byTenant[tenant] {
			rep.Refreshed++
			if changed[c.ID] {
				continue // apply saved it with CheckedAt
			}
			o.checked(ctx, c, now, note)
		}
	}
}

// checked records that connection c, as read before the provider was
// asked, was checked at now. It writes c back only as read: a change made
// meanwhile (an event, a quarantine, a deletion) stays, and the
// connection is checked again at the next pass.
func (o *Onboarder) checked(ctx context.Context, c Connection, now time.Time, note func(error)) {
	next := c
	next.CheckedAt = now
	_, err := step(ctx, o, func(ctx context.Context) (bool, error) { return o.cfg.Store.SwapConnection(ctx, c, next) })
	note(classify(err, ErrStore))
}

// Run calls RunOnce every interval until ctx ends, logging what each pass
// did. Run it in its own goroutine on one or more instances.
func (o *Onboarder) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rep, err := o.RunOnce(ctx)
		switch {
		case err != nil:
			o.cfg.Logger.WarnContext(ctx, "onboard: runner pass", "report", rep, "err", err)
		case rep != Report{}:
			o.cfg.Logger.InfoContext(ctx, "onboard: runner pass", "report", rep)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
