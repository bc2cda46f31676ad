package onboardtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

// Emulators are both providers' emulators, served on loopback until the
// test ends, and onboard providers wired to them.
type Emulators struct {
	CData          *cdata.Provider
	CDataServer    *cdatatest.Server
	CDataURL       string // the emulator's base URL
	Fivetran       *fivetran.Provider
	FivetranServer *fivetrantest.Server
	FivetranURL    string
}

// Emulator credentials the providers of [NewEmulators] use.
const (
	EmulatorAccountID     = "onboardtest-oem"
	EmulatorAPIKey        = "onboardtest-key"
	EmulatorAPISecret     = "onboardtest-secret"
	EmulatorWebhookSecret = "onboardtest-webhook-secret"
)

// NewEmulators starts both emulators and builds the providers: "cdata"
// and "fivetran", logging to log (nil: nowhere). The Fivetran provider
// verifies webhooks with EmulatorWebhookSecret; register the app's
// webhook URL with Fivetran.RegisterWebhook once the app serves it.
func NewEmulators(t testing.TB, log *slog.Logger) *Emulators {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := testutil.RSAKey() // one per test binary: making one takes a while
	e := &Emulators{
		CDataServer:    cdatatest.New(cdatatest.Options{AccountID: EmulatorAccountID, PublicKey: &key.PublicKey}),
		FivetranServer: fivetrantest.New(fivetrantest.Options{APIKey: EmulatorAPIKey, APISecret: EmulatorAPISecret}),
	}
	e.CDataURL, e.FivetranURL = Serve(t, e.CDataServer), Serve(t, e.FivetranServer)
	var err error
	e.CData, err = cdata.New(cdata.Config{AccountID: EmulatorAccountID, PrivateKey: key, BaseURL: e.CDataURL + "/api", Logger: log})
	require.NoError(t, err)
	e.Fivetran, err = fivetran.New(fivetran.Config{APIKey: EmulatorAPIKey, APISecret: EmulatorAPISecret,
		BaseURL: e.FivetranURL, WebhookSecret: EmulatorWebhookSecret, Logger: log})
	require.NoError(t, err)
	return e
}

// Providers returns the CData and the Fivetran provider, for
// onboard.Config.Providers.
func (e *Emulators) Providers() []onboard.Provider { return []onboard.Provider{e.CData, e.Fivetran} }

// Finish plays the user on the hosted page at hostedURL (where the app's
// start redirected browser b) and returns the URL the provider sends the
// browser back to. Connected saves working credentials; Failed saves
// credentials whose test fails; Abandoned leaves without saving.
func (e *Emulators) Finish(ctx context.Context, b *Browser, hostedURL string, outcome onboard.State) (string, error) {
	credential := map[onboard.State]string{onboard.Connected: "pw", onboard.Failed: "fail", onboard.Abandoned: ""}
	cred, ok := credential[outcome]
	if !ok {
		return "", fmt.Errorf("onboardtest: cannot finish a page as %q", outcome)
	}
	switch {
	case strings.HasPrefix(hostedURL, e.CDataURL+"/"):
		return cdatatest.Fill(ctx, b.Client, hostedURL, "", cred)
	case strings.HasPrefix(hostedURL, e.FivetranURL+"/"):
		return fivetrantest.Fill(ctx, b.Client, hostedURL, cred)
	}
	return "", fmt.Errorf("onboardtest: %q is not a hosted page of the emulators", hostedURL)
}

// FaultyStore is a Store whose calls can be made to fail, as a database
// that drops its connection does.
type FaultyStore struct {
	onboard.Store
	mu   sync.Mutex
	fail map[string]int // method name -> failures left
	wait map[string]time.Duration
}

// ErrStoreDown is what a FaultyStore's failing calls return.
var ErrStoreDown = errors.New("onboardtest: database connection lost")

// NewFaultyStore wraps s.
func NewFaultyStore(s onboard.Store) *FaultyStore {
	return &FaultyStore{Store: s, fail: map[string]int{}, wait: map[string]time.Duration{}}
}

// Fail makes the next n calls of the Store method named (like
// "CompleteFlow") fail with ErrStoreDown.
func (s *FaultyStore) Fail(method string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[method] += n
}

// Hang makes every call of the method wait d, or until its context ends,
// before it goes on, as a database that stops answering (0 to stop).
func (s *FaultyStore) Hang(method string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wait[method] = d
}

func (s *FaultyStore) check(ctx context.Context, method string) error {
	s.mu.Lock()
	fail := s.fail[method] > 0
	if fail {
		s.fail[method]--
	}
	wait := s.wait[method]
	s.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	if fail {
		return ErrStoreDown
	}
	return nil
}

// CreateFlow fails or calls the Store.
func (s *FaultyStore) CreateFlow(ctx context.Context, f onboard.Flow, lim onboard.Limits) error {
	if err := s.check(ctx, "CreateFlow"); err != nil {
		return err
	}
	return s.Store.CreateFlow(ctx, f, lim)
}

// Flow fails or calls the Store.
func (s *FaultyStore) Flow(ctx context.Context, id string) (onboard.Flow, bool, error) {
	if err := s.check(ctx, "Flow"); err != nil {
		return onboard.Flow{}, false, err
	}
	return s.Store.Flow(ctx, id)
}

// Flows fails or calls the Store.
func (s *FaultyStore) Flows(ctx context.Context, q onboard.FlowQuery) ([]onboard.Flow, error) {
	if err := s.check(ctx, "Flows"); err != nil {
		return nil, err
	}
	return s.Store.Flows(ctx, q)
}

// CompleteFlow fails or calls the Store.
func (s *FaultyStore) CompleteFlow(ctx context.Context, id string, c onboard.Connection, cleanup bool) error {
	if err := s.check(ctx, "CompleteFlow"); err != nil {
		return err
	}
	return s.Store.CompleteFlow(ctx, id, c, cleanup)
}

// SetCleanup fails or calls the Store.
func (s *FaultyStore) SetCleanup(ctx context.Context, id string, cleanup bool) error {
	if err := s.check(ctx, "SetCleanup"); err != nil {
		return err
	}
	return s.Store.SetCleanup(ctx, id, cleanup)
}

// Prune fails or calls the Store.
func (s *FaultyStore) Prune(ctx context.Context, t time.Time) (int, error) {
	if err := s.check(ctx, "Prune"); err != nil {
		return 0, err
	}
	return s.Store.Prune(ctx, t)
}

// SaveConnection fails or calls the Store.
func (s *FaultyStore) SaveConnection(ctx context.Context, c onboard.Connection) error {
	if err := s.check(ctx, "SaveConnection"); err != nil {
		return err
	}
	return s.Store.SaveConnection(ctx, c)
}

// SwapConnection fails or calls the Store.
func (s *FaultyStore) SwapConnection(ctx context.Context, old, c onboard.Connection) (bool, error) {
	if err := s.check(ctx, "SwapConnection"); err != nil {
		return false, err
	}
	return s.Store.SwapConnection(ctx, old, c)
}

// FindConnection fails or calls the Store.
func (s *FaultyStore) FindConnection(ctx context.Context, provider, id string) (onboard.Connection, bool, error) {
	if err := s.check(ctx, "FindConnection"); err != nil {
		return onboard.Connection{}, false, err
	}
	return s.Store.FindConnection(ctx, provider, id)
}

// Connections fails or calls the Store.
func (s *FaultyStore) Connections(ctx context.Context, q onboard.ConnectionQuery) ([]onboard.Connection, error) {
	if err := s.check(ctx, "Connections"); err != nil {
		return nil, err
	}
	return s.Store.Connections(ctx, q)
}

// DeleteConnection fails or calls the Store.
func (s *FaultyStore) DeleteConnection(ctx context.Context, provider, id string) (bool, error) {
	if err := s.check(ctx, "DeleteConnection"); err != nil {
		return false, err
	}
	return s.Store.DeleteConnection(ctx, provider, id)
}
