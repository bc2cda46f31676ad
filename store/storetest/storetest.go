// Package storetest is the conformance suite for [onboard.Store]
// implementations. Every Store must pass it:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) onboard.Store { return mystore.New(...) })
//	}
//
// Each test covers one clause of the Store contract. newStore is called
// once per test; it may return a store that shares its data with the
// stores of other tests (one database): the tests use fresh random ids,
// tenants and provider names, and times of their own.
//
// The times the tests pass in lie far in the past and far in the future:
// a store that compared them with a clock of its own would fail.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
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
		{"CreateFlowRoundTrip", testCreateFlowRoundTrip},
		{"DuplicateFlowID", testDuplicateFlowID},
		{"FlowNotFound", testFlowNotFound},
		{"AdmissionCountsUnexpiredPending", testAdmissionCountsUnexpiredPending},
		{"AdmissionReadsNoClock", testAdmissionReadsNoClock},
		{"OwnerLimit", testOwnerLimit},
		{"TenantLimit", testTenantLimit},
		{"OwnerLimitBeforeTenantLimit", testOwnerLimitFirst},
		{"AdmissionConcurrentOwner", testAdmissionConcurrentOwner},
		{"AdmissionConcurrentTenant", testAdmissionConcurrentTenant},
		{"TenantCountThroughReturns", testTenantCountThroughReturns},
		{"FlowsOfOwner", testFlowsOfOwner},
		{"FlowsExpiredBefore", testFlowsExpiredBefore},
		{"FlowsCleanup", testFlowsCleanup},
		{"CompleteFlowSavesResult", testCompleteFlowSavesResult},
		{"CompleteFlowWithoutConnection", testCompleteFlowWithoutConnection},
		{"CompleteFlowOnce", testCompleteFlowOnce},
		{"CompleteFlowConcurrently", testCompleteFlowConcurrently},
		{"CompleteUnknownFlow", testCompleteUnknownFlow},
		{"CompleteFlowReadsNoClock", testCompleteFlowReadsNoClock},
		{"CompleteFlowMergesEventAt", testCompleteFlowMergesEventAt},
		{"CompleteFlowKeepsRevoked", testCompleteFlowKeepsRevoked},
		{"CompleteFlowRacesRevoke", testCompleteFlowRacesRevoke},
		{"SetCleanup", testSetCleanup},
		{"Prune", testPrune},
		{"SaveConnectionUpserts", testSaveConnectionUpserts},
		{"SwapConnection", testSwapConnection},
		{"SwapConnectionConcurrently", testSwapConnectionConcurrently},
		{"FindConnection", testFindConnection},
		{"ConnectionsOfTenant", testConnectionsOfTenant},
		{"ConnectionsCheckedBefore", testConnectionsCheckedBefore},
		{"DeleteConnection", testDeleteConnection},
		{"CanceledContext", testCanceledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// ID returns a fresh random id: 32 random bytes in base64url without
// padding, the shape of a flow id.
func ID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Times the tests use. None is near the time the tests run at.
var (
	zone = time.FixedZone("UTC+5:30", 5*3600+1800)
	// past is long before any clock a store could read.
	past = time.Date(2001, 2, 3, 4, 5, 6, 123_456_000, zone)
	// future is long after it.
	future = time.Date(2201, 2, 3, 4, 5, 6, 654_321_000, zone)
)

// noCap is a limit no test reaches.
var noCap = onboard.Limits{PerOwner: 1 << 20, PerTenant: 1 << 20}

func newOwner() onboard.Owner {
	return onboard.Owner{Tenant: "t-" + ID()[:12], User: "u-" + ID()[:12]}
}

// randomTime returns a time in the year from, at a random microsecond
// within ten years, so that tests that query every flow or record of a
// shared store before a time meet only their own.
func randomTime(from int) time.Time {
	n, _ := rand.Int(rand.Reader, big.NewInt(10*365*24*3600*1_000_000))
	return time.Date(from, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n.Int64()) * time.Microsecond)
}

func newFlow(o onboard.Owner, created time.Time, ttl time.Duration) onboard.Flow {
	return onboard.Flow{
		ID: ID(), Owner: o, Provider: "test", Source: "Salesforce", Name: "Sales",
		ReturnTo: "/done?x=1", Browser: ID(), State: onboard.FlowPending,
		CreatedAt: created, ExpiresAt: created.Add(ttl),
	}
}

func newConn(o onboard.Owner, provider string, at time.Time) onboard.Connection {
	return onboard.Connection{
		Provider: provider, ID: "c-" + ID()[:16], Owner: o, Name: "Sales", Source: "Salesforce",
		State: onboard.Connected, Message: "ok", FlowID: ID(),
		CreatedAt: at, UpdatedAt: at.Add(time.Second), EventAt: at.Add(2 * time.Second), CheckedAt: at.Add(3 * time.Second),
	}
}

func create(t *testing.T, s onboard.Store, f onboard.Flow, lim onboard.Limits) {
	t.Helper()
	require.NoError(t, s.CreateFlow(context.Background(), f, lim), "CreateFlow %s", f.ID)
}

func load(t *testing.T, s onboard.Store, id string) onboard.Flow {
	t.Helper()
	f, found, err := s.Flow(context.Background(), id)
	require.NoError(t, err)
	require.True(t, found, "flow %s not found", id)
	return f
}

func find(t *testing.T, s onboard.Store, provider, id string) (onboard.Connection, bool) {
	t.Helper()
	c, found, err := s.FindConnection(context.Background(), provider, id)
	require.NoError(t, err)
	return c, found
}

func same(t *testing.T, want, got any, what string) {
	t.Helper()
	if d := gocmp.Diff(want, got); d != "" {
		t.Fatalf("%s (-want +got):\n%s", what, d)
	}
}

func flowIDs(fs []onboard.Flow) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

func connIDs(cs []onboard.Connection) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// concurrently calls fn(i) for i below n, each in its own goroutine, all
// released at once, and returns the errors by i.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts the nil errors and those wrapping want; any other error
// fails the test.
func tally(t *testing.T, errs []error, want error) (ok, refused int) {
	t.Helper()
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, want):
			refused++
		default:
			t.Fatalf("got error %v, want nil or one wrapping %v", err, want)
		}
	}
	return ok, refused
}

// CreateFlow then Flow gives back every field; times keep their instant
// to the microsecond.
func testCreateFlowRoundTrip(t *testing.T, s onboard.Store) {
	for _, tc := range []struct {
		name string
		edit func(*onboard.Flow)
	}{
		{"new connection", func(*onboard.Flow) {}},
		{"reconnect", func(f *onboard.Flow) {
			f.ConnectionID, f.Reconnect = "conn-"+ID()[:8], true
			f.Source, f.Name = "Zoho CRM ✓ 𝔘nicode", "Name with 'quotes' and \"double\" and \\ and ;"
			f.ReturnTo = "/connections/x?tab=a&b=%2F#frag"
		}},
		{"empty optional fields", func(f *onboard.Flow) { f.Source, f.Name, f.ReturnTo = "", "", "" }},
		{"future", func(f *onboard.Flow) {
			f.CreatedAt, f.ExpiresAt = future, future.Add(30*time.Minute)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlow(newOwner(), past, 30*time.Minute)
			tc.edit(&f)
			create(t, s, f, noCap)
			same(t, f, load(t, s, f.ID), "the flow as stored")
		})
	}
}

// A second flow with the ID of a stored one is refused, and the stored one
// is left as it was.
func testDuplicateFlowID(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	f := newFlow(newOwner(), past, time.Hour)
	create(t, s, f, noCap)
	dup := newFlow(newOwner(), past.Add(time.Minute), time.Hour)
	dup.ID = f.ID
	require.Error(t, s.CreateFlow(ctx, dup, noCap), "a second flow with the same ID must be refused")
	same(t, f, load(t, s, f.ID), "the first flow after the duplicate")
	got, err := s.Flows(ctx, onboard.FlowQuery{Owner: dup.Owner, Limit: 10})
	require.NoError(t, err)
	require.Empty(t, got, "the refused duplicate must not be saved")
}

func testFlowNotFound(t *testing.T, s onboard.Store) {
	f, found, err := s.Flow(context.Background(), ID())
	require.NoError(t, err)
	require.False(t, found)
	same(t, onboard.Flow{}, f, "a flow not found")
}

// Admission counts the owner's pending flows that are unexpired at the new
// flow's CreatedAt: a flow is unexpired up to its ExpiresAt exactly, and a
// done flow does not count.
func testAdmissionCountsUnexpiredPending(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	lim := onboard.Limits{PerOwner: 3, PerTenant: 100}
	var ids []string
	for range 3 {
		f := newFlow(o, past, 10*time.Minute)
		create(t, s, f, lim)
		ids = append(ids, f.ID)
	}
	at := func(created time.Time) error { return s.CreateFlow(ctx, newFlow(o, created, 10*time.Minute), lim) }
	require.ErrorIs(t, at(past), onboard.ErrOwnerLimit)
	require.ErrorIs(t, at(past.Add(10*time.Minute)), onboard.ErrOwnerLimit, "a flow is unexpired at its ExpiresAt")

	// A done flow does not count.
	require.NoError(t, s.CompleteFlow(ctx, ids[1], onboard.Connection{State: onboard.Abandoned}, false))
	require.NoError(t, at(past.Add(time.Minute)))
	require.ErrorIs(t, at(past.Add(time.Minute)), onboard.ErrOwnerLimit)

	// A microsecond after they expire, the first three no longer count:
	// two pending (ids[0], ids[2]) and the one created a minute later
	// remains.
	later := past.Add(10*time.Minute + time.Microsecond)
	require.NoError(t, at(later))
	require.NoError(t, at(later))
	require.ErrorIs(t, at(later), onboard.ErrOwnerLimit)
}

// The store judges time only by the times passed in: flows long expired
// by any clock count at a CreatedAt of their own time, and flows that no
// clock has reached yet do not count at a CreatedAt after their expiry.
func testAdmissionReadsNoClock(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	lim := onboard.Limits{PerOwner: 2, PerTenant: 100}
	for _, base := range []time.Time{past, future} {
		o := newOwner()
		create(t, s, newFlow(o, base, time.Hour), lim)
		create(t, s, newFlow(o, base, time.Hour), lim)
		require.ErrorIs(t, s.CreateFlow(ctx, newFlow(o, base.Add(59*time.Minute), time.Hour), lim), onboard.ErrOwnerLimit,
			"flows of %v are unexpired at %v", base, base.Add(59*time.Minute))
		require.NoError(t, s.CreateFlow(ctx, newFlow(o, base.Add(2*time.Hour), time.Hour), lim),
			"flows of %v are expired at %v", base, base.Add(2*time.Hour))
	}
}

// At lim.PerOwner the owner's next flow is refused with ErrOwnerLimit,
// and nothing is saved; other owners of the tenant are not affected.
func testOwnerLimit(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	a := newOwner()
	b := onboard.Owner{Tenant: a.Tenant, User: "u-" + ID()[:12]}
	lim := onboard.Limits{PerOwner: 2, PerTenant: 100}
	create(t, s, newFlow(a, past, time.Hour), lim)
	create(t, s, newFlow(a, past, time.Hour), lim)
	refused := newFlow(a, past, time.Hour)
	err := s.CreateFlow(ctx, refused, lim)
	require.ErrorIs(t, err, onboard.ErrOwnerLimit)
	require.NotErrorIs(t, err, onboard.ErrTooManyFlows)
	_, found, err := s.Flow(ctx, refused.ID)
	require.NoError(t, err)
	require.False(t, found, "a refused flow must not be saved")
	create(t, s, newFlow(b, past, time.Hour), lim)
}

// At lim.PerTenant any owner's next flow of the tenant is refused with
// ErrTooManyFlows, and nothing is saved; other tenants are not affected.
func testTenantLimit(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	tenant := "t-" + ID()[:12]
	lim := onboard.Limits{PerOwner: 2, PerTenant: 5}
	for i := range 5 {
		create(t, s, newFlow(onboard.Owner{Tenant: tenant, User: fmt.Sprint("u", i/2)}, past, time.Hour), lim)
	}
	refused := newFlow(onboard.Owner{Tenant: tenant, User: "newcomer"}, past, time.Hour)
	err := s.CreateFlow(ctx, refused, lim)
	require.ErrorIs(t, err, onboard.ErrTooManyFlows)
	require.NotErrorIs(t, err, onboard.ErrOwnerLimit)
	_, found, err := s.Flow(ctx, refused.ID)
	require.NoError(t, err)
	require.False(t, found, "a refused flow must not be saved")
	create(t, s, newFlow(newOwner(), past, time.Hour), lim)
	// A done flow of the tenant does not count.
	held, err := s.Flows(ctx, onboard.FlowQuery{Owner: onboard.Owner{Tenant: tenant, User: "u0"}, Limit: 1})
	require.NoError(t, err)
	require.NoError(t, s.CompleteFlow(ctx, held[0].ID, onboard.Connection{State: onboard.Abandoned}, false))
	create(t, s, newFlow(onboard.Owner{Tenant: tenant, User: "newcomer"}, past, time.Hour), lim)
	require.ErrorIs(t, s.CreateFlow(ctx, newFlow(onboard.Owner{Tenant: tenant, User: "late"}, past, time.Hour), lim),
		onboard.ErrTooManyFlows)
	// Expired flows of the tenant do not count.
	create(t, s, newFlow(onboard.Owner{Tenant: tenant, User: "newcomer"}, past.Add(2*time.Hour), time.Hour), lim)
}

// The tenant cap holds through starts and returns at once, refused starts
// and repeated returns among them: after 300 starts of one tenant with a
// cap of 10, each admitted one returned twice at once, none pending, the
// tenant admits exactly 10 again.
func testTenantCountThroughReturns(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	tenant := "t-" + ID()[:12]
	lim := onboard.Limits{PerOwner: 3, PerTenant: 10}
	owner := func(i int) onboard.Owner { return onboard.Owner{Tenant: tenant, User: fmt.Sprint("u", i%7)} }
	errs := concurrently(300, func(i int) error {
		f := newFlow(owner(i), past, time.Hour)
		if err := s.CreateFlow(ctx, f, lim); errors.Is(err, onboard.ErrTooManyFlows) || errors.Is(err, onboard.ErrOwnerLimit) {
			return nil
		} else if err != nil {
			return err
		}
		twice := concurrently(2, func(int) error {
			err := s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, false)
			if errors.Is(err, onboard.ErrFlowUsed) {
				return nil
			}
			return err
		})
		return errors.Join(twice...)
	})
	require.NoError(t, errors.Join(errs...))
	for i := range 10 {
		create(t, s, newFlow(owner(i), past, time.Hour), lim)
	}
	require.ErrorIs(t, s.CreateFlow(ctx, newFlow(owner(10), past, time.Hour), lim), onboard.ErrTooManyFlows)
}

// An owner at its cap in a tenant at its cap is told ErrOwnerLimit:
// settling one of the owner's own flows frees a place under both caps.
func testOwnerLimitFirst(t *testing.T, s onboard.Store) {
	o := newOwner()
	lim := onboard.Limits{PerOwner: 2, PerTenant: 3}
	create(t, s, newFlow(o, past, time.Hour), lim)
	create(t, s, newFlow(o, past, time.Hour), lim)
	create(t, s, newFlow(onboard.Owner{Tenant: o.Tenant, User: "other"}, past, time.Hour), lim)
	require.ErrorIs(t, s.CreateFlow(context.Background(), newFlow(o, past, time.Hour), lim), onboard.ErrOwnerLimit)
}

// Admission is atomic: of 60 concurrent starts of one owner with a cap of
// 20, exactly 20 are admitted.
func testAdmissionConcurrentOwner(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	lim := onboard.Limits{PerOwner: 20, PerTenant: 1000}
	errs := concurrently(60, func(int) error { return s.CreateFlow(ctx, newFlow(o, past, time.Hour), lim) })
	ok, refused := tally(t, errs, onboard.ErrOwnerLimit)
	require.Equal(t, 20, ok, "admitted")
	require.Equal(t, 40, refused, "refused")
	held, err := s.Flows(ctx, onboard.FlowQuery{Owner: o, Limit: 100})
	require.NoError(t, err)
	require.Len(t, held, 20)
}

// Admission is atomic across owners: of 60 concurrent starts of 30 owners
// of one tenant with a tenant cap of 20, exactly 20 are admitted.
func testAdmissionConcurrentTenant(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	tenant := "t-" + ID()[:12]
	lim := onboard.Limits{PerOwner: 20, PerTenant: 20}
	errs := concurrently(60, func(i int) error {
		return s.CreateFlow(ctx, newFlow(onboard.Owner{Tenant: tenant, User: fmt.Sprint("u", i%30)}, past, time.Hour), lim)
	})
	ok, refused := tally(t, errs, onboard.ErrTooManyFlows)
	require.Equal(t, 20, ok, "admitted")
	require.Equal(t, 40, refused, "refused")
}

// FlowQuery.Owner selects the owner's pending flows, expired or not,
// oldest first, up to Limit.
func testFlowsOfOwner(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	var fs []onboard.Flow
	// Created in shuffled order; the second expired long before the rest.
	for _, m := range []int{3, 1, 4, 0, 2} {
		f := newFlow(o, past.Add(time.Duration(m)*time.Minute), time.Hour)
		if m == 1 {
			f.ExpiresAt = f.CreatedAt.Add(time.Second)
		}
		create(t, s, f, noCap)
		fs = append(fs, f)
	}
	done := newFlow(o, past.Add(-time.Hour), 2*time.Hour)
	create(t, s, done, noCap)
	require.NoError(t, s.CompleteFlow(ctx, done.ID, onboard.Connection{State: onboard.Abandoned}, true))
	create(t, s, newFlow(onboard.Owner{Tenant: o.Tenant, User: "other"}, past, time.Hour), noCap)
	create(t, s, newFlow(onboard.Owner{Tenant: "other-" + o.Tenant, User: o.User}, past, time.Hour), noCap)

	byAge := slices.Clone(fs)
	slices.SortFunc(byAge, func(a, b onboard.Flow) int { return a.CreatedAt.Compare(b.CreatedAt) })
	got, err := s.Flows(ctx, onboard.FlowQuery{Owner: o, Limit: 100})
	require.NoError(t, err)
	same(t, byAge, got, "the owner's pending flows, oldest first")
	got, err = s.Flows(ctx, onboard.FlowQuery{Owner: o, Limit: 2})
	require.NoError(t, err)
	same(t, flowIDs(byAge[:2]), flowIDs(got), "the owner's two oldest pending flows")
	// Owner and ExpiredBefore together: only the one expired.
	got, err = s.Flows(ctx, onboard.FlowQuery{Owner: o, ExpiredBefore: past.Add(30 * time.Minute), Limit: 100})
	require.NoError(t, err)
	same(t, []string{fs[1].ID}, flowIDs(got), "the owner's pending flows expired before the time")
}

// FlowQuery.ExpiredBefore selects pending flows whose ExpiresAt is
// strictly before it, of every owner; the Limit oldest by CreatedAt are
// returned, whatever their expiry.
func testFlowsExpiredBefore(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	base := randomTime(1600)
	cut := base.Add(time.Hour)
	a, b := newOwner(), newOwner()
	// The older a flow, the later it expires: the first Limit by age are
	// not the first by expiry.
	var want []onboard.Flow
	for i, o := range []onboard.Owner{a, b, a, b} {
		created := base.Add(time.Duration(i) * time.Minute)
		f := newFlow(o, created, cut.Sub(created)-time.Duration(i+1)*time.Microsecond)
		create(t, s, f, noCap)
		want = append(want, f)
	}
	atCut := newFlow(a, base.Add(-time.Minute), cut.Sub(base.Add(-time.Minute)))
	create(t, s, atCut, noCap) // expires at the cut exactly: not before it
	completed := newFlow(b, base.Add(-2*time.Minute), time.Minute)
	create(t, s, completed, noCap)
	require.NoError(t, s.CompleteFlow(ctx, completed.ID, onboard.Connection{State: onboard.Abandoned}, false))
	t.Cleanup(func() { // leave nothing pending in a shared store
		for _, f := range append(want, atCut) {
			_ = s.CompleteFlow(context.Background(), f.ID, onboard.Connection{State: onboard.Abandoned}, false)
		}
	})

	const many = 10_000
	all, err := s.Flows(ctx, onboard.FlowQuery{ExpiredBefore: cut, Limit: many})
	require.NoError(t, err)
	for i, f := range all {
		require.Equal(t, onboard.FlowPending, f.State, "flow %s", f.ID)
		require.True(t, f.ExpiresAt.Before(cut), "flow %s expires at %v, not before %v", f.ID, f.ExpiresAt, cut)
		if i > 0 {
			require.False(t, f.CreatedAt.Before(all[i-1].CreatedAt), "flows out of CreatedAt order")
		}
	}
	var mine []onboard.Flow
	for _, f := range all {
		if f.Owner == a || f.Owner == b {
			mine = append(mine, f)
		}
	}
	same(t, want, mine, "the test's pending flows expired before the cut, oldest first")
	if len(all) < many {
		limited, err := s.Flows(ctx, onboard.FlowQuery{ExpiredBefore: cut, Limit: 2})
		require.NoError(t, err)
		same(t, flowIDs(all[:2]), flowIDs(limited), "Limit keeps the oldest")
	}
	limited, err := s.Flows(ctx, onboard.FlowQuery{Owner: a, ExpiredBefore: cut, Limit: 1})
	require.NoError(t, err)
	same(t, []string{want[0].ID}, flowIDs(limited), "Limit keeps the oldest by CreatedAt, not the first to expire")
}

// FlowQuery.Cleanup selects done flows whose Cleanup is set, instead of
// pending ones, oldest first; Owner narrows it.
func testFlowsCleanup(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	a, b := newOwner(), newOwner()
	base := randomTime(1700)
	var dirty []onboard.Flow
	for i, o := range []onboard.Owner{a, b, a} {
		f := newFlow(o, base.Add(time.Duration(3-i)*time.Minute), time.Hour)
		create(t, s, f, noCap)
		require.NoError(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned, Message: "m"}, true))
		f.State, f.Outcome, f.Message, f.Cleanup = onboard.FlowDone, onboard.Abandoned, "m", true
		dirty = append(dirty, f)
	}
	t.Cleanup(func() { // leave nothing to clean up in a shared store
		for _, f := range dirty {
			_ = s.SetCleanup(context.Background(), f.ID, false)
		}
	})
	clean := newFlow(a, base, time.Hour)
	create(t, s, clean, noCap)
	require.NoError(t, s.CompleteFlow(ctx, clean.ID, onboard.Connection{State: onboard.Abandoned}, false))
	create(t, s, newFlow(a, base, time.Hour), noCap) // pending

	got, err := s.Flows(ctx, onboard.FlowQuery{Owner: a, Cleanup: true, Limit: 100})
	require.NoError(t, err)
	same(t, []onboard.Flow{dirty[2], dirty[0]}, got, "the owner's done flows with Cleanup set, oldest first")

	all, err := s.Flows(ctx, onboard.FlowQuery{Cleanup: true, Limit: 10_000})
	require.NoError(t, err)
	for _, f := range all {
		require.True(t, f.State == onboard.FlowDone && f.Cleanup, "flow %s: state %s, cleanup %v", f.ID, f.State, f.Cleanup)
	}
	var mine []string
	for _, f := range all {
		if f.Owner == a || f.Owner == b {
			mine = append(mine, f.ID)
		}
	}
	same(t, []string{dirty[2].ID, dirty[1].ID, dirty[0].ID}, mine, "done flows with Cleanup set, oldest first")
	got, err = s.Flows(ctx, onboard.FlowQuery{Owner: a, Cleanup: true, Limit: 1})
	require.NoError(t, err)
	same(t, []string{dirty[2].ID}, flowIDs(got), "Limit keeps the oldest")
}

// CompleteFlow moves the flow to done with the connection's state and
// message, its id and the cleanup flag, and saves the connection.
func testCompleteFlowSavesResult(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		reconnect bool
		state     onboard.State
		cleanup   bool
	}{
		{"connected", false, onboard.Connected, false},
		{"failed, to clean up", false, onboard.Failed, true},
		{"reconnect", true, onboard.Connected, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOwner()
			f := newFlow(o, past, time.Hour)
			c := newConn(o, "test", past.Add(time.Minute))
			c.State, c.Message, c.FlowID = tc.state, "The connection test said: 'no'.", f.ID
			if tc.reconnect {
				f.ConnectionID, f.Reconnect = c.ID, true
			}
			create(t, s, f, noCap)
			require.NoError(t, s.CompleteFlow(ctx, f.ID, c, tc.cleanup))
			f.State, f.Outcome, f.Message, f.ConnectionID, f.Cleanup = onboard.FlowDone, c.State, c.Message, c.ID, tc.cleanup
			same(t, f, load(t, s, f.ID), "the completed flow")
			stored, found := find(t, s, c.Provider, c.ID)
			require.True(t, found, "the connection is saved")
			same(t, c, stored, "the saved connection")
		})
	}
}

// A connection without an ID saves nothing, and leaves the flow's
// ConnectionID as it was.
func testCompleteFlowWithoutConnection(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	for _, reconnect := range []bool{false, true} {
		o := newOwner()
		f := newFlow(o, past, time.Hour)
		if reconnect {
			f.ConnectionID, f.Reconnect = "c-"+ID()[:16], true
		}
		create(t, s, f, noCap)
		c := onboard.Connection{Provider: "test", Owner: o, State: onboard.Abandoned, Message: "left", FlowID: f.ID,
			CreatedAt: past, UpdatedAt: past}
		require.NoError(t, s.CompleteFlow(ctx, f.ID, c, true))
		f.State, f.Outcome, f.Message, f.Cleanup = onboard.FlowDone, onboard.Abandoned, "left", true
		same(t, f, load(t, s, f.ID), "the completed flow")
		cs, err := s.Connections(ctx, onboard.ConnectionQuery{Tenant: o.Tenant})
		require.NoError(t, err)
		require.Empty(t, cs, "nothing is saved for a connection without an ID")
		_, found := find(t, s, "test", "")
		require.False(t, found)
	}
}

// A done flow cannot be completed again: ErrFlowUsed, and neither the
// flow nor any connection changes.
func testCompleteFlowOnce(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	f := newFlow(o, past, time.Hour)
	create(t, s, f, noCap)
	first := newConn(o, "test", past)
	require.NoError(t, s.CompleteFlow(ctx, f.ID, first, false))
	done := load(t, s, f.ID)
	second := newConn(o, "test", past)
	second.State, second.Message = onboard.Failed, "second"
	require.ErrorIs(t, s.CompleteFlow(ctx, f.ID, second, true), onboard.ErrFlowUsed)
	same(t, done, load(t, s, f.ID), "the flow after a second completion")
	_, found := find(t, s, second.Provider, second.ID)
	require.False(t, found, "a refused completion saves no connection")
	stored, _ := find(t, s, first.Provider, first.ID)
	same(t, first, stored, "the first connection after a second completion")
}

// Of 20 concurrent completions of one flow exactly one succeeds and saves
// its connection; the others get ErrFlowUsed and save nothing.
func testCompleteFlowConcurrently(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	for range 3 {
		o := newOwner()
		f := newFlow(o, past, time.Hour)
		create(t, s, f, noCap)
		cs := make([]onboard.Connection, 20)
		for i := range cs {
			cs[i] = newConn(o, "test", past)
		}
		errs := concurrently(len(cs), func(i int) error { return s.CompleteFlow(ctx, f.ID, cs[i], false) })
		ok, _ := tally(t, errs, onboard.ErrFlowUsed)
		require.Equal(t, 1, ok, "exactly one concurrent completion succeeds")
		winner := cs[slices.IndexFunc(errs, func(err error) bool { return err == nil })]
		require.Equal(t, winner.ID, load(t, s, f.ID).ConnectionID)
		saved, err := s.Connections(ctx, onboard.ConnectionQuery{Tenant: o.Tenant})
		require.NoError(t, err)
		same(t, []onboard.Connection{winner}, saved, "the connections after concurrent completions")
	}
}

// A completion that would save a connection stored as Revoked changes
// nothing and returns ErrRevoked: the flow stays pending, the connection
// revoked.
func testCompleteFlowKeepsRevoked(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	revoked := newConn(o, "test", past)
	revoked.State, revoked.Message = onboard.Revoked, "quarantined"
	require.NoError(t, s.SaveConnection(ctx, revoked))
	stored, _ := find(t, s, revoked.Provider, revoked.ID)
	f := newFlow(o, past, time.Hour)
	f.ConnectionID, f.Reconnect = revoked.ID, true
	create(t, s, f, noCap)
	c := revoked
	c.State, c.Message, c.FlowID, c.UpdatedAt = onboard.Connected, "", f.ID, past.Add(time.Hour)
	require.ErrorIs(t, s.CompleteFlow(ctx, f.ID, c, false), onboard.ErrRevoked)
	same(t, f, load(t, s, f.ID), "the flow after a refused completion")
	after, _ := find(t, s, revoked.Provider, revoked.ID)
	same(t, stored, after, "the revoked connection after a refused completion")

	// A completion without a connection (abandoned) is not refused.
	require.NoError(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{Provider: "test", Owner: o, State: onboard.Abandoned,
		FlowID: f.ID, CreatedAt: past, UpdatedAt: past}, false))
}

// A completion and a quarantine's mark of the same connection (a read,
// then SwapConnection to Revoked, read again until it swaps) race: the
// connection ends revoked whichever comes first, and a completion that
// came second is refused with ErrRevoked.
func testCompleteFlowRacesRevoke(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	for range 20 {
		o := newOwner()
		conn := newConn(o, "test", past)
		require.NoError(t, s.SaveConnection(ctx, conn))
		f := newFlow(o, past, time.Hour)
		f.ConnectionID, f.Reconnect = conn.ID, true
		create(t, s, f, noCap)
		c := conn
		c.Message, c.FlowID, c.UpdatedAt = "reconnected", f.ID, past.Add(time.Hour)
		errs := concurrently(2, func(i int) error {
			if i == 0 {
				return s.CompleteFlow(ctx, f.ID, c, false)
			}
			for {
				old, found, err := s.FindConnection(ctx, conn.Provider, conn.ID)
				if err != nil || !found {
					return fmt.Errorf("reading the connection: %v, found %v", err, found)
				}
				next := old
				next.State, next.UpdatedAt = onboard.Revoked, past.Add(2*time.Hour)
				if ok, err := s.SwapConnection(ctx, old, next); ok || err != nil {
					return err
				}
			}
		})
		require.NoError(t, errs[1])
		if errs[0] != nil {
			require.ErrorIs(t, errs[0], onboard.ErrRevoked)
			require.Equal(t, onboard.FlowPending, load(t, s, f.ID).State)
		}
		after, _ := find(t, s, conn.Provider, conn.ID)
		require.Equal(t, onboard.Revoked, after.State, "a quarantined connection was connected again")
	}
}

func testCompleteUnknownFlow(t *testing.T, s onboard.Store) {
	o := newOwner()
	c := newConn(o, "test", past)
	require.ErrorIs(t, s.CompleteFlow(context.Background(), ID(), c, false), onboard.ErrUnknownFlow)
	_, found := find(t, s, c.Provider, c.ID)
	require.False(t, found, "nothing is saved for an unknown flow")
}

// The store does not judge expiry: a pending flow long expired by any
// clock, or created in the future, completes.
func testCompleteFlowReadsNoClock(t *testing.T, s onboard.Store) {
	for _, base := range []time.Time{past, future} {
		f := newFlow(newOwner(), base, time.Minute)
		create(t, s, f, noCap)
		require.NoError(t, s.CompleteFlow(context.Background(), f.ID, newConn(f.Owner, "test", base), false))
		require.Equal(t, onboard.FlowDone, load(t, s, f.ID).State)
	}
}

// Completion saves the connection over a record of the same connection
// (detached, or attached for a reconnect), keeping the later EventAt of
// the two.
func testCompleteFlowMergesEventAt(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		detached bool
		storedAt time.Time // EventAt of the stored record
		eventAt  time.Time // EventAt of the completion
		want     time.Time
	}{
		{"detached record later", true, past.Add(time.Hour), past.Add(time.Minute), past.Add(time.Hour)},
		{"detached record earlier", true, past.Add(time.Minute), past.Add(time.Hour), past.Add(time.Hour)},
		{"completion without event time", true, past.Add(time.Minute), time.Time{}, past.Add(time.Minute)},
		{"attached record later", false, future, past, future},
		{"attached record earlier", false, past, future, future},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOwner()
			c := newConn(o, "test", past)
			c.EventAt = tc.eventAt
			stored := c
			stored.EventAt, stored.State, stored.Message, stored.FlowID = tc.storedAt, onboard.Failed, "early event", ""
			if tc.detached {
				stored.Owner, stored.Name, stored.Source = onboard.Owner{}, "", ""
			}
			require.NoError(t, s.SaveConnection(ctx, stored))
			f := newFlow(o, past, time.Hour)
			if !tc.detached {
				f.ConnectionID, f.Reconnect = c.ID, true
			}
			create(t, s, f, noCap)
			c.FlowID = f.ID
			require.NoError(t, s.CompleteFlow(ctx, f.ID, c, false))
			got, found := find(t, s, c.Provider, c.ID)
			require.True(t, found)
			want := c
			want.EventAt = tc.want
			same(t, want, got, "the merged connection")
			listed, err := s.Connections(ctx, onboard.ConnectionQuery{Tenant: o.Tenant})
			require.NoError(t, err)
			same(t, []onboard.Connection{want}, listed, "the tenant's connections")
		})
	}
}

// SetCleanup sets and clears a done flow's Cleanup; an unknown flow is
// ErrUnknownFlow, and a pending flow is refused and left as it was.
func testSetCleanup(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	f := newFlow(o, past, time.Hour)
	create(t, s, f, noCap)
	err := s.SetCleanup(ctx, f.ID, true)
	require.Error(t, err, "a pending flow has no cleanup")
	require.NotErrorIs(t, err, onboard.ErrUnknownFlow, "a pending flow is known")
	same(t, f, load(t, s, f.ID), "the pending flow after SetCleanup")

	require.NoError(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, false))
	dirty := func() []string {
		got, err := s.Flows(ctx, onboard.FlowQuery{Owner: o, Cleanup: true, Limit: 10})
		require.NoError(t, err)
		return flowIDs(got)
	}
	for _, set := range []bool{true, true, false, false, true} {
		require.NoError(t, s.SetCleanup(ctx, f.ID, set))
		require.Equal(t, set, load(t, s, f.ID).Cleanup)
		if set {
			same(t, []string{f.ID}, dirty(), "flows to clean up")
		} else {
			same(t, []string{}, dirty(), "flows to clean up")
		}
	}
	require.NoError(t, s.SetCleanup(ctx, f.ID, false))
	require.ErrorIs(t, s.SetCleanup(ctx, ID(), true), onboard.ErrUnknownFlow)
}

// Prune deletes the done flows that expired before t with Cleanup clear
// and the detached records last updated before t, and counts them. It
// keeps pending flows, flows to clean up, later ones and attached
// connections, however old.
func testPrune(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	base := randomTime(1500)
	cut := base.Add(time.Hour)
	_, err := s.Prune(ctx, base) // what older runs left in a shared store
	require.NoError(t, err)
	o := newOwner()

	mk := func(expires time.Time, complete, cleanup bool) onboard.Flow {
		f := newFlow(o, expires.Add(-time.Minute), time.Minute)
		create(t, s, f, noCap)
		if complete {
			require.NoError(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, cleanup))
		}
		return f
	}
	gone := []onboard.Flow{mk(base, true, false), mk(cut.Add(-time.Microsecond), true, false)}
	kept := []onboard.Flow{
		mk(cut, true, false),                // expires at t, not before it
		mk(base, false, false),              // pending
		mk(base, true, true),                // cleanup left
		mk(cut.Add(time.Hour), true, false), // later
	}
	t.Cleanup(func() {
		_ = s.SetCleanup(context.Background(), kept[2].ID, false)
		_ = s.CompleteFlow(context.Background(), kept[1].ID, onboard.Connection{State: onboard.Abandoned}, false)
	})
	provider := "p-" + ID()[:8]
	rec := func(owner onboard.Owner, updated time.Time) onboard.Connection {
		c := newConn(owner, provider, updated.Add(-time.Hour))
		c.UpdatedAt = updated
		require.NoError(t, s.SaveConnection(ctx, c))
		return c
	}
	goneRecs := []onboard.Connection{rec(onboard.Owner{}, base), rec(onboard.Owner{}, cut.Add(-time.Microsecond))}
	keptRecs := []onboard.Connection{rec(onboard.Owner{}, cut), rec(o, base)}

	n, err := s.Prune(ctx, cut)
	require.NoError(t, err)
	require.Equal(t, len(gone)+len(goneRecs), n, "flows and records pruned")
	for _, f := range gone {
		_, found, err := s.Flow(ctx, f.ID)
		require.NoError(t, err)
		require.False(t, found, "flow expired at %v is pruned", f.ExpiresAt)
	}
	for _, f := range kept {
		load(t, s, f.ID)
	}
	for _, c := range goneRecs {
		_, found := find(t, s, c.Provider, c.ID)
		require.False(t, found, "detached record updated at %v is pruned", c.UpdatedAt)
	}
	for _, c := range keptRecs {
		_, found := find(t, s, c.Provider, c.ID)
		require.True(t, found, "record of %+v updated at %v is kept", c.Owner, c.UpdatedAt)
	}
}

// SaveConnection inserts, then replaces every field of the connection
// with the same provider and id, whatever tenant it had.
func testSaveConnectionUpserts(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	c := newConn(o, "test", past)
	require.NoError(t, s.SaveConnection(ctx, c))
	got, _ := find(t, s, c.Provider, c.ID)
	same(t, c, got, "the saved connection")

	moved := onboard.Connection{Provider: c.Provider, ID: c.ID, Owner: newOwner(), Name: "Renamed ✓", Source: "HubSpot",
		State: onboard.Failed, Message: "password expired", FlowID: ID(), CreatedAt: future,
		UpdatedAt: future.Add(time.Minute)}
	require.NoError(t, s.SaveConnection(ctx, moved))
	got, _ = find(t, s, c.Provider, c.ID)
	moved.CreatedAt = c.CreatedAt
	same(t, moved, got, "the replaced connection, with the CreatedAt it had (zero times stay zero)")
	old, err := s.Connections(ctx, onboard.ConnectionQuery{Tenant: o.Tenant})
	require.NoError(t, err)
	require.Empty(t, old, "the connection left its first tenant")
	now, err := s.Connections(ctx, onboard.ConnectionQuery{Tenant: moved.Owner.Tenant})
	require.NoError(t, err)
	same(t, []onboard.Connection{moved}, now, "the new tenant's connections")

	// Detached, then attached again.
	moved.Owner = onboard.Owner{}
	require.NoError(t, s.SaveConnection(ctx, moved))
	now, err = s.Connections(ctx, onboard.ConnectionQuery{Tenant: o.Tenant})
	require.NoError(t, err)
	require.Empty(t, now)
	moved.Owner = o
	require.NoError(t, s.SaveConnection(ctx, moved))
	now, err = s.Connections(ctx, onboard.ConnectionQuery{Tenant: o.Tenant})
	require.NoError(t, err)
	same(t, []onboard.Connection{moved}, now, "attached again")
}

// SwapConnection saves c only while the stored connection is still the
// one read: never over a change made since, never back after a deletion,
// never over a connection inserted since.
func testSwapConnection(t *testing.T, s onboard.Store) {
	require.Equal(t, 12, reflect.TypeFor[onboard.Connection]().NumField(),
		"Connection has a new field: compare it in every store's SwapConnection, and test it here")
	ctx := context.Background()
	o := newOwner()
	c := newConn(o, "test", past)
	ok, err := s.SwapConnection(ctx, onboard.Connection{}, c)
	require.NoError(t, err)
	require.True(t, ok, "inserted: none was stored")
	ok, err = s.SwapConnection(ctx, onboard.Connection{}, c)
	require.NoError(t, err)
	require.False(t, ok, "one is stored now")
	read, _ := find(t, s, c.Provider, c.ID)
	same(t, c, read, "the inserted connection")

	checked := read
	checked.CheckedAt = future
	ok, err = s.SwapConnection(ctx, read, checked)
	require.NoError(t, err)
	require.True(t, ok, "nothing changed since it was read")
	got, _ := find(t, s, c.Provider, c.ID)
	same(t, checked, got, "swapped")

	// A change since the read: the stale copy is not written back.
	stale := checked
	changed := checked
	changed.State, changed.Message, changed.UpdatedAt = onboard.Revoked, "quarantined", future.Add(time.Minute)
	require.NoError(t, s.SaveConnection(ctx, changed))
	for _, field := range []func(*onboard.Connection){
		func(c *onboard.Connection) {},
		func(c *onboard.Connection) { c.State = onboard.Revoked },
		func(c *onboard.Connection) { c.State, c.Message = onboard.Revoked, "quarantined" },
	} {
		old := stale
		field(&old)
		next := old
		next.CheckedAt = future.Add(time.Hour)
		ok, err = s.SwapConnection(ctx, old, next)
		require.NoError(t, err)
		require.False(t, ok, "the stored connection is not %+v", old)
	}
	got, _ = find(t, s, c.Provider, c.ID)
	same(t, changed, got, "the change stays")

	// Gone since the read: not written back.
	_, err = s.DeleteConnection(ctx, c.Provider, c.ID)
	require.NoError(t, err)
	next := got
	next.CheckedAt = future.Add(time.Hour)
	ok, err = s.SwapConnection(ctx, got, next)
	require.NoError(t, err)
	require.False(t, ok)
	_, found, err := s.FindConnection(ctx, c.Provider, c.ID)
	require.NoError(t, err)
	require.False(t, found, "a deleted connection stays deleted")

	// Zero times, a detached record, a new owner: each swaps while the
	// stored record is as read, and CreatedAt is kept.
	z := onboard.Connection{Provider: "test", ID: "c-" + ID()[:16], State: onboard.Connected}
	ok, err = s.SwapConnection(ctx, onboard.Connection{}, z)
	require.NoError(t, err)
	require.True(t, ok, "a detached record with zero times")
	zread, _ := find(t, s, z.Provider, z.ID)
	attached := zread
	attached.Owner, attached.CheckedAt = o, past
	attached.CreatedAt = future // not replaced
	ok, err = s.SwapConnection(ctx, zread, attached)
	require.NoError(t, err)
	require.True(t, ok, "swapped from zero times and no owner")
	got, _ = find(t, s, z.Provider, z.ID)
	attached.CreatedAt = zread.CreatedAt
	same(t, attached, got, "attached, its CreatedAt kept")
	moved := got
	moved.Owner = newOwner()
	ok, err = s.SwapConnection(ctx, got, moved)
	require.NoError(t, err)
	require.True(t, ok, "moved to another owner")
	ok, err = s.SwapConnection(ctx, got, moved)
	require.NoError(t, err)
	require.False(t, ok, "the old owner is not stored any more")

	// old and c of different connections: nothing.
	a := newConn(o, "test", past)
	require.NoError(t, s.SaveConnection(ctx, a))
	a, _ = find(t, s, a.Provider, a.ID)
	b := newConn(o, "test", past)
	ok, err = s.SwapConnection(ctx, a, b)
	require.NoError(t, err)
	require.False(t, ok)
	_, found, err = s.FindConnection(ctx, b.Provider, b.ID)
	require.NoError(t, err)
	require.False(t, found)
}

// Concurrent read-and-swap loops of one connection lose no update: each
// of them adds one to the message's count.
func testSwapConnectionConcurrently(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	c := newConn(newOwner(), "test", past)
	c.Message = "0"
	require.NoError(t, s.SaveConnection(ctx, c))
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for range 10 * n { // each try that loses, another won
				if t.Failed() {
					return
				}
				read, found, err := s.FindConnection(ctx, c.Provider, c.ID)
				if !assert.NoError(t, err) || !assert.True(t, found) {
					return
				}
				v, err := strconv.Atoi(read.Message)
				if !assert.NoError(t, err) {
					return
				}
				next := read
				next.Message = strconv.Itoa(v + 1)
				ok, err := s.SwapConnection(ctx, read, next)
				if !assert.NoError(t, err) || ok {
					return
				}
			}
			t.Error("a swap of a connection as read kept failing")
		})
	}
	wg.Wait()
	got, _ := find(t, s, c.Provider, c.ID)
	require.Equal(t, strconv.Itoa(n), got.Message)
}

// FindConnection finds a connection by provider and id, whatever its
// tenant, detached or not.
func testFindConnection(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	c := newConn(newOwner(), "test", past)
	require.NoError(t, s.SaveConnection(ctx, c))
	detached := newConn(onboard.Owner{}, "test", future)
	require.NoError(t, s.SaveConnection(ctx, detached))
	other := c
	other.Provider, other.Owner = "other", newOwner()
	require.NoError(t, s.SaveConnection(ctx, other))

	for _, want := range []onboard.Connection{c, detached, other} {
		got, found := find(t, s, want.Provider, want.ID)
		require.True(t, found)
		same(t, want, got, "the found connection")
	}
	got, found, err := s.FindConnection(ctx, "test", "missing-"+ID())
	require.NoError(t, err)
	require.False(t, found)
	same(t, onboard.Connection{}, got, "a connection not found")
	_, found = find(t, s, "nobody", c.ID)
	require.False(t, found, "connections are keyed by provider and id")
}

// Connections of a tenant: newest first, filtered by provider, a page at
// a time; another tenant's connections and detached records are never
// listed.
func testConnectionsOfTenant(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	var all []onboard.Connection // newest first
	for i, p := range []string{"a", "b", "a", "b", "a"} {
		c := newConn(onboard.Owner{Tenant: o.Tenant, User: fmt.Sprint("u", i)}, p, past.Add(time.Duration(i)*time.Hour))
		require.NoError(t, s.SaveConnection(ctx, c))
		all = append([]onboard.Connection{c}, all...)
	}
	require.NoError(t, s.SaveConnection(ctx, newConn(newOwner(), "a", future)))
	require.NoError(t, s.SaveConnection(ctx, newConn(onboard.Owner{}, "a", future)))
	require.NoError(t, s.SaveConnection(ctx, newConn(onboard.Owner{Tenant: o.Tenant}, "a", future)))

	list := func(q onboard.ConnectionQuery) []onboard.Connection {
		t.Helper()
		got, err := s.Connections(ctx, q)
		require.NoError(t, err)
		return got
	}
	onlyA := []onboard.Connection{all[0], all[2], all[4]}
	for _, tc := range []struct {
		name string
		q    onboard.ConnectionQuery
		want []onboard.Connection
	}{
		{"all", onboard.ConnectionQuery{Tenant: o.Tenant, Limit: 100}, all},
		{"provider", onboard.ConnectionQuery{Tenant: o.Tenant, Provider: "a", Limit: 100}, onlyA},
		{"first page", onboard.ConnectionQuery{Tenant: o.Tenant, Limit: 2}, all[:2]},
		{"second page", onboard.ConnectionQuery{Tenant: o.Tenant, Offset: 2, Limit: 2}, all[2:4]},
		{"last page", onboard.ConnectionQuery{Tenant: o.Tenant, Offset: 4, Limit: 2}, all[4:]},
		{"past the end", onboard.ConnectionQuery{Tenant: o.Tenant, Offset: 5, Limit: 2}, nil},
		{"provider page", onboard.ConnectionQuery{Tenant: o.Tenant, Provider: "a", Offset: 1, Limit: 1}, onlyA[1:2]},
		{"unknown tenant", onboard.ConnectionQuery{Tenant: "nobody-" + ID(), Limit: 100}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			same(t, connIDs(tc.want), connIDs(list(tc.q)), "connections")
		})
	}
	same(t, all, list(onboard.ConnectionQuery{Tenant: o.Tenant, Limit: 100}), "every field of the listed connections")
	for _, c := range list(onboard.ConnectionQuery{Tenant: "", Limit: 10_000}) {
		require.False(t, c.Owner.IsZero(), "detached record %s listed", c.ID)
	}
}

// Connections checked before a time: every tenant's, least recently
// checked first (never checked counts as before any time), detached
// records excluded.
func testConnectionsCheckedBefore(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	provider := "p-" + ID()[:8]
	a, b := newOwner(), newOwner()
	cut := past.Add(time.Hour)
	mk := func(o onboard.Owner, checked time.Time) onboard.Connection {
		c := newConn(o, provider, past)
		c.CheckedAt = checked
		require.NoError(t, s.SaveConnection(ctx, c))
		return c
	}
	want := []onboard.Connection{
		mk(a, time.Time{}), // never checked
		mk(b, time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Hour)),
		mk(b, past),
		mk(a, cut.Add(-time.Microsecond)),
	}
	slices.SortStableFunc(want, func(x, y onboard.Connection) int { return x.CheckedAt.Compare(y.CheckedAt) })
	mk(a, cut)                       // checked at the time: not before it
	mk(b, future)                    // checked later
	mk(onboard.Owner{}, time.Time{}) // detached

	list := func(q onboard.ConnectionQuery) []onboard.Connection {
		t.Helper()
		got, err := s.Connections(ctx, q)
		require.NoError(t, err)
		return got
	}
	same(t, want, list(onboard.ConnectionQuery{CheckedBefore: cut, Provider: provider, Limit: 100}),
		"connections checked before the time, least recently checked first")
	same(t, connIDs(want[1:3]), connIDs(list(onboard.ConnectionQuery{CheckedBefore: cut, Provider: provider, Offset: 1, Limit: 2})),
		"a page")
	same(t, connIDs(want), connIDs(list(onboard.ConnectionQuery{CheckedBefore: cut, Provider: provider, Tenant: a.Tenant, Limit: 100})),
		"Tenant is ignored")
	same(t, connIDs(want[:1]), connIDs(list(onboard.ConnectionQuery{CheckedBefore: time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
		Provider: provider, Limit: 100})), "never checked is before any time")

	// Without Provider: every provider, in the same order.
	all := list(onboard.ConnectionQuery{CheckedBefore: cut, Limit: 100_000})
	for i, c := range all {
		require.False(t, c.Owner.IsZero(), "detached record %s listed", c.ID)
		require.True(t, c.CheckedAt.Before(cut), "connection %s checked at %v", c.ID, c.CheckedAt)
		if i > 0 {
			require.False(t, c.CheckedAt.Before(all[i-1].CheckedAt), "connections out of CheckedAt order")
		}
	}
	var mine []onboard.Connection
	for _, c := range all {
		if c.Provider == provider {
			mine = append(mine, c)
		}
	}
	same(t, connIDs(want), connIDs(mine), "the test's connections among all")
}

// DeleteConnection removes a connection, attached or detached, by
// provider and id; deleting one that is not there is not an error.
func testDeleteConnection(t *testing.T, s onboard.Store) {
	ctx := context.Background()
	o := newOwner()
	c := newConn(o, "test", past)
	other := c
	other.Provider = "other"
	detached := newConn(onboard.Owner{}, "test", past)
	for _, x := range []onboard.Connection{c, other, detached} {
		require.NoError(t, s.SaveConnection(ctx, x))
	}
	for i := range 2 {
		deleted, err := s.DeleteConnection(ctx, c.Provider, c.ID)
		require.NoError(t, err)
		require.Equal(t, i == 0, deleted, "deleted reports whether it was there")
		_, found := find(t, s, c.Provider, c.ID)
		require.False(t, found)
	}
	listed, err := s.Connections(ctx, onboard.ConnectionQuery{Tenant: o.Tenant})
	require.NoError(t, err)
	same(t, []onboard.Connection{other}, listed, "the same id of another provider is kept")
	deleted, err := s.DeleteConnection(ctx, detached.Provider, detached.ID)
	require.NoError(t, err)
	require.True(t, deleted)
	_, found := find(t, s, detached.Provider, detached.ID)
	require.False(t, found)
	deleted, err = s.DeleteConnection(ctx, "test", "missing-"+ID())
	require.NoError(t, err)
	require.False(t, deleted)
}

// Every method returns an error for a canceled context, and changes
// nothing.
func testCanceledContext(t *testing.T, s onboard.Store) {
	bg := context.Background()
	ctx, cancel := context.WithCancel(bg)
	cancel()
	o := newOwner()
	pending := newFlow(o, past, time.Hour)
	create(t, s, pending, noCap)
	done := newFlow(o, past, time.Hour)
	create(t, s, done, noCap)
	require.NoError(t, s.CompleteFlow(bg, done.ID, onboard.Connection{State: onboard.Abandoned}, false))
	kept := newConn(o, "test", past)
	require.NoError(t, s.SaveConnection(bg, kept))
	fresh := newFlow(o, past, time.Hour)
	c := newConn(o, "test", past)

	calls := []struct {
		name string
		call func() error
	}{
		{"CreateFlow", func() error { return s.CreateFlow(ctx, fresh, noCap) }},
		{"Flow", func() error { _, _, err := s.Flow(ctx, pending.ID); return err }},
		{"Flows", func() error { _, err := s.Flows(ctx, onboard.FlowQuery{Owner: o, Limit: 10}); return err }},
		{"CompleteFlow", func() error { return s.CompleteFlow(ctx, pending.ID, c, false) }},
		{"SetCleanup", func() error { return s.SetCleanup(ctx, done.ID, true) }},
		{"Prune", func() error { _, err := s.Prune(ctx, future.Add(time.Hour)); return err }},
		{"SaveConnection", func() error { return s.SaveConnection(ctx, c) }},
		{"FindConnection", func() error { _, _, err := s.FindConnection(ctx, kept.Provider, kept.ID); return err }},
		{"Connections", func() error {
			_, err := s.Connections(ctx, onboard.ConnectionQuery{Tenant: o.Tenant, Limit: 10})
			return err
		}},
		{"DeleteConnection", func() error { _, err := s.DeleteConnection(ctx, kept.Provider, kept.ID); return err }},
	}
	for _, call := range calls {
		require.Error(t, call.call(), "%s must fail with a canceled context", call.name)
	}
	_, found, err := s.Flow(bg, fresh.ID)
	require.NoError(t, err)
	require.False(t, found, "CreateFlow saved a flow despite the canceled context")
	same(t, pending, load(t, s, pending.ID), "the pending flow")
	require.False(t, load(t, s, done.ID).Cleanup, "SetCleanup changed the flow despite the canceled context")
	_, found = find(t, s, c.Provider, c.ID)
	require.False(t, found, "a connection was saved despite the canceled context")
	_, found = find(t, s, kept.Provider, kept.ID)
	require.True(t, found, "a connection was deleted despite the canceled context")
}
