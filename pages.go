package onboard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
)

// fail logs err and hands the request to the Error handler, with the flow
// it was for when one is known (a loaded flow, or the start that failed).
func (o *Onboarder) fail(w http.ResponseWriter, r *http.Request, f *Flow, err error, attrs ...any) {
	err = classify(err, ErrConfig)
	code := StatusCode(err)
	level := slog.LevelWarn
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		level = slog.LevelInfo // the browser went away
	case code >= 500:
		level = slog.LevelError
	}
	o.tel.refusal(r.Context(), err)
	attrs = append(attrs, "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	o.cfg.Logger.Log(r.Context(), level, "onboard: request refused", attrs...)
	out := &outcome{err: err}
	if f != nil {
		out.flow, out.hasFlow = *f, true
	}
	r = r.WithContext(context.WithValue(r.Context(), outcomeKey{}, out))
	if errors.Is(err, ErrSession) {
		// An app's page that shows who is signed in reads the session,
		// which scs answers with a panic when it could not be loaded.
		tw := &tracked{ResponseWriter: w}
		w = tw
		defer func() {
			p := recover()
			switch {
			case p == nil:
			case p == http.ErrAbortHandler:
				panic(p)
			default:
				o.cfg.Logger.ErrorContext(r.Context(), "onboard: Config.Error panicked on a session failure (it must not use the session then)",
					"panic", fmt.Sprint(p), "wrote", tw.wrote)
				if tw.wrote { // part of a page went out: end the answer as broken, not as whole
					panic(http.ErrAbortHandler)
				}
				o.defaultError(tw, r) // its status may be out already: the page follows it
			}
		}()
	}
	o.cfg.Error.ServeHTTP(w, r)
}

// tracked records whether a handler wrote any of its answer's body, and
// lets only its first status through.
type tracked struct {
	http.ResponseWriter
	status bool // the status went out
	wrote  bool // body bytes went out
}

func (t *tracked) WriteHeader(code int) {
	if !t.status {
		t.status = true
		t.ResponseWriter.WriteHeader(code)
	}
}

func (t *tracked) Write(b []byte) (int, error) {
	t.status, t.wrote = true, t.wrote || len(b) > 0
	return t.ResponseWriter.Write(b)
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (t *tracked) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// SessionError renders a failure of the session layer (loading or saving
// the session) through Config.Error, as onboard's own errors are. Hand it
// to middleware.LoadAndSave, so that a session store that blinks shows the
// app's error page instead of a bare "Internal Server Error", and only
// once:
//
//	handler := middleware.LoadAndSave(sessionManager, ob.SessionError)(mux)
//
// A failure to load the session comes before the router: the request is
// routed here first, so that a popup's return still tells the window that
// opened it and the status endpoint still answers JSON. Config.Error must
// not use the session then (the request has none); if it panics for that
// reason, onboard's own page is shown in its place (see Config.Error).
func (o *Onboarder) SessionError(w http.ResponseWriter, r *http.Request, err error) {
	err = fmt.Errorf("%w: %w", ErrSession, err)
	fail := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { o.fail(w, r, nil, err) })
	if r.Pattern == "" {
		o.routes(fail).ServeHTTP(w, r)
		return
	}
	fail(w, r)
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}a{color:#0b5cad}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p>
{{if .Retry}}<p><a href="{{.Retry}}">{{.RetryText}}</a></p>{{end}}
<p><a href="{{.Done}}">Back to the site</a></p>
{{with .Popup}}<script nonce="{{.Nonce}}">{{.JS}}</script>{{end}}</body></html>
`))

// retryLink returns where a user who got err can try again, and the
// link's text: the same return (a GET, safe to repeat) when the provider
// or a store failed during a return, and a fresh start otherwise.
func (o *Onboarder) retryLink(r *http.Request, f *Flow, err error) (href, text string) {
	isReturn := r.Method == http.MethodGet &&
		(strings.Contains(r.URL.Path, "/return/") || strings.Contains(r.URL.Path, "/popup/"))
	switch {
	case isReturn && retryable(err):
		// One leading slash: a path the router did not clean ("//evil.example/return/x",
		// when a session store's failure is answered before routing) must not
		// become a link to another host.
		href := "/" + strings.TrimLeft(r.URL.EscapedPath(), "/")
		if r.URL.RawQuery != "" {
			href += "?" + r.URL.RawQuery
		}
		return href, "Try again"
	case f == nil:
		return "", ""
	case retryable(err), errors.Is(err, ErrFlowExpired),
		errors.Is(err, ErrUnknownFlow), errors.Is(err, ErrTooManyFlows), errors.Is(err, ErrOwnerLimit),
		errors.Is(err, ErrRefused), errors.Is(err, ErrForged):
		return o.restartURL(*f, isPopup(r) || r.URL.Query().Get("display") == "popup"), "Start again"
	}
	return "", ""
}

// errorAnswer is the JSON of a refusal, for requests that asked for JSON.
type errorAnswer struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	Retry   string `json:"retry,omitempty"`
}

// defaultError writes a small HTML page with the status and the safe
// message of the error in the request context, a link to try again where
// that can help, and a link to DonePath; JSON to a request that asked for
// it (and to the status endpoint); in a popup, the page also tells the
// window that opened it.
func (o *Onboarder) defaultError(w http.ResponseWriter, r *http.Request) {
	err := ErrorFromContext(r.Context())
	var f *Flow
	if fl, ok := FlowFromContext(r.Context()); ok {
		f = &fl
	}
	retry, retryText := o.retryLink(r, f, err)
	code := StatusCode(err)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	if wantsJSON(r) || strings.Contains(r.Pattern, "/status/") {
		writeJSON(w, code, errorAnswer{Status: code, Message: o.cfg.Message(err), Retry: retry})
		return
	}
	page := struct {
		Title, Message, Retry, RetryText, Done string
		Popup                                  *popupScript
	}{
		Title:     fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Message:   o.cfg.Message(err),
		Retry:     retry,
		RetryText: retryText,
		Done:      o.cfg.DonePath,
	}
	if isPopup(r) {
		msg := popupMessage{Type: "onboard", Flow: r.PathValue("flow"), Provider: r.PathValue("provider"),
			State: "error", Message: page.Message, Status: code}
		page.Popup = o.popupScript(h, msg, "", false)
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = errorPage.Execute(w, page)
}

// popupScript is the script of a page shown in a popup window: it posts
// a message to the window that opened the popup, on the app's own origin
// only (a window of any other origin receives nothing), and closes it or,
// with no such window, goes to the page the flow returns to.
type popupScript struct {
	Nonce string
	JS    template.JS
}

func (o *Onboarder) popupScript(h http.Header, msg popupMessage, fallback string, closeAfter bool) *popupScript {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	n := base64.RawStdEncoding.EncodeToString(nonce[:])
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-"+n+"'; frame-ancestors 'none'")
	data, _ := json.Marshal(msg)
	origin, _ := json.Marshal(o.origin)
	target, _ := json.Marshal(fallback)
	closing := ""
	if closeAfter {
		closing = "window.close();"
	}
	js := "(function(){var m=" + string(data) + ",o=" + string(origin) + ",t=" + string(target) + ";" +
		"if(window.opener&&!window.opener.closed){window.opener.postMessage(m,o);" + closing + "}" +
		"else if(t){location.replace(t);}})();"
	return &popupScript{Nonce: n, JS: template.JS(js)}
}

var popupPage = template.Must(template.New("popup").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}</style></head>
<body><p>{{.Title}}. You can close this window.</p>
<script nonce="{{.Script.Nonce}}">{{.Script.JS}}</script></body></html>
`))

// popupPage answers a return in a popup: it hands msg, the verified
// outcome, to the window that opened the popup and closes it; opened on
// its own (no such window), it goes to fallback.
func (o *Onboarder) popupPage(w http.ResponseWriter, r *http.Request, msg popupMessage, fallback string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	script := o.popupScript(h, msg, fallback, true)
	w.WriteHeader(http.StatusOK)
	_ = popupPage.Execute(w, struct {
		Title  string
		Script *popupScript
	}{Title: popupTitle(State(msg.State)), Script: script})
}

// popupTitle says what a flow's outcome means, for the popup's page.
func popupTitle(s State) string {
	switch s {
	case Connected:
		return "Connected"
	case Failed:
		return "The connection was saved, but its test failed"
	case Revoked:
		return "The connection was stopped"
	}
	return "Nothing was connected"
}

var confirmPage = template.Must(template.New("confirm").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Connect {{.What}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}a{color:#0b5cad}button{font:inherit;padding:.4rem 1rem}</style></head>
<body><h1>Connect {{.What}}?</h1>
<p>A link asked to start connecting {{.What}} through {{.Provider}}. Continue only if you meant to.</p>
<form method="post" action="{{.Action}}">{{range $k, $vs := .Params}}{{range $vs}}
<input type="hidden" name="{{$k}}" value="{{.}}">{{end}}{{end}}
<button type="submit">Continue</button> <a href="{{.Done}}">Cancel</a></form></body></html>
`))

// defaultConfirm writes the page that a cross-site GET start answers: one
// button that POSTs the same start from this site.
func (o *Onboarder) defaultConfirm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	what := q.Get("source")
	if what == "" {
		what = "a data source"
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "frame-ancestors 'none'")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	_ = confirmPage.Execute(w, struct {
		What, Provider, Action, Done string
		Params                       map[string][]string
	}{What: what, Provider: r.PathValue("provider"), Action: r.URL.Path, Done: o.cfg.DonePath, Params: q})
}
