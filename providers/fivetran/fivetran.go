// Package fivetran is the [onboard.Provider] for Fivetran Connect Card.
//
// A start creates the tenant's connection first (POST /v1/connections,
// paused, run_setup_tests false, with connect_card_config so the answer
// carries the Connect Card URI), remembers its id in the flow, and
// redirects the browser to the card. A start retried for the same owner
// and source reuses the unfinished connection instead of making another.
// On the return, an id parameter must be the connection this flow made;
// then GET /v1/connections/{id} decides: setup_state connected is
// connected, incomplete is abandoned, broken is failed.
//
// Each tenant is one Fivetran group: by default the provider finds or
// creates it and remembers it. The provider also receives Fivetran's
// signed webhook deliveries ([Provider.Webhook]).
package fivetran

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apiclient"
	"github.com/onboardkit/onboard/internal/memo"
)

// DefaultBaseURL is Fivetran's API.
const DefaultBaseURL = "https://api.fivetran.com"

// Accept is the version header every call sends.
const Accept = "application/json;version=2"

// DefaultTimeout bounds one API request.
const DefaultTimeout = 15 * time.Second

// Config configures a Provider. APIKey and APISecret are required.
type Config struct {
	// Name is the provider's name in onboard routes. Default "fivetran".
	Name string
	// BaseURL is the API's base. Default DefaultBaseURL.
	BaseURL string
	// APIKey and APISecret authenticate every call (Basic auth).
	APIKey, APISecret string
	// HTTPClient does the requests. Default a client with a 15 s timeout.
	HTTPClient *http.Client
	// Retries is how often a call is repeated: GET and DELETE after a
	// network error, 5xx or 429; any call after a 429. Default 2;
	// negative means none.
	Retries int
	// MaxRetryWait bounds a wait for Retry-After; a longer one fails the
	// call. Default 10 seconds.
	MaxRetryWait time.Duration
	// HideSetupGuide hides the setup guide in the Connect Card.
	HideSetupGuide bool
	// Group maps a tenant to its Fivetran group id. Default: find or
	// create the group named [GroupName](tenant).
	Group func(ctx context.Context, tenant string) (string, error)
	// Service maps a flow to the new connection's service and config.
	// Default [DefaultService].
	Service func(f *onboard.Flow) (service string, config map[string]any, err error)
	// WebhookSecret verifies webhook deliveries. Webhook refuses every
	// delivery while it is empty.
	WebhookSecret string
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Provider talks to Fivetran. Build it with [New].
type Provider struct {
	cfg    Config
	api    *apiclient.Client
	groups memo.Strings // tenant -> group id
}

var (
	_ onboard.Provider        = (*Provider)(nil)
	_ onboard.Deleter         = (*Provider)(nil)
	_ onboard.Reconciler      = (*Provider)(nil)
	_ onboard.WebhookReceiver = (*Provider)(nil)
)

// New validates cfg and returns a Provider.
func New(cfg Config) (*Provider, error) {
	if cfg.Name == "" {
		cfg.Name = "fivetran"
	}
	base, err := apiclient.BaseURL("fivetran", cfg.BaseURL, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	cfg.BaseURL = base
	if cfg.APIKey == "" || cfg.APISecret == "" {
		return nil, errors.New("fivetran: APIKey and APISecret are required")
	}
	cfg.HTTPClient = apiclient.HTTPClient(cfg.HTTPClient, DefaultTimeout)
	cfg.Retries = apiclient.RetryCount(cfg.Retries)
	if cfg.MaxRetryWait <= 0 {
		cfg.MaxRetryWait = 10 * time.Second
	}
	if cfg.Service == nil {
		cfg.Service = DefaultService
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Provider{cfg: cfg}
	p.api = &apiclient.Client{
		HTTP: cfg.HTTPClient, Base: cfg.BaseURL, Retries: cfg.Retries,
		Backoff: 250 * time.Millisecond, MaxWait: cfg.MaxRetryWait,
		Retry429: true, // a rate-limited call was not carried out
		Prepare: func(_ context.Context, r *http.Request) error {
			r.SetBasicAuth(cfg.APIKey, cfg.APISecret)
			r.Header.Set("Accept", Accept)
			return nil
		},
		Decode: p.decodeError,
	}
	return p, nil
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.cfg.Name }

// APIError is an answer of the API other than 2xx.
type APIError struct {
	Status  int
	Code    string // "NotFound_Connector"
	Message string
	retry   time.Duration
}

// Error returns the status and the API's message.
func (e *APIError) Error() string {
	return fmt.Sprintf("fivetran: %d %s: %s", e.Status, e.Code, e.Message)
}

// HTTPStatus returns the answer's status.
func (e *APIError) HTTPStatus() int { return e.Status }

// RetryAfter returns the wait the API asked for with Retry-After.
func (e *APIError) RetryAfter() time.Duration { return e.retry }

// Is makes every APIError match onboard.ErrProvider.
func (e *APIError) Is(target error) bool { return target == onboard.ErrProvider }

func (p *Provider) decodeError(status int, body []byte, h http.Header) error {
	e := &APIError{Status: status, retry: apiclient.ParseRetryAfter(h, p.cfg.Now())}
	var b struct{ Code, Message string }
	if json.Unmarshal(body, &b) == nil {
		e.Code, e.Message = b.Code, b.Message
	}
	if e.Code == "" {
		e.Code = strings.ReplaceAll(http.StatusText(status), " ", "")
	}
	return e
}

func (p *Provider) call(ctx context.Context, method, path string, in, out any) error {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	err := p.api.Do(ctx, method, path, in, &env)
	if err == nil && out != nil {
		if len(env.Data) == 0 || json.Unmarshal(env.Data, out) != nil {
			err = fmt.Errorf("%w: %s %s: no usable data in the answer", apiclient.ErrMalformed, method, path)
		}
	}
	if err != nil && !errors.Is(err, onboard.ErrProvider) {
		err = fmt.Errorf("%w: %w", onboard.ErrProvider, err)
	}
	return err
}

func notFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// sanitize keeps [a-z0-9_] of s, lower-cased, at most n bytes.
func sanitize(s string, n int) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if b.Len() >= n {
			break
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func digest(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:4])
}

// GroupName is the default name of a tenant's group: readable, and unique
// per tenant even where sanitizing makes two tenant ids alike.
func GroupName(tenant string) string {
	return "onboard_" + sanitize(tenant, 40) + "_" + digest(tenant)
}

// DefaultService takes the flow's data source as the service name
// ("Salesforce" becomes "salesforce") and derives the destination schema
// from tenant, source and the connection name asked for.
func DefaultService(f *onboard.Flow) (string, map[string]any, error) {
	if f.Source == "" {
		return "", nil, fmt.Errorf("%w: choose a data source (a Fivetran service) to connect", onboard.ErrBadRequest)
	}
	service := sanitize(strings.ReplaceAll(f.Source, " ", "_"), 64)
	schema := sanitize(f.Source, 30) + "_" + digest(f.Owner.Tenant, f.Source, f.Name)
	return service, map[string]any{"schema": schema}, nil
}

// GroupID returns the tenant's group id: remembered, from Config.Group,
// or found or created by name.
func (p *Provider) GroupID(ctx context.Context, tenant string) (string, error) {
	id, err := p.groups.Get(tenant, func() (string, error) {
		if p.cfg.Group != nil {
			return p.cfg.Group(ctx, tenant)
		}
		return p.findOrCreateGroup(ctx, GroupName(tenant))
	})
	if errors.Is(err, memo.ErrEmpty) {
		err = fmt.Errorf("%w: no group for tenant %q", onboard.ErrProvider, tenant)
	}
	return id, err
}

type group struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// each calls fn for every item of a paginated list until fn returns
// true.
func each[T any](ctx context.Context, p *Provider, path string, fn func(T) bool) error {
	cursor := ""
	for range 1000 { // pages of 1000 items: far more than any tenant has
		u := path + "&limit=1000"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Items      []T    `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		if err := p.call(ctx, http.MethodGet, u, nil, &page); err != nil {
			return err
		}
		for _, it := range page.Items {
			if fn(it) {
				return nil
			}
		}
		if cursor = page.NextCursor; cursor == "" {
			return nil
		}
	}
	return nil
}

func (p *Provider) findOrCreateGroup(ctx context.Context, name string) (string, error) {
	find := func() (id string, err error) {
		err = each(ctx, p, "/v1/groups?", func(g group) bool {
			if g.Name == name {
				id = g.ID
			}
			return id != ""
		})
		return id, err
	}
	if id, err := find(); err != nil || id != "" {
		return id, err
	}
	var g group
	err := p.call(ctx, http.MethodPost, "/v1/groups", map[string]string{"name": name}, &g)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return find() // made meanwhile by another instance
	}
	if err == nil {
		p.cfg.Logger.InfoContext(ctx, "fivetran: created group", "group", g.ID, "name", name)
	}
	return g.ID, err
}

type cardConfig struct {
	RedirectURI    string `json:"redirect_uri"`
	HideSetupGuide bool   `json:"hide_setup_guide"`
}

type connectCard struct {
	Token string `json:"token"`
	URI   string `json:"uri"`
}

type connection struct {
	ID         string       `json:"id"`
	GroupID    string       `json:"group_id"`
	Service    string       `json:"service"`
	Schema     string       `json:"schema"`
	CreatedAt  time.Time    `json:"created_at"`
	Card       *connectCard `json:"connect_card"`
	SetupTests []struct {
		Title   string `json:"title"`
		Status  string `json:"status"`
		Message string `json:"message"`
	} `json:"setup_tests"`
	Status struct {
		SetupState string `json:"setup_state"`
		SyncState  string `json:"sync_state"`
	} `json:"status"`
}

// Begin creates the connection (or reuses the tenant's unfinished one for
// the same service and schema) and returns its Connect Card URI. For a
// reconnect it asks a new card for the existing connection.
func (p *Provider) Begin(ctx context.Context, f *onboard.Flow) (string, error) {
	gid, err := p.GroupID(ctx, f.Owner.Tenant)
	if err != nil {
		return "", err
	}
	if f.Data == nil {
		f.Data = make(map[string]string)
	}
	f.Data["group"] = gid
	card := cardConfig{RedirectURI: f.ReturnURL, HideSetupGuide: p.cfg.HideSetupGuide}
	if f.Reconnect {
		return p.card(ctx, f.ConnectionID, card)
	}
	service, config, err := p.cfg.Service(f)
	if err != nil {
		return "", err
	}
	schema, _ := config["schema"].(string)
	if existing, err := p.unfinished(ctx, gid, service, schema); err != nil {
		return "", err
	} else if existing != "" {
		p.cfg.Logger.InfoContext(ctx, "fivetran: reusing unfinished connection", "connection", existing, "flow", f.ID)
		f.ConnectionID = existing
		return p.card(ctx, existing, card)
	}
	var c connection
	err = p.call(ctx, http.MethodPost, "/v1/connections", map[string]any{
		"group_id": gid, "service": service, "paused": true, "run_setup_tests": false,
		"config": config, "connect_card_config": card,
	}, &c)
	if err != nil {
		return "", err
	}
	if c.ID == "" {
		return "", fmt.Errorf("%w: %w: no connection id in the answer", onboard.ErrProvider, apiclient.ErrMalformed)
	}
	f.ConnectionID = c.ID
	if c.Card != nil && c.Card.URI != "" {
		return c.Card.URI, nil
	}
	return p.card(ctx, c.ID, card)
}

func (p *Provider) card(ctx context.Context, id string, card cardConfig) (string, error) {
	var out struct {
		Card connectCard `json:"connect_card"`
	}
	err := p.call(ctx, http.MethodPost, "/v1/connections/"+url.PathEscape(id)+"/connect-card",
		map[string]any{"connect_card_config": card}, &out)
	if err != nil {
		return "", err
	}
	if out.Card.URI == "" {
		return "", fmt.Errorf("%w: %w: no connect_card.uri in the answer", onboard.ErrProvider, apiclient.ErrMalformed)
	}
	return out.Card.URI, nil
}

// unfinished finds the group's incomplete connection for service and
// schema: one that an earlier start made and nobody finished.
func (p *Provider) unfinished(ctx context.Context, gid, service, schema string) (id string, err error) {
	err = each(ctx, p, "/v1/connections?group_id="+url.QueryEscape(gid), func(c connection) bool {
		if c.GroupID == gid && c.Service == service && c.Schema == schema && c.Status.SetupState == "incomplete" {
			id = c.ID
		}
		return id != ""
	})
	return id, err
}

// lookup reads the flow's connection and checks it is in the tenant's
// group.
func (p *Provider) lookup(ctx context.Context, f *onboard.Flow) (connection, error) {
	var c connection
	if f.ConnectionID == "" {
		return c, fmt.Errorf("%w: flow %s made no connection", onboard.ErrForged, f.ID)
	}
	err := p.call(ctx, http.MethodGet, "/v1/connections/"+url.PathEscape(f.ConnectionID), nil, &c)
	if notFound(err) {
		return c, fmt.Errorf("%w: fivetran has no connection %s", onboard.ErrForged, f.ConnectionID)
	}
	if err != nil {
		return c, err
	}
	if c.ID != f.ConnectionID || (f.Data["group"] != "" && c.GroupID != f.Data["group"]) {
		return c, fmt.Errorf("%w: connection %s is not in the tenant's group", onboard.ErrForged, f.ConnectionID)
	}
	return c, nil
}

// result maps a connection's setup_state.
func result(c connection) (onboard.Connection, bool) {
	// Fivetran names a connection by its destination schema
	// (connector_name in webhooks).
	out := onboard.Connection{ID: c.ID, Name: c.Schema, Source: c.Service}
	switch c.Status.SetupState {
	case "connected":
		out.State = onboard.Connected
	case "broken":
		out.State = onboard.Failed
		var msgs []string
		for _, t := range c.SetupTests {
			if t.Status != "PASSED" && t.Message != "" {
				msgs = append(msgs, t.Title+": "+t.Message)
			}
		}
		out.Message = "Fivetran could not connect. " + strings.Join(msgs, "; ")
	case "incomplete":
		out.State = onboard.Abandoned
		out.Message = "The setup was not finished."
		return out, false
	default:
		out.State = onboard.Failed
		out.Message = "Unknown setup state " + c.Status.SetupState
	}
	return out, true
}

// Complete verifies the return: an id parameter, when present, must be
// the connection this flow made, and the connection's setup_state
// decides the outcome.
func (p *Provider) Complete(ctx context.Context, f *onboard.Flow, ret url.Values) (onboard.Connection, error) {
	id, err := ParseReturn(ret)
	if err != nil {
		return onboard.Connection{}, err
	}
	if id != "" && id != f.ConnectionID {
		return onboard.Connection{}, fmt.Errorf("%w: id %q is not the connection %s of flow %s", onboard.ErrForged, id, f.ConnectionID, f.ID)
	}
	c, err := p.lookup(ctx, f)
	if err != nil {
		return onboard.Connection{}, err
	}
	out, _ := result(c)
	return out, nil
}

// ParseReturn reads the id parameter of a return (empty when absent). It
// refuses repeated or oversized ids with errors wrapping
// onboard.ErrBadRequest.
func ParseReturn(v url.Values) (string, error) {
	ids := v["id"]
	switch {
	case len(ids) > 1:
		return "", fmt.Errorf("%w: repeated id", onboard.ErrBadRequest)
	case len(ids) == 1 && len(ids[0]) > 128:
		return "", fmt.Errorf("%w: id too long", onboard.ErrBadRequest)
	case len(ids) == 1:
		return ids[0], nil
	}
	return "", nil
}

// Reconcile asks Fivetran what became of a flow whose browser never came
// back.
func (p *Provider) Reconcile(ctx context.Context, f *onboard.Flow) (onboard.Connection, bool, error) {
	c, err := p.lookup(ctx, f)
	if errors.Is(err, onboard.ErrForged) && f.Expired(p.cfg.Now()) {
		return onboard.Connection{State: onboard.Abandoned}, true, nil // deleted meanwhile
	}
	if err != nil {
		return onboard.Connection{}, false, err
	}
	out, final := result(c)
	if !final && !f.Expired(p.cfg.Now()) {
		return onboard.Connection{}, false, nil
	}
	return out, true, nil
}

// Delete deletes the connection at Fivetran.
func (p *Provider) Delete(ctx context.Context, _ onboard.Owner, connectionID string) error {
	err := p.call(ctx, http.MethodDelete, "/v1/connections/"+url.PathEscape(connectionID), nil, nil)
	if notFound(err) {
		return nil
	}
	return err
}

// Webhook events the provider acts on.
var Events = []string{"connection_successful", "connection_failure", "sync_end", "delete_connector"}

// RegisterWebhook registers url (the onboard webhook route, ending in
// /{provider}/webhook) for the account's events, signed with
// Config.WebhookSecret.
func (p *Provider) RegisterWebhook(ctx context.Context, webhookURL string) (id string, err error) {
	if p.cfg.WebhookSecret == "" {
		return "", errors.New("fivetran: set Config.WebhookSecret before registering a webhook")
	}
	var out struct {
		ID string `json:"id"`
	}
	err = p.call(ctx, http.MethodPost, "/v1/webhooks/account", map[string]any{
		"url": webhookURL, "events": Events, "active": true, "secret": p.cfg.WebhookSecret,
	}, &out)
	return out.ID, err
}

// Payload is a webhook delivery's body.
type Payload struct {
	Event              string    `json:"event"`
	Created            time.Time `json:"created"`
	ConnectorType      string    `json:"connector_type"`
	ConnectorID        string    `json:"connector_id"`
	ConnectorName      string    `json:"connector_name"`
	SyncID             string    `json:"sync_id"`
	DestinationGroupID string    `json:"destination_group_id"`
	Data               struct {
		Status string `json:"status"`
	} `json:"data"`
}

// VerifySignature checks X-Fivetran-Signature-256: the hex HMAC-SHA256 of
// body under secret, in either case, compared in constant time.
func VerifySignature(secret string, body []byte, signature string) bool {
	if secret == "" || signature == "" {
		return false
	}
	got, err := hex.DecodeString(strings.TrimSpace(signature))
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// ParsePayload decodes a delivery and maps it to onboard events: none for
// events the provider does not act on.
func ParsePayload(body []byte) ([]onboard.Event, error) {
	var pl Payload
	if err := json.Unmarshal(body, &pl); err != nil {
		return nil, fmt.Errorf("fivetran: webhook payload: %w", err)
	}
	if pl.ConnectorID == "" || pl.Created.IsZero() {
		return nil, errors.New("fivetran: webhook payload without connector_id or created")
	}
	ev := onboard.Event{ConnectionID: pl.ConnectorID, At: pl.Created}
	switch pl.Event {
	case "connection_successful":
		ev.State = onboard.Connected
	case "connection_failure":
		ev.State, ev.Message = onboard.Failed, "Fivetran reports that the connection failed. Reconnect to fix its credentials."
	case "sync_end":
		if strings.EqualFold(pl.Data.Status, "SUCCESSFUL") {
			ev.State = onboard.Connected
		} else {
			ev.State, ev.Message = onboard.Failed, "The last sync failed ("+pl.Data.Status+")."
		}
	case "delete_connector":
		ev.Deleted = true
	default:
		return nil, nil
	}
	return []onboard.Event{ev}, nil
}

// Webhook verifies one delivery's signature and returns its events. A
// missing or wrong signature is an error wrapping onboard.ErrWebhook.
func (p *Provider) Webhook(r *http.Request) ([]onboard.Event, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	if !VerifySignature(p.cfg.WebhookSecret, body, r.Header.Get("X-Fivetran-Signature-256")) {
		return nil, fmt.Errorf("%w: missing or wrong X-Fivetran-Signature-256", onboard.ErrWebhook)
	}
	return ParsePayload(body)
}
