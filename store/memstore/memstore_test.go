package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/store/memstore"
	"github.com/onboardkit/onboard/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) onboard.Store { return memstore.New(memstore.Options{}) })
}

var lim = onboard.Limits{PerOwner: onboard.DefaultMaxFlowsPerOwner, PerTenant: onboard.DefaultMaxFlowsPerTenant}

// flow returns a pending flow of owner with fields of typical size, each
// string allocated apart as a request would make it.
func flow(owner onboard.Owner, now time.Time) onboard.Flow {
	return onboard.Flow{ID: storetest.ID(), Owner: owner, Provider: strings.Clone("cdata"),
		Source: strings.Clone("Salesforce"), Name: strings.Clone("Sales CRM"), ReturnTo: strings.Clone("/settings/connections"),
		Browser: storetest.ID(), State: onboard.FlowPending, CreatedAt: now, ExpiresAt: now.Add(onboard.DefaultFlowTTL)}
}

// largest returns the largest flow a start accepts: source, name and
// connection id of 256 four-byte runes each, and a return_to of 1024
// bytes.
func largest(owner onboard.Owner, now time.Time) onboard.Flow {
	f := flow(owner, now)
	f.Source, f.Name = strings.Repeat("𝔘", 256), strings.Repeat("𝔙", 256)
	f.ConnectionID, f.Reconnect = strings.Repeat("𝔚", 256), true
	f.ReturnTo = "/" + strings.Repeat("r", 1023)
	return f
}

// owner returns the i-th owner: one user each, a hundred to a tenant.
func owner(i int) onboard.Owner {
	return onboard.Owner{Tenant: fmt.Sprint("tenant-", i/100), User: fmt.Sprint("user-", i)}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestBytesPerFlow measures the heap a pending flow holds, with fields of
// typical size and with the largest a start accepts. The package
// documentation gives the figures; the bounds here keep them true.
func TestBytesPerFlow(t *testing.T) {
	const n = 50_000
	for _, tc := range []struct {
		name  string
		make  func(onboard.Owner, time.Time) onboard.Flow
		bound uint64
	}{
		// About 10 percent over the figures measured (628 and 4,668
		// bytes), which the package documentation gives.
		{"typical", flow, 700},
		{"largest", largest, 5200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			before := heapInUse()
			s := memstore.New(memstore.Options{})
			for i := range n {
				// Every string of the flow is made here, as a request
				// makes it, and the store is what keeps it.
				require.NoError(t, s.CreateFlow(ctx, tc.make(owner(i), now), lim))
			}
			perFlow := (heapInUse() - before) / n
			t.Logf("%s: %d bytes per pending flow (%d flows)", tc.name, perFlow, s.Len())
			require.Less(t, perFlow, tc.bound)
			runtime.KeepAlive(s)
		})
	}
}

// TestMaxFlows fills the store to MaxFlows: done flows that have expired
// give way to new ones, the earliest first and never one with cleanup
// left; a done flow within its lifetime never does; with no expired done
// flow to drop, starts are refused.
func TestMaxFlows(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s := memstore.New(memstore.Options{MaxFlows: 10, MaxOpenPerTenant: 10})
	var done []onboard.Flow
	for i := range 6 {
		f := flow(owner(i), now.Add(time.Duration(i)*time.Minute))
		require.NoError(t, s.CreateFlow(ctx, f, lim))
		require.NoError(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, i%3 == 0))
		done = append(done, f) // cleanup left on 0 and 3
	}
	for i := 6; i < 10; i++ {
		require.NoError(t, s.CreateFlow(ctx, flow(owner(i), now), lim))
	}
	require.Equal(t, 10, s.Len())
	// Within the done flows' lifetime, none gives way.
	err := s.CreateFlow(ctx, flow(owner(99), now.Add(time.Minute)), lim)
	require.ErrorIs(t, err, onboard.ErrTooManyFlows, "no done flow has expired")
	// Once they have expired, the four without cleanup (1, 2, 4, 5) give
	// way, in expiry order.
	later := now.Add(onboard.DefaultFlowTTL + time.Hour)
	for k, gone := range []int{1, 2, 4, 5} {
		require.NoError(t, s.CreateFlow(ctx, flow(owner(100+k), later), lim))
		require.Equal(t, 10, s.Len())
		_, found, err := s.Flow(ctx, done[gone].ID)
		require.NoError(t, err)
		require.False(t, found, "done flow %d dropped", gone)
	}
	err = s.CreateFlow(ctx, flow(owner(200), later), lim)
	require.ErrorIs(t, err, onboard.ErrTooManyFlows, "only pending flows and flows to clean up are left")
	for _, kept := range []int{0, 3} {
		f, found, err := s.Flow(ctx, done[kept].ID)
		require.NoError(t, err)
		require.True(t, found && f.Cleanup, "flow %d with cleanup left is kept", kept)
	}
	// Once its cleanup is done, a flow can give way too.
	require.NoError(t, s.SetCleanup(ctx, done[3].ID, false))
	require.NoError(t, s.CreateFlow(ctx, flow(owner(201), later), lim))
	_, found, err := s.Flow(ctx, done[3].ID)
	require.NoError(t, err)
	require.False(t, found)
}

// TestMaxOpenPerTenant: a tenant whose flows pending or with cleanup
// left (a user who starts again and again leaves abandoned flows awaiting
// their cleanup) reach MaxOpenPerTenant is refused, and the other
// tenants' starts go on; once the runner has cleaned up some, it can
// start again, without waiting for Prune.
func TestMaxOpenPerTenant(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s := memstore.New(memstore.Options{MaxFlows: 100, MaxOpenPerTenant: 20})
	mallory := onboard.Owner{Tenant: "evil", User: "mallory"}
	var settled []onboard.Flow
	for i := range 20 {
		f := flow(mallory, now)
		require.NoError(t, s.CreateFlow(ctx, f, lim), "start %d", i)
		require.NoError(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, true))
		settled = append(settled, f)
	}
	require.ErrorIs(t, s.CreateFlow(ctx, flow(mallory, now), lim), onboard.ErrTooManyFlows)
	require.NoError(t, s.CreateFlow(ctx, flow(onboard.Owner{Tenant: "acme", User: "alice"}, now), lim),
		"another tenant is not crowded out")
	require.NoError(t, s.SetCleanup(ctx, settled[0].ID, false)) // cleaned up
	require.NoError(t, s.CreateFlow(ctx, flow(mallory, now), lim))
	require.ErrorIs(t, s.CreateFlow(ctx, flow(mallory, now), lim), onboard.ErrTooManyFlows)
	require.NoError(t, s.SetCleanup(ctx, settled[0].ID, true)) // cleanup left again: counts again
	require.NoError(t, s.SetCleanup(ctx, settled[1].ID, false))
	require.ErrorIs(t, s.CreateFlow(ctx, flow(mallory, now), lim), onboard.ErrTooManyFlows)

	// Done flows without cleanup left do not count.
	acme := onboard.Owner{Tenant: "acme", User: "bob"}
	for i := range 30 {
		f := flow(acme, now)
		require.NoError(t, s.CreateFlow(ctx, f, lim), "start %d", i)
		require.NoError(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{ID: storetest.ID(), Provider: "cdata",
			State: onboard.Connected}, false))
	}
}

// TestFloodCannotCrowdOut floods the store with starts, first of one
// tenant and then of many: the per-tenant cap keeps one tenant to its
// share, no other tenant's flow is ever pushed out, and MaxFlows bounds
// the flows held and so the memory.
func TestFloodCannotCrowdOut(t *testing.T) {
	const maxFlows = 20_000
	ctx := context.Background()
	now := time.Now()
	before := heapInUse()
	s := memstore.New(memstore.Options{MaxFlows: maxFlows})
	var victims []onboard.Flow
	for i := range 50 {
		f := flow(onboard.Owner{Tenant: fmt.Sprint("victim-", i%5), User: fmt.Sprint("user-", i)}, now)
		require.NoError(t, s.CreateFlow(ctx, f, lim))
		victims = append(victims, f)
	}
	flood := func(starts int, tenant func(i int) string) (admitted, refused int) {
		for i := range starts {
			err := s.CreateFlow(ctx, flow(onboard.Owner{Tenant: tenant(i), User: fmt.Sprint("bot-", i)}, now), lim)
			switch {
			case err == nil:
				admitted++
			case errors.Is(err, onboard.ErrTooManyFlows):
				refused++
			default:
				t.Fatal(err)
			}
		}
		return admitted, refused
	}
	admitted, refused := flood(30_000, func(int) string { return "attacker" })
	require.Equal(t, lim.PerTenant, admitted, "one tenant gets its cap")
	require.Equal(t, 30_000-lim.PerTenant, refused)

	admitted, refused = flood(60_000, func(i int) string { return fmt.Sprint("many-", i%200) })
	require.Equal(t, maxFlows, s.Len(), "the store is full")
	require.Equal(t, maxFlows-50-lim.PerTenant, admitted)
	require.Equal(t, 60_000-admitted, refused)
	for _, f := range victims {
		got, found, err := s.Flow(ctx, f.ID)
		require.NoError(t, err)
		require.True(t, found, "a victim's flow was pushed out")
		require.Equal(t, onboard.FlowPending, got.State)
	}
	grown := heapInUse() - before
	t.Logf("90,000 starts, %d flows held: heap grew %.1f MiB (%d bytes per flow held)", s.Len(),
		float64(grown)/(1<<20), grown/uint64(s.Len()))
	require.Less(t, grown, uint64(maxFlows*1500), "memory is bounded by MaxFlows")
	runtime.KeepAlive(s)
}

// TestRealExpiry uses a real, short lifetime: a flow stops counting
// against the owner's cap once it has expired by the core's clock.
func TestRealExpiry(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{})
	o := owner(1)
	cap1 := onboard.Limits{PerOwner: 1, PerTenant: 10}
	start := func() error {
		now := time.Now()
		f := flow(o, now)
		f.ExpiresAt = now.Add(50 * time.Millisecond)
		return s.CreateFlow(ctx, f, cap1)
	}
	require.NoError(t, start())
	require.ErrorIs(t, start(), onboard.ErrOwnerLimit)
	time.Sleep(60 * time.Millisecond)
	require.NoError(t, start())
	expired, err := s.Flows(ctx, onboard.FlowQuery{ExpiredBefore: time.Now(), Limit: 10})
	require.NoError(t, err)
	require.Len(t, expired, 1)
}

// TestCreateFlowRefusesEmptyID: a flow needs an id.
func TestCreateFlowRefusesEmptyID(t *testing.T) {
	f := flow(owner(1), time.Now())
	f.ID = ""
	require.Error(t, memstore.New(memstore.Options{}).CreateFlow(context.Background(), f, lim))
}
