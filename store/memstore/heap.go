package memstore

import "container/heap"

// posHeap is a min-heap (container/heap) in the order of less, of
// elements that keep their own position in it (at), so that one leaves
// or moves in O(log n) without a search.
type posHeap[T any] struct {
	items []*T
	less  func(a, b *T) bool
	at    func(*T) *int // where an element keeps its position; -1 out of the heap
}

func (h *posHeap[T]) Len() int           { return len(h.items) }
func (h *posHeap[T]) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *posHeap[T]) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.at(h.items[i]), *h.at(h.items[j]) = i, j
}

// Push and Pop are for container/heap; use push and pop.
func (h *posHeap[T]) Push(x any) {
	e := x.(*T)
	*h.at(e) = len(h.items)
	h.items = append(h.items, e)
}

func (h *posHeap[T]) Pop() any {
	n := len(h.items) - 1
	e := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	*h.at(e) = -1
	return e
}

// push adds e to the heap.
func (h *posHeap[T]) push(e *T) { heap.Push(h, e) }

// pop removes and returns the least element.
func (h *posHeap[T]) pop() *T { return heap.Pop(h).(*T) }

// remove takes e, which is in the heap, out of it.
func (h *posHeap[T]) remove(e *T) { heap.Remove(h, *h.at(e)) }

// fix restores the order after e's key changed.
func (h *posHeap[T]) fix(e *T) { heap.Fix(h, *h.at(e)) }

// walk visits the elements of heaps, which share one order, least first
// across all of them, until visit returns false. It visits only the
// elements it hands to visit and their children (a node's children come
// no earlier than the node): about k elements for the k least, with a
// frontier of O(k).
func walk[T any](visit func(*T) bool, heaps ...*posHeap[T]) {
	var f frontier[T]
	for _, h := range heaps {
		if len(h.items) > 0 {
			f.less = h.less
			f.push(node[T]{h, 0})
		}
	}
	for len(f.nodes) > 0 {
		n := f.pop()
		if !visit(n.h.items[n.i]) {
			return
		}
		for _, c := range []int{2*n.i + 1, 2*n.i + 2} {
			if c < len(n.h.items) {
				f.push(node[T]{n.h, c})
			}
		}
	}
}

// node is a position in one of the heaps walk visits.
type node[T any] struct {
	h *posHeap[T]
	i int
}

// frontier is a min-heap of the nodes walk visits next, kept by hand
// rather than through container/heap, which would allocate for every
// node it is handed.
type frontier[T any] struct {
	nodes []node[T]
	less  func(a, b *T) bool
}

func (f *frontier[T]) before(i, j int) bool {
	a, b := f.nodes[i], f.nodes[j]
	return f.less(a.h.items[a.i], b.h.items[b.i])
}

func (f *frontier[T]) push(n node[T]) {
	f.nodes = append(f.nodes, n)
	for i := len(f.nodes) - 1; i > 0; {
		p := (i - 1) / 2
		if !f.before(i, p) {
			break
		}
		f.nodes[i], f.nodes[p] = f.nodes[p], f.nodes[i]
		i = p
	}
}

func (f *frontier[T]) pop() node[T] {
	top, last := f.nodes[0], len(f.nodes)-1
	f.nodes[0] = f.nodes[last]
	f.nodes = f.nodes[:last]
	for i := 0; ; {
		least := i
		for _, c := range []int{2*i + 1, 2*i + 2} {
			if c < len(f.nodes) && f.before(c, least) {
				least = c
			}
		}
		if least == i {
			return top
		}
		f.nodes[i], f.nodes[least] = f.nodes[least], f.nodes[i]
		i = least
	}
}
