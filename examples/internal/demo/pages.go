package demo

import (
	"errors"
	"html/template"
	"net/http"
	"slices"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
)

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"since":     func(c onboard.Connection) string { return c.CreatedAt.Format("2 Jan 2006 15:04") },
	"reconnect": func(onboard.Connection) string { return "" }, // set per request in Home
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme Analytics · Data connections</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root{--ink:#1f2430;--muted:#667085;--line:#e4e7ec;--brand:#4f46e5}
body{font:15px/1.5 system-ui,-apple-system,sans-serif;color:var(--ink);background:#f8f9fb;margin:0}
header{display:flex;justify-content:space-between;align-items:center;padding:.9rem 2rem;background:#fff;border-bottom:1px solid var(--line)}
header b{color:var(--brand)}
main{max-width:58rem;margin:1.5rem auto;padding:0 1.5rem}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:1.2rem 1.5rem;margin-bottom:1.2rem}
h1{font-size:1.3rem;margin:.2rem 0 1rem}h2{font-size:1.05rem;margin:0 0 .8rem}
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:.55rem .4rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.8rem;text-transform:uppercase;color:var(--muted);letter-spacing:.03em}
.badge{display:inline-block;padding:.1rem .55rem;border-radius:99px;font-size:.8rem;font-weight:600}
.connected{background:#dcfae6;color:#067647}.failed{background:#fee4e2;color:#b42318}.abandoned{background:#fef0c7;color:#b54708}
.flash{padding:.7rem 1rem;border-radius:8px;margin-bottom:1.2rem}
.flash.connected{border:1px solid #abefc6}.flash.failed{border:1px solid #fecdca}.flash.abandoned,.flash.info{border:1px solid #fedf89;background:#fffaeb;color:#93370d}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1.2rem}
select,button{font:inherit;padding:.45rem .7rem;border-radius:6px;border:1px solid #d0d5dd;background:#fff}
button.primary{background:var(--brand);color:#fff;border-color:var(--brand);cursor:pointer}
button.link{border:0;background:none;color:#b42318;cursor:pointer;padding:0}
a{color:var(--brand)}small,.muted{color:var(--muted)}
form.inline{display:inline}
</style></head><body>
<header><span><b>Acme Analytics</b> · Data connections</span>
{{if .Owner.User}}<form class="inline" method="post" action="/logout"><span class="muted">{{.Owner.User}} @ {{.Owner.Tenant}}</span> <button id="logout">Sign out</button></form>{{end}}
</header><main>
{{if not .Owner.User}}
<section><h1>Sign in to the demo</h1>
<p class="muted">Pick a demo user. Alice and Bob share the tenant <i>acme</i>; Eve is in <i>globex</i>.</p>
<form method="post" action="/login"><select name="user" id="user">{{range .Users}}<option value="{{.User}}">{{.User}} ({{.Tenant}})</option>{{end}}</select>
<button class="primary" id="signin">Sign in</button></form></section>
{{else}}
{{with .Flash}}<div class="flash {{.Class}}" id="flash">{{.Text}}</div>{{end}}
<section><h1>Connections of {{.Owner.Tenant}}</h1>
{{if .Connections}}<table id="connections"><thead><tr><th>Provider</th><th>Name</th><th>Source</th><th>State</th><th>Added</th><th></th></tr></thead><tbody>
{{range .Connections}}<tr><td>{{.Provider}}</td><td>{{.Name}}<br><small>{{.ID}}</small></td><td>{{.Source}}</td>
<td><span class="badge {{.State}}">{{.State}}</span>{{if .Message}}<br><small>{{.Message}}</small>{{end}}</td><td><small>{{since .}}</small></td>
<td><a href="{{reconnect .}}">Reconnect</a><br>
<form class="inline" method="post" action="/connections/delete"><input type="hidden" name="provider" value="{{.Provider}}"><input type="hidden" name="id" value="{{.ID}}"><button class="link">Delete</button></form></td></tr>
{{end}}</tbody></table>{{else}}<p class="muted" id="empty">No connections yet. Add one below.</p>{{end}}
</section>
<div class="grid">
<section><h2>Connect through CData</h2>
<form method="get" action="{{.CDataStart}}"><select name="source" id="cdata-source">{{range .Sources}}<option>{{.}}</option>{{end}}</select>
<button class="primary" id="connect-cdata">Connect</button></form>
{{if .SourcesErr}}<p><small>The data source list is unavailable right now.</small></p>{{end}}
<p><small>CData Connect AI{{if .Emulated.cdata}} (emulator at {{.Emulated.cdata}}){{end}}</small></p></section>
<section><h2>Connect through Fivetran</h2>
<form method="get" action="{{.FivetranStart}}"><select name="source" id="fivetran-source"><option value="salesforce">Salesforce</option><option value="hubspot">HubSpot</option><option value="google_sheets">Google Sheets</option><option value="stripe">Stripe</option></select>
<button class="primary" id="connect-fivetran">Connect</button></form>
<p><small>Fivetran Connect Card{{if .Emulated.fivetran}} (emulator at {{.Emulated.fivetran}}){{end}}</small></p></section>
</div>
{{end}}
</main></body></html>
`))

type flash struct{ Class, Text string }

// flashFor turns the onboard_* parameters of the default Result redirect
// into a message.
func flashFor(r *http.Request) *flash {
	q := r.URL.Query()
	switch onboard.State(q.Get("onboard_status")) {
	case onboard.Connected:
		return &flash{"connected", "Connected. The " + q.Get("onboard_provider") + " connection is ready."}
	case onboard.Failed:
		return &flash{"failed", "The connection was saved, but its test failed. Reconnect it with working credentials."}
	case onboard.Abandoned:
		return &flash{"abandoned", "The setup was not finished. You can start again whenever you like."}
	}
	if q.Has("deleted") {
		return &flash{"info", "The connection was deleted."}
	}
	return nil
}

// Home shows the sign-in form, or the tenant's connections and the
// connect buttons.
func (a *App) Home(w http.ResponseWriter, r *http.Request) {
	data := map[string]any{"Users": users, "Emulated": a.Emulators,
		"CDataStart": a.Onboarder.StartURL("cdata", ""), "FivetranStart": a.Onboarder.StartURL("fivetran", "")}
	owner, err := a.Owner(r)
	if err == nil {
		conns, err := a.Onboarder.Store().Connections(r.Context(), owner.Tenant)
		if err != nil {
			a.log.ErrorContext(r.Context(), "list connections", "err", err)
			http.Error(w, "The connections cannot be listed right now.", http.StatusServiceUnavailable)
			return
		}
		sources, serr := a.CData.Sources(r.Context(), owner.Tenant)
		data["Owner"], data["Connections"], data["Sources"], data["SourcesErr"] = owner, conns, sources, serr != nil
		data["Flash"] = flashFor(r)
	} else {
		data["Owner"] = onboard.Owner{}
	}
	t, _ := page.Clone()
	t.Funcs(template.FuncMap{"reconnect": func(c onboard.Connection) string { return a.Onboarder.ReconnectURL(c.Provider, c.ID) }})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := t.Execute(w, data); err != nil {
		a.log.ErrorContext(r.Context(), "render", "err", err)
	}
}

// Login signs in a demo user. It renews the session token, as any app
// should on sign-in.
func (a *App) Login(w http.ResponseWriter, r *http.Request) {
	i := slices.IndexFunc(users, func(o onboard.Owner) bool { return o.User == r.PostFormValue("user") })
	if i < 0 {
		http.Error(w, "unknown demo user", http.StatusBadRequest)
		return
	}
	if err := a.Sessions.RenewToken(r.Context()); err != nil {
		http.Error(w, "session error", http.StatusInternalServerError)
		return
	}
	a.Sessions.Put(r.Context(), "user", users[i].User)
	a.Sessions.Put(r.Context(), "tenant", users[i].Tenant)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// Logout signs out.
func (a *App) Logout(w http.ResponseWriter, r *http.Request) {
	_ = a.Sessions.Destroy(r.Context())
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// Delete deletes a connection at its provider and in the store.
func (a *App) Delete(w http.ResponseWriter, r *http.Request) {
	owner, err := middleware.OwnerFromContext(r.Context())
	if err != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	err = a.Onboarder.DeleteConnection(r.Context(), owner, r.PostFormValue("provider"), r.PostFormValue("id"))
	if err != nil && !errors.Is(err, onboard.ErrUnknownConnection) {
		a.log.ErrorContext(r.Context(), "delete connection", "err", err)
		http.Error(w, onboard.Message(err), onboard.StatusCode(err))
		return
	}
	http.Redirect(w, r, "/?deleted=1", http.StatusSeeOther)
}

// RequireOwner sends requests with nobody signed in to the sign-in page.
func (a *App) RequireOwner(next http.Handler) http.Handler {
	return middleware.RequireOwner(a.Owner, http.RedirectHandler("/", http.StatusSeeOther))(next)
}
