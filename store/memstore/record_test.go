package memstore

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/onboardkit/onboard"
)

func TestRecordRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 123456789)
	full := onboard.Flow{
		ID: "id", Owner: onboard.Owner{Tenant: "acme", User: "alice"}, Provider: "cdata",
		Source: "Salesforce", Name: "CRM", ConnectionID: "c1", Reconnect: true,
		ReturnURL: "https://app.example/connect/cdata/return/id", ReturnTo: "/settings?tab=data",
		Data:  map[string]string{"sub": "s1", "externalId": strings.Repeat("x", 300), "": ""},
		State: onboard.FlowDone, Outcome: onboard.Connected,
		CreatedAt: now, ExpiresAt: now.Add(30 * time.Minute),
	}
	for _, tc := range []struct {
		name string
		f    onboard.Flow
	}{
		{"every field", full},
		{"zero", onboard.Flow{ID: "id"}},
		{"zero times", onboard.Flow{ID: "id", Provider: "fivetran", State: onboard.FlowPending}},
		{"long strings", onboard.Flow{ID: "id", Source: strings.Repeat("é", 200), ReturnTo: "/" + strings.Repeat("a", 70000)}},
		{"before 1970", onboard.Flow{ID: "id", CreatedAt: time.Unix(-5, 0), ExpiresAt: time.Unix(-1, 0)}},
		{"far future", onboard.Flow{ID: "id", ExpiresAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := encode(&tc.f)
			got := r.decode(tc.f.ID)
			if d := cmp.Diff(tc.f, got, cmpopts.EquateEmpty(), cmpopts.EquateApproxTime(time.Microsecond)); d != "" {
				t.Fatalf("round trip (-want +got):\n%s", d)
			}
			near := func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Microsecond }
			if !near(r.expires(), tc.f.ExpiresAt) || !near(r.created(), tc.f.CreatedAt) || r.state() != tc.f.State {
				t.Fatalf("header reads: %v %v %q", r.expires(), r.created(), r.state())
			}
		})
	}
}

// FuzzRecord checks that any flow survives encoding, and that decoding a
// damaged record never panics.
func FuzzRecord(f *testing.F) {
	f.Add("acme", "alice", "Salesforce", "https://app.example/r/id", "k", "v", int64(1_800_000_000), true, 3)
	f.Add("", "", "", "", "", "", int64(0), false, 0)
	f.Fuzz(func(t *testing.T, tenant, user, source, returnURL, k, v string, unix int64, reconnect bool, cut int) {
		fl := onboard.Flow{
			ID: "id", Owner: onboard.Owner{Tenant: tenant, User: user}, Provider: "p", Source: source,
			ReturnURL: returnURL, Reconnect: reconnect, Data: map[string]string{k: v},
			State: onboard.FlowPending, CreatedAt: time.Unix(unix%(1<<33), 0), ExpiresAt: time.Unix(unix%(1<<33)+60, 0),
		}
		r := encode(&fl)
		if d := cmp.Diff(fl, r.decode("id"), cmpopts.EquateApproxTime(time.Microsecond)); d != "" {
			t.Fatalf("round trip (-want +got):\n%s", d)
		}
		c := onboard.Connection{Provider: source, ID: returnURL, Owner: fl.Owner, Name: k, Source: v,
			State: onboard.Failed, Message: k + v, FlowID: "id", CreatedAt: fl.CreatedAt, UpdatedAt: fl.ExpiresAt}
		key := makeConnKey(c.Provider, c.ID)
		cr := encodeConn(&c)
		if d := cmp.Diff(c, cr.decode(key), cmpopts.EquateApproxTime(time.Microsecond)); d != "" {
			t.Fatalf("connection round trip (-want +got):\n%s", d)
		}
		if cr.tenant() != tenant {
			t.Fatalf("tenant() = %q, want %q", cr.tenant(), tenant)
		}
		if cut < 0 {
			cut = -cut
		}
		if cut = recordHeader + cut%(len(r)-recordHeader+1); cut < len(r) {
			_ = r[:cut].decode("id") // truncated: must not panic
			_ = r[:cut].state()
		}
		if n := len(cr); n > recordHeader {
			_ = cr[:recordHeader+cut%(n-recordHeader)].decode(key) // truncated: must not panic
		}
	})
}

func TestConnKey(t *testing.T) {
	keys := map[connKey]bool{}
	for _, pid := range [][2]string{{"ab", "c"}, {"a", "bc"}, {"", "abc"}, {"abc", ""}, {"a\x00", "b"}, {"a", "\x00b"}} {
		k := makeConnKey(pid[0], pid[1])
		if keys[k] {
			t.Fatalf("key of %q is not distinct", pid)
		}
		keys[k] = true
		if p, id := k.split(); p != pid[0] || id != pid[1] {
			t.Fatalf("split(%q) = %q, %q; want %q", k, p, id, pid)
		}
	}
}
