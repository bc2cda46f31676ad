package onboard_test

import (
	"context"
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

// Mount onboard in a standard library app, then run one flow through the
// fake provider with a browser-like client.
func Example() {
	sm := scs.New() // the app's session manager
	sessions, _ := middleware.NewSCS(sm)
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
		fmt.Fprintf(w, "status=%s", r.URL.Query().Get("onboard_status"))
	})
	app.Config.Handler = sm.LoadAndSave(mux)
	app.Start()
	defer app.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	res, _ := browser.Get(app.URL + "/login")
	res.Body.Close()
	res, _ = browser.Get(app.URL + ob.StartURL("fake", "Salesforce"))
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(string(page))

	conns, _ := ob.Store().Connections(context.Background(), "acme")
	fmt.Println(len(conns), conns[0].Source, conns[0].State)
	// Output:
	// status=connected
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
