package sqlstore_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/pgxstore"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apptest"
	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
	"github.com/onboardkit/onboard/store/sqlstore"
)

// cluster is several app instances behind one (imaginary) load balancer:
// they share the onboard store and the scs session store in PostgreSQL,
// and each has its own CData provider (own token cache and sub-account
// memo) talking to one emulator.
type cluster struct {
	emu       *cdatatest.Server
	ft        *fivetrantest.Server
	instances []*apptest.App
	store     *sqlstore.Store
}

func newCluster(t testing.TB, n int) *cluster {
	t.Helper()
	ctx := context.Background()
	db := openPostgres(t)
	// Pools sized for the concurrency, as in production: database/sql
	// keeps only 2 idle connections by default, and re-dialing PostgreSQL
	// under load costs more than the queries.
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

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	c := &cluster{emu: cdatatest.New(cdatatest.Options{AccountID: "oem", PublicKey: &key.PublicKey})}
	api := apptest.Serve(t, c.emu) + "/api"
	c.ft = fivetrantest.New(fivetrantest.Options{APIKey: "k", APISecret: "s"})
	ftURL := apptest.Serve(t, c.ft)
	c.store = newStore(t, db, sqlstore.Postgres, func(o *sqlstore.Options) { o.MaxFlowsPerOwner = -1 })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for range n {
		p, err := cdata.New(cdata.Config{BaseURL: api, AccountID: "oem", PrivateKey: key, Logger: quiet,
			HTTPClient: &http.Client{Timeout: 10 * time.Second}})
		require.NoError(t, err)
		f, err := fivetran.New(fivetran.Config{BaseURL: ftURL, APIKey: "k", APISecret: "s", Logger: quiet,
			HTTPClient: &http.Client{Timeout: 10 * time.Second}})
		require.NoError(t, err)
		c.instances = append(c.instances, apptest.New(t, apptest.Options{
			Providers: []onboard.Provider{p, f}, Store: c.store, SessionStore: sessions,
		}))
	}
	return c
}

// startOn starts a CData flow on instance i and returns the return URL,
// pointed at instance j.
func (c *cluster) startOn(t testing.TB, b *apptest.Browser, i, j int) string {
	hosted := b.Start(c.instances[i], "cdata", "source=Salesforce")
	back, err := cdatatest.Fill(context.Background(), b.Client, hosted, "", "pw")
	require.NoError(t, err)
	return c.instances[j].URL() + back[len(c.instances[i].URL()):]
}

func TestManyInstances(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.instances[0], c.instances[1]
	browser := a.Browser("alice", "acme")
	require.Equal(t, "alice|3 apples", browser.Get(b.URL()+"/whoami").Body, "one session across instances")

	t.Run("start on A, return on B", func(t *testing.T) {
		back := c.startOn(t, browser, 0, 1)
		res := browser.Get(back)
		require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
		require.Len(t, a.Connections("acme"), 1)

		t.Run("replay on A is refused", func(t *testing.T) {
			replay := a.URL() + back[len(b.URL()):]
			// From another browser (even of the same user): refused.
			require.Equal(t, http.StatusConflict, a.Browser("alice", "acme").Get(replay).Code)
			// A reload in the browser that finished it: the same result
			// again, nothing stored.
			res := browser.Get(replay)
			require.Equal(t, http.StatusSeeOther, res.Code)
			require.Contains(t, res.Location, "onboard_status=connected")
			require.Len(t, b.Connections("acme"), 1)
		})
	})
	t.Run("concurrent returns on A and B store one connection", func(t *testing.T) {
		for round := range 5 {
			tenant := "tenant-" + string(rune('a'+round))
			br := a.Browser("bob", tenant)
			back := c.startOn(t, br, 0, 1)
			onA := a.URL() + back[len(b.URL()):]
			var wg sync.WaitGroup
			codes := make([]int, 2)
			start := make(chan struct{})
			for k, u := range []string{onA, back} {
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
			// One return completes the flow; the other, in the same browser
			// session, is refused (409) or shown the same result (303).
			require.Contains(t, codes, http.StatusSeeOther, "round %d", round)
			for _, code := range codes {
				require.Contains(t, []int{http.StatusSeeOther, http.StatusConflict}, code, "round %d", round)
			}
			require.Len(t, a.Connections(tenant), 1)
		}
	})
}
