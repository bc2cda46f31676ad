// Package fake is an in-process [onboard.Provider] with a hosted page, for
// tests of apps that mount onboard. It keeps its own records, like a real
// provider, and verifies returns against them: a connection id that this
// flow did not create is refused as forged.
//
// Serve it with httptest and set URL, so that a browser (an http.Client
// with a cookie jar) can follow the whole flow:
//
//	p := fake.New("fake")
//	hosted := httptest.NewServer(p)
//	p.URL = hosted.URL
//
// The hosted page GET /hosted?flow=ID&outcome=connected|failed|abandoned
// redirects back to the flow's return URL with conn and status parameters.
package fake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/onboardkit/onboard"
)

var _ onboard.Reconciler = (*Provider)(nil)

// Provider is the fake provider. Set URL before the first Begin when its
// hosted page is served; fields other than URL are guarded by a mutex.
type Provider struct {
	// URL is the base URL where the Provider's ServeHTTP is reachable.
	// Empty means "https://fake.invalid".
	URL string
	// Now is the clock Reconcile judges expiry by. Default time.Now.
	Now func() time.Time

	name string
	mu   sync.Mutex
	// begun holds the return URL of each new-connection flow until its
	// hosted page is finished; recs holds every other flow. Most starts
	// are never finished, so they cost one string-to-string entry.
	begun map[string]string
	recs  map[string]record // by flow id
	// next errors, consumed by the next call
	beginErr, completeErr []error
	begins, completes     int
}

type record struct {
	returnURL string
	connID    string
	outcome   onboard.State
	visited   bool
}

// New returns a fake provider with this name.
func New(name string) *Provider {
	return &Provider{name: name, begun: make(map[string]string), recs: make(map[string]record)}
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.name }

// FailBegin makes the next Begin calls fail with these errors, in order.
func (p *Provider) FailBegin(errs ...error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.beginErr = append(p.beginErr, errs...)
}

// FailComplete makes the next Complete (or Reconcile) calls fail with
// these errors, in order.
func (p *Provider) FailComplete(errs ...error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.completeErr = append(p.completeErr, errs...)
}

// Calls returns how many times Begin and Complete were called.
func (p *Provider) Calls() (begins, completes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.begins, p.completes
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
	id := make([]byte, 0, 5+hex.EncodedLen(len(b)))
	return string(hex.AppendEncode(append(id, "conn-"...), b[:]))
}

// Begin records the flow and returns the hosted page's URL. A reconnect
// keeps the flow's connection id; otherwise [Provider.Finish] creates one.
func (p *Provider) Begin(ctx context.Context, f *onboard.Flow) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.begins++
	if err := pop(&p.beginErr); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	// A new connection's id is made when the hosted page creates it.
	if f.ConnectionID == "" {
		p.begun[f.ID] = f.ReturnURL
	} else {
		p.recs[f.ID] = record{returnURL: f.ReturnURL, connID: f.ConnectionID}
	}
	base := p.URL
	if base == "" {
		base = "https://fake.invalid"
	}
	return base + "/hosted?flow=" + url.QueryEscape(f.ID), nil
}

// lookup returns the record of a flow. Called with p.mu held.
func (p *Provider) lookup(flowID string) (record, bool) {
	if r, ok := p.recs[flowID]; ok {
		return r, true
	}
	u, ok := p.begun[flowID]
	return record{returnURL: u}, ok
}

// Finish plays the user on the hosted page: it records the outcome of the
// flow and returns the URL the browser is sent back to.
func (p *Provider) Finish(flowID string, outcome onboard.State) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.lookup(flowID)
	if !ok {
		return "", fmt.Errorf("fake: unknown flow %q", flowID)
	}
	delete(p.begun, flowID)
	r.outcome, r.visited = outcome, true
	if r.connID == "" && outcome != onboard.Abandoned {
		r.connID = randomID()
	}
	p.recs[flowID] = r
	q := url.Values{"status": {string(outcome)}}
	if outcome != onboard.Abandoned {
		q.Set("conn", r.connID)
	}
	return r.returnURL + "?" + q.Encode(), nil
}

// ConnectionID returns the connection id the provider holds for a flow:
// the reconnected one, or the one the hosted page created (empty before
// the page is finished).
func (p *Provider) ConnectionID(flowID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, ok := p.lookup(flowID); ok {
		return r.connID
	}
	return ""
}

// Complete verifies the return against the provider's records: the conn
// parameter must be the id this flow created, and the outcome is what the
// hosted page recorded, whatever the status parameter says.
func (p *Provider) Complete(ctx context.Context, f *onboard.Flow, ret url.Values) (onboard.Connection, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.completes++
	if err := pop(&p.completeErr); err != nil {
		return onboard.Connection{}, err
	}
	if err := ctx.Err(); err != nil {
		return onboard.Connection{}, err
	}
	r, ok := p.lookup(f.ID)
	if !ok {
		return onboard.Connection{}, fmt.Errorf("%w: the provider has no record of flow %s", onboard.ErrForged, f.ID)
	}
	if !r.visited || r.outcome == onboard.Abandoned {
		return onboard.Connection{State: onboard.Abandoned}, nil
	}
	if got := ret.Get("conn"); got != r.connID {
		return onboard.Connection{}, fmt.Errorf("%w: connection %q is not the one flow %s created", onboard.ErrForged, got, f.ID)
	}
	c := onboard.Connection{ID: r.connID, State: r.outcome}
	if r.outcome == onboard.Failed {
		c.Message = "The connection test failed."
	}
	return c, nil
}

// Reconcile reports what the hosted page recorded for a flow whose
// browser never came back: the outcome once the user finished there, and
// abandoned for an expired flow the user never finished.
func (p *Provider) Reconcile(ctx context.Context, f *onboard.Flow) (onboard.Connection, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := pop(&p.completeErr); err != nil {
		return onboard.Connection{}, false, err
	}
	r, ok := p.lookup(f.ID)
	if ok && r.visited && r.outcome != onboard.Abandoned {
		return onboard.Connection{ID: r.connID, State: r.outcome}, true, nil
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	if f.Expired(now()) {
		return onboard.Connection{State: onboard.Abandoned}, true, nil
	}
	return onboard.Connection{}, false, nil
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
