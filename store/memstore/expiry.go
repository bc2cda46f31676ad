package memstore

import (
	"cmp"
	"container/heap"
	"slices"
	"strings"
	"time"

	"github.com/onboardkit/onboard"
)

// expiry is one flow in an expiryHeap.
type expiry struct {
	at time.Time
	id string
}

// expiries is a list of flows sorted by expiry, then id.
type expiries []expiry

func compareExpiry(a, b expiry) int { return cmp.Or(a.at.Compare(b.at), strings.Compare(a.id, b.id)) }

// unexpired counts the flows of l unexpired at t: those whose expiry is
// not before t.
func (l expiries) unexpired(t time.Time) int {
	i, _ := slices.BinarySearchFunc(l, t, func(e expiry, t time.Time) int {
		if e.at.Before(t) {
			return -1
		}
		return 1
	})
	return len(l) - i
}

// insert adds e to the list at m[k].
func insert[K comparable](m map[K]expiries, k K, e expiry) {
	l := m[k]
	i, _ := slices.BinarySearchFunc(l, e, compareExpiry)
	m[k] = slices.Insert(l, i, e)
}

// drop removes e from the list at m[k], dropping an empty list.
func drop[K comparable](m map[K]expiries, k K, e expiry) {
	l := m[k]
	if i, ok := slices.BinarySearchFunc(l, e, compareExpiry); ok {
		l = slices.Delete(l, i, i+1)
	}
	if len(l) == 0 {
		delete(m, k)
	} else {
		m[k] = l
	}
}

// expiryHeap is a min-heap of flows by expiry (container/heap), with each
// flow's position kept so that a completed flow leaves it in O(log n).
type expiryHeap struct {
	items []expiry
	index map[string]int // position of each id in items
}

func newExpiryHeap() expiryHeap { return expiryHeap{index: make(map[string]int)} }

func (h *expiryHeap) Len() int           { return len(h.items) }
func (h *expiryHeap) Less(i, j int) bool { return h.items[i].at.Before(h.items[j].at) }
func (h *expiryHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.index[h.items[i].id] = i
	h.index[h.items[j].id] = j
}

// Push and Pop are for container/heap.
func (h *expiryHeap) Push(x any) {
	e := x.(expiry)
	h.index[e.id] = len(h.items)
	h.items = append(h.items, e)
}

func (h *expiryHeap) Pop() any {
	e := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	delete(h.index, e.id)
	return e
}

// remove takes id out of the heap, if it is there.
func (h *expiryHeap) remove(id string) {
	if i, ok := h.index[id]; ok {
		heap.Remove(h, i)
	}
}

// before returns the flows (looked up with get) that expire before t,
// leaving the heap as it was. It visits only the nodes it returns and
// their children: a node's children expire no earlier than the node.
func (h *expiryHeap) before(t time.Time, get func(id string) onboard.Flow) []onboard.Flow {
	var out []onboard.Flow
	var next []int // positions to visit
	if len(h.items) > 0 {
		next = append(next, 0)
	}
	for len(next) > 0 {
		i := next[len(next)-1]
		next = next[:len(next)-1]
		if !h.items[i].at.Before(t) {
			continue // nor does any node below it
		}
		out = append(out, get(h.items[i].id))
		for _, c := range []int{2*i + 1, 2*i + 2} {
			if c < len(h.items) {
				next = append(next, c)
			}
		}
	}
	return out
}
