// Package cdatatest emulates the CData Connect AI Embed API and its hosted
// Add Connection page, for offline development and tests.
//
// It checks the partner's JWT as CData does (RS256 only, signature,
// tokenType "powered-by", iss, exp, and sub where a sub-account is
// needed), keeps sub-accounts (GET /account/{idOrExternalId} matches an
// id first, then an externalId) and their connections, enforces unique
// externalId values per sub-account, and serves the hosted page, whose
// link expires after 180 seconds like the real one. After Save & Test and
// Return to, it redirects to the partner's redirectURL with exactly the
// documented parameters: cdata_connection_id, cdata_connection_name and
// cdata_connection_status (success, error or none). Creating or editing a
// connection through the API only mints a link: a connection is made when
// the user saves on the hosted page. What Save & Test
// saved is known only to the browser that saved it (the page keeps it, as
// CData's page keeps the answer of its internal API call): the same link
// opened in another browser starts afresh, and its Return to reports
// none.
//
// Knobs for tests: API (faults such as 429 or a lost answer, and the
// record of requests), SetStatus (a connection that stops
// authenticating), Remove (a connection deleted in CData's own UI),
// AllConnections (every connection of every sub-account, to assert that
// nothing is left behind), and Options.SourcesWithoutSub.
//
// Serve it on loopback and point the provider's BaseURL at URL+"/api":
//
//	emu, srv := cdatatest.NewServer(cdatatest.Options{AccountID: "oem-1", PublicKey: &key.PublicKey})
//	defer srv.Close()
//	p, _ := cdata.New(cdata.Config{BaseURL: srv.URL + "/api", AccountID: "oem-1", PrivateKey: key})
//
// On the hosted page the connection test passes for any credential except
// an empty one or "fail"; the credential "conditional" saves a connection
// whose status is Conditional (as CData reports for its API connector),
// and the page reports success.
package cdatatest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onboardkit/onboard/providers/emulate"
)

// Connection statuses, as the list endpoint reports them.
const (
	Authenticated    = "Authenticated"
	NotAuthenticated = "NotAuthenticated"
	Conditional      = "Conditional"
)

// DefaultLinkTTL is the lifetime of a hosted page link.
const DefaultLinkTTL = 180 * time.Second

// Options configure a Server.
type Options struct {
	// AccountID is the parent (OEM) account id the JWT's iss must name.
	AccountID string
	// PublicKey is the partner's registered public key.
	PublicKey *rsa.PublicKey
	// DropRedirectQuery drops query parameters already on redirectURL
	// when redirecting back (whether CData keeps them is not documented).
	DropRedirectQuery bool
	// LinkTTL is the hosted page link's lifetime. Default 180 seconds.
	LinkTTL time.Duration
	// Sources are the data sources offered. Default a short list.
	Sources []string
	// SourcesWithoutSub lets GET /poweredby/sources/list be called with
	// the partner's token alone (no sub claim). CData documents sub as
	// optional only for account creation and listing, so by default the
	// call needs a sub-account, like every connection call.
	SourcesWithoutSub bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Server is the emulator. Its API, under /api/poweredby, can be made to
// fail with API.Fail; the hosted page is at /oem/user/connections/edit.
type Server struct {
	// API injects faults into, and records, the API calls.
	API *emulate.API

	opt      Options
	handler  http.Handler
	mu       sync.Mutex
	accounts map[string]*account // by id
	links    map[string]*link    // by token
}

type account struct {
	ID, ExternalID, Name string
	Created              time.Time
	conns                []*Connection
}

// Connection is a connection as the emulator holds it.
type Connection struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	DataSource   string    `json:"dataSource"`
	LastModified time.Time `json:"lastModified"`
	ExternalID   string    `json:"externalId,omitempty"`
	Status       string    `json:"status"`
}

type link struct {
	sub, driver, name, externalID, redirect, editID string
	editableName                                    bool
	exp                                             time.Time
	// saved is what Save & Test saved, by browser (see browserCookie).
	saved map[string]*Connection
}

// New returns an emulator.
func New(opt Options) *Server {
	if opt.LinkTTL == 0 {
		opt.LinkTTL = DefaultLinkTTL
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if len(opt.Sources) == 0 {
		opt.Sources = []string{"ActOn", "ExcelOnline", "GoogleSheets", "HubSpot", "MySQL", "PostgreSQL", "Salesforce", "Snowflake"}
	}
	s := &Server{
		opt:      opt,
		accounts: make(map[string]*account),
		links:    make(map[string]*link),
		API: &emulate.API{ErrorBody: func(status int) string {
			return errorJSON(http.StatusText(status), "emulated failure")
		}},
	}
	api := http.NewServeMux()
	api.HandleFunc("POST /api/poweredby/account/create", s.auth(false, s.createAccount))
	api.HandleFunc("GET /api/poweredby/account/list", s.auth(false, s.listAccounts))
	api.HandleFunc("GET /api/poweredby/account/{id}", s.auth(false, s.getAccount))
	api.HandleFunc("POST /api/poweredby/connection/create", s.auth(true, s.createConnection))
	api.HandleFunc("GET /api/poweredby/connection/list", s.auth(true, s.listConnections))
	api.HandleFunc("POST /api/poweredby/connection/edit/{id}", s.auth(true, s.editConnection))
	api.HandleFunc("DELETE /api/poweredby/connection/delete/{id}", s.auth(true, s.deleteConnection))
	api.HandleFunc("GET /api/poweredby/sources/list", s.auth(!opt.SourcesWithoutSub, s.listSources))
	mux := http.NewServeMux()
	mux.Handle("/api/", s.API.Wrap(api))
	mux.HandleFunc("GET /oem/user/connections/edit", s.page)
	mux.HandleFunc("POST /oem/user/connections/edit", s.submit)
	s.handler = mux
	return s
}

// NewServer returns an emulator served on loopback. Close the server when
// done.
func NewServer(opt Options) (*Server, *httptest.Server) {
	s := New(opt)
	return s, httptest.NewServer(s)
}

// ServeHTTP serves the API and the hosted page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func errorJSON(code, msg string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	return string(b)
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintln(w, errorJSON(code, msg))
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// auth checks the bearer JWT and passes the sub-account (nil when the
// token has no sub and the call does not need one).
func (s *Server) auth(needSub bool, next func(http.ResponseWriter, *http.Request, *account)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			fail(w, http.StatusUnauthorized, "Unauthorized", "missing bearer token")
			return
		}
		claims := jwt.MapClaims{}
		_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return s.opt.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
			jwt.WithIssuer(s.opt.AccountID), jwt.WithTimeFunc(s.opt.Now))
		if err != nil {
			fail(w, http.StatusUnauthorized, "Unauthorized", "invalid token: "+err.Error())
			return
		}
		if claims["tokenType"] != "powered-by" {
			fail(w, http.StatusUnauthorized, "Unauthorized", "tokenType must be powered-by")
			return
		}
		if _, ok := claims["iat"]; !ok {
			fail(w, http.StatusUnauthorized, "Unauthorized", "iat is required")
			return
		}
		sub, _ := claims["sub"].(string)
		if sub == "" {
			if needSub {
				fail(w, http.StatusUnauthorized, "Unauthorized", "sub (the sub-account id) is required")
				return
			}
			next(w, r, nil)
			return
		}
		s.mu.Lock()
		acct := s.accounts[sub]
		s.mu.Unlock()
		if acct == nil {
			fail(w, http.StatusUnauthorized, "Unauthorized", "unknown sub-account")
			return
		}
		next(w, r, acct)
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "BadRequest", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

type accountJSON struct {
	ID          string    `json:"id"`
	ExternalID  string    `json:"externalId"`
	AccountName string    `json:"accountName"`
	Created     time.Time `json:"created"`
}

func (a *account) json() accountJSON { return accountJSON{a.ID, a.ExternalID, a.Name, a.Created} }

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request, _ *account) {
	var in struct{ ExternalID, AccountName string }
	if !decode(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.ExternalID != "" {
		for _, a := range s.accounts {
			if a.ExternalID == in.ExternalID {
				fail(w, http.StatusConflict, "Conflict", "an account with this externalId exists")
				return
			}
		}
	}
	a := &account{ID: newID(), ExternalID: in.ExternalID, Name: in.AccountName, Created: s.opt.Now().UTC()}
	s.accounts[a.ID] = a
	emulate.JSON(w, http.StatusOK, map[string]any{"accountId": a.ID, "externalId": a.ExternalID, "createdTime": a.Created})
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request, _ *account) {
	s.mu.Lock()
	out := make([]accountJSON, 0, len(s.accounts))
	for _, a := range s.accounts {
		out = append(out, a.json())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b accountJSON) int { return a.Created.Compare(b.Created) })
	emulate.JSON(w, http.StatusOK, map[string]any{"accounts": out})
}

// getAccount answers GET /account/{accountIdOrExternalId}: the account
// with that id, or else the one with that externalId.
func (s *Server) getAccount(w http.ResponseWriter, r *http.Request, _ *account) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.accounts[id]; a != nil {
		emulate.JSON(w, http.StatusOK, a.json())
		return
	}
	for _, a := range s.accounts {
		if a.ExternalID != "" && a.ExternalID == id {
			emulate.JSON(w, http.StatusOK, a.json())
			return
		}
	}
	fail(w, http.StatusNotFound, "NotFound", "account not found")
}

func (s *Server) knownSource(name string) (string, bool) {
	for _, src := range s.opt.Sources {
		if strings.EqualFold(src, name) {
			return src, true
		}
	}
	return "", false
}

// hostedURL mints a link to the hosted page.
func (s *Server) hostedURL(r *http.Request, l *link) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	l.exp = s.opt.Now().Add(s.opt.LinkTTL)
	s.links[tok] = l
	q := url.Values{"token": {tok}, "redirectUrl": {l.redirect}}
	if l.driver != "" {
		q.Set("driver", l.driver)
	}
	return emulate.BaseURL(r) + "/oem/user/connections/edit?" + q.Encode()
}

// linkRequest is the body of connection/create and connection/edit.
type linkRequest struct {
	RedirectURL  string  `json:"redirectURL"`
	DataSource   *string `json:"dataSource"`
	Name         *string `json:"name"`
	ExternalID   *string `json:"externalId"`
	EditableName *bool   `json:"editableName"`
}

func readLinkRequest(w http.ResponseWriter, r *http.Request) (linkRequest, bool) {
	var in linkRequest
	if !decode(w, r, &in) {
		return in, false
	}
	if !emulate.ValidRedirect(in.RedirectURL) {
		fail(w, http.StatusBadRequest, "BadRequest", "redirectURL is required and must be an absolute URL")
		return in, false
	}
	return in, true
}

func (s *Server) createConnection(w http.ResponseWriter, r *http.Request, a *account) {
	in, ok := readLinkRequest(w, r)
	if !ok {
		return
	}
	l := &link{sub: a.ID, redirect: in.RedirectURL, editableName: in.EditableName == nil || *in.EditableName,
		saved: make(map[string]*Connection)}
	if in.DataSource != nil && *in.DataSource != "" {
		src, ok := s.knownSource(*in.DataSource)
		if !ok {
			fail(w, http.StatusBadRequest, "BadRequest", "unknown dataSource "+*in.DataSource)
			return
		}
		l.driver = src
		if in.Name != nil {
			l.name = *in.Name // ignored without a dataSource
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.ExternalID != nil && *in.ExternalID != "" {
		for _, c := range a.conns {
			if c.ExternalID == *in.ExternalID {
				fail(w, http.StatusConflict, "Conflict", "a connection with this externalId exists")
				return
			}
		}
		l.externalID = *in.ExternalID
	}
	emulate.JSON(w, http.StatusOK, map[string]string{"redirectURL": s.hostedURL(r, l)})
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request, a *account) {
	driver, ext := r.URL.Query().Get("driver"), r.URL.Query().Get("externalId")
	s.mu.Lock()
	out := make([]Connection, 0, len(a.conns))
	for _, c := range a.conns {
		if (driver == "" || strings.EqualFold(driver, c.DataSource)) && (ext == "" || ext == c.ExternalID) {
			out = append(out, *c)
		}
	}
	s.mu.Unlock()
	emulate.JSON(w, http.StatusOK, map[string]any{"connections": out})
}

func (a *account) conn(id string) (int, *Connection) {
	for i, c := range a.conns {
		if c.ID == id {
			return i, c
		}
	}
	return -1, nil
}

func (s *Server) editConnection(w http.ResponseWriter, r *http.Request, a *account) {
	in, ok := readLinkRequest(w, r) // dataSource and externalId are not edited
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, c := a.conn(r.PathValue("id"))
	if c == nil {
		fail(w, http.StatusNotFound, "NotFound", "connection not found")
		return
	}
	l := &link{sub: a.ID, redirect: in.RedirectURL, editID: c.ID, driver: c.DataSource, name: c.Name,
		externalID: c.ExternalID, editableName: in.EditableName == nil || *in.EditableName,
		saved: make(map[string]*Connection)}
	if in.Name != nil {
		l.name = *in.Name
	}
	emulate.JSON(w, http.StatusOK, map[string]string{"redirectURL": s.hostedURL(r, l)})
}

func (s *Server) deleteConnection(w http.ResponseWriter, r *http.Request, a *account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := a.conn(r.PathValue("id"))
	if i < 0 {
		fail(w, http.StatusNotFound, "NotFound", "connection not found")
		return
	}
	a.conns = slices.Delete(a.conns, i, i+1)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) listSources(w http.ResponseWriter, r *http.Request, _ *account) {
	out := make([]map[string]string, len(s.opt.Sources))
	for i, src := range s.opt.Sources {
		out[i] = map[string]string{"dataSource": src}
	}
	emulate.JSON(w, http.StatusOK, map[string]any{"dataSources": out})
}

// Connections returns a copy of a sub-account's connections.
func (s *Server) Connections(subAccount string) []Connection {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[subAccount]
	if a == nil {
		return nil
	}
	out := make([]Connection, len(a.conns))
	for i, c := range a.conns {
		out[i] = *c
	}
	return out
}

// Held is a connection and the sub-account that holds it.
type Held struct {
	SubAccount string
	Connection
}

// AllConnections returns every connection of every sub-account, with its
// externalId, ordered by sub-account and then creation: what a test
// checks to find connections left behind.
func (s *Server) AllConnections() []Held {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Held
	for _, a := range s.accounts {
		for _, c := range a.conns {
			out = append(out, Held{a.ID, *c})
		}
	}
	slices.SortStableFunc(out, func(a, b Held) int { return strings.Compare(a.SubAccount, b.SubAccount) })
	return out
}

// Account returns the id of the sub-account with this externalId.
func (s *Server) Account(externalID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accounts {
		if a.ExternalID == externalID {
			return a.ID, true
		}
	}
	return "", false
}

// Accounts returns every sub-account, oldest first.
func (s *Server) Accounts() []Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Account, 0, len(s.accounts))
	for _, a := range s.accounts {
		out = append(out, Account{a.ID, a.ExternalID, a.Name, a.Created})
	}
	slices.SortStableFunc(out, func(a, b Account) int { return a.Created.Compare(b.Created) })
	return out
}

// Account is a sub-account as the emulator holds it.
type Account struct {
	ID, ExternalID, AccountName string
	Created                     time.Time
}

// AddAccount stores a sub-account with a chosen id directly (for tests of
// ids that look like other accounts' externalIds). An empty ID is made up.
func (s *Server) AddAccount(a Account) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.ID == "" {
		a.ID = newID()
	}
	if s.accounts[a.ID] != nil {
		return "", fmt.Errorf("cdatatest: sub-account %q exists", a.ID)
	}
	s.accounts[a.ID] = &account{ID: a.ID, ExternalID: a.ExternalID, Name: a.AccountName, Created: s.opt.Now().UTC()}
	return a.ID, nil
}

// AddConnection stores a connection in a sub-account directly, as if made
// elsewhere (for tests of forged returns). An empty ID is made up.
func (s *Server) AddConnection(subAccount string, c Connection) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[subAccount]
	if a == nil {
		return fmt.Errorf("cdatatest: unknown sub-account %q", subAccount)
	}
	if c.ID == "" {
		c.ID = newID()
	}
	a.conns = append(a.conns, &c)
	return nil
}

// find returns the connection with this id, in whichever sub-account.
// Called with s.mu held.
func (s *Server) find(id string) (*account, int) {
	for _, a := range s.accounts {
		if i, _ := a.conn(id); i >= 0 {
			return a, i
		}
	}
	return nil, -1
}

// SetStatus changes a connection's status as CData does later on, when
// its credentials expire or are revoked (NotAuthenticated) or work again
// (Authenticated, or Conditional).
func (s *Server) SetStatus(id, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, i := s.find(id)
	if a == nil {
		return fmt.Errorf("cdatatest: unknown connection %q", id)
	}
	a.conns[i].Status, a.conns[i].LastModified = status, s.opt.Now().UTC()
	return nil
}

// Remove deletes a connection as a user of CData's own UI would, behind
// the app's back.
func (s *Server) Remove(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, i := s.find(id)
	if a == nil {
		return fmt.Errorf("cdatatest: unknown connection %q", id)
	}
	a.conns = slices.Delete(a.conns, i, i+1)
	return nil
}
