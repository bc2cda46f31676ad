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
// that may never come back, and a return one connection (a connRecord,
// packed the same way), so what these cost the collector is what
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
	var flags byte
	if f.Reconnect {
		flags |= flagReconnect
	}
	return record(pack(f.ExpiresAt, f.CreatedAt, flags, f.Data,
		string(f.State), f.Owner.Tenant, f.Owner.User, f.Provider, f.Source, f.Name,
		f.ConnectionID, f.ReturnURL, f.ReturnTo, string(f.Outcome)))
}

// pack lays out two times, a flags byte, strs and data as a record of
// either kind does.
func pack(t0, t1 time.Time, flags byte, data map[string]string, strs ...string) string {
	size := recordHeader + uvarintLen(len(data))
	for _, s := range strs {
		size += uvarintLen(len(s)) + len(s)
	}
	for k, v := range data {
		size += uvarintLen(len(k)) + len(k) + uvarintLen(len(v)) + len(v)
	}
	var b strings.Builder
	b.Grow(size)
	var buf [recordHeader]byte
	b.Write(append(appendTime(appendTime(buf[:0], t0), t1), flags))
	appendLen := func(n int) { b.Write(binary.AppendUvarint(buf[:0], uint64(n))) }
	for _, s := range strs {
		appendLen(len(s))
		b.WriteString(s)
	}
	appendLen(len(data))
	for k, v := range data {
		appendLen(len(k))
		b.WriteString(k)
		appendLen(len(v))
		b.WriteString(v)
	}
	return b.String()
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
	var state string
	unpack(string(r), &state)
	return onboard.FlowState(state)
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
	f.Data = unpackData(unpack(string(r),
		(*string)(&f.State), &f.Owner.Tenant, &f.Owner.User, &f.Provider, &f.Source, &f.Name,
		&f.ConnectionID, &f.ReturnURL, &f.ReturnTo, (*string)(&f.Outcome)))
	return f
}

// cut reads one length-prefixed string off the front of *rest. Damaged
// input reads as empty strings from the damage on.
func cut(rest *string) string {
	n, w := uvarint(*rest)
	if w <= 0 || n > uint64(len(*rest)-w) {
		*rest = ""
		return ""
	}
	s := (*rest)[w : w+int(n)]
	*rest = (*rest)[w+int(n):]
	return s
}

// unpack reads the first strings of a packed record r into ptrs and
// returns what follows them.
func unpack(r string, ptrs ...*string) (rest string) {
	rest = r[recordHeader:]
	for _, p := range ptrs {
		*p = cut(&rest)
	}
	return rest
}

// unpackData reads the Data entries that follow a flow's strings: nil
// when there are none.
func unpackData(rest string) map[string]string {
	n, w := uvarint(rest)
	if w <= 0 || n == 0 {
		return nil
	}
	rest = rest[w:]
	data := make(map[string]string, min(n, 64))
	for range n {
		k := cut(&rest)
		data[k] = cut(&rest)
	}
	return data
}

// connRecord is a connection as the Store keeps it, packed as a record
// is: its update and creation times, then its strings. Its provider and
// id are in the key it is stored under (see connKey).
type connRecord string

func encodeConn(c *onboard.Connection) connRecord {
	return connRecord(pack(c.UpdatedAt, c.CreatedAt, 0, nil,
		c.Owner.Tenant, c.Owner.User, c.Name, c.Source, string(c.State), c.Message, c.FlowID))
}

func (r connRecord) created() time.Time { return readTime(string(r[8:])) }

// tenant returns the connection's tenant without decoding the rest.
func (r connRecord) tenant() string {
	var t string
	unpack(string(r), &t)
	return t
}

func (r connRecord) decode(k connKey) onboard.Connection {
	c := onboard.Connection{UpdatedAt: readTime(string(r)), CreatedAt: readTime(string(r[8:]))}
	c.Provider, c.ID = k.split()
	unpack(string(r),
		&c.Owner.Tenant, &c.Owner.User, &c.Name, &c.Source, (*string)(&c.State), &c.Message, &c.FlowID)
	return c
}

// connKey is a connection's provider and id in one string: the length of
// the provider as a uvarint, the provider, then the id. Any two strings
// give a distinct key.
type connKey string

func makeConnKey(provider, id string) connKey {
	var buf [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(buf[:], uint64(len(provider)))
	return connKey(string(buf[:n]) + provider + id)
}

func (k connKey) split() (provider, id string) {
	id = string(k)
	provider = cut(&id)
	return provider, id
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
