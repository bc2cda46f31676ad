//go:build load

package sqlstore_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onboardkit/onboard/internal/apptest"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestLoad drives complete flows concurrently through two app instances
// (start on one, return on the other) with both emulators, PostgreSQL for
// flows, connections and sessions, and reports flows per second and how
// many connections were lost or duplicated. Bounded by ONBOARD_LOAD_FLOWS
// (default 2000) and ONBOARD_LOAD_WORKERS (default 16); loopback only.
//
//	ONBOARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//	  go test -tags load -run TestLoad -v ./store/sqlstore/
func TestLoad(t *testing.T) {
	flows, workers := envInt("ONBOARD_LOAD_FLOWS", 2000), envInt("ONBOARD_LOAD_WORKERS", 16)
	c := newCluster(t, 2)
	const tenants = 20
	durations := make([]time.Duration, flows)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(i int) error {
		a, b := c.instances[i%2], c.instances[(i+1)%2]
		provider := []string{"cdata", "fivetran"}[i%2]
		br := a.Browser(fmt.Sprint("user-", i), fmt.Sprint("tenant-", i%tenants))
		t0 := time.Now()
		hosted := br.Start(a, provider, fmt.Sprintf("source=Salesforce&name=conn-%d", i))
		var back string
		var err error
		if provider == "cdata" {
			back, err = cdatatest.Fill(ctx, br.Client, hosted, "", "pw")
		} else {
			back, err = fivetrantest.Fill(ctx, br.Client, hosted, "token")
		}
		if err != nil {
			return err
		}
		res, err := br.Client.Get(b.URL() + strings.TrimPrefix(back, a.URL()))
		if err != nil {
			return err
		}
		res.Body.Close()
		durations[i] = time.Since(t0)
		if res.StatusCode != http.StatusSeeOther {
			return fmt.Errorf("flow %d: return answered %d", i, res.StatusCode)
		}
		return nil
	}
	start := time.Now()
	failed, first := apptest.Concurrently(flows, workers, func(i int) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return run(i)
	})
	elapsed := time.Since(start)
	if first != nil {
		t.Errorf("first failure: %v", first)
	}

	stored := 0
	for i := range tenants {
		stored += len(c.instances[0].Connections(fmt.Sprint("tenant-", i)))
	}
	atProviders := 0
	for i := range tenants {
		if sub, ok := c.emu.Account(fmt.Sprint("tenant-", i)); ok {
			atProviders += len(c.emu.Connections(sub))
		}
		if g, ok := c.ft.GroupByName(fivetran.GroupName(fmt.Sprint("tenant-", i))); ok {
			atProviders += len(c.ft.Connections(g))
		}
	}
	lost := max(0, atProviders-stored)
	duplicated := max(0, stored-flows)
	slices.Sort(durations)
	t.Logf("%d flows (%d workers, 2 instances, PostgreSQL): %.0f flows/s over %s; per flow p50 %s, p99 %s",
		flows, workers, float64(flows)/elapsed.Seconds(), elapsed.Round(time.Millisecond),
		durations[flows/2].Round(time.Microsecond), durations[flows*99/100].Round(time.Microsecond))
	t.Logf("connections: %d at the providers, %d stored; lost %d, duplicated %d, failed flows %d",
		atProviders, stored, lost, duplicated, failed)
	if lost != 0 || duplicated != 0 || failed != 0 || stored != flows {
		t.Fatalf("want %d connections, none lost or duplicated", flows)
	}
}
