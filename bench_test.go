package onboard_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// The handler benchmarks compare onboard's start and return handlers with
// a floor: a hand-written handler pair that does only the unavoidable work
// (on start random state, one session write and a redirect; on return one
// session read, a constant-time compare and a redirect). Both run behind
// scs's LoadAndSave with scs's in-memory session store (onboard through
// middleware.LoadAndSave, as apps mount it), onboard with memstore and
// logging at Info through slog's text handler into io.Discard.
//
// Every benchmark first holds a number of flows (held=...): that many
// browsers signed in and started a flow that has not returned, 100 per
// tenant. Then it times b.N requests from clients=... goroutines, each
// request from a browser of its own, signed in (in one of the same
// tenants), its request and response recorder built before the timer
// started. Run them with a fixed count, so that every benchmark holds the
// same number of flows when it ends:
//
//	go test -run '^$' -bench 'Start|Return' -benchtime 10000x -benchmem -timeout 0 .
//
// Besides time, memory and allocations per request, each reports the CPU
// time of the process per request (cpu-ns/op: the handlers and the
// garbage collector, less exposed to other processes than wall time), the
// 50th, 99th and 99.9th percentiles of single requests, and the live heap
// each held flow takes (heap-B/held). Within each
// held/clients group the floor runs first, and onboard's benchmarks
// report their time and CPU time as multiples of the floor's (x-floor,
// x-floor-cpu). BENCHMARKS.md has the figures.

const (
	benchURL       = "https://app.example"
	benchPerTenant = 100 // browsers (users) per tenant
)

// benchLogger logs at Info, through the text handler, to nowhere: what a
// deployment pays for onboard's log lines but the write.
func benchLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// benchSessions returns a session manager over scs's in-memory store,
// without a cleanup goroutine.
func benchSessions() *scs.SessionManager {
	sm := scs.New()
	if def, ok := sm.Store.(*scsmem.MemStore); ok {
		def.StopCleanup() // the default store's, replaced below
	}
	sm.Store = scsmem.NewWithCleanupInterval(0)
	return sm
}

// benchTarget is one app under benchmark: its handler, behind the
// session middleware, the start URL, and the provider's side of a flow.
type benchTarget struct {
	sm *scs.SessionManager
	// start and back serve the start and the return.
	start, back http.Handler
	startURL    string
	// returnURL plays the user on the hosted page at hosted (the start's
	// Location) and returns where the provider sends the browser back.
	returnURL func(hosted string) (string, error)
	// browsers counts the browsers signed in so far; cookies are the
	// session cookies of those held, when kept.
	browsers int
	tenants  int
	cookies  []string
	again    int // starts made again in held browsers
	// heapPerFlow is the live heap each held flow added: the flow, its
	// session, the provider's record (and, with cookies kept, the cookie).
	heapPerFlow float64
}

// benchKind is one app compared: the floor, or onboard with a provider.
type benchKind struct {
	name string
	make func(testing.TB) *benchTarget
	// again: each timed start comes from a browser that started a flow
	// before (one of those held), whose session holds its key already.
	again bool
}

// benchKinds returns the floor, onboard with the fake provider (which
// keeps a record of every flow, as a real provider does at its end) and
// onboard with the signed provider (which keeps none); with again, also
// onboard with the fake provider and browsers that started a flow before.
func benchKinds(again bool) []benchKind {
	fakeKind := func(tb testing.TB) *benchTarget {
		p := fake.New("fake")
		return newBenchOnboard(tb, p, func(hosted string) (string, error) {
			return p.Finish(queryParam(hosted, "flow"), onboard.Connected)
		})
	}
	kinds := []benchKind{
		{"floor", newFloor, false},
		{"fake", fakeKind, false},
		{"signed", func(tb testing.TB) *benchTarget {
			p := newSignedProvider()
			return newBenchOnboard(tb, p, func(hosted string) (string, error) {
				return p.returnURL(queryParam(hosted, "flow")), nil
			})
		}, false},
	}
	if again {
		kinds = append(kinds, benchKind{"fake-again", fakeKind, true})
	}
	return kinds
}

func queryParam(u, name string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return parsed.Query().Get(name)
}

func newBenchOnboard(tb testing.TB, p onboard.Provider, returnURL func(string) (string, error)) *benchTarget {
	sm := benchSessions()
	sessions, err := middleware.NewSCS(sm)
	if err != nil {
		tb.Fatal(err)
	}
	ob, err := onboard.New(onboard.Config{
		URL:       benchURL + "/connect",
		Providers: []onboard.Provider{p},
		// Room for every flow of the largest benchmark: none is dropped.
		Store:    memstore.New(memstore.Options{MaxFlows: 1 << 22}),
		Sessions: sessions,
		Owner:    onboardtest.Owner(sm),
		Logger:   benchLogger(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	h := middleware.LoadAndSave(sm, ob.SessionError)(ob.Handler())
	return &benchTarget{
		sm:        sm,
		start:     h,
		back:      h,
		startURL:  benchURL + "/connect/" + p.Name() + "/start?source=Salesforce",
		returnURL: returnURL,
	}
}

// newFloor returns the floor: the least a start and a return must do.
func newFloor(testing.TB) *benchTarget {
	sm := benchSessions()
	start := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [32]byte
		_, _ = rand.Read(b[:])
		state := base64.RawURLEncoding.EncodeToString(b[:])
		sm.Put(r.Context(), "state", state)
		http.Redirect(w, r, "https://provider.example/hosted?state="+state, http.StatusFound)
	})
	back := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, want := r.URL.Query().Get("state"), sm.GetString(r.Context(), "state")
		if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			http.Error(w, "bad state", http.StatusForbidden)
			return
		}
		http.Redirect(w, r, "/done", http.StatusSeeOther)
	})
	return &benchTarget{
		sm:       sm,
		start:    sm.LoadAndSave(start),
		back:     sm.LoadAndSave(back),
		startURL: benchURL + "/connect/start?source=Salesforce",
		returnURL: func(hosted string) (string, error) {
			return benchURL + "/connect/return?state=" + queryParam(hosted, "state"), nil
		},
	}
}

// signedProvider keeps no records: the connection id it hands back is a
// MAC of the flow id, which Complete checks. It shows onboard's cost
// without a provider's bookkeeping.
type signedProvider struct{ key [32]byte }

func newSignedProvider() *signedProvider {
	p := &signedProvider{}
	_, _ = rand.Read(p.key[:])
	return p
}

func (p *signedProvider) Name() string { return "signed" }

func (p *signedProvider) Begin(ctx context.Context, f onboard.Flow, _ string) (string, error) {
	return "https://provider.example/hosted?flow=" + f.ID, ctx.Err()
}

func (p *signedProvider) mac(flowID string) string {
	m := hmac.New(sha256.New, p.key[:])
	m.Write([]byte(flowID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func (p *signedProvider) returnURL(flowID string) string {
	return benchURL + "/connect/signed/return/" + flowID + "?conn=" + p.mac(flowID)
}

func (p *signedProvider) Complete(ctx context.Context, f onboard.Flow, ret url.Values) (onboard.Connection, error) {
	if subtle.ConstantTimeCompare([]byte(ret.Get("conn")), []byte(p.mac(f.ID))) != 1 {
		return onboard.Connection{}, onboard.ErrForged
	}
	return onboard.Connection{ID: ret.Get("conn"), State: onboard.Connected}, ctx.Err()
}

func (p *signedProvider) Cancel(ctx context.Context, _ onboard.Flow) error { return ctx.Err() }

func (p *signedProvider) Delete(ctx context.Context, _ onboard.Connection) error { return ctx.Err() }

// signIn makes browser i's session, as the app's sign-in does: user
// "u{i}" of one of the tenants, each with 100 of the browsers held. It
// returns the session cookie.
func (t *benchTarget) signIn(i int) (string, error) {
	ctx, err := t.sm.Load(context.Background(), "")
	if err != nil {
		return "", err
	}
	t.sm.Put(ctx, "user", "u"+strconv.Itoa(i))
	t.sm.Put(ctx, "tenant", "t"+strconv.Itoa(i%t.tenants))
	token, _, err := t.sm.Commit(ctx)
	if err != nil {
		return "", err
	}
	return t.sm.Cookie.Name + "=" + token, nil
}

func benchRequest(target, cookie string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("Cookie", cookie)
	r.Header.Set("Sec-Fetch-Site", "same-origin") // a link on the app's page, as browsers mark it
	return r
}

// started starts a flow, untimed, in the browser with this session
// cookie and returns the hosted page's URL.
func (t *benchTarget) started(cookie string) (string, error) {
	rec := httptest.NewRecorder()
	t.start.ServeHTTP(rec, benchRequest(t.startURL, cookie))
	if rec.Code != http.StatusFound {
		return "", fmt.Errorf("start answered %d: %s", rec.Code, rec.Body)
	}
	return rec.Header().Get("Location"), nil
}

// hold signs n new browsers in and starts a flow in each, which stays
// pending. With keep, it keeps their session cookies.
func (t *benchTarget) hold(tb testing.TB, n int, keep bool) {
	first := t.browsers
	t.browsers += n
	t.tenants = max(1, n/benchPerTenant)
	if keep {
		t.cookies = make([]string, n)
	}
	before := liveHeap()
	failed, err := testutil.Concurrently(n, runtime.GOMAXPROCS(0), func(i int) error {
		cookie, err := t.signIn(first + i)
		if err == nil {
			_, err = t.started(cookie)
		}
		if keep {
			t.cookies[i] = cookie
		}
		return err
	})
	if failed > 0 {
		tb.Fatalf("%d of %d starts failed: %v", failed, n, err)
	}
	t.heapPerFlow = float64(liveHeap()-before) / float64(n)
}

// liveHeap returns the bytes of live heap after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// timed sends reqs to h from clients goroutines, with the timer on only
// while they run, and checks every answer. Besides time, allocations and
// bytes per request, it reports the process's CPU time per request, which
// it returns (0 where it cannot be read), and the 50th, 99th and 99.9th
// percentiles of single requests.
func timed(b *testing.B, h http.Handler, reqs []*http.Request, clients, want int) (cpuNs float64) {
	recs := make([]*httptest.ResponseRecorder, len(reqs))
	for i := range recs {
		recs[i] = httptest.NewRecorder()
	}
	lat := make([]time.Duration, len(reqs))
	// A server gives every request a context that ends with it.
	cancels := make([]context.CancelFunc, len(reqs))
	for i, r := range reqs {
		var ctx context.Context
		ctx, cancels[i] = context.WithCancel(r.Context())
		reqs[i] = r.WithContext(ctx)
	}
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	var next atomic.Int64
	runtime.GC()
	b.ReportAllocs()
	cpu0, cpuOK := testutil.ProcessCPU()
	b.ResetTimer()
	// The label sets the timed requests apart in a CPU profile:
	// go tool pprof -tagfocus bench=timed.
	pprof.Do(context.Background(), pprof.Labels("bench", "timed"), func(context.Context) {
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(reqs) {
						return
					}
					t0 := time.Now()
					h.ServeHTTP(recs[i], reqs[i])
					lat[i] = time.Since(t0)
				}
			})
		}
		wg.Wait()
	})
	b.StopTimer()
	if cpu1, ok := testutil.ProcessCPU(); ok && cpuOK {
		cpuNs = float64((cpu1 - cpu0).Nanoseconds()) / float64(len(reqs))
		b.ReportMetric(cpuNs, "cpu-ns/op")
	}
	for i, rec := range recs {
		if rec.Code != want {
			b.Fatalf("request %d (%s) answered %d, want %d: %s", i, reqs[i].URL, rec.Code, want, rec.Body)
		}
	}
	slices.Sort(lat)
	for _, q := range []struct {
		p    float64
		unit string
	}{{0.5, "p50-ns"}, {0.99, "p99-ns"}, {0.999, "p99.9-ns"}} {
		b.ReportMetric(float64(testutil.Quantile(lat, q.p).Nanoseconds()), q.unit)
	}
	return cpuNs
}

// compare runs the floor and onboard's benchmarks of one kind of request
// (prepare builds b.N requests against a target holding held flows) for
// each number of flows held and of clients, each group in a sub-benchmark
// of its own with the floor first.
func compare(b *testing.B, kinds []benchKind, prepare func(b *testing.B, t *benchTarget, again bool) (http.Handler, []*http.Request, int)) {
	for _, held := range []int{10_000, 100_000, 1_000_000} {
		b.Run("held="+strconv.Itoa(held), func(b *testing.B) {
			for _, clients := range []int{1, 8} {
				b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) {
					var floorNs, floorCPU float64
					for _, kind := range kinds {
						// The target is built once per benchmark: the
						// framework calls the function twice (b.N of 1,
						// then the count asked for).
						var t *benchTarget
						b.Run(kind.name, func(b *testing.B) {
							if t == nil {
								t = kind.make(b)
								t.hold(b, held, kind.again)
							}
							h, reqs, want := prepare(b, t, kind.again)
							cpu := timed(b, h, reqs, clients, want)
							b.ReportMetric(t.heapPerFlow, "heap-B/held")
							ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
							switch {
							case kind.name == "floor":
								floorNs, floorCPU = ns, cpu
							case floorNs > 0:
								b.ReportMetric(ns/floorNs, "x-floor")
								if floorCPU > 0 && cpu > 0 {
									b.ReportMetric(cpu/floorCPU, "x-floor-cpu")
								}
							}
						})
						t = nil // free what it holds before the next
					}
				})
			}
		})
	}
}

// BenchmarkStart times starts, each by a signed-in browser of its own
// that has not started a flow before (its key is made and saved), or, for
// fake-again, by a browser that has (one of those held, so a start adds
// one flow as the others do).
func BenchmarkStart(b *testing.B) {
	testutil.FixedCount(b)
	compare(b, benchKinds(true), func(b *testing.B, t *benchTarget, again bool) (http.Handler, []*http.Request, int) {
		reqs := make([]*http.Request, b.N)
		if again {
			for i := range reqs {
				reqs[i] = benchRequest(t.startURL, t.cookies[t.again%len(t.cookies)])
				t.again++
			}
			return t.start, reqs, http.StatusFound
		}
		for i := range reqs {
			cookie, err := t.signIn(t.browsers)
			if err != nil {
				b.Fatal(err)
			}
			t.browsers++
			reqs[i] = benchRequest(t.startURL, cookie)
		}
		return t.start, reqs, http.StatusFound
	})
}

// BenchmarkReturn times returns from the provider's hosted page, each of
// a flow started (untimed) by a browser of its own.
func BenchmarkReturn(b *testing.B) {
	testutil.FixedCount(b)
	compare(b, benchKinds(false), func(b *testing.B, t *benchTarget, _ bool) (http.Handler, []*http.Request, int) {
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			cookie, err := t.signIn(t.browsers)
			t.browsers++
			var hosted, back string
			if err == nil {
				hosted, err = t.started(cookie)
			}
			if err == nil {
				back, err = t.returnURL(hosted)
			}
			if err != nil {
				b.Fatal(err)
			}
			reqs[i] = benchRequest(back, cookie)
		}
		return t.back, reqs, http.StatusSeeOther
	})
}

// BenchmarkRequestConstruction is the cost of building one request and
// its recorder, which the handler benchmarks leave out of their time.
func BenchmarkRequestConstruction(b *testing.B) {
	cookie := "session=" + strconv.Itoa(1<<40)
	for b.Loop() {
		_ = benchRequest(benchURL+"/connect/fake/start?source=Salesforce", cookie)
		_ = httptest.NewRecorder()
	}
}
