package sqlstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
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

// postgresURL is the test database; PostgreSQL tests are skipped without
// it.
func postgresURL(t testing.TB) string {
	u := os.Getenv("ONBOARD_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("ONBOARD_TEST_POSTGRES_URL is not set (for example postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	return u
}

// sqliteDSN is a new SQLite database file of the test.
func sqliteDSN(t testing.TB) string {
	return "file:" + filepath.Join(t.TempDir(), "onboard.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
}

// sized sets the pool as a deployment should.
func sized(db *sql.DB) *sql.DB {
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(time.Minute)
	return db
}

func openSQLite(t testing.TB) *sql.DB {
	db, err := sql.Open("sqlite", sqliteDSN(t))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return sized(db)
}

func openPostgres(t testing.TB) *sql.DB {
	db, err := sql.Open("pgx", postgresURL(t))
	require.NoError(t, err)
	require.NoError(t, db.PingContext(context.Background()), "PostgreSQL at ONBOARD_TEST_POSTGRES_URL")
	t.Cleanup(func() { db.Close() })
	return sized(db)
}

// prefix returns a fresh prefix and, on PostgreSQL, drops what the
// migrations made with it after the test.
func prefix(t testing.TB, db *sql.DB, d sqlstore.Dialect) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := "t" + hex.EncodeToString(b[:]) + "_"
	if d == sqlstore.Postgres {
		t.Cleanup(func() {
			for _, st := range []string{"DROP FUNCTION IF EXISTS " + p + "create_flow", "DROP TABLE IF EXISTS " + p + "flows",
				"DROP TABLE IF EXISTS " + p + "tenant_flows",
				"DROP TABLE IF EXISTS " + p + "connections", "DROP TABLE IF EXISTS " + p + "schema_migrations"} {
				_, _ = db.Exec(st)
			}
		})
	}
	return p
}

func newStore(t testing.TB, db *sql.DB, d sqlstore.Dialect) *sqlstore.Store {
	return storeAt(t, db, d, prefix(t, db, d))
}

// storeAt returns a Store over the tables of prefix p, migrated.
func storeAt(t testing.TB, db *sql.DB, d sqlstore.Dialect, p string) *sqlstore.Store {
	s, err := sqlstore.New(db, sqlstore.Options{Dialect: d, Prefix: p})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	return s
}

// migrateTo applies the migrations of prefix p up to version by hand, as a
// DBA or an older release would, and records them.
func migrateTo(t testing.TB, db *sql.DB, d sqlstore.Dialect, p string, version int) {
	migs, err := sqlstore.Migrations(d, p)
	require.NoError(t, err)
	_, err = db.Exec("CREATE TABLE " + p + "schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)")
	require.NoError(t, err)
	for _, m := range migs[:version] {
		_, err := db.Exec(m.SQL)
		require.NoError(t, err)
		_, err = db.Exec("INSERT INTO " + p + "schema_migrations (version, applied_at) VALUES (" + strconv.Itoa(m.Version) + ", 0)")
		require.NoError(t, err)
	}
}

// The suite runs on one database per dialect, shared by its tests, as a
// deployment's would be.
func TestConformance(t *testing.T) {
	for name, open := range dialects() {
		t.Run(name, func(t *testing.T) {
			db, d := open(t)
			s := newStore(t, db, d)
			storetest.Run(t, func(*testing.T) onboard.Store { return s })
		})
	}
}

func dialects() map[string]func(t testing.TB) (*sql.DB, sqlstore.Dialect) {
	return map[string]func(t testing.TB) (*sql.DB, sqlstore.Dialect){
		"sqlite":   func(t testing.TB) (*sql.DB, sqlstore.Dialect) { return openSQLite(t), sqlstore.SQLite },
		"postgres": func(t testing.TB) (*sql.DB, sqlstore.Dialect) { return openPostgres(t), sqlstore.Postgres },
	}
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	for name, open := range dialects() {
		t.Run(name, func(t *testing.T) {
			db, d := open(t)
			p := prefix(t, db, d)
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
			migs, err := sqlstore.Migrations(d, p)
			require.NoError(t, err)
			require.Equal(t, len(migs), n)
		})
	}
}

// The README shows every migration file as applied with the default
// prefix, and Migrations gives each dialect its own part of a version:
// versions 1 to 3 on both, version 4 on PostgreSQL only.
func TestMigrationsForDBAs(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	files, err := filepath.Glob("migrations/*.sql")
	require.NoError(t, err)
	require.Len(t, files, 7)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.Contains(t, string(readme), strings.ReplaceAll(string(b), "{{prefix}}", sqlstore.DefaultPrefix),
			"the README shows %s as applied", f)
	}
	for d, versions := range map[sqlstore.Dialect][]int{sqlstore.Postgres: {1, 2, 3, 4}, sqlstore.SQLite: {1, 2, 3, 5}} {
		m, err := sqlstore.Migrations(d, "app_")
		require.NoError(t, err)
		require.Len(t, m, len(versions))
		for i, mig := range m {
			require.Equal(t, versions[i], mig.Version)
			require.NotContains(t, mig.SQL, "{{prefix}}")
		}
		require.Contains(t, m[0].SQL, "CREATE TABLE app_flows")
		require.True(t, strings.HasPrefix(m[2].SQL, "-- onboard schema, version 3."), "both dialects' part first")
	}
	pg, _ := sqlstore.Migrations(sqlstore.Postgres, "x_")
	lite, _ := sqlstore.Migrations(sqlstore.SQLite, "x_")
	require.Contains(t, pg[2].SQL, "FUNCTION x_create_flow")
	require.Contains(t, pg[3].SQL, "TABLE x_tenant_flows")
	require.NotContains(t, lite[2].SQL, "FUNCTION")
	require.Contains(t, lite[2].SQL, "TRIGGER x_flow_complete")
	require.NotContains(t, pg[2].SQL, "TRIGGER")
}

// A database at version 2 keeps its connections and flows through
// version 3; times it never had read as zero.
func TestUpgradeFromVersion2(t *testing.T) {
	for name, open := range dialects() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, d := open(t)
			p := prefix(t, db, d)
			migrateTo(t, db, d, p, 2)
			created := time.Date(2024, 5, 6, 7, 8, 9, 123_000, time.UTC)
			_, err := db.Exec("INSERT INTO " + p + "flows (id, tenant, user_id, provider, source, name, connection_id, reconnect," +
				" return_url, return_to, data, state, outcome, created_at, expires_at) VALUES" +
				" ('f1', 'acme', 'alice', 'cdata', 'Salesforce', 'CRM', '', 0, 'https://app/r', '/done', '{\"sub\":\"x\"}'," +
				" 'done', 'connected', 1714979289000123, 1714981089000123)")
			require.NoError(t, err)
			_, err = db.Exec("INSERT INTO " + p + "connections (provider, id, tenant, user_id, name, source, state, message," +
				" flow_id, created_at, updated_at) VALUES ('cdata', 'c1', 'acme', 'alice', 'CRM', 'Salesforce', 'connected'," +
				" '', 'f1', 1714979289000123, 1714979289000123)")
			require.NoError(t, err)

			s, err := sqlstore.New(db, sqlstore.Options{Dialect: d, Prefix: p})
			require.NoError(t, err)
			require.NoError(t, s.Migrate(ctx))
			c, found, err := s.FindConnection(ctx, "cdata", "c1")
			require.NoError(t, err)
			require.True(t, found)
			require.True(t, c.CreatedAt.Equal(created), "created %v", c.CreatedAt)
			require.True(t, c.EventAt.IsZero(), "event_at %v", c.EventAt)
			require.True(t, c.CheckedAt.IsZero(), "checked_at %v", c.CheckedAt)
			f, found, err := s.Flow(ctx, "f1")
			require.NoError(t, err)
			require.True(t, found)
			require.Equal(t, onboard.Flow{ID: "f1", Owner: onboard.Owner{Tenant: "acme", User: "alice"}, Provider: "cdata",
				Source: "Salesforce", Name: "CRM", ReturnTo: "/done", State: onboard.FlowDone, Outcome: onboard.Connected,
				CreatedAt: f.CreatedAt, ExpiresAt: f.ExpiresAt}, f)
			require.True(t, f.CreatedAt.Equal(created))
			// Zero times kept by the new columns sort before every other.
			cs, err := s.Connections(ctx, onboard.ConnectionQuery{CheckedBefore: time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)})
			require.NoError(t, err)
			require.Len(t, cs, 1)
		})
	}
}

func TestOptions(t *testing.T) {
	db := openSQLite(t)
	_, err := sqlstore.New(db, sqlstore.Options{})
	require.ErrorContains(t, err, "Dialect")
	_, err = sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.SQLite, Prefix: "x; DROP TABLE y"})
	require.ErrorContains(t, err, "prefix")
	_, err = sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.SQLite, Prefix: strings.Repeat("x", 41)})
	require.ErrorContains(t, err, "prefix")
	_, err = sqlstore.New(nil, sqlstore.Options{Dialect: sqlstore.SQLite})
	require.Error(t, err)
	_, err = sqlstore.Migrations(sqlstore.SQLite, "x'; DROP TABLE y; --")
	require.ErrorContains(t, err, "prefix")
	_, err = sqlstore.Migrations(0, "x_")
	require.ErrorContains(t, err, "dialect")
}

// New warns when the pool is left at database/sql's defaults, and is
// quiet once it is sized.
func TestPoolWarning(t *testing.T) {
	db, err := sql.Open("sqlite", sqliteDSN(t))
	require.NoError(t, err)
	defer db.Close()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	_, err = sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.SQLite, Logger: logger})
	require.NoError(t, err)
	require.Contains(t, logs.String(), "level=WARN")
	require.Contains(t, logs.String(), "SetMaxOpenConns")
	logs.Reset()
	_, err = sqlstore.New(sized(db), sqlstore.Options{Dialect: sqlstore.SQLite, Logger: logger})
	require.NoError(t, err)
	require.Empty(t, logs.String())
}

// A statement_timeout in the DSN reaches PostgreSQL, as the package
// documentation says, and bounds a statement.
func TestStatementTimeoutFromDSN(t *testing.T) {
	u := postgresURL(t)
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	db, err := sql.Open("pgx", u+sep+"statement_timeout=150&lock_timeout=100")
	require.NoError(t, err)
	defer db.Close()
	var v string
	require.NoError(t, db.QueryRow("SHOW statement_timeout").Scan(&v))
	require.Equal(t, "150ms", v)
	start := time.Now()
	_, err = db.Exec("SELECT pg_sleep(5)")
	require.ErrorContains(t, err, "statement timeout")
	require.Less(t, time.Since(start), 3*time.Second)
}

// A store whose database is gone answers errors, not results.
func TestDatabaseDownIsAnError(t *testing.T) {
	db := openSQLite(t)
	s := newStore(t, db, sqlstore.SQLite)
	ctx := context.Background()
	now := time.Now()
	f := onboard.Flow{ID: storetest.ID(), Owner: onboard.Owner{Tenant: "t", User: "u"}, Provider: "test",
		State: onboard.FlowPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.NoError(t, s.CreateFlow(ctx, f, onboard.Limits{PerOwner: 5, PerTenant: 5}))
	db.Close()
	require.Error(t, s.CreateFlow(ctx, f, onboard.Limits{PerOwner: 5, PerTenant: 5}))
	require.Error(t, s.CompleteFlow(ctx, f.ID, onboard.Connection{Provider: "test", ID: "c", State: onboard.Connected}, false))
	_, _, err := s.Flow(ctx, f.ID)
	require.Error(t, err)
	_, err = s.Connections(ctx, onboard.ConnectionQuery{Tenant: "t"})
	require.Error(t, err)
}
