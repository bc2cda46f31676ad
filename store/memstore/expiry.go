package memstore

import (
	"cmp"
	"container/heap"
	"slices"
	"strings"
	"time"

	"github.com/onboardkit/onboard"
)

// record is a flow the store holds, with its positions in the structures
// that hold it, so that it leaves each without a search.
type record struct {
	flow onboard.Flow
	// pos is its position in the heap of its state: pending, done with
	// cleanup left (dirty), or done.
	pos int
	// listed is its position in its owner's and in its tenant's list of
	// pending flows, while it is pending.
	listed [2]int
}

// flowHeap is a heap of flows by expiry.
type flowHeap = posHeap[record]

// newFlowHeap returns an empty heap of flows by expiry.
func newFlowHeap() *flowHeap {
	return &flowHeap{
		less: func(a, b *record) bool { return a.flow.ExpiresAt.Before(b.flow.ExpiresAt) },
		at:   func(r *record) *int { return &r.pos },
	}
}

// oldest returns, oldest CreatedAt first (then ID), up to limit flows of
// the heap (all for a limit of 0 or less) that expire before t (any, for
// a zero t) and that match accepts (any, for nil). No flow's lifetime
// (ExpiresAt less CreatedAt) passes maxTTL; a negative maxTTL bounds
// nothing.
//
// It visits the heap in expiry order, from the root, keeping the limit
// oldest flows found so far. A flow expiring at e was created at
// e-maxTTL or later, so once the next flow to visit expires later than
// maxTTL after the newest flow kept, none left can be older: it stops
// there. With lifetimes all alike and creation times apart, it visits
// about limit flows, however many have expired; flows created at the same
// instant as the newest kept are all visited, since ties go by ID.
func oldest(h *flowHeap, t time.Time, limit int, maxTTL time.Duration, match func(onboard.Flow) bool) []onboard.Flow {
	// kept holds the flows found, the newest on top once limit are kept.
	kept := &ordered[*record]{less: func(a, b *record) bool { return byAge(b, a) < 0 }}
	if limit > 0 {
		kept.items = make([]*record, 0, min(limit, h.Len()))
	}
	walk(func(r *record) bool {
		if !t.IsZero() && !r.flow.ExpiresAt.Before(t) {
			return false // nor does any flow left
		}
		full := limit > 0 && kept.Len() == limit
		if full && maxTTL >= 0 && r.flow.ExpiresAt.Add(-maxTTL).After(kept.items[0].flow.CreatedAt) {
			return false // no flow left is older than those kept
		}
		if match == nil || match(r.flow) {
			switch {
			case !full:
				heap.Push(kept, r)
			case byAge(r, kept.items[0]) < 0:
				kept.items[0] = r
				heap.Fix(kept, 0)
			}
		}
		return true
	}, h)
	return sortedFlows(kept.items, 0)
}

// sortedFlows returns the flows of rs oldest first (byAge), up to limit
// (all for 0 or less), sorting rs.
func sortedFlows(rs []*record, limit int) []onboard.Flow {
	slices.SortFunc(rs, byAge)
	if limit > 0 && len(rs) > limit {
		rs = rs[:limit]
	}
	out := make([]onboard.Flow, len(rs))
	for i, r := range rs {
		out[i] = r.flow
	}
	return out
}

// byAge orders records by CreatedAt, then ID.
func byAge(a, b *record) int {
	return cmp.Or(a.flow.CreatedAt.Compare(b.flow.CreatedAt), strings.Compare(a.flow.ID, b.flow.ID))
}

// atCap reports whether at least limit of the flows of l are unexpired at
// now (a limit of 0 or less is no limit). A list shorter than limit
// cannot be, so only a list at its cap is counted: below it admission
// costs O(1), and at it O(limit) plus the expired flows the runner has not
// settled yet.
func atCap(l []*record, now time.Time, limit int) bool {
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
