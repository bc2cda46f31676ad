package memstore

import (
	"encoding/binary"
	"math/bits"
	"strings"
	"time"

	"github.com/onboardkit/onboard"
)

// record is a flow as the Store keeps it: every field in one string, so a
// stored flow is a single object without pointers, which the garbage
// collector never has to scan. A start stores one flow for each browser
// that may never come back, so what a flow costs the collector is what
// memstore costs the app under load.
//
// The layout is the expiry and the creation time as 8-byte big-endian
// Unix microseconds, a flags byte, then each string field with a uvarint
// length prefix (the state first), then the number of Data entries and
// each key and value. Sweeps, the per-owner cap and the reconciler's
// query read the times and the state without decoding the rest.
type record string

const (
	recordHeader  = 8 + 8 + 1
	flagReconnect = 1
)

// appendTime appends t as Unix microseconds, which cover every year of
// time.Time's own range, the zero time included.
func appendTime(b []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixMicro()))
}

func readTime(b string) time.Time {
	var n int64
	for i := range 8 {
		n = n<<8 | int64(b[i])
	}
	return time.UnixMicro(n)
}

// encode returns the record of f; f.ID is the key it is stored under and
// is left out.
func encode(f *onboard.Flow) record {
	strs := [...]string{
		string(f.State), f.Owner.Tenant, f.Owner.User, f.Provider, f.Source, f.Name,
		f.ConnectionID, f.ReturnURL, f.ReturnTo, string(f.Outcome),
	}
	size := recordHeader + uvarintLen(len(f.Data))
	for _, s := range strs {
		size += uvarintLen(len(s)) + len(s)
	}
	for k, v := range f.Data {
		size += uvarintLen(len(k)) + len(k) + uvarintLen(len(v)) + len(v)
	}
	var b strings.Builder
	b.Grow(size)
	var buf [recordHeader]byte
	h := appendTime(buf[:0], f.ExpiresAt)
	h = appendTime(h, f.CreatedAt)
	var flags byte
	if f.Reconnect {
		flags |= flagReconnect
	}
	b.Write(append(h, flags))
	appendLen := func(n int) { b.Write(binary.AppendUvarint(buf[:0], uint64(n))) }
	for _, s := range strs {
		appendLen(len(s))
		b.WriteString(s)
	}
	appendLen(len(f.Data))
	for k, v := range f.Data {
		appendLen(len(k))
		b.WriteString(k)
		appendLen(len(v))
		b.WriteString(v)
	}
	return record(b.String())
}

// uvarintLen is the length of n's uvarint encoding.
func uvarintLen(n int) int { return (bits.Len64(uint64(n)|1) + 6) / 7 }

// expires returns the flow's expiry without decoding the rest.
func (r record) expires() time.Time { return readTime(string(r)) }

// created returns the flow's creation time without decoding the rest.
func (r record) created() time.Time { return readTime(string(r[8:])) }

// state returns the flow's state, the first string, without decoding the
// rest.
func (r record) state() onboard.FlowState {
	rest := string(r[recordHeader:])
	n, w := uvarint(rest)
	if w <= 0 || n > uint64(len(rest)-w) {
		return ""
	}
	return onboard.FlowState(rest[w : w+int(n)])
}

// decode returns the flow stored under id. The strings of the flow share
// the record's memory.
func (r record) decode(id string) onboard.Flow {
	f := onboard.Flow{
		ID:        id,
		ExpiresAt: readTime(string(r)),
		CreatedAt: readTime(string(r[8:])),
		Reconnect: r[16]&flagReconnect != 0,
	}
	rest := string(r[recordHeader:])
	next := func() string {
		n, w := uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			rest = ""
			return ""
		}
		s := rest[w : w+int(n)]
		rest = rest[w+int(n):]
		return s
	}
	for _, p := range [...]*string{
		(*string)(&f.State), &f.Owner.Tenant, &f.Owner.User, &f.Provider, &f.Source, &f.Name,
		&f.ConnectionID, &f.ReturnURL, &f.ReturnTo, (*string)(&f.Outcome),
	} {
		*p = next()
	}
	n, w := uvarint(rest)
	if w > 0 && n > 0 {
		rest = rest[w:]
		f.Data = make(map[string]string, min(n, 64))
		for range n {
			k := next()
			f.Data[k] = next()
		}
	}
	return f
}

// uvarint is binary.Uvarint for a string, which it cannot take without a
// copy: the value and the bytes read, or 0 and 0 for a short or
// overlong input.
func uvarint(s string) (uint64, int) {
	var x uint64
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, 0
			}
			return x | uint64(c)<<(7*i), i + 1
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	return 0, 0
}
