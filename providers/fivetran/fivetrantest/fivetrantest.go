// Package fivetrantest emulates the Fivetran REST API (groups,
// connections, Connect Card, webhooks) and the hosted Connect Card page,
// for offline development and tests.
//
// It behaves as Fivetran does over time:
//   - Calls need Basic auth (401) and "Accept: application/json;version=2"
//     (406); answers have Fivetran's {"code","message","data"} shape.
//   - Lists (groups, connections, webhooks) are paged with opaque cursors
//     (limit 1 to 1000, default 100). GET /v1/connections filters by
//     group_id and by exact schema; so does GET /v1/groups/{id}/connections.
//     List items carry no setup_tests and no config: GET
//     /v1/connections/{id} does.
//   - A connection's schema is unique in its group (409 on a duplicate);
//     group names are unique in the account (409).
//   - Connect Card URIs work for one day, and only the newest card of a
//     connection works. On the card, Save & Test passes for any credential
//     except an empty one or "fail" (setup_state connected, and
//     connection_successful); "fail" leaves the setup broken (setup_tests
//     as Options.FailedTests, and connection_failure). After a passing
//     Save & Test the card redirects to redirect_uri with
//     ?id=<connection id>; Close redirects without it. [Fill] plays the
//     user.
//   - Later changes are made with [Server.Sync], [Server.Break] and
//     [Server.Remove]; [Server.All] lists every connection for tests
//     that look for orphans.
//   - Paused connections do not sync. Resuming a connected connection
//     (PATCH paused false) starts its first sync at once, as does a
//     successful setup of an unpaused one: sync_start and sync_end.
//   - Registered webhooks receive deliveries signed with
//     X-Fivetran-Signature-256 (hex HMAC-SHA256 of the body). Their
//     created time is the provider's clock (Options.Now plus
//     Options.Skew) in whole seconds. Creating or activating a webhook
//     first POSTs a signed test event to its URL and refuses (400) unless
//     the URL answers 2xx. Deleting a connection, by the API or by
//     [Server.Remove], delivers delete_connector.
//
// Deliveries are sent synchronously by the request or method that causes
// them, before it returns.
package fivetrantest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/onboardkit/onboard/providers/emulate"
)

// Accept is the version header every call must send.
const Accept = "application/json;version=2"

// CardTTL is how long a Connect Card URI works.
const CardTTL = 24 * time.Hour

// Options configure a Server.
type Options struct {
	// APIKey and APISecret are the accepted Basic credentials.
	APIKey, APISecret string
	// DropRedirectQuery drops query parameters already on redirect_uri.
	DropRedirectQuery bool
	// Services are the accepted service names. Default a short list.
	Services []string
	// FailedTests are the setup tests a failing Save & Test records (the
	// connection's setup_tests). Nil means one failed test with a title
	// and a message; an empty, non-nil slice means no test detail at all.
	FailedTests []SetupTest
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Skew is how far the provider's clock runs ahead of Now (negative:
	// behind). Every time the emulator reports (webhook created,
	// created_at, succeeded_at) is on the provider's clock.
	Skew time.Duration
	// Client delivers webhooks. Default a client with a 5 s timeout.
	Client *http.Client
}

// Server is the emulator.
type Server struct {
	// API injects faults into, and records, the API calls.
	API *emulate.API

	opt        Options
	handler    http.Handler
	mu         sync.Mutex
	groups     map[string]*Group
	conns      map[string]*Connection
	schemas    map[[2]string]string // group id and schema -> connection id
	cards      map[string]*card     // by token
	webhooks   map[string]*Webhook
	deliveries []Delivery
}

// Group is a destination group.
type Group struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// SetupTest is one setup test result.
type SetupTest struct {
	Title   string `json:"title"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// Alert is one of a connection's tasks or warnings.
type Alert struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Status is a connection's status.
type Status struct {
	// SetupState is incomplete, connected or broken.
	SetupState string `json:"setup_state"`
	// SyncState is scheduled, syncing or paused.
	SyncState string  `json:"sync_state"`
	Tasks     []Alert `json:"tasks"`
	Warnings  []Alert `json:"warnings"`
}

// Connection is a connection as the emulator holds it.
type Connection struct {
	ID          string         `json:"id"`
	GroupID     string         `json:"group_id"`
	Service     string         `json:"service"`
	Schema      string         `json:"schema"`
	Paused      bool           `json:"paused"`
	CreatedAt   time.Time      `json:"created_at"`
	SucceededAt *time.Time     `json:"succeeded_at"`
	FailedAt    *time.Time     `json:"failed_at"`
	Status      Status         `json:"status"`
	SetupTests  []SetupTest    `json:"setup_tests,omitempty"`
	Config      map[string]any `json:"config,omitempty"`
	// Syncs counts the syncs the connection ran.
	Syncs int `json:"-"`
	card  string
}

type card struct {
	connID, redirect string
	exp              time.Time
}

// Webhook is a registered webhook. Its secret is never listed.
type Webhook struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	GroupID   string    `json:"group_id,omitempty"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	secret    string
}

// Delivery is one webhook delivery the emulator sent.
type Delivery struct {
	// Webhook is the id of the webhook delivered to (empty for the test
	// event of a webhook not created yet).
	Webhook    string
	URL, Event string
	// Connection is the connector_id of the payload.
	Connection string
	Body       []byte
	Signature  string
	// Status is the answer's status; 0 when the request failed.
	Status int
}

// New returns an emulator.
func New(opt Options) *Server {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if len(opt.Services) == 0 {
		opt.Services = []string{"salesforce", "hubspot", "google_sheets", "postgres", "snowflake", "stripe", "shopify"}
	}
	s := &Server{opt: opt, groups: map[string]*Group{}, conns: map[string]*Connection{},
		schemas: map[[2]string]string{}, cards: map[string]*card{},
		webhooks: map[string]*Webhook{},
		API: &emulate.API{ErrorBody: func(status int) string {
			code := strings.ReplaceAll(http.StatusText(status), " ", "")
			return fmt.Sprintf(`{"code":%q,"message":"emulated failure"}`, code)
		}}}
	api := http.NewServeMux()
	api.HandleFunc("POST /v1/groups", s.createGroup)
	api.HandleFunc("GET /v1/groups", s.listGroups)
	api.HandleFunc("GET /v1/groups/{id}", s.getGroup)
	api.HandleFunc("GET /v1/groups/{id}/connections", s.listConnections)
	api.HandleFunc("POST /v1/connections", s.createConnection)
	api.HandleFunc("GET /v1/connections", s.listConnections)
	api.HandleFunc("GET /v1/connections/{id}", s.getConnection)
	api.HandleFunc("PATCH /v1/connections/{id}", s.patchConnection)
	api.HandleFunc("DELETE /v1/connections/{id}", s.deleteConnection)
	api.HandleFunc("POST /v1/connections/{id}/connect-card", s.connectCard)
	api.HandleFunc("GET /v1/webhooks", s.listWebhooks)
	api.HandleFunc("GET /v1/webhooks/{id}", s.getWebhook)
	api.HandleFunc("POST /v1/webhooks/account", s.createWebhook)
	api.HandleFunc("POST /v1/webhooks/group/{group}", s.createWebhook)
	api.HandleFunc("PATCH /v1/webhooks/{id}", s.patchWebhook)
	api.HandleFunc("DELETE /v1/webhooks/{id}", s.deleteWebhook)
	mux := http.NewServeMux()
	mux.Handle("/v1/", s.API.Wrap(s.auth(api)))
	mux.HandleFunc("GET /connect-card/setup", s.page)
	mux.HandleFunc("POST /connect-card/setup", s.submit)
	s.handler = mux
	return s
}

// NewServer returns an emulator served on loopback.
func NewServer(opt Options) (*Server, *httptest.Server) {
	s := New(opt)
	return s, httptest.NewServer(s)
}

// ServeHTTP serves the API and the hosted page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// now is the provider's clock, in whole seconds.
func (s *Server) now() time.Time {
	return s.opt.Now().Add(s.opt.Skew).UTC().Truncate(time.Second)
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	emulate.JSON(w, status, map[string]string{"code": code, "message": msg})
}

func ok(w http.ResponseWriter, status int, data any) {
	emulate.JSON(w, status, map[string]any{"code": "Success", "message": "Operation performed.", "data": data})
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, secret, okAuth := r.BasicAuth()
		if !okAuth || key != s.opt.APIKey || secret != s.opt.APISecret {
			fail(w, http.StatusUnauthorized, "AuthFailed", "Missing or invalid API key or secret")
			return
		}
		if r.Header.Get("Accept") != Accept {
			fail(w, http.StatusNotAcceptable, "NotAcceptable", "Accept must be "+Accept)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func newID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "InvalidInput", "invalid JSON body")
		return false
	}
	return true
}

// page answers one page of items sorted by id, each shown with view,
// with Fivetran's cursor paging: the cursor is opaque (the last id of the
// page before).
func page[T any](w http.ResponseWriter, r *http.Request, items []T, id func(T) string, view func(T) any) {
	q := r.URL.Query()
	limit := 100
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			fail(w, http.StatusBadRequest, "InvalidInput", "limit must be a number from 1 to 1000")
			return
		}
		limit = n
	}
	slices.SortFunc(items, func(a, b T) int { return strings.Compare(id(a), id(b)) })
	start := 0
	if c := q.Get("cursor"); c != "" {
		after, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			fail(w, http.StatusBadRequest, "InvalidInput", "invalid cursor")
			return
		}
		start, _ = slices.BinarySearchFunc(items, string(after), func(it T, k string) int {
			if id(it) <= k {
				return -1
			}
			return 1
		})
	}
	end := min(start+limit, len(items))
	views := make([]any, 0, end-start)
	for _, it := range items[start:end] {
		views = append(views, view(it))
	}
	out := map[string]any{"items": views}
	if end < len(items) {
		out["next_cursor"] = base64.RawURLEncoding.EncodeToString([]byte(id(items[end-1])))
	}
	ok(w, http.StatusOK, out)
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) {
	var in struct{ Name string }
	if !decode(w, r, &in) {
		return
	}
	if in.Name == "" {
		fail(w, http.StatusBadRequest, "InvalidInput", "name is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if g.Name == in.Name {
			fail(w, http.StatusConflict, "NotUnique_Group", "Group with name '"+in.Name+"' already exists")
			return
		}
	}
	g := &Group{ID: newID("grp_"), Name: in.Name, CreatedAt: s.now()}
	s.groups[g.ID] = g
	ok(w, http.StatusCreated, g)
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	gs := make([]Group, 0, len(s.groups))
	for _, g := range s.groups {
		gs = append(gs, *g)
	}
	s.mu.Unlock()
	page(w, r, gs, func(g Group) string { return g.ID }, func(g Group) any { return g })
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := byPath(w, r, s.groups, "NotFound_Group", "Group"); g != nil {
		ok(w, http.StatusOK, g)
	}
}

type cardConfig struct {
	RedirectURI    string `json:"redirect_uri"`
	HideSetupGuide *bool  `json:"hide_setup_guide,omitempty"`
}

// issueCard makes a new Connect Card for c; older cards stop working.
// Called with s.mu held.
func (s *Server) issueCard(r *http.Request, c *Connection, cfg cardConfig) map[string]string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	if c.card != "" {
		delete(s.cards, c.card)
	}
	c.card = tok
	s.cards[tok] = &card{connID: c.ID, redirect: cfg.RedirectURI, exp: s.opt.Now().Add(CardTTL)}
	q := url.Values{"auth": {tok}, "redirect_uri": {cfg.RedirectURI}}
	if cfg.HideSetupGuide != nil && *cfg.HideSetupGuide {
		q.Set("hide_setup_guide", "true")
	}
	return map[string]string{"token": tok, "uri": emulate.BaseURL(r) + "/connect-card/setup?" + q.Encode()}
}

// schemaOf returns the schema a connection's config names, as Fivetran
// reports it: config.schema, "schema.table" for a service that loads one
// table (config.table, as google_sheets and file services take), or
// config.schema_prefix for database services.
func schemaOf(config map[string]any) string {
	if s, _ := config["schema"].(string); s != "" {
		if t, _ := config["table"].(string); t != "" {
			return s + "." + t
		}
		return s
	}
	s, _ := config["schema_prefix"].(string)
	return s
}

func (s *Server) createConnection(w http.ResponseWriter, r *http.Request) {
	var in struct {
		GroupID           string         `json:"group_id"`
		Service           string         `json:"service"`
		Paused            bool           `json:"paused"`
		RunSetupTests     *bool          `json:"run_setup_tests"`
		Config            map[string]any `json:"config"`
		ConnectCardConfig *cardConfig    `json:"connect_card_config"`
	}
	if !decode(w, r, &in) {
		return
	}
	if !slices.Contains(s.opt.Services, in.Service) {
		fail(w, http.StatusBadRequest, "InvalidInput", "Unsupported service '"+in.Service+"'")
		return
	}
	if in.RunSetupTests != nil && *in.RunSetupTests {
		fail(w, http.StatusBadRequest, "InvalidInput", "run_setup_tests must be false without credentials (use the Connect Card)")
		return
	}
	if in.ConnectCardConfig != nil && !emulate.ValidRedirect(in.ConnectCardConfig.RedirectURI) {
		fail(w, http.StatusBadRequest, "InvalidInput", "redirect_uri must start with http or https")
		return
	}
	c := &Connection{GroupID: in.GroupID, Service: in.Service, Schema: schemaOf(in.Config), Paused: in.Paused,
		Config: in.Config}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.add(c); err != nil {
		fail(w, err.status, err.code, err.msg)
		return
	}
	out := c.view(true)
	if in.ConnectCardConfig != nil {
		out["connect_card"] = s.issueCard(r, c, *in.ConnectCardConfig)
		out["connect_card_config"] = in.ConnectCardConfig
	}
	ok(w, http.StatusCreated, out)
}

type apiError struct {
	status    int
	code, msg string
}

func (e *apiError) Error() string { return e.msg }

// add checks and inserts a new connection. Called with s.mu held.
func (s *Server) add(c *Connection) *apiError {
	if s.groups[c.GroupID] == nil {
		return &apiError{http.StatusNotFound, "NotFound_Group", "Group with id '" + c.GroupID + "' doesn't exist"}
	}
	if c.Schema == "" {
		return &apiError{http.StatusBadRequest, "InvalidInput", "config.schema is required"}
	}
	if _, dup := s.schemas[[2]string{c.GroupID, c.Schema}]; dup {
		return &apiError{http.StatusConflict, "NotUnique_Schema", "Schema '" + c.Schema + "' is already used in this group"}
	}
	if c.ID == "" {
		c.ID = newID("conn_")
	}
	if _, dup := s.conns[c.ID]; dup {
		return &apiError{http.StatusConflict, "NotUnique_Connection", "Connection with id '" + c.ID + "' already exists"}
	}
	c.CreatedAt = s.now()
	if c.Status.SetupState == "" {
		c.Status.SetupState = "incomplete"
	}
	c.Status.SyncState = syncState(c.Paused)
	if c.Status.Tasks == nil {
		c.Status.Tasks = []Alert{}
	}
	if c.Status.Warnings == nil {
		c.Status.Warnings = []Alert{}
	}
	s.conns[c.ID] = c
	s.schemas[[2]string{c.GroupID, c.Schema}] = c.ID
	return nil
}

func syncState(paused bool) string {
	if paused {
		return "paused"
	}
	return "scheduled"
}

// view is the connection's JSON: with full, as GET /v1/connections/{id}
// answers it (setup_tests, config); without, as a list item.
func (c *Connection) view(full bool) map[string]any {
	cp := *c
	if !full {
		cp.SetupTests, cp.Config = nil, nil
	} else if cp.SetupTests == nil {
		cp.SetupTests = []SetupTest{}
	}
	b, _ := json.Marshal(cp)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request) {
	group := r.URL.Query().Get("group_id")
	if id := r.PathValue("id"); id != "" { // GET /v1/groups/{id}/connections
		group = id
		s.mu.Lock()
		known := s.groups[id] != nil
		s.mu.Unlock()
		if !known {
			fail(w, http.StatusNotFound, "NotFound_Group", "Group with id '"+id+"' doesn't exist")
			return
		}
	}
	schema := r.URL.Query().Get("schema")
	s.mu.Lock()
	var out []Connection
	for _, c := range s.conns {
		if (group == "" || c.GroupID == group) && (schema == "" || c.Schema == schema) {
			out = append(out, *c)
		}
	}
	s.mu.Unlock()
	page(w, r, out, func(c Connection) string { return c.ID }, func(c Connection) any { return c.view(false) })
}

// byPath returns the item of m named by the path's id, or answers 404 as
// Fivetran does, with code and what naming the kind of item.
func byPath[T any](w http.ResponseWriter, r *http.Request, m map[string]*T, code, what string) *T {
	v := m[r.PathValue("id")]
	if v == nil {
		fail(w, http.StatusNotFound, code, what+" with id '"+r.PathValue("id")+"' doesn't exist")
	}
	return v
}

// find returns the connection named by the path, or answers 404. Called
// with s.mu held.
func (s *Server) find(w http.ResponseWriter, r *http.Request) *Connection {
	return byPath(w, r, s.conns, "NotFound_Connector", "Connection")
}

func (s *Server) getConnection(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.find(w, r); c != nil {
		ok(w, http.StatusOK, c.view(true))
	}
}

func (s *Server) patchConnection(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Paused *bool `json:"paused"`
	}
	if !decode(w, r, &in) {
		return
	}
	s.mu.Lock()
	c := s.find(w, r)
	if c == nil {
		s.mu.Unlock()
		return
	}
	var ds []Delivery
	if in.Paused != nil && *in.Paused != c.Paused {
		c.Paused = *in.Paused
		c.Status.SyncState = syncState(c.Paused)
		if !c.Paused && c.Status.SetupState == "connected" {
			ds = s.sync(c) // the first sync starts when the connection is resumed
		}
	}
	out := c.view(true)
	s.mu.Unlock()
	s.send(ds)
	ok(w, http.StatusOK, out)
}

func (s *Server) deleteConnection(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	c := s.find(w, r)
	if c == nil {
		s.mu.Unlock()
		return
	}
	ds := s.remove(c)
	s.mu.Unlock()
	s.send(ds)
	emulate.JSON(w, http.StatusOK, map[string]string{"code": "Success", "message": "Connection with id '" + c.ID + "' has been deleted"})
}

// remove deletes c and returns its delete_connector deliveries. Called
// with s.mu held.
func (s *Server) remove(c *Connection) []Delivery {
	delete(s.conns, c.ID)
	delete(s.schemas, [2]string{c.GroupID, c.Schema})
	delete(s.cards, c.card)
	return s.event(c, "delete_connector", map[string]any{"status": "SUCCESSFUL"})
}

func (s *Server) connectCard(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ConnectCardConfig cardConfig `json:"connect_card_config"`
	}
	if !decode(w, r, &in) {
		return
	}
	if !emulate.ValidRedirect(in.ConnectCardConfig.RedirectURI) {
		fail(w, http.StatusBadRequest, "InvalidInput", "redirect_uri must start with http or https")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.find(w, r)
	if c == nil {
		return
	}
	ok(w, http.StatusOK, map[string]any{"connector_id": c.ID, "connect_card": s.issueCard(r, c, in.ConnectCardConfig),
		"connect_card_config": in.ConnectCardConfig})
}

// view is a webhook as the API shows it: the secret masked.
func (h *Webhook) view() map[string]any {
	b, _ := json.Marshal(h)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["secret"] = "******"
	return m
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := make([]Webhook, 0, len(s.webhooks))
	for _, h := range s.webhooks {
		out = append(out, *h)
	}
	s.mu.Unlock()
	page(w, r, out, func(h Webhook) string { return h.ID }, func(h Webhook) any { return h.view() })
}

// findWebhook returns the webhook named by the path, or answers 404.
// Called with s.mu held.
func (s *Server) findWebhook(w http.ResponseWriter, r *http.Request) *Webhook {
	return byPath(w, r, s.webhooks, "NotFound_Webhook", "Webhook")
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.findWebhook(w, r); h != nil {
		ok(w, http.StatusOK, h.view())
	}
}

type webhookInput struct {
	URL    *string   `json:"url"`
	Events *[]string `json:"events"`
	Active *bool     `json:"active"`
	Secret *string   `json:"secret"`
}

// test sends the signed test event to a webhook's URL and reports
// whether it answered 2xx.
func (s *Server) test(h Webhook) (int, bool) {
	body, _ := json.Marshal(map[string]any{
		"event": "test", "created": s.now().Format(time.RFC3339), "connector_type": "_connector_type",
		"connector_id": "_connector_1", "connector_name": "_connector_name", "sync_id": "_sync_1",
		"destination_group_id": "_destination_1", "data": map[string]any{},
	})
	d := s.deliver(Delivery{Webhook: h.ID, URL: h.URL, Event: "test", Connection: "_connector_1", Body: body,
		Signature: Sign(h.secret, body)})
	return d.Status, d.Status >= 200 && d.Status <= 299
}

func refuseTest(w http.ResponseWriter, status int) {
	fail(w, http.StatusBadRequest, "WebhookTestFailed",
		fmt.Sprintf("The test event to the webhook URL was not accepted (status %d)", status))
}

// validWebhookURL reports whether Fivetran takes s as a webhook's payload
// URL: HTTPS only (it answers 400 to an http URL). The emulator also takes
// http on a loopback host, which Fivetran could not reach anyway, so that
// offline tests can serve webhooks without TLS.
func validWebhookURL(s string) bool {
	if !emulate.ValidRedirect(s) {
		return false
	}
	u, _ := url.Parse(s)
	if u.Scheme == "https" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) {
	var in webhookInput
	if !decode(w, r, &in) {
		return
	}
	if in.URL == nil || in.Events == nil || len(*in.Events) == 0 {
		fail(w, http.StatusBadRequest, "InvalidInput", "url and events are required")
		return
	}
	if !validWebhookURL(*in.URL) {
		fail(w, http.StatusBadRequest, "InvalidInput", "The payload URL must be a secure site (HTTPS)")
		return
	}
	h := Webhook{Type: "account", URL: *in.URL, Events: slices.Clone(*in.Events), Active: in.Active == nil || *in.Active}
	if in.Secret != nil {
		h.secret = *in.Secret
	}
	if g := r.PathValue("group"); g != "" {
		s.mu.Lock()
		known := s.groups[g] != nil
		s.mu.Unlock()
		if !known {
			fail(w, http.StatusNotFound, "NotFound_Group", "Group with id '"+g+"' doesn't exist")
			return
		}
		h.Type, h.GroupID = "group", g
	}
	if h.Active {
		if status, passed := s.test(h); !passed {
			refuseTest(w, status)
			return
		}
	}
	h.ID, h.CreatedAt = newID("wh_"), s.now()
	s.mu.Lock()
	s.webhooks[h.ID] = &h
	out := h.view()
	s.mu.Unlock()
	ok(w, http.StatusCreated, out)
}

func (s *Server) patchWebhook(w http.ResponseWriter, r *http.Request) {
	var in webhookInput
	if !decode(w, r, &in) {
		return
	}
	s.mu.Lock()
	cur := s.findWebhook(w, r)
	if cur == nil {
		s.mu.Unlock()
		return
	}
	h := *cur
	s.mu.Unlock()
	if in.URL != nil {
		if !validWebhookURL(*in.URL) {
			fail(w, http.StatusBadRequest, "InvalidInput", "The payload URL must be a secure site (HTTPS)")
			return
		}
		h.URL = *in.URL
	}
	if in.Events != nil {
		if len(*in.Events) == 0 {
			fail(w, http.StatusBadRequest, "InvalidInput", "events must not be empty")
			return
		}
		h.Events = slices.Clone(*in.Events)
	}
	if in.Secret != nil {
		h.secret = *in.Secret
	}
	if in.Active != nil {
		h.Active = *in.Active
	}
	// Activating a webhook, or moving an active one, tests it first.
	if h.Active && (!cur.Active || h.URL != cur.URL) {
		if status, passed := s.test(h); !passed {
			refuseTest(w, status)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.webhooks[h.ID] == nil {
		fail(w, http.StatusNotFound, "NotFound_Webhook", "Webhook with id '"+h.ID+"' doesn't exist")
		return
	}
	s.webhooks[h.ID] = &h
	ok(w, http.StatusOK, h.view())
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.findWebhook(w, r); h != nil {
		delete(s.webhooks, h.ID)
		emulate.JSON(w, http.StatusOK, map[string]string{"code": "Success", "message": "Webhook has been deleted"})
	}
}

// event builds the deliveries of one event of c, created now on the
// provider's clock. Called with s.mu held.
func (s *Server) event(c *Connection, name string, data map[string]any) []Delivery {
	body, _ := json.Marshal(map[string]any{
		"event": name, "created": s.now().Format(time.RFC3339), "connector_type": c.Service,
		"connector_id": c.ID, "connector_name": c.Schema, "sync_id": newID("sync_"),
		"destination_group_id": c.GroupID, "data": data,
	})
	var out []Delivery
	ids := make([]string, 0, len(s.webhooks))
	for id := range s.webhooks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		h := s.webhooks[id]
		if !h.Active || (h.Type == "group" && h.GroupID != c.GroupID) || !slices.Contains(h.Events, name) {
			continue
		}
		out = append(out, Delivery{Webhook: h.ID, URL: h.URL, Event: name, Connection: c.ID, Body: body,
			Signature: Sign(h.secret, body)})
	}
	return out
}

// sync runs one sync of c: it succeeds while the setup is connected, and
// fails otherwise. Called with s.mu held, for an unpaused connection.
func (s *Server) sync(c *Connection) []Delivery {
	c.Syncs++
	now := s.now()
	ds := s.event(c, "sync_start", map[string]any{})
	status := "SUCCESSFUL"
	if c.Status.SetupState == "connected" {
		c.SucceededAt = &now
	} else {
		status = "FAILURE_WITH_TASK"
		c.FailedAt = &now
	}
	return append(ds, s.event(c, "sync_end", map[string]any{"status": status})...)
}

// Sign returns the X-Fivetran-Signature-256 value of body: HMAC-SHA256
// under secret, hex-encoded (upper case, as Fivetran sends it).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return strings.ToUpper(hex.EncodeToString(m.Sum(nil)))
}

// deliver sends one delivery, outside the lock, records it and returns it
// with its status.
func (s *Server) deliver(d Delivery) Delivery {
	req, err := http.NewRequest(http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Fivetran-Signature-256", d.Signature)
		if res, err := s.opt.Client.Do(req); err == nil {
			res.Body.Close()
			d.Status = res.StatusCode
		}
	}
	s.mu.Lock()
	s.deliveries = append(s.deliveries, d)
	s.mu.Unlock()
	return d
}

func (s *Server) send(ds []Delivery) {
	for _, d := range ds {
		s.deliver(d)
	}
}

// Deliveries returns the webhook deliveries sent so far, test events
// included.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}

// Redeliver sends delivery i again, as Fivetran's retries do, and returns
// the answer's status.
func (s *Server) Redeliver(i int) int {
	s.mu.Lock()
	d := s.deliveries[i]
	s.mu.Unlock()
	d.Status = 0
	return s.deliver(d).Status
}

// Sync runs a sync of an unpaused connection now (sync_start, then
// sync_end: SUCCESSFUL while its setup is connected, FAILURE_WITH_TASK
// otherwise). Paused connections do not sync: that is an error.
func (s *Server) Sync(id string) error {
	s.mu.Lock()
	c := s.conns[id]
	switch {
	case c == nil:
		s.mu.Unlock()
		return fmt.Errorf("fivetrantest: unknown connection %q", id)
	case c.Paused:
		s.mu.Unlock()
		return fmt.Errorf("fivetrantest: connection %q is paused and does not sync", id)
	}
	ds := s.sync(c)
	s.mu.Unlock()
	s.send(ds)
	return nil
}

// Break makes a connection's credentials stop working after its setup:
// its setup_state becomes broken with a task carrying message, and an
// unpaused connection's sync fails at once (sync_start, sync_end
// FAILURE_WITH_TASK). A paused one reports nothing until asked.
func (s *Server) Break(id, message string) error {
	s.mu.Lock()
	c := s.conns[id]
	if c == nil {
		s.mu.Unlock()
		return fmt.Errorf("fivetrantest: unknown connection %q", id)
	}
	c.Status.SetupState = "broken"
	c.Status.Tasks = []Alert{{Code: "reconnect", Message: message}}
	var ds []Delivery
	if !c.Paused {
		ds = s.sync(c)
	}
	s.mu.Unlock()
	s.send(ds)
	return nil
}

// Remove deletes a connection behind the app's back, as a user of
// Fivetran's dashboard would: delete_connector is delivered.
func (s *Server) Remove(id string) error {
	s.mu.Lock()
	c := s.conns[id]
	if c == nil {
		s.mu.Unlock()
		return fmt.Errorf("fivetrantest: unknown connection %q", id)
	}
	ds := s.remove(c)
	s.mu.Unlock()
	s.send(ds)
	return nil
}

// Add inserts a connection made outside onboard (say, in Fivetran's
// dashboard) into an existing group, with the API's checks (schema
// unique in the group). An empty ID gets a new one; an empty setup state
// is incomplete. It returns the connection as stored.
func (s *Server) Add(c Connection) (Connection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := c
	if err := s.add(&cp); err != nil {
		return Connection{}, err
	}
	return cp, nil
}

// Connection returns a copy of the connection.
func (s *Server) Connection(id string) (Connection, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, found := s.conns[id]
	if !found {
		return Connection{}, false
	}
	return *c, true
}

// All returns copies of every connection, of every group, oldest first:
// what tests compare with the app's records to find orphans.
func (s *Server) All() []Connection {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Connection, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Connection) int {
		if n := a.CreatedAt.Compare(b.CreatedAt); n != 0 {
			return n
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Connections returns copies of the group's connections, oldest first.
func (s *Server) Connections(groupID string) []Connection {
	var out []Connection
	for _, c := range s.All() {
		if c.GroupID == groupID {
			out = append(out, c)
		}
	}
	return out
}

// GroupByName returns the id of the group with this name.
func (s *Server) GroupByName(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if g.Name == name {
			return g.ID, true
		}
	}
	return "", false
}

// AddGroup makes a group with this name, as Fivetran's dashboard would,
// and returns its id.
func (s *Server) AddGroup(name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if g.Name == name {
			return "", fmt.Errorf("fivetrantest: group %q exists", name)
		}
	}
	g := &Group{ID: newID("grp_"), Name: name, CreatedAt: s.now()}
	s.groups[g.ID] = g
	return g.ID, nil
}

// Webhooks returns the registered webhooks, by id.
func (s *Server) Webhooks() []Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Webhook, 0, len(s.webhooks))
	for _, h := range s.webhooks {
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b Webhook) int { return strings.Compare(a.ID, b.ID) })
	return out
}
