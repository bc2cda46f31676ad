// Package cdata is the [onboard.Provider] for CData Connect AI Embed.
//
// Each tenant of the app is one CData sub-account. A start asks CData
// for its hosted Add Connection page (POST /poweredby/connection/create)
// and sends the browser there; CData sends it back to the flow's return
// URL with cdata_connection_id, cdata_connection_name and
// cdata_connection_status. Those parameters are never trusted alone: the
// return is verified by listing the tenant's connections with the flow's
// externalId (GET /poweredby/connection/list), so a connection counts
// only when CData holds it in the tenant's own sub-account and this flow
// made it. A reconnect uses the Edit Connection page of the same API
// (POST /poweredby/connection/edit/{id}).
//
// What leaves the app, and goes to CData:
//   - the return URL ({prefix}/cdata/return/{flow id}): it carries the
//     flow id in its path, so that the browser can be brought back to
//     the flow; the flow only counts in the browser that started it;
//   - the connection's externalId: a digest of the flow id, not the id;
//   - the sub-account's externalId: a digest of the tenant id, and its
//     accountName: the tenant id itself, so that CData's own console
//     shows whose sub-account it is;
//   - the data source and connection name the user typed.
//
// Calls are authenticated with the partner's RS256 JWT (at most one hour
// long), signed once per sub-account and reused until shortly before it
// expires.
package cdata

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apiclient"
	"github.com/onboardkit/onboard/internal/memo"
)

// DefaultBaseURL is CData's API.
const DefaultBaseURL = "https://cloud.cdata.com/api"

// Defaults for [Config].
const (
	DefaultTokenLifetime = 5 * time.Minute
	DefaultTimeout       = 10 * time.Second
	DefaultSourcesTTL    = time.Hour
)

// maxTokenLifetime caps Config.TokenLifetime: a leaked token is good for
// no longer than this.
const maxTokenLifetime = time.Hour

// Config configures a Provider. AccountID and one of PrivateKey,
// PrivateKeyPEM or PrivateKeyFile are required.
type Config struct {
	// Name is the provider's name in onboard routes. Default "cdata".
	Name string
	// BaseURL is the API's base. Default DefaultBaseURL.
	BaseURL string
	// AccountID is the parent (OEM) account id: the JWT's iss.
	AccountID string
	// PrivateKey signs the JWT (RS256). The public key must be registered
	// with CData.
	PrivateKey *rsa.PrivateKey
	// PrivateKeyPEM is the private key in PEM (PKCS #1 or PKCS #8).
	PrivateKeyPEM []byte
	// PrivateKeyFile is a file holding the private key in PEM.
	PrivateKeyFile string
	// TokenLifetime is the lifetime of signed JWTs: at most one hour.
	// Default 5 minutes.
	TokenLifetime time.Duration
	// HTTPClient does the requests. Default a client with a 10 s timeout
	// per request; the onboard handlers' deadline bounds a whole call,
	// retries included.
	HTTPClient *http.Client
	// Retries is how many times a call may be repeated: a GET or DELETE
	// after a network error, a 5xx or a 429, any call after a 429, and
	// once a create whose answer was lost (see [Provider.Begin]).
	// Default 2; negative means none.
	Retries int
	// SubAccount maps a tenant to its CData sub-account id, for apps that
	// create sub-accounts and keep the mapping themselves; its answers
	// are remembered. It answers "" for a tenant without one: a start
	// then fails (onboard.ErrConfig), and Refresh, Sources, Cancel and
	// Delete take the tenant to have no connections. Default: the
	// sub-account whose externalId is a digest of the tenant id, created
	// on the tenant's first start and never by any other call.
	SubAccount func(ctx context.Context, tenant string) (string, error)
	// SourcesTTL is how long Sources caches the data source list.
	// Default one hour.
	SourcesTTL time.Duration
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of the JWTs, of Retry-After dates and of the
	// sources cache. Default time.Now.
	Now func() time.Time
}

// Provider talks to CData Connect AI Embed. Build it with [New]. It is
// safe for concurrent use.
type Provider struct {
	cfg    Config
	key    *rsa.PrivateKey
	api    *apiclient.Client
	group  singleflight.Group // account creation and source lists
	mu     sync.Mutex
	tokens map[string]token   // by sub-account ("" for none)
	subs   memo.Strings       // tenant -> sub-account found
	srcs   map[string]sources // by the sub-account listed as ("" for none)
}

type token struct {
	raw       string
	renewFrom time.Time
}

type sources struct {
	list []string
	at   time.Time
}

var (
	_ onboard.Provider  = (*Provider)(nil)
	_ onboard.Refresher = (*Provider)(nil)
)

// Errors.
var (
	// ErrKey is a private key that cannot be used.
	ErrKey = errors.New("cdata: unusable private key")
	// ErrUnauthorized is CData refusing the JWT: the key is not
	// registered, the account id is wrong, or the call needs a
	// sub-account.
	ErrUnauthorized = errors.New("cdata: the key or account is not accepted")
)

// New validates cfg and returns a Provider.
func New(cfg Config) (*Provider, error) {
	if cfg.Name == "" {
		cfg.Name = "cdata"
	}
	base, err := apiclient.BaseURL("cdata", cfg.BaseURL, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	cfg.BaseURL = base
	if cfg.AccountID == "" {
		return nil, errors.New("cdata: AccountID (the parent account id) is empty")
	}
	key, err := loadKey(cfg)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.TokenLifetime == 0:
		cfg.TokenLifetime = DefaultTokenLifetime
	case cfg.TokenLifetime < 0 || cfg.TokenLifetime > maxTokenLifetime:
		return nil, fmt.Errorf("cdata: TokenLifetime %v is out of range: a JWT may live at most one hour (default %v)",
			cfg.TokenLifetime, DefaultTokenLifetime)
	}
	cfg.HTTPClient = apiclient.HTTPClient(cfg.HTTPClient, DefaultTimeout)
	cfg.Retries = apiclient.RetryCount(cfg.Retries)
	if cfg.SourcesTTL <= 0 {
		cfg.SourcesTTL = DefaultSourcesTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Provider{cfg: cfg, key: key, tokens: make(map[string]token), srcs: make(map[string]sources)}
	p.api = &apiclient.Client{
		HTTP: cfg.HTTPClient, Base: cfg.BaseURL, Retries: cfg.Retries,
		Backoff: 200 * time.Millisecond, MaxWait: 5 * time.Second,
		Decode: p.decodeError,
		Own:    ownError,
	}
	return p, nil
}

func loadKey(cfg Config) (*rsa.PrivateKey, error) {
	switch {
	case cfg.PrivateKey != nil:
		if err := cfg.PrivateKey.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKey, err)
		}
		if cfg.PrivateKey.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: %d-bit RSA key, want at least 2048 bits", ErrKey, cfg.PrivateKey.N.BitLen())
		}
		return cfg.PrivateKey, nil
	case cfg.PrivateKeyPEM != nil:
		k, err := jwt.ParseRSAPrivateKeyFromPEM(cfg.PrivateKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKey, err)
		}
		return loadKey(Config{PrivateKey: k})
	case cfg.PrivateKeyFile != "":
		b, err := os.ReadFile(cfg.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKey, err)
		}
		return loadKey(Config{PrivateKeyPEM: b})
	}
	return nil, fmt.Errorf("%w: set PrivateKey, PrivateKeyPEM or PrivateKeyFile", ErrKey)
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.cfg.Name }

// APIError is an answer of the API other than 200. Its kind (in the
// error chain of every failed call) is onboard.ErrRefused for a 4xx other
// than 401, 403, 408 and 429, and onboard.ErrProvider otherwise.
type APIError struct {
	Status  int
	Code    string
	Message string
	retry   time.Duration
}

// Error returns the status and the API's message.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("cdata: %d %s", e.Status, msg)
}

// HTTPStatus returns the answer's status.
func (e *APIError) HTTPStatus() int { return e.Status }

// RetryAfter returns the wait the API asked for with Retry-After.
func (e *APIError) RetryAfter() time.Duration { return e.retry }

// Is makes a 401 match ErrUnauthorized.
func (e *APIError) Is(target error) bool {
	return target == ErrUnauthorized && e.Status == http.StatusUnauthorized
}

// ownError reports whether an error answer's body is CData's own error
// shape, {"error":{"code":...,"message":"..."}}, with both. An empty body,
// or one of another shape (a gateway's or a load balancer's page), is not:
// its 404 is an error, never "gone".
func ownError(body []byte) bool {
	var b struct {
		Error *struct {
			Code    json.RawMessage `json:"code"`
			Message string          `json:"message"`
		} `json:"error"`
	}
	return json.Unmarshal(body, &b) == nil && b.Error != nil && len(b.Error.Code) > 0 && string(b.Error.Code) != "null" &&
		b.Error.Message != ""
}

func (p *Provider) decodeError(status int, body []byte, h http.Header) error {
	e := &APIError{Status: status, retry: apiclient.ParseRetryAfter(h, p.cfg.Now())}
	// The code is a string or a number ({"code":27}): either way the
	// message is kept.
	var b struct {
		Error struct {
			Code    json.RawMessage `json:"code"`
			Message string          `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &b) == nil {
		e.Message = b.Error.Message
		if json.Unmarshal(b.Error.Code, &e.Code) != nil {
			e.Code = string(b.Error.Code) // a number, as written
		}
	}
	return e
}

// call calls the API as the sub-account (as the partner alone when sub is
// empty). Its errors carry onboard's kinds (see APIError).
func (p *Provider) call(ctx context.Context, sub, method, path string, in, out any) error {
	tok, err := p.token(sub)
	if err != nil {
		return fmt.Errorf("%w: %w", onboard.ErrConfig, err)
	}
	c := *p.api
	c.Prepare = func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
	return c.Do(ctx, method, path, in, out)
}

// token returns a partner JWT for the sub-account (none when sub is
// empty): RS256, claims tokenType "powered-by", iat, exp, iss and sub. A
// token is reused until four fifths of its lifetime have passed.
func (p *Provider) token(sub string) (string, error) {
	now := p.cfg.Now()
	p.mu.Lock()
	t, ok := p.tokens[sub]
	p.mu.Unlock()
	if ok && now.Before(t.renewFrom) {
		return t.raw, nil
	}
	claims := jwt.MapClaims{
		"tokenType": "powered-by",
		"iat":       now.Unix(),
		"exp":       now.Add(p.cfg.TokenLifetime).Unix(),
		"iss":       p.cfg.AccountID,
	}
	if sub != "" {
		claims["sub"] = sub
	}
	raw, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(p.key)
	if err != nil {
		return "", fmt.Errorf("%w: signing: %v", ErrKey, err)
	}
	p.mu.Lock()
	p.tokens[sub] = token{raw, now.Add(p.cfg.TokenLifetime * 4 / 5)}
	p.mu.Unlock()
	return raw, nil
}

// digest returns a URL-safe SHA-256 digest of s under a label, prefixed
// with "onboard-" so that CData's console shows what made the value.
func digest(label, s string, size int) string {
	sum := sha256.Sum256([]byte("onboard/cdata/" + label + "\x00" + s))
	return "onboard-" + base64.RawURLEncoding.EncodeToString(sum[:size])
}

// connectionExternalID is the externalId given to the connection flow
// flowID creates: a digest of the flow id, so the id itself never goes
// into CData's records.
func connectionExternalID(flowID string) string { return digest("flow", flowID, 18) }

// accountExternalID is the externalId of the tenant's sub-account: the
// full SHA-256 digest of the tenant id, so that any two tenant ids
// (whatever their length, prefixes or characters) map to two sub-accounts,
// and no tenant id can name another account's id.
func accountExternalID(tenant string) string { return digest("tenant", tenant, sha256.Size) }

// SubAccount returns the tenant's sub-account id, found or created: by
// Config.SubAccount when set, or else the sub-account whose externalId is
// a digest of the tenant id (its accountName is the tenant id). Found
// sub-accounts are remembered.
func (p *Provider) SubAccount(ctx context.Context, tenant string) (string, error) {
	return p.subAccount(ctx, tenant, true)
}

// subAccount returns the tenant's sub-account id; without create, ""
// when the tenant has none, and none is created.
func (p *Provider) subAccount(ctx context.Context, tenant string, create bool) (string, error) {
	lookup := func() (string, error) {
		if p.cfg.SubAccount != nil {
			return p.cfg.SubAccount(ctx, tenant)
		}
		return p.findAccount(ctx, tenant)
	}
	// none reports a lookup that found no sub-account. CData documents only
	// the lookup's 200: when creating, an account it does not have answered
	// with another 4xx than 404 is none too, and the create (which looks up
	// again after a conflict) decides. (Lookups are shared between callers,
	// so this is decided here, by each caller.)
	none := func(err error) bool {
		return errors.Is(err, memo.ErrEmpty) || (create && p.cfg.SubAccount == nil && errors.Is(err, onboard.ErrRefused))
	}
	sub, err := p.subs.Get(ctx, tenant, lookup)
	switch {
	case err == nil:
		return sub, nil
	case !none(err):
		return "", err
	case !create:
		return "", nil
	case p.cfg.SubAccount != nil:
		return "", fmt.Errorf("%w: Config.SubAccount gave no sub-account for tenant %q", onboard.ErrConfig, tenant)
	}
	// One creation for concurrent first starts of a tenant. A creation
	// that ended after this caller's lookup is remembered by then, or found
	// by looking again; what is created is remembered before the next
	// caller may enter.
	return memo.Do(ctx, &p.group, "account\x00"+tenant, func() (string, error) {
		if sub, err := p.subs.Get(ctx, tenant, lookup); !none(err) {
			return sub, err
		}
		sub, err := p.createAccount(ctx, tenant)
		if err == nil {
			p.subs.Set(tenant, sub)
		}
		return sub, err
	})
}

// account is a sub-account as GET /poweredby/account/{id} answers it.
type account struct {
	ID         string `json:"id"`
	ExternalID string `json:"externalId"`
}

// findAccount looks up the tenant's sub-account by its externalId: ""
// when CData has none (404). The path takes an id or an externalId, so
// the answer must carry exactly the externalId asked for: another
// account that happens to have it as its id is never taken.
func (p *Provider) findAccount(ctx context.Context, tenant string) (string, error) {
	ext := accountExternalID(tenant)
	var a account
	err := p.call(ctx, "", http.MethodGet, "/poweredby/account/"+url.PathEscape(ext), nil, &a)
	switch {
	case apiclient.NotFound(err):
		return "", nil
	case err != nil:
		return "", err
	case a.ExternalID != ext || a.ID == "":
		return "", fmt.Errorf("%w: CData answered account %q with externalId %q for the sub-account of tenant %q (externalId %q)",
			onboard.ErrProvider, a.ID, a.ExternalID, tenant, ext)
	}
	return a.ID, nil
}

// createAccount creates the tenant's sub-account. When the create fails
// (a conflict: another instance created it first; or its answer was
// lost), the account is looked up again.
func (p *Provider) createAccount(ctx context.Context, tenant string) (string, error) {
	ext := accountExternalID(tenant)
	// CData's Account API documents the id as accountId; its older page
	// for the same call as id. Either is taken.
	var out struct {
		AccountID  string `json:"accountId"`
		ID         string `json:"id"`
		ExternalID string `json:"externalId"`
	}
	err := p.call(ctx, "", http.MethodPost, "/poweredby/account/create",
		map[string]string{"externalId": ext, "accountName": tenant}, &out)
	if err == nil {
		if out.AccountID == "" {
			out.AccountID = out.ID
		}
		if out.AccountID == "" || (out.ExternalID != "" && out.ExternalID != ext) {
			return "", fmt.Errorf("%w: %w: account/create answered account %q with externalId %q, want %q",
				onboard.ErrProvider, apiclient.ErrMalformed, out.AccountID, out.ExternalID, ext)
		}
		p.cfg.Logger.InfoContext(ctx, "cdata: created sub-account", "tenant", tenant, "account", out.AccountID)
		return out.AccountID, nil
	}
	if ctx.Err() != nil {
		return "", err
	}
	sub, ferr := p.findAccount(ctx, tenant)
	if ferr != nil || sub == "" {
		return "", err
	}
	return sub, nil
}

// Begin asks CData for the hosted Add Connection page of flow f (or, for
// a reconnect, the Edit Connection page of its connection) in the
// tenant's sub-account, which is created on the tenant's first start.
// The body of connection/create is the return URL (redirectURL), the
// flow's externalId (a digest of the flow id), and the data source and
// name as the user typed them (the name only with a data source: CData
// ignores it otherwise).
//
// A create rate-limited with 429 is repeated within ctx's deadline. A
// create whose answer was lost (a network error, a 5xx, junk) is
// repeated once, and only after listing the flow's externalId shows that
// no connection was saved with it (a lost create leaves nothing
// behind); otherwise Begin fails and Cancel deletes what was saved.
func (p *Provider) Begin(ctx context.Context, f onboard.Flow, returnURL string) (string, error) {
	sub, err := p.subAccount(ctx, f.Owner.Tenant, !f.Reconnect)
	if err != nil {
		return "", err
	}
	if sub == "" { // a reconnect in a tenant without a sub-account
		return "", fmt.Errorf("%w: tenant %q has no CData sub-account, so it has no connection %q",
			onboard.ErrUnknownConnection, f.Owner.Tenant, f.ConnectionID)
	}
	if f.Reconnect {
		// Editing mints a link and changes nothing until the user saves,
		// so a lost answer can be asked for again as it is.
		return p.mint(ctx, sub, "/poweredby/connection/edit/"+url.PathEscape(f.ConnectionID),
			map[string]string{"redirectURL": returnURL}, "")
	}
	body := map[string]string{"redirectURL": returnURL, "externalId": connectionExternalID(f.ID)}
	if f.Source != "" {
		body["dataSource"] = f.Source
		if f.Name != "" {
			body["name"] = f.Name
		}
	}
	return p.mint(ctx, sub, "/poweredby/connection/create", body, body["externalId"])
}

// mint asks for a hosted page's link and returns it.
//
// When the answer is lost (a network error, a 5xx, junk), the request may
// or may not have been carried out. Either way nothing is left behind:
// CData makes no connection when it mints the link, only when the user
// saves on the hosted page, and the lost link reached nobody. A connection
// with the flow's externalId (ext) can therefore only exist if the link
// did reach someone; so before asking again, mint lists the sub-account's
// connections with ext, and asks again only when there is none. Otherwise
// the start fails, the flow is settled and Cancel deletes what was saved.
func (p *Provider) mint(ctx context.Context, sub, path string, body map[string]string, ext string) (string, error) {
	link, err := p.link(ctx, sub, path, body)
	if err == nil || p.cfg.Retries <= 0 || ctx.Err() != nil || !answerLost(err) {
		return link, err
	}
	if ext != "" {
		held, lerr := p.flowConnections(ctx, sub, ext)
		if lerr != nil {
			return "", err
		}
		if len(held) > 0 {
			return "", fmt.Errorf("%w: the answer of %s was lost and CData already holds connection %q with the flow's externalId; not asking again: %w",
				onboard.ErrProvider, path, held[0].ID, err)
		}
	}
	p.cfg.Logger.InfoContext(ctx, "cdata: the answer of a hosted page request was lost; asking once more", "path", path, "err", err)
	return p.link(ctx, sub, path, body)
}

// answerLost reports whether a failed call may have been carried out
// without its answer reaching us: a network error, a 5xx or junk, as
// opposed to a refusal (4xx) or a rate limit.
func answerLost(err error) bool {
	status := apiclient.Status(err)
	return (status == 0 && errors.Is(err, onboard.ErrProvider)) || status >= 500
}

// link posts body to path and returns the redirectURL answered.
func (p *Provider) link(ctx context.Context, sub, path string, body map[string]string) (string, error) {
	var out struct {
		RedirectURL string `json:"redirectURL"`
	}
	if err := p.call(ctx, sub, http.MethodPost, path, body, &out); err != nil {
		return "", err
	}
	if out.RedirectURL == "" {
		return "", &apiclient.Error{Op: "POST " + path, Kind: onboard.ErrProvider,
			Err: fmt.Errorf("%w: no redirectURL in the answer", apiclient.ErrMalformed)}
	}
	return out.RedirectURL, nil
}

// listed is one entry of GET /poweredby/connection/list.
type listed struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	DataSource string `json:"dataSource"`
	ExternalID string `json:"externalId"`
	Status     string `json:"status"`
}

// works reports whether a connection status of GET
// /poweredby/connection/list is one of a working connection:
// Authenticated, or Conditional, which CData reports for a connection
// (of its API connector) whose test depends on the connector's global
// settings and the tables added to it, not on its credentials. The other
// documented status, NotAuthenticated, and any status not documented are
// not.
func works(status string) bool { return status == "Authenticated" || status == "Conditional" }

// list lists the sub-account's connections selected by the documented
// filters q (driver, externalId).
func (p *Provider) list(ctx context.Context, sub string, q url.Values) ([]listed, error) {
	path := "/poweredby/connection/list"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Connections *[]listed `json:"connections"`
	}
	if err := p.call(ctx, sub, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	if out.Connections == nil { // {} or null: an answer that lists nothing is not an empty list
		return nil, fmt.Errorf("%w: %w: GET %s answered without its list of connections", onboard.ErrProvider, apiclient.ErrMalformed, path)
	}
	return *out.Connections, nil
}

// flowConnections returns the sub-account's connections whose externalId
// is exactly ext (at most one: CData keeps externalIds unique in a
// sub-account).
func (p *Provider) flowConnections(ctx context.Context, sub, ext string) ([]listed, error) {
	cs, err := p.list(ctx, sub, url.Values{"externalId": {ext}})
	return slices.DeleteFunc(cs, func(c listed) bool { return c.ExternalID != ext }), err
}

// Messages of connections that do not work.
const (
	msgTestFailed = "CData saved the connection, but its connection test failed. Check the credentials and reconnect it."
	msgNotAuthFmt = "CData reports the connection as %s: reconnect it and check its credentials."
)

// outcome maps a connection CData holds, and the status its hosted page
// reported (success or error), to onboard's. The name and data source are
// CData's, exactly as it reports them.
func outcome(c listed, pageStatus string) onboard.Connection {
	out := onboard.Connection{ID: c.ID, Name: c.Name, Source: c.DataSource, State: onboard.Connected}
	switch {
	case pageStatus != statusSuccess:
		out.State, out.Message = onboard.Failed, msgTestFailed
	case !works(c.Status):
		out.State, out.Message = onboard.Failed, fmt.Sprintf(msgNotAuthFmt, c.Status)
	}
	return out
}

// Complete verifies a return of flow f in the tenant's sub-account with
// one GET /poweredby/connection/list, filtered by the flow's externalId
// (a new connection) or by the data source (a reconnect), so its cost
// does not grow with the sub-account's connections.
//
// A result counts only with the cdata_connection_id of the connection
// this flow created (or, for a reconnect, edited); any other id is
// refused as forged (onboard.ErrForged). A return without an id
// (cdata_connection_status=none, or no parameters) is Abandoned even when
// a connection with the flow's externalId exists: then someone else's
// browser saved it, and only the page that saved a connection is told
// its id. The core then calls Cancel, which deletes it.
//
// With status success and a working connection (Authenticated or
// Conditional) the outcome is Connected; with status error, or a
// connection CData reports as NotAuthenticated (or any status it does not
// document), it is Failed,
// with the connection's ID (the connection was saved: the user can
// reconnect it) and a message saying why.
func (p *Provider) Complete(ctx context.Context, f onboard.Flow, ret url.Values) (onboard.Connection, error) {
	r, err := parseReturn(ret)
	if err != nil {
		return onboard.Connection{}, err
	}
	if r.ID == "" {
		return onboard.Connection{State: onboard.Abandoned, Message: "The setup was left without saving a connection."}, nil
	}
	if f.Reconnect && r.ID != f.ConnectionID {
		return onboard.Connection{}, fmt.Errorf("%w: the return names connection %q, but flow %s edits %q",
			onboard.ErrForged, r.ID, f.ID, f.ConnectionID)
	}
	sub, err := p.subAccount(ctx, f.Owner.Tenant, false)
	if err != nil {
		return onboard.Connection{}, err
	}
	if sub == "" {
		return onboard.Connection{}, fmt.Errorf("%w: tenant %q has no CData sub-account", onboard.ErrForged, f.Owner.Tenant)
	}
	var held []listed
	if f.Reconnect {
		q := url.Values{}
		if f.Source != "" {
			q.Set("driver", f.Source)
		}
		held, err = p.list(ctx, sub, q)
	} else {
		held, err = p.flowConnections(ctx, sub, connectionExternalID(f.ID))
	}
	if err != nil {
		return onboard.Connection{}, err
	}
	i := slices.IndexFunc(held, func(c listed) bool { return c.ID == r.ID })
	if i < 0 {
		return onboard.Connection{}, fmt.Errorf("%w: CData holds no connection %q of flow %s in the sub-account of tenant %q",
			onboard.ErrForged, r.ID, f.ID, f.Owner.Tenant)
	}
	c := held[i]
	if c.Name == "" {
		c.Name = r.Name
	}
	return outcome(c, r.Status), nil
}

// Cancel removes what flow f made. For a new connection it deletes every
// connection of the tenant's sub-account with the flow's externalId;
// nothing there is not an error. For a reconnect, which the core cancels
// only to quarantine a connection whose edit came back in another
// browser, it deletes the connection: CData has no way to disable one,
// and what was entered on the page must not be used.
func (p *Provider) Cancel(ctx context.Context, f onboard.Flow) error {
	sub, err := p.subAccount(ctx, f.Owner.Tenant, false)
	if err != nil || sub == "" {
		return err
	}
	if f.Reconnect {
		return p.deleteConnection(ctx, sub, f.ConnectionID)
	}
	held, err := p.flowConnections(ctx, sub, connectionExternalID(f.ID))
	if err != nil {
		return err
	}
	for _, c := range held {
		if err := p.deleteConnection(ctx, sub, c.ID); err != nil {
			return err
		}
		p.cfg.Logger.InfoContext(ctx, "cdata: deleted the connection of a cancelled flow", "flow", f.ID,
			"tenant", f.Owner.Tenant, "connection", c.ID)
	}
	return nil
}

// Delete deletes the connection at CData. A connection (or sub-account)
// CData no longer has is not an error.
func (p *Provider) Delete(ctx context.Context, c onboard.Connection) error {
	sub, err := p.subAccount(ctx, c.Owner.Tenant, false)
	if err != nil || sub == "" {
		return err
	}
	return p.deleteConnection(ctx, sub, c.ID)
}

func (p *Provider) deleteConnection(ctx context.Context, sub, id string) error {
	return apiclient.IgnoreNotFound(p.call(ctx, sub, http.MethodDelete, "/poweredby/connection/delete/"+url.PathEscape(id), nil, nil))
}

// Refresh lists the tenant's sub-account once (GET
// /poweredby/connection/list) and reports each connection of cs whose
// state differs: Deleted for one CData no longer holds, Failed with a
// message for one neither Authenticated nor Conditional, Connected for one
// that is again. Events have a zero At: they are observations. No
// sub-account is created; a tenant without one, whose connections are
// stored, is an error, as is a list without its connections (a
// sub-account missing or an empty answer is never taken for every
// connection deleted). On an error nothing is reported and the error is
// returned.
func (p *Provider) Refresh(ctx context.Context, tenant string, cs []onboard.Connection) ([]onboard.Event, error) {
	sub, err := p.subAccount(ctx, tenant, false)
	switch {
	case err != nil:
		return nil, err
	case sub == "" && len(cs) > 0:
		// The connections were made in the tenant's sub-account: one not
		// found now is an answer to doubt, not a reason to report them all
		// deleted.
		return nil, fmt.Errorf("%w: CData found no sub-account for tenant %q, which has %d connections stored",
			onboard.ErrRefused, tenant, len(cs))
	case sub == "":
		return nil, nil
	}
	held, err := p.list(ctx, sub, nil)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]listed, len(held))
	for _, c := range held {
		byID[c.ID] = c
	}
	var out []onboard.Event
	for _, c := range cs {
		h, ok := byID[c.ID]
		switch {
		case !ok:
			out = append(out, onboard.Event{ConnectionID: c.ID, Deleted: true})
		case works(h.Status) && c.State != onboard.Connected:
			out = append(out, onboard.Event{ConnectionID: c.ID, State: onboard.Connected})
		case !works(h.Status) && c.State != onboard.Failed:
			out = append(out, onboard.Event{ConnectionID: c.ID, State: onboard.Failed,
				Message: fmt.Sprintf(msgNotAuthFmt, h.Status)})
		}
	}
	return out, nil
}

// Sources returns the data sources CData offers, for a picker. It never
// creates a sub-account: it lists as the tenant's sub-account when the
// tenant has one, and otherwise with the partner's token alone (no sub
// claim). CData documents the sub claim as optional only for account
// creation and listing, so it may refuse the latter (ErrUnauthorized);
// an app can then start a flow without a data source, and CData's page
// offers its own picker. Lists are cached for Config.SourcesTTL.
func (p *Provider) Sources(ctx context.Context, tenant string) ([]string, error) {
	sub, err := p.subAccount(ctx, tenant, false)
	if err != nil {
		return nil, err
	}
	now := p.cfg.Now()
	p.mu.Lock()
	c, ok := p.srcs[sub]
	p.mu.Unlock()
	if ok && now.Sub(c.at) < p.cfg.SourcesTTL {
		return slices.Clone(c.list), nil
	}
	list, err := memo.Do(ctx, &p.group, "sources\x00"+sub, func() ([]string, error) {
		var out struct {
			DataSources []struct {
				DataSource string `json:"dataSource"`
			} `json:"dataSources"`
		}
		if err := p.call(ctx, sub, http.MethodGet, "/poweredby/sources/list", nil, &out); err != nil {
			return nil, err
		}
		list := make([]string, 0, len(out.DataSources))
		for _, d := range out.DataSources {
			if d.DataSource != "" {
				list = append(list, d.DataSource)
			}
		}
		return list, nil
	})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.srcs[sub] = sources{list, now}
	p.mu.Unlock()
	return slices.Clone(list), nil
}

// Values of cdata_connection_status.
const (
	statusSuccess = "success"
	statusError   = "error"
	statusNone    = "none"
)

// result is what the browser brought back from the hosted page.
type result struct {
	ID, Name, Status string
}

// parseReturn reads the cdata_connection_* parameters. A result without
// an id (status none, or no parameters) is valid: nothing was saved in
// this browser. It refuses repeated or oversized parameters, an unknown
// status, and an id with status none or without a status, with errors
// wrapping onboard.ErrBadRequest.
func parseReturn(v url.Values) (result, error) {
	r := result{ID: v.Get("cdata_connection_id"), Name: v.Get("cdata_connection_name"), Status: v.Get("cdata_connection_status")}
	switch {
	case len(v["cdata_connection_status"]) > 1 || len(v["cdata_connection_id"]) > 1 || len(v["cdata_connection_name"]) > 1:
		return result{}, fmt.Errorf("%w: repeated cdata_connection parameters", onboard.ErrBadRequest)
	case len(r.ID) > 128 || len(r.Name) > 512:
		return result{}, fmt.Errorf("%w: cdata_connection parameters too long", onboard.ErrBadRequest)
	case r.Status != statusSuccess && r.Status != statusError && r.Status != statusNone && r.Status != "":
		return result{}, fmt.Errorf("%w: cdata_connection_status %q", onboard.ErrBadRequest, r.Status)
	case r.ID != "" && (r.Status == statusNone || r.Status == ""):
		return result{}, fmt.Errorf("%w: cdata_connection_id with cdata_connection_status %q", onboard.ErrBadRequest, r.Status)
	}
	return r, nil
}
