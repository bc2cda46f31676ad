//go:build load

package onboard_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apptest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
	"github.com/onboardkit/onboard/store/sqlstore"
)

// timings records how long the onboard handler took per request kind.
type timings struct {
	mu          sync.Mutex
	start, back []time.Duration
}

func (tm *timings) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		h.ServeHTTP(w, r)
		d := time.Since(t0)
		tm.mu.Lock()
		if strings.Contains(r.URL.Path, "/return/") {
			tm.back = append(tm.back, d)
		} else {
			tm.start = append(tm.start, d)
		}
		tm.mu.Unlock()
	})
}

func pct(ds []time.Duration, p int) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)*p/100].Round(time.Microsecond)
}

// TestLoadToolkit runs complete flows (start, the fake provider's hosted
// page, return) over loopback HTTP with 16 concurrent browsers, on
// memstore and on PostgreSQL (when ONBOARD_TEST_POSTGRES_URL is set), and
// reports flows per second and p50/p99 of the onboard handlers' own time
// (the provider is in-process, so this is the toolkit and its store).
//
//	ONBOARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//	  go test -tags load -run TestLoadToolkit -v .
func TestLoadToolkit(t *testing.T) {
	stores := map[string]func(t *testing.T) onboard.Store{
		"memstore": func(*testing.T) onboard.Store { return memstore.New(memstore.Options{}) },
		"postgres": func(t *testing.T) onboard.Store {
			u := os.Getenv("ONBOARD_TEST_POSTGRES_URL")
			if u == "" {
				t.Skip("ONBOARD_TEST_POSTGRES_URL is not set")
			}
			db, err := sql.Open("pgx", u)
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(32)
			db.SetMaxIdleConns(32)
			t.Cleanup(func() { db.Close() })
			prefix := fmt.Sprintf("load%d_", time.Now().UnixNano()%1e9)
			t.Cleanup(func() {
				for _, tb := range []string{"flows", "connections", "schema_migrations"} {
					db.Exec("DROP TABLE IF EXISTS " + prefix + tb)
				}
			})
			s, err := sqlstore.New(db, sqlstore.Options{Dialect: sqlstore.Postgres, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for _, name := range []string{"memstore", "postgres"} {
		t.Run(name, func(t *testing.T) {
			const flows, workers, tenants = 5000, 16, 50
			store := stores[name](t)
			tm := &timings{}
			p := fake.New("fake")
			p.URL = apptest.Serve(t, p)
			app := apptest.New(t, apptest.Options{Providers: []onboard.Provider{p}, Store: store, Wrap: tm.wrap})
			began := time.Now()
			failed, first := apptest.Concurrently(flows, workers, func(i int) error {
				b := app.Browser(fmt.Sprint("user-", i), fmt.Sprint("tenant-", i%tenants))
				b.Client.CheckRedirect = nil // follow start -> hosted page -> return -> done
				res, err := b.Client.Get(app.URL() + "/connect/fake/start?source=Salesforce")
				if err != nil {
					return err
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK || !strings.Contains(res.Request.URL.RawQuery, "onboard_status=connected") {
					return fmt.Errorf("flow %d ended at %s with %d", i, res.Request.URL, res.StatusCode)
				}
				return nil
			})
			if first != nil {
				t.Errorf("first failure: %v", first)
			}
			elapsed := time.Since(began)
			stored := 0
			for i := range tenants {
				stored += len(app.Connections(fmt.Sprint("tenant-", i)))
			}
			t.Logf("%s: %d complete flows, %d browsers: %.0f flows/s; onboard's own time: start p50 %s p99 %s, return p50 %s p99 %s; stored %d, failed %d",
				name, flows, workers, float64(flows)/elapsed.Seconds(), pct(tm.start, 50), pct(tm.start, 99),
				pct(tm.back, 50), pct(tm.back, 99), stored, failed)
			if failed != 0 || stored != flows {
				t.Fatalf("want %d connections and no failures", flows)
			}
		})
	}
}
