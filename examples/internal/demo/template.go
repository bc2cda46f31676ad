package demo

import (
	"html/template"

	"github.com/onboardkit/onboard"
)

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"since":     func(c onboard.Connection) string { return c.CreatedAt.Format("2 Jan 2006 15:04") },
	"reconnect": func(onboard.Connection) string { return "" }, // set per request in render
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
.connected{background:#dcfae6;color:#067647}.failed,.revoked{background:#fee4e2;color:#b42318}.abandoned{background:#fef0c7;color:#b54708}
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
{{if .Problem}}
<section id="problem"><h1>Something went wrong</h1><p>{{.Problem}}</p><p><a href="/">Back to the connections</a></p></section>
{{else if not .Owner.User}}
<section><h1>Sign in to the demo</h1>
<p class="muted">Pick a demo user. Users of one tenant (in brackets) share its connections.</p>
<form method="post" action="/login"><select name="user" id="user">{{range .Users}}<option value="{{.User}}">{{.User}} ({{.Tenant}})</option>{{end}}</select>
<button class="primary" id="signin">Sign in</button></form></section>
{{else}}
<div id="flash-area">{{with .Flash}}<div class="flash {{.Class}}" id="flash">{{.Text}}</div>{{end}}</div>
<section id="connections-section"><h1>Connections of {{.Owner.Tenant}}</h1>
{{if .Connections}}<table id="connections"><thead><tr><th>Provider</th><th>Name</th><th>Source</th><th>State</th><th>Added</th><th></th></tr></thead><tbody>
{{range .Connections}}<tr><td>{{.Provider}}</td><td>{{.Name}}<br><small>{{.ID}}</small></td><td>{{.Source}}</td>
<td><span class="badge {{.State}}">{{.State}}</span>{{if .Message}}<br><small>{{.Message}}</small>{{end}}</td><td><small>{{since .}}</small></td>
<td><a href="{{reconnect .}}">Reconnect</a><br>
<form class="inline" method="post" action="/connections/delete"><input type="hidden" name="provider" value="{{.Provider}}"><input type="hidden" name="id" value="{{.ID}}"><button class="link">Delete</button></form></td></tr>
{{end}}</tbody></table>
<p>{{if .HasPrev}}<a href="/?page={{.Prev}}" id="prev">Newer</a> {{end}}{{if .Next}}<a href="/?page={{.Next}}" id="next">Older</a>{{end}}</p>
{{else}}<p class="muted" id="empty">No connections yet. Add one below.</p>{{end}}
</section>
<div class="grid">
<section><h2>Connect through CData</h2>
<form method="post" action="{{.CDataStart}}" data-onboard><select name="source" id="cdata-source">{{if .SourcesErr}}<option value="">Pick on CData</option>{{end}}{{range .Sources}}<option>{{.}}</option>{{end}}</select>
<button class="primary" id="connect-cdata">Connect</button> <button id="popup-cdata" data-popup>In a popup</button></form>
{{if .SourcesErr}}<p><small>The data source list is unavailable right now: choose the source on CData's page.</small></p>{{end}}
<p><small>CData Connect AI{{if .Emulated.cdata}} (emulator at {{.Emulated.cdata}}){{end}}</small></p></section>
<section><h2>Connect through Fivetran</h2>
<form method="post" action="{{.FivetranStart}}" data-onboard><select name="source" id="fivetran-source"><option value="Salesforce">Salesforce</option><option value="HubSpot">HubSpot</option><option value="Google Sheets">Google Sheets</option><option value="Stripe">Stripe</option></select>
<button class="primary" id="connect-fivetran">Connect</button> <button id="popup-fivetran" data-popup>In a popup</button></form>
<p><small>Fivetran Connect Card{{if .Emulated.fivetran}} (emulator at {{.Emulated.fivetran}}){{end}}</small></p></section>
</div>
{{end}}
</main>
<script>
// Popup mode: ask onboard for the hosted page's URL as JSON, open it in a
// popup, and update this page in place with the verified outcome the
// popup posts back (only a window of this origin is listened to).
document.querySelectorAll("form[data-onboard]").forEach(function (form) {
  form.addEventListener("submit", async function (ev) {
    if (!ev.submitter || !ev.submitter.hasAttribute("data-popup")) return;
    ev.preventDefault();
    var popup = window.open("about:blank", "onboard", "width=760,height=820"); // now, while the click counts
    var body = new URLSearchParams(new FormData(form));
    body.set("display", "popup");
    var res = await fetch(form.action, {method: "POST", body: body, headers: {"Accept": "application/json"}});
    var answer = await res.json();
    if (!res.ok) { popup.close(); show("failed", answer.message); return; }
    popup.location = answer.url;
  });
});
window.addEventListener("message", async function (ev) {
  if (ev.origin !== location.origin || !ev.data || ev.data.type !== "onboard") return;
  // Ask the server for the verified result of this browser's flow and
  // swap in the flash and the connection list.
  var res = await fetch("/?onboard_flow=" + encodeURIComponent(ev.data.result || ev.data.flow));
  var doc = new DOMParser().parseFromString(await res.text(), "text/html");
  ["flash-area", "connections-section"].forEach(function (id) {
    var now = document.getElementById(id), next = doc.getElementById(id);
    if (now && next) now.replaceWith(next);
  });
});
function show(kind, text) {
  var area = document.getElementById("flash-area");
  if (!area) return;
  area.innerHTML = "";
  var div = document.createElement("div");
  div.className = "flash " + kind; div.id = "flash"; div.textContent = text;
  area.appendChild(div);
}
</script>
</body></html>
`))
