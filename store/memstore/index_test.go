package memstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/onboardkit/onboard"
)

// TestIndexesAgree runs random starts, returns, cleanups, the runner's
// expiry and prunes, and connections saved and deleted, of
// few owners and tenants so that caps are reached, with flows expiring
// as the clock moves, and checks after each call that every flow is where
// its state says, at the position its record keeps.
func TestIndexesAgree(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	s := New(Options{MaxFlows: 300})
	now := time.Unix(1_700_000_000, 0)
	lim := onboard.Limits{PerOwner: 6, PerTenant: 20}
	var ids []string
	var refused [3]int // by the owner's cap, the tenant's, MaxFlows
	for i := range 20_000 {
		now = now.Add(time.Duration(rng.IntN(2)) * time.Second)
		switch op := rng.IntN(10); {
		case op < 5:
			o := onboard.Owner{Tenant: fmt.Sprint("t", rng.IntN(4)), User: fmt.Sprint("u", rng.IntN(8))}
			f := onboard.Flow{ID: fmt.Sprint("f", i), Owner: o, Provider: "p", CreatedAt: now,
				ExpiresAt: now.Add(time.Duration(50+rng.IntN(250)) * time.Second)}
			switch err := s.CreateFlow(ctx, f, lim); {
			case err == nil:
				ids = append(ids, f.ID)
			case errors.Is(err, onboard.ErrOwnerLimit):
				refused[0]++
			case errors.Is(err, onboard.ErrTooManyFlows) && atCap(s.byTenant.lists[o.Tenant], now, lim.PerTenant):
				refused[1]++
			case errors.Is(err, onboard.ErrTooManyFlows):
				refused[2]++
			}
		case op < 8 && len(ids) > 0:
			id := ids[len(ids)-1-rng.IntN(min(len(ids), 60))] // a recent flow
			c := onboard.Connection{Provider: "p", State: onboard.Connected}
			if rng.IntN(2) == 0 {
				c.ID = fmt.Sprint("c", rng.IntN(50))
			}
			_ = s.CompleteFlow(ctx, id, c, rng.IntN(5) == 0)
		case op < 9 && len(ids) > 0:
			_ = s.SetCleanup(ctx, ids[rng.IntN(len(ids))], rng.IntN(4) == 0)
		default: // what the runner does
			expired, err := s.Flows(ctx, onboard.FlowQuery{ExpiredBefore: now, Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range expired {
				if err := s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, false); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Prune(ctx, now.Add(-20*time.Second)); err != nil {
				t.Fatal(err)
			}
			// A refresh or an event saves a connection, of either
			// provider, attached or detached; or one is deleted.
			c := onboard.Connection{Provider: []string{"p", "q"}[rng.IntN(2)], ID: fmt.Sprint("c", rng.IntN(50)),
				CheckedAt: now.Add(-time.Duration(rng.IntN(100)) * time.Second), UpdatedAt: now}
			if rng.IntN(4) != 0 {
				c.Owner = onboard.Owner{Tenant: fmt.Sprint("t", rng.IntN(4)), User: "u"}
			}
			if rng.IntN(5) == 0 {
				_, _ = s.DeleteConnection(ctx, c.Provider, c.ID)
			} else if err := s.SaveConnection(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.check(now, lim); err != nil {
			t.Fatalf("after call %d: %v", i, err)
		}
		if i%10 == 0 {
			s.checkQueries(t, now, rng)
			s.checkConnections(t, now, rng)
		}
	}
	t.Logf("%d flows admitted; refused by the owner's cap %d, by the tenant's %d, by MaxFlows %d", len(ids), refused[0], refused[1], refused[2])
	if refused[0] == 0 || refused[1] == 0 || refused[2] == 0 {
		t.Fatal("the caps were not reached")
	}
}

// check reports the first place where the store's structures disagree,
// or where a cap is passed.
func (s *Store) check(now time.Time, lim onboard.Limits) error {
	for name, h := range map[string]*flowHeap{"pending": s.pending, "dirty": s.dirty, "done": s.done} {
		for i, r := range h.items {
			if r.pos != i {
				return fmt.Errorf("%s heap: flow %s at %d keeps %d", name, r.flow.ID, i, r.pos)
			}
			if p := (i - 1) / 2; i > 0 && h.Less(i, p) {
				return fmt.Errorf("%s heap: flow %s expires before its parent", name, r.flow.ID)
			}
			if s.flows[r.flow.ID] != r {
				return fmt.Errorf("%s heap: flow %s is not held", name, r.flow.ID)
			}
		}
	}
	listed := 0
	for slot, lists := range []map[string][]*record{ownerLists(s.byOwner), s.byTenant.lists} {
		for k, l := range lists {
			unexpired := 0
			for i, r := range l {
				if r.listed[slot] != i || r.flow.State != onboard.FlowPending {
					return fmt.Errorf("list %q: flow %s at %d keeps %d, state %s", k, r.flow.ID, i, r.listed[slot], r.flow.State)
				}
				if !r.flow.ExpiresAt.Before(now) {
					unexpired++
				}
			}
			if max := []int{lim.PerOwner, lim.PerTenant}[slot]; unexpired > max {
				return fmt.Errorf("list %q: %d unexpired pending flows, cap %d", k, unexpired, max)
			}
			if slot == 1 {
				listed += len(l)
			}
		}
	}
	attached := 0
	for p, h := range s.checks {
		for i, r := range h.items {
			if r.pos != i || r.c.Provider != p || r.c.Owner.IsZero() || s.conns[connKey{r.c.Provider, r.c.ID}] != r {
				return fmt.Errorf("checks heap of %s: connection %s at %d keeps %d", p, r.c.ID, i, r.pos)
			}
			if p := (i - 1) / 2; i > 0 && h.Less(i, p) {
				return fmt.Errorf("checks heap: connection %s is checked before its parent", r.c.ID)
			}
		}
		attached += h.Len()
	}
	for k, r := range s.conns {
		if _, detached := s.detached[k]; detached != r.c.Owner.IsZero() || detached != (r.pos < 0) {
			return fmt.Errorf("connection %v: detached %v, owner %v, position %d", k, detached, r.c.Owner, r.pos)
		}
	}
	inLists := 0
	for tenant, l := range s.tenantConns.lists {
		for i, r := range l {
			if r.listed != i || r.c.Owner.Tenant != tenant || s.conns[connKey{r.c.Provider, r.c.ID}] != r {
				return fmt.Errorf("tenant %q's list: connection %s at %d keeps %d", tenant, r.c.ID, i, r.listed)
			}
		}
		inLists += len(l)
	}
	if inLists != attached {
		return fmt.Errorf("%d connections in tenants' lists, %d attached", inLists, attached)
	}
	if attached+len(s.detached) != len(s.conns) {
		return fmt.Errorf("%d attached and %d detached connections, %d held", attached, len(s.detached), len(s.conns))
	}
	pending, dirty, done := 0, 0, 0
	for id, r := range s.flows {
		switch {
		case r.flow.State == onboard.FlowPending:
			pending++
			if r.pos < 0 || s.pending.items[r.pos] != r {
				return fmt.Errorf("pending flow %s is not in the pending heap", id)
			}
		case r.flow.Cleanup:
			dirty++
			if r.pos < 0 || s.dirty.items[r.pos] != r {
				return fmt.Errorf("flow %s to clean up is not in the dirty heap", id)
			}
		default:
			done++
			if r.pos < 0 || s.done.items[r.pos] != r {
				return fmt.Errorf("done flow %s is not in the done heap", id)
			}
		}
	}
	if pending != s.pending.Len() || pending != listed || dirty != s.dirty.Len() || done != s.done.Len() || len(s.flows) > s.maxFlows {
		return fmt.Errorf("%d pending (heap %d, listed %d), %d dirty (heap %d), %d done (heap %d), %d held of %d",
			pending, s.pending.Len(), listed, dirty, s.dirty.Len(), done, s.done.Len(), len(s.flows), s.maxFlows)
	}
	return nil
}

// checkQueries compares the answers of Flows with a reading of every
// flow held, for queries of the kinds the runner and the core make, with
// limits small and large.
func (s *Store) checkQueries(t *testing.T, now time.Time, rng *rand.Rand) {
	t.Helper()
	o := onboard.Owner{Tenant: fmt.Sprint("t", rng.IntN(4)), User: fmt.Sprint("u", rng.IntN(8))}
	cut := now.Add(time.Duration(rng.IntN(200)-50) * time.Second)
	for _, q := range []onboard.FlowQuery{
		{ExpiredBefore: cut, Limit: 1 + rng.IntN(8)},
		{ExpiredBefore: cut, Limit: 500},
		{Limit: 1 + rng.IntN(8)},
		{Cleanup: true, Limit: 1 + rng.IntN(8)},
		{Cleanup: true, ExpiredBefore: cut, Limit: 1 + rng.IntN(8)},
		{Cleanup: true, Owner: o, Limit: 2},
		{Owner: o, ExpiredBefore: cut, Limit: 2},
		{Owner: o},
	} {
		var want []string
		for _, r := range s.flows {
			f := r.flow
			if (f.State == onboard.FlowPending) != !q.Cleanup || (q.Cleanup && !f.Cleanup) ||
				(!q.Owner.IsZero() && f.Owner != q.Owner) || (!q.ExpiredBefore.IsZero() && !f.ExpiresAt.Before(q.ExpiredBefore)) {
				continue
			}
			want = append(want, f.ID)
		}
		slices.SortFunc(want, func(a, b string) int { return byAge(s.flows[a], s.flows[b]) })
		if q.Limit > 0 && len(want) > q.Limit {
			want = want[:q.Limit]
		}
		got, err := s.Flows(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, len(got))
		for i, f := range got {
			ids[i] = f.ID
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("Flows(%+v) = %v, want %v", q, ids, want)
		}
	}
}

// checkConnections compares the runner's query of connections to check
// with a reading of every connection held.
func (s *Store) checkConnections(t *testing.T, now time.Time, rng *rand.Rand) {
	t.Helper()
	q := onboard.ConnectionQuery{Provider: []string{"", "p", "q"}[rng.IntN(3)],
		CheckedBefore: now.Add(-time.Duration(rng.IntN(100)) * time.Second), Limit: rng.IntN(7), Offset: rng.IntN(3)}
	if rng.IntN(10) == 0 {
		q.Offset = 90 // more than are held
	}
	var want []onboard.Connection
	for _, r := range s.conns {
		if c := r.c; !c.Owner.IsZero() && (q.Provider == "" || c.Provider == q.Provider) && c.CheckedAt.Before(q.CheckedBefore) {
			want = append(want, c)
		}
	}
	slices.SortFunc(want, func(a, b onboard.Connection) int { return byChecked(&a, &b) })
	want = want[min(q.Offset, len(want)):]
	if q.Limit > 0 {
		want = want[:min(q.Limit, len(want))]
	}
	got, err := s.Connections(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, func(a, b onboard.Connection) bool { return a.Provider == b.Provider && a.ID == b.ID }) {
		t.Fatalf("Connections(%+v) = %v, want %v", q, got, want)
	}
}

// ownerLists returns the owners' lists keyed by a string, to be checked
// as the tenants' are.
func ownerLists(p posLists[onboard.Owner, record]) map[string][]*record {
	out := make(map[string][]*record, len(p.lists))
	for o, l := range p.lists {
		out[o.Tenant+"/"+o.User] = l
	}
	return out
}

// TestOldestLongLifetimes: lifetimes too long for a Duration (a zero
// CreatedAt, or centuries) bound nothing, and the oldest flows are still
// found, ties on CreatedAt going by ID.
func TestOldestLongLifetimes(t *testing.T) {
	ctx := context.Background()
	o := onboard.Owner{Tenant: "t", User: "u"}
	year := func(y int) time.Time { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		name  string
		flows []onboard.Flow
		q     onboard.FlowQuery
		want  string
	}{
		{"centuries", []onboard.Flow{
			{ID: "a", CreatedAt: year(1), ExpiresAt: year(2000)}, // 1,999 years
			{ID: "b", CreatedAt: year(1500), ExpiresAt: year(1501)},
		}, onboard.FlowQuery{Limit: 1}, "a"},
		{"zero CreatedAt", []onboard.Flow{
			{ID: "b", ExpiresAt: year(2024)},
			{ID: "a", ExpiresAt: year(2024).Add(time.Hour)},
		}, onboard.FlowQuery{ExpiredBefore: year(2025), Limit: 1}, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{})
			for _, f := range tc.flows {
				f.Owner = o
				if err := s.CreateFlow(ctx, f, onboard.Limits{}); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Flows(ctx, tc.q)
			if err != nil || len(got) != 1 || got[0].ID != tc.want {
				t.Fatalf("Flows(%+v) = %v, %v; want flow %s", tc.q, got, err, tc.want)
			}
		})
	}
}

// TestQueryBounds: a Limit of "as many as there are" (math.MaxInt), a
// large or negative Offset, and a large Limit reserve nothing for what is
// not there.
func TestQueryBounds(t *testing.T) {
	ctx := context.Background()
	s := New(Options{})
	now := time.Unix(1_700_000_000, 0)
	later := now.Add(time.Second)
	o := onboard.Owner{Tenant: "t", User: "u"}
	for i := range 3 {
		c := onboard.Connection{Provider: "p", ID: fmt.Sprint("c", i), Owner: o, CheckedAt: now.Add(-time.Duration(i) * time.Minute)}
		f := onboard.Flow{ID: fmt.Sprint("f", i), Owner: o, CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)}
		if err := s.SaveConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateFlow(ctx, f, onboard.Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		q    onboard.ConnectionQuery
		want int
	}{
		{onboard.ConnectionQuery{CheckedBefore: later, Limit: math.MaxInt}, 3},
		{onboard.ConnectionQuery{CheckedBefore: later, Offset: 1, Limit: math.MaxInt}, 2},
		{onboard.ConnectionQuery{CheckedBefore: later, Offset: math.MaxInt, Limit: 1}, 0},
		{onboard.ConnectionQuery{CheckedBefore: later, Offset: -1, Limit: 2}, 2},
		{onboard.ConnectionQuery{Tenant: "t", Offset: -1}, 3},
		{onboard.ConnectionQuery{CheckedBefore: later, Limit: 100_000}, 3},
	} {
		got, err := s.Connections(ctx, tc.q)
		if err != nil || len(got) != tc.want || cap(got) > 8 {
			t.Errorf("Connections(%+v): %d connections (cap %d), %v; want %d", tc.q, len(got), cap(got), err, tc.want)
		}
	}
	got, err := s.Flows(ctx, onboard.FlowQuery{ExpiredBefore: now, Limit: math.MaxInt})
	if err != nil || len(got) != 3 {
		t.Errorf("Flows(Limit MaxInt): %d flows, %v; want 3", len(got), err)
	}
}
