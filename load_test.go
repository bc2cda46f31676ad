//go:build load

package onboard_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
	"github.com/onboardkit/onboard/store/sqlstore"
)

// TestLoadToolkit runs complete flows over loopback HTTP: browsers (cookie
// jars) sign in to an onboardtest.App, start a flow, go through the fake
// provider's hosted page (served over HTTP too) and come back. It runs
// each number of concurrent browsers (1, 4, 16, 64) for a fixed time, on
// memstore and on sqlstore over PostgreSQL (when
// ONBOARD_TEST_POSTGRES_URL is set), and reports flows per second and the
// 50th, 99th and 99.9th percentiles of onboard's own time: the time spent
// inside the onboard handler (inside the session middleware, which loads
// and saves the session around it), measured by a wrapping middleware.
// The browsers, the app, the provider and PostgreSQL share the machine.
// Each level runs ONBOARD_LOAD_SECONDS seconds (default 5):
//
//	ONBOARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -tags load -run TestLoadToolkit -v -timeout 10m .
func TestLoadToolkit(t *testing.T) {
	seconds := 5
	if v, err := strconv.Atoi(os.Getenv("ONBOARD_LOAD_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	stores := []struct {
		name string
		open func(t *testing.T) onboard.Store
	}{
		{"memstore", func(*testing.T) onboard.Store { return memstore.New(memstore.Options{}) }},
		{"postgres", loadPostgres},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			for _, browsers := range []int{1, 4, 16, 64} {
				t.Run("browsers="+strconv.Itoa(browsers), func(t *testing.T) {
					loadLevel(t, st.open(t), browsers, time.Duration(seconds)*time.Second)
				})
			}
		})
	}
}

// handlerTimes records the time spent in the onboard handler, by route.
type handlerTimes struct {
	mu          sync.Mutex
	start, back []time.Duration
}

func (ht *handlerTimes) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		h.ServeHTTP(w, r)
		d := time.Since(t0)
		ht.mu.Lock()
		defer ht.mu.Unlock()
		switch {
		case strings.Contains(r.URL.Path, "/return/"):
			ht.back = append(ht.back, d)
		case strings.HasSuffix(r.URL.Path, "/start"):
			ht.start = append(ht.start, d)
		}
	})
}

// percentiles formats the 50th, 99th and 99.9th percentiles of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	p := func(q float64) time.Duration { return testutil.Quantile(ds, q).Round(time.Microsecond) }
	return fmt.Sprintf("p50 %s, p99 %s, p99.9 %s (%d requests)", p(0.5), p(0.99), p(0.999), len(ds))
}

// loadLevel runs browsers concurrent browsers through whole flows for d.
func loadLevel(t *testing.T, store onboard.Store, browsers int, d time.Duration) {
	prov := fake.New("fake")
	prov.URL = onboardtest.Serve(t, prov)
	ht := &handlerTimes{}
	app := onboardtest.New(t, onboardtest.Options{
		Providers: []onboard.Provider{prov},
		Store:     store,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Wrap:      ht.wrap,
	})
	// One connection pool for every browser, as large as the browsers at
	// once, so that loopback connections are reused rather than opened
	// for each request.
	transport := &http.Transport{MaxIdleConnsPerHost: browsers, MaxIdleConns: 2 * browsers}
	t.Cleanup(transport.CloseIdleConnections)
	const tenants = 50
	var (
		next      atomic.Int64
		failures  atomic.Int64
		firstErr  atomic.Pointer[error]
		wholeMu   sync.Mutex
		wholeFlow []time.Duration
	)
	flow := func(i int) error {
		b := onboardtest.NewBrowser(t)
		b.Client.Transport = transport
		res, err := b.Client.Get(app.URL() + "/login?user=user-" + strconv.Itoa(i) + "&tenant=tenant-" + strconv.Itoa(i%tenants))
		if err != nil {
			return err
		}
		drain(res)
		t0 := time.Now()
		target := app.URL() + "/connect/fake/start?source=Salesforce"
		for _, want := range []int{http.StatusFound, http.StatusFound, http.StatusSeeOther} { // start, hosted page, return
			req, err := http.NewRequest(http.MethodGet, target, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Sec-Fetch-Site", "same-origin") // links, as a browser marks them
			res, err := b.Client.Do(req)
			if err != nil {
				return err
			}
			drain(res)
			if res.StatusCode != want {
				return fmt.Errorf("flow %d: %s answered %d, want %d", i, res.Request.URL.Path, res.StatusCode, want)
			}
			target = res.Header.Get("Location")
		}
		if !strings.Contains(target, "onboard_flow=") {
			return fmt.Errorf("flow %d: the return sent the browser to %q", i, target)
		}
		elapsed := time.Since(t0)
		wholeMu.Lock()
		wholeFlow = append(wholeFlow, elapsed)
		wholeMu.Unlock()
		return nil
	}
	began := time.Now()
	deadline := began.Add(d)
	var wg sync.WaitGroup
	for range browsers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := flow(int(next.Add(1))); err != nil {
					if failures.Add(1) == 1 {
						firstErr.Store(&err)
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	completed := len(wholeFlow)
	stored := 0
	for i := range tenants {
		stored += len(app.Connections("tenant-" + strconv.Itoa(i)))
	}
	t.Logf("%d browsers: %d flows in %s: %.0f flows/s; stored %d connections, %d failures",
		browsers, completed, elapsed.Round(time.Millisecond), float64(completed)/elapsed.Seconds(), stored, failures.Load())
	t.Logf("onboard's own time: start %s", percentiles(ht.start))
	t.Logf("onboard's own time: return %s", percentiles(ht.back))
	t.Logf("whole flow seen by the browser (start, hosted page, return): %s", percentiles(wholeFlow))
	if err := firstErr.Load(); err != nil {
		t.Errorf("first failure: %v", *err)
	}
	require.Zero(t, failures.Load(), "failed flows")
	require.Equal(t, completed, stored, "one connection stored per completed flow")
}

func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

// loadPostgres opens a sqlstore over PostgreSQL with tables of a prefix of
// its own, dropped after the test, and a sized pool.
func loadPostgres(t *testing.T) onboard.Store {
	u := os.Getenv("ONBOARD_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("ONBOARD_TEST_POSTGRES_URL is not set (for example postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	db, err := sql.Open("pgx", u)
	require.NoError(t, err)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	t.Cleanup(func() { db.Close() })
	var raw [4]byte
	_, _ = rand.Read(raw[:])
	prefix := "load" + hex.EncodeToString(raw[:]) + "_"
	t.Cleanup(func() {
		for _, st := range []string{"DROP FUNCTION IF EXISTS " + prefix + "create_flow", "DROP TABLE IF EXISTS " + prefix + "flows",
			"DROP TABLE IF EXISTS " + prefix + "tenant_flows",
			"DROP TABLE IF EXISTS " + prefix + "connections", "DROP TABLE IF EXISTS " + prefix + "schema_migrations"} {
			_, _ = db.Exec(st)
		}
	})
	s, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres, Prefix: prefix})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(context.Background()))
	return s
}
