package sqlstore_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/sqlstore"
	"github.com/onboardkit/onboard/store/storetest"
)

// counter counts the statements a *sql.DB sends to its driver: every
// Exec and Query (direct or through a prepared statement), Begin, Commit
// and Rollback.
type counter struct{ n atomic.Int64 }

// Take returns the count since the last Take.
func (c *counter) Take() int { return int(c.n.Swap(0)) }

// openCounted opens a *sql.DB of driverName over dsn whose connections
// count their statements.
func openCounted(t testing.TB, driverName, dsn string) (*sql.DB, *counter) {
	probe, err := sql.Open(driverName, dsn)
	require.NoError(t, err)
	drv := probe.Driver()
	require.NoError(t, probe.Close())
	c := &counter{}
	var inner driver.Connector = dsnConnector{drv, dsn}
	if dc, ok := drv.(driver.DriverContext); ok {
		inner, err = dc.OpenConnector(dsn)
		require.NoError(t, err)
	}
	db := sql.OpenDB(countingConnector{inner, c})
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	t.Cleanup(func() { db.Close() })
	return db, c
}

type dsnConnector struct {
	drv driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

type countingConnector struct {
	inner driver.Connector
	c     *counter
}

func (cc countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := cc.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{conn, cc.c}, nil
}

func (cc countingConnector) Driver() driver.Driver { return cc.inner.Driver() }

// countingConn forwards to the driver's connection what database/sql
// asks of it, counting statements.
type countingConn struct {
	inner driver.Conn
	c     *counter
}

func (cn *countingConn) Prepare(query string) (driver.Stmt, error) {
	return cn.PrepareContext(context.Background(), query)
}

func (cn *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var st driver.Stmt
	var err error
	if p, ok := cn.inner.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = cn.inner.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &countingStmt{st, cn.c}, nil
}

func (cn *countingConn) Close() error { return cn.inner.Close() }

func (cn *countingConn) Begin() (driver.Tx, error) {
	return cn.BeginTx(context.Background(), driver.TxOptions{})
}

func (cn *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	cn.c.n.Add(1)
	var tx driver.Tx
	var err error
	if b, ok := cn.inner.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = cn.inner.Begin()
	}
	if err != nil {
		return nil, err
	}
	return countingTx{tx, cn.c}, nil
}

func (cn *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := cn.inner.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip // database/sql prepares it instead
	}
	res, err := e.ExecContext(ctx, query, args)
	if err != driver.ErrSkip {
		cn.c.n.Add(1)
	}
	return res, err
}

func (cn *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := cn.inner.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	rows, err := q.QueryContext(ctx, query, args)
	if err != driver.ErrSkip {
		cn.c.n.Add(1)
	}
	return rows, err
}

func (cn *countingConn) Ping(ctx context.Context) error {
	if p, ok := cn.inner.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (cn *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := cn.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (cn *countingConn) IsValid() bool {
	if v, ok := cn.inner.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (cn *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := cn.inner.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type countingTx struct {
	inner driver.Tx
	c     *counter
}

func (tx countingTx) Commit() error   { tx.c.n.Add(1); return tx.inner.Commit() }
func (tx countingTx) Rollback() error { tx.c.n.Add(1); return tx.inner.Rollback() }

type countingStmt struct {
	inner driver.Stmt
	c     *counter
}

func (st *countingStmt) Close() error  { return st.inner.Close() }
func (st *countingStmt) NumInput() int { return st.inner.NumInput() }

func (st *countingStmt) Exec(args []driver.Value) (driver.Result, error) {
	st.c.n.Add(1)
	return st.inner.Exec(args)
}

func (st *countingStmt) Query(args []driver.Value) (driver.Rows, error) {
	st.c.n.Add(1)
	return st.inner.Query(args)
}

func (st *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	st.c.n.Add(1)
	if e, ok := st.inner.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	vals, err := values(args)
	if err != nil {
		return nil, err
	}
	return st.inner.Exec(vals)
}

func (st *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	st.c.n.Add(1)
	if q, ok := st.inner.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	vals, err := values(args)
	if err != nil {
		return nil, err
	}
	return st.inner.Query(vals)
}

func values(args []driver.NamedValue) ([]driver.Value, error) {
	out := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, driver.ErrSkip
		}
		out[i] = a.Value
	}
	return out, nil
}

// countedStore opens a counted database of dialect d and a migrated store
// over it.
func countedStore(t *testing.T, d sqlstore.Dialect) (*sqlstore.Store, *counter) {
	var db *sql.DB
	var c *counter
	if d == sqlstore.Postgres {
		db, c = openCounted(t, "pgx", postgresURL(t))
	} else {
		db, c = openCounted(t, "sqlite", sqliteDSN(t))
	}
	return newStore(t, db, d), c
}

// TestStatementsPerFlow counts the statements a start and a return send
// to the database, through the real handlers: one for a start (admission
// and insert), two for a return (read the flow, complete it and save the
// connection).
func TestStatementsPerFlow(t *testing.T) {
	for _, d := range []sqlstore.Dialect{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(d.String(), func(t *testing.T) {
			s, count := countedStore(t, d)
			p := fake.New("fake")
			p.URL = onboardtest.Serve(t, p)
			a := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{p}, Store: s})
			for i := range 3 { // the first on a new pool connection, then reused
				b := a.Browser(fmt.Sprint("user", i), "acme")
				count.Take()
				hosted := b.Start(a, "fake", "source=Salesforce&name=CRM")
				require.Equal(t, 1, count.Take(), "statements of a start")
				u, err := url.Parse(hosted)
				require.NoError(t, err)
				back, err := p.Finish(u.Query().Get("flow"), onboard.Connected)
				require.NoError(t, err)
				res := b.Get(back)
				require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
				require.Equal(t, 2, count.Take(), "statements of a return")
			}
			require.Len(t, a.Connections("acme"), 3)
		})
	}
}

// TestStatementsPerCall counts the statements of each store call that a
// start or a return makes, refusals included.
func TestStatementsPerCall(t *testing.T) {
	for _, d := range []sqlstore.Dialect{sqlstore.SQLite, sqlstore.Postgres} {
		t.Run(d.String(), func(t *testing.T) {
			s, count := countedStore(t, d)
			ctx := context.Background()
			now := time.Now()
			owner := onboard.Owner{Tenant: "acme", User: "alice"}
			lim := onboard.Limits{PerOwner: 1, PerTenant: 10}
			f := onboard.Flow{ID: storetest.ID(), Owner: owner, Provider: "fake", State: onboard.FlowPending,
				CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			c := onboard.Connection{Provider: "fake", ID: "c1", Owner: owner, State: onboard.Connected, FlowID: f.ID}
			for _, tc := range []struct {
				name string
				call func() error
				want int
			}{
				{"CreateFlow", func() error { return s.CreateFlow(ctx, f, lim) }, 1},
				{"CreateFlow at the owner cap", func() error {
					g := f
					g.ID = storetest.ID()
					if err := s.CreateFlow(ctx, g, lim); !errors.Is(err, onboard.ErrOwnerLimit) {
						return fmt.Errorf("got %v, want ErrOwnerLimit", err)
					}
					return nil
				}, 1},
				{"Flow", func() error { _, _, err := s.Flow(ctx, f.ID); return err }, 1},
				{"CompleteFlow", func() error { return s.CompleteFlow(ctx, f.ID, c, false) }, 1},
				{"CompleteFlow of a used flow", func() error {
					if err := s.CompleteFlow(ctx, f.ID, c, false); !errors.Is(err, onboard.ErrFlowUsed) {
						return fmt.Errorf("got %v, want ErrFlowUsed", err)
					}
					return nil
				}, 1},
				{"CompleteFlow of an unknown flow", func() error {
					if err := s.CompleteFlow(ctx, storetest.ID(), c, false); !errors.Is(err, onboard.ErrUnknownFlow) {
						return fmt.Errorf("got %v, want ErrUnknownFlow", err)
					}
					return nil
				}, 1},
			} {
				count.Take()
				require.NoError(t, tc.call(), tc.name)
				require.Equal(t, tc.want, count.Take(), "statements of %s", tc.name)
			}
		})
	}
}
