// Package sqlstore is an [onboard.Store] over database/sql, for
// PostgreSQL (through github.com/jackc/pgx/v5/stdlib) and SQLite (through
// modernc.org/sqlite). The app brings the *sql.DB; this package imports
// no driver.
//
// Several app instances can share one database: admission and completion
// are each one atomic statement, so caps hold and each flow completes once
// whichever instances its requests reach.
//
// # Statements
//
// A start costs one statement and a return two, on both databases:
//
//   - CreateFlow is one statement with admission inside it. On PostgreSQL
//     it calls the function {prefix}create_flow (made by [Store.Migrate]),
//     which adds one to its tenant's bound on pending flows in
//     {prefix}tenant_flows (locking that row for its transaction), counts
//     the tenant's flows only when the bound has passed the cap, and
//     inserts the flow if the owner is below its cap; on SQLite it is an
//     INSERT into the view {prefix}flow_admissions, whose trigger counts
//     and inserts while the statement holds SQLite's one write lock.
//   - Flow is one SELECT.
//   - CompleteFlow is one statement. On PostgreSQL a data-modifying WITH
//     moves the flow from pending to done and feeds the connection's
//     upsert, and its row count tells a completion from a refusal, and an
//     unknown flow from a used one. On SQLite it is an INSERT into the
//     view {prefix}flow_completions, whose trigger checks, updates and
//     upserts; a refusal is told by its error.
//
// The other methods are one statement each, but for Prune (two DELETEs)
// and SetCleanup on a flow it cannot change (a second query says why).
// Every query of flows and connections has an index (see the migrations).
//
// Like every Store it reads no clock: the times it compares with are
// passed in by the core. Times are stored as Unix microseconds.
//
// # Pool
//
// database/sql's pool defaults do not suit a server: no cap on open
// connections, and only two kept idle, so every burst of requests opens
// connections and closes them again, which costs more than onboard's
// statements. Size the pool for the requests one instance serves at once
// (within the database's max_connections divided by the instances):
//
//	db.SetMaxOpenConns(32)
//	db.SetMaxIdleConns(32) // equal: keep what a burst opened
//	db.SetConnMaxIdleTime(5 * time.Minute)
//
// [New] logs a warning when MaxOpenConns is left at its default; it
// cannot check MaxIdleConns, which database/sql does not report, so set
// it with MaxOpenConns (the default of two idle connections is what makes
// a burst reopen connections). pgx checks a connection idle for over a
// second with a ping before reusing it
// ([github.com/jackc/pgx/v5/stdlib.OptionShouldPing] tunes that).
//
// # A slow or hanging database
//
// Every call takes a context and stops when it ends: the handlers give
// each request one deadline (onboard.Config.Timeout) and the runner each
// step its own. To bound a statement inside PostgreSQL as well, set
// statement_timeout (and lock_timeout) in the DSN; pgx sends unknown DSN
// parameters as run-time parameters:
//
//	postgres://app@db.internal:5432/app?statement_timeout=5000&lock_timeout=2000
//
// For SQLite, open the database with a busy timeout so that concurrent
// writers wait for the write lock instead of failing, and WAL so that
// readers do not wait for writers:
//
//	sql.Open("sqlite", "file:onboard.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
//
// Apply the schema with [Store.Migrate], or by hand: [Migrations] returns
// it, and store/sqlstore/README.md shows each file as applied.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onboardkit/onboard"
)

// Dialect is the SQL database in use.
type Dialect int

// Dialects.
const (
	Postgres Dialect = iota + 1
	SQLite
)

// String returns "postgres" or "sqlite", the dialect's name in the names
// of its migration files.
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// DefaultPrefix is the default of Options.Prefix.
const DefaultPrefix = "onboard_"

// Options configure a Store.
type Options struct {
	// Dialect is required.
	Dialect Dialect
	// Prefix is prepended to the names of tables, indexes, views,
	// triggers and functions: [a-z0-9_]{0,40}. Default "onboard_".
	Prefix string
	// Logger receives the warning about an unsized pool. Default
	// slog.Default().
	Logger *slog.Logger
}

// Store is the SQL store. Build it with [New].
type Store struct {
	db  *sql.DB
	opt Options
	q   queries
}

var _ onboard.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var prefixRE = regexp.MustCompile(`^[a-z0-9_]{0,40}$`)

// New returns a Store over db. It does not touch the database: call
// Migrate once before use. It logs a warning when db's pool is left at
// database/sql's defaults (see the package documentation).
func New(db *sql.DB, opt Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlstore: nil *sql.DB")
	}
	if opt.Dialect != Postgres && opt.Dialect != SQLite {
		return nil, errors.New("sqlstore: Options.Dialect must be sqlstore.Postgres or sqlstore.SQLite")
	}
	if opt.Prefix == "" {
		opt.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(opt.Prefix) {
		return nil, fmt.Errorf("sqlstore: prefix %q must match [a-z0-9_]{0,40}", opt.Prefix)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if db.Stats().MaxOpenConnections == 0 {
		opt.Logger.Warn("sqlstore: the database pool has database/sql's defaults (no cap on open connections, 2 idle); "+
			"set db.SetMaxOpenConns(n), db.SetMaxIdleConns(n) and db.SetConnMaxIdleTime", "dialect", opt.Dialect)
	}
	return &Store{db: db, opt: opt, q: newQueries(opt.Dialect, opt.Prefix)}, nil
}

// Migration is one schema version.
type Migration struct {
	// Version numbers the migrations from 1, in the order they apply.
	Version int
	// SQL is the migration's statements, with the prefix applied.
	SQL string
}

// Migrations returns the schema migrations of dialect d in order, with
// the prefix applied, for a DBA who applies them by hand. The SQL of a
// version is its file for both dialects (migrations/NNNN_name.sql)
// followed by its file for d (NNNN_name.postgres.sql, NNNN_name.sqlite.sql).
// A version may belong to one dialect only: version 4 is PostgreSQL's,
// version 5 SQLite's.
func Migrations(d Dialect, prefix string) ([]Migration, error) {
	if d != Postgres && d != SQLite {
		return nil, fmt.Errorf("sqlstore: unknown dialect %v", d)
	}
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("sqlstore: prefix %q must match [a-z0-9_]{0,40}", prefix)
	}
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	// Both dialects' file first, then the dialect's own.
	rank := func(n string) int {
		if strings.Count(n, ".") == 1 {
			return 0
		}
		return 1
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := strings.Compare(a[:len("migrations/0000")], b[:len("migrations/0000")]); c != 0 {
			return c
		}
		return rank(a) - rank(b)
	})
	var out []Migration
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		if parts := strings.Split(base, "."); len(parts) == 3 && parts[1] != d.String() {
			continue
		}
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("sqlstore: migration %s: %w", n, err)
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		text := strings.ReplaceAll(string(b), "{{prefix}}", prefix)
		if len(out) > 0 && out[len(out)-1].Version == v {
			out[len(out)-1].SQL += text
			continue
		}
		out = append(out, Migration{v, text})
	}
	return out, nil
}

// Migrate applies the migrations not applied yet, each in a transaction,
// and records them in {prefix}schema_migrations. It is safe to call from
// several instances at once on PostgreSQL (an advisory lock serializes
// them) and to call again.
func (s *Store) Migrate(ctx context.Context) error {
	migs, err := Migrations(s.opt.Dialect, s.opt.Prefix)
	if err != nil {
		return err
	}
	table := s.opt.Prefix + "schema_migrations"
	err = s.locked(ctx, table, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)")
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	for _, m := range migs {
		if err := s.locked(ctx, table, func(tx *sql.Tx) error { return s.migrate(ctx, tx, table, m) }); err != nil {
			return fmt.Errorf("sqlstore: migration %d: %w", m.Version, err)
		}
	}
	return nil
}

// locked runs fn in a transaction that, on PostgreSQL, first takes an
// advisory lock named after the migrations table, so that instances
// migrating at once take turns (even CREATE TABLE IF NOT EXISTS races
// without it).
func (s *Store) locked(ctx context.Context, name string, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.opt.Dialect == Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", name); err != nil {
			return err
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// migrate applies m unless it is recorded as applied. The migration's
// statements go in one Exec (without arguments, pgx sends them in one
// simple query, and SQLite runs a script).
func (s *Store) migrate(ctx context.Context, tx *sql.Tx, table string, m Migration) error {
	var n int
	if err := tx.QueryRowContext(ctx, s.q.rebind("SELECT COUNT(*) FROM "+table+" WHERE version = ?"), m.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.q.rebind("INSERT INTO "+table+" (version, applied_at) VALUES (?, ?)"),
		m.Version, time.Now().UnixMicro())
	return err
}

const (
	flowCols = "id, tenant, user_id, provider, source, name, connection_id, reconnect, return_to, browser, " +
		"state, outcome, message, cleanup, created_at, expires_at"
	connCols = "provider, id, tenant, user_id, name, source, state, message, flow_id, created_at, updated_at, event_at, checked_at"
	// connUpdate replaces every column of a connection on conflict but
	// created_at, which is kept, and event_at, which each statement sets
	// itself.
	connUpdate = "tenant = excluded.tenant, user_id = excluded.user_id, name = excluded.name, source = excluded.source, " +
		"state = excluded.state, message = excluded.message, flow_id = excluded.flow_id, " +
		"updated_at = excluded.updated_at, checked_at = excluded.checked_at"
	// detached is the condition of a detached record: a zero Owner.
	detached = "(tenant = '' OR user_id = '')"
)

// Messages the SQLite triggers abort with (migrations/0003_contract.sqlite.sql).
const (
	abortOwnerCap    = "onboard: owner cap"
	abortTenantCap   = "onboard: tenant cap"
	abortUnknownFlow = "onboard: unknown flow"
	abortFlowUsed    = "onboard: flow used"
	abortRevoked     = "onboard: revoked"
)

// queries holds the SQL text for one dialect and prefix.
type queries struct {
	dialect                                                     Dialect
	createFlow, selectFlow, flowState, completeFlow, setCleanup string
	pruneFlows, pruneRecords                                    string
	upsertConn, findConn, deleteConn                            string
	swapConn, insertConn                                        string
}

func newQueries(d Dialect, p string) queries {
	q := queries{dialect: d}
	switch d {
	case Postgres:
		// The start and the completion answer through their row count,
		// which Exec returns: database/sql runs each Query with a goroutine
		// that watches its context, and starting it took about 18 µs of
		// CPU a query on a 2-core machine (BENCHMARKS.md). A start is 1 row
		// when saved, 2 when the owner's cap refused it, 3 the tenant's.
		q.createFlow = "SELECT FROM generate_series(1, CASE " + p + "create_flow($1, $2, $3, $4, $5, $6, $7, $8, $9," +
			" $10, $11, $12, $13, $14) WHEN 'ok' THEN 1 WHEN 'owner' THEN 2 WHEN 'tenant' THEN 3 ELSE 0 END)"
		// The connection's row is locked first (conn, read by done's
		// WHERE), then the flow's (by done's UPDATE, or fl when done
		// changed nothing): a concurrent write of either, such as a
		// quarantine's mark or another completion, is waited for, and under
		// READ COMMITTED (PostgreSQL's default) the row is then read as
		// that write left it; a later write waits for this statement. A
		// completion is 1 row when it completed the flow; else 3 when the
		// flow is not there, 4 when it is pending but its connection is
		// revoked (nothing changed), 2 when it is not pending. Each EXISTS
		// runs only when the ones before it are false.
		q.completeFlow = "WITH conn AS (SELECT state FROM " + p + "connections WHERE provider = $6::text AND id = $5::text" +
			" AND $5::text <> '' FOR UPDATE)," +
			" fl AS (SELECT state FROM " + p + "flows WHERE id = $1::text FOR UPDATE)," +
			" done AS (UPDATE " + p + "flows SET state = 'done', outcome = $2::text, message = $3::text," +
			" cleanup = $4::integer, connection_id = CASE WHEN $5::text = '' THEN connection_id ELSE $5::text END" +
			" WHERE id = $1::text AND state = 'pending' AND NOT EXISTS (SELECT FROM conn WHERE state = 'revoked') RETURNING id)," +
			" saved AS (INSERT INTO " + p + "connections (" + connCols + ")" +
			" SELECT $6::text, $5::text, $7::text, $8::text, $9::text, $10::text, $2::text, $3::text, $11::text," +
			" $12::bigint, $13::bigint, $14::bigint, $15::bigint FROM done WHERE $5::text <> ''" +
			" ON CONFLICT (provider, id) DO UPDATE SET " + connUpdate +
			", event_at = GREATEST(" + p + "connections.event_at, excluded.event_at))" +
			" SELECT FROM generate_series(1, CASE WHEN EXISTS (SELECT FROM done) THEN 1" +
			" WHEN NOT EXISTS (SELECT FROM fl) THEN 3" +
			" WHEN EXISTS (SELECT FROM fl WHERE state = 'pending') THEN 4 ELSE 2 END)"
	case SQLite:
		q.createFlow = "INSERT INTO " + p + "flow_admissions (id, tenant, user_id, provider, source, name, connection_id," +
			" reconnect, return_to, browser, created_at, expires_at, per_owner, per_tenant)" +
			" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
		q.completeFlow = "INSERT INTO " + p + "flow_completions (flow, cleanup, provider, id, tenant, user_id, name," +
			" source, state, message, flow_id, created_at, updated_at, event_at, checked_at)" +
			" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	}
	q.selectFlow = q.rebind("SELECT " + flowCols + " FROM " + p + "flows WHERE id = ?")
	q.flowState = q.rebind("SELECT state FROM " + p + "flows WHERE id = ?")
	q.setCleanup = q.rebind("UPDATE " + p + "flows SET cleanup = ? WHERE id = ? AND state = 'done'")
	q.pruneFlows = q.rebind("DELETE FROM " + p + "flows WHERE state = 'done' AND cleanup = 0 AND expires_at < ?")
	q.pruneRecords = q.rebind("DELETE FROM " + p + "connections WHERE " + detached + " AND updated_at < ?")
	q.upsertConn = q.rebind("INSERT INTO " + p + "connections (" + connCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" +
		" ON CONFLICT (provider, id) DO UPDATE SET " + connUpdate + ", event_at = excluded.event_at")
	q.findConn = q.rebind("SELECT " + connCols + " FROM " + p + "connections WHERE provider = ? AND id = ?")
	// A swap is one statement, so it is atomic on both databases: it
	// replaces the row only while every column still holds what was read.
	q.swapConn = q.rebind("UPDATE " + p + "connections SET tenant = ?, user_id = ?, name = ?, source = ?, state = ?," +
		" message = ?, flow_id = ?, updated_at = ?, event_at = ?, checked_at = ?" +
		" WHERE provider = ? AND id = ? AND tenant = ? AND user_id = ? AND name = ? AND source = ? AND state = ?" +
		" AND message = ? AND flow_id = ? AND created_at = ? AND updated_at = ? AND event_at = ? AND checked_at = ?")
	q.insertConn = q.rebind("INSERT INTO " + p + "connections (" + connCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" +
		" ON CONFLICT (provider, id) DO NOTHING")
	q.deleteConn = q.rebind("DELETE FROM " + p + "connections WHERE provider = ? AND id = ?")
	return q
}

// rebind turns ? placeholders into $n for PostgreSQL.
func (q queries) rebind(query string) string {
	if q.dialect != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// zeroMicros is the zero time.Time in Unix microseconds, as stored: a
// zero time sorts before every other.
const zeroMicros = -62135596800000000

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time {
	if v == zeroMicros {
		return time.Time{}
	}
	return time.UnixMicro(v)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// limit is n, or no limit for n <= 0.
func limit(n int) int64 {
	if n <= 0 {
		return math.MaxInt64
	}
	return int64(n)
}

// CreateFlow saves a new pending flow if admission allows it, in one
// statement.
func (s *Store) CreateFlow(ctx context.Context, f onboard.Flow, lim onboard.Limits) error {
	if f.ID == "" {
		return errors.New("sqlstore: empty flow id")
	}
	res, err := s.db.ExecContext(ctx, s.q.createFlow, f.ID, f.Owner.Tenant, f.Owner.User, f.Provider, f.Source, f.Name,
		f.ConnectionID, boolInt(f.Reconnect), f.ReturnTo, f.Browser, micros(f.CreatedAt), micros(f.ExpiresAt),
		limit(lim.PerOwner), limit(lim.PerTenant))
	// The answer: 1 when the flow is saved, 2 when the owner's cap refused
	// it, 3 when the tenant's did. PostgreSQL gives it as the statement's
	// row count (see newQueries), SQLite as the trigger's abort.
	var answer int64 = 1
	switch {
	case err == nil && s.opt.Dialect == Postgres:
		answer, err = res.RowsAffected()
	case err == nil:
	case strings.Contains(err.Error(), abortOwnerCap):
		answer, err = 2, nil
	case strings.Contains(err.Error(), abortTenantCap):
		answer, err = 3, nil
	}
	switch {
	case err != nil:
		return fmt.Errorf("sqlstore: create flow: %w", err)
	case answer == 1:
		return nil
	case answer == 2:
		return fmt.Errorf("%w: %d pending flows", onboard.ErrOwnerLimit, lim.PerOwner)
	case answer == 3:
		return fmt.Errorf("%w: the tenant has %d pending flows", onboard.ErrTooManyFlows, lim.PerTenant)
	}
	return fmt.Errorf("sqlstore: create flow: unexpected answer of %d rows", answer)
}

type scanner interface{ Scan(...any) error }

func scanFlow(r scanner) (onboard.Flow, error) {
	var f onboard.Flow
	var reconnect, cleanup int
	var state, outcome string
	var created, expires int64
	err := r.Scan(&f.ID, &f.Owner.Tenant, &f.Owner.User, &f.Provider, &f.Source, &f.Name, &f.ConnectionID, &reconnect,
		&f.ReturnTo, &f.Browser, &state, &outcome, &f.Message, &cleanup, &created, &expires)
	f.Reconnect, f.Cleanup, f.State, f.Outcome = reconnect != 0, cleanup != 0, onboard.FlowState(state), onboard.State(outcome)
	f.CreatedAt, f.ExpiresAt = fromMicros(created), fromMicros(expires)
	return f, err
}

// Flow returns the flow with this id.
func (s *Store) Flow(ctx context.Context, id string) (onboard.Flow, bool, error) {
	f, err := scanFlow(s.db.QueryRowContext(ctx, s.q.selectFlow, id))
	if errors.Is(err, sql.ErrNoRows) {
		return onboard.Flow{}, false, nil
	}
	if err != nil {
		return onboard.Flow{}, false, fmt.Errorf("sqlstore: flow: %w", err)
	}
	return f, true, nil
}

// Flows returns up to q.Limit flows selected by q, oldest first.
func (s *Store) Flows(ctx context.Context, q onboard.FlowQuery) ([]onboard.Flow, error) {
	cond := []string{"state = 'pending'"}
	var args []any
	if q.Cleanup {
		cond = []string{"state = 'done' AND cleanup = 1"}
	}
	if !q.Owner.IsZero() {
		cond = append(cond, "tenant = ? AND user_id = ?")
		args = append(args, q.Owner.Tenant, q.Owner.User)
	}
	if !q.ExpiredBefore.IsZero() {
		cond = append(cond, "expires_at < ?")
		args = append(args, micros(q.ExpiredBefore))
	}
	query := s.q.rebind("SELECT " + flowCols + " FROM " + s.opt.Prefix + "flows WHERE " + strings.Join(cond, " AND ") +
		" ORDER BY created_at, id LIMIT ?")
	rows, err := s.db.QueryContext(ctx, query, append(args, limit(q.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: flows: %w", err)
	}
	out, err := collect(rows, scanFlow)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: flows: %w", err)
	}
	return out, nil
}

// collect scans every row and closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// CompleteFlow moves a pending flow to done and saves c, in one
// statement.
func (s *Store) CompleteFlow(ctx context.Context, flowID string, c onboard.Connection, cleanup bool) error {
	if s.opt.Dialect == SQLite {
		_, err := s.db.ExecContext(ctx, s.q.completeFlow, flowID, boolInt(cleanup), c.Provider, c.ID, c.Owner.Tenant,
			c.Owner.User, c.Name, c.Source, string(c.State), c.Message, c.FlowID, micros(c.CreatedAt), micros(c.UpdatedAt),
			micros(c.EventAt), micros(c.CheckedAt))
		switch {
		case err == nil:
			return nil
		case strings.Contains(err.Error(), abortUnknownFlow):
			return onboard.ErrUnknownFlow
		case strings.Contains(err.Error(), abortFlowUsed):
			return onboard.ErrFlowUsed
		case strings.Contains(err.Error(), abortRevoked):
			return fmt.Errorf("%w: %s %q", onboard.ErrRevoked, c.Provider, c.ID)
		}
		return fmt.Errorf("sqlstore: complete flow: %w", err)
	}
	res, err := s.db.ExecContext(ctx, s.q.completeFlow, flowID, string(c.State), c.Message, boolInt(cleanup), c.ID,
		c.Provider, c.Owner.Tenant, c.Owner.User, c.Name, c.Source, c.FlowID, micros(c.CreatedAt), micros(c.UpdatedAt),
		micros(c.EventAt), micros(c.CheckedAt))
	// The answer, as the statement's row count (see newQueries): 1 when
	// the flow was pending and is done now, 2 when it was not pending, 3
	// when there is no such flow, 4 when its connection is revoked.
	var answer int64
	if err == nil {
		answer, err = res.RowsAffected()
	}
	switch {
	case err != nil:
		return fmt.Errorf("sqlstore: complete flow: %w", err)
	case answer == 1:
		return nil
	case answer == 2:
		return onboard.ErrFlowUsed
	case answer == 3:
		return onboard.ErrUnknownFlow
	case answer == 4:
		return fmt.Errorf("%w: %s %q", onboard.ErrRevoked, c.Provider, c.ID)
	}
	return fmt.Errorf("sqlstore: complete flow: unexpected answer of %d rows", answer)
}

// SetCleanup sets or clears a done flow's Cleanup.
func (s *Store) SetCleanup(ctx context.Context, flowID string, cleanup bool) error {
	res, err := s.db.ExecContext(ctx, s.q.setCleanup, boolInt(cleanup), flowID)
	if err != nil {
		return fmt.Errorf("sqlstore: set cleanup: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: set cleanup: %w", err)
	}
	if n > 0 {
		return nil
	}
	// Nothing changed: tell an unknown flow from one not done.
	var state string
	err = s.db.QueryRowContext(ctx, s.q.flowState, flowID).Scan(&state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return onboard.ErrUnknownFlow
	case err != nil:
		return fmt.Errorf("sqlstore: flow state: %w", err)
	}
	return fmt.Errorf("sqlstore: flow %q is not done", flowID)
}

// Prune deletes done flows that expired before t with no cleanup left,
// and detached connection records last updated before t.
func (s *Store) Prune(ctx context.Context, t time.Time) (int, error) {
	total := 0
	for _, query := range []string{s.q.pruneFlows, s.q.pruneRecords} {
		res, err := s.db.ExecContext(ctx, query, micros(t))
		if err != nil {
			return total, fmt.Errorf("sqlstore: prune: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("sqlstore: prune: %w", err)
		}
		total += int(n)
	}
	return total, nil
}

// SaveConnection inserts or replaces c.
func (s *Store) SaveConnection(ctx context.Context, c onboard.Connection) error {
	if c.Provider == "" || c.ID == "" {
		return errors.New("sqlstore: connection needs a provider and an id")
	}
	_, err := s.db.ExecContext(ctx, s.q.upsertConn, c.Provider, c.ID, c.Owner.Tenant, c.Owner.User, c.Name, c.Source,
		string(c.State), c.Message, c.FlowID, micros(c.CreatedAt), micros(c.UpdatedAt), micros(c.EventAt), micros(c.CheckedAt))
	if err != nil {
		return fmt.Errorf("sqlstore: save connection: %w", err)
	}
	return nil
}

// SwapConnection replaces old with c while the stored row holds old
// (inserts c while there is none, for a zero old), in one statement.
func (s *Store) SwapConnection(ctx context.Context, old, c onboard.Connection) (bool, error) {
	if c.Provider == "" || c.ID == "" {
		return false, errors.New("sqlstore: connection needs a provider and an id")
	}
	var res sql.Result
	var err error
	if old == (onboard.Connection{}) {
		res, err = s.db.ExecContext(ctx, s.q.insertConn, c.Provider, c.ID, c.Owner.Tenant, c.Owner.User, c.Name, c.Source,
			string(c.State), c.Message, c.FlowID, micros(c.CreatedAt), micros(c.UpdatedAt), micros(c.EventAt), micros(c.CheckedAt))
	} else {
		if old.Provider != c.Provider || old.ID != c.ID {
			return false, nil
		}
		res, err = s.db.ExecContext(ctx, s.q.swapConn, c.Owner.Tenant, c.Owner.User, c.Name, c.Source, string(c.State),
			c.Message, c.FlowID, micros(c.UpdatedAt), micros(c.EventAt), micros(c.CheckedAt),
			old.Provider, old.ID, old.Owner.Tenant, old.Owner.User, old.Name, old.Source, string(old.State),
			old.Message, old.FlowID, micros(old.CreatedAt), micros(old.UpdatedAt), micros(old.EventAt), micros(old.CheckedAt))
	}
	if err != nil {
		return false, fmt.Errorf("sqlstore: swap connection: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlstore: swap connection: %w", err)
	}
	return n == 1, nil
}

func scanConn(r scanner) (onboard.Connection, error) {
	var c onboard.Connection
	var state string
	var created, updated, event, checked int64
	err := r.Scan(&c.Provider, &c.ID, &c.Owner.Tenant, &c.Owner.User, &c.Name, &c.Source, &state, &c.Message, &c.FlowID,
		&created, &updated, &event, &checked)
	c.State = onboard.State(state)
	c.CreatedAt, c.UpdatedAt, c.EventAt, c.CheckedAt = fromMicros(created), fromMicros(updated), fromMicros(event), fromMicros(checked)
	return c, err
}

// FindConnection returns the connection whatever its tenant, detached or
// not.
func (s *Store) FindConnection(ctx context.Context, provider, id string) (onboard.Connection, bool, error) {
	c, err := scanConn(s.db.QueryRowContext(ctx, s.q.findConn, provider, id))
	if errors.Is(err, sql.ErrNoRows) {
		return onboard.Connection{}, false, nil
	}
	if err != nil {
		return onboard.Connection{}, false, fmt.Errorf("sqlstore: connection: %w", err)
	}
	return c, true, nil
}

// Connections returns the connections q selects.
func (s *Store) Connections(ctx context.Context, q onboard.ConnectionQuery) ([]onboard.Connection, error) {
	var cond []string
	var args []any
	order := "created_at DESC, provider, id"
	switch {
	case !q.CheckedBefore.IsZero():
		cond = append(cond, "checked_at < ?", "NOT "+detached)
		args = append(args, micros(q.CheckedBefore))
		order = "checked_at, provider, id"
	case q.Tenant == "":
		return nil, ctx.Err() // only detached records have no tenant
	default:
		cond = append(cond, "tenant = ?", "user_id <> ''")
		args = append(args, q.Tenant)
	}
	if q.Provider != "" {
		cond = append(cond, "provider = ?")
		args = append(args, q.Provider)
	}
	query := s.q.rebind("SELECT " + connCols + " FROM " + s.opt.Prefix + "connections WHERE " + strings.Join(cond, " AND ") +
		" ORDER BY " + order + " LIMIT ? OFFSET ?")
	rows, err := s.db.QueryContext(ctx, query, append(args, limit(q.Limit), max(q.Offset, 0))...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: connections: %w", err)
	}
	out, err := collect(rows, scanConn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: connections: %w", err)
	}
	return out, nil
}

// DeleteConnection removes a connection.
func (s *Store) DeleteConnection(ctx context.Context, provider, id string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q.deleteConn, provider, id)
	if err != nil {
		return false, fmt.Errorf("sqlstore: delete connection: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlstore: delete connection: %w", err)
	}
	return n > 0, nil
}
