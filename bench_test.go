package onboard_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"testing"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// The benchmarks compare onboard's start and return handlers with a floor:
// a hand-written handler pair doing only the unavoidable work (random
// state, one session write and a redirect; on the return one session
// read, a constant-time compare and a redirect). Both run behind the same
// scs middleware with its in-memory store, through httptest recorders.
// Each onboard benchmark runs with the fake provider and with a provider
// that keeps no records (signed). BENCHMARKS.md gives the numbers and how
// they were taken:
//
//	go test -run '^$' -bench 'Start|Return' -benchmem .

func sessionManager() *scs.SessionManager {
	sm := scs.New()
	sm.Store = scsmem.NewWithCleanupInterval(0)
	return sm
}

// benchProvider is an in-process provider for the benchmarks: the
// provider and a way to play the user on its hosted page, which returns
// the URL the browser is sent back to.
type benchProvider struct {
	name   string
	make   func() (onboard.Provider, func(flowID string) (string, error))
	target string // the start URL
}

var benchProviders = []benchProvider{
	{"fake", func() (onboard.Provider, func(string) (string, error)) {
		p := fake.New("fake")
		return p, func(id string) (string, error) { return p.Finish(id, onboard.Connected) }
	}, "https://app.example/connect/fake/start?source=Salesforce"},
	{"signed", func() (onboard.Provider, func(string) (string, error)) {
		p := newSignedProvider()
		return p, p.finish
	}, "https://app.example/connect/signed/start?source=Salesforce"},
}

// signedProvider keeps no records: the connection id it hands back is a
// MAC of the flow id, which Complete checks. It shows onboard's cost
// without a provider's bookkeeping (the fake keeps a record of every
// flow, as a real provider does at its end).
type signedProvider struct{ key [32]byte }

func newSignedProvider() *signedProvider {
	p := &signedProvider{}
	_, _ = rand.Read(p.key[:])
	return p
}

func (p *signedProvider) Name() string { return "signed" }

func (p *signedProvider) Begin(ctx context.Context, f *onboard.Flow) (string, error) {
	return "https://provider.example/hosted?flow=" + f.ID, ctx.Err()
}

func (p *signedProvider) mac(flowID string) string {
	m := hmac.New(sha256.New, p.key[:])
	m.Write([]byte(flowID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func (p *signedProvider) finish(flowID string) (string, error) {
	return "https://app.example/connect/signed/return/" + flowID + "?conn=" + p.mac(flowID), nil
}

func (p *signedProvider) Complete(ctx context.Context, f *onboard.Flow, ret url.Values) (onboard.Connection, error) {
	if subtle.ConstantTimeCompare([]byte(ret.Get("conn")), []byte(p.mac(f.ID))) != 1 {
		return onboard.Connection{}, onboard.ErrForged
	}
	return onboard.Connection{ID: ret.Get("conn"), State: onboard.Connected}, ctx.Err()
}

func benchOnboard(b *testing.B, p onboard.Provider) http.Handler {
	sm := sessionManager()
	sessions, err := middleware.NewSCS(sm)
	if err != nil {
		b.Fatal(err)
	}
	ob, err := onboard.New(onboard.Config{
		URL: "https://app.example/connect", Providers: []onboard.Provider{p},
		Store:    memstore.New(memstore.Options{MaxFlows: 1 << 30}),
		Sessions: sessions,
		Owner: func(r *http.Request) (onboard.Owner, error) {
			u := r.Header.Get("X-User") // "u123"; a hundred tenants
			return onboard.Owner{Tenant: "t" + u[len(u)-min(2, len(u)):], User: u}, nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	return sm.LoadAndSave(ob.Handler())
}

func floor() (start, back http.Handler) {
	sm := sessionManager()
	start = sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [32]byte
		_, _ = rand.Read(b[:])
		state := base64.RawURLEncoding.EncodeToString(b[:])
		sm.Put(r.Context(), "state", state)
		http.Redirect(w, r, "https://provider.example/hosted?state="+state, http.StatusFound)
	}))
	back = sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, want := r.URL.Query().Get("state"), sm.GetString(r.Context(), "state")
		if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			http.Error(w, "bad state", http.StatusForbidden)
			return
		}
		http.Redirect(w, r, "/done", http.StatusSeeOther)
	}))
	return start, back
}

// serve sends one request as user (the benchmarks give every flow a user
// of its own, as real traffic has many users; one user's pending flows
// are capped).
func serve(b *testing.B, h http.Handler, target, cookie, user string, want int) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("X-User", user)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != want {
		b.Fatalf("%s answered %d, want %d: %s", target, rec.Code, want, rec.Body)
	}
	return rec
}

// liveHeap returns the bytes of live heap after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// starts times one start per iteration, each of a new user, and reports
// the heap that stays live per start (the flow, the session, the
// provider's record), in retained-B/op.
func starts(b *testing.B, h http.Handler, target string) {
	before := liveHeap()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		serve(b, h, target, "", "u"+strconv.Itoa(i), http.StatusFound)
	}
	b.ReportMetric(float64(liveHeap()-before)/float64(b.N), "retained-B/op")
	runtime.KeepAlive(h)
}

func BenchmarkStart(b *testing.B) {
	for _, bp := range benchProviders {
		b.Run(bp.name, func(b *testing.B) {
			p, _ := bp.make()
			starts(b, benchOnboard(b, p), bp.target)
		})
	}
}

func BenchmarkFloorStart(b *testing.B) {
	start, _ := floor()
	starts(b, start, "https://app.example/connect/start?source=Salesforce")
}

type pendingReturn struct{ target, cookie, user string }

// prepare makes n started flows, each of its own user and session, ready
// to return.
func prepare(n int, start func(user string) (target, cookie string)) []pendingReturn {
	out := make([]pendingReturn, n)
	for i := range out {
		out[i].user = "u" + strconv.Itoa(i)
		out[i].target, out[i].cookie = start(out[i].user)
	}
	return out
}

func cookieOf(rec *httptest.ResponseRecorder) string {
	c := rec.Result().Cookies()[0]
	return c.Name + "=" + c.Value
}

func BenchmarkReturn(b *testing.B) {
	for _, bp := range benchProviders {
		b.Run(bp.name, func(b *testing.B) {
			p, finish := bp.make()
			h := benchOnboard(b, p)
			flows := prepare(b.N, func(user string) (string, string) {
				rec := serve(b, h, bp.target, "", user, http.StatusFound)
				u, _ := url.Parse(rec.Header().Get("Location"))
				back, err := finish(u.Query().Get("flow"))
				if err != nil {
					b.Fatal(err)
				}
				return back, cookieOf(rec)
			})
			returns(b, h, flows)
		})
	}
}

func BenchmarkFloorReturn(b *testing.B) {
	start, back := floor()
	flows := prepare(b.N, func(user string) (string, string) {
		rec := serve(b, start, "https://app.example/connect/start", "", user, http.StatusFound)
		u, _ := url.Parse(rec.Header().Get("Location"))
		return "https://app.example/connect/return?state=" + u.Query().Get("state"), cookieOf(rec)
	})
	returns(b, back, flows)
}

// returns times one return per iteration, of the flows prepared.
func returns(b *testing.B, h http.Handler, flows []pendingReturn) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		serve(b, h, flows[i].target, flows[i].cookie, flows[i].user, http.StatusSeeOther)
	}
}
