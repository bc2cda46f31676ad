package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/alexedwards/scs/v2"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
)

// RequireOwner guards the app's own pages; NewSCS gives onboard the
// browser binding over the app's session manager.
func Example() {
	sm := scs.New()
	sessions, err := middleware.NewSCS(sm) // onboard.Config.Sessions
	fmt.Println(sessions != nil, err)

	current := func(r *http.Request) (onboard.Owner, error) {
		return onboard.Owner{Tenant: sm.GetString(r.Context(), "tenant"), User: sm.GetString(r.Context(), "user")}, nil
	}
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, _ := middleware.OwnerFromContext(r.Context())
		fmt.Fprintf(w, "hello %s of %s", o.User, o.Tenant)
	})
	h := sm.LoadAndSave(middleware.RequireOwner(current, http.RedirectHandler("/login", http.StatusSeeOther))(page))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/connections", nil))
	fmt.Println(rec.Code, rec.Header().Get("Location"))
	// Output:
	// true <nil>
	// 303 /login
}
