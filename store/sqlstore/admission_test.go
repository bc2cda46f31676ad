package sqlstore_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
)

// TestConcurrentStartsThroughTheHandlers: 60 starts at once against a cap
// of 20, on SQLite and PostgreSQL, through the real handlers. One owner:
// never more than 20 pending flows, and every start admitted (settling an
// older one). Sixty users of one tenant:
// exactly 20 admitted, 40 refused before the provider is asked.
func TestConcurrentStartsThroughTheHandlers(t *testing.T) {
	for name, open := range dialects() {
		t.Run(name+"/one owner", func(t *testing.T) {
			db, d := open(t)
			p := fake.New("fake")
			p.URL = onboardtest.Serve(t, p)
			app := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{p}, Store: newStore(t, db, d),
				Config: func(c *onboard.Config) { c.MaxFlowsPerOwner = 20 }})
			b := app.Browser("alice", "acme")
			codes := starts(t, 60, func(int) *onboardtest.Browser { return b }, app)
			require.Equal(t, map[int]int{http.StatusFound: 60}, codes, "no start of an owner at the cap is refused")
			fs, err := app.Store.Flows(t.Context(), onboard.FlowQuery{Owner: onboard.Owner{Tenant: "acme", User: "alice"}})
			require.NoError(t, err)
			require.Len(t, fs, 20)
			require.Equal(t, codes[http.StatusFound], p.Calls().Begin, "only admitted starts reach the provider")
		})
		t.Run(name+"/one tenant", func(t *testing.T) {
			db, d := open(t)
			p := fake.New("fake")
			p.URL = onboardtest.Serve(t, p)
			app := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{p}, Store: newStore(t, db, d),
				Config: func(c *onboard.Config) { c.MaxFlowsPerOwner, c.MaxFlowsPerTenant = 5, 20 }})
			browsers := make([]*onboardtest.Browser, 60)
			for i := range browsers {
				browsers[i] = app.Browser(fmt.Sprint("user", i), "acme")
			}
			codes := starts(t, 60, func(i int) *onboardtest.Browser { return browsers[i] }, app)
			require.Equal(t, map[int]int{http.StatusFound: 20, http.StatusTooManyRequests: 40}, codes)
			require.Equal(t, 20, p.Calls().Begin)
		})
	}
}

// starts sends n starts at once, 16 at a time, and counts the answers by
// status.
func starts(t *testing.T, n int, browser func(i int) *onboardtest.Browser, app *onboardtest.App) map[int]int {
	codes, err := testutil.GetAll(n, func(i int) *http.Client { return browser(i).Client }, app.URL()+"/connect/fake/start?source=Salesforce")
	require.NoError(t, err)
	return codes
}
