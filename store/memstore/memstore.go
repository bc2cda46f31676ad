// Package memstore is an in-memory [onboard.Store] for a single app
// instance, development and tests.
//
// It keeps plain Go maps from each flow's id and each connection's
// provider and id to a record: the onboard.Flow or onboard.Connection
// value, with its positions in the structures below. Three heaps order the
// flows by expiry: the pending ones, the done ones with cleanup left, and
// the other done ones (for Prune, and to give way when the store is full).
// Each owner's and each tenant's pending flows are kept in a list, in no
// order; admission counts the unexpired ones of a list only once it has
// reached its cap. Each flow keeps its position in its heap and in the
// lists that hold it, so a start or a return costs O(log n) in the flows
// held, and a start at its cap O(cap) more, plus the expired flows of its
// list that the runner has not settled yet.
//
// No start or return waits for a sweep of the store. The runner's
// queries of the oldest expired or dirty flows visit about their Limit in
// flows, however many have expired, when all flows have the same lifetime
// (as the core gives them) and distinct creation times; its query of
// connections to check walks each provider's heap of connections by
// CheckedAt and visits about its Limit; Prune deletes flows in batches of
// 32 and lets waiting calls in between. A query of an owner's pending
// flows reads the owner's list; one of an owner's dirty flows, which the
// core does not make, reads every dirty flow; Prune's pass over detached
// connection records reads every such record.
//
// The memory of flows is bounded per tenant and in total: admission caps
// each owner's and each tenant's pending flows (onboard.Limits),
// Options.MaxOpenPerTenant bounds a tenant's flows pending or with
// cleanup left (a user who starts again and again settles his oldest flow
// each time, and an abandoned flow keeps its cleanup until it expires),
// so one tenant's flood cannot crowd out the others, and
// Options.MaxFlows bounds the flows held in total, done flows that have
// expired giving way first. A done flow within its lifetime is never
// dropped: its reload shows its result, and a return of it in another
// browser is quarantined. A pending flow past its expiry counts toward
// the bounds until the runner settles it, and no longer toward the caps.
// Connections are not bounded here: each is kept until it is deleted, as
// in any store, and Prune deletes the records of provider
// events that no flow has attached. A pending flow holds about 630 bytes
// of heap with fields of typical size (ids, a short source, name and
// return_to) and about 4.6 KiB with the largest fields a start accepts
// (source, name and connection id of 256 four-byte runes each, a return_to
// of 1024 bytes): the default MaxFlows of 100,000 holds about 60 MiB, at
// most about 450 MiB. TestBytesPerFlow measures it.
//
// With a million flows held, a start (CreateFlow) took 0.74 to 0.77 µs at
// the median and 9 to 10 µs at the 99.9th percentile, and a return (Flow
// and CompleteFlow) 2.8 to 2.9 µs and 141 to 145 µs, in two runs on a
// shared 2-core machine: go test -tags stall -run TestStall. The runner's
// query of 500 expired flows, of 1,200,000 all expired, took 0.19 to
// 0.21 ms, and of 500 connections to check, of 181,000, 0.13 ms; starts
// and returns while 181,000 done flows were pruned, 0.10 to 0.11 ms at
// the 99.9th percentile.
//
// Like every Store it reads no clock: the times it compares with are
// passed in by the core.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"runtime"
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
	// pass it first drops a done flow that has expired (the earliest,
	// never one whose Cleanup is set); when there is none it is refused
	// with onboard.ErrTooManyFlows. Default 100,000.
	MaxFlows int
	// MaxOpenPerTenant bounds one tenant's open flows, those pending or
	// with cleanup left: a bound of the store's memory, beside
	// onboard.Config's MaxFlowsPerTenant, which caps pending flows alone.
	// A start of a tenant that holds that many is refused with
	// onboard.ErrTooManyFlows until the runner settles or cleans up some
	// (a flow settled as abandoned keeps its cleanup until it expires, so
	// a user who starts again and again, each start settling his oldest
	// flow, is held back within a flow's lifetime), and the other
	// tenants' starts go on. Done flows without cleanup left do not
	// count: once expired they give way to any start when the store is
	// full. Default a tenth of MaxFlows; at most MaxFlows. As many tenants
	// at their bound fill the store: size MaxFlows for the tenants that
	// sign up.
	MaxOpenPerTenant int
}

// Store is an in-memory onboard.Store. Build it with [New].
type Store struct {
	maxFlows, maxPerTenant int

	mu    sync.RWMutex
	flows map[string]*record
	// pending, dirty and done order by ExpiresAt the pending flows, the
	// done flows whose Cleanup is set, and the others: those Prune and
	// MaxFlows may drop.
	pending, dirty, done *flowHeap
	// maxTTL is the longest lifetime (ExpiresAt less CreatedAt) of the
	// flows ever held, which bounds the queries of the oldest flows; -1
	// once a lifetime was too long for a Duration (ExpiresAt.Sub
	// saturates), when it bounds nothing. It never shrinks.
	maxTTL time.Duration
	// held counts each tenant's flows that are pending or have cleanup
	// left (MaxOpenPerTenant).
	held map[string]int
	// byOwner and byTenant hold the pending flows of each owner and
	// tenant, for admission.
	byOwner  posLists[onboard.Owner, record]
	byTenant posLists[string, record]

	conns map[connKey]*connRecord
	// checks orders each provider's attached connections by CheckedAt,
	// for the runner's query of those to check.
	checks map[string]*posHeap[connRecord]
	// tenantConns holds each tenant's connections, and detached the keys
	// of the records with a zero Owner.
	tenantConns posLists[string, connRecord]
	detached    map[connKey]struct{}
}

type connKey struct{ provider, id string }

var _ onboard.Store = (*Store)(nil)

// New returns an empty Store.
func New(opt Options) *Store {
	if opt.MaxFlows <= 0 {
		opt.MaxFlows = DefaultMaxFlows
	}
	if opt.MaxOpenPerTenant <= 0 {
		opt.MaxOpenPerTenant = max(1, opt.MaxFlows/10)
	}
	return &Store{
		maxFlows:     opt.MaxFlows,
		maxPerTenant: min(opt.MaxOpenPerTenant, opt.MaxFlows),
		held:         make(map[string]int),
		flows:        make(map[string]*record),
		pending:      newFlowHeap(),
		dirty:        newFlowHeap(),
		done:         newFlowHeap(),
		byOwner:      newPosLists[onboard.Owner](func(r *record) *int { return &r.listed[0] }),
		byTenant:     newPosLists[string](func(r *record) *int { return &r.listed[1] }),
		conns:        make(map[connKey]*connRecord),
		checks:       make(map[string]*posHeap[connRecord]),
		tenantConns:  newPosLists[string](func(r *connRecord) *int { return &r.listed }),
		detached:     make(map[connKey]struct{}),
	}
}

// Len returns how many flows the store holds.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.flows)
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
	if atCap(s.byOwner.lists[f.Owner], f.CreatedAt, lim.PerOwner) {
		return fmt.Errorf("%w: %d pending flows", onboard.ErrOwnerLimit, lim.PerOwner)
	}
	if atCap(s.byTenant.lists[f.Owner.Tenant], f.CreatedAt, lim.PerTenant) {
		return fmt.Errorf("%w: the tenant has %d pending flows", onboard.ErrTooManyFlows, lim.PerTenant)
	}
	if n := s.held[f.Owner.Tenant]; n >= s.maxPerTenant {
		return fmt.Errorf("%w: the tenant has %d flows pending or to clean up, the store's maximum for one tenant", onboard.ErrTooManyFlows, n)
	}
	if len(s.flows) >= s.maxFlows && s.done.Len() > 0 && s.done.items[0].flow.ExpiresAt.Before(f.CreatedAt) {
		// Make room: drop the done flow that expired first (never one
		// whose cleanup is left: those are not in s.done).
		delete(s.flows, s.done.pop().flow.ID)
	}
	if len(s.flows) >= s.maxFlows {
		return fmt.Errorf("%w: the store holds %d flows, its maximum", onboard.ErrTooManyFlows, len(s.flows))
	}
	f.State = onboard.FlowPending
	f.Outcome, f.Message, f.Cleanup = "", "", false
	r := &record{flow: f}
	s.flows[f.ID] = r
	s.pending.push(r)
	switch ttl := f.ExpiresAt.Sub(f.CreatedAt); {
	case s.maxTTL < 0:
	case ttl == math.MaxInt64: // saturated: longer than a Duration holds
		s.maxTTL = -1
	default:
		s.maxTTL = max(s.maxTTL, ttl)
	}
	s.byOwner.add(f.Owner, r)
	s.byTenant.add(f.Owner.Tenant, r)
	s.hold(f.Owner.Tenant, 1)
	return nil
}

// hold adds d to the count of tenant's flows that are pending or have
// cleanup left. Called with s.mu held.
func (s *Store) hold(tenant string, d int) {
	if s.held[tenant] += d; s.held[tenant] <= 0 {
		delete(s.held, tenant)
	}
}

// Flow returns the flow with this id.
func (s *Store) Flow(ctx context.Context, id string) (onboard.Flow, bool, error) {
	if err := ctx.Err(); err != nil {
		return onboard.Flow{}, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if r, ok := s.flows[id]; ok {
		return r.flow, true, nil
	}
	return onboard.Flow{}, false, nil
}

// Flows returns the flows q selects, oldest first. An owner's pending
// flows come from the owner's list (its cap, and its expired flows not
// yet settled); the others from the heap of pending or dirty flows,
// visiting about Limit flows when all flows have the same lifetime (see
// oldest), however many match.
func (s *Store) Flows(ctx context.Context, q onboard.FlowQuery) ([]onboard.Flow, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !q.Owner.IsZero() && !q.Cleanup {
		var rs []*record
		for _, r := range s.byOwner.lists[q.Owner] {
			if q.ExpiredBefore.IsZero() || r.flow.ExpiresAt.Before(q.ExpiredBefore) {
				rs = append(rs, r)
			}
		}
		return sortedFlows(rs, q.Limit), nil
	}
	h := s.pending
	if q.Cleanup {
		h = s.dirty
	}
	var match func(onboard.Flow) bool
	if !q.Owner.IsZero() {
		match = func(f onboard.Flow) bool { return f.Owner == q.Owner }
	}
	return oldest(h, q.ExpiredBefore, q.Limit, s.maxTTL, match), nil
}

// CompleteFlow moves a pending flow to done and saves c, atomically.
func (s *Store) CompleteFlow(ctx context.Context, flowID string, c onboard.Connection, cleanup bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.flows[flowID]
	switch {
	case !ok:
		return onboard.ErrUnknownFlow
	case r.flow.State != onboard.FlowPending:
		return onboard.ErrFlowUsed
	}
	if old, ok := s.conns[connKey{c.Provider, c.ID}]; ok && c.ID != "" && old.c.State == onboard.Revoked {
		return fmt.Errorf("%w: %s %q", onboard.ErrRevoked, c.Provider, c.ID)
	}
	f := &r.flow
	f.State, f.Outcome, f.Message, f.Cleanup = onboard.FlowDone, c.State, c.Message, cleanup
	if c.ID != "" {
		f.ConnectionID = c.ID
		s.save(c, true)
	}
	s.pending.remove(r)
	s.byOwner.remove(f.Owner, r)
	s.byTenant.remove(f.Owner.Tenant, r)
	if cleanup {
		s.dirty.push(r)
	} else {
		s.done.push(r)
		s.hold(f.Owner.Tenant, -1)
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
	r, ok := s.flows[flowID]
	if !ok {
		return onboard.ErrUnknownFlow
	}
	if r.flow.State != onboard.FlowDone {
		return fmt.Errorf("memstore: flow %q is not done", flowID)
	}
	if r.flow.Cleanup == cleanup {
		return nil
	}
	r.flow.Cleanup = cleanup
	if cleanup {
		s.done.remove(r)
		s.dirty.push(r)
		s.hold(r.flow.Owner.Tenant, 1)
	} else {
		s.dirty.remove(r)
		s.done.push(r)
		s.hold(r.flow.Owner.Tenant, -1)
	}
	return nil
}

// pruneBatch is the most flows Prune deletes in one hold of the lock:
// between two, the starts and returns waiting for it go first. With a
// million flows held, a batch takes about 0.1 to 0.2 ms.
const pruneBatch = 32

// Prune deletes done flows that expired before t with no cleanup left,
// and detached connection records last updated before t. It deletes the
// flows in batches (pruneBatch), so that no start or return waits for a
// large prune, and then the detached records (provider events that came
// before their flow completed: few) in one pass. When ctx ends between
// batches it stops, with what it deleted so far and ctx's error, and
// leaves the detached records for the next call.
func (s *Store) Prune(ctx context.Context, t time.Time) (int, error) {
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, more := s.pruneFlows(t)
		n += k
		if !more {
			break
		}
		// The unlock woke the calls waiting for the lock; yielding
		// usually lets them take it before the next batch does.
		runtime.Gosched()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.detached {
		if s.conns[k].c.UpdatedAt.Before(t) {
			s.deleteConn(k)
			n++
		}
	}
	return n, nil
}

// pruneFlows deletes up to pruneBatch done flows that expired before t
// with no cleanup left, and reports whether more are left.
func (s *Store) pruneFlows(t time.Time) (n int, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.done.Len() > 0 && s.done.items[0].flow.ExpiresAt.Before(t) {
		if n == pruneBatch {
			return n, true
		}
		delete(s.flows, s.done.pop().flow.ID)
		n++
	}
	return n, false
}

// connRecord is a connection the store holds, with its position in its
// provider's heap of attached connections (-1 while detached) and, while
// attached, in its tenant's list.
type connRecord struct {
	c      onboard.Connection
	pos    int
	listed int
}

// newConnHeap returns an empty heap of connections by byChecked.
func newConnHeap() *posHeap[connRecord] {
	return &posHeap[connRecord]{
		less: func(a, b *connRecord) bool { return byChecked(&a.c, &b.c) < 0 },
		at:   func(r *connRecord) *int { return &r.pos },
	}
}

// byChecked orders connections by CheckedAt, then provider and id.
func byChecked(a, b *onboard.Connection) int {
	if c := a.CheckedAt.Compare(b.CheckedAt); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.ID, b.ID))
}

// save inserts or replaces c; with laterEvent, a replaced record's
// EventAt is kept when it is later than c's. Called with s.mu held.
func (s *Store) save(c onboard.Connection, laterEvent bool) {
	k := connKey{c.Provider, c.ID}
	if old, ok := s.conns[k]; ok {
		c.CreatedAt = old.c.CreatedAt
		if laterEvent && old.c.EventAt.After(c.EventAt) {
			c.EventAt = old.c.EventAt
		}
		if old.c.Owner == c.Owner { // indexed already
			old.c = c
			if old.pos >= 0 {
				s.checks[c.Provider].fix(old)
			}
			return
		}
		s.deleteConn(k)
	}
	r := &connRecord{c: c, pos: -1}
	s.conns[k] = r
	if c.Owner.IsZero() {
		s.detached[k] = struct{}{}
		return
	}
	s.tenantConns.add(c.Owner.Tenant, r)
	h, ok := s.checks[c.Provider]
	if !ok {
		h = newConnHeap()
		s.checks[c.Provider] = h
	}
	h.push(r)
}

// deleteConn removes a connection and reports whether it was there.
// Called with s.mu held.
func (s *Store) deleteConn(k connKey) bool {
	r, ok := s.conns[k]
	if !ok {
		return false
	}
	delete(s.conns, k)
	if _, ok := s.detached[k]; ok {
		delete(s.detached, k)
		return true
	}
	s.tenantConns.remove(r.c.Owner.Tenant, r)
	if r.pos >= 0 {
		h := s.checks[k.provider]
		if h.remove(r); h.Len() == 0 {
			delete(s.checks, k.provider)
		}
	}
	return true
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
	s.save(c, false)
	return nil
}

// SwapConnection replaces old with c while the stored connection equals
// old (inserts c while none is stored, for a zero old).
func (s *Store) SwapConnection(ctx context.Context, old, c onboard.Connection) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if c.Provider == "" || c.ID == "" {
		return false, fmt.Errorf("memstore: connection needs a provider and an id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	stored, ok := s.conns[connKey{c.Provider, c.ID}]
	switch {
	case old == onboard.Connection{}:
		if ok {
			return false, nil
		}
	case !ok || old.Provider != c.Provider || old.ID != c.ID || !sameConnection(stored.c, old):
		return false, nil
	}
	s.save(c, false)
	return true, nil
}

// sameConnection reports whether a and b are equal in every field, times
// compared with Equal.
func sameConnection(a, b onboard.Connection) bool {
	return a.Provider == b.Provider && a.ID == b.ID && a.Owner == b.Owner && a.Name == b.Name &&
		a.Source == b.Source && a.State == b.State && a.Message == b.Message && a.FlowID == b.FlowID &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) && a.EventAt.Equal(b.EventAt) &&
		a.CheckedAt.Equal(b.CheckedAt)
}

// FindConnection returns the connection whatever its tenant.
func (s *Store) FindConnection(ctx context.Context, provider, id string) (onboard.Connection, bool, error) {
	if err := ctx.Err(); err != nil {
		return onboard.Connection{}, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if r, ok := s.conns[connKey{provider, id}]; ok {
		return r.c, true, nil
	}
	return onboard.Connection{}, false, nil
}

// Connections returns the connections q selects. A tenant's are read
// from the tenant's index; the runner's query of those to check walks the
// providers' heaps in CheckedAt order, visiting about Offset+Limit.
func (s *Store) Connections(ctx context.Context, q onboard.ConnectionQuery) ([]onboard.Connection, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []onboard.Connection
	skip := max(q.Offset, 0)
	if q.CheckedBefore.IsZero() {
		for _, r := range s.tenantConns.lists[q.Tenant] { // attached connections only
			if q.Provider == "" || r.c.Provider == q.Provider {
				out = append(out, r.c)
			}
		}
		slices.SortFunc(out, func(a, b onboard.Connection) int {
			return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.ID, b.ID))
		})
		out = out[min(skip, len(out)):]
		if q.Limit > 0 && len(out) > q.Limit {
			out = out[:q.Limit]
		}
		return out, nil
	}
	var heaps []*posHeap[connRecord]
	for p, h := range s.checks {
		if q.Provider == "" || p == q.Provider {
			heaps = append(heaps, h)
		}
	}
	walk(func(r *connRecord) bool {
		switch {
		case !r.c.CheckedAt.Before(q.CheckedBefore):
			return false // nor is any left
		case skip > 0:
			skip--
			return true
		}
		out = append(out, r.c)
		return q.Limit <= 0 || len(out) < q.Limit
	}, heaps...)
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
