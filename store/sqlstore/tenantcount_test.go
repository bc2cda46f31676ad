package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/store/sqlstore"
	"github.com/onboardkit/onboard/store/storetest"
)

// tenantCounts returns, for each tenant, its count in {prefix}tenant_flows
// and the number of its counted pending flows, which must agree.
func tenantCounts(t *testing.T, db *sql.DB, p string) (kept, pending map[string]int) {
	t.Helper()
	read := func(query string) map[string]int {
		rows, err := db.Query(query)
		require.NoError(t, err)
		defer rows.Close()
		m := map[string]int{}
		for rows.Next() {
			var tenant string
			var n int
			require.NoError(t, rows.Scan(&tenant, &n))
			if n != 0 {
				m[tenant] = n
			}
		}
		require.NoError(t, rows.Err())
		return m
	}
	return read("SELECT tenant, pending FROM " + p + "tenant_flows"),
		read("SELECT tenant, count(*) FROM " + p + "flows WHERE state = 'pending' AND counted = 1 GROUP BY tenant")
}

func flowOf(o onboard.Owner, created time.Time) onboard.Flow {
	return onboard.Flow{ID: storetest.ID(), Owner: o, Provider: "test", State: onboard.FlowPending,
		CreatedAt: created, ExpiresAt: created.Add(time.Hour)}
}

// On PostgreSQL each tenant's count of pending flows stays equal to its
// pending flows through concurrent starts (admitted and refused by either
// cap), returns (repeated and concurrent) and expired flows.
func TestTenantCountStaysExact(t *testing.T) {
	db := openPostgres(t)
	p := prefix(t, db, sqlstore.Postgres)
	s, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres, Prefix: p})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Migrate(ctx))
	now := time.Now()
	lim := onboard.Limits{PerOwner: 3, PerTenant: 8}
	// Two expired flows in each of the tenants first: they count until
	// they end, but never refuse a start.
	for i := range 4 {
		o := onboard.Owner{Tenant: "t" + strconv.Itoa(i), User: "gone"}
		for range 2 {
			require.NoError(t, s.CreateFlow(ctx, flowOf(o, now.Add(-2*time.Hour)), lim))
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 400)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := flowOf(onboard.Owner{Tenant: "t" + strconv.Itoa(i%4), User: "u" + strconv.Itoa(i%10)}, now)
			err := s.CreateFlow(ctx, f, lim)
			if errors.Is(err, onboard.ErrOwnerLimit) || errors.Is(err, onboard.ErrTooManyFlows) {
				return
			}
			if err != nil || i%3 == 0 { // a third stay pending
				errs[i] = err
				return
			}
			for range 2 {
				err := s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, false)
				if err != nil && !errors.Is(err, onboard.ErrFlowUsed) {
					errs[i] = err
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	kept, pending := tenantCounts(t, db, p)
	require.Equal(t, pending, kept)
	for tenant, n := range pending {
		require.LessOrEqual(t, n, lim.PerTenant+2, "tenant %s", tenant)
	}
	// The expired flows end through the runner's call, and leave the count.
	expired, err := s.Flows(ctx, onboard.FlowQuery{ExpiredBefore: now, Limit: 100})
	require.NoError(t, err)
	require.Len(t, expired, 8)
	for _, f := range expired {
		require.NoError(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{State: onboard.Abandoned}, false))
	}
	kept, pending = tenantCounts(t, db, p)
	require.Equal(t, pending, kept)
}

// A count too high (left by returns on instances of an older release)
// costs only time: the tenant's starts count its flows and are admitted
// exactly up to the cap.
func TestTenantCountTooHigh(t *testing.T) {
	db := openPostgres(t)
	p := prefix(t, db, sqlstore.Postgres)
	s, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres, Prefix: p})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Migrate(ctx))
	now := time.Now()
	lim := onboard.Limits{PerOwner: 10, PerTenant: 3}
	require.NoError(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "a"}, now), lim))
	_, err = db.Exec("UPDATE "+p+"tenant_flows SET pending = 1000 WHERE tenant = $1", "acme")
	require.NoError(t, err)
	for i := range 2 {
		require.NoError(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: fmt.Sprint("b", i)}, now), lim))
	}
	require.ErrorIs(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "c"}, now), lim), onboard.ErrTooManyFlows)
	kept, _ := tenantCounts(t, db, p)
	require.Equal(t, 1002, kept["acme"], "a refused start leaves the count as it was")
}

// Version 4 counts the flows pending when it is applied: a tenant at its
// cap under version 3 is still at it, and a return frees a place.
func TestUpgradeToVersion4(t *testing.T) {
	db := openPostgres(t)
	p := prefix(t, db, sqlstore.Postgres)
	migs, err := sqlstore.Migrations(sqlstore.Postgres, p)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = db.Exec("CREATE TABLE " + p + "schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)")
	require.NoError(t, err)
	for _, m := range migs[:3] {
		_, err := db.Exec(m.SQL)
		require.NoError(t, err)
		_, err = db.Exec("INSERT INTO " + p + "schema_migrations (version, applied_at) VALUES (" + strconv.Itoa(m.Version) + ", 0)")
		require.NoError(t, err)
	}
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
	kept, pending := tenantCounts(t, db, p)
	require.Equal(t, map[string]int{"acme": 3}, kept)
	require.Equal(t, pending, kept)
	require.ErrorIs(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "late"}, now), lim), onboard.ErrTooManyFlows)
	require.NoError(t, s.CompleteFlow(ctx, ids[0], onboard.Connection{State: onboard.Abandoned}, false))
	require.NoError(t, s.CreateFlow(ctx, flowOf(onboard.Owner{Tenant: "acme", User: "late"}, now), lim))
	kept, pending = tenantCounts(t, db, p)
	require.Equal(t, map[string]int{"acme": 3}, kept)
	require.Equal(t, pending, kept)
}
