package onboard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Limits on what the handlers read from the network.
const (
	maxQueryBytes = 8 << 10  // raw query of a start or a return
	maxFormBytes  = 64 << 10 // body of a POST start
	maxParamRunes = 256      // source, name, connection id
	flowIDBytes   = 32
	flowIDLen     = 43 // base64url, no padding, of flowIDBytes
)

// Handler returns the http.Handler that serves the start, return and
// webhook endpoints under the path of Config.URL. Mount it without
// stripping the prefix:
//
//	mux.Handle("/connect/", o.Handler())   // net/http
//	r.Mount("/connect", o.Handler())        // chi
//
// It needs the session middleware (for scs: sessionManager.LoadAndSave)
// around it.
func (o *Onboarder) Handler() http.Handler {
	mux := http.NewServeMux()
	p := o.basePath
	start := http.HandlerFunc(o.start)
	mux.Handle("GET "+p+"/{provider}/start", start)
	// A POST start changes state: refuse cross-origin form posts.
	mux.Handle("POST "+p+"/{provider}/start", http.NewCrossOriginProtection().Handler(start))
	mux.Handle("GET "+p+"/{provider}/return/{flow}", http.HandlerFunc(o.callback))
	mux.Handle("POST "+p+"/{provider}/webhook", http.HandlerFunc(o.webhook))
	return mux
}

// newFlow mints a flow id, 32 bytes from crypto/rand in base64url without
// padding, and returns it with the flow's return URL, the URL the provider
// sends the browser back to: {base}/{provider}/return/{id}. Provider names
// and flow ids need no escaping. The id is the tail of the URL, so both
// are one allocation.
func (o *Onboarder) newFlow(provider string) (returnURL, id string) {
	var raw [flowIDBytes]byte
	// crypto/rand.Read never returns an error (it crashes the program
	// irrecoverably instead, by design of the Go runtime).
	_, _ = rand.Read(raw[:])
	var enc [flowIDLen]byte
	base64.RawURLEncoding.Encode(enc[:], raw[:])
	var b strings.Builder
	b.Grow(len(o.baseURL) + len("/") + len(provider) + len("/return/") + flowIDLen)
	b.WriteString(o.baseURL)
	b.WriteByte('/')
	b.WriteString(provider)
	b.WriteString("/return/")
	b.Write(enc[:])
	u := b.String()
	return u, u[len(u)-flowIDLen:]
}

// validFlowID reports whether s has the shape of a flow id.
func validFlowID(s string) bool {
	if len(s) != flowIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// startParams reads the start request: source, name, connection (a
// reconnect) and return_to.
func startParams(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if len(r.URL.RawQuery) > maxQueryBytes {
		return nil, fmt.Errorf("%w: query of %d bytes", ErrBadRequest, len(r.URL.RawQuery))
	}
	var form url.Values
	var err error
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		err = r.ParseForm()
		form = r.Form
	} else {
		form, err = url.ParseQuery(r.URL.RawQuery)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := checkValues(form); err != nil {
		return nil, err
	}
	for _, k := range []string{"source", "name", "connection"} {
		if utf8.RuneCountInString(form.Get(k)) > maxParamRunes {
			return nil, fmt.Errorf("%w: %s is too long", ErrBadRequest, k)
		}
	}
	return form, nil
}

// checkValues refuses invalid UTF-8 and control characters in keys and
// values.
func checkValues(v url.Values) error {
	ok := func(s string) bool {
		if !utf8.ValidString(s) {
			return false
		}
		for _, c := range s {
			if c < 0x20 || c == 0x7f {
				return false
			}
		}
		return true
	}
	for k, vs := range v {
		if !ok(k) {
			return fmt.Errorf("%w: invalid parameter name", ErrBadRequest)
		}
		for _, s := range vs {
			if !ok(s) {
				return fmt.Errorf("%w: invalid value of %q", ErrBadRequest, k)
			}
		}
	}
	return nil
}

// start mints a flow, asks the provider for its hosted page, saves the
// flow, binds it to the browser session and redirects.
func (o *Onboarder) start(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, ok := o.providers[r.PathValue("provider")]
	if !ok {
		o.fail(w, r, ErrUnknownProvider)
		return
	}
	owner, err := o.owner(r)
	if err != nil {
		o.fail(w, r, err)
		return
	}
	form, err := startParams(w, r)
	if err != nil {
		o.fail(w, r, err)
		return
	}
	returnTo := form.Get("return_to")
	if returnTo != "" {
		var safe bool
		if returnTo, safe = SafeReturnPath(returnTo); !safe {
			o.fail(w, r, ErrBadReturnTo)
			return
		}
	}
	now := o.cfg.Now()
	f := Flow{
		Owner:     owner,
		Provider:  p.Name(),
		Source:    form.Get("source"),
		Name:      form.Get("name"),
		ReturnTo:  returnTo,
		State:     FlowPending,
		CreatedAt: now,
		ExpiresAt: now.Add(o.cfg.FlowTTL),
	}
	f.ReturnURL, f.ID = o.newFlow(f.Provider)
	if id := form.Get("connection"); id != "" {
		c, found, err := o.cfg.Store.Connection(ctx, owner.Tenant, f.Provider, id)
		if err != nil {
			o.fail(w, r, fmt.Errorf("%w: %v", ErrStore, err))
			return
		}
		if !found {
			o.fail(w, r, ErrUnknownConnection)
			return
		}
		f.ConnectionID, f.Reconnect = c.ID, true
		f.Source, f.Name = c.Source, c.Name
	}
	// Bind first: a missing session middleware is found before the
	// provider is asked for anything.
	if err := o.cfg.Sessions.Bind(ctx, f.ID, f.ExpiresAt); err != nil {
		o.fail(w, r, asKind(err, ErrStore))
		return
	}
	redirect, err := p.Begin(ctx, &f)
	if err == nil {
		err = checkRedirect(redirect)
	}
	if err != nil {
		o.release(ctx, f.ID)
		o.fail(w, r, asKind(err, ErrProvider), "flow", f.ID)
		return
	}
	if err := o.cfg.Store.CreateFlow(ctx, f); err != nil {
		o.release(ctx, f.ID)
		o.fail(w, r, asKind(err, ErrStore), "flow", f.ID)
		return
	}
	if o.cfg.Logger.Enabled(ctx, slog.LevelInfo) {
		o.cfg.Logger.InfoContext(ctx, "onboard: flow started", "flow", f.ID, "provider", f.Provider,
			"tenant", owner.Tenant, "user", owner.User, "reconnect", f.Reconnect)
	}
	code := http.StatusFound
	if r.Method == http.MethodPost {
		code = http.StatusSeeOther
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, redirect, code)
}

// checkRedirect makes sure a provider's hosted URL is an absolute http(s)
// URL, so a misbehaving provider cannot turn the start into a redirect to
// a relative or script URL.
func checkRedirect(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: hosted page URL %q is not an absolute http(s) URL", ErrProvider, s)
	}
	return nil
}

// owner identifies the signed-in owner.
func (o *Onboarder) owner(r *http.Request) (Owner, error) {
	owner, err := o.cfg.Owner(r)
	if err != nil {
		return Owner{}, fmt.Errorf("%w: %v", ErrNotSignedIn, err)
	}
	if owner.IsZero() {
		return Owner{}, ErrNotSignedIn
	}
	return owner, nil
}

// kinds are the sentinel errors that pass through asKind unchanged.
var kinds = []error{
	ErrForged, ErrProvider, ErrStore, ErrNoSession, ErrTooManyFlows, ErrFlowUsed,
	ErrFlowExpired, ErrUnknownFlow, ErrBadRequest, ErrUnknownConnection,
}

// asKind returns err if it already wraps one of the sentinel errors, and
// err wrapped in kind otherwise.
func asKind(err, kind error) error {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", kind, err)
}

func (o *Onboarder) release(ctx context.Context, flowID string) {
	if err := o.cfg.Sessions.Release(ctx, flowID); err != nil {
		o.cfg.Logger.WarnContext(ctx, "onboard: release session binding", "flow", flowID, "err", err)
	}
}

// fail logs err and hands the request to the Error handler.
func (o *Onboarder) fail(w http.ResponseWriter, r *http.Request, err error, attrs ...any) {
	o.failFlow(w, r, nil, err, attrs...)
}

// failFlow is fail for a return whose flow is loaded: out carries it to
// the Error handler.
func (o *Onboarder) failFlow(w http.ResponseWriter, r *http.Request, out *outcome, err error, attrs ...any) {
	level := slog.LevelWarn
	if StatusCode(err) >= 500 {
		level = slog.LevelError
	}
	attrs = append(attrs, "path", r.URL.Path, "status", StatusCode(err), "err", err)
	o.cfg.Logger.Log(r.Context(), level, "onboard: request refused", attrs...)
	if out == nil {
		out = new(outcome)
	}
	out.err = err
	o.cfg.Error.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), outcomeKey{}, out)))
}

// showResult hands a return's result to the Result handler. The default
// one redirects to the flow's return_to (or DonePath) with the outcome in
// the query, and needs no request context for it.
func (o *Onboarder) showResult(w http.ResponseWriter, r *http.Request, out *outcome) {
	w.Header().Set("Cache-Control", "no-store")
	if o.cfg.Result != nil {
		o.cfg.Result.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), outcomeKey{}, out)))
		return
	}
	target := out.flow.ReturnTo
	if target == "" {
		target = o.cfg.DonePath
	}
	http.Redirect(w, r, ResultURL(target, out.result), http.StatusSeeOther)
}

// ResultURL returns target (a same-origin path) with the outcome of c
// added to its query: onboard_connection (when c has an id),
// onboard_provider and onboard_status, in that order. A fragment stays
// last.
func ResultURL(target string, c Connection) string {
	frag := ""
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target, frag = target[:i], target[i:]
	}
	var b strings.Builder
	b.Grow(len(target) + len(frag) + len(c.ID) + len(c.Provider) + 80)
	b.WriteString(target)
	sep := byte('?')
	if strings.IndexByte(target, '?') >= 0 {
		sep = '&'
	}
	add := func(k, v string) {
		b.WriteByte(sep)
		sep = '&'
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(v))
	}
	if c.ID != "" {
		add("onboard_connection", c.ID)
	}
	add("onboard_provider", c.Provider)
	add("onboard_status", string(c.State))
	b.WriteString(frag)
	return b.String()
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}a{color:#0b5cad}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p>
{{if .Retry}}<p><a href="{{.Retry}}">Start again</a></p>{{end}}
<p><a href="/">Back to the start page</a></p></body></html>
`))

// defaultError writes a small HTML page with the status and the safe
// message of the error in the request context, and a link to start again
// when a known flow can no longer be completed here.
func (o *Onboarder) defaultError(w http.ResponseWriter, r *http.Request) {
	err := ErrorFromContext(r.Context())
	var retry string
	if f, ok := FlowFromContext(r.Context()); ok && (errors.Is(err, ErrFlowExpired) || errors.Is(err, ErrSessionMismatch)) {
		retry = o.StartURL(f.Provider, f.Source)
		if f.Reconnect {
			retry = o.ReconnectURL(f.Provider, f.ConnectionID)
		}
	}
	code := StatusCode(err)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = errorPage.Execute(w, struct{ Title, Message, Retry string }{
		Title:   fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Message: Message(err),
		Retry:   retry,
	})
}
