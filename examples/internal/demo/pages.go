package demo

import (
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"github.com/alexedwards/scs/v2"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/providers/cdata"
)

// Users are the demo's accounts: two users of acme, one of globex.
var Users = []onboard.Owner{{Tenant: "acme", User: "alice"}, {Tenant: "acme", User: "bob"}, {Tenant: "globex", User: "eve"}}

// PageSize is how many connections a page lists.
const PageSize = 20

// Pages are the demo app's pages: sign-in, the tenant's connections with
// buttons to connect (in the same window or in a popup), reconnect and
// delete.
type Pages struct {
	Onboarder *onboard.Onboarder
	Sessions  *scs.SessionManager
	// CData lists the data sources for the CData picker.
	CData *cdata.Provider
	// Emulators are the base URLs of the emulators in use, by provider.
	Emulators map[string]string
	// Users are the accounts one can sign in as. Default [Users].
	Users []onboard.Owner
	Log   *slog.Logger
}

func (p *Pages) users() []onboard.Owner {
	if p.Users == nil {
		return Users
	}
	return p.Users
}

// Owner returns the signed-in demo user: onboard.Config.Owner.
func (p *Pages) Owner(r *http.Request) (onboard.Owner, error) {
	o := onboard.Owner{Tenant: p.Sessions.GetString(r.Context(), "tenant"), User: p.Sessions.GetString(r.Context(), "user")}
	if o.IsZero() {
		return o, errors.New("not signed in")
	}
	return o, nil
}

// RequireOwner sends requests with nobody signed in to the sign-in page.
func (p *Pages) RequireOwner(next http.Handler) http.Handler {
	return middleware.RequireOwner(p.Owner, http.RedirectHandler("/", http.StatusSeeOther))(next)
}

type flash struct{ Class, Text string }

// flashFor says what the flow the page returns from did, read through
// onboard's verified Outcome (never from the query string alone: a link
// can say anything), or what the last delete did.
func (p *Pages) flashFor(r *http.Request) *flash {
	if msg := p.Sessions.PopString(r.Context(), "flash"); msg != "" {
		return &flash{"info", msg}
	}
	c, err := p.Onboarder.Outcome(r)
	switch {
	case errors.Is(err, onboard.ErrNoFlow):
		return nil
	case errors.Is(err, onboard.ErrOtherBrowser):
		// Reading an outcome stops nothing (only a return does): the
		// setup's result is simply not this browser's to see.
		return &flash{"failed", "This link shows the result of a connection setup made in another browser, so it is not shown here."}
	case err != nil:
		return &flash{"failed", onboard.Message(err)}
	}
	name := c.Name
	if name == "" { // a connection without a name (Fivetran's): say its source
		name = c.Source
	}
	switch c.State {
	case onboard.Connected:
		return &flash{"connected", "Connected. The " + c.Provider + " connection " + name + " is ready."}
	case onboard.Failed:
		msg := "The connection does not work."
		if c.Message != "" {
			msg = c.Message
		}
		return &flash{"failed", msg + " Try again with working credentials."}
	case onboard.Revoked:
		return &flash{"failed", "This setup came back in another browser, so what it made was removed. Start again here."}
	}
	return &flash{"abandoned", "The setup was not finished. You can start again whenever you like."}
}

// Home shows the sign-in form, or the tenant's connections (a page of
// them, ?page=N) and the connect buttons.
func (p *Pages) Home(w http.ResponseWriter, r *http.Request) {
	ob := p.Onboarder
	data := map[string]any{"Users": p.users(), "Emulated": p.Emulators,
		"CDataStart": ob.StartURL("cdata", onboard.StartOptions{}), "FivetranStart": ob.StartURL("fivetran", onboard.StartOptions{})}
	owner, err := p.Owner(r)
	if err != nil {
		data["Owner"] = onboard.Owner{}
		p.render(w, r, http.StatusOK, data)
		return
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 0)
	conns, err := ob.Connections(r.Context(), owner.Tenant, page*PageSize, PageSize+1)
	if err != nil {
		p.Log.ErrorContext(r.Context(), "list connections", "err", err)
		data["Owner"], data["Problem"] = owner, "Your connections could not be loaded right now. Please try again in a moment."
		p.render(w, r, onboard.StatusCode(err), data)
		return
	}
	if len(conns) > PageSize {
		conns, data["Next"] = conns[:PageSize], page+1
	}
	if page > 0 {
		data["HasPrev"], data["Prev"] = true, page-1
	}
	sources, serr := p.CData.Sources(r.Context(), owner.Tenant)
	data["Owner"], data["Connections"], data["Sources"], data["SourcesErr"] = owner, conns, sources, serr != nil
	data["Flash"] = p.flashFor(r)
	p.render(w, r, http.StatusOK, data)
}

// CrossOrigin answers a state-changing request from another site, which
// the standard library's cross-origin protection refused, with the app's
// page.
func (p *Pages) CrossOrigin(w http.ResponseWriter, r *http.Request) {
	p.problem(w, r, http.StatusForbidden, "This request came from another site, so it was not carried out. Start again from this site.")
}

// problem answers with the demo's page saying what went wrong and what to
// do, with status.
func (p *Pages) problem(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p.render(w, r, status, map[string]any{"Owner": onboard.Owner{}, "Problem": msg})
}

func (p *Pages) render(w http.ResponseWriter, r *http.Request, status int, data map[string]any) {
	t := template.Must(page.Clone())
	t.Funcs(template.FuncMap{"reconnect": func(c onboard.Connection) string {
		return p.Onboarder.StartURL(c.Provider, onboard.StartOptions{Connection: c.ID})
	}})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := t.Execute(w, data); err != nil {
		p.Log.ErrorContext(r.Context(), "render", "err", err)
	}
}

// Login signs in a demo user. It renews the session token, as any app
// should on sign-in.
func (p *Pages) Login(w http.ResponseWriter, r *http.Request) {
	users := p.users()
	i := slices.IndexFunc(users, func(o onboard.Owner) bool { return o.User == r.PostFormValue("user") })
	if i < 0 {
		p.problem(w, r, http.StatusBadRequest, "There is no such demo user. Go back and pick one from the list.")
		return
	}
	if err := p.Sessions.RenewToken(r.Context()); err != nil {
		p.Log.ErrorContext(r.Context(), "renew the session token", "err", err)
		p.problem(w, r, http.StatusServiceUnavailable, onboard.Message(onboard.ErrSession))
		return
	}
	p.Sessions.Put(r.Context(), "user", users[i].User)
	p.Sessions.Put(r.Context(), "tenant", users[i].Tenant)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// Logout signs out.
func (p *Pages) Logout(w http.ResponseWriter, r *http.Request) {
	_ = p.Sessions.Destroy(r.Context())
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// Delete deletes a connection of the tenant at its provider and in the
// store, and says which happened.
func (p *Pages) Delete(w http.ResponseWriter, r *http.Request) {
	owner, err := middleware.OwnerFromContext(r.Context())
	if err != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	err = p.Onboarder.DeleteConnection(r.Context(), owner, r.PostFormValue("provider"), r.PostFormValue("id"))
	switch {
	case err == nil:
		p.Sessions.Put(r.Context(), "flash", "The connection was deleted.")
	case errors.Is(err, onboard.ErrUnknownConnection), errors.Is(err, onboard.ErrUnknownProvider):
		p.Sessions.Put(r.Context(), "flash", "That connection does not exist: nothing was deleted.")
	default:
		p.Log.ErrorContext(r.Context(), "delete connection", "err", err)
		p.Sessions.Put(r.Context(), "flash", onboard.Message(err))
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
