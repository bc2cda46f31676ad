package onboard_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"

	"github.com/alexedwards/scs/v2"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

// Mount onboard in a standard library app, show the verified outcome on
// the page the flow returns to, and run one flow through the fake
// provider with a browser-like client.
func Example() {
	sm := scs.New() // the app's session manager
	sessions, err := middleware.NewSCS(sm)
	if err != nil {
		fmt.Println(err)
		return
	}
	provider := fake.New("fake") // cdata.New(...) or fivetran.New(...) in production
	hosted := httptest.NewServer(provider)
	defer hosted.Close()
	provider.URL = hosted.URL

	app := httptest.NewUnstartedServer(nil)
	ob, err := onboard.New(onboard.Config{
		URL:       "http://" + app.Listener.Addr().String() + "/connect",
		Providers: []onboard.Provider{provider},
		Store:     memstore.New(memstore.Options{}),
		Sessions:  sessions,
		Owner: func(r *http.Request) (onboard.Owner, error) {
			u := sm.GetString(r.Context(), "user")
			if u == "" {
				return onboard.Owner{}, errors.New("not signed in")
			}
			return onboard.Owner{Tenant: "acme", User: u}, nil
		},
		DonePath: "/connections",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/connect/", ob.Handler())
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) { sm.Put(r.Context(), "user", "alice") })
	mux.HandleFunc("/connections", func(w http.ResponseWriter, r *http.Request) {
		c, err := ob.Outcome(r) // verified: this browser's own flow, never the query's word
		switch {
		case errors.Is(err, onboard.ErrNoFlow):
			fmt.Fprint(w, "your connections")
		case err != nil:
			fmt.Fprint(w, onboard.Message(err))
		default:
			fmt.Fprintf(w, "%s: %s", c.Source, c.State)
		}
	})
	app.Config.Handler = middleware.LoadAndSave(sm, ob.SessionError)(mux)
	app.Start()
	defer app.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	res, _ := browser.Get(app.URL + "/login")
	res.Body.Close()
	// A link on the app's own page: browsers mark it Sec-Fetch-Site:
	// same-origin (a start from another site gets a confirmation page).
	req, _ := http.NewRequest(http.MethodGet, app.URL+ob.StartURL("fake", onboard.StartOptions{Source: "Salesforce"}), nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, _ = browser.Do(req)
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(string(page))

	conns, _ := ob.Connections(res.Request.Context(), "acme", 0, 10)
	fmt.Println(len(conns), conns[0].Source, conns[0].State)
	// Output:
	// Salesforce: connected
	// 1 Salesforce connected
}

// Handlers can be replaced: Result receives every completed flow with the
// connection in the request context.
func ExampleResultFromContext() {
	result := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := onboard.ResultFromContext(r.Context())
		if c.State != onboard.Connected {
			http.Redirect(w, r, "/connections?retry="+c.Provider, http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, "/connections/"+c.ID, http.StatusSeeOther)
	})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req = req.WithContext(onboard.WithResult(req.Context(), onboard.Connection{Provider: "cdata", ID: "c1", State: onboard.Connected}))
	result.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("Location"))
	// Output: 303 /connections/c1
}

// Each error kind carries its status and a message that is safe to show.
func ExampleStatusCode() {
	err := fmt.Errorf("%w: dial tcp 10.0.0.7:5432: connection refused", onboard.ErrStore)
	fmt.Println(onboard.StatusCode(err))
	fmt.Println(onboard.Message(err))
	// Output:
	// 503
	// Your connection setup could not be saved or read right now. Please try again in a moment.
}

// StartURL builds the links and form actions of an app's connect page.
func ExampleOnboarder_StartURL() {
	ob, _ := onboard.New(onboard.Config{
		URL: "https://app.example/connect", Providers: []onboard.Provider{fake.New("cdata")},
		Store: memstore.New(memstore.Options{}), Sessions: must(middleware.NewSCS(scs.New())),
		Owner: func(*http.Request) (onboard.Owner, error) { return onboard.Owner{}, nil },
	})
	fmt.Println(ob.StartURL("cdata", onboard.StartOptions{Source: "Salesforce", ReturnTo: "/integrations"}))
	fmt.Println(ob.StartURL("cdata", onboard.StartOptions{Connection: "c1"}))
	// Output:
	// /connect/cdata/start?return_to=%2Fintegrations&source=Salesforce
	// /connect/cdata/start?connection=c1
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// SafeReturnPath is how the start handler checks return_to.
func ExampleSafeReturnPath() {
	for _, p := range []string{"/settings?tab=data", "//evil.example", "https://evil.example/"} {
		_, ok := onboard.SafeReturnPath(p)
		fmt.Println(p, ok)
	}
	// Output:
	// /settings?tab=data true
	// //evil.example false
	// https://evil.example/ false
}
