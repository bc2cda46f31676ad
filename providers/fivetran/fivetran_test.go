package fivetran_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/emulate"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

const secret = "whsec-test"

// meter counts the provider's API calls and the bytes they move.
type meter struct {
	next  http.RoundTripper
	calls atomic.Int64
	bytes atomic.Int64
}

type countingBody struct {
	io.ReadCloser
	m *meter
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.m.bytes.Add(int64(n))
	return n, err
}

func (m *meter) RoundTrip(r *http.Request) (*http.Response, error) {
	m.calls.Add(1)
	m.bytes.Add(r.ContentLength)
	res, err := m.next.RoundTrip(r)
	if err == nil {
		res.Body = countingBody{res.Body, m}
	}
	return res, err
}

func (m *meter) reset() { m.calls.Store(0); m.bytes.Store(0) }

type hooked struct {
	kind string
	c    onboard.Connection
}

type env struct {
	t     *testing.T
	emu   *fivetrantest.Server
	base  string // the emulator's URL
	p     *fivetran.Provider
	app   *onboardtest.App
	meter *meter
	logs  *testutil.Buffer
	mu    sync.Mutex
	hooks []hooked
}

type options struct {
	emu      fivetrantest.Options
	provider func(*fivetran.Config)
	app      func(*onboard.Config)
}

func newEnv(t *testing.T, opt options) *env {
	t.Helper()
	opt.emu.APIKey, opt.emu.APISecret = "key", "s3cret"
	e := &env{t: t, emu: fivetrantest.New(opt.emu), logs: &testutil.Buffer{}}
	e.base = onboardtest.Serve(t, e.emu)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	e.meter = &meter{next: tr}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := fivetran.Config{BaseURL: e.base, APIKey: "key", APISecret: "s3cret", WebhookSecret: secret,
		HTTPClient: &http.Client{Timeout: 2 * time.Second, Transport: e.meter}, Logger: logger}
	if opt.provider != nil {
		opt.provider(&cfg)
	}
	var err error
	e.p, err = fivetran.New(cfg)
	require.NoError(t, err)
	hook := func(kind string) func(context.Context, onboard.Connection) {
		return func(_ context.Context, c onboard.Connection) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.hooks = append(e.hooks, hooked{kind, c})
		}
	}
	e.app = onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{e.p}, Logger: logger,
		Config: func(c *onboard.Config) {
			c.Hooks = onboard.Hooks{Connected: hook("connected"), Failed: hook("failed"),
				Abandoned: hook("abandoned"), Revoked: hook("revoked"), Deleted: hook("deleted")}
			if opt.app != nil {
				opt.app(c)
			}
		}})
	return e
}

// fired returns the connections of the hooks of one kind fired so far.
func (e *env) fired(kind string) []onboard.Connection {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []onboard.Connection
	for _, h := range e.hooks {
		if h.kind == kind {
			out = append(out, h.c)
		}
	}
	return out
}

func (e *env) webhookURL() string { return e.app.URL() + "/connect/fivetran/webhook" }

func (e *env) register(u string) string {
	e.t.Helper()
	id, err := e.p.RegisterWebhook(context.Background(), u)
	require.NoError(e.t, err)
	return id
}

func query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

// fill starts a flow in b with the start query q and plays the user on the
// Connect Card with credential ("" closes it, "fail" fails the setup
// tests); it returns the URL the card sends the browser back to.
func (e *env) fill(b *onboardtest.Browser, q, credential string) string {
	e.t.Helper()
	card := b.Start(e.app, "fivetran", q)
	back, err := fivetrantest.Fill(context.Background(), b.Client, card, credential)
	require.NoError(e.t, err)
	require.True(e.t, strings.HasPrefix(back, e.app.URL()+"/connect/fivetran/return/"), back)
	return back
}

// complete brings the browser back and expects the result redirect.
func (e *env) complete(b *onboardtest.Browser, back string) onboard.Flow {
	e.t.Helper()
	res := b.Get(back)
	require.Equal(e.t, http.StatusSeeOther, res.Code, res.Body)
	return e.flow(onboardtest.FlowID(e.t, back))
}

func (e *env) flow(id string) onboard.Flow {
	e.t.Helper()
	f, found, err := e.app.Store.Flow(context.Background(), id)
	require.NoError(e.t, err)
	require.True(e.t, found)
	return f
}

func (e *env) group(tenant string) string {
	e.t.Helper()
	id, ok := e.emu.GroupByName(fivetran.GroupName(tenant))
	require.True(e.t, ok)
	return id
}

func (e *env) held(id string) fivetrantest.Connection {
	e.t.Helper()
	c, ok := e.emu.Connection(id)
	require.True(e.t, ok, "Fivetran holds %s", id)
	return c
}

func (e *env) stored(id string) (onboard.Connection, bool) {
	e.t.Helper()
	c, found, err := e.app.Store.FindConnection(context.Background(), "fivetran", id)
	require.NoError(e.t, err)
	return c, found
}

// deliveries returns the deliveries of one event of one connection.
func (e *env) deliveries(event, conn string) []fivetrantest.Delivery {
	var out []fivetrantest.Delivery
	for _, d := range e.emu.Deliveries() {
		if d.Event == event && d.Connection == conn {
			out = append(out, d)
		}
	}
	return out
}

func (e *env) count(method, path, rawQuery string) (n int) {
	for _, r := range e.emu.API.Requests() {
		if r.Method == method && r.Path == path && (rawQuery == "*" || r.Query == rawQuery) {
			n++
		}
	}
	return n
}

// noOrphans checks that Fivetran holds exactly the connections the app
// stores for the tenants, and that each connected one is resumed.
func (e *env) noOrphans(tenants ...string) {
	e.t.Helper()
	want := map[string]onboard.Connection{}
	for _, tenant := range tenants {
		for _, c := range e.app.Connections(tenant) {
			want[c.ID] = c
		}
	}
	schemas := map[string]bool{}
	for _, c := range e.emu.All() {
		s, ok := want[c.ID]
		require.True(e.t, ok, "orphan at Fivetran: %+v", c)
		delete(want, c.ID)
		require.False(e.t, schemas[c.GroupID+"/"+c.Schema], "duplicate schema %s", c.Schema)
		schemas[c.GroupID+"/"+c.Schema] = true
		if s.State == onboard.Connected {
			require.False(e.t, c.Paused, "connected connection %s left paused", c.ID)
			require.Equal(e.t, "connected", c.Status.SetupState)
		}
	}
	require.Empty(e.t, want, "stored connections Fivetran does not hold")
}

// (1) A connection that ends connected through its browser is resumed and
// syncs; with KeepPaused it stays paused and syncs nothing.
func TestVerifiedReturnResumes(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "resumed", true: "KeepPaused"}[keep], func(t *testing.T) {
			e := newEnv(t, options{provider: func(c *fivetran.Config) { c.KeepPaused = keep }})
			e.register(e.webhookURL())
			b := e.app.Browser("alice", "acme")
			back := e.fill(b, query("source", "Salesforce"), "token")
			id := e.emu.All()[0].ID
			require.True(t, e.held(id).Paused, "paused until the verified return")
			require.Empty(t, e.deliveries("sync_start", id), "a paused connection does not sync")
			require.Len(t, e.deliveries("connection_successful", id), 1)

			f := e.complete(b, back)
			require.Equal(t, onboard.Connected, f.Outcome)
			require.Equal(t, id, f.ConnectionID)
			c, found := e.stored(id)
			require.True(t, found)
			require.Equal(t, onboard.Connected, c.State)
			held := e.held(id)
			require.Equal(t, keep, held.Paused)
			if keep {
				require.Zero(t, held.Syncs)
				require.Empty(t, e.deliveries("sync_end", id))
				require.Error(t, e.emu.Sync(id), "paused connections do not sync")
				require.Zero(t, e.count(http.MethodPatch, "/v1/connections/"+id, "*"))
				return
			}
			require.Equal(t, 1, held.Syncs, "resuming started the first sync")
			ds := e.deliveries("sync_end", id)
			require.Len(t, ds, 1, "its sync_end was delivered")
			require.Equal(t, http.StatusOK, ds[0].Status)
			require.Contains(t, string(ds[0].Body), `"SUCCESSFUL"`)
			require.NoError(t, e.emu.Sync(id))
			require.Len(t, e.deliveries("sync_end", id), 2)
			c, _ = e.stored(id)
			require.Equal(t, onboard.Connected, c.State)
			e.noOrphans("acme")
		})
	}
}

// (2) A tenant's second connection of one source without a typed name
// gets its own schema; the stored name and source are the user's.
func TestSecondConnectionOfOneSource(t *testing.T) {
	e := newEnv(t, options{})
	b := e.app.Browser("alice", "acme")
	for _, q := range []string{
		query("source", "Salesforce"),
		query("source", "Salesforce"),
		query("source", "Google Sheets", "name", "Sales sheet"),
	} {
		f := e.complete(b, e.fill(b, q, "token"))
		require.Equal(t, onboard.Connected, f.Outcome, q)
	}
	held := e.emu.Connections(e.group("acme"))
	require.Len(t, held, 3)
	require.NotEqual(t, held[0].Schema, held[1].Schema)
	services := map[string]string{}
	for _, c := range held {
		services[c.ID] = c.Service
		require.Regexp(t, `^[a-z][a-z0-9_]{0,43}$`, c.Schema)
	}
	cs := e.app.Connections("acme")
	require.Len(t, cs, 3)
	for _, c := range cs {
		switch services[c.ID] {
		case "salesforce":
			require.Equal(t, "Salesforce", c.Source)
			require.Empty(t, c.Name)
		case "google_sheets":
			require.Equal(t, "Google Sheets", c.Source)
			require.Equal(t, "Sales sheet", c.Name)
		default:
			t.Fatalf("unexpected connection %+v", c)
		}
	}
	e.noOrphans("acme")
}

// A service that loads one table (config.table) has its schema reported
// as "schema.table": the flow still finds its connection, to verify a
// return and to remove what an abandoned setup left.
func TestTableService(t *testing.T) {
	e := newEnv(t, options{provider: func(c *fivetran.Config) {
		c.Service = func(f onboard.Flow) (string, map[string]any, error) {
			service, config, err := fivetran.DefaultService(f)
			if service == "google_sheets" {
				config["table"] = "sheet"
			}
			return service, config, err
		}
	}})
	b := e.app.Browser("alice", "acme")
	f := e.complete(b, e.fill(b, query("source", "Google Sheets"), "token"))
	require.Equal(t, onboard.Connected, f.Outcome)
	held := e.held(f.ConnectionID)
	require.Equal(t, fivetran.SchemaName(f)+".sheet", held.Schema)
	require.Equal(t, "sheet", held.Config["table"])

	back := e.fill(b, query("source", "Google Sheets"), "")
	require.Len(t, e.emu.All(), 2)
	forged, err := url.Parse(back)
	require.NoError(t, err)
	forged.RawQuery = url.Values{"id": {f.ConnectionID}}.Encode()
	require.Equal(t, http.StatusForbidden, b.Get(forged.String()).Code, "another flow's connection")
	f = e.complete(b, back)
	require.Equal(t, onboard.Abandoned, f.Outcome)
	require.Len(t, e.emu.All(), 1, "the abandoned setup's connection was deleted")
	e.noOrphans("acme")
}

// (3) A broken or abandoned setup leaves nothing at Fivetran once the
// browser is back; the retry makes a fresh connection.
func TestBrokenOrAbandonedSetupLeavesNothing(t *testing.T) {
	for _, tt := range []struct {
		name, credential string
		want             onboard.State
	}{
		{"broken", "fail", onboard.Failed},
		{"abandoned", "", onboard.Abandoned},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, options{})
			e.register(e.webhookURL())
			b := e.app.Browser("alice", "acme")
			back := e.fill(b, query("source", "Salesforce"), tt.credential)
			first := e.emu.All()
			require.Len(t, first, 1)
			f := e.complete(b, back)
			require.Equal(t, tt.want, f.Outcome)
			require.Empty(t, f.ConnectionID, "nothing attached")
			// An abandoned flow is cleaned up again once it expires.
			require.Equal(t, tt.want == onboard.Abandoned, f.Cleanup, "cleanup left")
			require.Empty(t, e.emu.All(), "the connection was deleted at Fivetran")
			require.Empty(t, e.app.Connections("acme"))
			_, found := e.stored(first[0].ID)
			require.False(t, found, "no detached record is left either")
			require.Len(t, e.fired(string(tt.want)), 1)

			f = e.complete(b, e.fill(b, query("source", "Salesforce"), "token"))
			require.Equal(t, onboard.Connected, f.Outcome)
			now := e.emu.All()
			require.Len(t, now, 1)
			require.NotEqual(t, first[0].ID, now[0].ID)
			require.NotEqual(t, first[0].Schema, now[0].Schema)
			e.noOrphans("acme")
		})
	}
}

// (4) connection_successful arriving before the browser is kept, and the
// return's stored connection reflects it; an event alone never attaches
// a connection.
func TestEarlyEventKeptUntilReturn(t *testing.T) {
	// The provider's clock stands still, so that the syncs the return
	// starts share the early event's second.
	clk := onboardtest.NewClock(time.Now())
	e := newEnv(t, options{emu: fivetrantest.Options{Now: clk.Now}})
	e.register(e.webhookURL())
	b := e.app.Browser("alice", "acme")
	back := e.fill(b, query("source", "Salesforce"), "token")
	id := e.emu.All()[0].ID
	ds := e.deliveries("connection_successful", id)
	require.Len(t, ds, 1)
	require.Equal(t, http.StatusOK, ds[0].Status)
	var pl struct{ Created time.Time }
	require.NoError(t, json.Unmarshal(ds[0].Body, &pl))

	early, found := e.stored(id)
	require.True(t, found, "the early event is kept")
	require.True(t, early.Owner.IsZero(), "as a detached record")
	require.Equal(t, onboard.Connected, early.State)
	require.True(t, pl.Created.Equal(early.EventAt))
	require.Empty(t, e.app.Connections("acme"), "an event alone attaches nothing")

	e.complete(b, back)
	c, found := e.stored(id)
	require.True(t, found)
	require.Equal(t, onboard.Owner{Tenant: "acme", User: "alice"}, c.Owner)
	require.Equal(t, onboard.Connected, c.State)
	require.True(t, pl.Created.Equal(c.EventAt), "the early event's time is kept: %v", c.EventAt)
}

// (4) A flow whose browser never comes back attaches nothing, whatever
// Fivetran reported: the runner settles it and deletes the connection.
func TestEventWithoutBrowserAttachesNothing(t *testing.T) {
	const ttl = time.Second
	e := newEnv(t, options{app: func(c *onboard.Config) { c.FlowTTL, c.Timeout = ttl, time.Second }})
	e.register(e.webhookURL())
	b := e.app.Browser("alice", "acme")
	e.fill(b, query("source", "Salesforce"), "token") // the browser never returns
	id := e.emu.All()[0].ID
	_, found := e.stored(id)
	require.True(t, found, "connection_successful was received")
	rep, err := e.app.Onboarder.RunOnce(context.Background())
	require.NoError(t, err)
	require.Zero(t, rep.Settled, "not expired yet")
	time.Sleep(2*ttl + 150*time.Millisecond) // its lifetime, and Timeout after it
	rep, err = e.app.Onboarder.RunOnce(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Settled)
	require.Empty(t, e.app.Connections("acme"))
	require.Empty(t, e.emu.All(), "what the flow made is deleted")
	_, found = e.stored(id)
	require.False(t, found, "delete_connector removed the detached record")
	require.Empty(t, e.fired("connected"))
}

// gate forwards webhook deliveries to the app while open, and answers 503
// while closed (Fivetran then retries them later, in any order).
type gate struct {
	open   atomic.Bool
	target string
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.open.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, g.target, r.Body)
	req.Header = r.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	res.Body.Close()
	w.WriteHeader(res.StatusCode)
}

// (5) Events of one second with different states are ordered by rank,
// whatever their arrival; older ones are dropped and logged; only the
// provider's clock counts, however skewed from the app's.
func TestEventOrder(t *testing.T) {
	for _, skew := range []time.Duration{-2 * time.Hour, 2 * time.Hour} {
		for _, failureFirst := range []bool{false, true} {
			name := skew.String() + map[bool]string{false: "/success first", true: "/failure first"}[failureFirst]
			t.Run(name, func(t *testing.T) {
				clk := onboardtest.NewClock(time.Now().Truncate(time.Second).Add(300 * time.Millisecond))
				e := newEnv(t, options{emu: fivetrantest.Options{Now: clk.Now, Skew: skew}})
				g := &gate{target: e.webhookURL()}
				g.open.Store(true)
				e.register(onboardtest.Serve(t, g))
				b := e.app.Browser("alice", "acme")
				e.complete(b, e.fill(b, query("source", "Salesforce"), "token"))
				id := e.emu.All()[0].ID
				c, _ := e.stored(id)
				t0 := clk.Now().Add(skew).Truncate(time.Second)
				require.True(t, t0.Equal(c.EventAt), "EventAt %v, want the provider's %v", c.EventAt, t0)

				clk.Add(10 * time.Second)
				t1 := clk.Now().Add(skew).Truncate(time.Second)
				g.open.Store(false)
				require.NoError(t, e.emu.Sync(id))                    // sync_end SUCCESSFUL at t1
				require.NoError(t, e.emu.Break(id, "Token revoked.")) // sync_end FAILURE_WITH_TASK at t1
				g.open.Store(true)
				outranked := func() int {
					return len(e.logs.Lines("level=INFO", `msg="onboard: event dropped"`, "connection="+id, "outranked"))
				}
				older := func() int {
					return len(e.logs.Lines("level=INFO", `msg="onboard: event dropped"`, "connection="+id,
						`why="older than the last event applied"`))
				}
				dropped := outranked()
				var ok, failed int = -1, -1
				for i, d := range e.emu.Deliveries() {
					if d.Event != "sync_end" || d.Status != http.StatusServiceUnavailable {
						continue
					}
					if bytes.Contains(d.Body, []byte(`"SUCCESSFUL"`)) {
						ok = i
					} else {
						failed = i
					}
				}
				require.True(t, ok >= 0 && failed >= 0)
				order := []int{ok, failed}
				if failureFirst {
					order = []int{failed, ok}
				}
				for _, i := range order {
					require.Equal(t, http.StatusOK, e.emu.Redeliver(i))
				}
				c, _ = e.stored(id)
				require.Equal(t, onboard.Failed, c.State, "a failure counts after a success of the same second")
				require.True(t, t1.Equal(c.EventAt), "EventAt %v, want %v", c.EventAt, t1)
				require.Contains(t, c.Message, "sync failed")
				require.Len(t, e.fired("failed"), 1)
				if failureFirst {
					require.Equal(t, dropped+1, outranked(), "the success of the same second was dropped, and logged")
				} else {
					require.Equal(t, dropped, outranked())
				}

				// A late retry of the first event is older than the last one
				// applied: dropped, and logged at info.
				dropped = older()
				require.Equal(t, http.StatusOK, e.emu.Redeliver(firstOf(e, "connection_successful", id)))
				c, _ = e.stored(id)
				require.Equal(t, onboard.Failed, c.State)
				require.True(t, t1.Equal(c.EventAt))
				require.Equal(t, dropped+1, older())
			})
		}
	}
}

// firstOf returns the index of the first delivery of an event of conn.
func firstOf(e *env, event, conn string) int {
	for i, d := range e.emu.Deliveries() {
		if d.Event == event && d.Connection == conn {
			return i
		}
	}
	e.t.Fatalf("no %s delivery of %s", event, conn)
	return -1
}

// (6) Registering the webhook again reuses it: every event arrives once.
func TestRegisterWebhookIsIdempotent(t *testing.T) {
	e := newEnv(t, options{})
	var ids []string
	for range 3 {
		ids = append(ids, e.register(e.webhookURL()))
	}
	require.Len(t, e.emu.Webhooks(), 1)
	require.Equal(t, ids[0], ids[1])
	require.Equal(t, ids[0], ids[2])
	b := e.app.Browser("alice", "acme")
	e.complete(b, e.fill(b, query("source", "Salesforce"), "token"))
	id := e.emu.All()[0].ID
	require.NoError(t, e.emu.Sync(id))
	seen := map[string]int{}
	for _, d := range e.emu.Deliveries() {
		if d.Event != "test" {
			seen[d.Event]++
			require.Equal(t, http.StatusOK, d.Status)
		}
	}
	require.Equal(t, map[string]int{"connection_successful": 1, "sync_end": 2}, seen)
}

// apiCall calls the emulator's API directly, as another tool would.
func (e *env) apiCall(method, path string, in any) int {
	e.t.Helper()
	body, _ := json.Marshal(in)
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	require.NoError(e.t, err)
	req.SetBasicAuth("key", "s3cret")
	req.Header.Set("Accept", fivetran.Accept)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	res.Body.Close()
	return res.StatusCode
}

// Registration repairs what earlier registrations left: duplicates are
// deleted, an inactive webhook with other events is updated and tested.
func TestRegisterWebhookRepairs(t *testing.T) {
	e := newEnv(t, options{})
	hook := e.webhookURL()
	require.Equal(t, 201, e.apiCall("POST", "/v1/webhooks/account",
		map[string]any{"url": hook, "events": []string{"sync_start"}, "active": false, "secret": "old"}))
	require.Equal(t, 201, e.apiCall("POST", "/v1/webhooks/account",
		map[string]any{"url": hook, "events": []string{"sync_end"}, "active": false, "secret": "old"}))
	require.Equal(t, 201, e.apiCall("POST", "/v1/webhooks/account",
		map[string]any{"url": e.app.URL() + "/elsewhere", "events": []string{"sync_end"}, "active": true, "secret": "x"}))
	e.register(hook)
	var mine []fivetrantest.Webhook
	for _, h := range e.emu.Webhooks() {
		if h.URL == hook {
			mine = append(mine, h)
		}
	}
	require.Len(t, mine, 1, "duplicates deleted")
	require.True(t, mine[0].Active)
	require.ElementsMatch(t, fivetran.Events, mine[0].Events)
	require.Len(t, e.emu.Webhooks(), 2, "another URL's webhook is left alone")
	tests := 0
	for _, d := range e.emu.Deliveries() {
		if d.Event == "test" && d.URL == hook {
			tests++
			require.Equal(t, http.StatusOK, d.Status, "the test event is signed with the new secret")
		}
	}
	require.Equal(t, 1, tests, "activation tested the URL")

	t.Run("a URL that does not answer 2xx is refused", func(t *testing.T) {
		_, err := e.p.RegisterWebhook(context.Background(), e.app.URL()+"/connect/nope/webhook")
		require.ErrorIs(t, err, onboard.ErrRefused)
		require.Len(t, e.emu.Webhooks(), 2)
	})
}

// (7) Distinct tenant ids never share a group, whatever they look like.
func TestGroupNamesCollisionFree(t *testing.T) {
	long := strings.Repeat("tenant-", 2000)
	ids := []string{"", "acme", "Acme", "ACME", "acme ", " acme", "ac me", "ac_me", "ac-me", "ac/me", "ac\x00me",
		"аcme" /* Cyrillic а */, "acme\u200b", "😀", "\xff\xfe", "onboard_acme", long, long + "a", long + "b",
		long[:len(long)-1], strings.Repeat("a", 64), strings.Repeat("a", 65), strings.Repeat("a", 1000)}
	for i := range 2000 { // shared prefixes, odd characters
		ids = append(ids, long[:i%len(long)]+string(rune(i)), "t"+strings.Repeat("_", i%50)+string(rune(0x400+i)))
	}
	seen := map[string]string{}
	shape := regexp.MustCompile(`^onboard_[a-z2-7]{52}$`)
	distinct := map[string]bool{}
	for _, id := range ids {
		if distinct[id] {
			continue // the same id listed twice
		}
		distinct[id] = true
		name := fivetran.GroupName(id)
		require.Regexp(t, shape, name)
		prev, dup := seen[name]
		require.False(t, dup, "%q and %q share group %s", prev, id, name)
		seen[name] = id
	}

	e := newEnv(t, options{})
	// Groups whose names look like acme's but are not it.
	for _, decoy := range []string{strings.ToUpper(fivetran.GroupName("acme")), fivetran.GroupName("acme") + "x",
		" " + fivetran.GroupName("acme"), strings.TrimSuffix(fivetran.GroupName("acme"), "a")} {
		_, err := e.emu.AddGroup(decoy)
		require.NoError(t, err)
	}
	ctx := context.Background()
	groups := map[string]string{}
	for _, tenant := range []string{"acme", "Acme", "acme ", long + "a", long + "b", "ac/me"} {
		gid, err := e.p.GroupID(ctx, tenant)
		require.NoError(t, err)
		want, ok := e.emu.GroupByName(fivetran.GroupName(tenant))
		require.True(t, ok)
		require.Equal(t, want, gid, "the group is the one named exactly for %q", tenant)
		require.NotContains(t, groups, gid)
		groups[gid] = tenant
	}
}

// A group found by name is the one named exactly so; instances racing to
// create it share one.
func TestGroupFoundOrCreatedOnce(t *testing.T) {
	e := newEnv(t, options{})
	made, err := e.emu.AddGroup(fivetran.GroupName("globex"))
	require.NoError(t, err)
	gid, err := e.p.GroupID(context.Background(), "globex")
	require.NoError(t, err)
	require.Equal(t, made, gid)
	require.Zero(t, e.count("POST", "/v1/groups", "*"))

	var ps []*fivetran.Provider
	for range 4 {
		p, err := fivetran.New(fivetran.Config{BaseURL: e.base, APIKey: "key", APISecret: "s3cret"})
		require.NoError(t, err)
		ps = append(ps, p)
	}
	got := make([]string, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = p.GroupID(context.Background(), "initech")
		}()
	}
	wg.Wait()
	want, ok := e.emu.GroupByName(fivetran.GroupName("initech"))
	require.True(t, ok)
	for _, g := range got {
		require.Equal(t, want, g)
	}
}

// (8) A failed setup's message is one whole sentence, whatever detail the
// setup tests give.
func TestFailedSetupMessage(t *testing.T) {
	dangling := regexp.MustCompile(`(:\s*\.?$)|([:;,]\s*[.;])|(\s\.$)|(\.\.$)`)
	for _, tt := range []struct {
		name  string
		tests []fivetrantest.SetupTest
		want  string
	}{
		{"title and message", nil,
			"Fivetran could not connect: Connecting to salesforce: Invalid credentials: the API rejected the token."},
		{"title only", []fivetrantest.SetupTest{{Title: "Validating credentials", Status: "FAILED"}},
			"Fivetran could not connect: Validating credentials failed."},
		{"message only", []fivetrantest.SetupTest{{Status: "FAILED", Message: "Host unreachable."}},
			"Fivetran could not connect: Host unreachable."},
		{"no detail", []fivetrantest.SetupTest{},
			"Fivetran could not connect: the setup tests did not pass. Check what you entered and try again."},
		{"empty strings", []fivetrantest.SetupTest{{Status: "FAILED", Title: " ", Message: "\n"}},
			"Fivetran could not connect: the setup tests did not pass. Check what you entered and try again."},
		{"trailing punctuation", []fivetrantest.SetupTest{{Title: "Checking access:", Status: "FAILED", Message: "denied;"},
			{Title: "Passed one", Status: "PASSED"}, {Title: "Skipped one", Status: "SKIPPED"}},
			"Fivetran could not connect: Checking access: denied."},
		{"several", []fivetrantest.SetupTest{{Title: "A", Status: "FAILED", Message: "x"}, {Title: "B", Status: "JOB_FAILED"},
			{Title: "C", Status: "WARNING", Message: "y"}, {Title: "D", Status: "FAILED", Message: "z"}},
			"Fivetran could not connect: A: x; B failed; C: y."},
		{"overlong", []fivetrantest.SetupTest{{Title: "T", Status: "FAILED", Message: strings.Repeat("very long ", 100)}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, options{emu: fivetrantest.Options{FailedTests: tt.tests}})
			b := e.app.Browser("alice", "acme")
			f := e.complete(b, e.fill(b, query("source", "Salesforce"), "fail"))
			require.Equal(t, onboard.Failed, f.Outcome)
			msg := f.Message
			if tt.want != "" {
				require.Equal(t, tt.want, msg)
			}
			require.True(t, strings.HasPrefix(msg, "Fivetran could not connect"), msg)
			require.True(t, strings.HasSuffix(msg, ".") || strings.HasSuffix(msg, "…"), msg)
			require.NotRegexp(t, dangling, msg)
			require.LessOrEqual(t, len([]rune(msg)), 700)
			hooks := e.fired("failed")
			require.Len(t, hooks, 1)
			require.Equal(t, msg, hooks[0].Message)
			require.Empty(t, e.emu.All())
		})
	}
}

// (13) A deletion in Fivetran's dashboard reaches the app, by webhook and
// by the runner's refresh, and fires Hooks.Deleted.
func TestDeletionAtFivetran(t *testing.T) {
	for _, by := range []string{"webhook", "refresh"} {
		t.Run(by, func(t *testing.T) {
			e := newEnv(t, options{app: func(c *onboard.Config) { c.RefreshEvery = time.Nanosecond }})
			if by == "webhook" {
				e.register(e.webhookURL())
			}
			b := e.app.Browser("alice", "acme")
			e.complete(b, e.fill(b, query("source", "Salesforce"), "token"))
			keep := e.complete(b, e.fill(b, query("source", "HubSpot"), "token")).ConnectionID
			gone := e.app.Connections("acme")[1].ID
			require.NotEqual(t, keep, gone)
			require.NoError(t, e.emu.Remove(gone))
			if by == "refresh" {
				require.Len(t, e.app.Connections("acme"), 2, "nothing told the app yet")
				rep, err := e.app.Onboarder.RunOnce(context.Background())
				require.NoError(t, err)
				require.Equal(t, 2, rep.Refreshed)
				require.Equal(t, 1, rep.Changed)
			}
			deleted := e.fired("deleted")
			require.Len(t, deleted, 1)
			require.Equal(t, gone, deleted[0].ID)
			require.Equal(t, "acme", deleted[0].Owner.Tenant)
			cs := e.app.Connections("acme")
			require.Len(t, cs, 1)
			require.Equal(t, keep, cs[0].ID)
			e.noOrphans("acme")
		})
	}
}

// Refresh notices broken credentials and failed syncs, and stops at a
// rate limit until the runner's next pass.
func TestRefresh(t *testing.T) {
	e := newEnv(t, options{app: func(c *onboard.Config) { c.RefreshEvery = time.Nanosecond }})
	b := e.app.Browser("alice", "acme")
	a := e.complete(b, e.fill(b, query("source", "Salesforce"), "token")).ConnectionID
	c := e.complete(b, e.fill(b, query("source", "HubSpot"), "token")).ConnectionID
	ctx := context.Background()

	e.emu.API.Fail(emulate.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Minute})
	rep, err := e.app.Onboarder.RunOnce(ctx)
	require.ErrorIs(t, err, onboard.ErrProvider)
	require.Equal(t, 1, rep.Errors)
	require.Zero(t, rep.Refreshed)

	require.NoError(t, e.emu.Break(a, "The OAuth token was revoked."))
	events, err := e.p.Refresh(ctx, "acme", e.app.Connections("acme"))
	require.NoError(t, err)
	require.Equal(t, []onboard.Event{{ConnectionID: a, State: onboard.Failed,
		Message: "Fivetran reports that the connection is broken: The OAuth token was revoked."}}, events)
	rep, err = e.app.Onboarder.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, onboard.Report{Refreshed: 2, Changed: 1}, rep)
	got, _ := e.stored(a)
	require.Equal(t, onboard.Failed, got.State)
	require.Len(t, e.fired("failed"), 1)
	got, _ = e.stored(c)
	require.Equal(t, onboard.Connected, got.State)
}

// A create whose answer is lost is found by its schema, never repeated
// blindly; a create refused with a 5xx is tried once more.
func TestLostCreateAnswer(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fault   emulate.Fault
		creates int
	}{
		{"dropped after handling", emulate.Fault{Drop: true, AfterHandling: true}, 1},
		{"timed out after handling", emulate.Fault{Delay: 1500 * time.Millisecond, AfterHandling: true}, 1},
		{"5xx before handling", emulate.Fault{Status: http.StatusBadGateway}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, options{provider: func(c *fivetran.Config) { c.HTTPClient.Timeout = 500 * time.Millisecond }})
			b := e.app.Browser("alice", "acme")
			gid, err := e.p.GroupID(context.Background(), "acme")
			require.NoError(t, err)
			e.emu.API.Fail(tt.fault) // the start's first call is the create
			back := e.fill(b, query("source", "Salesforce"), "token")
			require.Equal(t, tt.creates, e.count("POST", "/v1/connections", ""))
			require.Equal(t, 1, e.count("GET", "/v1/connections", "*"), "one look-up by schema")
			held := e.emu.Connections(gid)
			require.Len(t, held, 1, "exactly one connection")
			f := e.complete(b, back)
			require.Equal(t, onboard.Connected, f.Outcome)
			require.Equal(t, held[0].ID, f.ConnectionID)
			e.noOrphans("acme")
		})
	}
}

// A rate-limited create is retried after Retry-After within the deadline;
// one past the deadline fails the start at once and leaves nothing.
func TestRateLimitedCreate(t *testing.T) {
	t.Run("retried", func(t *testing.T) {
		e := newEnv(t, options{})
		_, err := e.p.GroupID(context.Background(), "acme")
		require.NoError(t, err)
		e.emu.API.Fail(emulate.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second})
		b := e.app.Browser("alice", "acme")
		start := time.Now()
		back := e.fill(b, query("source", "Salesforce"), "token")
		require.GreaterOrEqual(t, time.Since(start), time.Second)
		require.Equal(t, 2, e.count("POST", "/v1/connections", ""))
		require.Zero(t, e.count("GET", "/v1/connections", "*"), "a 429 made nothing: no look-up")
		require.Equal(t, onboard.Connected, e.complete(b, back).Outcome)
		e.noOrphans("acme")
	})
	t.Run("past the deadline", func(t *testing.T) {
		e := newEnv(t, options{app: func(c *onboard.Config) { c.Timeout = time.Second }})
		_, err := e.p.GroupID(context.Background(), "acme")
		require.NoError(t, err)
		e.emu.API.Fail(emulate.Fault{Status: http.StatusTooManyRequests, RetryAfter: 5 * time.Second})
		b := e.app.Browser("alice", "acme")
		start := time.Now()
		res := b.Get(e.app.URL() + "/connect/fivetran/start?source=Salesforce")
		require.Less(t, time.Since(start), time.Second)
		require.Equal(t, http.StatusBadGateway, res.Code)
		require.Equal(t, 1, e.count("POST", "/v1/connections", ""))
		require.Empty(t, e.emu.All())
	})
}

// A start and a return cost the same calls and bytes whatever the size
// of the tenant's group.
func TestCostDoesNotGrowWithGroup(t *testing.T) {
	type cost struct{ startCalls, startBytes, returnCalls, returnBytes int64 }
	measure := func(others int) cost {
		e := newEnv(t, options{})
		gid, err := e.p.GroupID(context.Background(), "acme")
		require.NoError(t, err)
		for i := range others {
			_, err := e.emu.Add(fivetrantest.Connection{GroupID: gid, Service: "salesforce",
				Schema: fmt.Sprintf("other_%04d", i),
				Status: fivetrantest.Status{SetupState: "connected"}})
			require.NoError(t, err)
		}
		b := e.app.Browser("alice", "acme")
		e.meter.reset()
		card := b.Start(e.app, "fivetran", query("source", "Salesforce"))
		var c cost
		c.startCalls, c.startBytes = e.meter.calls.Load(), e.meter.bytes.Load()
		back, err := fivetrantest.Fill(context.Background(), b.Client, card, "token")
		require.NoError(t, err)
		e.meter.reset()
		require.Equal(t, onboard.Connected, e.complete(b, back).Outcome)
		c.returnCalls, c.returnBytes = e.meter.calls.Load(), e.meter.bytes.Load()
		require.Len(t, e.emu.Connections(gid), others+1)
		return c
	}
	small, big := measure(0), measure(2000)
	t.Logf("empty group: %+v; 2,000 connections: %+v", small, big)
	require.Equal(t, int64(1), small.startCalls, "a start is one create")
	require.Equal(t, int64(3), small.returnCalls, "a return is a look-up by schema, a read and a resume")
	require.Equal(t, small.startCalls, big.startCalls)
	require.Equal(t, small.returnCalls, big.returnCalls)
	require.InDelta(t, small.startBytes, big.startBytes, 64)
	require.InDelta(t, small.returnBytes, big.returnBytes, 64)
}

// The whole life of a tenant's connections: nothing orphaned, nothing
// duplicated, every connected connection resumed.
func TestFullRun(t *testing.T) {
	e := newEnv(t, options{app: func(c *onboard.Config) { c.RefreshEvery = time.Nanosecond }})
	e.register(e.webhookURL())
	ctx := context.Background()
	alice := e.app.Browser("alice", "acme")
	sf := e.complete(alice, e.fill(alice, query("source", "Salesforce"), "token")).ConnectionID
	require.Equal(t, onboard.Failed, e.complete(alice, e.fill(alice, query("source", "HubSpot"), "fail")).Outcome)
	hs := e.complete(alice, e.fill(alice, query("source", "HubSpot"), "token")).ConnectionID
	require.Equal(t, onboard.Abandoned, e.complete(alice, e.fill(alice, query("source", "Stripe"), "")).Outcome)
	bob := e.app.Browser("bob", "globex")
	gx := e.complete(bob, e.fill(bob, query("source", "Salesforce"), "token")).ConnectionID
	e.noOrphans("acme", "globex")

	// Salesforce's token is revoked: the failed sync arrives by webhook;
	// alice reconnects.
	require.NoError(t, e.emu.Break(sf, "The OAuth token was revoked."))
	c, _ := e.stored(sf)
	require.Equal(t, onboard.Failed, c.State)
	f := e.complete(alice, e.fill(alice, query("connection", sf), "token"))
	require.Equal(t, onboard.Connected, f.Outcome)
	require.Equal(t, sf, f.ConnectionID)
	c, _ = e.stored(sf)
	require.Equal(t, onboard.Connected, c.State)

	// A reconnect that fails keeps the connection, failed.
	f = e.complete(alice, e.fill(alice, query("connection", hs), "fail"))
	require.Equal(t, onboard.Failed, f.Outcome)
	require.Equal(t, hs, f.ConnectionID)
	c, _ = e.stored(hs)
	require.Equal(t, onboard.Failed, c.State)
	require.Contains(t, c.Message, "Fivetran could not connect")
	require.Equal(t, onboard.Connected, e.complete(alice, e.fill(alice, query("connection", hs), "token")).Outcome)

	// Deleted by the app, and by bob in Fivetran's dashboard.
	require.NoError(t, e.app.Onboarder.DeleteConnection(ctx, onboard.Owner{Tenant: "acme", User: "alice"}, "fivetran", hs))
	require.NoError(t, e.emu.Remove(gx))
	rep, err := e.app.Onboarder.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, onboard.Report{Refreshed: 1}, rep, "nothing left to change")
	// Hooks.Deleted fired for both. (The app's own delete may fire it
	// twice: Fivetran's delete_connector can arrive while the core is
	// still deleting; see the core's DeleteConnection.)
	deleted := map[string]bool{}
	for _, c := range e.fired("deleted") {
		deleted[c.ID] = true
	}
	require.Equal(t, map[string]bool{hs: true, gx: true}, deleted)
	require.Len(t, e.app.Connections("acme"), 1)
	require.Empty(t, e.app.Connections("globex"))
	e.noOrphans("acme", "globex")
	for _, d := range e.emu.Deliveries() {
		require.Equal(t, http.StatusOK, d.Status, d.Event)
	}
}

// A reconnect that comes back in another browser is quarantined: the
// connection, which now holds what the victim entered, is deleted at
// Fivetran. Pausing it would not do: the attacker's next reconnect,
// returned without opening its card, would find the victim's setup
// connected and resume it in his tenant.
func TestReconnectInAnotherBrowserDeletes(t *testing.T) {
	e := newEnv(t, options{})
	mallory := e.app.Browser("mallory", "evil")
	x := e.complete(mallory, e.fill(mallory, query("source", "Salesforce"), "token")).ConnectionID
	victim := e.app.Browser("alice", "acme")
	card := mallory.Start(e.app, "fivetran", query("connection", x))
	back, err := fivetrantest.Fill(context.Background(), victim.Client, card, "alices-token")
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, victim.Get(back).Code)
	_, held := e.emu.Connection(x)
	require.False(t, held, "quarantined: deleted at Fivetran")
	c, _ := e.stored(x)
	require.Equal(t, onboard.Revoked, c.State)

	// A fresh reconnect, its card never opened, its return sent at once.
	res := mallory.PostForm(e.app.URL()+"/connect/fivetran/start", url.Values{"connection": {x}})
	require.NotEqual(t, http.StatusFound, res.Code, "no card for a deleted connection")
	c, _ = e.stored(x)
	require.Equal(t, onboard.Revoked, c.State)
}

// heldComplete holds the first Complete of a provider until released, to order a
// race.
type heldComplete struct {
	onboard.Provider
	entered, release chan struct{}
	once             sync.Once
}

func (g *heldComplete) Complete(ctx context.Context, f onboard.Flow, ret url.Values) (onboard.Connection, error) {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return g.Provider.Complete(ctx, f, ret)
}

// The attacker's own return of his reconnect is inside Complete when the
// victim's return quarantines the flow: whatever his Complete does at
// Fivetran after that, the connection is gone and nothing is attached.
func TestReconnectQuarantinedDuringAttackersReturn(t *testing.T) {
	e := newEnv(t, options{})
	mallory := e.app.Browser("mallory", "evil")
	x := e.complete(mallory, e.fill(mallory, query("source", "Salesforce"), "token")).ConnectionID
	g := &heldComplete{Provider: e.p, entered: make(chan struct{}), release: make(chan struct{})}
	app := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{g}, Store: e.app.Store})
	mallory = app.Browser("mallory", "evil")
	victim := app.Browser("alice", "acme")
	card := mallory.Start(app, "fivetran", query("connection", x))
	back, err := fivetrantest.Fill(context.Background(), victim.Client, card, "alices-token")
	require.NoError(t, err)
	done := make(chan onboardtest.Response, 1)
	go func() { done <- mallory.Get(back) }()
	<-g.entered
	require.Equal(t, http.StatusForbidden, victim.Get(back).Code)
	close(g.release)
	res := <-done
	require.NotEqual(t, http.StatusSeeOther, res.Code, res.Body)
	_, held := e.emu.Connection(x)
	require.False(t, held, "deleted at Fivetran")
	c, _ := e.stored(x)
	require.Equal(t, onboard.Revoked, c.State)
}

func TestForgedID(t *testing.T) {
	e := newEnv(t, options{})
	eve := e.app.Browser("eve", "globex")
	evesConn := e.complete(eve, e.fill(eve, query("source", "Salesforce"), "token")).ConnectionID

	alice := e.app.Browser("alice", "acme")
	other := e.fill(alice, query("source", "HubSpot"), "token")
	otherID := e.emu.Connections(e.group("acme"))[0].ID
	back := e.fill(alice, query("source", "Salesforce"), "token")
	for _, forged := range []string{evesConn, otherID, "conn_nope"} {
		u, err := url.Parse(back)
		require.NoError(t, err)
		q := u.Query()
		q.Set("id", forged)
		u.RawQuery = q.Encode()
		res := alice.Get(u.String())
		require.Equal(t, http.StatusForbidden, res.Code, res.Body)
	}
	require.Empty(t, e.app.Connections("acme"))
	require.Equal(t, http.StatusBadRequest, alice.Get(back+"&id=x").Code, "a repeated id is malformed")
	require.Equal(t, onboard.Connected, e.complete(alice, back).Outcome, "the genuine return still completes")
	require.Equal(t, onboard.Connected, e.complete(alice, other).Outcome)
	e.noOrphans("acme", "globex")
}

func TestRequestsHaveDocumentedShape(t *testing.T) {
	e := newEnv(t, options{provider: func(c *fivetran.Config) { c.HideSetupGuide = true }})
	b := e.app.Browser("alice", "acme")
	card := b.Start(e.app, "fivetran", query("source", "Google Sheets"))
	require.Contains(t, card, "hide_setup_guide=true")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("key:s3cret"))
	var create map[string]any
	for _, r := range e.emu.API.Requests() {
		require.Equal(t, basic, r.Header.Get("Authorization"), r.Path)
		require.Equal(t, "application/json;version=2", r.Header.Get("Accept"), r.Path)
		if r.Method == "POST" && r.Path == "/v1/connections" {
			require.Equal(t, "application/json", r.Header.Get("Content-Type"))
			require.NoError(t, json.Unmarshal(r.Body, &create))
		}
	}
	require.NotNil(t, create)
	assert.Equal(t, false, create["run_setup_tests"])
	assert.Equal(t, true, create["paused"])
	assert.Equal(t, "google_sheets", create["service"])
	assert.Equal(t, e.group("acme"), create["group_id"])
	cc := create["connect_card_config"].(map[string]any)
	assert.Equal(t, true, cc["hide_setup_guide"])
	ret := cc["redirect_uri"].(string)
	require.True(t, strings.HasPrefix(ret, e.app.URL()+"/connect/fivetran/return/"), ret)
	flowID := onboardtest.FlowID(t, ret)
	assert.Equal(t, fivetran.SchemaName(onboard.Flow{ID: flowID, Source: "Google Sheets"}),
		create["config"].(map[string]any)["schema"])
	assert.Equal(t, 1, e.count("POST", "/v1/connections", ""), "the card came with the create")
	assert.Zero(t, e.count("POST", "/v1/connections/"+e.emu.All()[0].ID+"/connect-card", ""))
}

func TestSchemaName(t *testing.T) {
	shape := regexp.MustCompile(`^[a-z][a-z0-9_]{0,43}$`)
	seen := map[string]bool{}
	for i, source := range []string{"Salesforce", "Google Sheets", "3dcart", "", "  ", "Ünïcødé", "a--b  c",
		strings.Repeat("x", 300), "Salesforce"} {
		f := onboard.Flow{ID: strings.Repeat("A", 42) + string(rune('a'+i)), Source: source}
		s := fivetran.SchemaName(f)
		require.Regexp(t, shape, s, source)
		require.Equal(t, s, fivetran.SchemaName(f), "derived from the flow alone")
		require.False(t, seen[s])
		seen[s] = true
	}
	require.True(t, strings.HasPrefix(fivetran.SchemaName(onboard.Flow{ID: "x", Source: "Google Sheets"}), "google_sheets_"))
	require.True(t, strings.HasPrefix(fivetran.SchemaName(onboard.Flow{ID: "x", Source: "3dcart"}), "s3dcart_"))
}

func TestService(t *testing.T) {
	for _, tt := range []struct{ source, want string }{
		{"Salesforce", "salesforce"}, {"Google Sheets", "google_sheets"}, {" HubSpot ", "hubspot"},
		{"", ""}, {"sales/force", ""}, {"Ünïcødé", ""},
	} {
		got, config, err := fivetran.DefaultService(onboard.Flow{Source: tt.source})
		if tt.want == "" {
			require.ErrorIs(t, err, onboard.ErrBadRequest, tt.source)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
		require.NotNil(t, config)
	}

	t.Run("override, and a refused service", func(t *testing.T) {
		e := newEnv(t, options{provider: func(c *fivetran.Config) {
			c.Service = func(f onboard.Flow) (string, map[string]any, error) {
				return "postgres", map[string]any{"schema_prefix": "mine", "host": "db.example"}, nil
			}
		}})
		b := e.app.Browser("alice", "acme")
		f := e.complete(b, e.fill(b, query("source", "Our database"), "token"))
		require.Equal(t, onboard.Connected, f.Outcome)
		held := e.held(f.ConnectionID)
		require.Equal(t, "postgres", held.Service)
		require.Equal(t, fivetran.SchemaName(onboard.Flow{ID: f.ID, Source: "Our database"}), held.Schema)
		require.Equal(t, "db.example", held.Config["host"])

		e = newEnv(t, options{})
		res := e.app.Browser("alice", "acme").Get(e.app.URL() + "/connect/fivetran/start?source=Nonesuch")
		require.Equal(t, http.StatusUnprocessableEntity, res.Code, "Fivetran refuses an unknown service")
		require.Empty(t, e.emu.All())
	})
}

func TestEmulatorChecksAuthAndVersion(t *testing.T) {
	emu := fivetrantest.New(fivetrantest.Options{APIKey: "key", APISecret: "s3cret"})
	srv := onboardtest.Serve(t, emu)
	for _, tt := range []struct {
		user, pass, accept string
		want               int
	}{
		{"key", "s3cret", fivetran.Accept, 200},
		{"key", "wrong", fivetran.Accept, 401},
		{"", "", fivetran.Accept, 401},
		{"key", "s3cret", "application/json", 406},
	} {
		req, _ := http.NewRequest("GET", srv+"/v1/groups", nil)
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pass)
		}
		req.Header.Set("Accept", tt.accept)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var body struct{ Code string }
		require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
		res.Body.Close()
		require.Equal(t, tt.want, res.StatusCode, tt)
		require.NotEmpty(t, body.Code)
	}
	// A wrong key reaches the user as a provider error.
	e := newEnv(t, options{provider: func(c *fivetran.Config) { c.APISecret = "nope" }})
	_, err := e.p.GroupID(context.Background(), "acme")
	var ae *fivetran.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 401, ae.Status)
	require.Equal(t, "AuthFailed", ae.Code)
	require.ErrorIs(t, err, onboard.ErrProvider)
}

func TestRetryRules(t *testing.T) {
	t.Run("GET retried after 5xx and a dropped connection", func(t *testing.T) {
		e := newEnv(t, options{})
		e.emu.API.Fail(emulate.Fault{Status: 502}, emulate.Fault{Drop: true})
		_, err := e.p.GroupID(context.Background(), "acme")
		require.NoError(t, err)
		require.Equal(t, 3, e.count("GET", "/v1/groups", "*"))
	})
	t.Run("a Retry-After beyond the bound fails at once", func(t *testing.T) {
		e := newEnv(t, options{provider: func(c *fivetran.Config) { c.MaxRetryWait = time.Second }})
		e.emu.API.Fail(emulate.Fault{Status: 429, RetryAfter: time.Hour})
		start := time.Now()
		_, err := e.p.GroupID(context.Background(), "acme")
		require.ErrorIs(t, err, onboard.ErrProvider)
		require.Less(t, time.Since(start), time.Second)
	})
	t.Run("provider down at the return leaves the flow retryable", func(t *testing.T) {
		e := newEnv(t, options{provider: func(c *fivetran.Config) { c.Retries = -1 }})
		b := e.app.Browser("alice", "acme")
		back := e.fill(b, query("source", "Salesforce"), "token")
		e.emu.API.Fail(emulate.Fault{Status: 500})
		require.Equal(t, http.StatusBadGateway, b.Get(back).Code)
		require.Empty(t, e.app.Connections("acme"))
		require.Equal(t, onboard.Connected, e.complete(b, back).Outcome)
		require.Len(t, e.app.Connections("acme"), 1)
	})
	t.Run("the resume fails: the reload resumes", func(t *testing.T) {
		e := newEnv(t, options{provider: func(c *fivetran.Config) { c.Retries = -1 }})
		b := e.app.Browser("alice", "acme")
		back := e.fill(b, query("source", "Salesforce"), "token")
		e.emu.API.Fail(emulate.Fault{}, emulate.Fault{}, emulate.Fault{Status: 503}) // list, get, PATCH
		require.Equal(t, http.StatusBadGateway, b.Get(back).Code)
		id := e.emu.All()[0].ID
		require.True(t, e.held(id).Paused)
		require.Equal(t, onboard.Connected, e.complete(b, back).Outcome)
		require.False(t, e.held(id).Paused)
	})
}

func TestDelete(t *testing.T) {
	e := newEnv(t, options{})
	b := e.app.Browser("alice", "acme")
	id := e.complete(b, e.fill(b, query("source", "Salesforce"), "token")).ConnectionID
	owner := onboard.Owner{Tenant: "acme", User: "alice"}
	require.NoError(t, e.app.Onboarder.DeleteConnection(context.Background(), owner, "fivetran", id))
	_, held := e.emu.Connection(id)
	require.False(t, held)
	require.Empty(t, e.app.Connections("acme"))
	require.ErrorIs(t, e.app.Onboarder.DeleteConnection(context.Background(), owner, "fivetran", id), onboard.ErrUnknownConnection)
	require.NoError(t, e.p.Delete(context.Background(), onboard.Connection{ID: id}), "gone is not an error")
	require.NoError(t, e.p.Cancel(context.Background(), onboard.Flow{ID: "never-began", Owner: owner, Source: "Salesforce"}),
		"nothing to cancel is not an error")
	require.NoError(t, e.p.Cancel(context.Background(), onboard.Flow{ID: "x", Owner: owner, Reconnect: true, ConnectionID: id}))
}

func post(t *testing.T, u string, body []byte, sig string) int {
	req, _ := http.NewRequest("POST", u, bytes.NewReader(body))
	if sig != "" {
		req.Header.Set("X-Fivetran-Signature-256", sig)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	return res.StatusCode
}

func TestWebhookDeliveries(t *testing.T) {
	e := newEnv(t, options{})
	hook := e.webhookURL()
	e.register(hook)
	b := e.app.Browser("alice", "acme")
	id := e.complete(b, e.fill(b, query("source", "Salesforce"), "token")).ConnectionID
	body := e.deliveries("connection_successful", id)[0].Body

	for _, tt := range []struct {
		name string
		body []byte
		sig  string
		want int
	}{
		{"valid, upper case", body, fivetrantest.Sign(secret, body), 200},
		{"valid, lower case", body, strings.ToLower(fivetrantest.Sign(secret, body)), 200},
		{"wrong secret", body, fivetrantest.Sign("other-secret", body), 401},
		{"not hex", body, "zz-not-hex", 401},
		{"missing", body, "", 401},
		{"malformed payload", []byte(`{"event":`), fivetrantest.Sign(secret, []byte(`{"event":`)), 400},
		{"acted-on event without a connection", []byte(`{"event":"sync_end","created":"2026-01-02T03:04:05Z"}`),
			fivetrantest.Sign(secret, []byte(`{"event":"sync_end","created":"2026-01-02T03:04:05Z"}`)), 400},
		{"oversized", append(bytes.Repeat([]byte(" "), 70<<10), body...), "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sig, want := tt.sig, tt.want
			if want == 0 {
				sig, want = fivetrantest.Sign(secret, tt.body), http.StatusRequestEntityTooLarge
			}
			require.Equal(t, want, post(t, hook, tt.body, sig))
		})
	}
	t.Run("duplicates change nothing", func(t *testing.T) {
		before := len(e.hooks)
		for i := range e.emu.Deliveries() {
			require.Equal(t, http.StatusOK, e.emu.Redeliver(i))
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		require.Len(t, e.hooks, before)
	})
}

func TestParsePayload(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		body string
		want []onboard.Event
	}{
		{`{"event":"connection_successful","created":"2026-01-02T03:04:05Z","connector_id":"c1"}`,
			[]onboard.Event{{ConnectionID: "c1", State: onboard.Connected, At: at}}},
		{`{"event":"sync_end","created":"2026-01-02T04:04:05+01:00","connector_id":"c1","data":{"status":"SUCCESSFUL"}}`,
			[]onboard.Event{{ConnectionID: "c1", State: onboard.Connected, At: at}}},
		{`{"event":"sync_end","created":"2026-01-02T03:04:05Z","connector_id":"c1","data":{"status":"FAILURE_WITH_TASK"}}`,
			[]onboard.Event{{ConnectionID: "c1", State: onboard.Failed, At: at,
				Message: "The last sync failed. Reconnect to fix the connection."}}},
		{`{"event":"sync_end","created":"2026-01-02T03:04:05Z","connector_id":"c1","data":{"status":"RESCHEDULED"}}`, nil},
		{`{"event":"delete_connector","created":"2026-01-02T03:04:05Z","connector_id":"c1"}`,
			[]onboard.Event{{ConnectionID: "c1", Deleted: true, At: at}}},
		{`{"event":"sync_start","created":"2026-01-02T03:04:05Z","connector_id":"c1"}`, nil},
		{`{"event":"test","connector_id":"_connector_1"}`, nil},
	} {
		got, err := fivetran.ParsePayload([]byte(tt.body))
		require.NoError(t, err, tt.body)
		require.Equal(t, tt.want, got, tt.body)
	}
}

func TestParseReturn(t *testing.T) {
	for _, tt := range []struct {
		q, id string
		ok    bool
	}{
		{"", "", true},
		{"id=conn_1", "conn_1", true},
		{"id=a&id=b", "", false},
		{"id=" + strings.Repeat("x", 200), "", false},
	} {
		v, _ := url.ParseQuery(tt.q)
		id, err := fivetran.ParseReturn(v)
		if !tt.ok {
			require.ErrorIs(t, err, onboard.ErrBadRequest)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.id, id)
	}
}

func TestConfig(t *testing.T) {
	_, err := fivetran.New(fivetran.Config{})
	require.ErrorContains(t, err, "APIKey")
	_, err = fivetran.New(fivetran.Config{APIKey: "k", APISecret: "s", BaseURL: "nope"})
	require.ErrorContains(t, err, "BaseURL")
	p, err := fivetran.New(fivetran.Config{APIKey: "k", APISecret: "s"})
	require.NoError(t, err)
	require.Equal(t, "fivetran", p.Name())
	_, err = p.RegisterWebhook(context.Background(), "https://app.example/connect/fivetran/webhook")
	require.ErrorContains(t, err, "WebhookSecret")
}

func FuzzParseReturn(f *testing.F) {
	f.Add("id=conn_abc")
	f.Add("id=a&id=b")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		id, err := fivetran.ParseReturn(v)
		if err != nil && !errors.Is(err, onboard.ErrBadRequest) {
			t.Fatal(err)
		}
		if err == nil && len(v["id"]) == 1 && id != v.Get("id") {
			t.Fatalf("id %q, want %q", id, v.Get("id"))
		}
	})
}

func FuzzWebhook(f *testing.F) {
	f.Add([]byte(`{"event":"sync_end","created":"2026-11-22T10:00:00Z","connector_id":"c1","data":{"status":"FAILURE"}}`), true)
	f.Add([]byte(`{"event":"delete_connector","created":"2026-11-22T10:00:00Z","connector_id":"c1"}`), true)
	f.Add([]byte(`{"event":1}`), false)
	f.Add([]byte(`null`), true)
	f.Fuzz(func(t *testing.T, body []byte, signed bool) {
		evs, err := fivetran.ParsePayload(body)
		if err == nil {
			for _, ev := range evs {
				if ev.ConnectionID == "" || ev.At.IsZero() {
					t.Fatalf("event without connection or time from %q", body)
				}
			}
		}
		sig := ""
		if signed {
			sig = fivetrantest.Sign(secret, body)
		}
		if fivetran.VerifySignature(secret, body, sig) != signed {
			t.Fatalf("signature check wrong for signed=%v", signed)
		}
		if fivetran.VerifySignature(secret, append(body, 'x'), sig) {
			t.Fatal("a changed body verified")
		}
	})
}

func FuzzGroupName(f *testing.F) {
	f.Add("acme", "Acme")
	f.Add("a", "a\x00")
	f.Add(strings.Repeat("x", 100), strings.Repeat("x", 101))
	shape := regexp.MustCompile(`^onboard_[a-z2-7]{52}$`)
	f.Fuzz(func(t *testing.T, a, b string) {
		na, nb := fivetran.GroupName(a), fivetran.GroupName(b)
		if !shape.MatchString(na) {
			t.Fatalf("group name %q of %q", na, a)
		}
		if (a == b) != (na == nb) {
			t.Fatalf("%q and %q: names %q and %q", a, b, na, nb)
		}
	})
}

// TestSignatureKnownAnswer checks the webhook signature against a value
// computed elsewhere (openssl dgst -sha256 -hmac), not against the
// emulator's own signer: upper-case hex of HMAC-SHA256 of the raw body.
func TestSignatureKnownAnswer(t *testing.T) {
	body := []byte(`{"event":"connection_successful","connector_id":"conn_1"}`)
	const want = "04513D53ACB82E769CC9185041BD6BA6BE863B9911F01A7D6D88262A468ABC1E"
	require.True(t, fivetran.VerifySignature("shh-secret", body, want))
	require.True(t, fivetran.VerifySignature("shh-secret", body, strings.ToLower(want)), "hex in either case")
	require.False(t, fivetran.VerifySignature("other-secret", body, want))
	require.Equal(t, want, fivetrantest.Sign("shh-secret", body), "the emulator signs as Fivetran does")
}
