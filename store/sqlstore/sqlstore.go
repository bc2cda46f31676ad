// Package sqlstore is an [onboard.Store] over database/sql, for
// PostgreSQL (through github.com/jackc/pgx/v5/stdlib) and SQLite (through
// modernc.org/sqlite). The app brings the *sql.DB; this package imports
// no driver.
//
// Several app instances can share one database: flow completion is one
// conditional UPDATE inside a transaction with the connection's upsert,
// so of any number of concurrent returns of a flow, on any instances,
// exactly one stores its connection.
//
// Apply the schema with [Store.Migrate] (or by hand: the SQL is in
// migrations/ and in the README), and call [Store.Cleanup] now and then
// to delete old flows.
//
// For SQLite, open the database with a busy timeout so that concurrent
// writers wait instead of failing:
//
//	sql.Open("sqlite", "file:onboard.db?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
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

// Defaults for [Options].
const (
	DefaultPrefix           = "onboard_"
	DefaultRetain           = 24 * time.Hour
	DefaultMaxFlowsPerOwner = 20
)

// Options configure a Store.
type Options struct {
	// Dialect is required.
	Dialect Dialect
	// Prefix is prepended to table names: [a-z0-9_]*. Default "onboard_".
	Prefix string
	// Retain is how long Cleanup keeps a flow after it expires.
	// Default 24 hours.
	Retain time.Duration
	// MaxFlowsPerOwner caps one owner's unexpired pending flows.
	// Default 20; negative means no cap.
	MaxFlowsPerOwner int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Store is the SQL store. Build it with [New].
type Store struct {
	db  *sql.DB
	opt Options
	q   queries
}

var (
	_ onboard.Store            = (*Store)(nil)
	_ onboard.ConnectionFinder = (*Store)(nil)
	_ onboard.FlowLister       = (*Store)(nil)
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

var prefixRE = regexp.MustCompile(`^[a-z0-9_]*$`)

// New returns a Store over db. It does not touch the database: call
// Migrate once before use.
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
	if !prefixRE.MatchString(opt.Prefix) || len(opt.Prefix) > 40 {
		return nil, fmt.Errorf("sqlstore: table prefix %q must match [a-z0-9_]{0,40}", opt.Prefix)
	}
	if opt.Retain <= 0 {
		opt.Retain = DefaultRetain
	}
	if opt.MaxFlowsPerOwner == 0 {
		opt.MaxFlowsPerOwner = DefaultMaxFlowsPerOwner
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Store{db: db, opt: opt}
	s.q = newQueries(opt.Dialect, opt.Prefix)
	return s, nil
}

// Migration is one schema version.
type Migration struct {
	Version int
	SQL     string
}

// Migrations returns the schema migrations in order, with the table
// prefix applied, for a DBA who applies them by hand.
func Migrations(prefix string) ([]Migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]Migration, 0, len(names))
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("sqlstore: migration %s: %w", n, err)
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{v, strings.ReplaceAll(string(b), "{{prefix}}", prefix)})
	}
	return out, nil
}

// statements splits a migration into statements, dropping comments.
func statements(script string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(script, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line + "\n")
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	return out
}

// Migrate applies the migrations not applied yet, each in a transaction,
// and records them in {prefix}schema_migrations. It is safe to call from
// several instances at once on PostgreSQL (an advisory lock serializes
// them) and to call again.
func (s *Store) Migrate(ctx context.Context) error {
	migs, err := Migrations(s.opt.Prefix)
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

// migrate applies m unless it is recorded as applied.
func (s *Store) migrate(ctx context.Context, tx *sql.Tx, table string, m Migration) error {
	var n int
	if err := tx.QueryRowContext(ctx, s.q.rebind("SELECT COUNT(*) FROM "+table+" WHERE version = ?"), m.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	for _, st := range statements(m.SQL) {
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, s.q.rebind("INSERT INTO "+table+" (version, applied_at) VALUES (?, ?)"),
		m.Version, s.opt.Now().UnixMicro())
	return err
}

// queries holds the SQL text for one dialect and prefix.
type queries struct {
	dialect                                            Dialect
	insertFlow, selectFlow, countPending, completeFlow string
	resolveFlow, pendingFlows                          string
	upsertConn, selectConn, findConn, listConns        string
	deleteConn, cleanup                                string
}

const flowCols = "id, tenant, user_id, provider, source, name, connection_id, reconnect, return_url, return_to, data, state, outcome, created_at, expires_at"
const connCols = "provider, id, tenant, user_id, name, source, state, message, flow_id, created_at, updated_at"

func newQueries(d Dialect, p string) queries {
	q := queries{dialect: d}
	q.insertFlow = q.rebind("INSERT INTO " + p + "flows (" + flowCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	q.selectFlow = q.rebind("SELECT " + flowCols + " FROM " + p + "flows WHERE id = ?")
	q.countPending = q.rebind("SELECT COUNT(*) FROM " + p + "flows WHERE tenant = ? AND user_id = ? AND state = 'pending' AND expires_at > ?")
	q.completeFlow = q.rebind("UPDATE " + p + "flows SET state = 'done', outcome = ?, connection_id = CASE WHEN ? = '' THEN connection_id ELSE ? END" +
		" WHERE id = ? AND state = 'pending' AND expires_at > ?")
	q.resolveFlow = q.rebind("UPDATE " + p + "flows SET state = 'done', outcome = ?, connection_id = CASE WHEN ? = '' THEN connection_id ELSE ? END" +
		" WHERE id = ? AND state = 'pending'")
	q.pendingFlows = q.rebind("SELECT " + flowCols + " FROM " + p + "flows WHERE state = 'pending' AND created_at < ? ORDER BY created_at LIMIT ?")
	q.upsertConn = q.rebind("INSERT INTO " + p + "connections (" + connCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" +
		" ON CONFLICT (provider, id) DO UPDATE SET tenant = excluded.tenant, user_id = excluded.user_id, name = excluded.name," +
		" source = excluded.source, state = excluded.state, message = excluded.message, flow_id = excluded.flow_id, updated_at = excluded.updated_at")
	q.selectConn = q.rebind("SELECT " + connCols + " FROM " + p + "connections WHERE tenant = ? AND provider = ? AND id = ?")
	q.findConn = q.rebind("SELECT " + connCols + " FROM " + p + "connections WHERE provider = ? AND id = ?")
	q.listConns = q.rebind("SELECT " + connCols + " FROM " + p + "connections WHERE tenant = ? ORDER BY created_at DESC, id ASC")
	q.deleteConn = q.rebind("DELETE FROM " + p + "connections WHERE tenant = ? AND provider = ? AND id = ?")
	q.cleanup = q.rebind("DELETE FROM " + p + "flows WHERE expires_at < ?")
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

func micros(t time.Time) int64 { return t.UnixMicro() }
func fromMicros(v int64) time.Time {
	if v == 0 {
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

// CreateFlow saves a new pending flow.
func (s *Store) CreateFlow(ctx context.Context, f onboard.Flow) error {
	if s.opt.MaxFlowsPerOwner > 0 {
		var n int
		if err := s.db.QueryRowContext(ctx, s.q.countPending, f.Owner.Tenant, f.Owner.User, micros(s.opt.Now())).Scan(&n); err != nil {
			return fmt.Errorf("sqlstore: count flows: %w", err)
		}
		if n >= s.opt.MaxFlowsPerOwner {
			return fmt.Errorf("%w: owner has %d pending flows", onboard.ErrTooManyFlows, n)
		}
	}
	data := []byte("{}")
	if len(f.Data) > 0 {
		var err error
		if data, err = json.Marshal(f.Data); err != nil {
			return fmt.Errorf("sqlstore: flow data: %w", err)
		}
	}
	_, err := s.db.ExecContext(ctx, s.q.insertFlow, f.ID, f.Owner.Tenant, f.Owner.User, f.Provider, f.Source, f.Name,
		f.ConnectionID, boolInt(f.Reconnect), f.ReturnURL, f.ReturnTo, string(data), string(onboard.FlowPending), "",
		micros(f.CreatedAt), micros(f.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sqlstore: create flow: %w", err)
	}
	return nil
}

type scanner interface{ Scan(...any) error }

func scanFlow(r scanner) (onboard.Flow, error) {
	var f onboard.Flow
	var reconnect int
	var data, state, outcome string
	var created, expires int64
	err := r.Scan(&f.ID, &f.Owner.Tenant, &f.Owner.User, &f.Provider, &f.Source, &f.Name, &f.ConnectionID, &reconnect,
		&f.ReturnURL, &f.ReturnTo, &data, &state, &outcome, &created, &expires)
	if err != nil {
		return f, err
	}
	f.Reconnect, f.State, f.Outcome = reconnect != 0, onboard.FlowState(state), onboard.State(outcome)
	f.CreatedAt, f.ExpiresAt = fromMicros(created), fromMicros(expires)
	if data != "" && data != "{}" {
		if err := json.Unmarshal([]byte(data), &f.Data); err != nil {
			return f, fmt.Errorf("flow data: %w", err)
		}
	}
	return f, nil
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
	if f.State == onboard.FlowPending && f.Expired(s.opt.Now()) {
		f.State = onboard.FlowExpired
	}
	return f, true, nil
}

// CompleteFlow moves a pending flow to done and saves c, in one
// transaction whose first statement is the conditional UPDATE: the first
// transaction to run it wins, and the others find the flow done.
func (s *Store) CompleteFlow(ctx context.Context, flowID string, c onboard.Connection) error {
	return s.complete(ctx, s.q.completeFlow, flowID, c, micros(s.opt.Now()))
}

// ResolveFlow is CompleteFlow for expired pending flows too.
func (s *Store) ResolveFlow(ctx context.Context, flowID string, c onboard.Connection) error {
	return s.complete(ctx, s.q.resolveFlow, flowID, c)
}

func (s *Store) complete(ctx context.Context, update, flowID string, c onboard.Connection, extra ...any) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, update, append([]any{string(c.State), c.ID, c.ID, flowID}, extra...)...)
	if err != nil {
		return fmt.Errorf("sqlstore: complete flow: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: complete flow: %w", err)
	}
	if n == 0 {
		tx.Rollback()
		f, found, err := s.Flow(ctx, flowID)
		switch {
		case err != nil:
			return err
		case !found:
			return onboard.ErrUnknownFlow
		case f.State == onboard.FlowExpired:
			return onboard.ErrFlowExpired
		}
		return onboard.ErrFlowUsed
	}
	if c.ID != "" {
		if err := s.upsert(ctx, tx, c); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	return nil
}

// PendingFlows returns pending flows created before createdBefore,
// oldest first.
func (s *Store) PendingFlows(ctx context.Context, createdBefore time.Time, limit int) ([]onboard.Flow, error) {
	rows, err := s.db.QueryContext(ctx, s.q.pendingFlows, micros(createdBefore), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: pending flows: %w", err)
	}
	out, err := collect(rows, scanFlow)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: pending flows: %w", err)
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

type execer interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}

func (s *Store) upsert(ctx context.Context, db execer, c onboard.Connection) error {
	_, err := db.ExecContext(ctx, s.q.upsertConn, c.Provider, c.ID, c.Owner.Tenant, c.Owner.User, c.Name, c.Source,
		string(c.State), c.Message, c.FlowID, micros(c.CreatedAt), micros(c.UpdatedAt))
	if err != nil {
		return fmt.Errorf("sqlstore: save connection: %w", err)
	}
	return nil
}

// SaveConnection inserts or updates c.
func (s *Store) SaveConnection(ctx context.Context, c onboard.Connection) error {
	if c.Provider == "" || c.ID == "" {
		return errors.New("sqlstore: connection needs a provider and an id")
	}
	return s.upsert(ctx, s.db, c)
}

func scanConn(r scanner) (onboard.Connection, error) {
	var c onboard.Connection
	var state string
	var created, updated int64
	err := r.Scan(&c.Provider, &c.ID, &c.Owner.Tenant, &c.Owner.User, &c.Name, &c.Source, &state, &c.Message, &c.FlowID, &created, &updated)
	c.State, c.CreatedAt, c.UpdatedAt = onboard.State(state), fromMicros(created), fromMicros(updated)
	return c, err
}

func (s *Store) one(ctx context.Context, query string, args ...any) (onboard.Connection, bool, error) {
	c, err := scanConn(s.db.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return onboard.Connection{}, false, nil
	}
	if err != nil {
		return onboard.Connection{}, false, fmt.Errorf("sqlstore: connection: %w", err)
	}
	return c, true, nil
}

// Connection returns the tenant's connection.
func (s *Store) Connection(ctx context.Context, tenant, provider, id string) (onboard.Connection, bool, error) {
	return s.one(ctx, s.q.selectConn, tenant, provider, id)
}

// FindConnection returns the connection whatever its tenant (for webhook
// deliveries).
func (s *Store) FindConnection(ctx context.Context, provider, id string) (onboard.Connection, bool, error) {
	return s.one(ctx, s.q.findConn, provider, id)
}

// Connections lists the tenant's connections, newest first.
func (s *Store) Connections(ctx context.Context, tenant string) ([]onboard.Connection, error) {
	rows, err := s.db.QueryContext(ctx, s.q.listConns, tenant)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: connections: %w", err)
	}
	out, err := collect(rows, scanConn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: connections: %w", err)
	}
	return out, nil
}

// DeleteConnection removes the tenant's connection.
func (s *Store) DeleteConnection(ctx context.Context, tenant, provider, id string) error {
	if _, err := s.db.ExecContext(ctx, s.q.deleteConn, tenant, provider, id); err != nil {
		return fmt.Errorf("sqlstore: delete connection: %w", err)
	}
	return nil
}

// Cleanup deletes flows that expired more than Options.Retain ago and
// returns how many.
func (s *Store) Cleanup(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.q.cleanup, micros(s.opt.Now().Add(-s.opt.Retain)))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: cleanup: %w", err)
	}
	return res.RowsAffected()
}
