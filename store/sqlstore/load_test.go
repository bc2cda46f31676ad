//go:build load

package sqlstore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestLoad drives complete flows concurrently through two app instances
// (start on one, return on the other) with the fake provider, PostgreSQL
// for flows, connections and sessions, and reports flows per second and
// how many connections were lost or duplicated. Bounded by
// ONBOARD_LOAD_FLOWS (default 2000) and ONBOARD_LOAD_WORKERS (default 16);
// loopback only.
//
//	ONBOARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -tags load -run TestLoad -v ./store/sqlstore/
func TestLoad(t *testing.T) {
	flows, workers := envInt("ONBOARD_LOAD_FLOWS", 2000), envInt("ONBOARD_LOAD_WORKERS", 16)
	c := newCluster(t, 2, nil)
	const tenants = 20
	durations := make([]time.Duration, flows)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(i int) error {
		a, b := c.instances[i%2], c.instances[(i+1)%2]
		br := a.Browser(fmt.Sprint("user-", i), fmt.Sprint("tenant-", i%tenants))
		t0 := time.Now()
		req, err := http.NewRequest(http.MethodGet, a.URL()+"/connect/fake/start?"+url.Values{"source": {"Salesforce"},
			"name": {fmt.Sprint("conn-", i)}}.Encode(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Sec-Fetch-Site", "same-origin") // a link on the app's page
		res, err := br.Client.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusFound {
			return fmt.Errorf("flow %d: start answered %d", i, res.StatusCode)
		}
		// The hosted page, as the browser follows it.
		res, err = br.Client.Get(res.Header.Get("Location"))
		if err != nil {
			return err
		}
		res.Body.Close()
		back := res.Header.Get("Location")
		res, err = br.Client.Get(b.URL() + strings.TrimPrefix(back, a.URL()))
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
	failed, first := testutil.Concurrently(flows, workers, func(i int) error {
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
		for _, conn := range c.instances[0].Connections(fmt.Sprint("tenant-", i)) {
			if conn.State == onboard.Connected {
				stored++
			}
		}
	}
	atProvider := len(c.provider.Connections())
	lost := max(0, atProvider-stored)
	duplicated := max(0, stored-flows)
	slices.Sort(durations)
	t.Logf("%d flows (%d workers, 2 instances, PostgreSQL): %.0f flows/s over %s; per flow p50 %s, p99 %s",
		flows, workers, float64(flows)/elapsed.Seconds(), elapsed.Round(time.Millisecond),
		durations[flows/2].Round(time.Microsecond), durations[flows*99/100].Round(time.Microsecond))
	t.Logf("connections: %d at the provider, %d stored; lost %d, duplicated %d, failed flows %d",
		atProvider, stored, lost, duplicated, failed)
	if lost != 0 || duplicated != 0 || failed != 0 || stored != flows {
		t.Fatalf("want %d connections, none lost or duplicated", flows)
	}
}
