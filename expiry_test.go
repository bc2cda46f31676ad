package onboard_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
)

// TestExpiryBoundary: a flow is valid up to its ExpiresAt exactly, judged
// by Config.Now alone; after that, the browser that started it gets 410
// with a way to start again, never "another browser".
func TestExpiryBoundary(t *testing.T) {
	tests := []struct {
		name  string
		after time.Duration // past the flow's lifetime
		code  int
	}{
		{"a second before", -time.Second, http.StatusSeeOther},
		{"exactly at expiry", 0, http.StatusSeeOther},
		{"a nanosecond after", time.Nanosecond, http.StatusGone},
		{"an hour after", time.Hour, http.StatusGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			b := e.browser("alice", "acme")
			id := b.start("source=Salesforce&name=Sales&return_to=%2Fdone")
			back := b.finish(id, onboard.Connected)
			e.clock.Add(onboard.DefaultFlowTTL + tt.after)
			res := b.get(back)
			require.Equal(t, tt.code, res.Code, res.Body)
			if tt.code == http.StatusGone {
				require.Contains(t, res.Body, "expired")
				require.NotContains(t, res.Body, "another browser")
				require.Contains(t, res.Body, `href="/connect/fake/start?name=Sales&amp;return_to=%2Fdone&amp;source=Salesforce"`,
					"the restart link keeps source, name and return_to")
				require.Empty(t, e.Connections("acme"))
			}
		})
	}
}

// TestFlowWithoutBrowser: a flow stored before flows kept their browser
// (an upgrade) is told expired in any browser, never quarantined.
func TestFlowWithoutBrowser(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	f := onboard.Flow{ID: strings.Repeat("B", 43), Owner: onboard.Owner{Tenant: "acme", User: "alice"}, Provider: "fake",
		State: onboard.FlowPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.NoError(t, e.store.CreateFlow(t.Context(), f, onboard.Limits{}))
	res := e.browser("alice", "acme").get(e.URL() + "/connect/fake/return/" + f.ID + "?conn=x")
	require.Equal(t, http.StatusGone, res.Code)
	require.Empty(t, e.hooks.list())
	require.NotContains(t, e.log.String(), "security")
}

// TestExpiryWithTheWallClock runs a real 2 s lifetime on time.Now: a
// return in the last moments is accepted, one after it gets 410.
func TestExpiryWithTheWallClock(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a real lifetime")
	}
	e := newEnv(t, func(c *onboard.Config) {
		c.Now = time.Now
		c.FlowTTL = 2 * time.Second
	})
	b := e.browser("alice", "acme")
	late := b.start("source=Salesforce")
	lateBack := b.finish(late, onboard.Connected)
	inTime := b.start("source=Salesforce")
	inTimeBack := b.finish(inTime, onboard.Connected)

	// Just inside the lifetime of inTime.
	time.Sleep(time.Until(e.flow(inTime).ExpiresAt.Add(-150 * time.Millisecond)))
	res := b.get(inTimeBack)
	require.Equal(t, http.StatusSeeOther, res.Code, res.Body)

	time.Sleep(time.Until(e.flow(late).ExpiresAt.Add(50 * time.Millisecond)))
	res = b.get(lateBack)
	require.Equal(t, http.StatusGone, res.Code, res.Body)
	require.Contains(t, res.Body, "Start again")
	require.Len(t, e.Connections("acme"), 1)

	// The runner settles the expired flow and removes what it made.
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Settled)
	require.Equal(t, onboard.Abandoned, e.flow(late).Outcome)
	require.Len(t, e.fake.Connections(), 1, "only the connection of the flow that came back in time")
}

// TestExpiredAfterTheRunnerSettledIt: a flow the runner settled because it
// expired is still answered 410 with a way to start again when its browser
// comes back, not shown as abandoned.
func TestExpiredAfterTheRunnerSettledIt(t *testing.T) {
	e := newEnv(t)
	b := e.browser("alice", "acme")
	back := b.finish(b.start("source=Salesforce&name=Sales"), onboard.Connected)
	e.clock.Add(onboard.DefaultFlowTTL + time.Second)
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Settled)
	res := b.get(back)
	require.Equal(t, http.StatusGone, res.Code, res.Body)
	require.Contains(t, res.Body, "source=Salesforce")
	require.Empty(t, e.Connections("acme"))
	require.Empty(t, e.fake.Connections(), "what the flow made is removed")
}
