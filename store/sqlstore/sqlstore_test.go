package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/store/sqlstore"
	"github.com/onboardkit/onboard/store/storetest"
)

// postgresURL is the test database, or "" to skip PostgreSQL tests.
func postgresURL(t testing.TB) string {
	u := os.Getenv("ONBOARD_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("ONBOARD_TEST_POSTGRES_URL is not set (for example postgres://postgres@127.0.0.1:5432/test)")
	}
	return u
}

func openSQLite(t testing.TB) *sql.DB {
	dsn := "file:" + filepath.Join(t.TempDir(), "onboard.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	db, err := sql.Open("sqlite", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func openPostgres(t testing.TB) *sql.DB {
	db, err := sql.Open("pgx", postgresURL(t))
	require.NoError(t, err)
	require.NoError(t, db.PingContext(context.Background()), "PostgreSQL at ONBOARD_TEST_POSTGRES_URL")
	t.Cleanup(func() { db.Close() })
	return db
}

// prefix returns a fresh table prefix and drops its tables after the
// test.
func prefix(t testing.TB, db *sql.DB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := "t" + hex.EncodeToString(b[:]) + "_"
	t.Cleanup(func() {
		for _, table := range []string{"flows", "connections", "schema_migrations"} {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + p + table)
		}
	})
	return p
}

func newStore(t testing.TB, db *sql.DB, d sqlstore.Dialect, mod ...func(*sqlstore.Options)) *sqlstore.Store {
	opt := sqlstore.Options{Dialect: d, Prefix: prefix(t, db)}
	for _, m := range mod {
		m(&opt)
	}
	s, err := sqlstore.New(db, opt)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	return s
}

func TestConformanceSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) onboard.Store { return newStore(t, openSQLite(t), sqlstore.SQLite) })
}

func TestConformancePostgres(t *testing.T) {
	db := openPostgres(t)
	storetest.Run(t, func(t *testing.T) onboard.Store { return newStore(t, db, sqlstore.Postgres) })
}

func dialects(t *testing.T) map[string]func(t *testing.T) (*sql.DB, sqlstore.Dialect) {
	return map[string]func(t *testing.T) (*sql.DB, sqlstore.Dialect){
		"sqlite":   func(t *testing.T) (*sql.DB, sqlstore.Dialect) { return openSQLite(t), sqlstore.SQLite },
		"postgres": func(t *testing.T) (*sql.DB, sqlstore.Dialect) { return openPostgres(t), sqlstore.Postgres },
	}
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	for name, open := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			db, d := open(t)
			p := prefix(t, db)
			s, err := sqlstore.New(db, sqlstore.Options{Dialect: d, Prefix: p})
			require.NoError(t, err)
			ctx := context.Background()
			if d == sqlstore.Postgres {
				var wg sync.WaitGroup
				errs := make([]error, 4)
				for i := range errs {
					wg.Add(1)
					go func() { defer wg.Done(); errs[i] = s.Migrate(ctx) }()
				}
				wg.Wait()
				for _, err := range errs {
					require.NoError(t, err)
				}
			}
			require.NoError(t, s.Migrate(ctx))
			require.NoError(t, s.Migrate(ctx))
			var n int
			require.NoError(t, db.QueryRow("SELECT COUNT(*) FROM "+p+"schema_migrations").Scan(&n))
			require.Equal(t, 2, n)
		})
	}
}

func TestMigrationsForDBAs(t *testing.T) {
	m, err := sqlstore.Migrations("app_")
	require.NoError(t, err)
	require.Len(t, m, 2)
	require.Equal(t, 1, m[0].Version)
	require.Equal(t, 2, m[1].Version)
	require.Contains(t, m[0].SQL, "CREATE TABLE app_flows")
	require.NotContains(t, m[0].SQL, "{{prefix}}")
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	m, _ = sqlstore.Migrations(sqlstore.DefaultPrefix)
	for _, mig := range m {
		for _, line := range strings.Split(mig.SQL, "\n") {
			if strings.HasPrefix(line, "CREATE") {
				require.Contains(t, string(readme), line, "the README shows the schema as applied")
			}
		}
	}
}

func TestOptions(t *testing.T) {
	db := openSQLite(t)
	_, err := sqlstore.New(db, sqlstore.Options{})
	require.ErrorContains(t, err, "Dialect")
	_, err = sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.SQLite, Prefix: "x; DROP TABLE y"})
	require.ErrorContains(t, err, "prefix")
	_, err = sqlstore.New(nil, sqlstore.Options{Dialect: sqlstore.SQLite})
	require.Error(t, err)
}

func flow(owner onboard.Owner, now time.Time, ttl time.Duration) onboard.Flow {
	return onboard.Flow{ID: storetest.ID(), Owner: owner, Provider: "test", ReturnURL: "https://a.example/r",
		State: onboard.FlowPending, CreatedAt: now, ExpiresAt: now.Add(ttl)}
}

func TestCleanupAndOwnerCap(t *testing.T) {
	for name, open := range dialects(t) {
		t.Run(name, func(t *testing.T) {
			db, d := open(t)
			now := time.Now()
			var mu sync.Mutex
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			s := newStore(t, db, d, func(o *sqlstore.Options) { o.MaxFlowsPerOwner = 2; o.Retain = time.Hour; o.Now = clock })
			ctx := context.Background()
			alice := onboard.Owner{Tenant: "t", User: "alice"}
			require.NoError(t, s.CreateFlow(ctx, flow(alice, now, time.Minute)))
			require.NoError(t, s.CreateFlow(ctx, flow(alice, now, time.Minute)))
			require.ErrorIs(t, s.CreateFlow(ctx, flow(alice, now, time.Minute)), onboard.ErrTooManyFlows)
			require.NoError(t, s.CreateFlow(ctx, flow(onboard.Owner{Tenant: "t", User: "bob"}, now, time.Minute)))

			mu.Lock()
			now = now.Add(30 * time.Minute)
			mu.Unlock()
			require.NoError(t, s.CreateFlow(ctx, flow(alice, now, time.Minute)), "expired flows do not count")
			n, err := s.Cleanup(ctx)
			require.NoError(t, err)
			require.Zero(t, n, "kept for Retain after expiry")
			mu.Lock()
			now = now.Add(2 * time.Hour)
			mu.Unlock()
			n, err = s.Cleanup(ctx)
			require.NoError(t, err)
			require.EqualValues(t, 4, n)
		})
	}
}

func TestDatabaseDownIsAnError(t *testing.T) {
	db := openSQLite(t)
	s := newStore(t, db, sqlstore.SQLite)
	ctx := context.Background()
	f := flow(onboard.Owner{Tenant: "t", User: "u"}, time.Now(), time.Hour)
	require.NoError(t, s.CreateFlow(ctx, f))
	db.Close()
	require.Error(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{Provider: "test", ID: "c", State: onboard.Connected}))
	_, _, err := s.Flow(ctx, f.ID)
	require.Error(t, err)
	_, err = s.Connections(ctx, "t")
	require.Error(t, err)
}
