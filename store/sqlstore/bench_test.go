package sqlstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/sqlstore"
)

// BenchmarkFlowPostgres times whole flows (a start, then its return) on
// PostgreSQL: onboard's handlers over sqlstore, and a floor, a
// hand-written handler pair that makes the same durable writes with the
// same number of statements: on start one INSERT of the flow row (the
// same columns), on return one SELECT of it and one statement that marks
// it done and upserts the connection. Both keep sessions in scs's
// in-memory store behind scs's LoadAndSave, each have a pool of their
// own (16 open and 16 idle connections), and start with the same number
// of pending flows held in tables of the same schema (made by Migrate,
// with a prefix of their own). onboard logs at Info through slog's text
// handler into io.Discard.
//
// Each iteration is one flow of each: the two take turns in rounds of 100
// flows, the first of a round alternating, so that both meet the same
// load on the machine (on a shared machine it changes by half within a
// minute). In a round, the starts are timed, then the provider's hosted
// page is played untimed, then the returns are timed. Requests are built
// before the timer starts. Run it with a fixed count:
//
//	ONBOARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench FlowPostgres -benchtime 2000x ./store/sqlstore/
//
// It reports each one's time per flow, of its starts and of its returns,
// its allocations per flow, and onboard's time as a multiple of the
// floor's (x-floor).
func BenchmarkFlowPostgres(b *testing.B) {
	const held = 100_000
	// A pool of each, named, so that the server's processes of each
	// are known.
	pools := []*sql.DB{openPostgresAs(b, "floor"), openPostgresAs(b, "onboard")}
	testutil.FixedCount(b)
	for _, perTenant := range []int{10, 100} {
		for _, clients := range []int{1, 8} {
			name := "held=" + strconv.Itoa(held) + "/per-tenant=" + strconv.Itoa(perTenant) + "/clients=" + strconv.Itoa(clients)
			b.Run(name, func(b *testing.B) {
				// Built here, once: the framework calls the benchmark
				// below twice (b.N of 1, then the count asked for), and
				// drops the tables after this group.
				apps := []*pgApp{newPGApp(b, pools[0], "floor", held, perTenant), newPGApp(b, pools[1], "onboard", held, perTenant)}
				b.Run("flows", func(b *testing.B) { interleave(b, apps, pools, clients) })
			})
		}
	}
}

// openPostgresAs opens a pool of 16 connections, all open, whose server
// processes carry the application name name.
func openPostgresAs(b *testing.B, name string) *sql.DB {
	u, err := url.Parse(postgresURL(b))
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", "bench_"+name)
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if failed, first := testutil.Concurrently(16, 16, func(int) error {
		_, err := db.Exec("SELECT pg_sleep(0.05)")
		return err
	}); failed > 0 {
		b.Fatal(first)
	}
	return db
}

// serverCPU returns the CPU time used so far by the server's processes
// serving db, read from /proc (so the server must run on this machine),
// and whether it could be read. The clock tick is taken as 100 Hz, as on
// Linux.
func serverCPU(db *sql.DB) (time.Duration, bool) {
	var name string
	if err := db.QueryRow("SELECT current_setting('application_name')").Scan(&name); err != nil {
		return 0, false
	}
	rows, err := db.Query("SELECT pid FROM pg_stat_activity WHERE application_name = $1", name)
	if err != nil {
		return 0, false
	}
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			return 0, false
		}
		pids = append(pids, pid)
	}
	if rows.Err() != nil {
		return 0, false
	}
	var ticks int64
	for _, pid := range pids {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, false
		}
		// The fields after the command's closing parenthesis: utime and
		// stime are the 12th and 13th.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		for _, v := range f[11:13] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, false
			}
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond, true
}

// walBytes returns the server's WAL insert position, in bytes: one
// position for the whole server, so either app's pool may ask.
func walBytes(b *testing.B, db *sql.DB) int64 {
	var n int64
	if err := db.QueryRow("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint").Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// interleave runs b.N flows of each app, in rounds that alternate which
// goes first, and reports their figures. pools are the apps' pools.
func interleave(b *testing.B, apps []*pgApp, pools []*sql.DB, clients int) {
	const round = 100
	type tally struct {
		start, back   time.Duration
		allocs, bytes uint64
		wal           int64
		cpu, goCPU    time.Duration
		cpuOK         bool
	}
	sums := make([]tally, len(apps))
	for i, db := range pools {
		sums[i].cpu, sums[i].cpuOK = serverCPU(db)
		sums[i].cpu = -sums[i].cpu
	}
	var ms runtime.MemStats
	measure := func(t *tally, d *time.Duration, fn func()) {
		wal := walBytes(b, pools[0])
		runtime.ReadMemStats(&ms)
		allocs, bytes := ms.Mallocs, ms.TotalAlloc
		cpu, _ := testutil.ProcessCPU()
		begin := time.Now()
		fn()
		*d += time.Since(begin)
		after, _ := testutil.ProcessCPU()
		t.goCPU += after - cpu
		runtime.ReadMemStats(&ms)
		t.allocs += ms.Mallocs - allocs
		t.bytes += ms.TotalAlloc - bytes
		t.wal += walBytes(b, pools[0]) - wal
	}
	b.ResetTimer()
	b.StopTimer()
	for done, r := 0, 0; done < b.N; r++ {
		n := min(round, b.N-done)
		done += n
		for k := range apps {
			i := (k + r) % len(apps)
			a, t := apps[i], &sums[i]
			cookies := make([]string, n)
			starts := make([]*http.Request, n)
			for j := range starts {
				cookies[j] = a.signIn(b)
				starts[j] = pgRequest(b, a.startURL, cookies[j])
			}
			startRecs, backRecs := recorders(n), recorders(n)
			measure(t, &t.start, func() { pgServe(b, a.start, starts, startRecs, clients, http.StatusFound) })
			backs := make([]*http.Request, n)
			for j, rec := range startRecs {
				back, err := a.returnURL(rec.Header().Get("Location"))
				if err != nil {
					b.Fatal(err)
				}
				backs[j] = pgRequest(b, back, cookies[j])
			}
			measure(t, &t.back, func() { pgServe(b, a.back, backs, backRecs, clients, http.StatusSeeOther) })
		}
	}
	n := float64(b.N)
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / n }
	for i, name := range []string{"floor", "onboard"} {
		t := sums[i]
		b.ReportMetric(per(t.start+t.back), name+"-ns/flow")
		b.ReportMetric(per(t.start), name+"-start-ns/flow")
		b.ReportMetric(per(t.back), name+"-return-ns/flow")
		b.ReportMetric(float64(t.allocs)/n, name+"-allocs/flow")
		b.ReportMetric(float64(t.bytes)/n, name+"-B/flow")
		b.ReportMetric(float64(t.wal)/n, name+"-WAL-B/flow")
		if _, ok := testutil.ProcessCPU(); ok {
			b.ReportMetric(per(t.goCPU), name+"-go-cpu-ns/flow")
		}
		if cpu, ok := serverCPU(pools[i]); ok && t.cpuOK {
			b.ReportMetric(per(t.cpu+cpu), name+"-server-cpu-ns/flow")
		}
	}
	b.ReportMetric(float64(sums[1].start+sums[1].back)/float64(sums[0].start+sums[0].back), "x-floor")
	b.ReportMetric(0, "ns/op") // each iteration is two flows: the figures above say more
}

const pgBenchURL = "https://app.example"

// pgApp is one app under benchmark.
type pgApp struct {
	sm          *scs.SessionManager
	start, back http.Handler
	startURL    string
	// returnURL plays the user on the hosted page at hosted and returns
	// where the browser is sent back.
	returnURL func(hosted string) (string, error)
	tenants   int
	browsers  int
	// prefix and store are the app's tables and a Store over them.
	prefix string
	store  *sqlstore.Store
}

// newPGApp builds the floor or onboard over its own tables in db, with
// held pending flows, perTenant of them per tenant, each of a user of its
// own. The browsers it signs in later join the same tenants.
func newPGApp(b *testing.B, db *sql.DB, kind string, held, perTenant int) *pgApp {
	ctx := context.Background()
	p := prefix(b, db, sqlstore.Postgres)
	s := storeAt(b, db, sqlstore.Postgres, p)
	a := &pgApp{sm: scs.New(), tenants: held / perTenant, browsers: held, prefix: p, store: s}
	if def, ok := a.sm.Store.(*scsmem.MemStore); ok {
		def.StopCleanup() // the default store's, replaced below
	}
	a.sm.Store = scsmem.NewWithCleanupInterval(0)
	now := time.Now()
	// The held flows, and each tenant's bound as the tenant's last count
	// left it (onboard's own starts would have set it).
	if _, err := db.ExecContext(ctx, "INSERT INTO "+p+"flows (id, tenant, user_id, provider, source, name, connection_id,"+
		" reconnect, return_to, browser, state, created_at, expires_at)"+
		" SELECT 'held-' || g, 't' || (g % $1), 'u' || g, 'fake', 'Salesforce', '', '', 0, '', md5(g::text), 'pending', $2, $3"+
		" FROM generate_series(0, $4 - 1) AS g", a.tenants, now.UnixMicro(), now.Add(time.Hour).UnixMicro(), held); err != nil {
		b.Fatal(err)
	}
	for _, st := range []string{"INSERT INTO " + p + "tenant_flows (tenant, bound) SELECT tenant, count(*) FROM " + p + "flows GROUP BY tenant",
		"ANALYZE " + p + "flows", "ANALYZE " + p + "tenant_flows"} {
		if _, err := db.ExecContext(ctx, st); err != nil {
			b.Fatal(err)
		}
	}
	if kind == "floor" {
		a.floor(db, p)
		return a
	}
	prov := fake.New("fake")
	sessions, err := middleware.NewSCS(a.sm)
	if err != nil {
		b.Fatal(err)
	}
	ob, err := onboard.New(onboard.Config{
		URL: pgBenchURL + "/connect", Providers: []onboard.Provider{prov}, Store: s, Sessions: sessions,
		Owner: onboardtest.Owner(a.sm), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	a.start = middleware.LoadAndSave(a.sm, ob.SessionError)(ob.Handler())
	a.back = a.start
	a.startURL = pgBenchURL + "/connect/fake/start?source=Salesforce"
	a.returnURL = func(hosted string) (string, error) {
		u, err := url.Parse(hosted)
		if err != nil {
			return "", err
		}
		return prov.Finish(u.Query().Get("flow"), onboard.Connected)
	}
	return a
}

// floorSQL is the floor's statements over the tables of one prefix: as
// many as sqlstore's, making the same rows.
type floorSQL struct {
	db                    *sql.DB
	insert, get, complete string
}

func newFloorSQL(db *sql.DB, p string) floorSQL {
	return floorSQL{
		db: db,
		insert: "INSERT INTO " + p + "flows (id, tenant, user_id, provider, source, name, connection_id, reconnect," +
			" return_to, browser, state, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, $12)",
		get: "SELECT id, tenant, user_id, provider, source, name, connection_id, reconnect, return_to, browser," +
			" state, outcome, message, cleanup, created_at, expires_at FROM " + p + "flows WHERE id = $1",
		complete: "WITH done AS (UPDATE " + p + "flows SET state = 'done', outcome = 'connected', connection_id = $2" +
			" WHERE id = $1 AND state = 'pending' RETURNING tenant, user_id, name, source)" +
			" INSERT INTO " + p + "connections (provider, id, tenant, user_id, name, source, state, message, flow_id," +
			" created_at, updated_at, event_at, checked_at)" +
			" SELECT 'fake', $2, tenant, user_id, name, source, 'connected', '', $1, $3, $3, $4, $3 FROM done" +
			" ON CONFLICT (provider, id) DO UPDATE SET tenant = excluded.tenant, user_id = excluded.user_id," +
			" state = excluded.state, flow_id = excluded.flow_id, updated_at = excluded.updated_at, checked_at = excluded.checked_at",
	}
}

// create inserts a pending flow.
func (q floorSQL) create(ctx context.Context, f onboard.Flow) error {
	_, err := q.db.ExecContext(ctx, q.insert, f.ID, f.Owner.Tenant, f.Owner.User, f.Provider, f.Source, f.Name,
		f.ConnectionID, 0, f.ReturnTo, f.Browser, f.CreatedAt.UnixMicro(), f.ExpiresAt.UnixMicro())
	return err
}

// pending reads a flow and checks that it is pending and unexpired at now.
func (q floorSQL) pending(ctx context.Context, id string, now time.Time) error {
	var f struct {
		id, tenant, user, provider, source, name, conn, returnTo, browser, state, outcome, message string
		reconnect, cleanup                                                                         int
		created, expires                                                                           int64
	}
	err := q.db.QueryRowContext(ctx, q.get, id).Scan(&f.id, &f.tenant, &f.user, &f.provider, &f.source, &f.name,
		&f.conn, &f.reconnect, &f.returnTo, &f.browser, &f.state, &f.outcome, &f.message, &f.cleanup, &f.created, &f.expires)
	if err == nil && (f.state != "pending" || now.UnixMicro() > f.expires) {
		err = fmt.Errorf("flow %s is %s", id, f.state)
	}
	return err
}

// finish marks a flow done and upserts its connection, in one statement.
func (q floorSQL) finish(ctx context.Context, id, conn string, now time.Time) error {
	_, err := q.db.ExecContext(ctx, q.complete, id, conn, now.UnixMicro(), int64(-62135596800000000))
	return err
}

// floor sets the floor's handlers up over the tables of prefix p.
func (a *pgApp) floor(db *sql.DB, p string) {
	q := newFloorSQL(db, p)
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusInternalServerError) }
	a.start = a.sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var raw [32]byte
		_, _ = rand.Read(raw[:])
		id := base64.RawURLEncoding.EncodeToString(raw[:])
		now := time.Now()
		f := onboard.Flow{ID: id, Owner: onboard.Owner{Tenant: a.sm.GetString(r.Context(), "tenant"),
			User: a.sm.GetString(r.Context(), "user")}, Provider: "fake", Source: r.URL.Query().Get("source"),
			Browser: id, CreatedAt: now, ExpiresAt: now.Add(30 * time.Minute)}
		a.sm.Put(r.Context(), "flow", id)
		if err := q.create(r.Context(), f); err != nil {
			fail(w, err)
			return
		}
		http.Redirect(w, r, "https://provider.example/hosted?state="+id, http.StatusFound)
	}))
	a.back = a.sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query := r.URL.Query()
		id, want := query.Get("state"), a.sm.GetString(r.Context(), "flow")
		if want == "" || subtle.ConstantTimeCompare([]byte(id), []byte(want)) != 1 {
			http.Error(w, "bad state", http.StatusForbidden)
			return
		}
		now := time.Now()
		err := q.pending(r.Context(), id, now)
		if err == nil {
			err = q.finish(r.Context(), id, query.Get("conn"), now)
		}
		if err != nil {
			fail(w, err)
			return
		}
		http.Redirect(w, r, "/?done="+id, http.StatusSeeOther)
	}))
	a.startURL = pgBenchURL + "/connect/start?source=Salesforce"
	a.returnURL = func(hosted string) (string, error) {
		u, err := url.Parse(hosted)
		if err != nil {
			return "", err
		}
		id := u.Query().Get("state")
		return pgBenchURL + "/connect/return?" + url.Values{"state": {id}, "conn": {"conn-" + id[:16]}}.Encode(), nil
	}
}

// signIn makes a new browser's session, signed in as the app's sign-in
// does, and returns its cookie.
func (a *pgApp) signIn(b *testing.B) string {
	i := a.browsers
	a.browsers++
	ctx, err := a.sm.Load(context.Background(), "")
	if err != nil {
		b.Fatal(err)
	}
	a.sm.Put(ctx, "user", "u"+strconv.Itoa(i))
	a.sm.Put(ctx, "tenant", "t"+strconv.Itoa(i%a.tenants))
	token, _, err := a.sm.Commit(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return a.sm.Cookie.Name + "=" + token
}

// pgRequest builds a request with a context that ends when the benchmark
// does, as a server gives every request a context that ends with it.
func pgRequest(b *testing.B, target, cookie string) *http.Request {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	r.Header.Set("Cookie", cookie)
	r.Header.Set("Sec-Fetch-Site", "same-origin") // a link on the app's page, as browsers mark it
	return r
}

func recorders(n int) []*httptest.ResponseRecorder {
	recs := make([]*httptest.ResponseRecorder, n)
	for i := range recs {
		recs[i] = httptest.NewRecorder()
	}
	return recs
}

// pgServe sends reqs to h from clients goroutines, answering into recs,
// and checks the answers.
func pgServe(b *testing.B, h http.Handler, reqs []*http.Request, recs []*httptest.ResponseRecorder, clients, want int) {
	testutil.Concurrently(len(reqs), clients, func(i int) error {
		h.ServeHTTP(recs[i], reqs[i])
		return nil
	})
	for i, rec := range recs {
		if rec.Code != want {
			b.Fatalf("%s answered %d, want %d: %s", reqs[i].URL.Path, rec.Code, want, rec.Body)
		}
	}
}

// BenchmarkStatementsPostgres times the store calls of a flow one at a
// time against the floor's statements, on tables holding 100,000 pending
// flows, 100 per tenant: a start's CreateFlow against the floor's INSERT, and a return's
// Flow and CompleteFlow against its SELECT and its UPDATE with upsert.
//
//	ONBOARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench StatementsPostgres -benchtime 2000x ./store/sqlstore/
func BenchmarkStatementsPostgres(b *testing.B) {
	db := openPostgres(b)
	testutil.FixedCount(b)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	const held, perTenant = 100_000, 100
	ctx := context.Background()
	lim := onboard.Limits{PerOwner: onboard.DefaultMaxFlowsPerOwner, PerTenant: onboard.DefaultMaxFlowsPerTenant}
	type calls struct {
		create   func(onboard.Flow) error
		read     func(id string) error
		complete func(f onboard.Flow) error
	}
	kinds := map[string]calls{}
	for _, kind := range []string{"floor", "onboard"} {
		app := newPGApp(b, db, kind, held, perTenant)
		q, s := newFloorSQL(db, app.prefix), app.store
		if kind == "floor" {
			kinds[kind] = calls{
				create:   func(f onboard.Flow) error { return q.create(ctx, f) },
				read:     func(id string) error { return q.pending(ctx, id, time.Now()) },
				complete: func(f onboard.Flow) error { return q.finish(ctx, f.ID, "conn-"+f.ID[:16], time.Now()) },
			}
			continue
		}
		kinds[kind] = calls{
			create: func(f onboard.Flow) error { return s.CreateFlow(ctx, f, lim) },
			read: func(id string) error {
				f, found, err := s.Flow(ctx, id)
				if err == nil && (!found || f.State != onboard.FlowPending) {
					err = fmt.Errorf("flow %s: found %v, %s", id, found, f.State)
				}
				return err
			},
			complete: func(f onboard.Flow) error {
				now := time.Now()
				return s.CompleteFlow(ctx, f.ID, onboard.Connection{Provider: "fake", ID: "conn-" + f.ID[:16], Owner: f.Owner,
					Source: f.Source, State: onboard.Connected, FlowID: f.ID, CreatedAt: now, UpdatedAt: now, CheckedAt: now}, false)
			},
		}
	}
	// made are the flows each kind created, and read and completed count
	// those used by each step.
	made := map[string][]onboard.Flow{}
	read, completed := map[string]int{}, map[string]int{}
	for _, clients := range []int{1, 8} {
		for _, step := range []string{"start", "read", "complete"} {
			for _, kind := range []string{"floor", "onboard"} {
				c := kinds[kind]
				b.Run(step+"/clients="+strconv.Itoa(clients)+"/"+kind, func(b *testing.B) {
					var run func(i int) error
					switch step {
					case "start":
						fs := make([]onboard.Flow, b.N)
						now := time.Now()
						for i := range fs {
							var raw [32]byte
							_, _ = rand.Read(raw[:])
							id := base64.RawURLEncoding.EncodeToString(raw[:])
							fs[i] = onboard.Flow{ID: id, Owner: onboard.Owner{Tenant: "t" + strconv.Itoa(i%(held/perTenant)), User: "n" + id[:12]},
								Provider: "fake", Source: "Salesforce", Browser: id, State: onboard.FlowPending,
								CreatedAt: now, ExpiresAt: now.Add(30 * time.Minute)}
						}
						made[kind] = append(made[kind], fs...)
						run = func(i int) error { return c.create(fs[i]) }
					case "read":
						fs := made[kind][read[kind]:]
						read[kind] += b.N
						run = func(i int) error { return c.read(fs[i].ID) }
					case "complete":
						fs := made[kind][completed[kind]:]
						completed[kind] += b.N
						run = func(i int) error { return c.complete(fs[i]) }
					}
					b.ResetTimer()
					if failed, first := testutil.Concurrently(b.N, clients, run); failed > 0 {
						b.Fatalf("%d calls failed, the first: %v", failed, first)
					}
				})
			}
		}
	}
}
