// Package memstore is an in-memory [onboard.Store] for a single app
// instance, development and tests.
//
// It keeps plain Go maps of onboard.Flow and onboard.Connection values.
// Two heaps order the flows by expiry: the pending ones (for the runner's
// query of expired flows) and the done ones without cleanup left (for
// Prune, and to give way when the store is full). Each owner's and each
// tenant's pending flows are listed by expiry, so admission counts those
// unexpired at a time with a binary search. A start or a return costs
// O(log n) in the flows held plus O(k) in what one tenant holds; no call
// waits for a sweep of the whole store. Listing queries cost O(m log m) in
// what they select before their Limit; the runner's query of connections
// to check reads every connection.
//
// Memory is bounded: admission caps each owner's and each tenant's
// pending flows (onboard.Limits), so one tenant's flood cannot push out
// another's flows, and Options.MaxFlows bounds the flows held in total,
// done flows giving way first. A pending flow holds about 760 bytes of
// heap with fields of typical size (ids, a short source, name and
// return_to) and about 4.8 KiB with the largest fields a start accepts
// (source, name and connection id of 256 four-byte runes each, a
// return_to of 1024 bytes): the default MaxFlows of 100,000 holds about
// 75 MiB, at most about 470 MiB. TestBytesPerFlow measures it.
//
// With a million flows held, a start (CreateFlow) took 5 to 8 µs at the
// median and 67 to 108 µs at the 99.9th percentile, and a return (Flow
// and CompleteFlow) 9 to 13 µs and 378 to 452 µs, in three runs on a
// shared 2-core machine: go test -tags stall -run TestStall.
//
// Like every Store it reads no clock: the times it compares with are
// passed in by the core.
package memstore

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/onboardkit/onboard"
)

// DefaultMaxFlows is the default of Options.MaxFlows.
const DefaultMaxFlows = 100_000

// Options tune a Store. The zero value takes the defaults.
type Options struct {
	// MaxFlows bounds the flows held, of every state. A start that would
	// pass it first drops a done flow (the earliest to expire, never one
	// whose Cleanup is set); when only pending flows and flows to clean up
	// are left it is refused with onboard.ErrTooManyFlows. Default
	// 100,000.
	MaxFlows int
}

// Store is an in-memory onboard.Store. Build it with [New].
type Store struct {
	maxFlows int

	mu    sync.Mutex
	flows map[string]onboard.Flow
	// pending orders the pending flows by ExpiresAt, and done the done
	// flows whose Cleanup is clear: those Prune and MaxFlows may drop.
	pending, done expiryHeap
	// byOwner and byTenant list the pending flows of each owner and
	// tenant by expiry, so that admission counts those unexpired at a
	// time with a binary search.
	byOwner  map[onboard.Owner]expiries
	byTenant map[string]expiries
	// dirty holds the ids of done flows whose Cleanup is set.
	dirty map[string]struct{}

	conns map[connKey]onboard.Connection
	// tenantConns holds the keys of each tenant's connections, and
	// detached those of the records with a zero Owner.
	tenantConns map[string]map[connKey]struct{}
	detached    map[connKey]struct{}
}

type connKey struct{ provider, id string }

var _ onboard.Store = (*Store)(nil)

// New returns an empty Store.
func New(opt Options) *Store {
	if opt.MaxFlows <= 0 {
		opt.MaxFlows = DefaultMaxFlows
	}
	return &Store{
		maxFlows:    opt.MaxFlows,
		flows:       make(map[string]onboard.Flow),
		pending:     newExpiryHeap(),
		done:        newExpiryHeap(),
		byOwner:     make(map[onboard.Owner]expiries),
		byTenant:    make(map[string]expiries),
		dirty:       make(map[string]struct{}),
		conns:       make(map[connKey]onboard.Connection),
		tenantConns: make(map[string]map[connKey]struct{}),
		detached:    make(map[connKey]struct{}),
	}
}

// Len returns how many flows the store holds.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flows)
}

// add puts v in the set at m[k], making the set when needed.
func add[K, V comparable](m map[K]map[V]struct{}, k K, v V) {
	set, ok := m[k]
	if !ok {
		set = make(map[V]struct{})
		m[k] = set
	}
	set[v] = struct{}{}
}

// remove takes v out of the set at m[k], dropping an empty set.
func remove[K, V comparable](m map[K]map[V]struct{}, k K, v V) {
	if set, ok := m[k]; ok {
		delete(set, v)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// full reports whether at least limit of the flows of l are unexpired
// at now (a limit of 0 or less is no limit).
func full(l expiries, now time.Time, limit int) bool {
	return limit > 0 && l.unexpired(now) >= limit
}

// CreateFlow saves a new pending flow if admission allows it.
func (s *Store) CreateFlow(ctx context.Context, f onboard.Flow, lim onboard.Limits) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.ID == "" {
		return fmt.Errorf("memstore: empty flow id")
	}
	if _, dup := s.flows[f.ID]; dup {
		return fmt.Errorf("memstore: flow %q exists", f.ID)
	}
	if full(s.byOwner[f.Owner], f.CreatedAt, lim.PerOwner) {
		return fmt.Errorf("%w: %d pending flows", onboard.ErrOwnerLimit, lim.PerOwner)
	}
	if full(s.byTenant[f.Owner.Tenant], f.CreatedAt, lim.PerTenant) {
		return fmt.Errorf("%w: the tenant has %d pending flows", onboard.ErrTooManyFlows, lim.PerTenant)
	}
	if len(s.flows) >= s.maxFlows && s.done.Len() > 0 {
		// Make room: drop the done flow that expires first (never one
		// whose cleanup is left: those are not in s.done).
		delete(s.flows, heap.Pop(&s.done).(expiry).id)
	}
	if len(s.flows) >= s.maxFlows {
		return fmt.Errorf("%w: the store holds %d flows, its maximum", onboard.ErrTooManyFlows, len(s.flows))
	}
	f.State = onboard.FlowPending
	f.Outcome, f.Message, f.Cleanup = "", "", false
	s.flows[f.ID] = f
	e := expiry{f.ExpiresAt, f.ID}
	heap.Push(&s.pending, e)
	insert(s.byOwner, f.Owner, e)
	insert(s.byTenant, f.Owner.Tenant, e)
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
	return f, ok, nil
}

// Flows returns the flows q selects, oldest first.
func (s *Store) Flows(ctx context.Context, q onboard.FlowQuery) ([]onboard.Flow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []onboard.Flow
	match := func(f onboard.Flow) bool {
		return (q.Owner.IsZero() || f.Owner == q.Owner) && (q.ExpiredBefore.IsZero() || f.ExpiresAt.Before(q.ExpiredBefore))
	}
	switch {
	case q.Cleanup:
		for id := range s.dirty {
			if f := s.flows[id]; match(f) {
				out = append(out, f)
			}
		}
	case !q.Owner.IsZero():
		for _, e := range s.byOwner[q.Owner] {
			if f := s.flows[e.id]; match(f) {
				out = append(out, f)
			}
		}
	case !q.ExpiredBefore.IsZero():
		// The pending heap yields the flows expired before the time
		// without visiting the others.
		out = s.pending.before(q.ExpiredBefore, func(id string) onboard.Flow { return s.flows[id] })
	default:
		for id := range s.pending.index {
			out = append(out, s.flows[id])
		}
	}
	slices.SortFunc(out, func(a, b onboard.Flow) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// CompleteFlow moves a pending flow to done and saves c, atomically.
func (s *Store) CompleteFlow(ctx context.Context, flowID string, c onboard.Connection, cleanup bool) error {
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
	}
	f.State, f.Outcome, f.Message, f.Cleanup = onboard.FlowDone, c.State, c.Message, cleanup
	if c.ID != "" {
		f.ConnectionID = c.ID
		if old, ok := s.conns[connKey{c.Provider, c.ID}]; ok && old.EventAt.After(c.EventAt) {
			c.EventAt = old.EventAt
		}
		s.save(c)
	}
	s.flows[flowID] = f
	s.pending.remove(flowID)
	e := expiry{f.ExpiresAt, flowID}
	drop(s.byOwner, f.Owner, e)
	drop(s.byTenant, f.Owner.Tenant, e)
	if cleanup {
		s.dirty[flowID] = struct{}{}
	} else {
		heap.Push(&s.done, e)
	}
	return nil
}

// SetCleanup sets or clears a done flow's Cleanup.
func (s *Store) SetCleanup(ctx context.Context, flowID string, cleanup bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.flows[flowID]
	if !ok {
		return onboard.ErrUnknownFlow
	}
	if f.State != onboard.FlowDone {
		return fmt.Errorf("memstore: flow %q is not done", flowID)
	}
	if f.Cleanup == cleanup {
		return nil
	}
	f.Cleanup = cleanup
	s.flows[flowID] = f
	if cleanup {
		s.done.remove(flowID)
		s.dirty[flowID] = struct{}{}
	} else {
		delete(s.dirty, flowID)
		heap.Push(&s.done, expiry{f.ExpiresAt, flowID})
	}
	return nil
}

// Prune deletes done flows that expired before t with no cleanup left,
// and detached connection records last updated before t.
func (s *Store) Prune(ctx context.Context, t time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for s.done.Len() > 0 && s.done.items[0].at.Before(t) {
		delete(s.flows, heap.Pop(&s.done).(expiry).id)
		n++
	}
	for k := range s.detached {
		if c := s.conns[k]; c.UpdatedAt.Before(t) {
			s.deleteConn(k)
			n++
		}
	}
	return n, nil
}

// save inserts or replaces c. Called with s.mu held.
func (s *Store) save(c onboard.Connection) {
	k := connKey{c.Provider, c.ID}
	if old, ok := s.conns[k]; ok {
		c.CreatedAt = old.CreatedAt
	}
	s.deleteConn(k)
	s.conns[k] = c
	if c.Owner.IsZero() {
		s.detached[k] = struct{}{}
	} else {
		add(s.tenantConns, c.Owner.Tenant, k)
	}
}

// deleteConn removes a connection and reports whether it was there.
// Called with s.mu held.
func (s *Store) deleteConn(k connKey) bool {
	c, ok := s.conns[k]
	if ok {
		delete(s.conns, k)
		delete(s.detached, k)
		remove(s.tenantConns, c.Owner.Tenant, k)
	}
	return ok
}

// SaveConnection inserts or replaces c.
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

// FindConnection returns the connection whatever its tenant.
func (s *Store) FindConnection(ctx context.Context, provider, id string) (onboard.Connection, bool, error) {
	if err := ctx.Err(); err != nil {
		return onboard.Connection{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conns[connKey{provider, id}]
	return c, ok, nil
}

// Connections returns the connections q selects.
func (s *Store) Connections(ctx context.Context, q onboard.ConnectionQuery) ([]onboard.Connection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []onboard.Connection
	keep := func(c onboard.Connection) bool {
		return !c.Owner.IsZero() && (q.Provider == "" || c.Provider == q.Provider)
	}
	if q.CheckedBefore.IsZero() {
		for k := range s.tenantConns[q.Tenant] { // attached connections only
			if c := s.conns[k]; keep(c) {
				out = append(out, c)
			}
		}
		slices.SortFunc(out, func(a, b onboard.Connection) int {
			return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.ID, b.ID))
		})
	} else {
		for _, c := range s.conns {
			if keep(c) && c.CheckedAt.Before(q.CheckedBefore) {
				out = append(out, c)
			}
		}
		slices.SortFunc(out, func(a, b onboard.Connection) int {
			return cmp.Or(a.CheckedAt.Compare(b.CheckedAt), cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.ID, b.ID))
		})
	}
	out = out[min(q.Offset, len(out)):]
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// DeleteConnection removes a connection.
func (s *Store) DeleteConnection(ctx context.Context, provider, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteConn(connKey{provider, id}), nil
}
