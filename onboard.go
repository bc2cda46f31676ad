// Package onboard sends the users of a Go web app through a data provider's
// hosted "add a connection" page and brings them back, safely.
//
// An [Onboarder] is built from a [Config] and mounted as an [http.Handler]
// (see [Onboarder.Handler]). It serves three kinds of request under its URL:
//
//	GET|POST {prefix}/{provider}/start          mint a flow, redirect to the provider
//	GET      {prefix}/{provider}/return/{flow}  verify the return, store the connection
//	POST     {prefix}/{provider}/webhook        provider events (providers that have them)
//
// Every return is verified: the flow must exist, be pending and unexpired, be
// bound to the browser session that started it and belong to the owner signed
// in now; then the [Provider] checks the result with its own API, and the
// [Store] completes the flow exactly once. Providers live in providers/...,
// stores in store/..., and the session glue in middleware.
package onboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Owner is who a flow and its connection belong to: a user of a tenant.
// Connections belong to the tenant; a flow belongs to the user who started it.
type Owner struct {
	Tenant string
	User   string
}

// IsZero reports whether o identifies nobody.
func (o Owner) IsZero() bool { return o.Tenant == "" || o.User == "" }

// FlowState is where a flow is in its life.
type FlowState string

// Flow states. A flow is created pending and moves to done exactly once.
// Expired is the state a store reports for a pending flow past its
// expiry time.
const (
	FlowPending FlowState = "pending"
	FlowDone    FlowState = "done"
	FlowExpired FlowState = "expired"
)

// State is the outcome of a flow and the state of a stored connection.
type State string

// Connection states.
const (
	// Connected: the provider holds a working connection.
	Connected State = "connected"
	// Failed: the connection was saved but does not work (test failed,
	// broken credentials). The user can reconnect.
	Failed State = "failed"
	// Abandoned: the user came back without finishing the setup.
	Abandoned State = "abandoned"
)

// Flow is one trip of one browser through a provider's hosted page.
type Flow struct {
	// ID is 32 random bytes, base64url without padding. It travels in the
	// path of the return URL.
	ID       string
	Owner    Owner
	Provider string
	// Source is the data source the user asked for ("Salesforce"), if any.
	Source string
	// Name is the connection name the user asked for, if any.
	Name string
	// ConnectionID is the provider's id of the connection this flow works
	// on: set at start for a reconnect, or by a provider that creates the
	// connection before the browser leaves (Fivetran); set at completion
	// otherwise.
	ConnectionID string
	// Reconnect is true when the flow edits an existing connection.
	Reconnect bool
	// ReturnURL is the absolute URL the provider sends the browser back to.
	ReturnURL string
	// ReturnTo is the same-origin path the app wants to show afterwards.
	ReturnTo string
	// Data holds provider-specific values that must survive until the
	// return (a sub-account, an external id). Keep it small.
	Data      map[string]string
	State     FlowState
	Outcome   State // set when State is FlowDone
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Expired reports whether the flow is past its expiry time at now.
func (f *Flow) Expired(now time.Time) bool { return !now.Before(f.ExpiresAt) }

// Connection is a connection at a provider, as the app knows it.
type Connection struct {
	Provider string
	// ID is the provider's id of the connection. Empty when the user
	// abandoned a setup that created nothing.
	ID     string
	Owner  Owner
	Name   string
	Source string
	State  State
	// Message is a human-readable detail from the provider (why a test
	// failed). Safe to show to the owner.
	Message   string
	FlowID    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Provider starts and verifies flows with one data provider's API.
//
// Implementations must be safe for concurrent use.
type Provider interface {
	// Name is the provider's path segment and stored name: "cdata".
	Name() string
	// Begin asks the provider for the hosted page and returns its URL.
	// f.ReturnURL is set; Begin may set f.ConnectionID and f.Data, which
	// are saved with the flow before the browser is redirected.
	Begin(ctx context.Context, f *Flow) (redirectURL string, err error)
	// Complete verifies a return with the provider's API and returns the
	// connection. It must never trust ret alone. It returns an error
	// wrapping ErrForged when the return does not match what the provider
	// holds for this flow, and ErrProvider when the provider cannot be
	// asked (the flow then stays pending and can be retried).
	Complete(ctx context.Context, f *Flow, ret url.Values) (Connection, error)
}

// Deleter is a Provider that can delete a connection at the provider.
// [Onboarder.DeleteConnection] uses it.
type Deleter interface {
	// Delete removes the owner's connection at the provider. Deleting a
	// connection the provider no longer has is not an error.
	Delete(ctx context.Context, owner Owner, connectionID string) error
}

// Reconciler is a Provider that can tell, without the browser, what
// became of a pending flow: whether the user made a connection and never
// came back. [Onboarder.Reconcile] uses it.
type Reconciler interface {
	// Reconcile returns the flow's connection and done=true when the
	// provider knows the outcome (for an expired flow with nothing made,
	// an abandoned connection), and done=false when the user may still be
	// on the hosted page.
	Reconcile(ctx context.Context, f *Flow) (c Connection, done bool, err error)
}

// WebhookReceiver is a Provider that receives the provider's event
// deliveries at POST {prefix}/{provider}/webhook.
type WebhookReceiver interface {
	// Webhook verifies one delivery (its signature) and returns the events
	// it carries. The body is already limited in size. An error wrapping
	// ErrWebhook answers 401; other errors 400.
	Webhook(r *http.Request) ([]Event, error)
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
	// At is when the provider created the event. Events older than the
	// stored connection's last update are ignored, so duplicate and late
	// deliveries change nothing.
	At time.Time
}

// ConnectionFinder is a Store that finds a connection by provider and id
// alone. Webhook deliveries name no tenant, so a provider that is a
// [WebhookReceiver] needs a Store that is a ConnectionFinder.
type ConnectionFinder interface {
	// FindConnection returns the connection; found is false and err is
	// nil when there is none.
	FindConnection(ctx context.Context, provider, id string) (c Connection, found bool, err error)
}

// FlowLister is a Store that lists and resolves pending flows, for
// [Onboarder.Reconcile].
type FlowLister interface {
	// PendingFlows returns up to limit pending flows created before
	// createdBefore, expired or not, oldest first.
	PendingFlows(ctx context.Context, createdBefore time.Time, limit int) ([]Flow, error)
	// ResolveFlow is CompleteFlow for a pending flow whether or not it has
	// expired: the reconciler settles flows whose browser never came back.
	ResolveFlow(ctx context.Context, flowID string, c Connection) error
}

// Store keeps flows and connections. Implementations must be safe for
// concurrent use, including by several app instances sharing one database.
// Run store/storetest against every implementation.
type Store interface {
	// CreateFlow saves a new pending flow. A duplicate ID is an error.
	CreateFlow(ctx context.Context, f Flow) error
	// Flow returns the flow with this id. found is false and err is nil
	// when there is none. A pending flow past its expiry is returned with
	// State FlowExpired.
	Flow(ctx context.Context, id string) (f Flow, found bool, err error)
	// CompleteFlow moves a pending, unexpired flow to done with c.State as
	// its outcome and, when c.ID is not empty, saves c, in one atomic step.
	// Exactly one of any number of concurrent calls for one flow succeeds;
	// the others return ErrFlowUsed (or ErrFlowExpired, ErrUnknownFlow).
	CompleteFlow(ctx context.Context, flowID string, c Connection) error
	// SaveConnection inserts or updates a connection, keyed by Provider
	// and ID.
	SaveConnection(ctx context.Context, c Connection) error
	// Connection returns the tenant's connection. found is false and err
	// is nil when the tenant has none with that provider and id.
	Connection(ctx context.Context, tenant, provider, id string) (c Connection, found bool, err error)
	// Connections lists the tenant's connections, newest first.
	Connections(ctx context.Context, tenant string) ([]Connection, error)
	// DeleteConnection removes the tenant's connection; deleting one that
	// is not there is not an error.
	DeleteConnection(ctx context.Context, tenant, provider, id string) error
}

// Sessions ties flows to the browser session that started them. The
// middleware package implements it over scs.
type Sessions interface {
	// Bind records in the session of ctx that this browser started the
	// flow. It must keep the app's own session data untouched.
	Bind(ctx context.Context, flowID string, expires time.Time) error
	// Bound reports whether the session of ctx started the flow.
	Bound(ctx context.Context, flowID string) (bool, error)
	// Release forgets the flow in the session of ctx.
	Release(ctx context.Context, flowID string) error
}

// Hooks are called after a flow's outcome or a webhook event is stored.
// They run synchronously in the request; keep them fast. Nil hooks are
// skipped.
type Hooks struct {
	Connected func(ctx context.Context, c Connection)
	Failed    func(ctx context.Context, c Connection)
	Abandoned func(ctx context.Context, c Connection)
}

func (h Hooks) fire(ctx context.Context, c Connection) {
	var fn func(context.Context, Connection)
	switch c.State {
	case Connected:
		fn = h.Connected
	case Failed:
		fn = h.Failed
	case Abandoned:
		fn = h.Abandoned
	}
	if fn != nil {
		fn(ctx, c)
	}
}

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
	// Sessions binds flows to browser sessions (middleware.NewSCS).
	Sessions Sessions
	// Owner identifies the signed-in owner of a request. It returns an
	// error (or a zero Owner) when nobody is signed in.
	Owner func(r *http.Request) (Owner, error)
	// FlowTTL is how long a started flow may take. Default 30 minutes.
	FlowTTL time.Duration
	// DonePath is the same-origin path the default Result handler
	// redirects to when the start named no return_to. Default "/".
	DonePath string
	// Result handles a return that completed a flow, whatever its
	// outcome; [ResultFromContext] gives the connection. The default
	// answers 303 to the flow's return_to (or DonePath) with the query
	// parameters onboard_status, onboard_provider and onboard_connection.
	Result http.Handler
	// Error handles a refused or failed start or return;
	// [ErrorFromContext] gives the error, [StatusCode] and [Message] its
	// status and safe text. The default writes a small HTML page.
	Error http.Handler
	// Hooks are called after outcomes are stored.
	Hooks Hooks
	// ReconcileAfter is how old a pending flow must be before Reconcile
	// asks the provider about it. Default 10 minutes.
	ReconcileAfter time.Duration
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Onboarder serves the start, return and webhook handlers. Build one with
// [New]; it is safe for concurrent use.
type Onboarder struct {
	cfg       Config
	baseURL   string // Config.URL without a trailing slash
	basePath  string // its path
	providers map[string]Provider
}

// DefaultFlowTTL is the default time a flow may take.
const DefaultFlowTTL = 30 * time.Minute

// New validates cfg and returns an Onboarder. The error names the first
// missing or invalid setting.
func New(cfg Config) (*Onboarder, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: URL is empty (want the absolute URL where the handler is mounted, like https://app.example.com/connect)", ErrConfig)
	}
	base, err := url.Parse(cfg.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("%w: URL %q is not an absolute http(s) URL", ErrConfig, cfg.URL)
	}
	if base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("%w: URL %q must not have a query or fragment", ErrConfig, cfg.URL)
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
			return nil, fmt.Errorf("%w: provider name %q must be lower-case letters, digits or '-'", ErrConfig, name)
		}
		if _, dup := providers[name]; dup {
			return nil, fmt.Errorf("%w: two providers are named %q", ErrConfig, name)
		}
		providers[name] = p
	}
	switch {
	case cfg.Store == nil:
		return nil, fmt.Errorf("%w: Store is nil (use memstore.New() or sqlstore.New(db))", ErrConfig)
	case cfg.Sessions == nil:
		return nil, fmt.Errorf("%w: Sessions is nil (use middleware.NewSCS(sessionManager))", ErrConfig)
	case cfg.Owner == nil:
		return nil, fmt.Errorf("%w: Owner is nil (want a func that returns the signed-in user and tenant)", ErrConfig)
	case cfg.FlowTTL < 0:
		return nil, fmt.Errorf("%w: FlowTTL is negative", ErrConfig)
	}
	if cfg.FlowTTL == 0 {
		cfg.FlowTTL = DefaultFlowTTL
	}
	if cfg.ReconcileAfter <= 0 {
		cfg.ReconcileAfter = 10 * time.Minute
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
	if _, finds := cfg.Store.(ConnectionFinder); !finds {
		for _, p := range cfg.Providers {
			if _, hooks := p.(WebhookReceiver); hooks {
				return nil, fmt.Errorf("%w: provider %q takes webhooks, but the Store is not an onboard.ConnectionFinder", ErrConfig, p.Name())
			}
		}
	}
	o := &Onboarder{cfg: cfg, baseURL: base.String(), basePath: base.Path, providers: providers}
	if o.cfg.Error == nil {
		o.cfg.Error = http.HandlerFunc(o.defaultError)
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

// Provider returns the provider with this name.
func (o *Onboarder) Provider(name string) (Provider, bool) {
	p, ok := o.providers[name]
	return p, ok
}

// Store returns the configured store.
func (o *Onboarder) Store() Store { return o.cfg.Store }

// StartURL returns the path (same origin as Config.URL) that starts a flow
// with the provider for the data source; app pages link or post to it.
func (o *Onboarder) StartURL(provider, source string) string {
	u := url.URL{Path: o.basePath + "/" + provider + "/start"}
	if source != "" {
		u.RawQuery = url.Values{"source": {source}}.Encode()
	}
	return u.String()
}

// ReconnectURL returns the path that starts a reconnect flow for an
// existing connection.
func (o *Onboarder) ReconnectURL(provider, connectionID string) string {
	u := url.URL{Path: o.basePath + "/" + provider + "/start"}
	u.RawQuery = url.Values{"connection": {connectionID}}.Encode()
	return u.String()
}

// DeleteConnection deletes the tenant's connection at the provider (when
// the provider is a [Deleter]) and then from the store. It returns an
// error wrapping ErrUnknownConnection when the tenant has no such
// connection.
func (o *Onboarder) DeleteConnection(ctx context.Context, owner Owner, provider, id string) error {
	p, ok := o.providers[provider]
	if !ok {
		return ErrUnknownProvider
	}
	c, found, err := o.cfg.Store.Connection(ctx, owner.Tenant, provider, id)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStore, err)
	}
	if !found {
		return ErrUnknownConnection
	}
	if d, ok := p.(Deleter); ok {
		if err := d.Delete(ctx, owner, c.ID); err != nil {
			return asKind(err, ErrProvider)
		}
	}
	if err := o.cfg.Store.DeleteConnection(ctx, owner.Tenant, provider, id); err != nil {
		return fmt.Errorf("%w: %v", ErrStore, err)
	}
	o.cfg.Logger.InfoContext(ctx, "onboard: connection deleted", "provider", provider, "connection", id, "tenant", owner.Tenant, "user", owner.User)
	return nil
}

// Sentinel errors. Every refusal of the handlers wraps one of them; test
// with errors.Is. [StatusCode] and [Message] map them to what users see.
var (
	ErrConfig            = errors.New("onboard: invalid configuration")
	ErrNotSignedIn       = errors.New("onboard: nobody is signed in")
	ErrUnknownProvider   = errors.New("onboard: unknown provider")
	ErrBadRequest        = errors.New("onboard: malformed request")
	ErrBadReturnTo       = errors.New("onboard: return_to is not a same-origin path")
	ErrNoFlow            = errors.New("onboard: no flow id in the return")
	ErrUnknownFlow       = errors.New("onboard: unknown flow")
	ErrFlowUsed          = errors.New("onboard: flow already completed")
	ErrFlowExpired       = errors.New("onboard: flow expired")
	ErrSessionMismatch   = errors.New("onboard: flow was started in another browser session")
	ErrOwnerMismatch     = errors.New("onboard: flow belongs to another owner")
	ErrForged            = errors.New("onboard: return does not match the provider's records")
	ErrProvider          = errors.New("onboard: provider unavailable")
	ErrStore             = errors.New("onboard: store unavailable")
	ErrNoSession         = errors.New("onboard: no session in the request context")
	ErrTooManyFlows      = errors.New("onboard: too many pending flows")
	ErrUnknownConnection = errors.New("onboard: unknown connection")
	ErrWebhook           = errors.New("onboard: webhook refused")
)

var errorTable = []struct {
	err    error
	status int
	msg    string
}{
	{ErrNotSignedIn, http.StatusUnauthorized, "Please sign in, then start again."},
	{ErrUnknownProvider, http.StatusNotFound, "This data provider is not available."},
	{ErrBadRequest, http.StatusBadRequest, "The request was malformed."},
	{ErrBadReturnTo, http.StatusBadRequest, "The return address must be a page of this site."},
	{ErrNoFlow, http.StatusBadRequest, "This link is not a valid return from the data provider."},
	{ErrUnknownFlow, http.StatusNotFound, "This connection setup is unknown or was cleaned up. Please start again."},
	{ErrFlowUsed, http.StatusConflict, "This connection setup was already completed."},
	{ErrFlowExpired, http.StatusGone, "This connection setup took too long and expired. Please start again."},
	{ErrSessionMismatch, http.StatusForbidden, "This connection setup was started in another browser. Please start again here."},
	{ErrOwnerMismatch, http.StatusForbidden, "This connection setup belongs to another user."},
	{ErrForged, http.StatusForbidden, "The data provider does not confirm this connection."},
	{ErrProvider, http.StatusBadGateway, "The data provider could not be reached. Please try again in a moment."},
	{ErrStore, http.StatusServiceUnavailable, "The connection could not be saved right now. Please reload this page to try again."},
	{ErrNoSession, http.StatusInternalServerError, "Sessions are not set up on this site."},
	{ErrTooManyFlows, http.StatusTooManyRequests, "Too many connection setups are in progress. Please finish or wait for one."},
	{ErrUnknownConnection, http.StatusNotFound, "That connection does not exist."},
	{ErrWebhook, http.StatusUnauthorized, "Webhook refused."},
}

// StatusCode returns the HTTP status for an error from the handlers:
// 4xx for refusals, 5xx for failures of the provider, the store or the
// setup.
func StatusCode(err error) int {
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.status
		}
	}
	return http.StatusInternalServerError
}

// Message returns a message about err that is safe to show to the end
// user: it never contains internal error text.
func Message(err error) string {
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.msg
		}
	}
	return "Something went wrong. Please try again."
}

// outcome is what the handlers tell the Result and Error handlers: the
// flow a return was for, the connection it produced and the error a
// request was refused with. It travels as one context value.
type outcome struct {
	flow      Flow
	hasFlow   bool
	result    Connection
	hasResult bool
	err       error
}

type outcomeKey struct{}

func outcomeOf(ctx context.Context) *outcome {
	out, _ := ctx.Value(outcomeKey{}).(*outcome)
	return out
}

// withOutcome returns ctx carrying a copy of its outcome changed by set.
func withOutcome(ctx context.Context, set func(*outcome)) context.Context {
	var out outcome
	if old := outcomeOf(ctx); old != nil {
		out = *old
	}
	set(&out)
	return context.WithValue(ctx, outcomeKey{}, &out)
}

// WithResult returns ctx carrying the connection a return produced.
func WithResult(ctx context.Context, c Connection) context.Context {
	return withOutcome(ctx, func(out *outcome) { out.result, out.hasResult = c, true })
}

// ResultFromContext returns the connection stored by the return handler.
func ResultFromContext(ctx context.Context) (Connection, bool) {
	if out := outcomeOf(ctx); out != nil && out.hasResult {
		return out.result, true
	}
	return Connection{}, false
}

// WithError returns ctx carrying err for an Error handler.
func WithError(ctx context.Context, err error) context.Context {
	return withOutcome(ctx, func(out *outcome) { out.err = err })
}

// ErrorFromContext returns the error the handlers refused a request with.
func ErrorFromContext(ctx context.Context) error {
	if out := outcomeOf(ctx); out != nil {
		return out.err
	}
	return nil
}

// WithFlow returns ctx carrying the flow a return was for.
func WithFlow(ctx context.Context, f Flow) context.Context {
	return withOutcome(ctx, func(out *outcome) { out.flow, out.hasFlow = f, true })
}

// FlowFromContext returns the flow a return was for, when one was loaded.
func FlowFromContext(ctx context.Context) (Flow, bool) {
	if out := outcomeOf(ctx); out != nil && out.hasFlow {
		return out.flow, true
	}
	return Flow{}, false
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
