// Package onboard sends the users of a Go web app through a data provider's
// hosted "add a connection" page and brings them back, safely.
//
// An [Onboarder] is built from a [Config] and mounted as an [http.Handler]
// (see [Onboarder.Handler]). It serves these requests under its URL:
//
//	GET|POST {prefix}/{provider}/start          admit a flow, redirect to the provider (or answer JSON)
//	GET      {prefix}/{provider}/return/{flow}  verify the return, store the connection
//	GET      {prefix}/{provider}/popup/{flow}   the same, finishing in a popup window
//	GET      {prefix}/{provider}/status/{flow}  the flow's verified state, as JSON
//	POST     {prefix}/{provider}/webhook        provider events (providers that have them)
//
// Every rule has one home. The core alone judges time with Config.Now:
// a flow is valid up to its ExpiresAt. Admission (caps per owner and per
// tenant) is decided by the [Store] atomically before the provider is
// asked for anything. A flow belongs to the browser that started it: the
// flow keeps a digest of that browser's secret key ([Sessions]), and a
// provider's result counts only when it comes back through that browser.
// A return of the flow in any other browser quarantines what the flow
// made. Each sentinel error carries its own status and safe message.
//
// Providers live in providers/..., stores in store/..., and the session
// glue in middleware.
package onboard

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Owner is who a flow and its connection belong to: a user of a tenant.
// Connections belong to the tenant; a flow belongs to the user who started
// it.
type Owner struct {
	Tenant string
	User   string
}

// IsZero reports whether o identifies nobody.
func (o Owner) IsZero() bool { return o.Tenant == "" || o.User == "" }

// FlowState is where a flow is in its life: created pending, it moves to
// done exactly once.
type FlowState string

// Flow states.
const (
	FlowPending FlowState = "pending"
	FlowDone    FlowState = "done"
)

// State is the outcome of a flow and the state of a stored connection.
type State string

// Connection states.
const (
	// Connected: the provider holds a working connection.
	Connected State = "connected"
	// Failed: the connection does not work (its test failed, its
	// credentials broke). The user can reconnect.
	Failed State = "failed"
	// Abandoned: the setup was not finished; nothing was kept.
	Abandoned State = "abandoned"
	// Revoked: the flow came back in a browser that did not start it (or,
	// pending, in its browser signed in as another owner or signed out),
	// so what it made was deleted or disabled at the provider and must not
	// be used.
	Revoked State = "revoked"
)

// Flow is one trip of one browser through a provider's hosted page.
type Flow struct {
	// ID is 32 random bytes, base64url without padding. It travels in the
	// path of the return URL.
	ID       string
	Owner    Owner
	Provider string
	// Source is the data source the user asked for ("Salesforce"), as
	// typed.
	Source string
	// Name is the connection name the user asked for, as typed.
	Name string
	// ConnectionID is the provider's id of the connection this flow works
	// on: set at start for a reconnect, and at completion for a new
	// connection.
	ConnectionID string
	// Reconnect is true when the flow edits an existing connection.
	Reconnect bool
	// ReturnTo is the same-origin path the app wants to show afterwards.
	ReturnTo string
	// Browser is a digest of the secret key of the browser that started
	// the flow (see [Sessions]).
	Browser string
	State   FlowState
	// Outcome and Message are the flow's result once it is done.
	Outcome State
	Message string
	// Cleanup is set on a done flow while what it made at the provider
	// still has to be removed ([Provider.Cancel]): after a failed attempt
	// (the runner retries it), and on an abandoned flow until it expires
	// (its hosted page may still make something; the runner removes that
	// then).
	Cleanup   bool
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Expired reports whether the flow is past its lifetime at now. A flow is
// valid up to its ExpiresAt exactly.
func (f Flow) Expired(now time.Time) bool { return now.After(f.ExpiresAt) }

// Connection is a connection at a provider, as the app knows it.
type Connection struct {
	// Provider is the name of the provider that holds the connection.
	Provider string
	// ID is the provider's id of the connection.
	ID string
	// Owner is the tenant the connection belongs to and the user who made
	// it. A zero Owner marks a detached record: provider events that
	// arrived before the connection's flow completed (see [Store]).
	Owner Owner
	// Name is the connection's name: as the user gave it on the
	// provider's page (CData), or the start's name parameter. It may be
	// empty (a Fivetran connection has no name of its own): show Source
	// then.
	Name string
	// Source is the data source (for example "Salesforce"): as the
	// provider reports it, or as the start named it.
	Source string
	// State is the connection's state: connected or failed, or the
	// outcome of a flow that made none (abandoned, revoked).
	State State
	// Message is a human-readable detail from the provider (why a test
	// failed). Safe to show to the owner.
	Message string
	// FlowID is the flow that made (or last reconnected) the connection.
	FlowID string
	// CreatedAt and UpdatedAt are when the connection was first stored
	// and last changed, by the app's clock (Config.Now).
	CreatedAt time.Time
	UpdatedAt time.Time
	// EventAt is the provider's own time of the last event applied to the
	// connection; zero before any. Events are ordered by it, never by the
	// app's clock.
	EventAt time.Time
	// CheckedAt is when the runner last asked the provider for the
	// connection's state ([Refresher]).
	CheckedAt time.Time
}

// Provider starts, verifies and undoes flows with one data provider's API.
//
// The flow is stored before Begin is called, and nothing Begin learns is
// stored with it: Complete, Cancel and Delete must find what they need
// from the flow's fields (its ID, owner, source and connection id) or
// from the provider's own API.
//
// Implementations must be safe for concurrent use, and must honour ctx:
// the handlers give every user-facing request one deadline.
type Provider interface {
	// Name is the provider's path segment and stored name: "cdata".
	Name() string
	// Begin asks the provider for the hosted page of flow f and returns
	// its URL. The provider sends the browser back to returnURL.
	Begin(ctx context.Context, f Flow, returnURL string) (redirectURL string, err error)
	// Complete verifies a return of f with the provider's API and returns
	// the outcome. It must never trust ret alone: it returns an error
	// wrapping ErrForged when ret does not match what the provider holds
	// for f. A returned connection with an ID is attached to the flow's
	// tenant; one without an ID attaches nothing, and what the flow made
	// is then removed with Cancel.
	Complete(ctx context.Context, f Flow, ret url.Values) (Connection, error)
	// Cancel removes what flow f made at the provider: for a new
	// connection, whatever connection the flow created or began to
	// create; for a reconnect (called only to quarantine it), it disables
	// the connection so that it no longer uses what was entered, for good:
	// a connection that the owner's next reconnect could enable again
	// without new credentials must be deleted instead (both providers of
	// this module delete it). It is idempotent: nothing to remove is not
	// an error.
	Cancel(ctx context.Context, f Flow) error
	// Delete deletes the connection at the provider. A connection the
	// provider no longer has is not an error.
	Delete(ctx context.Context, c Connection) error
}

// WebhookReceiver is a Provider that receives the provider's event
// deliveries at POST {prefix}/{provider}/webhook.
type WebhookReceiver interface {
	// Webhook verifies one delivery (its signature) and returns the events
	// it carries. The body is already limited in size. An error wrapping
	// ErrWebhook answers 401; other errors 400.
	Webhook(r *http.Request) ([]Event, error)
}

// Refresher is a Provider that can ask its API for the current state of
// stored connections. The runner ([Onboarder.Run]) calls it for the
// connections not checked for Config.RefreshEvery, a tenant at a time.
type Refresher interface {
	// Refresh returns an event for each of the tenant's connections whose
	// state at the provider differs from cs (Deleted for one the provider
	// no longer has). Events without a provider time have a zero At.
	Refresh(ctx context.Context, tenant string, cs []Connection) ([]Event, error)
}

// Event is a change of a connection reported by a provider.
type Event struct {
	// ConnectionID is the provider's id of the connection.
	ConnectionID string
	// State is the connection's new state; empty when only Deleted.
	State State
	// Deleted reports that the connection was deleted at the provider.
	Deleted bool
	// Message is a human-readable detail (why a sync failed).
	Message string
	// At is the provider's own time of the event. Events of a connection
	// are ordered by it; of two at the same time, a failure counts after
	// a success and a deletion after both. A zero At is a state observed
	// now by [Refresher]: it applies whenever it differs from the stored
	// state.
	At time.Time
}

// Limits are the admission caps a start must pass; see [Store].
type Limits struct {
	// PerOwner caps one owner's unexpired pending flows.
	PerOwner int
	// PerTenant caps one tenant's unexpired pending flows.
	PerTenant int
}

// FlowQuery selects flows for [Store.Flows].
type FlowQuery struct {
	// Owner, when not zero, selects that owner's flows only.
	Owner Owner
	// Cleanup selects done flows whose Cleanup is set, instead of pending
	// flows.
	Cleanup bool
	// ExpiredBefore, when not zero, selects flows whose ExpiresAt is
	// before it.
	ExpiredBefore time.Time
	// Limit is the most flows returned.
	Limit int
}

// ConnectionQuery selects connections for [Store.Connections]. Detached
// records (a zero Owner) are never selected.
type ConnectionQuery struct {
	// Tenant selects that tenant's connections, newest first.
	Tenant string
	// Provider, when not empty, selects that provider's connections only.
	Provider string
	// CheckedBefore, when not zero, selects the connections of every
	// tenant (Tenant is then ignored) whose CheckedAt is before it, least
	// recently checked first.
	CheckedBefore time.Time
	// Offset skips that many connections; Limit is the most returned (0:
	// no limit).
	Offset, Limit int
}

// Store keeps flows and connections. It keeps data and makes admission
// and completion atomic; it judges no time by a clock of its own: every
// time it compares with is passed in. Implementations must be safe for
// concurrent use, including by several app instances sharing one
// database. Run store/storetest against every implementation.
//
// Methods that find one thing return found=false and a nil error when it
// is not there.
type Store interface {
	// CreateFlow saves a new pending flow if admission allows it, in one
	// atomic step: the flows counted are the pending flows unexpired at
	// f.CreatedAt. With the owner at lim.PerOwner it saves nothing and
	// returns an error wrapping ErrOwnerLimit (also when the tenant is at
	// its cap too: settling one of the owner's flows frees a place under
	// both); with only the tenant at lim.PerTenant (or a store-wide bound
	// reached), one wrapping ErrTooManyFlows. A duplicate ID is an error.
	CreateFlow(ctx context.Context, f Flow, lim Limits) error
	// Flow returns the flow with this id.
	Flow(ctx context.Context, id string) (f Flow, found bool, err error)
	// Flows returns up to q.Limit flows selected by q (all of them for a
	// Limit of 0), oldest CreatedAt first.
	Flows(ctx context.Context, q FlowQuery) ([]Flow, error)
	// CompleteFlow moves a pending flow to done, in one atomic step: the
	// flow's Outcome and Message become c.State and c.Message, its
	// ConnectionID becomes c.ID when that is not empty, its Cleanup
	// becomes cleanup, and c is saved as with SaveConnection when c.ID is
	// not empty, keeping the later EventAt of c and a detached record of
	// the same connection. Of any number of concurrent calls for one flow
	// exactly one succeeds; the others return ErrFlowUsed. An unknown
	// flow is ErrUnknownFlow. When c.ID names a stored connection that is
	// Revoked, it changes nothing and returns ErrRevoked, in the same
	// atomic step: a quarantined connection is never connected again,
	// whichever of a quarantine and a completion comes first.
	CompleteFlow(ctx context.Context, flowID string, c Connection, cleanup bool) error
	// SetCleanup sets or clears a done flow's Cleanup; on a pending flow
	// it is an error and changes nothing.
	SetCleanup(ctx context.Context, flowID string, cleanup bool) error
	// Prune deletes done flows that expired before t and whose Cleanup is
	// clear, and detached connection records last updated before t. It
	// returns how many flows and records it deleted.
	Prune(ctx context.Context, t time.Time) (int, error)
	// SaveConnection inserts or replaces a connection, keyed by Provider
	// and ID; a replaced connection keeps the CreatedAt it had. The core
	// writes connections with CompleteFlow and SwapConnection; this is for
	// an app's own imports and for tests.
	SaveConnection(ctx context.Context, c Connection) error
	// SwapConnection replaces the stored connection old with c (of the
	// same Provider and ID) in one atomic step, only while the stored one
	// still equals old in every field (times compared with Equal); with a
	// zero old, it inserts c only while no connection with c's Provider
	// and ID is stored. It reports whether it saved c; when the stored
	// connection changed or went away since old was read, it changes
	// nothing and returns false. A replaced connection keeps its CreatedAt.
	// old must be a connection as this store returned it (a store may keep
	// times at a coarser precision than time.Time). It is how a connection
	// read before a slow step (a provider's answer) is written back
	// without undoing a concurrent change.
	SwapConnection(ctx context.Context, old, c Connection) (bool, error)
	// FindConnection returns the connection with this provider and id,
	// detached or not, whatever its tenant.
	FindConnection(ctx context.Context, provider, id string) (c Connection, found bool, err error)
	// Connections returns the connections selected by q.
	Connections(ctx context.Context, q ConnectionQuery) ([]Connection, error)
	// DeleteConnection removes a connection and reports whether it was
	// there; deleting one that is not there is not an error.
	DeleteConnection(ctx context.Context, provider, id string) (deleted bool, err error)
}

// Sessions identifies the browser a request comes from. The middleware
// package implements it over scs.
type Sessions interface {
	// BrowserKey returns a secret value (at least 32 bytes of
	// entropy) that identifies the browser of the request context ctx,
	// kept in the browser's session. With create, a browser that has none
	// is given one, saved with the browser's session (at the latest when
	// the request's answer is written); without create, it returns "" for
	// such a browser. It must leave the app's own session data untouched.
	BrowserKey(ctx context.Context, create bool) (string, error)
}

// sessionEnder is what a [Sessions] may also implement (middleware.SCS
// does): SessionEnd returns when the request's session ends if its
// browser makes no request meanwhile, judged at now, or the zero time when
// it cannot tell. A start keeps its flow within it (see Config.FlowTTL).
type sessionEnder interface {
	SessionEnd(ctx context.Context, now time.Time) time.Time
}

// Hooks are called after an outcome, an event or a deletion is stored.
// They run synchronously in the request; keep them fast. Nil hooks are
// skipped. A return's completion that the store stored but whose answer
// was lost (a connection that dropped after COMMIT) is found by reading
// the flow and its connection again, and fires its hook then; when that
// read fails too, or the outcome attached no connection (abandoned,
// revoked), the outcome stays stored without its hook.
type Hooks struct {
	// Connected is called when a flow stored a working connection, and
	// when a stored connection works again (a webhook or a refresh).
	Connected func(ctx context.Context, c Connection)
	// Failed is called when a flow's connection did not pass the
	// provider's test, and when a stored connection stops working.
	Failed func(ctx context.Context, c Connection)
	// Abandoned is called when a flow ended without a connection: the
	// user left the provider's page, or never came back before the flow
	// expired.
	Abandoned func(ctx context.Context, c Connection)
	// Revoked is called when a flow came back in another browser (or,
	// pending, in its browser signed in as another owner or signed out)
	// and what it made was quarantined: a security event.
	Revoked func(ctx context.Context, c Connection)
	// Deleted is called when a connection was deleted: by the app
	// ([Onboarder.DeleteConnection]) or at the provider (a webhook or a
	// refresh).
	Deleted func(ctx context.Context, c Connection)
}

func (h Hooks) fire(ctx context.Context, c Connection, deleted bool) {
	var fn func(context.Context, Connection)
	switch {
	case deleted:
		fn = h.Deleted
	case c.State == Connected:
		fn = h.Connected
	case c.State == Failed:
		fn = h.Failed
	case c.State == Abandoned:
		fn = h.Abandoned
	case c.State == Revoked:
		fn = h.Revoked
	}
	if fn != nil {
		fn(ctx, c)
	}
}

// Defaults for [Config].
const (
	DefaultFlowTTL           = 30 * time.Minute
	DefaultTimeout           = 20 * time.Second
	DefaultMaxFlowsPerOwner  = 50
	DefaultMaxFlowsPerTenant = 500
	DefaultRetain            = 24 * time.Hour
	DefaultRefreshEvery      = time.Hour
)

// Config builds an [Onboarder]. URL, Providers, Store, Sessions and Owner
// are required.
type Config struct {
	// URL is the absolute URL where Handler is mounted, as browsers reach
	// it: "https://app.example.com/connect". Return URLs are built from it.
	URL string
	// Providers are the providers to serve, by Name.
	Providers []Provider
	// Store keeps flows and connections (store/memstore, store/sqlstore).
	Store Store
	// Sessions identifies browsers (middleware.NewSCS).
	Sessions Sessions
	// Owner identifies the signed-in owner of a request. It returns an
	// error (or a zero Owner) when nobody is signed in.
	Owner func(r *http.Request) (Owner, error)
	// FlowTTL is how long a started flow may take. Default 30 minutes.
	// Keep it longer than the providers' hosted pages stay usable (a few
	// minutes): what a page makes after its flow expired is removed when
	// its browser comes back, but not when nobody does. A flow never
	// outlives the browser's session, which its return needs: when the
	// Sessions tell when a session ends without a request (middleware.SCS:
	// scs's Lifetime and IdleTimeout), a flow closes by then, and a start
	// that would leave it less than minFlowTime (5 minutes, or FlowTTL
	// when shorter) is refused with ErrSessionEnding: sign in again. New
	// refuses sessions that never last that long.
	FlowTTL time.Duration
	// MaxFlowsPerOwner caps one owner's pending flows. A start beyond it
	// settles the owner's oldest pending flow as abandoned (removing what
	// it made at the provider), so a user who walked away from earlier
	// setups is never locked out. Default 50.
	MaxFlowsPerOwner int
	// MaxFlowsPerTenant caps one tenant's pending flows. A start beyond it
	// is refused with 429 before the provider is asked for anything, so
	// one tenant cannot crowd out another. Default 500.
	MaxFlowsPerTenant int
	// Timeout is the one deadline of a user-facing request: every provider
	// call, retry and backoff and every store call of a start or a return
	// fits in it. Each step of the runner has it too, and the runner
	// settles a pending flow only once it expired Timeout ago, so that a
	// return that came in time completes first. Default 20 seconds.
	Timeout time.Duration
	// DonePath is the same-origin path shown after a return when the start
	// named no return_to, and linked from error pages. Default "/".
	DonePath string
	// Result handles a return that completed a flow, whatever its outcome;
	// [ResultFromContext] gives the connection. The default answers 303 to
	// the flow's return_to (or DonePath) with onboard_flow added (a token
	// only this browser can read, not the flow id), which the page reads
	// with [Onboarder.Outcome]. A handler of its own should not put the
	// flow id in a URL either (it is the key to the flow's return URL):
	// [ResultTokenFromContext] gives the token to put there. A return in a
	// popup (a start with display=popup) is not handed to Result: its page
	// posts the outcome to the window that opened the popup and closes
	// itself.
	Result http.Handler
	// Error handles a refused or failed request; [ErrorFromContext] gives
	// the error, [StatusCode] and [Message] its status and safe text. The
	// default writes a small HTML page. For an ErrSession (the session
	// store failed) it must not read the session, which the request may
	// not have: a page that does (a layout that shows who is signed in)
	// and panics is replaced by the default page, or, when it had written
	// part of its body, its answer is aborted.
	Error http.Handler
	// Confirm answers a GET start that a browser marks as coming from
	// another site: no flow is made until the user confirms. Its request
	// is the start request; the page must POST r.URL.Query()'s parameters
	// to r.URL.Path. The default writes a small HTML page with one button.
	Confirm http.Handler
	// Message gives the text shown to the user for an error, on the
	// default pages and in JSON answers; apps translate or replace the
	// texts with it. Default [Message], in English.
	Message func(err error) string
	// Hooks are called after outcomes, events and deletions are stored.
	Hooks Hooks
	// Retain is how long the runner keeps a done flow after it expires,
	// so a late return is told "expired" rather than "unknown". Default
	// 24 hours.
	Retain time.Duration
	// RefreshEvery is how often the runner asks a [Refresher] provider for
	// each stored connection's state. Default one hour.
	RefreshEvery time.Duration
	// Logger receives diagnostics and security events. Default
	// slog.Default().
	Logger *slog.Logger
	// MeterProvider, when set, receives onboard's metrics: counters of
	// flows started (by provider) and completed (by provider and outcome)
	// and of refused requests (by error kind), and histograms of the
	// duration of provider operations and Store calls. Nothing is recorded
	// when it is nil; the global provider is never used.
	MeterProvider metric.MeterProvider
	// TracerProvider, when set, receives a span for each provider
	// operation. Nothing is recorded when it is nil.
	TracerProvider trace.TracerProvider
	// Now is the clock: the one that decides whether a flow is valid.
	// Default time.Now.
	Now func() time.Time
}

// Onboarder serves the start, return and webhook handlers and runs the
// background work. Build one with [New]; it is safe for concurrent use.
type Onboarder struct {
	cfg       Config
	tel       *telemetry
	baseURL   string // Config.URL without a trailing slash
	basePath  string // its path
	host      string // its host
	origin    string // its scheme and host
	providers map[string]Provider
	// warnedHost is set once a start on another host than Config.URL's
	// was logged as a warning; later ones are logged at Debug.
	warnedHost atomic.Bool
}

// New validates cfg and returns an Onboarder. The error wraps ErrConfig
// and names the first missing or invalid setting.
func New(cfg Config) (*Onboarder, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: URL is empty (want the absolute URL where the handler is mounted, like https://app.example.com/connect)", ErrConfig)
	}
	base, err := url.Parse(cfg.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("%w: URL %q is not an absolute http(s) URL", ErrConfig, cfg.URL)
	}
	if base.RawQuery != "" || base.Fragment != "" || base.User != nil {
		return nil, fmt.Errorf("%w: URL %q must not have a query, fragment or user", ErrConfig, cfg.URL)
	}
	if h := base.Hostname(); h == "" || net.ParseIP(h).IsUnspecified() {
		return nil, fmt.Errorf("%w: URL %q names no host a browser can be sent back to (%q is a listen address); use the app's public host, like localhost or app.example.com", ErrConfig, cfg.URL, base.Host)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawPath = ""
	if len(cfg.Providers) == 0 {
		return nil, fmt.Errorf("%w: no Providers", ErrConfig)
	}
	providers := make(map[string]Provider, len(cfg.Providers))
	for i, p := range cfg.Providers {
		if p == nil {
			return nil, fmt.Errorf("%w: Providers[%d] is nil", ErrConfig, i)
		}
		name := p.Name()
		if !validProviderName(name) {
			return nil, fmt.Errorf("%w: provider name %q must be 1 to 32 lower-case letters, digits or '-'", ErrConfig, name)
		}
		if _, dup := providers[name]; dup {
			return nil, fmt.Errorf("%w: two providers are named %q", ErrConfig, name)
		}
		providers[name] = p
	}
	switch {
	case cfg.Store == nil:
		return nil, fmt.Errorf("%w: Store is nil (use memstore.New(...) or sqlstore.New(db, ...))", ErrConfig)
	case cfg.Sessions == nil:
		return nil, fmt.Errorf("%w: Sessions is nil (use middleware.NewSCS(sessionManager))", ErrConfig)
	case cfg.Owner == nil:
		return nil, fmt.Errorf("%w: Owner is nil (want a func that returns the signed-in user and tenant)", ErrConfig)
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"FlowTTL", &cfg.FlowTTL, DefaultFlowTTL},
		{"Timeout", &cfg.Timeout, DefaultTimeout},
		{"Retain", &cfg.Retain, DefaultRetain},
		{"RefreshEvery", &cfg.RefreshEvery, DefaultRefreshEvery},
	}
	for _, d := range durations {
		switch {
		case *d.d < 0:
			return nil, fmt.Errorf("%w: %s is negative", ErrConfig, d.name)
		case *d.d == 0:
			*d.d = d.def
		}
	}
	caps := []struct {
		name string
		n    *int
		def  int
	}{
		{"MaxFlowsPerOwner", &cfg.MaxFlowsPerOwner, DefaultMaxFlowsPerOwner},
		{"MaxFlowsPerTenant", &cfg.MaxFlowsPerTenant, DefaultMaxFlowsPerTenant},
	}
	for _, c := range caps {
		switch {
		case *c.n < 0:
			return nil, fmt.Errorf("%w: %s is negative", ErrConfig, c.name)
		case *c.n == 0:
			*c.n = c.def
		}
	}
	if cfg.MaxFlowsPerTenant < cfg.MaxFlowsPerOwner {
		return nil, fmt.Errorf("%w: MaxFlowsPerTenant (%d) is below MaxFlowsPerOwner (%d)", ErrConfig, cfg.MaxFlowsPerTenant, cfg.MaxFlowsPerOwner)
	}
	if cfg.DonePath == "" {
		cfg.DonePath = "/"
	}
	if _, ok := SafeReturnPath(cfg.DonePath); !ok {
		return nil, fmt.Errorf("%w: DonePath %q is not a same-origin absolute path", ErrConfig, cfg.DonePath)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if se, ok := cfg.Sessions.(sessionEnder); ok {
		// A new session's end: sessions that end sooner than a flow
		// needs refuse every start (withinSession).
		now := cfg.Now()
		need := cfg.Timeout + min(minFlowTime, cfg.FlowTTL)
		if left := se.SessionEnd(context.Background(), now).Sub(now); left < need {
			return nil, fmt.Errorf("%w: sessions end %s after a request, too soon for any flow (it needs %s: Timeout and %s); "+
				"raise the session manager's IdleTimeout and Lifetime", ErrConfig, left, need, min(minFlowTime, cfg.FlowTTL))
		}
	}
	if cfg.Message == nil {
		cfg.Message = Message
	}
	tel, err := newTelemetry(cfg.MeterProvider, cfg.TracerProvider)
	if err != nil {
		return nil, fmt.Errorf("%w: OpenTelemetry instruments: %v", ErrConfig, err)
	}
	if cfg.MeterProvider != nil {
		cfg.Store = timedStore{s: cfg.Store, t: tel}
	}
	o := &Onboarder{cfg: cfg, tel: tel, baseURL: base.String(), basePath: base.Path, host: base.Host,
		origin: base.Scheme + "://" + base.Host, providers: providers}
	if o.cfg.Error == nil {
		o.cfg.Error = http.HandlerFunc(o.defaultError)
	}
	if o.cfg.Confirm == nil {
		o.cfg.Confirm = http.HandlerFunc(o.defaultConfirm)
	}
	return o, nil
}

func validProviderName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// StartOptions are the parameters of a start.
type StartOptions struct {
	// Source is the data source to connect ("Salesforce").
	Source string
	// Name is the connection name the user asked for.
	Name string
	// Connection is the id of an existing connection of the tenant to
	// reconnect; Source and Name are then taken from it.
	Connection string
	// ReturnTo is the same-origin path to show afterwards.
	ReturnTo string
	// Popup is for a flow whose hosted page the app opens in a popup
	// window (parameter display=popup): the return then finishes in a
	// small page that posts the verified outcome to the window that opened
	// it, on the app's own origin only, and closes.
	Popup bool
}

func (s StartOptions) values() url.Values {
	v := url.Values{}
	for _, p := range []struct{ k, v string }{
		{"source", s.Source}, {"name", s.Name}, {"connection", s.Connection}, {"return_to", s.ReturnTo},
	} {
		if p.v != "" {
			v.Set(p.k, p.v)
		}
	}
	if s.Popup {
		v.Set("display", "popup")
	}
	return v
}

// StartURL returns the path (same origin as Config.URL) that starts a flow
// with the provider; app pages link or post to it.
func (o *Onboarder) StartURL(provider string, opt StartOptions) string {
	u := url.URL{Path: o.basePath + "/" + provider + "/start", RawQuery: opt.values().Encode()}
	return u.String()
}

// restartURL returns the start URL that begins flow f again, in a popup
// when f was shown in one.
func (o *Onboarder) restartURL(f Flow, popup bool) string {
	opt := StartOptions{Source: f.Source, Name: f.Name, ReturnTo: f.ReturnTo, Popup: popup}
	if f.Reconnect {
		opt = StartOptions{Connection: f.ConnectionID, ReturnTo: f.ReturnTo, Popup: popup}
	}
	return o.StartURL(f.Provider, opt)
}

// Connections returns the tenant's connections, newest first: up to
// limit of them after skipping offset.
func (o *Onboarder) Connections(ctx context.Context, tenant string, offset, limit int) ([]Connection, error) {
	cs, err := o.cfg.Store.Connections(ctx, ConnectionQuery{Tenant: tenant, Offset: offset, Limit: limit})
	return cs, classify(err, ErrStore)
}

// connection returns the tenant's connection with this provider and id,
// or an error wrapping ErrUnknownConnection.
func (o *Onboarder) connection(ctx context.Context, tenant, provider, id string) (Connection, error) {
	c, found, err := o.cfg.Store.FindConnection(ctx, provider, id)
	if err != nil {
		return Connection{}, classify(err, ErrStore)
	}
	if !found || c.Owner.IsZero() || c.Owner.Tenant != tenant {
		return Connection{}, fmt.Errorf("%w: %s %q of tenant %q", ErrUnknownConnection, provider, id, tenant)
	}
	return c, nil
}

// DeleteConnection deletes the tenant's connection at the provider and
// then from the store, and fires Hooks.Deleted. It returns an error
// wrapping ErrUnknownConnection when the tenant has no such connection
// (whatever other tenants have).
func (o *Onboarder) DeleteConnection(ctx context.Context, owner Owner, provider, id string) error {
	p, ok := o.providers[provider]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownProvider, provider)
	}
	c, err := o.connection(ctx, owner.Tenant, provider, id)
	if err != nil {
		return err
	}
	pctx, end := o.tel.provider(ctx, provider, "Delete")
	err = classify(p.Delete(pctx, c), ErrProvider)
	end(err)
	if err != nil {
		return err
	}
	deleted, err := o.cfg.Store.DeleteConnection(ctx, provider, id)
	if err != nil {
		return classify(err, ErrStore)
	}
	o.cfg.Logger.InfoContext(ctx, "onboard: connection deleted", "provider", provider, "connection", id,
		"tenant", owner.Tenant, "user", owner.User)
	if deleted { // else the provider's own deletion event came first, and fired the hook
		o.cfg.Hooks.fire(ctx, c, true)
	}
	return nil
}

// SafeReturnPath reports whether p is a same-origin absolute path that is
// safe to redirect to, and returns it cleaned. It refuses absolute URLs,
// scheme-relative "//host" and "/\host" forms, control characters and
// backslashes.
func SafeReturnPath(p string) (string, bool) {
	if p == "" || len(p) > 1024 || p[0] != '/' {
		return "", false
	}
	if len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return "", false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", false
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "", false
	}
	return u.String(), true
}
