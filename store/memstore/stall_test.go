//go:build stall && !race

package memstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/store/memstore"
)

// TestStall holds a million pending flows and times single calls, as the
// requests of a busy instance would make them: a start (CreateFlow) and a
// return (Flow, then CompleteFlow). At the 99.9th percentile each stays
// under a millisecond: no call waits for work on the whole store, and the
// garbage collector, running meanwhile, does not stop them for long. The
// runner's queries of expired flows (every flow expired) and of
// connections to check take under a millisecond; and the same calls go on
// while the flows done meanwhile are pruned, and stay under a millisecond
// too. It takes 7 to 14 seconds and about 1.2 GB; run it without the
// race detector:
//
//	go test -tags stall -run TestStall -v ./store/memstore/
func TestStall(t *testing.T) {
	const (
		held = 1_000_000
		ops  = 200_000
	)
	ctx := context.Background()
	now := time.Now()
	s := memstore.New(memstore.Options{MaxFlows: held + ops})
	// 2,500 tenants of 400 pending flows (20 users of 20 flows each), so
	// that each start below counts a tenant's flows in full, under the
	// tenant cap (500) and an owner cap that leaves room for the starts.
	ownerOf := func(i int) onboard.Owner {
		return onboard.Owner{Tenant: fmt.Sprint("tenant-", i%2500), User: fmt.Sprint("user-", i%50_000)}
	}
	lim := onboard.Limits{PerOwner: 40, PerTenant: onboard.DefaultMaxFlowsPerTenant}
	// Flow i starts i µs after the first, as a busy instance's would; all
	// have expired at later.
	at := func(i int) time.Time { return now.Add(time.Duration(i) * time.Microsecond) }
	later := now.Add(onboard.DefaultFlowTTL + time.Hour)
	ids := make([]string, 0, held)
	fill := time.Now()
	for i := range held {
		f := flow(ownerOf(i), at(i))
		require.NoError(t, s.CreateFlow(ctx, f, lim))
		ids = append(ids, f.ID)
	}
	t.Logf("filled %d flows in %s", s.Len(), time.Since(fill).Round(time.Millisecond))

	starts := make([]time.Duration, ops)
	returns := make([]time.Duration, ops)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range ops {
		f := flow(ownerOf(held+i), at(held+i))
		t0 := time.Now()
		err := s.CreateFlow(ctx, f, lim)
		starts[i] = time.Since(t0)
		require.NoError(t, err)

		id := ids[rng.IntN(len(ids))]
		t0 = time.Now()
		got, found, err := s.Flow(ctx, id)
		if err == nil && found {
			err = s.CompleteFlow(ctx, id, onboard.Connection{Provider: got.Provider, ID: "c-" + id[:12],
				Owner: got.Owner, State: onboard.Connected, CreatedAt: now, UpdatedAt: now, CheckedAt: at(held + i)}, false)
		}
		returns[i] = time.Since(t0)
		if err != nil && err != onboard.ErrFlowUsed { // a flow drawn twice is used
			t.Fatal(err)
		}
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"CreateFlow", starts}, {"Flow+CompleteFlow", returns}} {
		slices.Sort(m.d)
		p := func(q float64) time.Duration { return testutil.Quantile(m.d, q) }
		t.Logf("%s with %d flows held, %d calls: p50 %s, p99 %s, p99.9 %s, max %s", m.name, held, ops,
			p(0.5), p(0.99), p(0.999), m.d[len(m.d)-1])
		require.Less(t, p(0.999), time.Millisecond, "%s p99.9", m.name)
	}

	// The runner's query of expired flows, at a time when every flow held
	// has expired: it visits about Limit flows, not the million. It is
	// timed with the collector at rest: marking the heap the loop above
	// left behind adds its assists (up to about 1 ms here) to whatever
	// runs meanwhile, which the loop above measures.
	runtime.GC()
	var queries []time.Duration
	for range 11 {
		t0 := time.Now()
		expired, err := s.Flows(ctx, onboard.FlowQuery{ExpiredBefore: later, Limit: 500})
		queries = append(queries, time.Since(t0))
		require.NoError(t, err)
		require.Len(t, expired, 500)
	}
	slices.Sort(queries)
	t.Logf("the runner's query of 500 expired flows of %d: median %s", s.Len(), queries[len(queries)/2])
	require.Less(t, queries[len(queries)/2], time.Millisecond, "the runner's query")

	// The runner's query of connections to check, of those the returns
	// above saved: it visits about Limit of them too.
	queries = queries[:0]
	for range 11 {
		t0 := time.Now()
		conns, err := s.Connections(ctx, onboard.ConnectionQuery{Provider: "cdata", CheckedBefore: later, Limit: 500})
		queries = append(queries, time.Since(t0))
		require.NoError(t, err)
		require.Len(t, conns, 500)
	}
	slices.Sort(queries)
	t.Logf("the runner's query of 500 connections to check: median %s", queries[len(queries)/2])
	require.Less(t, queries[len(queries)/2], time.Millisecond, "the runner's query of connections")

	// The runner's prune of the flows done above, all expired by the
	// time it passes, while starts and returns go on: they take turns
	// with its batches instead of waiting for all of it.
	pruned := make(chan error, 1)
	go func() {
		n, err := s.Prune(ctx, later)
		t.Logf("pruned %d done flows", n)
		pruned <- err
	}()
	var during []time.Duration
	for i := 0; ; i++ {
		select {
		case err := <-pruned:
			require.NoError(t, err)
			slices.Sort(during)
			p := func(q float64) time.Duration { return testutil.Quantile(during, q) }
			t.Logf("starts and returns during the prune, %d calls: p50 %s, p99 %s, p99.9 %s, max %s", len(during),
				p(0.5), p(0.99), p(0.999), during[len(during)-1])
			require.Greater(t, len(during), 1000, "calls went on during the prune")
			require.Less(t, p(0.999), time.Millisecond, "p99.9 during the prune")
			return
		default:
		}
		f := flow(ownerOf(held+ops+i), later.Add(time.Duration(i)*time.Microsecond)) // not pruned: it expires after later
		t0 := time.Now()
		err := s.CreateFlow(ctx, f, lim)
		during = append(during, time.Since(t0))
		require.NoError(t, err)
		t0 = time.Now()
		_, _, err = s.Flow(ctx, f.ID)
		if err == nil {
			err = s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, false)
		}
		during = append(during, time.Since(t0))
		require.NoError(t, err)
	}
}
