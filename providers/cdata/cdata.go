// Package cdata is the [onboard.Provider] for CData Connect AI Embed.
//
// A start calls POST /poweredby/connection/create with the flow's return
// URL and an externalId derived from the flow, and redirects the browser
// to the hosted Add Connection page. On the return, the
// cdata_connection_* parameters are never trusted alone: the provider
// lists the tenant's connections by that externalId (GET
// /poweredby/connection/list) and accepts only the connection this flow
// created, in the tenant's own sub-account.
//
// Each tenant is one CData sub-account: by default the provider finds or
// creates the sub-account whose externalId is the tenant id, and remembers
// it. Calls are authenticated with the partner's RS256 JWT, signed once
// per sub-account and reused until shortly before it expires.
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
	DefaultTimeout       = 15 * time.Second
	DefaultSourcesTTL    = time.Hour
)

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
	// TokenLifetime is the lifetime of signed JWTs. Default 5 minutes.
	TokenLifetime time.Duration
	// HTTPClient does the requests. Default a client with a 15 s timeout.
	HTTPClient *http.Client
	// Retries is how often an idempotent GET is repeated after a network
	// error, 5xx or 429. Default 2; negative means none.
	Retries int
	// SubAccount maps a tenant to its CData sub-account id. Default: find
	// or create the sub-account whose externalId is the tenant id.
	SubAccount func(ctx context.Context, tenant string) (string, error)
	// SourcesTTL is how long Sources caches the data source list.
	// Default one hour.
	SourcesTTL time.Duration
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Provider talks to CData Connect AI Embed. Build it with [New].
type Provider struct {
	cfg    Config
	key    *rsa.PrivateKey
	api    *apiclient.Client
	group  singleflight.Group
	mu     sync.Mutex
	tokens map[string]token // by sub-account ("" for none)
	subs   memo.Strings     // tenant -> sub-account
	srcs   map[string]sources
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
	_ onboard.Provider   = (*Provider)(nil)
	_ onboard.Deleter    = (*Provider)(nil)
	_ onboard.Reconciler = (*Provider)(nil)
)

// Errors.
var (
	// ErrKey is a private key that cannot be used.
	ErrKey = errors.New("cdata: unusable private key")
	// ErrUnauthorized is CData refusing the JWT: the key is not
	// registered, or the account id is wrong.
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
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
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
	p := &Provider{cfg: cfg, key: key, tokens: make(map[string]token),
		srcs: make(map[string]sources)}
	p.api = &apiclient.Client{
		HTTP: cfg.HTTPClient, Base: cfg.BaseURL, Retries: cfg.Retries,
		Backoff: 200 * time.Millisecond, MaxWait: 5 * time.Second,
		Decode: p.decodeError,
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

// APIError is an answer of the API other than 200.
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

// Is makes a 401 match ErrUnauthorized and every APIError match
// onboard.ErrProvider.
func (e *APIError) Is(target error) bool {
	return target == onboard.ErrProvider || (target == ErrUnauthorized && e.Status == http.StatusUnauthorized)
}

func (p *Provider) decodeError(status int, body []byte, h http.Header) error {
	e := &APIError{Status: status, retry: apiclient.ParseRetryAfter(h, p.cfg.Now())}
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &b) == nil {
		e.Code, e.Message = b.Error.Code, b.Error.Message
	}
	return e
}

// call calls the API as the sub-account (none when sub is empty).
func (p *Provider) call(ctx context.Context, sub, method, path string, in, out any) error {
	tok, err := p.Token(sub)
	if err != nil {
		return err
	}
	c := *p.api
	c.Prepare = func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
	err = c.Do(ctx, method, path, in, out)
	if err != nil && !errors.Is(err, onboard.ErrProvider) {
		err = fmt.Errorf("%w: %w", onboard.ErrProvider, err)
	}
	return err
}

// Token returns a partner JWT for the sub-account (none when sub is
// empty): RS256, claims tokenType "powered-by", iat, exp, iss and sub. A
// token is reused until four fifths of its lifetime have passed.
func (p *Provider) Token(sub string) (string, error) {
	now := p.cfg.Now()
	p.mu.Lock()
	t, ok := p.tokens[sub]
	p.mu.Unlock()
	if ok && now.Before(t.renewFrom) {
		return t.raw, nil
	}
	raw, err := p.sign(sub, now)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	p.tokens[sub] = token{raw, now.Add(p.cfg.TokenLifetime * 4 / 5)}
	p.mu.Unlock()
	return raw, nil
}

func (p *Provider) sign(sub string, now time.Time) (string, error) {
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
	return raw, nil
}

// ExternalID is the externalId given to the connection a flow creates: a
// digest of the flow id, so the id itself (a capability) never leaves the
// app.
func ExternalID(flowID string) string {
	sum := sha256.Sum256([]byte("onboard/cdata/" + flowID))
	return "onboard-" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// SubAccount returns the tenant's sub-account id: from the cache, from
// Config.SubAccount, or found or created with the tenant id as externalId.
func (p *Provider) SubAccount(ctx context.Context, tenant string) (string, error) {
	sub, err := p.subs.Get(tenant, func() (string, error) {
		if p.cfg.SubAccount != nil {
			return p.cfg.SubAccount(ctx, tenant)
		}
		return p.findOrCreateAccount(ctx, tenant)
	})
	if errors.Is(err, memo.ErrEmpty) {
		err = fmt.Errorf("%w: no sub-account for tenant %q", onboard.ErrProvider, tenant)
	}
	return sub, err
}

func (p *Provider) findOrCreateAccount(ctx context.Context, tenant string) (string, error) {
	var created struct {
		AccountID string `json:"accountId"`
	}
	err := p.call(ctx, "", http.MethodPost, "/poweredby/account/create",
		map[string]string{"externalId": tenant, "accountName": tenant}, &created)
	if err == nil && created.AccountID != "" {
		p.cfg.Logger.InfoContext(ctx, "cdata: created sub-account", "tenant", tenant, "account", created.AccountID)
		return created.AccountID, nil
	}
	var ae *APIError
	if err != nil && (!errors.As(err, &ae) || ae.Status >= 500 || ae.Status == http.StatusUnauthorized || ae.Status == http.StatusTooManyRequests) {
		return "", err
	}
	// The account exists (a conflict; its code is not documented): find it.
	var list struct {
		Accounts []struct {
			ID         string `json:"id"`
			ExternalID string `json:"externalId"`
		} `json:"accounts"`
	}
	if err := p.call(ctx, "", http.MethodGet, "/poweredby/account/list", nil, &list); err != nil {
		return "", err
	}
	for _, a := range list.Accounts {
		if a.ExternalID == tenant {
			return a.ID, nil
		}
	}
	return "", fmt.Errorf("%w: sub-account for tenant %q could not be created or found", onboard.ErrProvider, tenant)
}

// Begin asks CData for the hosted Add Connection page (or, for a
// reconnect, the Edit Connection page).
func (p *Provider) Begin(ctx context.Context, f *onboard.Flow) (string, error) {
	sub, err := p.SubAccount(ctx, f.Owner.Tenant)
	if err != nil {
		return "", err
	}
	if f.Data == nil {
		f.Data = make(map[string]string)
	}
	f.Data["sub"] = sub
	var out struct {
		RedirectURL string `json:"redirectURL"`
	}
	if f.Reconnect {
		err = p.call(ctx, sub, http.MethodPost, "/poweredby/connection/edit/"+url.PathEscape(f.ConnectionID),
			map[string]string{"redirectURL": f.ReturnURL}, &out)
	} else {
		ext := ExternalID(f.ID)
		f.Data["externalId"] = ext
		body := map[string]string{"redirectURL": f.ReturnURL, "externalId": ext}
		if f.Source != "" {
			body["dataSource"] = f.Source
			if f.Name != "" {
				body["name"] = f.Name
			}
		}
		err = p.call(ctx, sub, http.MethodPost, "/poweredby/connection/create", body, &out)
	}
	if err != nil {
		return "", err
	}
	if out.RedirectURL == "" {
		return "", fmt.Errorf("%w: %w: no redirectURL in the answer", onboard.ErrProvider, apiclient.ErrMalformed)
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

// flowConnections lists what CData holds for the flow: the connections
// with its externalId, or for a reconnect the connection it edits.
func (p *Provider) flowConnections(ctx context.Context, f *onboard.Flow) ([]listed, error) {
	sub := f.Data["sub"]
	if sub == "" {
		return nil, fmt.Errorf("%w: flow %s has no sub-account", onboard.ErrForged, f.ID)
	}
	q := url.Values{}
	if f.Reconnect {
		if f.Source != "" {
			q.Set("driver", f.Source)
		}
	} else {
		q.Set("externalId", f.Data["externalId"])
	}
	var out struct {
		Connections []listed `json:"connections"`
	}
	path := "/poweredby/connection/list"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if err := p.call(ctx, sub, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	var mine []listed
	for _, c := range out.Connections {
		if (f.Reconnect && c.ID == f.ConnectionID) || (!f.Reconnect && c.ExternalID == f.Data["externalId"]) {
			mine = append(mine, c)
		}
	}
	return mine, nil
}

// connection maps a listed connection to onboard's.
func connection(c listed, testFailed bool) onboard.Connection {
	out := onboard.Connection{ID: c.ID, Name: c.Name, Source: c.DataSource, State: onboard.Connected}
	if c.Status != "Authenticated" || testFailed {
		out.State = onboard.Failed
		out.Message = "The connection was saved, but its test failed (" + c.Status + "). Check the credentials and reconnect."
	}
	return out
}

// Complete verifies the return with GET /poweredby/connection/list in the
// tenant's sub-account. The cdata_connection_id must be the connection
// this flow created (or, for a reconnect, edited); otherwise the return
// is refused as forged.
func (p *Provider) Complete(ctx context.Context, f *onboard.Flow, ret url.Values) (onboard.Connection, error) {
	r, err := ParseReturn(ret)
	if err != nil {
		return onboard.Connection{}, err
	}
	mine, err := p.flowConnections(ctx, f)
	if err != nil {
		return onboard.Connection{}, err
	}
	if r.Status == StatusNone {
		if len(mine) == 0 || f.Reconnect {
			return onboard.Connection{State: onboard.Abandoned}, nil
		}
		// CData holds a connection for this flow after all: its word wins.
		return connection(mine[0], false), nil
	}
	for _, c := range mine {
		if c.ID == r.ID {
			return connection(c, r.Status == StatusError), nil
		}
	}
	return onboard.Connection{}, fmt.Errorf("%w: cdata holds no connection %q for flow %s in sub-account %s",
		onboard.ErrForged, r.ID, f.ID, f.Data["sub"])
}

// Reconcile asks CData whether a flow whose browser never came back made
// a connection.
func (p *Provider) Reconcile(ctx context.Context, f *onboard.Flow) (onboard.Connection, bool, error) {
	if !f.Reconnect {
		mine, err := p.flowConnections(ctx, f)
		if err != nil {
			return onboard.Connection{}, false, err
		}
		if len(mine) > 0 {
			return connection(mine[0], false), true, nil
		}
	}
	if f.Expired(p.cfg.Now()) {
		return onboard.Connection{State: onboard.Abandoned}, true, nil
	}
	return onboard.Connection{}, false, nil
}

// Delete deletes the tenant's connection at CData.
func (p *Provider) Delete(ctx context.Context, owner onboard.Owner, connectionID string) error {
	sub, err := p.SubAccount(ctx, owner.Tenant)
	if err != nil {
		return err
	}
	err = p.call(ctx, sub, http.MethodDelete, "/poweredby/connection/delete/"+url.PathEscape(connectionID), nil, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// Sources returns the data sources CData offers the tenant, for a picker.
// The list is cached for Config.SourcesTTL.
func (p *Provider) Sources(ctx context.Context, tenant string) ([]string, error) {
	sub, err := p.SubAccount(ctx, tenant)
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
	v, err, _ := p.group.Do("src\x00"+sub, func() (any, error) {
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
	list := v.([]string)
	p.mu.Lock()
	p.srcs[sub] = sources{list, now}
	p.mu.Unlock()
	return slices.Clone(list), nil
}

// Return statuses of cdata_connection_status.
const (
	StatusSuccess = "success"
	StatusError   = "error"
	StatusNone    = "none"
)

// Return is what the browser brought back from the hosted page.
type Return struct {
	ID, Name, Status string
}

// ParseReturn reads the cdata_connection_* parameters. It refuses an
// unknown status, a success or error without an id, and oversized values,
// with errors wrapping onboard.ErrBadRequest.
func ParseReturn(v url.Values) (Return, error) {
	r := Return{ID: v.Get("cdata_connection_id"), Name: v.Get("cdata_connection_name"), Status: v.Get("cdata_connection_status")}
	switch {
	case len(v["cdata_connection_status"]) > 1 || len(v["cdata_connection_id"]) > 1:
		return Return{}, fmt.Errorf("%w: repeated cdata_connection parameters", onboard.ErrBadRequest)
	case r.Status != StatusSuccess && r.Status != StatusError && r.Status != StatusNone:
		return Return{}, fmt.Errorf("%w: cdata_connection_status %q", onboard.ErrBadRequest, r.Status)
	case r.Status != StatusNone && r.ID == "":
		return Return{}, fmt.Errorf("%w: cdata_connection_id is missing", onboard.ErrBadRequest)
	case len(r.ID) > 128 || len(r.Name) > 512:
		return Return{}, fmt.Errorf("%w: cdata_connection parameters too long", onboard.ErrBadRequest)
	}
	return r, nil
}
