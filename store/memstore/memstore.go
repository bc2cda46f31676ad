// Package memstore is an in-memory [onboard.Store] for a single app
// instance, development and tests. Memory stays bounded: flows are swept
// a while after they expire, and the number of flows in total and of
// pending flows per owner is capped.
package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/onboardkit/onboard"
)

// Defaults for [Options].
const (
	DefaultMaxFlows         = 100_000
	DefaultMaxFlowsPerOwner = 20
	DefaultRetain           = time.Hour
)

// Options tune a Store. The zero value takes the defaults.
type Options struct {
	// MaxFlows caps the flows kept in memory, of every state. A start
	// beyond it fails with onboard.ErrTooManyFlows. Default 100,000.
	MaxFlows int
	// MaxFlowsPerOwner caps one owner's unexpired pending flows.
	// Default 20.
	MaxFlowsPerOwner int
	// Retain is how long a flow is kept after it expires, so a late
	// return is told "expired" rather than "unknown". Default one hour.
	Retain time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Store is an in-memory onboard.Store. Build it with [New].
type Store struct {
	opt       Options
	mu        sync.Mutex
	flows     map[string]*onboard.Flow
	pending   map[onboard.Owner]map[string]struct{}
	conns     map[connKey]onboard.Connection
	byTenant  map[string]map[connKey]struct{}
	lastSweep time.Time
}

type connKey struct{ provider, id string }

var (
	_ onboard.Store            = (*Store)(nil)
	_ onboard.ConnectionFinder = (*Store)(nil)
	_ onboard.FlowLister       = (*Store)(nil)
)

// New returns an empty Store.
func New(opt Options) *Store {
	if opt.MaxFlows <= 0 {
		opt.MaxFlows = DefaultMaxFlows
	}
	if opt.MaxFlowsPerOwner <= 0 {
		opt.MaxFlowsPerOwner = DefaultMaxFlowsPerOwner
	}
	if opt.Retain <= 0 {
		opt.Retain = DefaultRetain
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Store{
		opt:      opt,
		flows:    make(map[string]*onboard.Flow),
		pending:  make(map[onboard.Owner]map[string]struct{}),
		conns:    make(map[connKey]onboard.Connection),
		byTenant: make(map[string]map[connKey]struct{}),
	}
}

func copyFlow(f *onboard.Flow) onboard.Flow {
	c := *f
	c.Data = maps.Clone(f.Data)
	return c
}

// sweep drops flows past expiry plus Retain. Called with s.mu held.
func (s *Store) sweep(now time.Time) {
	s.lastSweep = now
	for id, f := range s.flows {
		if now.Sub(f.ExpiresAt) >= s.opt.Retain {
			s.drop(id, f)
		}
	}
}

func (s *Store) drop(id string, f *onboard.Flow) {
	delete(s.flows, id)
	if p := s.pending[f.Owner]; p != nil {
		delete(p, id)
		if len(p) == 0 {
			delete(s.pending, f.Owner)
		}
	}
}

// CreateFlow saves a new pending flow.
func (s *Store) CreateFlow(ctx context.Context, f onboard.Flow) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.opt.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.flows[f.ID]; dup {
		return fmt.Errorf("memstore: flow %q exists", f.ID)
	}
	// Sweep once a minute, and at capacity at most once a second: a flood
	// of starts must not pay a full sweep each.
	if since := now.Sub(s.lastSweep); since > time.Minute || (len(s.flows) >= s.opt.MaxFlows && since > time.Second) {
		s.sweep(now)
	}
	if len(s.flows) >= s.opt.MaxFlows {
		return fmt.Errorf("%w: %d flows in memory", onboard.ErrTooManyFlows, len(s.flows))
	}
	p := s.pending[f.Owner]
	for id := range p {
		if s.flows[id].Expired(now) {
			delete(p, id)
		}
	}
	if len(p) >= s.opt.MaxFlowsPerOwner {
		return fmt.Errorf("%w: owner has %d pending flows", onboard.ErrTooManyFlows, len(p))
	}
	if p == nil {
		p = make(map[string]struct{})
		s.pending[f.Owner] = p
	}
	f.State = onboard.FlowPending
	c := copyFlow(&f)
	s.flows[f.ID] = &c
	p[f.ID] = struct{}{}
	return nil
}

// Flow returns the flow with this id.
func (s *Store) Flow(ctx context.Context, id string) (onboard.Flow, bool, error) {
	if err := ctx.Err(); err != nil {
		return onboard.Flow{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.flows[id]
	if !ok {
		return onboard.Flow{}, false, nil
	}
	c := copyFlow(f)
	if c.State == onboard.FlowPending && c.Expired(s.opt.Now()) {
		c.State = onboard.FlowExpired
	}
	return c, true, nil
}

// CompleteFlow moves a pending flow to done and saves c, atomically.
func (s *Store) CompleteFlow(ctx context.Context, flowID string, c onboard.Connection) error {
	return s.complete(ctx, flowID, c, true)
}

// ResolveFlow is CompleteFlow for expired pending flows too.
func (s *Store) ResolveFlow(ctx context.Context, flowID string, c onboard.Connection) error {
	return s.complete(ctx, flowID, c, false)
}

func (s *Store) complete(ctx context.Context, flowID string, c onboard.Connection, unexpired bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.flows[flowID]
	switch {
	case !ok:
		return onboard.ErrUnknownFlow
	case f.State != onboard.FlowPending:
		return onboard.ErrFlowUsed
	case unexpired && f.Expired(s.opt.Now()):
		return onboard.ErrFlowExpired
	}
	f.State, f.Outcome = onboard.FlowDone, c.State
	if c.ID != "" {
		f.ConnectionID = c.ID
		s.save(c)
	}
	if p := s.pending[f.Owner]; p != nil {
		delete(p, flowID)
	}
	return nil
}

// PendingFlows returns pending flows created before createdBefore,
// oldest first.
func (s *Store) PendingFlows(ctx context.Context, createdBefore time.Time, limit int) ([]onboard.Flow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	var out []onboard.Flow
	for _, f := range s.flows {
		if f.State == onboard.FlowPending && f.CreatedAt.Before(createdBefore) {
			out = append(out, copyFlow(f))
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b onboard.Flow) int { return a.CreatedAt.Compare(b.CreatedAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// save upserts c. Called with s.mu held.
func (s *Store) save(c onboard.Connection) {
	k := connKey{c.Provider, c.ID}
	if old, ok := s.conns[k]; ok {
		if !old.CreatedAt.IsZero() {
			c.CreatedAt = old.CreatedAt
		}
		if old.Owner.Tenant != c.Owner.Tenant {
			delete(s.byTenant[old.Owner.Tenant], k)
		}
	}
	s.conns[k] = c
	t := s.byTenant[c.Owner.Tenant]
	if t == nil {
		t = make(map[connKey]struct{})
		s.byTenant[c.Owner.Tenant] = t
	}
	t[k] = struct{}{}
}

// SaveConnection inserts or updates c.
func (s *Store) SaveConnection(ctx context.Context, c onboard.Connection) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.Provider == "" || c.ID == "" {
		return fmt.Errorf("memstore: connection needs a provider and an id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.save(c)
	return nil
}

// Connection returns the tenant's connection.
func (s *Store) Connection(ctx context.Context, tenant, provider, id string) (onboard.Connection, bool, error) {
	if err := ctx.Err(); err != nil {
		return onboard.Connection{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[connKey{provider, id}]
	if !ok || c.Owner.Tenant != tenant {
		return onboard.Connection{}, false, nil
	}
	return c, true, nil
}

// Connections lists the tenant's connections, newest first.
func (s *Store) Connections(ctx context.Context, tenant string) ([]onboard.Connection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	out := make([]onboard.Connection, 0, len(s.byTenant[tenant]))
	for k := range s.byTenant[tenant] {
		out = append(out, s.conns[k])
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b onboard.Connection) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// FindConnection returns the connection with this provider and id,
// whatever its tenant (for webhook deliveries).
func (s *Store) FindConnection(ctx context.Context, provider, id string) (onboard.Connection, bool, error) {
	if err := ctx.Err(); err != nil {
		return onboard.Connection{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[connKey{provider, id}]
	return c, ok, nil
}

// DeleteConnection removes the tenant's connection.
func (s *Store) DeleteConnection(ctx context.Context, tenant, provider, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := connKey{provider, id}
	if c, ok := s.conns[k]; ok && c.Owner.Tenant == tenant {
		delete(s.conns, k)
		delete(s.byTenant[tenant], k)
	}
	return nil
}

// Len returns the number of flows held in memory, of every state.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flows)
}
