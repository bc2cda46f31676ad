package onboard_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// victimFills plays the victim: she opens the hosted page of the
// attacker's flow (a link the attacker sent her), enters her credentials,
// and the provider sends her browser back.
func (e *env) victimFills(flowID string) string {
	e.t.Helper()
	back, err := e.fake.Finish(flowID, onboard.Connected)
	require.NoError(e.t, err)
	return back
}

// fixation plays the attack: mallory starts a flow with query, and the
// victim fills its hosted page. It returns mallory's browser, the flow id
// and where the provider sends the victim's browser back.
func (e *env) fixation(query string) (mallory *browser, id, back string) {
	e.t.Helper()
	mallory = e.browser("mallory", "evil")
	id = mallory.start(query)
	return mallory, id, e.victimFills(id)
}

func connOf(t *testing.T, back string) string {
	u, err := url.Parse(back)
	require.NoError(t, err)
	return u.Query().Get("conn")
}

// TestFixationVictimReturnQuarantines: the victim's browser comes back
// with the attacker's flow: refused, and what the flow made is deleted at
// the provider, the flow is revoked, the hook fires and a security event
// is logged. The attacker's own return then attaches nothing.
func TestFixationVictimReturnQuarantines(t *testing.T) {
	e := newEnv(t)
	mallory, id, back := e.fixation("source=Salesforce")
	require.Len(t, e.fake.Connections(), 1)

	victim := e.browser("alice", "acme")
	res := victim.get(back)
	require.Equal(t, http.StatusForbidden, res.Code)
	require.Contains(t, res.Body, "another browser")
	require.NotContains(t, res.Body, "Salesforce", "nothing of the flow is shown to another browser")

	require.Empty(t, e.fake.Connections(), "the connection is deleted at the provider")
	f := e.flow(id)
	require.Equal(t, onboard.Revoked, f.Outcome)
	require.False(t, f.Cleanup)
	require.Equal(t, []string{"revoked"}, e.hooks.list())
	require.Contains(t, e.log.String(), "security=true")

	res = mallory.get(back)
	require.Equal(t, http.StatusSeeOther, res.Code)
	c, status := mallory.Outcome(e.App, res.Location)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, onboard.Revoked, c.State)
	require.Empty(t, e.Connections("evil"), "nothing attached to the attacker's tenant")
}

// TestFixationAttackerReturnWithoutTheSecret: the victim closes the tab
// after saving; the attacker returns in his own browser without the
// connection id only the victim's browser was handed: not connected, and
// what the flow made is removed.
func TestFixationAttackerReturnWithoutTheSecret(t *testing.T) {
	e := newEnv(t)
	mallory, _, back := e.fixation("source=Salesforce")
	u, _ := url.Parse(back)
	res := mallory.get(u.Scheme + "://" + u.Host + u.Path + "?status=connected")
	require.Equal(t, http.StatusSeeOther, res.Code)
	c, _ := mallory.Outcome(e.App, res.Location)
	require.Equal(t, onboard.Abandoned, c.State)
	require.Empty(t, e.Connections("evil"))
	require.Empty(t, e.fake.Connections(), "what the flow made is removed")
}

// TestFixationReconcilerNeverAttaches: nobody returns; the runner settles
// the expired flow as abandoned and removes what it made, whatever the
// provider holds.
func TestFixationReconcilerNeverAttaches(t *testing.T) {
	e := newEnv(t)
	mallory := e.browser("mallory", "evil")
	id := mallory.start("source=Salesforce")
	e.victimFills(id)
	e.clock.Add(onboard.DefaultFlowTTL + onboard.DefaultTimeout + 1)
	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Settled)
	require.Equal(t, onboard.Abandoned, e.flow(id).Outcome)
	require.Empty(t, e.Connections("evil"))
	require.Empty(t, e.fake.Connections())
}

// TestFixationAfterTheAttackerWon: the attacker's browser completes the
// flow first; the victim's browser comes back within the flow's
// lifetime: the stored connection is revoked and deleted at the provider.
func TestFixationAfterTheAttackerWon(t *testing.T) {
	e := newEnv(t)
	mallory, _, back := e.fixation("source=Salesforce")
	require.Equal(t, http.StatusSeeOther, mallory.get(back).Code) // the attacker, first
	require.Equal(t, onboard.Connected, e.Connections("evil")[0].State)

	res := e.browser("alice", "acme").get(back)
	require.Equal(t, http.StatusForbidden, res.Code)
	cs := e.Connections("evil")
	require.Len(t, cs, 1)
	require.Equal(t, onboard.Revoked, cs[0].State)
	require.Empty(t, e.fake.Connections(), "deleted at the provider")
	require.Equal(t, []string{"connected", "revoked"}, e.hooks.list())

	// The attacker's reload shows the revocation, not a connection.
	res = mallory.get(back)
	c, _ := mallory.Outcome(e.App, res.Location)
	require.Equal(t, onboard.Revoked, c.State)
}

// TestFixationThroughAReconnect: the attacker reconnects his own
// connection and sends the edit page to the victim; her browser's return
// disables the connection at the provider and revokes it.
func TestFixationThroughAReconnect(t *testing.T) {
	e := newEnv(t)
	mallory := e.browser("mallory", "evil")
	mallory.get(mallory.finish(mallory.start("source=Salesforce"), onboard.Connected))
	conn := e.Connections("evil")[0]
	start := e.Onboarder.StartURL("fake", onboard.StartOptions{Connection: conn.ID})
	loc := mallory.Start(e.App, "fake", strings.TrimPrefix(start, "/connect/fake/start?"))
	u, _ := url.Parse(loc)
	back := e.victimFills(u.Query().Get("flow"))

	res := e.browser("alice", "acme").get(back)
	require.Equal(t, http.StatusForbidden, res.Code)
	held, ok := e.fake.Connection(conn.ID)
	require.True(t, ok)
	require.True(t, held.Disabled, "the reconnected connection is disabled at the provider")
	require.Equal(t, onboard.Revoked, e.Connections("evil")[0].State)
	require.Contains(t, e.hooks.list(), "revoked")
	// No later event brings it back.
	e.fake.SetState(conn.ID, onboard.Connected)
	e.clock.Add(onboard.DefaultRefreshEvery + 1)
	_, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, onboard.Revoked, e.Connections("evil")[0].State)
}

// TestQuarantineCleanupRetriedByTheRunner: when the provider cannot be
// reached during the quarantine, the flow is revoked at once and the
// runner removes what it made later.
func TestQuarantineCleanupRetriedByTheRunner(t *testing.T) {
	e := newEnv(t)
	mallory, id, back := e.fixation("")
	e.fake.FailCancel(onboard.ErrProvider, onboard.ErrProvider) // the quarantine's, and the reload's below
	require.Equal(t, http.StatusForbidden, e.browser("alice", "acme").get(back).Code)
	require.True(t, e.flow(id).Cleanup)
	require.Len(t, e.fake.Connections(), 1)
	// The attacker cannot complete it meanwhile.
	res := mallory.get(back)
	c, _ := mallory.Outcome(e.App, res.Location)
	require.Equal(t, onboard.Revoked, c.State)

	rep, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, rep.Cleaned)
	require.Empty(t, e.fake.Connections())
	require.False(t, e.flow(id).Cleanup)
}

// TestFixationQuarantineFailsClosed: the store fails as the victim's
// return quarantines the attacker's pending flow, so the flow stays
// pending. What it made is removed at the provider all the same, and the
// attacker's own return, with every parameter the victim's browser had,
// attaches nothing.
func TestFixationQuarantineFailsClosed(t *testing.T) {
	e := newEnv(t)
	mallory, id, back := e.fixation("source=Salesforce")
	require.Len(t, e.fake.Connections(), 1)

	e.store.Fail("CompleteFlow", 1)
	res := e.browser("alice", "acme").get(back)
	require.Equal(t, http.StatusForbidden, res.Code)
	require.Equal(t, onboard.FlowPending, e.flow(id).State, "the store could not settle it")
	require.Empty(t, e.fake.Connections(), "removed at the provider anyway")
	require.Contains(t, e.log.String(), "quarantine incomplete")

	res = mallory.get(back)
	require.NotEqual(t, onboard.Connected, e.flow(id).Outcome, res.Body)
	require.Empty(t, e.Connections("evil"))
	require.Empty(t, e.fake.Connections())
}

// TestRevokedConnectionIsNeverConnectedAgain: once a reconnect of a
// connection came back in another browser, the connection may hold what
// the victim entered: no reconnect of it starts, and one started before
// the quarantine does not connect it when it returns.
func TestRevokedConnectionIsNeverConnectedAgain(t *testing.T) {
	e := newEnv(t)
	mallory := e.browser("mallory", "evil")
	x := mallory.get(mallory.finish(mallory.start("source=Salesforce"), onboard.Connected))
	require.Equal(t, http.StatusSeeOther, x.Code)
	conn := e.Connections("evil")[0].ID
	reconnect := "connection=" + url.QueryEscape(conn)
	early := mallory.start(reconnect) // kept for later
	sent := mallory.start(reconnect)  // sent to the victim
	require.Equal(t, http.StatusForbidden, e.browser("alice", "acme").get(e.victimFills(sent)).Code)
	require.Equal(t, onboard.Revoked, e.Connections("evil")[0].State)
	calls := e.fake.Calls().Begin

	res := mallory.get(e.URL() + "/connect/fake/start?" + reconnect)
	require.Equal(t, http.StatusConflict, res.Code, res.Body)
	require.Contains(t, res.Body, "Delete it, and connect again")
	require.Equal(t, calls, e.fake.Calls().Begin, "the provider is not asked")

	res = mallory.get(mallory.finish(early, onboard.Connected))
	require.Equal(t, http.StatusConflict, res.Code, res.Body)
	require.Equal(t, onboard.Revoked, e.flow(early).Outcome)
	require.Equal(t, onboard.Revoked, e.Connections("evil")[0].State, "still revoked")
}

// TestAbandonedReconnectIsQuarantined: mallory starts a reconnect of his
// own connection and at once returns it himself without parameters (an
// abandoned reconnect attaches nothing and keeps its connection). He then
// sends the hosted page, still valid, to alice. Her browser's return,
// within the flow's lifetime, quarantines the connection the page edits.
func TestAbandonedReconnectIsQuarantined(t *testing.T) {
	e := newEnv(t)
	mallory := e.browser("mallory", "evil")
	require.Equal(t, http.StatusSeeOther, mallory.get(mallory.finish(mallory.start("source=Salesforce"), onboard.Connected)).Code)
	conn := e.Connections("evil")[0]

	start := e.Onboarder.StartURL("fake", onboard.StartOptions{Connection: conn.ID})
	loc := mallory.Start(e.App, "fake", strings.TrimPrefix(start, "/connect/fake/start?"))
	u, _ := url.Parse(loc)
	id := u.Query().Get("flow")

	// 1. mallory's own return, before anyone used the page: abandoned.
	res := mallory.get(e.URL() + "/connect/fake/return/" + id)
	require.Equal(t, http.StatusSeeOther, res.Code)
	require.Equal(t, onboard.Abandoned, e.flow(id).Outcome)

	// 2. alice fills the page mallory sent her; her browser comes back.
	back := e.victimFills(id)
	res = e.browser("alice", "acme").get(back)
	require.Equal(t, http.StatusForbidden, res.Code)

	// The promise: the reconnected connection is disabled/deleted at the
	// provider and revoked in the store.
	held, ok := e.fake.Connection(conn.ID)
	require.True(t, ok)
	require.True(t, held.Disabled, "alice's credentials are left in mallory's connection, enabled")
	require.Equal(t, onboard.Revoked, e.Connections("evil")[0].State, "mallory's connection is not revoked")
}

// TestAbandonedReconnectIsQuarantinedCData: the same against the CData
// emulator. mallory's reconnect (Edit Connection page) is returned at once
// with cdata_connection_status=none; alice then saves her credentials on
// the same page and her browser comes back: CData holds the connection no
// more, and the app shows it revoked in mallory's tenant.
func TestAbandonedReconnectIsQuarantinedCData(t *testing.T) {
	emu := onboardtest.NewEmulators(t, nil)
	app := onboardtest.New(t, onboardtest.Options{Providers: emu.Providers()})
	mallory := app.Browser("mallory", "evil")
	hosted := mallory.Start(app, "cdata", "source=Salesforce")
	back, err := emu.Finish(t.Context(), mallory, hosted, onboard.Connected)
	require.NoError(t, err)
	require.Equal(t, http.StatusSeeOther, mallory.Get(back).Code)
	conn := app.Connections("evil")[0]

	start := app.Onboarder.StartURL("cdata", onboard.StartOptions{Connection: conn.ID})
	edit := mallory.Start(app, "cdata", strings.TrimPrefix(start, "/connect/cdata/start?"))
	// mallory leaves his own edit page without saving: Return to application.
	mine, err := cdatatest.Fill(t.Context(), mallory.Client, edit, "", "")
	require.NoError(t, err)
	require.Contains(t, mine, "cdata_connection_status=none")
	res := mallory.Get(mine)
	require.Equal(t, http.StatusSeeOther, res.Code)
	c, _ := mallory.Outcome(app, res.Location)
	require.Equal(t, onboard.Abandoned, c.State)

	// alice, in her own browser, saves her credentials on the same page.
	alice := app.Browser("alice", "acme")
	hers, err := cdatatest.Fill(t.Context(), alice.Client, edit, "", "alice-secret")
	require.NoError(t, err)
	require.Contains(t, hers, "cdata_connection_id="+url.QueryEscape(conn.ID))
	res = alice.Get(hers)
	require.Equal(t, http.StatusForbidden, res.Code)

	for _, h := range emu.CDataServer.AllConnections() {
		require.NotEqual(t, conn.ID, h.ID, "CData still holds mallory's connection with alice's credentials (status %s)", h.Status)
	}
	require.Equal(t, onboard.Revoked, app.Connections("evil")[0].State)
}

// TestMalformedReturnIsQuarantined: part of CData's return query is the
// attacker's to choose: the connection name, which the Edit Connection
// page fills in with the connection's current name and echoes in
// cdata_connection_name. mallory names his connection with a TAB and
// sends his reconnect page to alice. Her browser's return, whose query is
// malformed, is refused as another browser's and quarantines the
// connection; it is not refused as malformed first, which would leave the
// flow pending for mallory's own clean return.
func TestMalformedReturnIsQuarantined(t *testing.T) {
	emu := onboardtest.NewEmulators(t, nil)
	app := onboardtest.New(t, onboardtest.Options{Providers: emu.Providers()})
	mallory := app.Browser("mallory", "evil")
	hosted := mallory.Start(app, "cdata", "source=Salesforce")
	back, err := cdatatest.Fill(t.Context(), mallory.Client, hosted, "evil\tname", "pw")
	require.NoError(t, err)
	require.Contains(t, back, "%09", "the emulator keeps the TAB in the name")
	// mallory's own return is refused too (400), but the connection exists
	// at CData; he completes it with a clean query carrying its id.
	require.Equal(t, http.StatusBadRequest, mallory.Get(back).Code)
	u, _ := url.Parse(back)
	id := u.Query().Get("cdata_connection_id")
	clean := u.Scheme + "://" + u.Host + u.Path + "?cdata_connection_id=" + url.QueryEscape(id) + "&cdata_connection_status=success"
	require.Equal(t, http.StatusSeeOther, mallory.Get(clean).Code)
	conn := app.Connections("evil")[0]

	// The reconnect page, sent to alice.
	start := app.Onboarder.StartURL("cdata", onboard.StartOptions{Connection: conn.ID})
	edit := mallory.Start(app, "cdata", strings.TrimPrefix(start, "/connect/cdata/start?"))
	alice := app.Browser("alice", "acme")
	hers, err := cdatatest.Fill(t.Context(), alice.Client, edit, "", "alice-secret")
	require.NoError(t, err)
	res := alice.Get(hers)
	ru, _ := url.Parse(hers)
	flowID := onboardtest.FlowID(t, hers)
	f, _, _ := app.Store.Flow(t.Context(), flowID)
	t.Logf("alice's return: %d; flow state %s", res.Code, f.State)

	// mallory's own clean return of the same flow.
	mine := ru.Scheme + "://" + ru.Host + ru.Path + "?cdata_connection_id=" + url.QueryEscape(conn.ID) + "&cdata_connection_status=success"
	res2 := mallory.Get(mine)
	t.Logf("mallory's return: %d", res2.Code)

	require.Equal(t, http.StatusForbidden, res.Code, "alice's browser came back with mallory's flow: must be refused as another browser's and quarantined")
	for _, h := range emu.CDataServer.AllConnections() {
		require.NotEqual(t, conn.ID, h.ID, "alice's credentials stay in mallory's connection")
	}
}

// armed is a hook a test arms, for one call that match accepts.
type armed struct {
	mu    sync.Mutex
	match func(onboard.Connection) bool
	fn    func()
}

func (a *armed) arm(match func(onboard.Connection) bool, fn func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.match, a.fn = match, fn
}

// take returns the hook, once, when it is armed for c; nil otherwise.
func (a *armed) take(c onboard.Connection) func() {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn := a.fn
	if fn == nil || !a.match(c) {
		return nil
	}
	a.fn = nil
	return fn
}

// raceStore runs its armed hook just before the CompleteFlow it matches:
// after a return has checked its result with the provider, before it is
// stored.
type raceStore struct {
	onboard.Store
	armed
}

func (s *raceStore) CompleteFlow(ctx context.Context, flowID string, c onboard.Connection, cleanup bool) error {
	if fn := s.take(c); fn != nil {
		fn()
	}
	return s.Store.CompleteFlow(ctx, flowID, c, cleanup)
}

// TestReconnectCompletionKeepsQuarantine: a quarantine of another
// reconnect flow of the same connection (the victim's browser coming
// back, on another instance) lands while the attacker's own return of his
// reconnect is under way, after it read the connection. The completion
// does not store the connection connected again: the store refuses it.
func TestReconnectCompletionKeepsQuarantine(t *testing.T) {
	p := fake.New("fake")
	p.URL = onboardtest.Serve(t, p)
	store := &raceStore{Store: memstore.New(memstore.Options{})}
	app := onboardtest.New(t, onboardtest.Options{Providers: []onboard.Provider{p}, Store: store})
	mallory := app.Browser("mallory", "evil")
	first := flowOf(t, mallory.Start(app, "fake", "source=Salesforce"))
	back, err := p.Finish(first, onboard.Connected)
	require.NoError(t, err)
	require.Equal(t, http.StatusSeeOther, mallory.Get(back).Code)
	conn := app.Connections("evil")[0]

	q := strings.TrimPrefix(app.Onboarder.StartURL("fake", onboard.StartOptions{Connection: conn.ID}), "/connect/fake/start?")
	f1 := flowOf(t, mallory.Start(app, "fake", q)) // mallory keeps this one
	f2 := flowOf(t, mallory.Start(app, "fake", q)) // sent to alice
	back2, err := p.Finish(f2, onboard.Connected)  // alice fills it
	require.NoError(t, err)
	back1, err := p.Finish(f1, onboard.Connected)
	require.NoError(t, err)

	alice := app.Browser("alice", "acme")
	store.arm(func(c onboard.Connection) bool { return c.ID == conn.ID }, func() {
		require.Equal(t, http.StatusForbidden, alice.Get(back2).Code) // the quarantine
		c, _, _ := store.Store.FindConnection(context.Background(), "fake", conn.ID)
		require.Equal(t, onboard.Revoked, c.State)
	})
	mallory.Get(back1)

	held, _ := p.Connection(conn.ID)
	require.True(t, held.Disabled, "disabled at the provider by the quarantine")
	require.Equal(t, onboard.Revoked, app.Connections("evil")[0].State, "the quarantined connection is stored connected again")
}

func flowOf(t *testing.T, hosted string) string {
	u, err := url.Parse(hosted)
	require.NoError(t, err)
	return u.Query().Get("flow")
}

// lostAfter stores a completion, then runs its armed hook (another
// request) when it matches, and answers an error, as a database whose
// connection dropped after COMMIT does.
type lostAfter struct {
	onboard.Store
	armed
}

func (s *lostAfter) CompleteFlow(ctx context.Context, id string, c onboard.Connection, cleanup bool) error {
	err := s.Store.CompleteFlow(ctx, id, c, cleanup)
	fn := s.take(c)
	if err != nil || fn == nil {
		return err
	}
	fn()
	return errors.New("read tcp 10.0.0.5:5432: connection reset by peer")
}

// TestLostAnswerAfterQuarantine: mallory's return stores his flow
// connected, but the store's answer is lost; while it is on its way,
// alice's browser comes back with the same flow and quarantines it
// (Hooks.Revoked, the connection revoked). The flow read again is done as
// asked, but its connection is revoked now: mallory's page is shown the
// stored result, and Hooks.Connected does not fire after Hooks.Revoked.
func TestLostAnswerAfterQuarantine(t *testing.T) {
	s := &lostAfter{}
	var shown onboard.State
	e := newEnv(t, func(c *onboard.Config) {
		s.Store = c.Store
		c.Store = s
		c.Result = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, _ := onboard.ResultFromContext(r.Context())
			shown = got.State
			w.WriteHeader(http.StatusOK)
		})
	})
	mallory, _, back := e.fixation("source=Salesforce")
	alice := e.browser("alice", "acme")
	s.arm(func(c onboard.Connection) bool { return c.State == onboard.Connected }, func() {
		require.Equal(t, http.StatusForbidden, alice.get(back).Code) // the quarantine
	})
	mallory.get(back)

	cs := e.Connections("evil")
	require.Len(t, cs, 1)
	require.Equal(t, onboard.Revoked, cs[0].State, "the store says revoked")
	hooks := e.hooks.list()
	require.Equal(t, "revoked", hooks[len(hooks)-1], "Hooks.Connected fired after Hooks.Revoked: %v", hooks)
	require.NotEqual(t, onboard.Connected, shown, "Config.Result is told the revoked connection is connected")
}

// TestVictimReturnBeforeTheFlowCloses: the runner keeps an expired flow
// pending (completable by a return that passed its checks in time) until
// it closes, Config.Timeout after expiry; a return in another browser in
// that window quarantines what the flow made. mallory's reconnect page,
// filled by alice, whose browser comes back 1 s after the flow expired:
// the connection is disabled at the provider and revoked.
func TestVictimReturnBeforeTheFlowCloses(t *testing.T) {
	e := newEnv(t)
	mallory := e.browser("mallory", "evil")
	require.Equal(t, http.StatusSeeOther, mallory.get(mallory.finish(mallory.start("source=Salesforce"), onboard.Connected)).Code)
	conn := e.Connections("evil")[0]
	id := mallory.start("connection=" + conn.ID)
	back := e.victimFills(id)
	e.clock.Add(onboard.DefaultFlowTTL + time.Second) // expired, still pending: the runner waits Timeout
	require.Equal(t, onboard.FlowPending, e.flow(id).State)
	res := e.browser("alice", "acme").get(back)
	t.Logf("alice's return: %d", res.Code)
	e.clock.Add(onboard.DefaultTimeout)
	_, err := e.Onboarder.RunOnce(t.Context())
	require.NoError(t, err)
	held, ok := e.fake.Connection(conn.ID)
	require.True(t, ok)
	require.True(t, held.Disabled, "alice's credentials stay in mallory's connection, enabled")
	require.Equal(t, onboard.Revoked, e.Connections("evil")[0].State)
}
