// Command chi is onboard mounted in a github.com/go-chi/chi/v5 app: run
// it with
//
//	go run ./examples/chi
//
// and open the address it prints. It is the same demo as
// examples/stdlib, routed with chi.
package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	chimw "github.com/go-chi/chi/v5/middleware"

	"github.com/onboardkit/onboard/examples/internal/demo"
)

// routes mounts onboard and the app's pages on a chi router.
func routes(app *demo.App) http.Handler {
	r := chi.NewRouter()
	r.Use(chimw.Recoverer, http.NewCrossOriginProtection().Handler, app.Sessions.LoadAndSave)
	r.Mount("/connect", app.Onboarder.Handler()) // start, return, webhook
	r.Get("/", app.Home)
	r.Post("/login", app.Login)
	r.Post("/logout", app.Logout)
	r.With(app.RequireOwner).Post("/connections/delete", app.Delete)
	return r
}

func main() { demo.Main("chi", routes) }
