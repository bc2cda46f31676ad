// Command stdlib is onboard mounted in a standard library app: run it
// with
//
//	go run ./examples/stdlib
//
// and open the address it prints. With no configuration it runs the CData
// and Fivetran emulators on 127.0.0.1 and keeps its data in an SQLite
// file; see the README for the variables that point it at the real
// providers and PostgreSQL.
package main

import (
	"net/http"

	"github.com/onboardkit/onboard/examples/internal/demo"
)

// routes mounts onboard and the app's pages on a standard library mux.
func routes(app *demo.App) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/connect/", app.Onboarder.Handler()) // start, return, webhook
	mux.HandleFunc("GET /{$}", app.Home)
	mux.HandleFunc("POST /login", app.Login)
	mux.HandleFunc("POST /logout", app.Logout)
	mux.Handle("POST /connections/delete", app.RequireOwner(http.HandlerFunc(app.Delete)))
	// Sessions around everything; cross-origin form posts refused.
	return http.NewCrossOriginProtection().Handler(app.Sessions.LoadAndSave(mux))
}

func main() { demo.Main("net/http", routes) }
