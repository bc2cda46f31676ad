package memstore_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
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

func flow(owner onboard.Owner, now time.Time, ttl time.Duration) onboard.Flow {
	return onboard.Flow{ID: storetest.ID(), Owner: owner, Provider: "test", State: onboard.FlowPending,
		CreatedAt: now, ExpiresAt: now.Add(ttl)}
}

func TestCapsAndSweep(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	s := memstore.New(memstore.Options{MaxFlows: 100, MaxFlowsPerOwner: 3, Retain: time.Minute,
		Now: func() time.Time { return now }})
	alice := onboard.Owner{Tenant: "t1", User: "alice"}
	for range 3 {
		require.NoError(t, s.CreateFlow(ctx, flow(alice, now, 10*time.Minute)))
	}
	err := s.CreateFlow(ctx, flow(alice, now, 10*time.Minute))
	require.ErrorIs(t, err, onboard.ErrTooManyFlows, "a fourth pending flow of one owner")
	// Another owner is not affected by alice's cap.
	require.NoError(t, s.CreateFlow(ctx, flow(onboard.Owner{Tenant: "t1", User: "bob"}, now, 10*time.Minute)))

	// Once alice's flows expire, she can start again.
	now = now.Add(11 * time.Minute)
	require.NoError(t, s.CreateFlow(ctx, flow(alice, now, 10*time.Minute)))

	// Past expiry plus Retain, the sweep drops them.
	now = now.Add(30 * time.Minute)
	for range 96 {
		if err := s.CreateFlow(ctx, flow(onboard.Owner{Tenant: "t2", User: storetest.ID()}, now, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	require.LessOrEqual(t, s.Len(), 100)
	// The total cap holds for unexpired flows.
	var capped bool
	for range 10 {
		if err := s.CreateFlow(ctx, flow(onboard.Owner{Tenant: "t3", User: storetest.ID()}, now, time.Minute)); errors.Is(err, onboard.ErrTooManyFlows) {
			capped = true
		}
	}
	require.True(t, capped, "the total cap must refuse flows once 100 live ones are held")
	require.Equal(t, 100, s.Len())
}

// TestOwnerPending follows one owner's pending flows as they are
// completed and resolved: each frees its place under the cap, in any
// order.
func TestOwnerPending(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	s := memstore.New(memstore.Options{MaxFlowsPerOwner: 3, Now: func() time.Time { return now }})
	alice := onboard.Owner{Tenant: "t1", User: "alice"}
	var ids []string
	for range 3 {
		f := flow(alice, now, 10*time.Minute)
		require.NoError(t, s.CreateFlow(ctx, f))
		ids = append(ids, f.ID)
	}
	full := func() error { return s.CreateFlow(ctx, flow(alice, now, 10*time.Minute)) }
	require.ErrorIs(t, full(), onboard.ErrTooManyFlows)

	// The middle one, then the first: each completion frees one place.
	require.NoError(t, s.CompleteFlow(ctx, ids[1], onboard.Connection{Provider: "test", State: onboard.Abandoned}))
	require.NoError(t, full())
	require.ErrorIs(t, full(), onboard.ErrTooManyFlows)
	require.NoError(t, s.ResolveFlow(ctx, ids[0], onboard.Connection{Provider: "test", ID: "c1", Owner: alice, State: onboard.Connected}))
	require.NoError(t, full())
	require.ErrorIs(t, full(), onboard.ErrTooManyFlows)

	for _, id := range []string{"", "a\x00b"} {
		f := flow(onboard.Owner{Tenant: "t1", User: "bob"}, now, time.Minute)
		f.ID = id
		require.Error(t, s.CreateFlow(ctx, f), "id %q", id)
	}
}

// TestConnectionMovesTenant saves a connection again under another
// tenant: it leaves the first tenant's list and keeps its creation time.
func TestConnectionMovesTenant(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{})
	created := time.Unix(1_800_000_000, 0)
	c := onboard.Connection{Provider: "p", ID: "c1", Owner: onboard.Owner{Tenant: "t1", User: "u"},
		State: onboard.Connected, CreatedAt: created, UpdatedAt: created}
	require.NoError(t, s.SaveConnection(ctx, c))
	c.Owner.Tenant, c.CreatedAt, c.UpdatedAt = "t2", created.Add(time.Hour), created.Add(time.Hour)
	require.NoError(t, s.SaveConnection(ctx, c))

	old, err := s.Connections(ctx, "t1")
	require.NoError(t, err)
	require.Empty(t, old)
	moved, err := s.Connections(ctx, "t2")
	require.NoError(t, err)
	require.Len(t, moved, 1)
	require.True(t, moved[0].CreatedAt.Equal(created), "creation time kept: %v", moved[0].CreatedAt)
	require.True(t, moved[0].UpdatedAt.Equal(c.UpdatedAt))
	require.NoError(t, s.DeleteConnection(ctx, "t1", "p", "c1"), "the old tenant no longer owns it")
	_, found, err := s.FindConnection(ctx, "p", "c1")
	require.NoError(t, err)
	require.True(t, found)
	require.NoError(t, s.DeleteConnection(ctx, "t2", "p", "c1"))
	_, found, err = s.FindConnection(ctx, "p", "c1")
	require.NoError(t, err)
	require.False(t, found)
}

// TestMemoryBounded starts half a million flows that never return, each
// of another owner, as a flood of abandoned starts would: the store keeps
// at most MaxFlows of them, and the heap stays bounded.
func TestMemoryBounded(t *testing.T) {
	const starts = 500_000
	ctx := context.Background()
	s := memstore.New(memstore.Options{}) // defaults: 100,000 flows
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	now := time.Now()
	refused := 0
	for i := range starts {
		f := onboard.Flow{ID: storetest.ID(), Owner: onboard.Owner{Tenant: "tenant-" + strconv.Itoa(i%1000), User: "user-" + strconv.Itoa(i)},
			Provider: "cdata", Source: "Salesforce", ReturnURL: "https://app.example.com/connect/cdata/return/" + strconv.Itoa(i),
			Data:      map[string]string{"sub": "2f6ac2c4-6a64-4c2c-9d0b-6b2d5b9e0f3e", "externalId": "onboard-AAAAAAAAAAAAAAAAAAAAAAAA"},
			CreatedAt: now, ExpiresAt: now.Add(30 * time.Minute)}
		if err := s.CreateFlow(ctx, f); errors.Is(err, onboard.ErrTooManyFlows) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	grown := heap() - before
	require.Equal(t, memstore.DefaultMaxFlows, s.Len())
	require.Equal(t, starts-memstore.DefaultMaxFlows, refused)
	perFlow := grown / uint64(s.Len())
	t.Logf("%d starts, %d kept, %d refused: heap grew %.1f MiB, %d bytes per flow", starts, s.Len(), refused,
		float64(grown)/(1<<20), perFlow)
	require.Less(t, grown, uint64(256<<20), "memory stays bounded")
	runtime.KeepAlive(s)
}
