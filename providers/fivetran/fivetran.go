// Package fivetran is the [onboard.Provider] for Fivetran Connect Card.
//
// Each tenant is one Fivetran group, named "onboard_" and the base32 of
// the SHA-256 of the tenant id ([GroupName]): distinct tenants never share
// a group, whatever their ids look like. The provider finds the group by
// its exact name (or creates it) once per instance and remembers it.
//
// A start of a new connection creates it in the tenant's group, paused,
// with run_setup_tests false and a destination schema derived from the
// flow (a short prefix of the source and a digest of the flow id), so
// that the connection can be found again from the flow alone with the
// documented filter GET /v1/connections?group_id=&schema= (with the
// table, "schema.table", for a service that loads one table, as Fivetran
// reports its schema), and two
// connections of one source in one tenant never collide. The browser is
// sent to its Connect Card. A create whose answer was lost is looked up
// by its schema before it is tried again, so it is never made twice.
// A reconnect asks a new Connect Card for the existing connection.
//
// On the return, Fivetran's API decides, never the query string (an id
// parameter, when present, must be the flow's connection): setup_state
// connected resumes the connection (PATCH paused false; unless
// Config.KeepPaused) and attaches it to the tenant; broken is failed,
// with the setup tests' messages, and a new connection is deleted (the
// user's retry makes a fresh one); incomplete is abandoned and deleted.
// A connection stays paused, and syncs nothing, until its verified return.
// A reconnect that came back in another browser has its connection
// deleted: it may hold what someone else entered.
//
// The provider receives Fivetran's signed webhook deliveries
// ([Provider.Webhook], registered once with [Provider.RegisterWebhook])
// and answers the runner's refreshes ([Provider.Refresh]), so that broken
// credentials, failed syncs and deletions in Fivetran's dashboard reach
// the app.
package fivetran

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apiclient"
	"github.com/onboardkit/onboard/internal/memo"
)

// DefaultBaseURL is Fivetran's API.
const DefaultBaseURL = "https://api.fivetran.com"

// accept is the version header every call sends.
const accept = "application/json;version=2"

// DefaultTimeout bounds one API request.
const DefaultTimeout = 10 * time.Second

// Config configures a Provider. APIKey and APISecret are required.
type Config struct {
	// Name is the provider's name in onboard routes. Default "fivetran".
	Name string
	// BaseURL is the API's base. Default DefaultBaseURL.
	BaseURL string
	// APIKey and APISecret authenticate every call (Basic auth).
	APIKey, APISecret string
	// HTTPClient does the requests. Default a client with a 10 s timeout
	// per request; the handlers' deadline bounds each whole call,
	// retries included.
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
	// KeepPaused leaves a connection paused after its verified return,
	// for apps that resume connections themselves. By default the return
	// resumes it.
	KeepPaused bool
	// Group maps a tenant to its Fivetran group id. Default: find or
	// create the group named [GroupName](tenant). A group's connections
	// load into its destination, which the provider does not create (it
	// needs the warehouse's settings): give a new group its destination
	// (POST /v1/destinations with the group id), or map tenants to groups
	// that have one.
	Group func(ctx context.Context, tenant string) (string, error)
	// Service maps a flow to the new connection's service and config.
	// The provider sets the config's schema (schema_prefix when the
	// config has that key) to the flow's own destination schema.
	// Default [DefaultService].
	Service func(f onboard.Flow) (service string, config map[string]any, err error)
	// WebhookSecret verifies webhook deliveries. Webhook refuses every
	// delivery while it is empty.
	WebhookSecret string
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock that Retry-After dates are read with. Default
	// time.Now.
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
	_ onboard.Refresher       = (*Provider)(nil)
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
		Prepare: func(_ context.Context, r *http.Request) error {
			r.SetBasicAuth(cfg.APIKey, cfg.APISecret)
			r.Header.Set("Accept", accept)
			return nil
		},
		Decode: p.decodeError,
		Own:    ownError,
	}
	return p, nil
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.cfg.Name }

// APIError is an answer of the API other than 2xx. The errors of the
// provider's calls wrap it, with the kind onboard gives the status
// (onboard.ErrRefused for a refusal, onboard.ErrProvider otherwise).
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

// ownError reports whether an error answer's body is Fivetran's own: its
// error shape, {"code":"NotFound_Connection","message":...}.
func ownError(body []byte) bool {
	var b struct {
		Code string `json:"code"`
	}
	return json.Unmarshal(body, &b) == nil && b.Code != ""
}

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

// call does one API call and decodes the answer's data into out.
func (p *Provider) call(ctx context.Context, method, path string, in, out any) error {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := p.api.Do(ctx, method, path, in, &env); err != nil {
		return err
	}
	if out != nil && (len(env.Data) == 0 || json.Unmarshal(env.Data, out) != nil) {
		return fmt.Errorf("%w: %s %s: %w: no usable data in the answer", onboard.ErrProvider, method, path, apiclient.ErrMalformed)
	}
	return nil
}

// digest is the lower-case base32 (no padding) of the SHA-256 of a
// domain-separated value.
func digest(domain, v string) string {
	sum := sha256.Sum256([]byte("onboard/fivetran/" + domain + "\x00" + v))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}

// GroupName is the name of a tenant's group: "onboard_" and the full
// base32 digest (SHA-256) of the tenant id, so that no two tenant ids
// share a group, whatever their length, prefix or characters.
func GroupName(tenant string) string {
	return "onboard_" + digest("group", tenant)
}

// schemaDigestLen is how much of a digest a schema keeps: 26 base32
// characters, 130 bits.
const schemaDigestLen = 26

// schemaName is the destination schema of flow f's new connection: a
// short prefix of the source and a digest of the flow id, in Fivetran's
// schema characters (lower-case letters, digits, '_', starting with a
// letter), at most 44 bytes. It is unique per flow, so Complete and
// Cancel find the connection from the flow alone.
func schemaName(f onboard.Flow) string {
	var b strings.Builder
	under := false
	for _, c := range strings.ToLower(f.Source) {
		if b.Len() >= 16 {
			break
		}
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			if b.Len() == 0 && c <= '9' {
				b.WriteByte('s')
			}
			if under && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(c)
			under = false
		default:
			under = true
		}
	}
	if b.Len() == 0 {
		b.WriteString("connection")
	}
	return b.String() + "_" + digest("schema", f.ID)[:schemaDigestLen]
}

// DefaultService takes the flow's data source, as typed, as the Fivetran
// service: lower-cased, with spaces as underscores ("Google Sheets"
// becomes "google_sheets"), with an empty config. A source that cannot be
// a service name is a bad request.
//
// An empty config suits services whose Connect Card asks for everything.
// Fivetran's API configuration of some services needs more at creation:
// database services take config.schema_prefix in place of config.schema,
// and services that load one table (google_sheets, file services) may
// need config.table. For those, set Config.Service to return the config
// (with a "schema_prefix" key, which the provider fills in, or a "table").
func DefaultService(f onboard.Flow) (string, map[string]any, error) {
	service := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(f.Source)), " ", "_")
	if service == "" {
		return "", nil, fmt.Errorf("%w: choose a data source (a Fivetran service) to connect", onboard.ErrBadRequest)
	}
	for _, c := range service {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "", nil, fmt.Errorf("%w: %q is not a Fivetran service name", onboard.ErrBadRequest, f.Source)
		}
	}
	return service, map[string]any{}, nil
}

// GroupID returns the tenant's group id: remembered, from Config.Group,
// or found (by its exact name) or created.
func (p *Provider) GroupID(ctx context.Context, tenant string) (string, error) {
	id, err := p.groups.Get(ctx, tenant, func() (string, error) {
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

// maxPages bounds a walk through a paged list: pages of 1000 items.
const maxPages = 1000

// each calls fn for every item of a paged list until fn returns true.
func each[T any](ctx context.Context, p *Provider, path string, fn func(T) bool) error {
	cursor := ""
	for range maxPages {
		q := url.Values{"limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Items      []T    `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		if err := p.call(ctx, http.MethodGet, path+"?"+q.Encode(), nil, &page); err != nil {
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
	return fmt.Errorf("%w: %s has more than %d pages", onboard.ErrProvider, path, maxPages)
}

// findOrCreateGroup returns the id of the group named exactly name,
// creating it when there is none. A name that is taken (409) but not
// listed is an error: no other group is ever used in its place.
func (p *Provider) findOrCreateGroup(ctx context.Context, name string) (string, error) {
	find := func() (id string, err error) {
		err = each(ctx, p, "/v1/groups", func(g group) bool {
			if g.Name == name && g.ID != "" {
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
	switch status := apiclient.Status(err); {
	case err == nil && g.Name == name && g.ID != "":
		p.cfg.Logger.InfoContext(ctx, "fivetran: created group", "group", g.ID, "name", name)
		return g.ID, nil
	case err == nil:
		err = fmt.Errorf("%w: created group %q answered as %q", onboard.ErrProvider, name, g.Name)
	case status != http.StatusConflict && status != 0 && status < 500:
		return "", err
	}
	// Made meanwhile (409), or the answer was lost: find it again.
	id, ferr := find()
	if ferr == nil && id == "" {
		ferr = fmt.Errorf("%w: group %q: %w", onboard.ErrProvider, name, err)
	}
	return id, ferr
}

type cardConfig struct {
	RedirectURI    string `json:"redirect_uri"`
	HideSetupGuide bool   `json:"hide_setup_guide"`
}

type connectCard struct {
	Token string `json:"token"`
	URI   string `json:"uri"`
}

type setupTest struct {
	Title   string `json:"title"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

type alert struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type connection struct {
	ID          string       `json:"id"`
	GroupID     string       `json:"group_id"`
	Schema      string       `json:"schema"`
	Paused      bool         `json:"paused"`
	SucceededAt *time.Time   `json:"succeeded_at"`
	FailedAt    *time.Time   `json:"failed_at"`
	Card        *connectCard `json:"connect_card"`
	SetupTests  []setupTest  `json:"setup_tests"`
	Status      struct {
		SetupState string  `json:"setup_state"`
		SyncState  string  `json:"sync_state"`
		Tasks      []alert `json:"tasks"`
	} `json:"status"`
}

func connectionPath(id string) string { return "/v1/connections/" + url.PathEscape(id) }

// Begin creates the flow's connection (paused, with its own schema) and
// returns its Connect Card URI; for a reconnect it asks a new card for the
// existing connection.
func (p *Provider) Begin(ctx context.Context, f onboard.Flow, returnURL string) (string, error) {
	card := cardConfig{RedirectURI: returnURL, HideSetupGuide: p.cfg.HideSetupGuide}
	if f.Reconnect {
		return p.card(ctx, f.ConnectionID, card)
	}
	service, config, err := p.cfg.Service(f)
	if err != nil {
		return "", err
	}
	gid, err := p.GroupID(ctx, f.Owner.Tenant)
	if err != nil {
		return "", err
	}
	schema := schemaName(f)
	config = maps.Clone(config)
	if config == nil {
		config = map[string]any{}
	}
	if _, ok := config["schema_prefix"]; ok {
		config["schema_prefix"] = schema
	} else {
		config["schema"] = schema
	}
	body := map[string]any{"group_id": gid, "service": service, "paused": true, "run_setup_tests": false,
		"config": config, "connect_card_config": card}
	const tries = 2
	for try := 1; ; try++ {
		var c connection
		err := p.call(ctx, http.MethodPost, "/v1/connections", body, &c)
		if err == nil && c.ID != "" {
			if c.Card != nil && c.Card.URI != "" {
				return c.Card.URI, nil
			}
			return p.card(ctx, c.ID, card)
		}
		if err == nil {
			err = fmt.Errorf("%w: %w: no connection id in the answer", onboard.ErrProvider, apiclient.ErrMalformed)
		}
		// A refusal or a rate limit made nothing. Anything else (no answer,
		// a 5xx, a 409 on the schema, junk) may have made the connection:
		// look for it by its schema before creating it again.
		if s := apiclient.Status(err); s >= 400 && s < 500 && s != http.StatusConflict {
			return "", err
		}
		if ctx.Err() != nil {
			return "", err
		}
		made, found, lerr := p.bySchema(ctx, gid, withTable(schema, config))
		if lerr != nil {
			return "", fmt.Errorf("%w (and looking it up failed: %w)", err, lerr)
		}
		if found {
			p.cfg.Logger.InfoContext(ctx, "fivetran: found the connection whose create answer was lost",
				"connection", made.ID, "flow", f.ID, "err", err)
			return p.card(ctx, made.ID, card)
		}
		if try == tries {
			return "", err
		}
	}
}

// card asks a new Connect Card for connection id.
func (p *Provider) card(ctx context.Context, id string, card cardConfig) (string, error) {
	var out struct {
		Card connectCard `json:"connect_card"`
	}
	err := p.call(ctx, http.MethodPost, connectionPath(id)+"/connect-card",
		map[string]any{"connect_card_config": card}, &out)
	if err != nil {
		return "", err
	}
	if out.Card.URI == "" {
		return "", fmt.Errorf("%w: %w: no connect_card.uri in the answer", onboard.ErrProvider, apiclient.ErrMalformed)
	}
	return out.Card.URI, nil
}

// bySchema finds the group's connection whose schema is schema (as
// Fivetran reports it: see reportedSchema), with the documented filter:
// one call whatever the group's size.
func (p *Provider) bySchema(ctx context.Context, gid, schema string) (connection, bool, error) {
	q := url.Values{"group_id": {gid}, "schema": {schema}}
	var page struct {
		Items []connection `json:"items"`
	}
	if err := p.call(ctx, http.MethodGet, "/v1/connections?"+q.Encode(), nil, &page); err != nil {
		return connection{}, false, err
	}
	for _, c := range page.Items {
		if c.ID != "" && c.GroupID == gid && c.Schema == schema {
			return c, true, nil
		}
	}
	return connection{}, false, nil
}

// withTable is the schema Fivetran reports for a connection made with
// destination schema schema and config: "schema.table" for a service
// that loads one table (config.table, as google_sheets and file services
// take), schema otherwise.
func withTable(schema string, config map[string]any) string {
	if t, _ := config["table"].(string); t != "" {
		return schema + "." + t
	}
	return schema
}

// reportedSchema is the schema Fivetran reports for flow f's new
// connection (withTable of its Config.Service config).
func (p *Provider) reportedSchema(f onboard.Flow) string {
	_, config, err := p.cfg.Service(f)
	if err != nil {
		return schemaName(f)
	}
	return withTable(schemaName(f), config)
}

// get reads one connection; found is false when Fivetran has none.
func (p *Provider) get(ctx context.Context, id string) (connection, bool, error) {
	var c connection
	err := p.call(ctx, http.MethodGet, connectionPath(id), nil, &c)
	switch {
	case apiclient.NotFound(err):
		return c, false, nil
	case err != nil:
		return c, false, err
	case c.ID != id:
		return c, false, fmt.Errorf("%w: %w: asked for connection %q, got %q", onboard.ErrProvider, apiclient.ErrMalformed, id, c.ID)
	}
	return c, true, nil
}

// setPaused pauses or resumes a connection; one that is gone is not an
// error.
func (p *Provider) setPaused(ctx context.Context, id string, paused bool) error {
	return apiclient.IgnoreNotFound(p.call(ctx, http.MethodPatch, connectionPath(id), map[string]bool{"paused": paused}, nil))
}

// flowConnection finds what flow f works on at Fivetran: for a reconnect
// the connection it names, for a new connection the one with the flow's
// schema. The connection must be in the tenant's group.
func (p *Provider) flowConnection(ctx context.Context, f onboard.Flow) (connection, bool, error) {
	gid, err := p.GroupID(ctx, f.Owner.Tenant)
	if err != nil {
		return connection{}, false, err
	}
	id := f.ConnectionID
	if !f.Reconnect {
		c, found, err := p.bySchema(ctx, gid, p.reportedSchema(f))
		if err != nil || !found {
			return c, found, err
		}
		id = c.ID
	}
	c, found, err := p.get(ctx, id)
	if err == nil && found && c.GroupID != gid {
		err = fmt.Errorf("%w: connection %s is not in the tenant's group", onboard.ErrForged, id)
	}
	return c, found, err
}

// Complete verifies a return with Fivetran's API. An id parameter, when
// present, must be the flow's connection. setup_state connected resumes
// the connection (unless Config.KeepPaused) and attaches it; broken is
// Failed with the setup tests' messages (a new connection is not
// attached, so the core deletes it through Cancel); incomplete is
// Abandoned.
func (p *Provider) Complete(ctx context.Context, f onboard.Flow, ret url.Values) (onboard.Connection, error) {
	id, err := parseReturn(ret)
	if err != nil {
		return onboard.Connection{}, err
	}
	c, found, err := p.flowConnection(ctx, f)
	if err != nil {
		return onboard.Connection{}, err
	}
	if id != "" && (!found || id != c.ID) {
		return onboard.Connection{}, fmt.Errorf("%w: id %q is not the connection of flow %s", onboard.ErrForged, id, f.ID)
	}
	switch {
	case !found && f.Reconnect:
		return onboard.Connection{State: onboard.Failed,
			Message: "This connection no longer exists at Fivetran: it was deleted there."}, nil
	case !found:
		return onboard.Connection{State: onboard.Abandoned,
			Message: "The setup at Fivetran was not finished, so nothing was kept."}, nil
	}
	switch c.Status.SetupState {
	case "connected":
		if !p.cfg.KeepPaused && c.Paused {
			if err := p.setPaused(ctx, c.ID, false); err != nil {
				return onboard.Connection{}, err
			}
		}
		return onboard.Connection{ID: c.ID, State: onboard.Connected}, nil
	case "incomplete":
		return onboard.Connection{State: onboard.Abandoned,
			Message: "The setup at Fivetran was not finished, so nothing was kept."}, nil
	}
	out := onboard.Connection{State: onboard.Failed, Message: setupMessage(c)}
	if f.Reconnect {
		out.ID = c.ID
	}
	return out, nil
}

// Message bounds.
const (
	maxDetails    = 3   // setup tests or tasks named in a message
	maxDetailRune = 200 // runes of one of them
)

// setupMessage says why a setup failed, from the setup tests that did not
// pass: always one whole sentence.
func setupMessage(c connection) string {
	var parts []string
	for _, t := range c.SetupTests {
		if t.Status == "PASSED" || t.Status == "SKIPPED" {
			continue
		}
		title, msg := clean(t.Title), clean(t.Message)
		switch {
		case title != "" && msg != "":
			parts = append(parts, title+": "+msg)
		case title != "":
			parts = append(parts, title+" failed")
		case msg != "":
			parts = append(parts, msg)
		}
	}
	if c.Status.SetupState != "broken" && c.Status.SetupState != "" {
		return sentence("Fivetran reports an unexpected setup state for this connection", parts)
	}
	if len(parts) == 0 {
		return "Fivetran could not connect: the setup tests did not pass. Check what you entered and try again."
	}
	return sentence("Fivetran could not connect", parts)
}

// sentence joins a lead and details into one sentence: "lead: a; b." or
// "lead." without details.
func sentence(lead string, parts []string) string {
	if len(parts) > maxDetails {
		parts = parts[:maxDetails]
	}
	if len(parts) == 0 {
		return lead + "."
	}
	s := lead + ": " + strings.Join(parts, "; ")
	if !strings.HasSuffix(s, "…") {
		s += "."
	}
	return s
}

// clean makes a detail from the provider fit in a sentence: no control
// characters, collapsed spaces, no trailing punctuation, bounded length.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	s = strings.TrimRight(s, ".;:,!? ")
	if utf8.RuneCountInString(s) > maxDetailRune {
		r := []rune(s)[:maxDetailRune]
		s = strings.TrimRight(string(r), ".;:,!? ") + "…"
	}
	return s
}

// parseReturn reads the id parameter of a return (empty when absent). It
// refuses repeated or oversized ids with errors wrapping
// onboard.ErrBadRequest.
func parseReturn(v url.Values) (string, error) {
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

// Cancel removes what flow f made: for a new connection it deletes the
// connection with the flow's schema (and the flow's connection id, when
// set). For a reconnect, which the core cancels only to quarantine a
// setup that came back in another browser, it deletes the connection:
// pausing it would not do, since the owner's next reconnect finds its
// setup connected and resumes it, with whatever was entered in it.
// Nothing to remove is not an error.
func (p *Provider) Cancel(ctx context.Context, f onboard.Flow) error {
	if f.Reconnect {
		return p.Delete(ctx, onboard.Connection{ID: f.ConnectionID})
	}
	gid, err := p.GroupID(ctx, f.Owner.Tenant)
	if err != nil {
		return err
	}
	c, found, err := p.bySchema(ctx, gid, p.reportedSchema(f))
	if err != nil {
		return err
	}
	var ids []string
	if found {
		ids = append(ids, c.ID)
	}
	if f.ConnectionID != "" && !slices.Contains(ids, f.ConnectionID) {
		ids = append(ids, f.ConnectionID)
	}
	for _, id := range ids {
		if err := p.Delete(ctx, onboard.Connection{ID: id}); err != nil {
			return err
		}
		p.cfg.Logger.InfoContext(ctx, "fivetran: deleted the connection of a flow that attached nothing",
			"connection", id, "flow", f.ID)
	}
	return nil
}

// Delete deletes the connection at Fivetran. One that is gone is not an
// error.
func (p *Provider) Delete(ctx context.Context, c onboard.Connection) error {
	return apiclient.IgnoreNotFound(p.call(ctx, http.MethodDelete, connectionPath(c.ID), nil, nil))
}

// Refresh asks Fivetran for each of the tenant's connections and returns
// an event for each whose state differs from the stored one: Deleted for
// one Fivetran no longer has, Failed for a broken setup or a failed last
// sync, Connected otherwise. The events have no time (they are
// observations). It stops at the first failing call (a 429, say) and
// returns its error.
func (p *Provider) Refresh(ctx context.Context, tenant string, cs []onboard.Connection) ([]onboard.Event, error) {
	var out []onboard.Event
	for _, stored := range cs {
		c, found, err := p.get(ctx, stored.ID)
		if err != nil {
			return nil, err
		}
		if !found {
			out = append(out, onboard.Event{ConnectionID: stored.ID, Deleted: true})
			continue
		}
		state, msg := observed(c)
		if state != stored.State {
			out = append(out, onboard.Event{ConnectionID: c.ID, State: state, Message: msg})
		}
	}
	return out, nil
}

// observed is the state of a connection Fivetran holds.
func observed(c connection) (onboard.State, string) {
	var tasks []string
	for _, t := range c.Status.Tasks {
		if m := clean(t.Message); m != "" {
			tasks = append(tasks, m)
		}
	}
	switch {
	case c.Status.SetupState == "broken":
		if len(tasks) == 0 {
			return onboard.Failed, setupMessage(c)
		}
		return onboard.Failed, sentence("Fivetran reports that the connection is broken", tasks)
	case c.Status.SetupState == "incomplete":
		return onboard.Failed, "The connection's setup at Fivetran is not finished. Reconnect to finish it."
	case c.Status.SetupState != "connected":
		return onboard.Failed, setupMessage(c)
	case c.FailedAt != nil && (c.SucceededAt == nil || c.FailedAt.After(*c.SucceededAt)):
		return onboard.Failed, sentence("The last sync failed", tasks)
	}
	return onboard.Connected, ""
}

// events are the webhook events the provider acts on.
var events = []string{"connection_successful", "connection_failure", "sync_end", "delete_connector"}

// RegisterWebhook registers webhookURL (the onboard webhook route, ending
// in /{provider}/webhook) for the account's events, signed with
// Config.WebhookSecret, and returns its id. It is idempotent: a webhook
// already registered for the URL is reused and updated (Fivetran never
// shows a secret, so the secret is set again), and duplicates of it are
// deleted, so every event arrives once. Fivetran tests the URL before it
// creates or activates a webhook: call it once the route is served. The
// URL must be HTTPS: Fivetran answers 400 to any other.
func (p *Provider) RegisterWebhook(ctx context.Context, webhookURL string) (string, error) {
	if p.cfg.WebhookSecret == "" {
		return "", errors.New("fivetran: set Config.WebhookSecret before registering a webhook")
	}
	var found []string
	err := each(ctx, p, "/v1/webhooks", func(h struct {
		ID  string `json:"id"`
		URL string `json:"url"`
	}) bool {
		if h.URL == webhookURL && h.ID != "" {
			found = append(found, h.ID)
		}
		return false
	})
	if err != nil {
		return "", err
	}
	want := map[string]any{"url": webhookURL, "events": events, "active": true, "secret": p.cfg.WebhookSecret}
	var out struct {
		ID string `json:"id"`
	}
	if len(found) == 0 {
		if err := p.call(ctx, http.MethodPost, "/v1/webhooks/account", want, &out); err != nil {
			return "", err
		}
		p.cfg.Logger.InfoContext(ctx, "fivetran: registered webhook", "webhook", out.ID, "url", webhookURL)
		return out.ID, nil
	}
	slices.Sort(found)
	if err := p.call(ctx, http.MethodPatch, "/v1/webhooks/"+url.PathEscape(found[0]), want, nil); err != nil {
		return "", err
	}
	for _, dup := range found[1:] {
		if err := apiclient.IgnoreNotFound(p.call(ctx, http.MethodDelete, "/v1/webhooks/"+url.PathEscape(dup), nil, nil)); err != nil {
			return "", err
		}
		p.cfg.Logger.InfoContext(ctx, "fivetran: deleted a duplicate webhook", "webhook", dup, "url", webhookURL)
	}
	return found[0], nil
}

// payload is what onboard reads of a webhook delivery's body.
type payload struct {
	Event       string    `json:"event"`
	Created     time.Time `json:"created"`
	ConnectorID string    `json:"connector_id"`
	Data        struct {
		Status string `json:"status"`
	} `json:"data"`
}

// verifySignature checks X-Fivetran-Signature-256: the hex HMAC-SHA256 of
// body under secret, in either case, compared in constant time.
func verifySignature(secret string, body []byte, signature string) bool {
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

// parsePayload decodes a delivery and maps it to onboard events: none for
// events the provider does not act on (test events, sync_start, a
// rescheduled sync, a sync_end status it does not know). Each event's At is the payload's created time, the
// provider's clock.
func parsePayload(body []byte) ([]onboard.Event, error) {
	var pl payload
	if err := json.Unmarshal(body, &pl); err != nil {
		return nil, fmt.Errorf("fivetran: webhook payload: %w", err)
	}
	if !slices.Contains(events, pl.Event) {
		return nil, nil
	}
	if pl.ConnectorID == "" || pl.Created.IsZero() {
		return nil, fmt.Errorf("fivetran: webhook payload %s without connector_id or created", pl.Event)
	}
	ev := onboard.Event{ConnectionID: pl.ConnectorID, At: pl.Created.UTC()}
	switch pl.Event {
	case "connection_successful":
		ev.State = onboard.Connected
	case "connection_failure":
		ev.State, ev.Message = onboard.Failed, "Fivetran reports that the connection failed. Reconnect to fix it."
	case "sync_end":
		switch strings.ToUpper(pl.Data.Status) {
		case "SUCCESSFUL":
			ev.State = onboard.Connected
		case "FAILURE", "FAILURE_WITH_TASK":
			ev.State, ev.Message = onboard.Failed, "The last sync failed. Reconnect to fix the connection."
		default: // RESCHEDULED, or a status this package does not know
			return nil, nil
		}
	case "delete_connector":
		ev.Deleted = true
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
	if !verifySignature(p.cfg.WebhookSecret, body, r.Header.Get("X-Fivetran-Signature-256")) {
		return nil, fmt.Errorf("%w: missing or wrong X-Fivetran-Signature-256", onboard.ErrWebhook)
	}
	return parsePayload(body)
}
