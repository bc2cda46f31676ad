// Package fake is an in-process [onboard.Provider] with a hosted page, for
// tests of apps that mount onboard and of onboard itself. It keeps its own
// records, like a real provider: the connections it holds, which flow made
// each, and what each hosted page recorded. It verifies returns against
// them, so a connection id that a flow did not create is refused as
// forged, and a return without the connection id its hosted page handed
// the browser is not "connected".
//
// Serve it with httptest and set URL, so that a browser (an http.Client
// with a cookie jar) can follow the whole flow:
//
//	p := fake.New("fake")
//	hosted := httptest.NewServer(p)
//	p.URL = hosted.URL
//
// The hosted page GET /hosted?flow=ID&outcome=connected|failed|abandoned
// redirects back to the flow's return URL with conn (the connection id)
// and status parameters. [Provider.Webhook] reads the deliveries an app's
// webhook route receives.
package fake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/onboardkit/onboard"
)

var (
	_ onboard.Provider        = (*Provider)(nil)
	_ onboard.Refresher       = (*Provider)(nil)
	_ onboard.WebhookReceiver = (*Provider)(nil)
)

// Provider is the fake provider. Set URL before the first Begin when its
// hosted page is served; fields other than URL are guarded by a mutex.
type Provider struct {
	// URL is the base URL where the Provider's ServeHTTP is reachable.
	// Empty means "https://fake.invalid".
	URL string

	name string
	mu   sync.Mutex
	recs map[string]*record // by flow id
	// conns are the connections the provider holds, by id.
	conns map[string]*Conn
	// next errors, consumed by the next call
	beginErr, completeErr, cancelErr []error
	calls                            Calls
}

// Conn is a connection the fake provider holds.
type Conn struct {
	ID     string
	Tenant string
	// Flow is the flow that created it.
	Flow  string
	State onboard.State
	// Disabled is set when a reconnect was quarantined.
	Disabled bool
}

type record struct {
	returnURL string
	tenant    string
	reconnect bool
	connID    string
	outcome   onboard.State
	visited   bool
	cancelled bool
}

// Calls counts the calls the provider received.
type Calls struct {
	Begin, Complete, Cancel, Delete, Refresh int
}

// New returns a fake provider with this name.
func New(name string) *Provider {
	return &Provider{name: name, recs: make(map[string]*record), conns: make(map[string]*Conn)}
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.name }

// FailBegin makes the next Begin calls fail with these errors, in order.
func (p *Provider) FailBegin(errs ...error) { p.queue(&p.beginErr, errs) }

// FailComplete makes the next Complete calls fail with these errors, in
// order.
func (p *Provider) FailComplete(errs ...error) { p.queue(&p.completeErr, errs) }

// FailCancel makes the next Cancel calls fail with these errors, in order.
func (p *Provider) FailCancel(errs ...error) { p.queue(&p.cancelErr, errs) }

func (p *Provider) queue(to *[]error, errs []error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	*to = append(*to, errs...)
}

// Calls returns how many calls of each kind the provider received.
func (p *Provider) Calls() Calls {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

func pop(errs *[]error) error {
	if len(*errs) == 0 {
		return nil
	}
	err := (*errs)[0]
	*errs = (*errs)[1:]
	return err
}

// randomID returns "conn-" and 16 random hex digits.
func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "conn-" + hex.EncodeToString(b[:])
}

// Begin records the flow and returns the hosted page's URL.
func (p *Provider) Begin(ctx context.Context, f onboard.Flow, returnURL string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls.Begin++
	if err := pop(&p.beginErr); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	p.recs[f.ID] = &record{returnURL: returnURL, tenant: f.Owner.Tenant, reconnect: f.Reconnect, connID: f.ConnectionID}
	base := p.URL
	if base == "" {
		base = "https://fake.invalid"
	}
	return base + "/hosted?flow=" + url.QueryEscape(f.ID), nil
}

// Finish plays the user on the hosted page: it records the outcome of the
// flow (a new connection is created unless the user abandoned) and
// returns the URL the browser is sent back to.
func (p *Provider) Finish(flowID string, outcome onboard.State) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.recs[flowID]
	switch {
	case !ok:
		return "", fmt.Errorf("fake: unknown flow %q", flowID)
	case r.cancelled:
		return "", fmt.Errorf("fake: the setup of flow %q was cancelled", flowID)
	}
	r.outcome, r.visited = outcome, true
	if outcome != onboard.Abandoned {
		if r.connID == "" {
			r.connID = randomID()
		}
		c, ok := p.conns[r.connID]
		if !ok {
			c = &Conn{ID: r.connID, Tenant: r.tenant, Flow: flowID}
			p.conns[c.ID] = c
		}
		c.State = outcome
	}
	q := url.Values{"status": {string(outcome)}}
	if outcome != onboard.Abandoned {
		q.Set("conn", r.connID)
	}
	return r.returnURL + "?" + q.Encode(), nil
}

// Connection returns the connection the provider holds with this id.
func (p *Provider) Connection(id string) (Conn, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.conns[id]
	if !ok {
		return Conn{}, false
	}
	return *c, true
}

// Connections returns every connection the provider holds, by id.
func (p *Provider) Connections() []Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Conn, 0, len(p.conns))
	for _, c := range p.conns {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Conn) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// SetState changes a held connection's state, as a provider does when
// credentials break; [Provider.Refresh] reports it.
func (p *Provider) SetState(id string, s onboard.State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[id]; ok {
		c.State = s
	}
}

// Remove deletes a held connection behind the app's back, as a user of
// the provider's own dashboard would.
func (p *Provider) Remove(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, id)
}

// Complete verifies the return against the provider's records: a new
// connection counts only with the conn parameter its hosted page handed
// the browser, and the outcome is what the hosted page recorded, whatever
// the status parameter says.
func (p *Provider) Complete(ctx context.Context, f onboard.Flow, ret url.Values) (onboard.Connection, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls.Complete++
	if err := pop(&p.completeErr); err != nil {
		return onboard.Connection{}, err
	}
	if err := ctx.Err(); err != nil {
		return onboard.Connection{}, err
	}
	r, ok := p.recs[f.ID]
	if !ok {
		return onboard.Connection{}, fmt.Errorf("%w: the provider has no record of flow %s", onboard.ErrForged, f.ID)
	}
	got := ret.Get("conn")
	if !r.visited || r.outcome == onboard.Abandoned || r.cancelled {
		return onboard.Connection{State: onboard.Abandoned}, nil
	}
	if got == "" {
		if !f.Reconnect {
			// Only the browser the hosted page sent back knows the id.
			return onboard.Connection{State: onboard.Abandoned}, nil
		}
		got = f.ConnectionID
	}
	if got != r.connID {
		return onboard.Connection{}, fmt.Errorf("%w: connection %q is not the one flow %s made", onboard.ErrForged, got, f.ID)
	}
	c := onboard.Connection{ID: r.connID, State: r.outcome}
	if r.outcome == onboard.Failed {
		c.Message = "The connection test failed."
	}
	return c, nil
}

// Cancel deletes the connection a new-connection flow made, and stops its
// hosted page; for a reconnect it disables the connection.
func (p *Provider) Cancel(ctx context.Context, f onboard.Flow) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls.Cancel++
	if err := pop(&p.cancelErr); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.Reconnect {
		if c, ok := p.conns[f.ConnectionID]; ok {
			c.Disabled = true
		}
		return nil
	}
	if r, ok := p.recs[f.ID]; ok {
		r.cancelled = true
		if r.connID != "" {
			delete(p.conns, r.connID)
		}
	}
	return nil
}

// Delete deletes a connection.
func (p *Provider) Delete(ctx context.Context, c onboard.Connection) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls.Delete++
	if err := ctx.Err(); err != nil {
		return err
	}
	delete(p.conns, c.ID)
	return nil
}

// Refresh reports the tenant's connections whose state the provider holds
// differently, with a zero At (the fake keeps no event times), and those
// it no longer holds as deleted.
func (p *Provider) Refresh(ctx context.Context, tenant string, cs []onboard.Connection) ([]onboard.Event, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls.Refresh++
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []onboard.Event
	for _, c := range cs {
		held, ok := p.conns[c.ID]
		switch {
		case !ok || held.Tenant != tenant:
			out = append(out, onboard.Event{ConnectionID: c.ID, Deleted: true})
		case held.State != c.State:
			out = append(out, onboard.Event{ConnectionID: c.ID, State: held.State})
		}
	}
	return out, nil
}

// WebhookSecret is the value of the X-Fake-Secret header that
// [Provider.Webhook] requires.
const WebhookSecret = "fake-webhook-secret"

// WebhookEvent is the JSON body of a fake webhook delivery.
type WebhookEvent struct {
	Connection string        `json:"connection"`
	State      onboard.State `json:"state,omitempty"`
	Deleted    bool          `json:"deleted,omitempty"`
	Message    string        `json:"message,omitempty"`
	At         time.Time     `json:"at"`
}

// Webhook reads a delivery: a JSON [WebhookEvent], with the header
// X-Fake-Secret set to [WebhookSecret].
func (p *Provider) Webhook(r *http.Request) ([]onboard.Event, error) {
	if r.Header.Get("X-Fake-Secret") != WebhookSecret {
		return nil, fmt.Errorf("%w: wrong X-Fake-Secret", onboard.ErrWebhook)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var ev WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.Connection == "" {
		return nil, fmt.Errorf("fake: webhook body: %v", err)
	}
	return []onboard.Event{{ConnectionID: ev.Connection, State: ev.State, Deleted: ev.Deleted, Message: ev.Message, At: ev.At}}, nil
}

// ServeHTTP serves the hosted page: GET /hosted?flow=ID&outcome=STATE
// (default connected) redirects to the flow's return URL.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/hosted" {
		http.NotFound(w, r)
		return
	}
	outcome := onboard.State(r.URL.Query().Get("outcome"))
	switch outcome {
	case "":
		outcome = onboard.Connected
	case onboard.Connected, onboard.Failed, onboard.Abandoned:
	default:
		http.Error(w, "unknown outcome", http.StatusBadRequest)
		return
	}
	back, err := p.Finish(r.URL.Query().Get("flow"), outcome)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	http.Redirect(w, r, back, http.StatusFound)
}
