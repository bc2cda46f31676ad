//go:build chaos

package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/examples/internal/chaos"
	"github.com/onboardkit/onboard/examples/internal/demo"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/emulate"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
	"github.com/onboardkit/onboard/store/sqlstore"
)

// The chaos run's size: twenty browsers at once, of five tenants, for 45
// seconds, then the walk-aways' lifetime, so that the whole test takes
// about a minute and a half on two cores.
const (
	chaosTenants  = 5
	chaosUsersPer = 4
	chaosFor      = 45 * time.Second
	chaosFlowTTL  = 20 * time.Second
	chaosTimeout  = 10 * time.Second
	probeRounds   = 3 // before and after the run, of
	probeFlows    = 5 // flows per browser
	maxWalkAways  = 8 // per browser: far below the owner cap (onboard.DefaultMaxFlowsPerOwner)
)

// TestChaos drives twenty cookie-jar browsers of five tenants through the
// example on PostgreSQL, with both emulators failing some API calls (500,
// 429 with Retry-After, junk, dropped connections, answers lost after the
// call was carried out, delays) and a proxy between the app and
// PostgreSQL that cuts every connection or stalls them for a few seconds.
// The browsers connect, fail, abandon on the hosted page, walk away
// (start and never return, or finish and never return), come back late
// (seconds later, or after the flow expired), reconnect and delete, and
// reload what failed. When the faults stop, every pending return must
// complete on reload; once the walk-aways have expired and the runner
// settled them, the emulators must hold exactly the connections the app
// stored: none lost, no orphan, no phantom, no duplicate. Every error
// answer must be onboard's or the app's HTML page with a message, and a
// start and a return must cost as much, in time and in provider calls,
// when the tenants hold hundreds of connections as when they held few.
//
//	ONBOARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -tags chaos -run TestChaos -v ./examples/stdlib/
func TestChaos(t *testing.T) {
	dbURL, direct, proxy := chaosDatabase(t)
	var owners []string
	for tn := range chaosTenants {
		for u := range chaosUsersPer {
			owners = append(owners, fmt.Sprintf("u%d-%d@t%d", tn, u, tn))
		}
	}
	a := start(t, map[string]string{"DATABASE_URL": dbURL, "ONBOARD_FLOW_TTL": chaosFlowTTL.String(),
		"ONBOARD_TIMEOUT": chaosTimeout.String(), "ONBOARD_DEMO_USERS": strings.Join(owners, ",")})
	t.Cleanup(proxy.Resume) // before the app stops
	require.NotNil(t, a.CDataEmulator)
	require.NotNil(t, a.FivetranEmulator)
	rec := newRecorder()
	users := make([]*user, len(owners))
	for i, o := range owners {
		name, tenant, _ := strings.Cut(o, "@")
		users[i] = newUser(t, a, rec, onboard.Owner{Tenant: tenant, User: name}, uint64(i))
		require.True(t, users[i].login(), "sign in %s", o)
	}
	var wg sync.WaitGroup
	warm := make([]bool, len(users))
	tenants := map[string]bool{}
	for _, u := range users {
		tenants[u.owner.Tenant] = true
	}

	// Warm up: every browser has its key, and every tenant its
	// sub-account and group, before the probe counts provider calls.
	for i, u := range users {
		wg.Add(1)
		go func() { defer wg.Done(); warm[i] = u.connect([]string{"cdata", "fivetran"}[i%2], onboard.Connected) }()
	}
	wg.Wait()
	require.NotContains(t, warm, false, "warm-up flows")
	early := probe(t, a, users)

	// The run.
	ctx, stop := context.WithCancel(context.Background())
	var chaosWG sync.WaitGroup
	faults := map[string]*injector{
		"cdata":    {api: a.CDataEmulator.API, counts: map[string]int{}},
		"fivetran": {api: a.FivetranEmulator.API, counts: map[string]int{}},
	}
	for _, inj := range faults {
		chaosWG.Add(1)
		go func() { defer chaosWG.Done(); inj.run(ctx) }()
	}
	var cuts int
	chaosWG.Add(1)
	go func() { defer chaosWG.Done(); cuts = databaseChaos(ctx, proxy) }()
	rec.begin()
	until := time.Now().Add(chaosFor)
	for _, u := range users {
		wg.Add(1)
		go func() { defer wg.Done(); u.run(until) }()
	}
	wg.Wait()
	stop()
	chaosWG.Wait()
	for _, inj := range faults {
		inj.api.Clear()
		inj.settle()
	}
	proxy.Resume()

	// The faults stopped: every pending return completes on reload, every
	// delete is confirmed.
	for _, u := range users {
		wg.Add(1)
		go func() { defer wg.Done(); u.wrapUp() }()
	}
	wg.Wait()
	unanswered := 0
	for _, u := range users {
		for _, p := range u.returns {
			unanswered++
			rec.surprise("return %s of %s never completed (%d tries)", p.flowID, u.owner.User, p.tries)
		}
		for _, h := range u.deletes {
			rec.surprise("delete of %s %s by %s never confirmed", h.provider, h.id, u.owner.User)
		}
	}

	// The walk-aways expire, and the runner settles them.
	var lastStart time.Time
	for _, u := range users {
		if u.lastStart.After(lastStart) {
			lastStart = u.lastStart
		}
	}
	time.Sleep(time.Until(lastStart.Add(chaosFlowTTL + chaosTimeout + time.Second))) // the runner settles a flow Timeout after its expiry
	store := directStore(t, direct)
	left, err := store.Flows(context.Background(), onboard.FlowQuery{})
	require.NoError(t, err)
	var settled onboard.Report
	for pass := 0; ; pass++ {
		rep, err := a.Onboarder.RunOnce(context.Background())
		settled.Settled += rep.Settled
		settled.Cleaned += rep.Cleaned
		if err == nil && rep.Settled == 0 && rep.Cleaned == 0 {
			break
		}
		require.Less(t, pass, 5, "the runner does not settle: %+v %v", rep, err)
	}
	pendingAfter, err := store.Flows(context.Background(), onboard.FlowQuery{})
	require.NoError(t, err)
	dirtyAfter, err := store.Flows(context.Background(), onboard.FlowQuery{Cleanup: true})
	require.NoError(t, err)

	// What the emulators hold against what the app stored.
	check := compare(t, a, rec, users, tenants)
	late := probe(t, a, users)

	// The figures.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	t.Logf("browsers %d (%d tenants), run %s, flow TTL %s, request deadline %s", len(users), len(tenants), chaosFor, chaosFlowTTL, chaosTimeout)
	t.Logf("flows started %d: %s", rec.count["start.cdata"]+rec.count["start.fivetran"], rec.counts("start."))
	t.Logf("what the browsers did: %s", rec.counts("did."))
	for _, name := range []string{"cdata", "fivetran"} {
		inj := faults[name]
		t.Logf("faults injected at %s: %d (%s)", name, inj.total, inj.summary())
	}
	cutConns, stalls := proxy.Stats()
	t.Logf("database: %d cuts (%d connections cut), %d stalls of 1.5 to 3 s", cuts, cutConns, stalls)
	t.Logf("answers by step and status: %s", rec.statuses())
	t.Logf("error pages by status and kind: %s", rec.errorKinds())
	t.Logf("runner after the run: %d flows pending (all expired) before it, %d settled, %d cleanups retried; %d pending and %d to clean up after",
		len(left), settled.Settled, settled.Cleaned, len(pendingAfter), len(dirtyAfter))
	t.Logf("connections: %d stored (%s), %d at the emulators; lost %d, orphans %d, phantoms %d, duplicates %d, unknown to the browsers %d",
		check.stored, check.perTenant, check.atEmulators, len(check.lost), len(check.orphans), len(check.phantoms),
		check.duplicates, len(check.unknown))
	t.Logf("bare or garbled error pages %d, requests without an answer %d, returns never completed %d", rec.nbad, len(rec.noAnswer), unanswered)
	for _, w := range rec.windows() {
		t.Log(w)
	}
	t.Logf("probe before the run (tenants of %d to %d connections): %s", early.smallest, early.largest, early)
	t.Logf("probe after the run  (tenants of %d to %d connections): %s", late.smallest, late.largest, late)

	// The verdicts.
	require.Empty(t, pendingAfter, "flows the runner left pending")
	require.Empty(t, dirtyAfter, "flows whose cleanup the runner left undone")
	require.Empty(t, rec.bad, "bare or garbled error pages")
	require.Empty(t, rec.noAnswer, "requests the app never answered")
	require.Empty(t, rec.surprises, "answers that are wrong for what the browser did")
	require.Empty(t, check.lost, "connections lost: the app said connected, the store lacks them")
	require.Empty(t, check.orphans, "connections at an emulator that the app does not know")
	require.Empty(t, check.phantoms, "stored connections the emulator lacks")
	require.Empty(t, check.unknown, "stored connections no browser made")
	require.Zero(t, check.duplicates, "duplicates")
	require.Greater(t, late.smallest, 5*early.largest, "the tenants grew")
	for _, p := range []string{"cdata", "fivetran"} {
		require.Equal(t, early.calls[p], late.calls[p], "%s calls per start and return do not grow with the tenant", p)
	}
	for _, step := range []string{"start", "return"} {
		e, l := early.p99(step), late.p99(step)
		require.LessOrEqual(t, l, 2*e+50*time.Millisecond, "%s p99 stays flat: %s before, %s after", step, e, l)
	}
}

// TestChaosDatabaseStall: a database that stops answering (sessions,
// flows and connections all in PostgreSQL) costs a user at most the
// request deadline, then the error page; once it answers again the same
// return completes on reload.
func TestChaosDatabaseStall(t *testing.T) {
	dbURL, _, proxy := chaosDatabase(t)
	const deadline = 2 * time.Second
	a := start(t, map[string]string{"DATABASE_URL": dbURL, "ONBOARD_TIMEOUT": deadline.String()})
	t.Cleanup(proxy.Resume)
	rec := newRecorder()
	u := newUser(t, a, rec, demo.Users[0], 1)
	u.b.Client.Timeout = deadline + 10*time.Second
	require.True(t, u.login())
	hosted, ok := u.start("cdata", url.Values{"source": {"Salesforce"}, "name": {"stalled"}})
	require.True(t, ok)
	back, err := cdatatest.Fill(t.Context(), u.b.Client, hosted, "", "pw")
	require.NoError(t, err)

	proxy.Stall()
	for _, step := range []struct {
		name string
		req  func() *http.Request
	}{
		{"start", func() *http.Request {
			return u.post("/connect/cdata/start", url.Values{"source": {"Salesforce"}, "name": {"during the stall"}})
		}},
		{"return", func() *http.Request { return u.get(back) }},
		{"home", func() *http.Request { return u.get(a.URL + "/") }},
	} {
		t0 := time.Now()
		res, ok := u.do(step.name, step.req())
		took := time.Since(t0)
		require.True(t, ok, "%s: no answer within %s", step.name, u.b.Client.Timeout)
		t.Logf("%s during the stall: %d after %s", step.name, res.code, took.Round(time.Millisecond))
		require.Equal(t, http.StatusServiceUnavailable, res.code, "%s: %s", step.name, res.body)
		require.LessOrEqual(t, took, deadline+demo.SessionTime+time.Second, "%s waited past the request's deadline", step.name)
	}
	require.Empty(t, rec.bad, "every answer is the app's or onboard's page")

	proxy.Resume()

	// A stall in the middle of the return: the session is loaded, then
	// the database stops answering while CData is asked to verify it.
	a.CDataEmulator.API.SetDelay(500 * time.Millisecond)
	stalled := time.AfterFunc(250*time.Millisecond, proxy.Stall)
	t0 := time.Now()
	res, ok := u.do("return", u.get(back))
	took := time.Since(t0)
	stalled.Stop()
	proxy.Resume()
	a.CDataEmulator.API.SetDelay(0)
	require.True(t, ok)
	t.Logf("return with a stall after 250 ms: %d after %s", res.code, took.Round(time.Millisecond))
	require.Equal(t, http.StatusServiceUnavailable, res.code, res.body)
	require.LessOrEqual(t, took, deadline+demo.SessionTime+time.Second, "the return waited past the request's deadline")
	require.Equal(t, "store unavailable", kindOf(res.body))

	// Once the database answers, the same return completes on reload.
	res, ok = u.do("return", u.get(back))
	require.True(t, ok)
	require.Equal(t, http.StatusSeeOther, res.code, res.body)
	class, text := u.result(res.location)
	require.Equal(t, "connected", class, text)
	_, ok = u.start("cdata", url.Values{"source": {"Salesforce"}, "name": {"after the stall"}})
	require.True(t, ok)
	require.Empty(t, rec.bad)
}

// chaosDatabase makes a schema of its own in the test database (dropped
// when the test ends) and a proxy to PostgreSQL, and returns the
// DATABASE_URL through the proxy and the one without it, both with that
// schema first on the search path.
func chaosDatabase(t *testing.T) (proxied, direct string, proxy *chaos.Proxy) {
	t.Helper()
	raw := os.Getenv("ONBOARD_TEST_POSTGRES_URL")
	if raw == "" {
		t.Skip("ONBOARD_TEST_POSTGRES_URL is not set (for example postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "chaos_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(t.Context(), raw)
	require.NoError(t, err, "PostgreSQL at ONBOARD_TEST_POSTGRES_URL")
	_, err = conn.Exec(t.Context(), "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	require.NoError(t, conn.Close(t.Context()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, raw)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(raw)
	require.NoError(t, err)
	proxy, err = chaos.Listen(u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	direct = u.String()
	u.Host = proxy.Addr()
	return u.String(), direct, proxy
}

// directStore is the app's store, reached without the proxy.
func directStore(t *testing.T, dsn string) *sqlstore.Store {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	db.SetMaxIdleConns(4)
	store, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return store
}

// databaseChaos cuts every connection to PostgreSQL, or stalls them for
// 1.5 to 3 seconds, every 4 to 6 seconds until ctx ends, and returns how
// many cuts it made.
func databaseChaos(ctx context.Context, p *chaos.Proxy) (cuts int) {
	rnd := mrand.New(mrand.NewPCG(7, 7))
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return cuts
		case <-time.After(4*time.Second + time.Duration(rnd.IntN(2000))*time.Millisecond):
		}
		if i%2 == 0 {
			p.Cut()
			cuts++
			continue
		}
		p.Stall()
		select {
		case <-ctx.Done():
		case <-time.After(1500*time.Millisecond + time.Duration(rnd.IntN(1500))*time.Millisecond):
		}
		p.Resume()
	}
}

// injector queues one fault at a time on an emulator's API, a little
// after the one before was used, so that a few percent of the calls fail.
type injector struct {
	api     *emulate.API
	total   int
	counts  map[string]int
	pending string // the queued fault's kind
	mark    int    // requests received when it was queued
}

var faultKinds = []struct {
	kind  string
	fault emulate.Fault
}{
	{"500", emulate.Fault{Status: http.StatusInternalServerError}},
	{"503 html", emulate.Fault{Status: http.StatusServiceUnavailable, Body: "<html><body>upstream down</body></html>"}},
	{"429", emulate.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second}},
	// Junk is sent for a call that was carried out: a 200 that did nothing
	// would be a lie no client can see through on a DELETE, whose answer
	// has no body to check.
	{"junk", emulate.Fault{Body: `{"data": {"id": tru`, AfterHandling: true}},
	{"drop", emulate.Fault{Drop: true}},
	{"lost answer", emulate.Fault{Drop: true, AfterHandling: true}},
	{"delay", emulate.Fault{Delay: 1500 * time.Millisecond}},
	{"late answer", emulate.Fault{Delay: 800 * time.Millisecond, AfterHandling: true}},
}

func (in *injector) run(ctx context.Context) {
	rnd := mrand.New(mrand.NewPCG(uint64(len(in.api.Requests())), 11))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100*time.Millisecond + time.Duration(rnd.IntN(300))*time.Millisecond):
		}
		in.settle()
		if in.pending == "" {
			f := faultKinds[rnd.IntN(len(faultKinds))]
			in.pending, in.mark = f.kind, len(in.api.Requests())
			in.api.Fail(f.fault)
		}
	}
}

// settle counts the queued fault once a request used it. After Clear, a
// fault no request used is not counted.
func (in *injector) settle() {
	if in.pending != "" && len(in.api.Requests()) > in.mark {
		in.total++
		in.counts[in.pending]++
		in.pending = ""
	}
}

func (in *injector) summary() string {
	var parts []string
	for _, f := range faultKinds {
		parts = append(parts, fmt.Sprintf("%s %d", f.kind, in.counts[f.kind]))
	}
	return strings.Join(parts, ", ")
}

// recorder keeps what the browsers saw.
type recorder struct {
	mu        sync.Mutex
	t0        time.Time
	codes     map[string]map[int]int
	kinds     map[string]int // error pages by status and kind
	count     map[string]int
	bad       []string
	nbad      int
	noAnswer  []string
	surprises []string
	samples   map[string][]sample
	// made says, by provider and connection id, which browser made a
	// connection on a hosted page and what it did then: to explain a
	// failure.
	made map[held]string
}

type sample struct{ at, took time.Duration }

func newRecorder() *recorder {
	return &recorder{codes: map[string]map[int]int{}, kinds: map[string]int{}, count: map[string]int{}, samples: map[string][]sample{},
		made: map[held]string{}}
}

func (r *recorder) begin() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t0 = time.Now()
}

func (r *recorder) add(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count[what]++
}

func (r *recorder) unanswered(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noAnswer = append(r.noAnswer, what)
}

func (r *recorder) surprise(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.surprises) < 20 {
		r.surprises = append(r.surprises, fmt.Sprintf(format, args...))
	}
}

// time records how long a step of the run took (its first try).
func (r *recorder) time(step string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.t0.IsZero() {
		r.samples[step] = append(r.samples[step], sample{time.Since(r.t0), took})
	}
}

// errorMessages are the messages an error page may show, by kind:
// onboard's, and the demo's own.
var errorMessages = func() map[string]string {
	out := map[string]string{}
	for _, k := range []error{onboard.ErrConfig, onboard.ErrNotSignedIn, onboard.ErrUnknownProvider, onboard.ErrBadRequest,
		onboard.ErrBadReturnTo, onboard.ErrNoFlow, onboard.ErrBadFlowID, onboard.ErrUnknownFlow, onboard.ErrFlowUsed,
		onboard.ErrFlowPending, onboard.ErrFlowExpired, onboard.ErrOtherBrowser, onboard.ErrOwnerMismatch, onboard.ErrForged,
		onboard.ErrProvider, onboard.ErrRefused, onboard.ErrStore, onboard.ErrSession, onboard.ErrNoSession,
		onboard.ErrTooManyFlows, onboard.ErrOwnerLimit, onboard.ErrUnknownConnection, onboard.ErrCrossOrigin} {
		out[html.EscapeString(onboard.Message(k))] = strings.TrimPrefix(k.Error(), "onboard: ")
	}
	out[html.EscapeString("Your connections could not be loaded right now. Please try again in a moment.")] = "demo: connections unavailable"
	return out
}()

// kindOf returns the kind of the message an error page shows, or "".
func kindOf(body string) string {
	for msg, kind := range errorMessages {
		if strings.Contains(body, msg) {
			return kind
		}
	}
	return ""
}

// answered records an answer and checks an error answer: one whole HTML
// page of the app's or onboard's, with a message that says what to do.
func (r *recorder) answered(step string, a answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.codes[step] == nil {
		r.codes[step] = map[int]int{}
	}
	r.codes[step][a.code]++
	if a.code < 400 {
		return
	}
	why := ""
	lower := strings.ToLower(a.body)
	switch {
	case !strings.HasPrefix(a.ctype, "text/html"):
		why = "Content-Type " + a.ctype
	case strings.Count(lower, "<html") != 1 || strings.Count(lower, "</html>") != 1:
		why = "not one whole HTML page"
	case kindOf(a.body) == "":
		why = "no message that says what to do"
	default:
		r.kinds[fmt.Sprintf("%d %s", a.code, kindOf(a.body))]++
	}
	if why != "" {
		r.nbad++
		if len(r.bad) < 10 {
			body := a.body
			if len(body) > 300 {
				body = body[:300]
			}
			r.bad = append(r.bad, fmt.Sprintf("%s %d: %s: %q", step, a.code, why, body))
		}
	}
}

func (r *recorder) counts(prefix string) string {
	var keys []string
	for k := range r.count {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(k, prefix), r.count[k]))
	}
	return strings.Join(parts, ", ")
}

func (r *recorder) errorKinds() string {
	var keys []string
	for k := range r.kinds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, r.kinds[k]))
	}
	return strings.Join(parts, "; ")
}

func (r *recorder) statuses() string {
	var steps []string
	for s := range r.codes {
		steps = append(steps, s)
	}
	slices.Sort(steps)
	var parts []string
	for _, s := range steps {
		var codes []int
		for c := range r.codes[s] {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		var cs []string
		for _, c := range codes {
			cs = append(cs, fmt.Sprintf("%d×%d", c, r.codes[s][c]))
		}
		parts = append(parts, s+" "+strings.Join(cs, " "))
	}
	return strings.Join(parts, "; ")
}

// windows gives the p50 and p99 of starts and returns (first tries) in
// nine-second windows of the run.
func (r *recorder) windows() []string {
	const width = 9 * time.Second
	var out []string
	for w := time.Duration(0); w < chaosFor; w += width {
		line := fmt.Sprintf("run %2.0f-%2.0f s:", w.Seconds(), (w + width).Seconds())
		for _, step := range []string{"start", "return"} {
			var ds []time.Duration
			for _, s := range r.samples[step] {
				if s.at >= w && s.at < w+width {
					ds = append(ds, s.took)
				}
			}
			line += fmt.Sprintf("  %s n=%d p50 %s p99 %s", step, len(ds), pct(ds, 50), pct(ds, 99))
		}
		out = append(out, line)
	}
	return out
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)].Round(time.Millisecond)
}

// user is one browser, signed in as one user, and what it knows.
type user struct {
	a     *app
	b     *onboardtest.Browser
	rec   *recorder
	rnd   *mrand.Rand
	owner onboard.Owner
	// mine are the connections this browser made that the app said it
	// stored; deletes are the ones it deleted without a confirmation yet.
	mine, deletes []held
	// returns are the returns this browser still has to make, or make
	// again.
	returns   []*pending
	seq       int
	walkAways int
	veryLate  bool
	// lastStart is when the answer to the browser's last start came:
	// its flow, if any, was made before, so it expires by lastStart
	// plus the flows' lifetime.
	lastStart time.Time
}

type held struct{ provider, id string }

// pending is a return the browser is to make.
type pending struct {
	provider, url, flowID string
	// id is the connection the provider named in the return URL.
	id string
	// want is the outcome the page must show: connected, failed or
	// abandoned; "" for a reconnect, which may end any of these ways.
	want      string
	reconnect bool
	due       time.Time
	veryLate  bool // returns after the flow expired
	tries     int
}

func newUser(t *testing.T, a *app, rec *recorder, owner onboard.Owner, seed uint64) *user {
	b := onboardtest.NewBrowser(t)
	b.Client.Timeout = chaosTimeout + 20*time.Second // a request still unanswered then is a hang
	return &user{a: a, b: b, rec: rec, owner: owner, rnd: mrand.New(mrand.NewPCG(seed, 42))}
}

type answer struct {
	code            int
	location, ctype string
	body            string
}

// get is a link followed, or a URL typed; nil for a URL that cannot be
// requested (do records it).
func (u *user) get(target string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return nil
	}
	return req
}

// post is a form of the app's own pages posted to path.
func (u *user) post(path string, form url.Values) *http.Request {
	req, err := http.NewRequest(http.MethodPost, u.a.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", u.a.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return req
}

// do sends req and records the answer; a request without one (a
// transport error, or no answer within the client's timeout) is recorded
// as unanswered.
func (u *user) do(step string, req *http.Request) (answer, bool) {
	if req == nil {
		u.rec.unanswered(step + ": a URL that cannot be requested")
		return answer{}, false
	}
	res, err := u.b.Client.Do(req)
	if err != nil {
		u.rec.unanswered(fmt.Sprintf("%s %s: %v", step, req.URL.Path, err))
		return answer{}, false
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	a := answer{code: res.StatusCode, location: res.Header.Get("Location"), ctype: res.Header.Get("Content-Type"), body: string(body)}
	u.rec.answered(step, a)
	return a, true
}

func (u *user) login() bool {
	for range 10 {
		res, ok := u.do("login", u.post("/login", url.Values{"user": {u.owner.User}}))
		if ok && res.code == http.StatusSeeOther {
			return true
		}
		time.Sleep(300 * time.Millisecond)
	}
	return false
}

// start posts the connect form and returns the hosted page it leads to.
func (u *user) start(provider string, form url.Values) (string, bool) {
	t0 := time.Now()
	res, ok := u.do("start", u.post("/connect/"+provider+"/start", form))
	u.rec.time("start", time.Since(t0))
	u.lastStart = time.Now()
	return u.started(provider, res, ok, http.StatusSeeOther)
}

func (u *user) started(provider string, res answer, ok bool, want int) (string, bool) {
	switch {
	case !ok:
		return "", false
	case res.code == want && strings.HasPrefix(res.location, u.a.Emulators[provider]+"/"):
		u.rec.add("start." + provider)
		return res.location, true
	case res.code >= 500: // a fault: the user may try again
		u.rec.add("did.start refused by a fault")
		return "", false
	}
	u.rec.surprise("%s start of %s answered %d %s", provider, u.owner.User, res.code, res.location)
	return "", false
}

// finish plays the user on the hosted page.
func (u *user) finish(provider, hosted string, outcome onboard.State) (string, bool) {
	cred := map[onboard.State]string{onboard.Connected: "pw", onboard.Failed: "fail", onboard.Abandoned: ""}[outcome]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var back string
	var err error
	if provider == "cdata" {
		back, err = cdatatest.Fill(ctx, u.b.Client, hosted, "", cred)
	} else {
		back, err = fivetrantest.Fill(ctx, u.b.Client, hosted, cred)
	}
	if err != nil || !strings.HasPrefix(back, u.a.URL+"/connect/"+provider+"/return/") {
		u.rec.surprise("%s hosted page of %s: %v %q", provider, u.owner.User, err, back)
		return "", false
	}
	return back, true
}

var sources = map[string][]string{
	"cdata":    {"Salesforce", "HubSpot", "GoogleSheets", "Snowflake", "MySQL"},
	"fivetran": {"Salesforce", "HubSpot", "Google Sheets", "Stripe"},
}

// begin starts a new connection, and finishes it on the hosted page
// unless outcome is empty; it returns the return to make.
func (u *user) begin(provider string, outcome onboard.State) (*pending, bool) {
	u.seq++
	src := sources[provider][u.rnd.IntN(len(sources[provider]))]
	hosted, ok := u.start(provider, url.Values{"source": {src}, "name": {fmt.Sprintf("%s %s %d", u.owner.User, src, u.seq)}})
	if !ok || outcome == "" {
		return nil, ok
	}
	back, ok := u.finish(provider, hosted, outcome)
	if !ok {
		return nil, false
	}
	p := &pending{provider: provider, url: back, want: string(outcome), flowID: flowOf(back)}
	if outcome != onboard.Abandoned {
		bu, _ := url.Parse(back)
		p.id = bu.Query().Get(map[string]string{"cdata": "cdata_connection_id", "fivetran": "id"}[provider])
		u.rec.mu.Lock()
		u.rec.made[held{provider, p.id}] = fmt.Sprintf("%s, flow %s, finished %s at %s", u.owner.User, p.flowID, outcome,
			time.Now().Format("15:04:05.000"))
		u.rec.mu.Unlock()
	}
	if provider == "fivetran" && outcome == onboard.Failed {
		p.want = "failed"
	}
	return p, true
}

func flowOf(back string) string {
	u, _ := url.Parse(back)
	return u.Path[strings.LastIndexByte(u.Path, '/')+1:]
}

// connect makes a whole flow, returning at once; it reports whether the
// return completed.
func (u *user) connect(provider string, outcome onboard.State) bool {
	p, ok := u.begin(provider, outcome)
	if !ok {
		return false
	}
	return u.ret(p, true)
}

// ret makes a return and reads its result. A return that a fault
// refused is kept to be made again; ret reports whether it completed.
func (u *user) ret(p *pending, first bool) bool {
	p.tries++
	t0 := time.Now()
	res, ok := u.do("return", u.get(p.url))
	if first {
		u.rec.time("return", time.Since(t0))
	}
	switch {
	case !ok:
		return true // recorded as unanswered
	case res.code == http.StatusSeeOther:
		u.check(p, res.location)
		return true
	case res.code == http.StatusGone && p.veryLate:
		u.rec.add("did.very late return told expired")
		return true
	case res.code >= 500:
		u.rec.add("did.return refused by a fault")
		p.due = time.Now().Add(300*time.Millisecond + time.Duration(u.rnd.IntN(700))*time.Millisecond)
		if first {
			u.returns = append(u.returns, p)
		}
		return false
	}
	u.rec.surprise("return %s (%s, want %q) of %s answered %d", p.flowID, p.provider, p.want, u.owner.User, res.code)
	return true
}

var flashRE = regexp.MustCompile(`<div class="flash ([a-z]+)" id="flash">([^<]*)</div>`)

// result loads the page a return leads to until it shows the flow's
// outcome, and returns the flash's class and text.
func (u *user) result(location string) (class, text string) {
	for try := 0; try < 20; try++ {
		if try > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		res, ok := u.do("result", u.get(u.a.URL+location))
		if !ok || res.code != http.StatusOK {
			continue
		}
		m := flashRE.FindStringSubmatch(res.body)
		if m == nil {
			return "", ""
		}
		class, text = m[1], html.UnescapeString(m[2])
		if _, failed := errorMessages[html.EscapeString(text)]; class == "info" || failed {
			continue // a delete's message, or the outcome could not be read: reload
		}
		return class, text
	}
	return class, text
}

// check reads a completed return's outcome and keeps what it stored.
func (u *user) check(p *pending, location string) {
	class, text := u.result(location)
	u.rec.add("did.return " + p.provider + " " + class)
	switch {
	case p.veryLate && class == "abandoned": // the runner settled it first
	case p.reconnect && (class == "connected" || class == "failed" || class == "abandoned"):
	case class != p.want:
		u.rec.surprise("return %s (%s) of %s: want %s, the page says %s %q", p.flowID, p.provider, u.owner.User, p.want, class, text)
	case !p.reconnect && p.id != "" && (class == "connected" || p.provider == "cdata"):
		u.mine = append(u.mine, held{p.provider, p.id})
	}
}

// run is the browser's life during the chaos.
func (u *user) run(until time.Time) {
	veryLateBy := time.Now().Add(chaosFor - chaosFlowTTL - 5*time.Second)
	for time.Now().Before(until) {
		u.retry(false)
		u.act(veryLateBy)
		time.Sleep(time.Duration(20+u.rnd.IntN(150)) * time.Millisecond)
	}
}

// retry makes the returns that are due again (all, with all), and the
// unconfirmed deletes.
func (u *user) retry(all bool) {
	now := time.Now()
	var keep []*pending
	for _, p := range u.returns {
		if (!all && now.Before(p.due)) || (all && p.veryLate && now.Before(p.due)) || !u.ret(p, false) {
			keep = append(keep, p)
		}
	}
	u.returns = keep
	deletes := u.deletes
	u.deletes = nil
	for _, h := range deletes {
		u.remove(h)
	}
}

func (u *user) act(veryLateBy time.Time) {
	provider := []string{"cdata", "fivetran"}[u.rnd.IntN(2)]
	free := u.free()
	switch n := u.rnd.IntN(100); {
	case n < 40: // connect, fail or abandon on the hosted page, and return
		outcome := onboard.Connected
		if n < 6 {
			outcome = onboard.Failed
		} else if n < 12 {
			outcome = onboard.Abandoned
		}
		u.rec.add("did.connect " + string(outcome))
		u.connect(provider, outcome)
	case n < 48 && u.walkAways < maxWalkAways: // start and never return
		u.walkAways++
		u.rec.add("did.walk away at the start")
		u.begin(provider, "")
	case n < 52 && u.walkAways < maxWalkAways: // finish and never return
		u.walkAways++
		u.rec.add("did.walk away after saving")
		u.begin(provider, onboard.Connected)
	case n < 62: // come back a few seconds later
		if p, ok := u.begin(provider, onboard.Connected); ok {
			u.rec.add("did.come back late")
			p.due = time.Now().Add(time.Duration(2000+u.rnd.IntN(4000)) * time.Millisecond)
			u.returns = append(u.returns, p)
		}
	case n < 64 && !u.veryLate && time.Now().Before(veryLateBy): // come back after the flow expired
		if p, ok := u.begin(provider, onboard.Connected); ok {
			u.veryLate = true
			u.rec.add("did.come back after expiry")
			p.veryLate, p.want, p.due = true, "", time.Now().Add(chaosFlowTTL+time.Second)
			u.returns = append(u.returns, p)
		}
	case n < 78 && free >= 0:
		u.reconnect(u.mine[free])
	case n < 88 && len(u.mine) > 3 && free >= 0:
		h := u.mine[free]
		u.mine = slices.Delete(u.mine, free, free+1)
		u.rec.add("did.delete")
		u.remove(h)
	default:
		u.rec.add("did.view the connections")
		u.do("home", u.get(u.a.URL+"/?page="+fmt.Sprint(u.rnd.IntN(3))))
	}
}

// free returns the index of one of the browser's connections that no
// return it still has to make reconnects, or -1.
func (u *user) free() int {
	if len(u.mine) == 0 {
		return -1
	}
	for range 3 {
		i := u.rnd.IntN(len(u.mine))
		if !slices.ContainsFunc(u.returns, func(p *pending) bool { return p.reconnect && p.id == u.mine[i].id }) {
			return i
		}
	}
	return -1
}

// reconnect reconnects one of the browser's connections through the
// page's link.
func (u *user) reconnect(h held) {
	outcome := []onboard.State{onboard.Connected, onboard.Connected, onboard.Connected, onboard.Failed, onboard.Abandoned}[u.rnd.IntN(5)]
	u.rec.add("did.reconnect " + string(outcome))
	t0 := time.Now()
	res, ok := u.do("start", u.get(u.a.URL+u.a.Onboarder.StartURL(h.provider, onboard.StartOptions{Connection: h.id})))
	u.rec.time("start", time.Since(t0))
	u.lastStart = time.Now()
	hosted, ok := u.started(h.provider, res, ok, http.StatusFound)
	if !ok {
		return
	}
	back, ok := u.finish(h.provider, hosted, outcome)
	if !ok {
		return
	}
	u.ret(&pending{provider: h.provider, url: back, flowID: flowOf(back), id: h.id, reconnect: true}, true)
}

// remove deletes a connection with the page's button and reads what the
// page says; an unconfirmed delete is made again later.
func (u *user) remove(h held) {
	res, ok := u.do("delete", u.post("/connections/delete", url.Values{"provider": {h.provider}, "id": {h.id}}))
	if ok && res.code == http.StatusSeeOther {
		page, ok := u.do("home", u.get(u.a.URL+"/"))
		if m := flashRE.FindStringSubmatch(page.body); ok && m != nil {
			switch html.UnescapeString(m[2]) {
			case "The connection was deleted.", "That connection does not exist: nothing was deleted.":
				return
			}
		}
	}
	u.rec.add("did.delete refused by a fault")
	u.deletes = append(u.deletes, h)
}

// wrapUp, after the faults stopped, makes every return still to make and
// confirms every delete.
func (u *user) wrapUp() {
	for try := 0; try < 40 && (len(u.returns) > 0 || len(u.deletes) > 0); try++ {
		u.retry(true)
		if len(u.returns) > 0 || len(u.deletes) > 0 {
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// comparison is what the emulators hold against what the app stored.
type comparison struct {
	stored, atEmulators     int
	perTenant               string
	lost, orphans, phantoms []string
	unknown                 []string
	duplicates              int
}

// compare, once every flow is settled, sets each connection the
// emulators hold (by the tenant of its sub-account or group) against the
// tenants' stored connections and the browsers' own lists: lost (a
// browser was told it was stored, the store lacks it), orphans (at an
// emulator, not stored in that tenant), phantoms (stored, not at the
// emulator), duplicates (two stored connections of one flow, two
// connections of one flow at an emulator) and unknown (stored, made by no
// browser, or revoked).
func compare(t *testing.T, a *app, rec *recorder, users []*user, tenants map[string]bool) comparison {
	t.Helper()
	ctx := context.Background()
	var c comparison
	stored := map[held]string{} // -> tenant
	flows := map[string]int{}
	var names []string
	for tenant := range tenants {
		names = append(names, tenant)
	}
	slices.Sort(names)
	var per []string
	for _, tenant := range names {
		cs, err := a.Onboarder.Connections(ctx, tenant, 0, 0)
		require.NoError(t, err)
		per = append(per, fmt.Sprintf("%s %d", tenant, len(cs)))
		for _, conn := range cs {
			stored[held{conn.Provider, conn.ID}] = tenant
			flows[conn.FlowID]++
			if conn.State == onboard.Revoked {
				c.unknown = append(c.unknown, "revoked "+conn.ID)
			}
		}
	}
	c.stored, c.perTenant = len(stored), strings.Join(per, ", ")
	for _, n := range flows {
		c.duplicates += n - 1
	}

	at := map[held]string{}
	subs := map[string]string{}
	for _, acct := range a.CDataEmulator.Accounts() {
		subs[acct.ID] = acct.AccountName
	}
	exts := map[string]int{}
	for _, h := range a.CDataEmulator.AllConnections() {
		at[held{"cdata", h.ID}] = subs[h.SubAccount]
		exts[h.SubAccount+"/"+h.ExternalID]++
	}
	groups := map[string]string{}
	for tenant := range tenants {
		gid, ok := a.FivetranEmulator.GroupByName(fivetran.GroupName(tenant))
		require.True(t, ok, "the group of %s", tenant)
		groups[gid] = tenant
	}
	for _, conn := range a.FivetranEmulator.All() {
		at[held{"fivetran", conn.ID}] = groups[conn.GroupID]
		exts[conn.GroupID+"/"+conn.Schema]++
	}
	for _, n := range exts {
		c.duplicates += n - 1
	}
	c.atEmulators = len(at)
	for h, tenant := range at {
		if stored[h] != tenant {
			c.orphans = append(c.orphans, fmt.Sprintf("%s %s of %s (%s)", h.provider, h.id, tenant, rec.made[h]))
		}
	}
	for h, tenant := range stored {
		if at[h] != tenant {
			c.phantoms = append(c.phantoms, fmt.Sprintf("%s %s of %s", h.provider, h.id, tenant))
		}
	}
	known := map[held]bool{}
	for _, u := range users {
		for _, h := range u.mine {
			known[h] = true
			if stored[h] != u.owner.Tenant {
				c.lost = append(c.lost, fmt.Sprintf("%s %s of %s", h.provider, h.id, u.owner.User))
			}
		}
	}
	for h := range stored {
		if !known[h] {
			c.unknown = append(c.unknown, h.provider+" "+h.id)
		}
	}
	return c
}

// probed is what one probe measured.
type probed struct {
	took              map[string][]time.Duration // all rounds
	best99            map[string]time.Duration   // the lowest p99 of a round
	calls             map[string]float64         // provider API calls per start and return
	smallest, largest int                        // the tenants' connections before it
}

// p99 is the p99 of the round that had the lowest: a real cost of the
// tenants' size shows in every round, a moment of a busy machine in one.
func (p probed) p99(step string) time.Duration { return p.best99[step] }

func (p probed) String() string {
	return fmt.Sprintf("start p50 %s p99 %s, return p50 %s p99 %s; API calls per start and return: cdata %.2f, fivetran %.2f",
		pct(p.took["start"], 50), p.p99("start"), pct(p.took["return"], 50), p.p99("return"), p.calls["cdata"], p.calls["fivetran"])
}

// probe runs probeRounds rounds of probeFlows connected flows per
// browser, all browsers at once, with no fault, and measures their
// starts and returns and the provider calls they cost.
func probe(t *testing.T, a *app, users []*user) probed {
	t.Helper()
	out := probed{took: map[string][]time.Duration{}, best99: map[string]time.Duration{}, calls: map[string]float64{},
		smallest: 1 << 30}
	for tn := 0; tn < len(users); tn += chaosUsersPer {
		cs, err := a.Onboarder.Connections(context.Background(), users[tn].owner.Tenant, 0, 0)
		require.NoError(t, err)
		out.smallest, out.largest = min(out.smallest, len(cs)), max(out.largest, len(cs))
	}
	apis := map[string]*emulate.API{"cdata": a.CDataEmulator.API, "fivetran": a.FivetranEmulator.API}
	before := map[string]int{}
	for p, api := range apis {
		before[p] = len(api.Requests())
	}
	flows := map[string]int{}
	for range probeRounds {
		var mu sync.Mutex
		var wg sync.WaitGroup
		round := map[string][]time.Duration{}
		for i, u := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range probeFlows {
					provider := []string{"cdata", "fivetran"}[(i+n)%2]
					start, back, ok := u.probeFlow(provider)
					if !ok {
						continue
					}
					mu.Lock()
					round["start"] = append(round["start"], start)
					round["return"] = append(round["return"], back)
					flows[provider]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for step, ds := range round {
			out.took[step] = append(out.took[step], ds...)
			if p99, best := pct(ds, 99), out.best99[step]; best == 0 || p99 < best {
				out.best99[step] = p99
			}
		}
	}
	for p, api := range apis {
		out.calls[p] = float64(len(api.Requests())-before[p]) / float64(max(1, flows[p]))
	}
	return out
}

// probeFlow makes one connected flow and returns how long its start and
// its return took.
func (u *user) probeFlow(provider string) (start, back time.Duration, ok bool) {
	u.seq++
	t0 := time.Now()
	res, ok := u.do("start", u.post("/connect/"+provider+"/start",
		url.Values{"source": {"Salesforce"}, "name": {fmt.Sprintf("%s probe %d", u.owner.User, u.seq)}}))
	start = time.Since(t0)
	hosted, ok := u.started(provider, res, ok, http.StatusSeeOther)
	if !ok {
		u.rec.surprise("probe start of %s failed", u.owner.User)
		return 0, 0, false
	}
	ret, ok := u.finish(provider, hosted, onboard.Connected)
	if !ok {
		return 0, 0, false
	}
	bu, _ := url.Parse(ret)
	p := &pending{provider: provider, url: ret, want: "connected", flowID: flowOf(ret),
		id: bu.Query().Get(map[string]string{"cdata": "cdata_connection_id", "fivetran": "id"}[provider])}
	t1 := time.Now()
	res, ok = u.do("return", u.get(p.url))
	back = time.Since(t1)
	if !ok || res.code != http.StatusSeeOther {
		u.rec.surprise("probe return of %s answered %d", u.owner.User, res.code)
		return 0, 0, false
	}
	u.check(p, res.location)
	return start, back, true
}
