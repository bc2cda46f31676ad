package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/store/sqlstore"
	"github.com/onboardkit/onboard/store/storetest"
)

// unknownBound is the bound of a tenant whose pending flows are not
// counted (migrations/0004_tenant_flows.postgres.sql).
const unknownBound = 1 << 62

// bounds returns, for each tenant, its bound in {prefix}tenant_flows and
// the number of its pending flows.
func bounds(t *testing.T, db *sql.DB, p string) (bound, pending map[string]int64) {
	t.Helper()
	read := func(query string) map[string]int64 {
		rows, err := db.Query(query)
		require.NoError(t, err)
		defer rows.Close()
		m := map[string]int64{}
		for rows.Next() {
			var tenant string
			var n int64
			require.NoError(t, rows.Scan(&tenant, &n))
			m[tenant] = n
		}
		require.NoError(t, rows.Err())
		return m
	}
	return read("SELECT tenant, bound FROM " + p + "tenant_flows"),
		read("SELECT tenant, count(*) FROM " + p + "flows WHERE state = 'pending' GROUP BY tenant")
}

// newPGStore returns a migrated PostgreSQL store, its database and its
// prefix.
func newPGStore(t *testing.T) (*sqlstore.Store, *sql.DB, string) {
	db := openPostgres(t)
	p := prefix(t, db, sqlstore.Postgres)
	return storeAt(t, db, sqlstore.Postgres, p), db, p
}

func flowOf(o onboard.Owner, created time.Time) onboard.Flow {
	return onboard.Flow{ID: storetest.ID(), Owner: o, Provider: "test", State: onboard.FlowPending,
		CreatedAt: created, ExpiresAt: created.Add(time.Hour)}
}

// On PostgreSQL each tenant's bound stays at or above its pending flows
// through concurrent starts (admitted and refused by either cap), returns
// (repeated and concurrent) and expired flows, and the caps hold.
func TestTenantBoundHolds(t *testing.T) {
	s, db, p := newPGStore(t)
	ctx := context.Background()
	now := time.Now()
	lim := onboard.Limits{PerOwner: 3, PerTenant: 8}
	// Two expired flows in each of the tenants first: they count in the
	// bound until they end, but never refuse a start.
	for i := range 4 {
		o := onboard.Owner{Tenant: "t" + strconv.Itoa(i), User: "gone"}
		for range 2 {
			require.NoError(t, s.CreateFlow(ctx, flowOf(o, now.Add(-2*time.Hour)), lim))
		}
	}
	failed, first := testutil.Concurrently(400, 40, func(i int) error {
		f := flowOf(onboard.Owner{Tenant: "t" + strconv.Itoa(i%4), User: "u" + strconv.Itoa(i%10)}, now)
		err := s.CreateFlow(ctx, f, lim)
		if errors.Is(err, onboard.ErrOwnerLimit) || errors.Is(err, onboard.ErrTooManyFlows) {
			return nil
		}
		if err != nil || i%3 == 0 { // a third stay pending
			return err
		}
		for range 2 { // the second finds it used
			err := s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, false)
			if err != nil && !errors.Is(err, onboard.ErrFlowUsed) {
				return err
			}
		}
		return nil
	})
	require.Zero(t, failed, "the first failure: %v", first)
	bound, pending := bounds(t, db, p)
	require.Len(t, bound, 4)
	for tenant, n := range pending {
		require.GreaterOrEqual(t, bound[tenant], n, "tenant %s", tenant)
		require.LessOrEqual(t, n, int64(lim.PerTenant+2), "tenant %s: its cap and its two expired flows", tenant)
	}
}

// The bound follows the tenant's flows: a tenant's first start counts
// them; starts within the cap add one each; a start past the cap counts
// again, and the bound becomes the pending flows with the new one, or
// unknown when they reach the cap.
func TestTenantBoundCountsPastTheCap(t *testing.T) {
	s, db, p := newPGStore(t)
	ctx := context.Background()
	now := time.Now()
	lim := onboard.Limits{PerOwner: 10, PerTenant: 5}
	var ids []string
	for i := range 5 {
		f := flowOf(onboard.Owner{Tenant: "acme", User: fmt.Sprint("u", i)}, now)
		require.NoError(t, s.CreateFlow(ctx, f, lim))
		ids = append(ids, f.ID)
		bound, _ := bounds(t, db, p)
		require.Equal(t, int64(i+1), bound["acme"], "start %d", i)
	}
	require.ErrorIs(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "late"}, now), lim), onboard.ErrTooManyFlows)
	for _, id := range ids[:4] {
		require.NoError(t, s.CompleteFlow(ctx, id, onboard.Connection{State: onboard.Abandoned}, false))
	}
	bound, _ := bounds(t, db, p)
	require.Equal(t, int64(unknownBound), bound["acme"], "the count that refused reached the cap; returns leave the bound")
	require.NoError(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "late"}, now), lim))
	bound, pending := bounds(t, db, p)
	require.Equal(t, int64(2), pending["acme"])
	require.Equal(t, int64(2), bound["acme"], "counted again past the cap")

	// A count that reaches the cap leaves the bound unknown, so that the
	// next start counts again, whatever its cap.
	for i := range 3 {
		require.NoError(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: fmt.Sprint("v", i)}, now), lim))
	}
	require.ErrorIs(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "w"}, now), lim), onboard.ErrTooManyFlows)
	bound, _ = bounds(t, db, p)
	require.Equal(t, int64(unknownBound), bound["acme"])
	require.NoError(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "w"}, now),
		onboard.Limits{PerOwner: 10, PerTenant: 6}), "a larger cap admits one more")
	bound, pending = bounds(t, db, p)
	require.Equal(t, int64(6), pending["acme"])
	require.Equal(t, int64(6), bound["acme"])
}

// A bound too low would admit past the cap; one too high (say, of flows
// deleted by hand) costs only time: the tenant's starts count its flows
// and are admitted exactly up to the cap.
func TestTenantBoundTooHigh(t *testing.T) {
	s, db, p := newPGStore(t)
	ctx := context.Background()
	now := time.Now()
	lim := onboard.Limits{PerOwner: 10, PerTenant: 3}
	require.NoError(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "a"}, now), lim))
	_, err := db.Exec("UPDATE "+p+"tenant_flows SET bound = 1000 WHERE tenant = $1", "acme")
	require.NoError(t, err)
	for i := range 2 {
		require.NoError(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: fmt.Sprint("b", i)}, now), lim))
	}
	require.ErrorIs(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "c"}, now), lim), onboard.ErrTooManyFlows)
}

// Version 4 knows no bound for the flows pending when it is applied: a
// tenant at its cap under version 3 is still at it, and a return frees a
// place.
func TestUpgradeToVersion4(t *testing.T) {
	db := openPostgres(t)
	p := prefix(t, db, sqlstore.Postgres)
	ctx := context.Background()
	migrateTo(t, db, sqlstore.Postgres, p, 3)
	s, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres, Prefix: p})
	require.NoError(t, err)
	now := time.Now()
	lim := onboard.Limits{PerOwner: 10, PerTenant: 3}
	var ids []string
	for i := range 3 {
		f := flowOf(onboard.Owner{Tenant: "acme", User: fmt.Sprint("u", i)}, now)
		// Version 3's function, as an older release calls it.
		var result string
		require.NoError(t, db.QueryRow("SELECT "+p+"create_flow($1, $2, $3, 'test', '', '', '', 0, '', '', $4, $5, 10, 3)",
			f.ID, f.Owner.Tenant, f.Owner.User, f.CreatedAt.UnixMicro(), f.ExpiresAt.UnixMicro()).Scan(&result))
		require.Equal(t, "ok", result)
		ids = append(ids, f.ID)
	}
	require.NoError(t, s.Migrate(ctx))
	require.ErrorIs(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "late"}, now), lim), onboard.ErrTooManyFlows)
	require.NoError(t, s.CompleteFlow(ctx, ids[0], onboard.Connection{State: onboard.Abandoned}, false))
	require.NoError(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "late"}, now), lim))
	require.ErrorIs(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "later"}, now), lim), onboard.ErrTooManyFlows)
}

// A refused start commits without waiting for the WAL flush (it saved
// nothing that must survive a crash); an admitted one waits, as the
// database is set to.
func TestRefusedStartsSkipTheFlush(t *testing.T) {
	_, db, p := newPGStore(t)
	now := time.Now()
	call := func(user string, perOwner, perTenant int) (result, syncCommit string) {
		tx, err := db.Begin()
		require.NoError(t, err)
		defer tx.Rollback()
		require.NoError(t, tx.QueryRow("SELECT "+p+"create_flow($1, 'acme', $2, 'test', '', '', '', 0, '', '', $3, $4, $5, $6)",
			storetest.ID(), user, now.UnixMicro(), now.Add(time.Hour).UnixMicro(), perOwner, perTenant).Scan(&result))
		require.NoError(t, tx.QueryRow("SELECT current_setting('synchronous_commit')").Scan(&syncCommit))
		require.NoError(t, tx.Commit())
		return result, syncCommit
	}
	var def string
	require.NoError(t, db.QueryRow("SELECT current_setting('synchronous_commit')").Scan(&def))
	if def == "off" {
		t.Skip("the database does not wait for the WAL flush at all (synchronous_commit=off)")
	}
	for _, tc := range []struct {
		user                string
		perOwner, perTenant int
		result, syncCommit  string
	}{
		{"alice", 1, 2, "ok", def},
		{"alice", 1, 2, "owner", "off"}, // refused in the INSERT, within the bound
		{"bob", 1, 2, "ok", def},
		{"carol", 1, 2, "tenant", "off"}, // counted past the bound
		{"alice", 1, 2, "owner", "off"},  // both caps: the owner's
	} {
		result, syncCommit := call(tc.user, tc.perOwner, tc.perTenant)
		require.Equal(t, tc.result, result, "%s", tc.user)
		require.Equal(t, tc.syncCommit, syncCommit, "%s: %s", tc.user, result)
	}
}
