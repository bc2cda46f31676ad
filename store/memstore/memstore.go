// Package memstore is an in-memory [onboard.Store] for a single app
// instance, development and tests. Memory stays bounded: flows are swept
// a while after they expire, and the number of flows in total and of
// pending flows per owner is capped. A flow is kept as one pointer-free
// string (about 340 bytes of heap with typical fields, its index entries
// included), so a full store of the default 100,000 flows holds about
// 33 MiB and adds little to garbage collection.
package memstore

import (
	"context"
	"fmt"
	"hash/maphash"
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
	flows     map[string]record
	pending   map[uint64]string // ids of each owner's pending flows, joined by idSep, by ownerKey
	seed      maphash.Seed
	conns     map[connKey]connRecord
	byTenant  map[string][]connKey // the keys of conns, by tenant
	lastSweep time.Time
}

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
		flows:    make(map[string]record),
		pending:  make(map[uint64]string),
		seed:     maphash.MakeSeed(),
		conns:    make(map[connKey]connRecord),
		byTenant: make(map[string][]connKey),
	}
}

// sweep drops flows past expiry plus Retain. Called with s.mu held.
func (s *Store) sweep(now time.Time) {
	s.lastSweep = now
	for id, r := range s.flows {
		if now.Sub(r.expires()) >= s.opt.Retain {
			delete(s.flows, id)
			if r.state() == onboard.FlowPending {
				s.unpend(r.decode(id).Owner, id)
			}
		}
	}
}

// idSep joins the ids in Store.pending. It cannot occur in a flow id:
// CreateFlow refuses such ids. A string per owner, rather than a slice,
// keeps the common case (one pending flow) to the map entry alone.
const idSep = "\x00"

// unpend removes a flow from its owner's pending ids. Called with s.mu
// held.
func (s *Store) unpend(owner onboard.Owner, id string) {
	k := s.ownerKey(owner)
	p, ok := s.pending[k]
	switch {
	case !ok:
	case p == id:
		delete(s.pending, k)
	default:
		ids := strings.Split(p, idSep)
		if i := slices.Index(ids, id); i >= 0 {
			s.pending[k] = strings.Join(slices.Delete(ids, i, i+1), idSep)
		}
	}
}

// ownerKey is the key of an owner's pending flows: a seeded 64-bit hash,
// so the index holds no pointers to scan. Two owners share a list only
// if their hashes collide, which among a million owners happens with a
// chance of about one in 37 million; they then share one cap.
func (s *Store) ownerKey(o onboard.Owner) uint64 { return maphash.Comparable(s.seed, o) }

// CreateFlow saves a new pending flow.
func (s *Store) CreateFlow(ctx context.Context, f onboard.Flow) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.opt.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.ID == "" || strings.Contains(f.ID, idSep) {
		return fmt.Errorf("memstore: invalid flow id %q", f.ID)
	}
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
	ownerKey := s.ownerKey(f.Owner)
	p, has := s.pending[ownerKey]
	if has && strings.Count(p, idSep)+1 >= s.opt.MaxFlowsPerOwner {
		// Expired flows no longer count; they stay in s.flows until swept.
		ids := slices.DeleteFunc(strings.Split(p, idSep), func(id string) bool { return !now.Before(s.flows[id].expires()) })
		if len(ids) >= s.opt.MaxFlowsPerOwner {
			return fmt.Errorf("%w: owner has %d pending flows", onboard.ErrTooManyFlows, len(ids))
		}
		p, has = strings.Join(ids, idSep), len(ids) > 0
	}
	f.State = onboard.FlowPending
	s.flows[f.ID] = encode(&f)
	if has {
		s.pending[ownerKey] = p + idSep + f.ID
	} else {
		s.pending[ownerKey] = f.ID
	}
	return nil
}

// Flow returns the flow with this id.
func (s *Store) Flow(ctx context.Context, id string) (onboard.Flow, bool, error) {
	if err := ctx.Err(); err != nil {
		return onboard.Flow{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.flows[id]
	if !ok {
		return onboard.Flow{}, false, nil
	}
	f := r.decode(id)
	if f.State == onboard.FlowPending && f.Expired(s.opt.Now()) {
		f.State = onboard.FlowExpired
	}
	return f, true, nil
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
	r, ok := s.flows[flowID]
	if !ok {
		return onboard.ErrUnknownFlow
	}
	f := r.decode(flowID)
	switch {
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
	s.flows[flowID] = encode(&f)
	s.unpend(f.Owner, flowID)
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
	for id, r := range s.flows {
		if r.state() == onboard.FlowPending && r.created().Before(createdBefore) {
			out = append(out, r.decode(id))
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
	k := makeConnKey(c.Provider, c.ID)
	old, ok := s.conns[k]
	if ok {
		if created := old.created(); !created.IsZero() {
			c.CreatedAt = created
		}
	}
	s.conns[k] = encodeConn(&c)
	switch {
	case !ok:
		s.byTenant[c.Owner.Tenant] = append(s.byTenant[c.Owner.Tenant], k)
	case old.tenant() != c.Owner.Tenant:
		s.untenant(old.tenant(), k)
		s.byTenant[c.Owner.Tenant] = append(s.byTenant[c.Owner.Tenant], k)
	}
}

// untenant removes k from tenant's keys. Called with s.mu held. A slice
// rather than a set: saving a new connection, the common write, is an
// append; moving or deleting one scans its tenant's keys.
func (s *Store) untenant(tenant string, k connKey) {
	keys := slices.DeleteFunc(s.byTenant[tenant], func(x connKey) bool { return x == k })
	if len(keys) == 0 {
		delete(s.byTenant, tenant)
		return
	}
	s.byTenant[tenant] = keys
}

// lookup returns a connection, whatever its tenant. Called with s.mu
// held.
func (s *Store) lookup(provider, id string) (onboard.Connection, bool) {
	k := makeConnKey(provider, id)
	r, ok := s.conns[k]
	if !ok {
		return onboard.Connection{}, false
	}
	return r.decode(k), true
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
	c, ok := s.lookup(provider, id)
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
	for _, k := range s.byTenant[tenant] {
		out = append(out, s.conns[k].decode(k))
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
	c, ok := s.lookup(provider, id)
	return c, ok, nil
}

// DeleteConnection removes the tenant's connection.
func (s *Store) DeleteConnection(ctx context.Context, tenant, provider, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := makeConnKey(provider, id)
	if r, ok := s.conns[k]; ok && r.tenant() == tenant {
		delete(s.conns, k)
		s.untenant(tenant, k)
	}
	return nil
}

// Len returns the number of flows held in memory, of every state.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flows)
}
