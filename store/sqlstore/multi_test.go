package sqlstore_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/pgxstore"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/sqlstore"
)

// cluster is several app instances behind one (imaginary) load balancer:
// they share the onboard store and the scs session store in PostgreSQL,
// and one provider.
type cluster struct {
	provider  *fake.Provider
	instances []*onboardtest.App
	store     *sqlstore.Store
}

func newCluster(t testing.TB, n int, config func(*onboard.Config)) *cluster {
	t.Helper()
	ctx := context.Background()
	db := openPostgres(t)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	pcfg, err := pgxpool.ParseConfig(postgresURL(t))
	require.NoError(t, err)
	pcfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS sessions (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL);
		CREATE INDEX IF NOT EXISTS sessions_expiry_idx ON sessions (expiry)`)
	require.NoError(t, err)
	sessions := pgxstore.NewWithCleanupInterval(pool, 0)

	c := &cluster{provider: fake.New("fake"), store: newStore(t, db, sqlstore.Postgres)}
	c.provider.URL = onboardtest.Serve(t, c.provider)
	for range n {
		c.instances = append(c.instances, onboardtest.New(t, onboardtest.Options{
			Providers: []onboard.Provider{c.provider}, Store: c.store, SessionStore: sessions, Config: config,
		}))
	}
	return c
}

// startOn starts a flow on instance i, plays the user on the hosted page
// and returns the return URL, pointed at instance j.
func (c *cluster) startOn(t testing.TB, b *onboardtest.Browser, i, j int) string {
	t.Helper()
	hosted := b.Start(c.instances[i], "fake", "source=Salesforce")
	u, err := url.Parse(hosted)
	require.NoError(t, err)
	back, err := c.provider.Finish(u.Query().Get("flow"), onboard.Connected)
	require.NoError(t, err)
	return c.instances[j].URL() + back[len(c.instances[i].URL()):]
}

// on points a URL of one instance at another.
func on(a *onboardtest.App, u string, from *onboardtest.App) string {
	return a.URL() + u[len(from.URL()):]
}

func TestManyInstances(t *testing.T) {
	c := newCluster(t, 2, nil)
	a, b := c.instances[0], c.instances[1]
	browser := a.Browser("alice", "acme")
	require.Equal(t, "alice|3 apples", browser.Get(b.URL()+"/whoami").Body, "one session across instances")

	t.Run("start on A, return on B", func(t *testing.T) {
		back := c.startOn(t, browser, 0, 1)
		res := browser.Get(back)
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
		cs := a.Connections("acme")
		require.Len(t, cs, 1)
		require.Equal(t, onboard.Connected, cs[0].State)

		// A reload on A in the browser that finished it: the same result,
		// nothing stored again.
		res = browser.Get(on(a, back, b))
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
		require.Len(t, b.Connections("acme"), 1)

		// The return in another browser, even of the same user, on A:
		// refused, and what the flow made is quarantined everywhere.
		res = a.Browser("alice", "acme").Get(on(a, back, b))
		require.Equal(t, http.StatusForbidden, res.Code, res.Body)
		cs = b.Connections("acme")
		require.Len(t, cs, 1)
		require.Equal(t, onboard.Revoked, cs[0].State)
		_, held := c.provider.Connection(cs[0].ID)
		require.False(t, held, "the provider no longer holds the quarantined connection")
	})

	t.Run("concurrent returns on A and B store one connection", func(t *testing.T) {
		for round := range 5 {
			tenant := "tenant-" + string(rune('a'+round))
			br := a.Browser("bob", tenant)
			back := c.startOn(t, br, 0, 1)
			var wg sync.WaitGroup
			codes := make([]int, 2)
			start := make(chan struct{})
			for k, u := range []string{on(a, back, b), back} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					res, err := br.Client.Get(u)
					if err == nil {
						res.Body.Close()
						codes[k] = res.StatusCode
					}
				}()
			}
			close(start)
			wg.Wait()
			// One return completes the flow; the other is shown its result.
			require.Equal(t, []int{http.StatusSeeOther, http.StatusSeeOther}, codes, "round %d", round)
			cs := a.Connections(tenant)
			require.Len(t, cs, 1)
			require.Equal(t, onboard.Connected, cs[0].State)
		}
	})
}

// TestRunnersOnManyInstances lets flows expire (a real, short lifetime)
// and runs the runner on every instance at once: each flow is settled as
// abandoned exactly once, and what it made is removed (Cancel is
// idempotent: a runner that finds a settled flow still marked for cleanup
// may cancel it again).
func TestRunnersOnManyInstances(t *testing.T) {
	const ttl = 500 * time.Millisecond
	c := newCluster(t, 3, func(cfg *onboard.Config) { cfg.FlowTTL, cfg.Timeout = ttl, time.Second })
	const flows = 12
	var ids []string
	for i := range flows {
		br := c.instances[i%3].Browser("carol", "globex")
		hosted := br.Start(c.instances[i%3], "fake", "source=Salesforce")
		u, err := url.Parse(hosted)
		require.NoError(t, err)
		ids = append(ids, u.Query().Get("flow"))
		if i%2 == 0 { // the user made a connection, and walked away
			_, err := c.provider.Finish(ids[i], onboard.Connected)
			require.NoError(t, err)
		}
	}
	require.Len(t, c.provider.Connections(), flows/2)
	time.Sleep(ttl + time.Second + 100*time.Millisecond) // the lifetime, and Timeout after it

	reports := make([]onboard.Report, len(c.instances))
	errs := make([]error, len(c.instances))
	var wg sync.WaitGroup
	for i, app := range c.instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i], errs[i] = app.Onboarder.RunOnce(context.Background())
		}()
	}
	wg.Wait()
	settled := 0
	for i := range reports {
		require.NoError(t, errs[i])
		settled += reports[i].Settled
	}
	require.Equal(t, flows, settled, "each expired flow is settled once: %+v", reports)
	require.GreaterOrEqual(t, c.provider.Calls().Cancel, flows, "what each flow made is removed")
	require.Empty(t, c.provider.Connections())
	for _, id := range ids {
		f, found, err := c.store.Flow(context.Background(), id)
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, onboard.FlowDone, f.State)
		require.Equal(t, onboard.Abandoned, f.Outcome)
		require.False(t, f.Cleanup, "cleanup done")
	}
	require.Empty(t, c.instances[0].Connections("globex"), "the runner attaches nothing")
}
