package providers_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	scsmem "github.com/alexedwards/scs/v2/memstore"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/emulate"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
	"github.com/onboardkit/onboard/store/memstore"
)

// rig is one provider behind the onboard handlers, with its emulator's
// fault knobs and a way to count what the emulator holds.
type rig struct {
	name     string
	provider onboard.Provider
	app      *onboardtest.App
	api      *emulate.API
	store    *onboardtest.FaultyStore
	sessions *flakySessions
	fill     func(b *onboardtest.Browser, hosted string) (string, error)
	held     func() int // connections the emulator holds
	clock    *onboardtest.Clock
}

// flakySessions is scs's in-memory session store whose commit number
// failAt fails.
type flakySessions struct {
	*scsmem.MemStore
	mu      sync.Mutex
	commits int
	failAt  int
}

func (s *flakySessions) Commit(token string, b []byte, expiry time.Time) error {
	s.mu.Lock()
	s.commits++
	fail := s.commits == s.failAt
	s.mu.Unlock()
	if fail {
		return errors.New("session database unreachable")
	}
	return s.MemStore.Commit(token, b, expiry)
}

// failCommit makes the next commit but n fail (1: the next one).
func (s *flakySessions) failCommit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAt = s.commits + n
}

type rigOptions struct {
	timeout  time.Duration // the onboard deadline; default 20 s
	client   time.Duration // the provider's per-request timeout; default 300 ms
	retries  int           // the provider's retries; default none
	perOwner int           // Config.MaxFlowsPerOwner; default onboard's
}

func newRig(t *testing.T, name string, o rigOptions) *rig {
	if o.client == 0 {
		o.client = 300 * time.Millisecond
	}
	if o.retries == 0 {
		o.retries = -1
	}
	r := &rig{name: name, store: onboardtest.NewFaultyStore(memstore.New(memstore.Options{})), clock: onboardtest.NewClock(time.Now()),
		sessions: &flakySessions{MemStore: scsmem.NewWithCleanupInterval(0)}}
	client := &http.Client{Timeout: o.client}
	quiet := slog.New(slog.DiscardHandler)
	var p onboard.Provider
	switch name {
	case "cdata":
		emu := cdatatest.New(cdatatest.Options{AccountID: "oem", PublicKey: &testutil.RSAKey().PublicKey})
		cp, err := cdata.New(cdata.Config{BaseURL: onboardtest.Serve(t, emu) + "/api", AccountID: "oem", PrivateKey: testutil.RSAKey(),
			HTTPClient: client, Retries: o.retries, Logger: quiet})
		require.NoError(t, err)
		p, r.api = cp, emu.API
		r.fill = func(b *onboardtest.Browser, hosted string) (string, error) {
			return cdatatest.Fill(context.Background(), b.Client, hosted, "", "pw")
		}
		r.held = func() int { return len(emu.AllConnections()) }
	case "fivetran":
		emu := fivetrantest.New(fivetrantest.Options{APIKey: "k", APISecret: "s"})
		fp, err := fivetran.New(fivetran.Config{BaseURL: onboardtest.Serve(t, emu), APIKey: "k", APISecret: "s",
			HTTPClient: client, Retries: o.retries, Logger: quiet})
		require.NoError(t, err)
		p, r.api = fp, emu.API
		r.fill = func(b *onboardtest.Browser, hosted string) (string, error) {
			return fivetrantest.Fill(context.Background(), b.Client, hosted, "token")
		}
		r.held = func() int { return len(emu.All()) }
	}
	r.provider = p
	r.app = onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{p}, Store: r.store, SessionStore: r.sessions,
		Config: func(c *onboard.Config) {
			c.Now = r.clock.Now
			if o.timeout != 0 {
				c.Timeout = o.timeout
			}
			if o.perOwner != 0 {
				c.MaxFlowsPerOwner = o.perOwner
			}
		}})
	return r
}

// flow starts and fills a flow and returns the browser's return URL.
func (r *rig) flow(t *testing.T, b *onboardtest.Browser, source string) string {
	back, err := r.fill(b, b.Start(r.app, r.name, "source="+source))
	require.NoError(t, err)
	return back
}

func (r *rig) pending(t *testing.T) int {
	fs, err := r.store.Flows(context.Background(), onboard.FlowQuery{})
	require.NoError(t, err)
	return len(fs)
}

var faults = []struct {
	name  string
	fault emulate.Fault
}{
	{"timeout", emulate.Fault{Delay: 2 * time.Second}},
	{"5xx", emulate.Fault{Status: http.StatusServiceUnavailable}},
	{"429 past the deadline", emulate.Fault{Status: http.StatusTooManyRequests, RetryAfter: 30 * time.Second}},
	{"malformed JSON", emulate.Fault{Body: `{"data": [1, 2`}},
	{"body that never ends", emulate.Fault{Hang: true}},
	{"closed connection", emulate.Fault{Drop: true}},
}

// repeat returns n copies of f: a provider may look a lost create up and
// try once more, and net/http repeats an idempotent request once by
// itself when a reused connection closes.
func repeat(f emulate.Fault, n int) []emulate.Fault {
	out := make([]emulate.Fault, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// TestFaultsAtStart: a provider that fails during a start gives a clear
// 502 page that offers a fresh start, in bounded time; the flow is settled
// and nothing it may have made is left at the provider.
func TestFaultsAtStart(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		for _, tt := range faults {
			t.Run(provider+"/"+tt.name, func(t *testing.T) {
				r := newRig(t, provider, rigOptions{})
				b := r.app.Browser("alice", "acme")
				require.Equal(t, http.StatusSeeOther, b.Get(r.flow(t, b, "Salesforce")).Code) // the tenant's account or group exists now
				held := r.held()
				r.api.Fail(repeat(tt.fault, 6)...)
				start := time.Now()
				res := b.Get(r.app.URL() + "/connect/" + provider + "/start?source=HubSpot")
				r.api.Clear()
				require.Less(t, time.Since(start), 5*time.Second, "bounded")
				require.Equal(t, http.StatusBadGateway, res.Code, res.Body)
				require.Contains(t, res.Body, "did not answer as expected")
				require.Contains(t, res.Body, "Start again")
				require.NotContains(t, res.Body, "eload")
				require.Zero(t, r.pending(t), "the failed start's flow is settled")
				require.Equal(t, held, r.held(), "nothing is left at the provider")
				back := r.flow(t, b, "HubSpot") // the user tries again
				require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
			})
		}
	}
}

// TestFaultsAtReturn: a provider that fails while a return is verified
// leaves the flow pending; a reload completes it.
func TestFaultsAtReturn(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		for _, tt := range faults {
			t.Run(provider+"/"+tt.name, func(t *testing.T) {
				r := newRig(t, provider, rigOptions{})
				b := r.app.Browser("alice", "acme")
				back := r.flow(t, b, "Salesforce")
				r.api.Fail(repeat(tt.fault, 2)...)
				res := b.Get(back)
				r.api.Clear()
				require.Equal(t, http.StatusBadGateway, res.Code, res.Body)
				require.Contains(t, res.Body, "Try again")
				require.Empty(t, r.app.Connections("acme"), "nothing half-done is stored")
				require.Equal(t, 1, r.pending(t), "the flow stays pending")
				res = b.Get(back)
				require.Equal(t, http.StatusSeeOther, res.Code, res.Body)
				c, _ := b.Outcome(r.app, res.Location)
				require.Equal(t, onboard.Connected, c.State)
				require.Len(t, r.app.Connections("acme"), 1)
			})
		}
	}
}

// TestStoreFailsAtCompletion: the database failing as the return is
// stored leaves the flow pending and the provider's connection in place;
// the reload completes it.
func TestStoreFailsAtCompletion(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		t.Run(provider, func(t *testing.T) {
			r := newRig(t, provider, rigOptions{})
			b := r.app.Browser("alice", "acme")
			back := r.flow(t, b, "Salesforce")
			r.store.Fail("CompleteFlow", 1)
			res := b.Get(back)
			require.Equal(t, http.StatusServiceUnavailable, res.Code)
			require.Contains(t, res.Body, "Try again")
			require.Empty(t, r.app.Connections("acme"))
			require.Equal(t, 1, r.pending(t))
			require.Equal(t, 1, r.held(), "the provider's connection is not lost")
			require.Equal(t, http.StatusSeeOther, b.Get(back).Code, "the reload completes it")
			require.Len(t, r.app.Connections("acme"), 1)
		})
	}
}

// TestSessionFailsAfterBegin: the session store fails as the start's
// redirect is written, after the provider made something: one error page,
// and the runner removes what the provider made once the flow expires.
func TestSessionFailsAfterBegin(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		t.Run(provider, func(t *testing.T) {
			r := newRig(t, provider, rigOptions{})
			bob := r.app.Browser("bob", "acme")
			require.Equal(t, http.StatusSeeOther, bob.Get(r.flow(t, bob, "Salesforce")).Code)
			held := r.held()
			// A browser's first start saves its new key with the session
			// as the redirect is written, after the provider made
			// something. That save fails.
			b := r.app.Browser("alice", "acme")
			r.sessions.failCommit(1)
			res := b.Get(r.app.URL() + "/connect/" + provider + "/start?source=HubSpot")
			require.Equal(t, http.StatusServiceUnavailable, res.Code, res.Body)
			require.Equal(t, 1, strings.Count(res.Body, "<html"), res.Body)
			require.Empty(t, res.Location)
			require.Equal(t, 1, r.pending(t))

			r.clock.Add(onboard.DefaultFlowTTL + onboard.DefaultTimeout + time.Second)
			rep, err := r.app.Onboarder.RunOnce(context.Background())
			require.NoError(t, err)
			require.Equal(t, 1, rep.Settled)
			require.Equal(t, held, r.held(), "nothing the failed start made is left at the provider")
		})
	}
}

// TestDeadlineBoundsRetries: a provider that stops answering costs the
// user the onboard deadline, whatever the provider's own timeouts and
// retries.
func TestDeadlineBoundsRetries(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		t.Run(provider, func(t *testing.T) {
			r := newRig(t, provider, rigOptions{timeout: 800 * time.Millisecond, client: 10 * time.Second, retries: 2})
			b := r.app.Browser("alice", "acme")
			require.Equal(t, http.StatusSeeOther, b.Get(r.flow(t, b, "Salesforce")).Code)
			r.api.Fail(repeat(emulate.Fault{Hang: true}, 6)...)
			start := time.Now()
			res := b.Get(r.app.URL() + "/connect/" + provider + "/start?source=HubSpot")
			took := time.Since(start)
			r.api.Clear()
			require.Equal(t, http.StatusBadGateway, res.Code, res.Body)
			require.Less(t, took, 2*time.Second, "the deadline, not three tries of 10 s")
		})
	}
}

// TestRateLimitedCreateIsRetried: a 429 with a short Retry-After on the
// create call is retried within the deadline: the provider did not act
// on it.
func TestRateLimitedCreateIsRetried(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		t.Run(provider, func(t *testing.T) {
			r := newRig(t, provider, rigOptions{retries: 2})
			b := r.app.Browser("alice", "acme")
			require.Equal(t, http.StatusSeeOther, b.Get(r.flow(t, b, "Salesforce")).Code)
			r.api.Fail(emulate.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second})
			back := r.flow(t, b, "HubSpot")
			require.Equal(t, http.StatusSeeOther, b.Get(back).Code)
			require.Len(t, r.app.Connections("acme"), 2)
		})
	}
}

// TestReplacedFlowLeavesNothing: a start past the owner's cap settles the
// oldest flow, whose hosted page the user may still finish, or whose Begin
// may still be running; once that flow has expired, the runner removes
// what it made, and its return is told it expired.
func TestReplacedFlowLeavesNothing(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		t.Run(provider+"/page finished after the flow was replaced", func(t *testing.T) {
			r := newRig(t, provider, rigOptions{perOwner: 1})
			b := r.app.Browser("alice", "acme")
			held := r.held()
			hostedA := b.Start(r.app, provider, "source=Salesforce")
			backB := r.flow(t, b, "HubSpot")     // replaces A
			backA, fillErr := r.fill(b, hostedA) // the user finishes A's page in its tab
			require.Equal(t, http.StatusSeeOther, b.Get(backB).Code)
			held++ // B's connection

			r.clock.Add(onboard.DefaultFlowTTL + time.Second)
			rep, err := r.app.Onboarder.RunOnce(context.Background())
			require.NoError(t, err)
			require.Equal(t, held, r.held(), "what A's page made is removed once A expired (cleaned %d)", rep.Cleaned)
			require.Len(t, r.app.Connections("acme"), 1)
			if fillErr == nil {
				res := b.Get(backA)
				require.Equal(t, http.StatusGone, res.Code, res.Body)
				require.Contains(t, res.Body, "Start again")
			}
		})
		t.Run(provider+"/replaced while its Begin runs", func(t *testing.T) {
			r := newRig(t, provider, rigOptions{perOwner: 1, client: 5 * time.Second})
			b := r.app.Browser("alice", "acme")
			require.Equal(t, http.StatusSeeOther, b.Get(r.flow(t, b, "Salesforce")).Code) // the account or group exists
			held := r.held()
			r.api.Fail(emulate.Fault{Delay: 400 * time.Millisecond}) // A's first call
			done := make(chan int)
			go func() { done <- b.Get(r.app.URL() + "/connect/" + provider + "/start?source=HubSpot").Code }()
			time.Sleep(150 * time.Millisecond)
			require.Equal(t, http.StatusSeeOther, b.Get(r.flow(t, b, "Salesforce")).Code) // B replaces A, then returns
			require.Equal(t, http.StatusFound, <-done)
			held++ // B's connection

			r.clock.Add(onboard.DefaultFlowTTL + time.Second)
			_, err := r.app.Onboarder.RunOnce(context.Background())
			require.NoError(t, err)
			require.Equal(t, held, r.held(), "what A's Begin made after A was replaced is removed once A expired")
		})
	}
}

// TestDeadlineHoldsOnASharedLookup: a start that joins a lookup of the
// tenant's sub-account or group begun by another caller with no deadline
// (a page listing data sources, say) still answers within its own
// deadline.
func TestDeadlineHoldsOnASharedLookup(t *testing.T) {
	for _, provider := range []string{"cdata", "fivetran"} {
		t.Run(provider, func(t *testing.T) {
			r := newRig(t, provider, rigOptions{timeout: 400 * time.Millisecond, client: 10 * time.Second})
			b := r.app.Browser("alice", "acme")
			r.api.SetDelay(1500 * time.Millisecond)
			defer r.api.SetDelay(0)
			lookup := make(chan error, 1)
			go func() {
				var err error
				switch p := r.provider.(type) {
				case *cdata.Provider:
					_, err = p.Sources(context.Background(), "acme")
				case *fivetran.Provider:
					_, err = p.GroupID(context.Background(), "acme")
				}
				lookup <- err
			}()
			time.Sleep(100 * time.Millisecond) // the lookup is under way
			start := time.Now()
			res := b.Get(r.app.URL() + "/connect/" + provider + "/start?source=Salesforce")
			took := time.Since(start)
			require.Equal(t, http.StatusBadGateway, res.Code, res.Body)
			require.Less(t, took, time.Second, "the start's own deadline, not the shared lookup's")
			err := <-lookup // the emulator may refuse the partner's source list; it answered
			require.NotErrorIs(t, err, context.DeadlineExceeded, "the other caller's lookup went on to its answer")
			require.NotErrorIs(t, err, context.Canceled)
		})
	}
}
