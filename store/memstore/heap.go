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
	next := &ordered[node[T]]{less: func(a, b node[T]) bool { return a.h.less(a.h.items[a.i], b.h.items[b.i]) }}
	for _, h := range heaps {
		if len(h.items) > 0 {
			next.items = append(next.items, node[T]{h, 0})
		}
	}
	heap.Init(next)
	for next.Len() > 0 {
		n := heap.Pop(next).(node[T])
		if !visit(n.h.items[n.i]) {
			return
		}
		for _, c := range []int{2*n.i + 1, 2*n.i + 2} {
			if c < len(n.h.items) {
				heap.Push(next, node[T]{n.h, c})
			}
		}
	}
}

// node is a position in one of the heaps walk visits.
type node[T any] struct {
	h *posHeap[T]
	i int
}

// ordered is a min-heap (container/heap) of values in the order of less,
// for those that need not know their place in it.
type ordered[E any] struct {
	items []E
	less  func(a, b E) bool
}

func (o *ordered[E]) Len() int           { return len(o.items) }
func (o *ordered[E]) Less(i, j int) bool { return o.less(o.items[i], o.items[j]) }
func (o *ordered[E]) Swap(i, j int)      { o.items[i], o.items[j] = o.items[j], o.items[i] }
func (o *ordered[E]) Push(x any)         { o.items = append(o.items, x.(E)) }
func (o *ordered[E]) Pop() any {
	x := o.items[len(o.items)-1]
	o.items = o.items[:len(o.items)-1]
	return x
}

// posLists holds, for each key, a list of elements in no order, each of
// which keeps its position in its list (at), so that one joins and leaves
// in O(1). An empty list is dropped.
type posLists[K comparable, T any] struct {
	lists map[K][]*T
	at    func(*T) *int
}

func newPosLists[K comparable, T any](at func(*T) *int) posLists[K, T] {
	return posLists[K, T]{lists: make(map[K][]*T), at: at}
}

// add puts e in the list of k.
func (p posLists[K, T]) add(k K, e *T) {
	l := p.lists[k]
	*p.at(e) = len(l)
	p.lists[k] = append(l, e)
}

// remove takes e out of the list of k, where it is: the last element of
// the list takes its place.
func (p posLists[K, T]) remove(k K, e *T) {
	l := p.lists[k]
	i, last := *p.at(e), l[len(l)-1]
	l[i], *p.at(last) = last, i
	l[len(l)-1] = nil
	if l = l[:len(l)-1]; len(l) == 0 {
		delete(p.lists, k)
	} else {
		p.lists[k] = l
	}
}
