// Package fivetrantest emulates the Fivetran REST API (groups,
// connections, Connect Card, webhooks) and the hosted Connect Card page,
// for offline development and tests.
//
// It checks Basic auth (401) and the "Accept: application/json;version=2"
// header (406), answers in Fivetran's {"code","message","data"} shape,
// issues Connect Card URIs valid for one day (only the newest card of a
// connection works), and after a passing Save & Test redirects the
// browser to redirect_uri with ?id=<connection id>. Registered webhooks
// receive signed deliveries (X-Fivetran-Signature-256) of
// connection_successful, connection_failure, sync_start, sync_end and
// delete_connector; Redeliver sends one again, as Fivetran's retries do.
//
// On the hosted page the setup tests pass for any credential except an
// empty one or "fail".
package fivetrantest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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

	"github.com/onboardkit/onboard/internal/emulate"
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
	// Now is the clock. Default time.Now.
	Now func() time.Time
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
	cards      map[string]*card // by token
	webhooks   []*webhook
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

// Status is a connection's status.
type Status struct {
	SetupState string `json:"setup_state"`
	SyncState  string `json:"sync_state"`
	Tasks      []any  `json:"tasks"`
	Warnings   []any  `json:"warnings"`
}

// Connection is a connection as the emulator holds it.
type Connection struct {
	ID         string         `json:"id"`
	GroupID    string         `json:"group_id"`
	Service    string         `json:"service"`
	Schema     string         `json:"schema"`
	Paused     bool           `json:"paused"`
	CreatedAt  time.Time      `json:"created_at"`
	Status     Status         `json:"status"`
	SetupTests []SetupTest    `json:"setup_tests"`
	Config     map[string]any `json:"config"`
	card       string
}

type card struct {
	connID, redirect string
	exp              time.Time
}

type webhook struct {
	ID, Type, GroupID, URL, Secret string
	Events                         []string
	Active                         bool
}

// Delivery is one webhook delivery the emulator sent.
type Delivery struct {
	URL, Event string
	Body       []byte
	Signature  string
	Status     int // 0 when the request failed
	secret     string
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
	s := &Server{opt: opt, groups: map[string]*Group{}, conns: map[string]*Connection{}, cards: map[string]*card{},
		API: &emulate.API{ErrorBody: func(status int) string {
			code := strings.ReplaceAll(http.StatusText(status), " ", "")
			return fmt.Sprintf(`{"code":%q,"message":"emulated failure"}`, code)
		}}}
	api := http.NewServeMux()
	api.HandleFunc("POST /v1/groups", s.createGroup)
	api.HandleFunc("GET /v1/groups", s.listGroups)
	api.HandleFunc("POST /v1/connections", s.createConnection)
	api.HandleFunc("GET /v1/connections", s.listConnections)
	api.HandleFunc("GET /v1/connections/{id}", s.getConnection)
	api.HandleFunc("DELETE /v1/connections/{id}", s.deleteConnection)
	api.HandleFunc("POST /v1/connections/{id}/connect-card", s.connectCard)
	api.HandleFunc("POST /v1/webhooks/account", s.createWebhook)
	api.HandleFunc("POST /v1/webhooks/group/{group}", s.createWebhook)
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
	g := &Group{ID: newID("grp_"), Name: in.Name, CreatedAt: s.opt.Now().UTC()}
	s.groups[g.ID] = g
	ok(w, http.StatusCreated, g)
}

// page returns a page of items with Fivetran's cursor pagination.
func page[T any](r *http.Request, items []T) map[string]any {
	limit := 100
	if l, err := fmt.Sscan(r.URL.Query().Get("limit"), &limit); l != 1 || err != nil || limit < 1 || limit > 1000 {
		limit = 100
	}
	start := 0
	fmt.Sscan(r.URL.Query().Get("cursor"), &start)
	start = max(0, min(start, len(items)))
	end := min(start+limit, len(items))
	out := map[string]any{"items": items[start:end]}
	if end < len(items) {
		out["next_cursor"] = fmt.Sprint(end)
	}
	return out
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	gs := make([]Group, 0, len(s.groups))
	for _, g := range s.groups {
		gs = append(gs, *g)
	}
	s.mu.Unlock()
	slices.SortFunc(gs, func(a, b Group) int { return strings.Compare(a.ID, b.ID) })
	ok(w, http.StatusOK, page(r, gs))
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
	schema, _ := in.Config["schema"].(string)
	if schema == "" {
		fail(w, http.StatusBadRequest, "InvalidInput", "config.schema is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups[in.GroupID] == nil {
		fail(w, http.StatusNotFound, "NotFound_Group", "Group with id '"+in.GroupID+"' doesn't exist")
		return
	}
	for _, c := range s.conns {
		if c.GroupID == in.GroupID && c.Schema == schema {
			fail(w, http.StatusConflict, "NotUnique_Schema", "Schema '"+schema+"' is already used in this group")
			return
		}
	}
	c := &Connection{ID: newID("conn_"), GroupID: in.GroupID, Service: in.Service, Schema: schema, Paused: in.Paused,
		CreatedAt: s.opt.Now().UTC(), Config: in.Config,
		Status: Status{SetupState: "incomplete", SyncState: "scheduled", Tasks: []any{}, Warnings: []any{}}}
	s.conns[c.ID] = c
	out := c.json()
	if in.ConnectCardConfig != nil {
		out["connect_card"] = s.issueCard(r, c, *in.ConnectCardConfig)
		out["connect_card_config"] = in.ConnectCardConfig
	}
	ok(w, http.StatusCreated, out)
}

func (c *Connection) json() map[string]any {
	b, _ := json.Marshal(c)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request) {
	group := r.URL.Query().Get("group_id")
	s.mu.Lock()
	var out []map[string]any
	ids := make([]string, 0, len(s.conns))
	for id := range s.conns {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if c := s.conns[id]; group == "" || c.GroupID == group {
			out = append(out, c.json())
		}
	}
	s.mu.Unlock()
	if out == nil {
		out = []map[string]any{}
	}
	ok(w, http.StatusOK, page(r, out))
}

// find returns the connection named by the path, or answers 404. Called
// with s.mu held.
func (s *Server) find(w http.ResponseWriter, r *http.Request) *Connection {
	c := s.conns[r.PathValue("id")]
	if c == nil {
		fail(w, http.StatusNotFound, "NotFound_Connection", "Connection with id '"+r.PathValue("id")+"' doesn't exist")
	}
	return c
}

func (s *Server) getConnection(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.find(w, r)
	if c == nil {
		return
	}
	ok(w, http.StatusOK, c.json())
}

func (s *Server) deleteConnection(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	c := s.find(w, r)
	if c == nil {
		s.mu.Unlock()
		return
	}
	delete(s.conns, c.ID)
	delete(s.cards, c.card)
	pending := s.event(c, "delete_connector", map[string]any{"status": "SUCCESSFUL"})
	s.mu.Unlock()
	s.send(pending)
	emulate.JSON(w, http.StatusOK, map[string]string{"code": "Success", "message": "Connection with id '" + c.ID + "' has been deleted"})
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

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) {
	var in struct {
		URL    string   `json:"url"`
		Events []string `json:"events"`
		Active bool     `json:"active"`
		Secret string   `json:"secret"`
	}
	if !decode(w, r, &in) {
		return
	}
	if !emulate.ValidRedirect(in.URL) || len(in.Events) == 0 {
		fail(w, http.StatusBadRequest, "InvalidInput", "url and events are required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &webhook{ID: newID("wh_"), Type: "account", URL: in.URL, Secret: in.Secret, Events: in.Events, Active: in.Active}
	if g := r.PathValue("group"); g != "" {
		if s.groups[g] == nil {
			fail(w, http.StatusNotFound, "NotFound_Group", "Group with id '"+g+"' doesn't exist")
			return
		}
		h.Type, h.GroupID = "group", g
	}
	s.webhooks = append(s.webhooks, h)
	ok(w, http.StatusCreated, map[string]any{"id": h.ID, "type": h.Type, "group_id": h.GroupID, "url": h.URL,
		"events": h.Events, "active": h.Active, "created_at": s.opt.Now().UTC()})
}

// event builds the deliveries of one event. Called with s.mu held.
func (s *Server) event(c *Connection, name string, data map[string]any) []Delivery {
	body, _ := json.Marshal(map[string]any{
		"event": name, "created": s.opt.Now().UTC().Format(time.RFC3339Nano), "connector_type": c.Service,
		"connector_id": c.ID, "connector_name": c.Schema, "sync_id": newID("sync_"),
		"destination_group_id": c.GroupID, "data": data,
	})
	var out []Delivery
	for _, h := range s.webhooks {
		if !h.Active || (h.Type == "group" && h.GroupID != c.GroupID) || !slices.Contains(h.Events, name) {
			continue
		}
		out = append(out, Delivery{URL: h.URL, Event: name, Body: body, Signature: Sign(h.Secret, body), secret: h.Secret})
	}
	return out
}

// Sign returns the X-Fivetran-Signature-256 value of body: HMAC-SHA256
// under secret, hex-encoded (upper case, as Fivetran sends it).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return strings.ToUpper(hex.EncodeToString(m.Sum(nil)))
}

// send delivers, outside the lock, and records the results.
func (s *Server) send(ds []Delivery) {
	for _, d := range ds {
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
	}
}

// Deliveries returns the webhook deliveries sent so far.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deliveries)
}

// Redeliver sends delivery i again (a duplicate) and returns its status.
func (s *Server) Redeliver(i int) int {
	s.mu.Lock()
	d := s.deliveries[i]
	s.mu.Unlock()
	s.send([]Delivery{d})
	ds := s.Deliveries()
	return ds[len(ds)-1].Status
}

// Sync runs a sync of the connection and delivers sync_start and sync_end
// with status SUCCESSFUL or FAILURE; a failed sync breaks the connection.
func (s *Server) Sync(connID string, succeed bool) error {
	s.mu.Lock()
	c := s.conns[connID]
	if c == nil {
		s.mu.Unlock()
		return fmt.Errorf("fivetrantest: unknown connection %q", connID)
	}
	status := "SUCCESSFUL"
	if !succeed {
		status = "FAILURE"
		c.Status.SetupState = "broken"
	}
	ds := append(s.event(c, "sync_start", map[string]any{}), s.event(c, "sync_end", map[string]any{"status": status})...)
	s.mu.Unlock()
	s.send(ds)
	return nil
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

// Connections returns copies of the group's connections.
func (s *Server) Connections(groupID string) []Connection {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Connection
	for _, c := range s.conns {
		if c.GroupID == groupID {
			out = append(out, *c)
		}
	}
	slices.SortFunc(out, func(a, b Connection) int { return a.CreatedAt.Compare(b.CreatedAt) })
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
