package fivetrantest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

// api calls the emulator's API as a client with the right credentials.
type api struct {
	t   *testing.T
	url string
}

func (a api) call(method, path string, body any) (int, map[string]any) {
	a.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	require.NoError(a.t, err)
	req.SetBasicAuth("key", "s3cret")
	req.Header.Set("Accept", fivetrantest.Accept)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer res.Body.Close()
	var out map[string]any
	require.NoError(a.t, json.NewDecoder(res.Body).Decode(&out))
	return res.StatusCode, out
}

func data(out map[string]any) map[string]any { d, _ := out["data"].(map[string]any); return d }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func newEmu(t *testing.T, opt fivetrantest.Options) (*fivetrantest.Server, api) {
	opt.APIKey, opt.APISecret = "key", "s3cret"
	emu, srv := fivetrantest.NewServer(opt)
	t.Cleanup(srv.Close)
	return emu, api{t, srv.URL}
}

func TestListsArePagedAndFiltered(t *testing.T) {
	emu, a := newEmu(t, fivetrantest.Options{})
	gid, err := emu.AddGroup("tenant")
	require.NoError(t, err)
	other, err := emu.AddGroup("other")
	require.NoError(t, err)
	for i := range 2500 {
		_, err := emu.Add(fivetrantest.Connection{GroupID: gid, Service: "salesforce", Schema: fmt.Sprintf("s_%04d", i)})
		require.NoError(t, err)
	}
	_, err = emu.Add(fivetrantest.Connection{GroupID: other, Service: "salesforce", Schema: "s_0007"})
	require.NoError(t, err, "a schema is unique per group only")
	_, err = emu.Add(fivetrantest.Connection{GroupID: gid, Service: "salesforce", Schema: "s_0007"})
	require.Error(t, err)

	for _, path := range []string{"/v1/connections?group_id=" + gid, "/v1/groups/" + gid + "/connections?x=1"} {
		seen := map[string]bool{}
		cursor, pages := "", 0
		for {
			code, out := a.call("GET", path+"&limit=1000&cursor="+url.QueryEscape(cursor), nil)
			require.Equal(t, 200, code, out)
			pages++
			for _, it := range data(out)["items"].([]any) {
				c := it.(map[string]any)
				require.Equal(t, gid, c["group_id"])
				require.NotContains(t, c, "setup_tests", "list items are summaries")
				require.False(t, seen[c["id"].(string)])
				seen[c["id"].(string)] = true
			}
			next, _ := data(out)["next_cursor"].(string)
			if next == "" {
				break
			}
			cursor = next
		}
		require.Len(t, seen, 2500, path)
		require.Equal(t, 3, pages)
	}

	code, out := a.call("GET", "/v1/connections?group_id="+gid+"&schema=s_0007", nil)
	require.Equal(t, 200, code)
	items := data(out)["items"].([]any)
	require.Len(t, items, 1)
	require.Equal(t, "s_0007", items[0].(map[string]any)["schema"])
	code, out = a.call("GET", "/v1/connections?group_id="+gid+"&schema=s_000", nil)
	require.Equal(t, 200, code)
	require.Empty(t, data(out)["items"], "no partial matches")
	code, out = a.call("GET", "/v1/connections?schema=s_0007", nil)
	require.Equal(t, 200, code)
	require.Len(t, data(out)["items"], 2)

	for _, bad := range []string{"limit=0", "limit=1001", "limit=x", "cursor=%25%25"} {
		code, _ := a.call("GET", "/v1/connections?"+bad, nil)
		require.Equal(t, 400, code, bad)
	}
	code, _ = a.call("GET", "/v1/groups/nope/connections", nil)
	require.Equal(t, 404, code)
}

func TestCreateConnection(t *testing.T) {
	emu, a := newEmu(t, fivetrantest.Options{})
	gid, _ := emu.AddGroup("tenant")
	body := map[string]any{"group_id": gid, "service": "salesforce", "paused": true, "run_setup_tests": false,
		"config": map[string]any{"schema": "sf_1"}, "connect_card_config": map[string]any{"redirect_uri": "http://app/return"}}
	code, out := a.call("POST", "/v1/connections", body)
	require.Equal(t, 201, code, out)
	require.NotEmpty(t, data(out)["connect_card"].(map[string]any)["uri"])
	require.Equal(t, "incomplete", data(out)["status"].(map[string]any)["setup_state"])
	code, out = a.call("POST", "/v1/connections", body)
	require.Equal(t, 409, code)
	require.Equal(t, "NotUnique_Schema", out["code"])
	for name, change := range map[string]func(m map[string]any){
		"unknown service": func(m map[string]any) { m["service"] = "nonesuch" },
		"setup tests":     func(m map[string]any) { m["run_setup_tests"] = true },
		"bad redirect":    func(m map[string]any) { m["connect_card_config"] = map[string]any{"redirect_uri": "ftp://x"} },
		"no schema":       func(m map[string]any) { m["config"] = map[string]any{} },
	} {
		m := map[string]any{}
		for k, v := range body {
			m[k] = v
		}
		m["config"] = map[string]any{"schema": "other_" + name}
		change(m)
		code, _ := a.call("POST", "/v1/connections", m)
		require.Equal(t, 400, code, name)
	}
	body["group_id"] = "nope"
	code, _ = a.call("POST", "/v1/connections", body)
	require.Equal(t, 404, code)
}

// hook is a webhook receiver that answers with a settable status.
type hook struct {
	status atomic.Int64
	mu     sync.Mutex
	events []string
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var pl struct{ Event string }
	_ = json.NewDecoder(r.Body).Decode(&pl)
	h.mu.Lock()
	h.events = append(h.events, pl.Event)
	h.mu.Unlock()
	w.WriteHeader(int(h.status.Load()))
}

func TestWebhooksAreTestedAndMasked(t *testing.T) {
	emu, a := newEmu(t, fivetrantest.Options{})
	h := &hook{}
	h.status.Store(500)
	srv := httptest.NewServer(h)
	defer srv.Close()
	in := map[string]any{"url": srv.URL, "events": []string{"sync_end"}, "active": true, "secret": "s"}
	code, out := a.call("POST", "/v1/webhooks/account", in)
	require.Equal(t, 400, code, "the URL failed its test event")
	require.Contains(t, out["message"], "500")
	require.Empty(t, emu.Webhooks())

	in["active"] = false
	code, out = a.call("POST", "/v1/webhooks/account", in)
	require.Equal(t, 201, code, "an inactive webhook is not tested")
	id := data(out)["id"].(string)
	code, _ = a.call("PATCH", "/v1/webhooks/"+id, map[string]any{"active": true})
	require.Equal(t, 400, code, "activating tests the URL")
	h.status.Store(204)
	code, out = a.call("PATCH", "/v1/webhooks/"+id, map[string]any{"active": true})
	require.Equal(t, 200, code)
	require.Equal(t, "******", data(out)["secret"])
	ds := emu.Deliveries()
	require.Len(t, ds, 3)
	for _, d := range ds {
		require.Equal(t, "test", d.Event)
		require.Equal(t, fivetrantest.Sign("s", d.Body), d.Signature)
	}
	code, out = a.call("GET", "/v1/webhooks", nil)
	require.Equal(t, 200, code)
	require.Len(t, data(out)["items"], 1)
	code, _ = a.call("DELETE", "/v1/webhooks/"+id, nil)
	require.Equal(t, 200, code)
	require.Empty(t, emu.Webhooks())
	code, _ = a.call("DELETE", "/v1/webhooks/"+id, nil)
	require.Equal(t, 404, code)
}

func TestTimesAndSyncs(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)}
	h := &hook{}
	h.status.Store(200)
	srv := httptest.NewServer(h)
	defer srv.Close()
	emu, a := newEmu(t, fivetrantest.Options{Now: clk.Now, Skew: -90 * time.Minute})
	code, _ := a.call("POST", "/v1/webhooks/account", map[string]any{"url": srv.URL, "active": true, "secret": "s",
		"events": []string{"connection_successful", "sync_start", "sync_end", "delete_connector"}})
	require.Equal(t, 201, code)
	gid, _ := emu.AddGroup("tenant")
	code, out := a.call("POST", "/v1/connections", map[string]any{"group_id": gid, "service": "salesforce", "paused": true,
		"config": map[string]any{"schema": "sf"}, "connect_card_config": map[string]any{"redirect_uri": srv.URL + "/back?keep=1"}})
	require.Equal(t, 201, code)
	id := data(out)["id"].(string)
	uri := data(out)["connect_card"].(map[string]any)["uri"].(string)

	jar, _ := cookiejar.New(nil)
	back, err := fivetrantest.Fill(context.Background(), &http.Client{Jar: jar}, uri, "token")
	require.NoError(t, err)
	u, _ := url.Parse(back)
	require.Equal(t, id, u.Query().Get("id"))
	require.Equal(t, "1", u.Query().Get("keep"))
	require.Error(t, emu.Sync(id), "paused connections do not sync")
	last := emu.Deliveries()[len(emu.Deliveries())-1]
	require.Equal(t, "connection_successful", last.Event)
	var pl struct{ Created string }
	require.NoError(t, json.Unmarshal(last.Body, &pl))
	require.Equal(t, "2026-03-04T03:36:07Z", pl.Created, "the provider's clock, skewed, whole seconds")

	n := len(emu.Deliveries())
	clk.Add(time.Second)
	code, _ = a.call("PATCH", "/v1/connections/"+id, map[string]any{"paused": false})
	require.Equal(t, 200, code)
	var evs []string
	for _, d := range emu.Deliveries()[n:] {
		evs = append(evs, d.Event)
	}
	require.Equal(t, []string{"sync_start", "sync_end"}, evs, "resuming starts a sync")
	c, _ := emu.Connection(id)
	require.Equal(t, 1, c.Syncs)
	require.Equal(t, "2026-03-04T03:36:08Z", c.SucceededAt.Format(time.RFC3339))

	require.NoError(t, emu.Break(id, "revoked"))
	c, _ = emu.Connection(id)
	require.Equal(t, "broken", c.Status.SetupState)
	require.NotNil(t, c.FailedAt)
	require.Equal(t, "sync_end", emu.Deliveries()[len(emu.Deliveries())-1].Event)

	// Only the newest card works, and a card lives one day.
	code, out = a.call("POST", "/v1/connections/"+id+"/connect-card", map[string]any{"connect_card_config": map[string]any{"redirect_uri": srv.URL}})
	require.Equal(t, 200, code)
	newest := data(out)["connect_card"].(map[string]any)["uri"].(string)
	res, err := http.Get(uri)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 401, res.StatusCode)
	clk.Add(fivetrantest.CardTTL)
	res, err = http.Get(newest)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 401, res.StatusCode)

	require.NoError(t, emu.Remove(id))
	require.Equal(t, "delete_connector", emu.Deliveries()[len(emu.Deliveries())-1].Event)
	require.Empty(t, emu.All())
	code, _ = a.call("DELETE", "/v1/connections/"+id, nil)
	require.Equal(t, 404, code)
}

// TestWebhookURLsMustBeHTTPS: Fivetran answers 400 to a webhook whose
// payload URL is not HTTPS; the emulator also takes http on a loopback
// host, for offline tests.
func TestWebhookURLsMustBeHTTPS(t *testing.T) {
	_, a := newEmu(t, fivetrantest.Options{})
	for _, tt := range []struct {
		url  string
		want int
	}{
		{"http://app.example.com/connect/fivetran/webhook", 400},
		{"ftp://app.example.com/hook", 400},
		{"http://127.0.0.1:8080/connect/fivetran/webhook", 201},
		{"http://localhost:8080/connect/fivetran/webhook", 201},
		{"https://app.example.com/connect/fivetran/webhook", 201},
	} {
		// Inactive: no test event is sent, so only the URL decides.
		code, out := a.call("POST", "/v1/webhooks/account", map[string]any{"url": tt.url, "events": []string{"sync_end"}, "active": false})
		require.Equal(t, tt.want, code, "%s: %v", tt.url, out)
		if code == 201 {
			id := data(out)["id"].(string)
			code, _ = a.call("PATCH", "/v1/webhooks/"+id, map[string]any{"url": "http://app.example.com/hook"})
			require.Equal(t, 400, code, "a PATCH to an http URL")
		}
	}
}
