package cdatatest

import (
	"context"
	"crypto/rand"
	"fmt"
	"html/template"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/onboardkit/onboard/providers/emulate"
)

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} | CData Connect AI (emulator)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;background:#f4f6f9;margin:0;color:#1d2733}
header{background:#0f2a4a;color:#fff;padding:.8rem 1.5rem;font-weight:600}
main{max-width:30rem;margin:2rem auto;background:#fff;border-radius:8px;padding:1.5rem 2rem;box-shadow:0 1px 4px #0002}
label{display:block;margin:.8rem 0 .2rem;font-weight:600}
input,select{width:100%;padding:.45rem;border:1px solid #b8c2cc;border-radius:4px;box-sizing:border-box;font:inherit}
.row{display:flex;gap:.6rem;margin-top:1.2rem}
button{padding:.5rem 1rem;border:0;border-radius:4px;font:inherit;cursor:pointer}
.primary{background:#1466c2;color:#fff}.secondary{background:#e3e8ee;color:#1d2733}
.ok{background:#e5f6ea;color:#17662f;padding:.6rem;border-radius:4px}
.bad{background:#fdecec;color:#9b1c1c;padding:.6rem;border-radius:4px}
small{color:#5b6875}
</style></head>
<body><header>CData Connect AI &middot; {{.Title}}</header><main>
{{if .Expired}}<p class="bad" id="expired">This link has expired. Return to the application and start again.</p>
{{else}}
<form method="post" action="/oem/user/connections/edit">
<input type="hidden" name="token" value="{{.Token}}">
{{if .Saved}}{{if ne .Saved.Status "NotAuthenticated"}}<p class="ok" id="result">Connection {{.Saved.Name}} saved. Test succeeded.</p>
{{else}}<p class="bad" id="result">Connection {{.Saved.Name}} saved, but the test failed: invalid credentials.</p>{{end}}{{end}}
<label for="dataSource">Data source</label>
{{if .Driver}}<input id="dataSource" name="dataSource" value="{{.Driver}}" readonly>
{{else}}<select id="dataSource" name="dataSource">{{range .Sources}}<option>{{.}}</option>{{end}}</select>{{end}}
<label for="name">Connection name</label>
<input id="name" name="name" value="{{.Name}}" {{if not .EditableName}}readonly{{end}}>
<label for="credential">Password or API token</label>
<input id="credential" name="credential" type="password" autocomplete="off">
<small>Emulator: the test passes for any value except an empty one or "fail"; "conditional" saves a Conditional connection.</small>
<div class="row">
<button class="primary" id="save" name="action" value="save">Save &amp; Test</button>
<button class="secondary" id="return" name="action" value="return">Return to application</button>
</div></form>{{end}}
</main></body></html>
`))

type pageData struct {
	Title, Token, Driver, Name string
	EditableName, Expired      bool
	Sources                    []string
	Saved                      *Connection
}

// browserCookie names the emulated page's own cookie: it tells browsers
// apart, so that what Save & Test saved is shown, and returned, only to
// the browser that saved it.
const browserCookie = "cdatatest_browser"

// browser returns the request's browser id, or "".
func browser(r *http.Request) string {
	if c, err := r.Cookie(browserCookie); err == nil {
		return c.Value
	}
	return ""
}

// current returns the link for a token, and whether it is still valid.
func (s *Server) current(tok string) (*link, bool) {
	l := s.links[tok]
	return l, l != nil && s.opt.Now().Before(l.exp)
}

func (s *Server) render(w http.ResponseWriter, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, d)
}

func (s *Server) pageData(tok, browser string, l *link) pageData {
	d := pageData{Title: "Add Connection", Token: tok, Driver: l.driver, Name: l.name,
		EditableName: l.editableName, Sources: s.opt.Sources, Saved: l.saved[browser]}
	if l.editID != "" {
		d.Title = "Edit Connection"
	}
	return d
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	id := browser(r)
	if id == "" {
		id = rand.Text()
		http.SetCookie(w, &http.Cookie{Name: browserCookie, Value: id, Path: "/oem/", HttpOnly: true,
			SameSite: http.SameSiteLaxMode})
	}
	s.mu.Lock()
	l, ok := s.current(tok)
	var d pageData
	if ok {
		d = s.pageData(tok, id, l)
	}
	s.mu.Unlock()
	if !ok {
		s.render(w, http.StatusUnauthorized, pageData{Title: "Link expired", Expired: true})
		return
	}
	s.render(w, http.StatusOK, d)
}

// submit handles Save & Test and Return to.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	tok := r.PostForm.Get("token")
	id := browser(r)
	if id == "" {
		http.Error(w, "this page needs cookies: load it first", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.current(tok)
	if !ok {
		s.render(w, http.StatusUnauthorized, pageData{Title: "Link expired", Expired: true})
		return
	}
	switch r.PostForm.Get("action") {
	case "save":
		if msg := s.save(l, id, r.PostForm); msg != "" {
			http.Error(w, msg, http.StatusBadRequest)
			return
		}
		s.render(w, http.StatusOK, s.pageData(tok, id, l))
	case "return":
		http.Redirect(w, r, s.back(l, l.saved[id]), http.StatusSeeOther)
	default:
		http.Error(w, "unknown action", http.StatusBadRequest)
	}
}

// save runs Save & Test in browser id. Called with s.mu held.
func (s *Server) save(l *link, id string, form url.Values) string {
	a := s.accounts[l.sub]
	if a == nil {
		return "the sub-account is gone"
	}
	driver := l.driver
	if driver == "" {
		picked := form.Get("dataSource")
		if picked == "" { // what the page's picker submits untouched
			picked = s.opt.Sources[0]
		}
		src, ok := s.knownSource(picked)
		if !ok {
			return "unknown data source"
		}
		driver = src
	}
	name := l.name
	if l.editableName && strings.TrimSpace(form.Get("name")) != "" {
		name = strings.TrimSpace(form.Get("name"))
	}
	status := Authenticated
	switch cred := form.Get("credential"); cred {
	case "", "fail":
		status = NotAuthenticated
	case "conditional":
		status = Conditional
	}
	now := s.opt.Now().UTC()
	saved := l.saved[id]
	if saved != nil && !slices.Contains(a.conns, saved) {
		return "the connection was deleted"
	}
	if saved == nil && l.editID != "" {
		if _, saved = a.conn(l.editID); saved == nil {
			return "the connection was deleted"
		}
	}
	if saved == nil {
		if name == "" {
			name = fmt.Sprintf("%s%d", driver, len(a.conns)+1)
		}
		for _, c := range a.conns {
			if l.externalID != "" && c.ExternalID == l.externalID {
				return "a connection with this externalId exists"
			}
		}
		saved = &Connection{ID: newID(), ExternalID: l.externalID, DataSource: driver}
		a.conns = append(a.conns, saved)
	}
	if name != "" {
		saved.Name = name
	}
	saved.Status, saved.LastModified = status, now
	l.saved[id] = saved
	return ""
}

// back builds the Return to URL: redirectURL plus the documented
// parameters of what this browser saved. Called with s.mu held.
func (s *Server) back(l *link, saved *Connection) string {
	u, _ := url.Parse(l.redirect)
	q := u.Query()
	if s.opt.DropRedirectQuery {
		q = url.Values{}
	}
	switch {
	case saved == nil:
		q.Set("cdata_connection_status", "none")
	default:
		q.Set("cdata_connection_id", saved.ID)
		q.Set("cdata_connection_name", saved.Name)
		status := "success"
		if saved.Status == NotAuthenticated {
			status = "error"
		}
		q.Set("cdata_connection_status", status)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Fill plays the user on a hosted page URL with client: it loads the
// page, clicks Save & Test with the credential unless credential is
// empty ("" returns without saving), then Return to, and returns the URL
// the browser is sent back to. name, when set, is typed into the name
// field. The page's cookie is kept in client's jar (a client without one
// is given a jar of its own for this visit).
func Fill(ctx context.Context, client *http.Client, hostedURL, name, credential string) (string, error) {
	if client.Jar == nil {
		c := *client
		c.Jar, _ = cookiejar.New(nil)
		client = &c
	}
	v, err := emulate.NewVisitor(ctx, client, hostedURL)
	if err != nil {
		return "", err
	}
	form := url.Values{"token": {v.Param("token")}, "credential": {credential}, "name": {name}}
	if credential != "" {
		form.Set("action", "save")
		if code, _, err := v.Submit(ctx, form); err != nil || code != http.StatusOK {
			return "", fmt.Errorf("cdatatest: Save & Test answered %d: %v", code, err)
		}
	}
	form.Set("action", "return")
	code, back, err := v.Submit(ctx, form)
	if err != nil {
		return "", err
	}
	if code != http.StatusSeeOther {
		return "", fmt.Errorf("cdatatest: Return to answered %d, not a redirect", code)
	}
	return back, nil
}

// Expire makes every hosted page link expire now (for tests).
func (s *Server) Expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.opt.Now().Add(-time.Second)
	for _, l := range s.links {
		l.exp = past
	}
}
