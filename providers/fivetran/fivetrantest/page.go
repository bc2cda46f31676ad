package fivetrantest

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"

	"github.com/onboardkit/onboard/providers/emulate"
)

var pageTmpl = template.Must(template.New("card").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Connect Card | Fivetran (emulator)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;background:#eef2fb;margin:0;color:#1b2140}
header{background:#0073ff;color:#fff;padding:.8rem 1.5rem;font-weight:600}
main{max-width:30rem;margin:2rem auto;background:#fff;border-radius:10px;padding:1.5rem 2rem;box-shadow:0 1px 6px #0002}
label{display:block;margin:.8rem 0 .2rem;font-weight:600}
input{width:100%;padding:.45rem;border:1px solid #b9c3dd;border-radius:5px;box-sizing:border-box;font:inherit}
.row{display:flex;gap:.6rem;margin-top:1.2rem}
button{padding:.5rem 1rem;border:0;border-radius:5px;font:inherit;cursor:pointer}
.primary{background:#0073ff;color:#fff}.secondary{background:#e2e7f3;color:#1b2140}
.bad{background:#fdecec;color:#9b1c1c;padding:.6rem;border-radius:5px}
small{color:#5a6282}
</style></head>
<body><header>Fivetran &middot; Set up {{.Service}}</header><main>
{{if .Expired}}<p class="bad" id="expired">This Connect Card has expired or was replaced by a newer one. Return to the application and start again.</p>
{{else}}
{{if .Broken}}<p class="bad" id="result">The setup tests did not pass.{{range .Failed}} {{.Title}}{{with .Message}}: {{.}}{{end}}.{{end}}</p>{{end}}
<form method="post" action="/connect-card/setup">
<input type="hidden" name="auth" value="{{.Token}}">
<label>Destination schema</label><input value="{{.Schema}}" readonly>
<label for="credential">{{.Service}} password or API token</label>
<input id="credential" name="credential" type="password" autocomplete="off">
<small>Emulator: setup tests pass for any value except an empty one or "fail".</small>
{{if not .HideGuide}}<p><small>Setup guide: create an API user for Fivetran in {{.Service}} and paste its token above.</small></p>{{end}}
<div class="row">
<button class="primary" id="save" name="action" value="save">Save &amp; Test</button>
<button class="secondary" id="close" name="action" value="close">Close</button>
</div></form>{{end}}
</main></body></html>
`))

type pageData struct {
	Token, Service, Schema string
	Expired, HideGuide     bool
	Broken                 bool
	Failed                 []SetupTest
}

// valid returns the card and its connection while the card works. Called
// with s.mu held.
func (s *Server) valid(tok string) (*card, *Connection) {
	cd := s.cards[tok]
	if cd == nil || !s.opt.Now().Before(cd.exp) {
		return nil, nil
	}
	c := s.conns[cd.connID]
	if c == nil || c.card != tok {
		return nil, nil
	}
	return cd, c
}

func (s *Server) render(w http.ResponseWriter, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Frame-Options", "DENY") // the card cannot be framed
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, d)
}

func (s *Server) data(tok string, c *Connection, hide bool) pageData {
	d := pageData{Token: tok, Service: c.Service, Schema: c.Schema, HideGuide: hide,
		Broken: c.Status.SetupState == "broken"}
	for _, t := range c.SetupTests {
		if t.Status != "PASSED" && t.Status != "SKIPPED" {
			d.Failed = append(d.Failed, t)
		}
	}
	return d
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("auth")
	s.mu.Lock()
	_, c := s.valid(tok)
	var d pageData
	if c != nil {
		d = s.data(tok, c, r.URL.Query().Get("hide_setup_guide") == "true")
	}
	s.mu.Unlock()
	if c == nil {
		s.render(w, http.StatusUnauthorized, pageData{Expired: true})
		return
	}
	s.render(w, http.StatusOK, d)
}

// back builds the redirect to redirect_uri. Called with s.mu held.
func (s *Server) back(cd *card, id string) string {
	u, _ := url.Parse(cd.redirect)
	q := u.Query()
	if s.opt.DropRedirectQuery {
		q = url.Values{}
	}
	if id != "" {
		q.Set("id", id)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	tok := r.PostForm.Get("auth")
	s.mu.Lock()
	cd, c := s.valid(tok)
	if c == nil {
		s.mu.Unlock()
		s.render(w, http.StatusUnauthorized, pageData{Expired: true})
		return
	}
	switch r.PostForm.Get("action") {
	case "close": // the user leaves without finishing: back, no id
		target := s.back(cd, "")
		s.mu.Unlock()
		http.Redirect(w, r, target, http.StatusSeeOther)
	case "save":
		cred := r.PostForm.Get("credential")
		passed := cred != "" && cred != "fail"
		var ds []Delivery
		if passed {
			c.Status.SetupState, c.Status.Tasks = "connected", []Alert{}
			c.SetupTests = []SetupTest{{Title: "Connecting to " + c.Service, Status: "PASSED"}}
			ds = s.event(c, "connection_successful", map[string]any{"status": "SUCCESSFUL"})
			if !c.Paused { // an unpaused connection starts syncing at once
				ds = append(ds, s.sync(c)...)
			}
		} else {
			c.Status.SetupState = "broken"
			c.SetupTests = s.failedTests(c.Service)
			ds = s.event(c, "connection_failure", map[string]any{"status": "FAILURE"})
		}
		target, d := s.back(cd, c.ID), s.data(tok, c, false)
		s.mu.Unlock()
		s.send(ds)
		if passed {
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		s.render(w, http.StatusOK, d)
	default:
		s.mu.Unlock()
		http.Error(w, "unknown action", http.StatusBadRequest)
	}
}

// Fill plays the user on a Connect Card URI with client: Save & Test with
// the credential (an empty credential closes the card at once; a failing
// one closes it after the failed test) and returns the URL the browser is
// sent back to.
func Fill(ctx context.Context, client *http.Client, uri, credential string) (string, error) {
	v, err := emulate.NewVisitor(ctx, client, uri)
	if err != nil {
		return "", err
	}
	form := url.Values{"auth": {v.Param("auth")}, "credential": {credential}}
	if credential != "" {
		form.Set("action", "save")
		code, back, err := v.Submit(ctx, form)
		if err != nil {
			return "", err
		}
		if code == http.StatusSeeOther {
			return back, nil
		}
	}
	form.Set("action", "close")
	code, back, err := v.Submit(ctx, form)
	if err != nil {
		return "", err
	}
	if code != http.StatusSeeOther {
		return "", fmt.Errorf("fivetrantest: Close answered %d", code)
	}
	return back, nil
}

// failedTests returns the setup tests of a failing Save & Test: the
// configured ones, or one failed test with a message. Called with s.mu
// held.
func (s *Server) failedTests(service string) []SetupTest {
	if s.opt.FailedTests != nil {
		return slices.Clone(s.opt.FailedTests)
	}
	return []SetupTest{{Title: "Connecting to " + service, Status: "FAILED",
		Message: "Invalid credentials: the API rejected the token"}}
}
