package onboard_test

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
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
//
//	go test -run '^$' -bench 'Start|Return' -benchmem -count 10 .

func sessionManager() *scs.SessionManager {
	sm := scs.New()
	sm.Store = scsmem.NewWithCleanupInterval(0)
	return sm
}

func benchOnboard(b *testing.B) (http.Handler, *fake.Provider) {
	sm := sessionManager()
	sessions, err := middleware.NewSCS(sm)
	if err != nil {
		b.Fatal(err)
	}
	p := fake.New("fake")
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
	return sm.LoadAndSave(ob.Handler()), p
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

func BenchmarkStart(b *testing.B) {
	h, _ := benchOnboard(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		serve(b, h, "https://app.example/connect/fake/start?source=Salesforce", "", "u"+strconv.Itoa(i), http.StatusFound)
	}
}

func BenchmarkFloorStart(b *testing.B) {
	start, _ := floor()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		serve(b, start, "https://app.example/connect/start?source=Salesforce", "", "u"+strconv.Itoa(i), http.StatusFound)
	}
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
	h, p := benchOnboard(b)
	flows := prepare(b.N, func(user string) (string, string) {
		rec := serve(b, h, "https://app.example/connect/fake/start?source=Salesforce", "", user, http.StatusFound)
		u, _ := url.Parse(rec.Header().Get("Location"))
		back, err := p.Finish(u.Query().Get("flow"), onboard.Connected)
		if err != nil {
			b.Fatal(err)
		}
		return back, cookieOf(rec)
	})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		serve(b, h, flows[i].target, flows[i].cookie, flows[i].user, http.StatusSeeOther)
	}
}

func BenchmarkFloorReturn(b *testing.B) {
	start, back := floor()
	flows := prepare(b.N, func(user string) (string, string) {
		rec := serve(b, start, "https://app.example/connect/start", "", user, http.StatusFound)
		u, _ := url.Parse(rec.Header().Get("Location"))
		return "https://app.example/connect/return?state=" + u.Query().Get("state"), cookieOf(rec)
	})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		serve(b, back, flows[i].target, flows[i].cookie, flows[i].user, http.StatusSeeOther)
	}
}
