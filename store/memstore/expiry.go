package memstore

import (
	"container/heap"
	"time"

	"github.com/onboardkit/onboard"
)

// record is a flow the store holds, with its positions in the structures
// that hold it, so that it leaves each without a search.
type record struct {
	flow onboard.Flow
	// pos is its position in the heap that orders it: the pending heap
	// while it is pending, the done heap once it is done with no cleanup
	// left, none (-1) while its cleanup is left.
	pos int
	// listed is its position in its owner's and in its tenant's list of
	// pending flows (see pendingLists), while it is pending.
	listed [2]int
}

// flowHeap is a min-heap of flows by expiry (container/heap). Each record
// keeps its own position, so a flow leaves the heap in O(log n) without
// a lookup.
type flowHeap []*record

func (h flowHeap) Len() int           { return len(h) }
func (h flowHeap) Less(i, j int) bool { return h[i].flow.ExpiresAt.Before(h[j].flow.ExpiresAt) }
func (h flowHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}

// Push and Pop are for container/heap; use heap.Push and heap.Pop.
func (h *flowHeap) Push(x any) {
	r := x.(*record)
	r.pos = len(*h)
	*h = append(*h, r)
}

func (h *flowHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	r.pos = -1
	return r
}

// push adds r to the heap.
func (h *flowHeap) push(r *record) { heap.Push(h, r) }

// pop removes and returns the flow that expires first.
func (h *flowHeap) pop() *record { return heap.Pop(h).(*record) }

// remove takes r, which is in the heap, out of it.
func (h *flowHeap) remove(r *record) { heap.Remove(h, r.pos) }

// before returns the flows that expire before t, leaving the heap as it
// was. It visits only the nodes it returns and their children: a node's
// children expire no earlier than the node.
func (h flowHeap) before(t time.Time) []onboard.Flow {
	var out []onboard.Flow
	var next []int // positions to visit
	if len(h) > 0 {
		next = append(next, 0)
	}
	for len(next) > 0 {
		i := next[len(next)-1]
		next = next[:len(next)-1]
		if !h[i].flow.ExpiresAt.Before(t) {
			continue // nor does any node below it
		}
		out = append(out, h[i].flow)
		for _, c := range []int{2*i + 1, 2*i + 2} {
			if c < len(h) {
				next = append(next, c)
			}
		}
	}
	return out
}

// pendingLists holds the pending flows of each owner, or of each tenant,
// in no order, for admission. Each record keeps its position in its list
// (record.listed[slot]), so that a flow joins and leaves in O(1).
type pendingLists[K comparable] struct {
	lists map[K][]*record
	slot  int
}

func newPendingLists[K comparable](slot int) pendingLists[K] {
	return pendingLists[K]{lists: make(map[K][]*record), slot: slot}
}

// add puts r in the list of k.
func (p pendingLists[K]) add(k K, r *record) {
	l := p.lists[k]
	r.listed[p.slot] = len(l)
	p.lists[k] = append(l, r)
}

// remove takes r out of the list of k, where it is: the last flow of the
// list takes its place.
func (p pendingLists[K]) remove(k K, r *record) {
	l := p.lists[k]
	i, last := r.listed[p.slot], l[len(l)-1]
	l[i], last.listed[p.slot] = last, i
	l[len(l)-1] = nil
	if l = l[:len(l)-1]; len(l) == 0 {
		delete(p.lists, k)
	} else {
		p.lists[k] = l
	}
}

// full reports whether at least limit of the flows of k are unexpired at
// now (a limit of 0 or less is no limit). A list shorter than limit
// cannot be full, so only a list at its cap is counted: below it
// admission costs O(1), and at it O(limit) plus the expired flows the
// runner has not yet moved to done.
func (p pendingLists[K]) full(k K, now time.Time, limit int) bool {
	l := p.lists[k]
	if limit <= 0 || len(l) < limit {
		return false
	}
	n := 0
	for _, r := range l {
		if !r.flow.ExpiresAt.Before(now) {
			if n++; n >= limit {
				return true
			}
		}
	}
	return false
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
