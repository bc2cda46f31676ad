// Package storetest is the conformance suite for [onboard.Store]
// implementations. Every Store must pass it:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) onboard.Store { return mystore.New(...) })
//	}
//
// newStore must return an empty store (or one whose flows and connections
// use ids no other test uses) each time it is called.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
)

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, newStore func(t *testing.T) onboard.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s onboard.Store)
	}{
		{"FlowNotFound", testFlowNotFound},
		{"FlowRoundTrip", testFlowRoundTrip},
		{"DuplicateFlow", testDuplicateFlow},
		{"ExpiredFlow", testExpiredFlow},
		{"CompleteOnce", testCompleteOnce},
		{"CompleteUnknown", testCompleteUnknown},
		{"CompleteAbandonedWithoutID", testCompleteAbandoned},
		{"CompleteConcurrently", testCompleteConcurrently},
		{"OwnerScoping", testOwnerScoping},
		{"SaveConnectionUpserts", testSaveUpserts},
		{"DeleteConnection", testDelete},
		{"CanceledContext", testCanceled},
		{"FindConnection", testFind},
		{"PendingFlowsAndResolve", testPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// ID returns a fresh random id, for flows and connections.
func ID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

var timeOpt = cmpopts.EquateApproxTime(time.Millisecond)

func newFlow(owner onboard.Owner, ttl time.Duration) onboard.Flow {
	now := time.Now()
	return onboard.Flow{
		ID: ID(), Owner: owner, Provider: "test", Source: "Salesforce", Name: "Sales",
		ReturnURL: "https://app.example/connect/test/return/x", ReturnTo: "/done?x=1",
		Data:  map[string]string{"externalId": "ob-1"},
		State: onboard.FlowPending, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
}

func newOwner() onboard.Owner { return onboard.Owner{Tenant: "t-" + ID()[:12], User: "u-" + ID()[:12]} }

func newConn(owner onboard.Owner, flowID string, st onboard.State) onboard.Connection {
	now := time.Now()
	return onboard.Connection{
		Provider: "test", ID: "c-" + ID()[:16], Owner: owner, Name: "Sales", Source: "Salesforce",
		State: st, Message: "ok", FlowID: flowID, CreatedAt: now, UpdatedAt: now,
	}
}

func testFlowNotFound(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	f, found, err := s.Flow(ctx, ID())
	require.NoError(t, err)
	require.False(t, found)
	require.Empty(t, cmp.Diff(onboard.Flow{}, f, cmpopts.EquateEmpty()))
	_, found, err = s.Connection(ctx, "tenant", "test", "nope")
	require.NoError(t, err)
	require.False(t, found)
	cs, err := s.Connections(ctx, "nobody-"+ID())
	require.NoError(t, err)
	require.Empty(t, cs)
}

func testFlowRoundTrip(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	f := newFlow(newOwner(), time.Hour)
	f.ConnectionID, f.Reconnect = "conn-1", true
	require.NoError(t, s.CreateFlow(ctx, f))
	got, found, err := s.Flow(ctx, f.ID)
	require.NoError(t, err)
	require.True(t, found)
	if d := cmp.Diff(f, got, timeOpt); d != "" {
		t.Fatalf("flow changed in the store (-saved +loaded):\n%s", d)
	}
	// The store must not alias the caller's map.
	f.Data["externalId"] = "changed"
	got, _, _ = s.Flow(ctx, f.ID)
	require.Equal(t, "ob-1", got.Data["externalId"])
}

func testDuplicateFlow(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	f := newFlow(newOwner(), time.Hour)
	require.NoError(t, s.CreateFlow(ctx, f))
	require.Error(t, s.CreateFlow(ctx, f), "a second flow with the same id must be refused")
}

func testExpiredFlow(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	f := newFlow(newOwner(), time.Hour)
	f.CreatedAt = time.Now().Add(-2 * time.Hour)
	f.ExpiresAt = time.Now().Add(-time.Second)
	require.NoError(t, s.CreateFlow(ctx, f))
	got, found, err := s.Flow(ctx, f.ID)
	require.NoError(t, err)
	require.True(t, found, "an expired flow must still be found (until swept)")
	require.Equal(t, onboard.FlowExpired, got.State)
	err = s.CompleteFlow(ctx, f.ID, newConn(f.Owner, f.ID, onboard.Connected))
	require.ErrorIs(t, err, onboard.ErrFlowExpired)
	cs, err := s.Connections(ctx, f.Owner.Tenant)
	require.NoError(t, err)
	require.Empty(t, cs, "nothing may be stored for an expired flow")
}

func testCompleteOnce(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	f := newFlow(newOwner(), time.Hour)
	require.NoError(t, s.CreateFlow(ctx, f))
	c := newConn(f.Owner, f.ID, onboard.Connected)
	require.NoError(t, s.CompleteFlow(ctx, f.ID, c))

	got, _, err := s.Flow(ctx, f.ID)
	require.NoError(t, err)
	require.Equal(t, onboard.FlowDone, got.State)
	require.Equal(t, onboard.Connected, got.Outcome)
	require.Equal(t, c.ID, got.ConnectionID)

	stored, found, err := s.Connection(ctx, f.Owner.Tenant, c.Provider, c.ID)
	require.NoError(t, err)
	require.True(t, found)
	if d := cmp.Diff(c, stored, timeOpt); d != "" {
		t.Fatalf("connection changed in the store (-saved +loaded):\n%s", d)
	}
	second := newConn(f.Owner, f.ID, onboard.Connected)
	require.ErrorIs(t, s.CompleteFlow(ctx, f.ID, second), onboard.ErrFlowUsed)
	cs, err := s.Connections(ctx, f.Owner.Tenant)
	require.NoError(t, err)
	require.Len(t, cs, 1, "a replayed completion must not store a second connection")
}

func testCompleteUnknown(t *testing.T, s onboard.Store) {
	err := s.CompleteFlow(context.Background(), ID(), newConn(newOwner(), "x", onboard.Connected))
	require.ErrorIs(t, err, onboard.ErrUnknownFlow)
}

func testCompleteAbandoned(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	f := newFlow(newOwner(), time.Hour)
	require.NoError(t, s.CreateFlow(ctx, f))
	c := newConn(f.Owner, f.ID, onboard.Abandoned)
	c.ID = ""
	require.NoError(t, s.CompleteFlow(ctx, f.ID, c))
	got, _, err := s.Flow(ctx, f.ID)
	require.NoError(t, err)
	require.Equal(t, onboard.FlowDone, got.State)
	require.Equal(t, onboard.Abandoned, got.Outcome)
	cs, err := s.Connections(ctx, f.Owner.Tenant)
	require.NoError(t, err)
	require.Empty(t, cs, "an abandoned flow without a connection id stores no connection")
}

func testCompleteConcurrently(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	const n = 16
	for round := 0; round < 5; round++ {
		f := newFlow(newOwner(), time.Hour)
		require.NoError(t, s.CreateFlow(ctx, f))
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = s.CompleteFlow(ctx, f.ID, newConn(f.Owner, f.ID, onboard.Connected))
			}()
		}
		close(start)
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, onboard.ErrFlowUsed):
			default:
				t.Fatalf("concurrent completion failed with %v, want nil or ErrFlowUsed", err)
			}
		}
		require.Equal(t, 1, ok, "exactly one concurrent completion must win")
		cs, err := s.Connections(ctx, f.Owner.Tenant)
		require.NoError(t, err)
		require.Len(t, cs, 1, "exactly one connection after concurrent completions")
	}
}

func testOwnerScoping(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	a, b := newOwner(), newOwner()
	var mine []onboard.Connection
	for i := range 3 {
		c := newConn(a, "", onboard.Connected)
		c.CreatedAt = time.Now().Add(time.Duration(i) * time.Minute)
		require.NoError(t, s.SaveConnection(ctx, c))
		mine = append([]onboard.Connection{c}, mine...)
	}
	theirs := newConn(b, "", onboard.Connected)
	require.NoError(t, s.SaveConnection(ctx, theirs))

	got, err := s.Connections(ctx, a.Tenant)
	require.NoError(t, err)
	if d := cmp.Diff(mine, got, timeOpt); d != "" {
		t.Fatalf("Connections(a) want a's, newest first (-want +got):\n%s", d)
	}
	_, found, err := s.Connection(ctx, a.Tenant, theirs.Provider, theirs.ID)
	require.NoError(t, err)
	require.False(t, found, "a tenant must not see another tenant's connection")
	require.NoError(t, s.DeleteConnection(ctx, a.Tenant, theirs.Provider, theirs.ID))
	_, found, err = s.Connection(ctx, b.Tenant, theirs.Provider, theirs.ID)
	require.NoError(t, err)
	require.True(t, found, "a tenant must not delete another tenant's connection")
}

func testSaveUpserts(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	c := newConn(o, "", onboard.Connected)
	require.NoError(t, s.SaveConnection(ctx, c))
	c.State, c.Message, c.UpdatedAt = onboard.Failed, "password expired", time.Now().Add(time.Minute)
	require.NoError(t, s.SaveConnection(ctx, c))
	cs, err := s.Connections(ctx, o.Tenant)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	if d := cmp.Diff(c, cs[0], timeOpt); d != "" {
		t.Fatalf("upsert (-want +got):\n%s", d)
	}
}

func testDelete(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	c := newConn(o, "", onboard.Connected)
	require.NoError(t, s.SaveConnection(ctx, c))
	require.NoError(t, s.DeleteConnection(ctx, o.Tenant, c.Provider, c.ID))
	_, found, err := s.Connection(ctx, o.Tenant, c.Provider, c.ID)
	require.NoError(t, err)
	require.False(t, found)
	require.NoError(t, s.DeleteConnection(ctx, o.Tenant, c.Provider, c.ID), "deleting a missing connection is not an error")
}

func testCanceled(t *testing.T, s onboard.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := newFlow(newOwner(), time.Hour)
	require.Error(t, s.CreateFlow(ctx, f), "CreateFlow must honour a canceled context")
	_, found, err := s.Flow(context.Background(), f.ID)
	require.NoError(t, err)
	require.False(t, found, fmt.Sprintf("flow %s was stored despite the canceled context", f.ID))
}

// testFind runs for stores that are onboard.ConnectionFinder.
func testFind(t *testing.T, s onboard.Store) {
	finder, ok := s.(onboard.ConnectionFinder)
	if !ok {
		t.Skip("the store is not an onboard.ConnectionFinder")
	}
	ctx := context.Background()
	c := newConn(newOwner(), "", onboard.Connected)
	require.NoError(t, s.SaveConnection(ctx, c))
	got, found, err := finder.FindConnection(ctx, c.Provider, c.ID)
	require.NoError(t, err)
	require.True(t, found)
	if d := cmp.Diff(c, got, timeOpt); d != "" {
		t.Fatalf("FindConnection (-want +got):\n%s", d)
	}
	_, found, err = finder.FindConnection(ctx, c.Provider, "missing-"+ID())
	require.NoError(t, err)
	require.False(t, found)
	_, found, err = finder.FindConnection(ctx, "other-provider", c.ID)
	require.NoError(t, err)
	require.False(t, found, "connections are keyed by provider and id")
}

// testPending runs for stores that are onboard.FlowLister.
func testPending(t *testing.T, s onboard.Store) {
	lister, ok := s.(onboard.FlowLister)
	if !ok {
		t.Skip("the store is not an onboard.FlowLister")
	}
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	owner := newOwner()
	var ids []string
	for i := range 4 {
		f := newFlow(owner, time.Hour)
		f.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		if i == 0 {
			f.ExpiresAt = time.Now().Add(-time.Second) // expired, still pending
		}
		require.NoError(t, s.CreateFlow(ctx, f))
		ids = append(ids, f.ID)
	}
	require.NoError(t, s.CompleteFlow(ctx, ids[1], newConn(owner, ids[1], onboard.Connected)))

	got, err := lister.PendingFlows(ctx, base.Add(150*time.Second), 10)
	require.NoError(t, err)
	var gotIDs []string
	for _, f := range got {
		if f.Owner == owner {
			gotIDs = append(gotIDs, f.ID)
		}
	}
	require.Equal(t, []string{ids[0], ids[2]}, gotIDs, "pending, created before the cut, oldest first, expired included")
	limited, err := lister.PendingFlows(ctx, time.Now(), 1)
	require.NoError(t, err)
	require.Len(t, limited, 1)

	// The expired flow can be resolved (not completed), exactly once.
	c := newConn(owner, ids[0], onboard.Connected)
	require.ErrorIs(t, s.CompleteFlow(ctx, ids[0], c), onboard.ErrFlowExpired)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = lister.ResolveFlow(ctx, ids[0], c) }()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			require.ErrorIs(t, err, onboard.ErrFlowUsed)
		}
	}
	require.Equal(t, 1, won)
	f, _, err := s.Flow(ctx, ids[0])
	require.NoError(t, err)
	require.Equal(t, onboard.FlowDone, f.State)
	_, found, err := s.Connection(ctx, owner.Tenant, c.Provider, c.ID)
	require.NoError(t, err)
	require.True(t, found)
	require.ErrorIs(t, lister.ResolveFlow(ctx, ID(), c), onboard.ErrUnknownFlow)
}
