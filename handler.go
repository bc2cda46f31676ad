package onboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
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
// It needs the session middleware around it; for scs,
// middleware.LoadAndSave(sessionManager, o.SessionError), which renders a
// session store's failure through Config.Error.
func (o *Onboarder) Handler() http.Handler { return o.routes(nil) }

// routes returns the mux of the handler's routes, under Config.URL's path.
// With only, every route is served by only: a session failure answered
// before the handler ran is routed so, for its page to know which route
// the request was for (a popup's return, the status endpoint).
func (o *Onboarder) routes(only http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler) {
		if only != nil {
			h = only
		}
		mux.Handle(pattern, h)
	}
	p := o.basePath
	start := http.HandlerFunc(o.start)
	// A POST start changes state: cross-origin posts are refused through
	// the Error handler.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.fail(w, r, nil, ErrCrossOrigin)
	}))
	handle("GET "+p+"/{provider}/start", start)
	handle("POST "+p+"/{provider}/start", cop.Handler(start))
	handle("GET "+p+"/{provider}/return/{flow}", http.HandlerFunc(o.callback))
	handle("GET "+p+"/{provider}/popup/{flow}", http.HandlerFunc(o.callback))
	handle("GET "+p+"/{provider}/status/{flow}", http.HandlerFunc(o.status))
	handle("POST "+p+"/{provider}/webhook", http.HandlerFunc(o.webhook))
	// The least specific pattern: whatever matches no route above, by
	// path or by method.
	handle("/", http.HandlerFunc(o.noRoute))
	return mux
}

// noRoute answers a request that matches none of the handler's routes
// through Config.Error (ErrNoRoute), and logs a warning when its path is
// not under Config.URL's: the handler was mounted elsewhere, or behind
// http.StripPrefix.
func (o *Onboarder) noRoute(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, o.basePath+"/") {
		o.cfg.Logger.WarnContext(r.Context(), "onboard: a request outside Config.URL's path reached the handler: mount it at that path, without stripping the prefix",
			"path", r.URL.Path, "want_prefix", o.basePath+"/")
	}
	o.fail(w, r, nil, ErrNoRoute)
}

// newFlowID returns 32 bytes from crypto/rand in base64url without
// padding.
func newFlowID() string {
	var raw [flowIDBytes]byte
	// crypto/rand.Read never returns an error (it crashes the program
	// irrecoverably instead, by design of the Go runtime).
	_, _ = rand.Read(raw[:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// returnURL is the absolute URL the provider sends the browser of flow f
// back to: {base}/{provider}/return/{id}, or .../popup/{id} for a flow
// shown in a popup. Provider names and flow ids need no escaping.
func (o *Onboarder) returnURL(f Flow, popup bool) string {
	mode := "/return/"
	if popup {
		mode = "/popup/"
	}
	return o.baseURL + "/" + f.Provider + mode + f.ID
}

// validFlowID reports whether s has the shape of a flow id.
func validFlowID(s string) bool { return base64URL(s, flowIDLen) }

// base64URL reports whether s is n characters of the base64url alphabet.
func base64URL(s string, n int) bool {
	if len(s) != n {
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

// browserDigest is what a flow keeps of its browser's key: a digest, so
// the store holds nothing that would let its reader act as the browser.
func browserDigest(key string) string {
	sum := sha256.Sum256([]byte("onboard/browser\x00" + key))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// sameBrowser reports, in constant time, whether key is the key of the
// browser that started f.
func sameBrowser(f Flow, key string) bool {
	if key == "" || f.Browser == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(browserDigest(key)), []byte(f.Browser)) == 1
}

// browserKey asks the Sessions for the request's browser key.
func (o *Onboarder) browserKey(ctx context.Context, create bool) (string, error) {
	key, err := o.cfg.Sessions.BrowserKey(ctx, create)
	if err != nil {
		return "", classify(err, ErrSession)
	}
	if create && len(key) < 32 {
		return "", fmt.Errorf("%w: Sessions.BrowserKey returned a key of %d bytes, want at least 32", ErrConfig, len(key))
	}
	return key, nil
}

// startParams reads the start request's parameters: source, name,
// connection (a reconnect) and return_to.
func startParams(w http.ResponseWriter, r *http.Request) (StartOptions, error) {
	if len(r.URL.RawQuery) > maxQueryBytes {
		return StartOptions{}, fmt.Errorf("%w: query of %d bytes", ErrBadRequest, len(r.URL.RawQuery))
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
		return StartOptions{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := checkValues(form); err != nil {
		return StartOptions{}, err
	}
	opt := StartOptions{Source: form.Get("source"), Name: form.Get("name"), Connection: form.Get("connection"),
		Popup: form.Get("display") == "popup"}
	for k, v := range map[string]string{"source": opt.Source, "name": opt.Name, "connection": opt.Connection} {
		if utf8.RuneCountInString(v) > maxParamRunes {
			return StartOptions{}, fmt.Errorf("%w: %s is too long", ErrBadRequest, k)
		}
	}
	if rt := form.Get("return_to"); rt != "" {
		var safe bool
		if opt.ReturnTo, safe = SafeReturnPath(rt); !safe {
			return StartOptions{}, ErrBadReturnTo
		}
	}
	return opt, nil
}

// checkValues refuses invalid UTF-8 and control characters (C0, DEL and
// C1) in keys and values.
func checkValues(v url.Values) error {
	ok := func(s string) bool {
		if !utf8.ValidString(s) {
			return false
		}
		for _, c := range s {
			if unicode.IsControl(c) { // C0, DEL and C1
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

// needsConfirm reports whether a GET start must not start directly: the
// browser marks it as coming from another site (Sec-Fetch-Site cross-site
// or same-site), or it is a HEAD or a prefetch, which must have no effect.
// Same-origin links, typed URLs and bookmarks (Sec-Fetch-Site same-origin
// or none) start directly, as do a same-origin page's own fetch and
// frames; a same-origin image, script or style (Sec-Fetch-Dest) gets the
// confirmation page. Without Fetch Metadata (an older browser, or
// no browser at all), a Referer or Origin of another site gets the
// confirmation page, and a request with neither is taken as a typed URL.
func (o *Onboarder) needsConfirm(r *http.Request) bool {
	if r.Method == http.MethodHead {
		return true
	}
	if strings.Contains(r.Header.Get("Sec-Purpose"), "prefetch") || r.Header.Get("Purpose") == "prefetch" {
		return true
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	case "same-origin", "none":
		// A page of this site may still show content that loads the start
		// as a subresource (a Markdown image with a relative URL): only a
		// navigation or a script's own request is the user's start.
		switch r.Header.Get("Sec-Fetch-Dest") {
		case "", "document", "iframe", "frame", "empty":
			return false
		}
		return true
	}
	for _, page := range []string{r.Header.Get("Origin"), r.Header.Get("Referer")} {
		if page != "" && !o.ownPage(r, page) {
			return true
		}
	}
	return false
}

// ownHost reports whether request r came to Config.URL's host name, the
// one whose cookies a return brings (ports aside: cookies do not keep
// them apart), directly or, behind a proxy, as its X-Forwarded-Host.
func (o *Onboarder) ownHost(r *http.Request) bool {
	want := hostname(o.host)
	fwd, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ",")
	return strings.EqualFold(hostname(r.Host), want) || strings.EqualFold(hostname(strings.TrimSpace(fwd)), want)
}

// hostname returns host (a Host header: name or address, and a port)
// without its port.
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

// ownPage reports whether page (a Referer or Origin) is of this site: the
// host the request came to, or the host of Config.URL.
func (o *Onboarder) ownPage(r *http.Request, page string) bool {
	u, err := url.Parse(page)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return u.Host == r.Host || u.Host == o.host
}

// wantsJSON reports whether a start asks for the hosted page's URL as
// JSON (a popup or a single-page app) instead of a redirect.
func wantsJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
			return true
		}
	}
	return false
}

// deadline returns the context every call of a user-facing request runs
// under: the request's, bounded by Config.Timeout.
func (o *Onboarder) deadline(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), o.cfg.Timeout)
}

// start admits a flow, asks the provider for its hosted page and
// redirects there (or answers the URL as JSON).
func (o *Onboarder) start(w http.ResponseWriter, r *http.Request) {
	p, ok := o.providers[r.PathValue("provider")]
	if !ok {
		o.fail(w, r, nil, ErrUnknownProvider)
		return
	}
	opt, err := startParams(w, r)
	if err != nil {
		o.fail(w, r, nil, err)
		return
	}
	if r.Method != http.MethodPost && o.needsConfirm(r) {
		// No flow and no provider call until the user confirms on a page
		// of this site.
		w.Header().Set("Cache-Control", "no-store")
		o.cfg.Confirm.ServeHTTP(w, r)
		return
	}
	owner, err := o.owner(r)
	if err != nil {
		o.fail(w, r, nil, err)
		return
	}
	ctx, cancel := o.deadline(r)
	defer cancel()
	if !o.ownHost(r) {
		level := slog.LevelWarn
		if o.warnedHost.Swap(true) {
			level = slog.LevelDebug
		}
		o.cfg.Logger.Log(ctx, level, "onboard: a start came to another host than Config.URL's: the browser's session cookie, "+
			"set for that host, does not come back with the return to Config.URL, so the return will be refused as another "+
			"browser's; serve the app at Config.URL's host (127.0.0.1 and localhost are two hosts), "+
			"or behind a proxy that keeps the Host header (or sets X-Forwarded-Host)", "host", r.Host, "url_host", o.host)
	}
	now := o.cfg.Now()
	f := Flow{
		ID:        newFlowID(),
		Owner:     owner,
		Provider:  p.Name(),
		Source:    opt.Source,
		Name:      opt.Name,
		ReturnTo:  opt.ReturnTo,
		State:     FlowPending,
		CreatedAt: now,
		ExpiresAt: now.Add(o.cfg.FlowTTL),
	}
	if opt.Connection != "" {
		c, err := o.connection(ctx, owner.Tenant, f.Provider, opt.Connection)
		if err == nil && c.State == Revoked {
			err = fmt.Errorf("%w: %s %q", ErrRevoked, f.Provider, c.ID)
		}
		if err != nil {
			o.fail(w, r, &f, err)
			return
		}
		f.ConnectionID, f.Reconnect, f.Source, f.Name = c.ID, true, c.Source, c.Name
	}
	key, err := o.browserKey(ctx, true)
	if err != nil {
		o.fail(w, r, &f, err)
		return
	}
	f.Browser = browserDigest(key)
	if err := o.withinSession(ctx, &f, now); err != nil {
		o.fail(w, r, &f, err)
		return
	}
	if err := o.admit(ctx, f); err != nil {
		o.fail(w, r, &f, err)
		return
	}
	pctx, end := o.tel.provider(ctx, f.Provider, "Begin")
	redirect, err := p.Begin(pctx, f, o.returnURL(f, opt.Popup))
	if err == nil {
		err = checkRedirect(redirect)
	}
	err = classify(err, ErrProvider)
	end(err)
	if err != nil {
		// The provider may have made something before it failed (an
		// answer lost on the way back): settle the flow now, or leave it
		// to the runner when the deadline is gone.
		if ctx.Err() == nil {
			if _, serr := o.settle(ctx, f, Abandoned, "the provider could not start the setup"); serr != nil {
				o.cfg.Logger.WarnContext(ctx, "onboard: settle a failed start", "flow", f.ID, "err", serr)
			}
		}
		o.fail(w, r, &f, err)
		return
	}
	o.tel.flow(ctx, o.tel.started, f.Provider, "")
	if o.cfg.Logger.Enabled(ctx, slog.LevelInfo) {
		o.cfg.Logger.InfoContext(ctx, "onboard: flow started", "flow", f.ID, "provider", f.Provider,
			"tenant", owner.Tenant, "user", owner.User, "reconnect", f.Reconnect)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if r.Method == http.MethodPost && wantsJSON(r) {
		writeJSON(w, http.StatusOK, startAnswer{Flow: f.ID, URL: redirect, ExpiresAt: f.ExpiresAt})
		return
	}
	code := http.StatusFound
	if r.Method == http.MethodPost {
		code = http.StatusSeeOther
	}
	http.Redirect(w, r, redirect, code)
}

// startAnswer is the JSON answer of a start that asked for JSON.
type startAnswer struct {
	Flow      string    `json:"flow"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
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

// minFlowTime is the least time a start leaves a flow when the browser's
// session ends sooner than FlowTTL (or FlowTTL, when that is shorter).
const minFlowTime = 5 * time.Minute

// withinSession keeps new flow f within the browser's session, which its
// return needs: when the Sessions tell when the session ends without a
// request, f expires Config.Timeout before that, so that it closes by then
// (closedAt); a flow left less than minFlowTime is refused
// (ErrSessionEnding).
func (o *Onboarder) withinSession(ctx context.Context, f *Flow, now time.Time) error {
	se, ok := o.cfg.Sessions.(sessionEnder)
	if !ok {
		return nil
	}
	end := se.SessionEnd(ctx, now)
	if end.IsZero() || !end.Before(o.closedAt(*f)) {
		return nil
	}
	f.ExpiresAt = end.Add(-o.cfg.Timeout)
	if f.ExpiresAt.Sub(now) < min(minFlowTime, o.cfg.FlowTTL) {
		return fmt.Errorf("%w: the browser's session ends at %s", ErrSessionEnding, end.UTC().Format(time.RFC3339))
	}
	return nil
}

// owner identifies the signed-in owner.
func (o *Onboarder) owner(r *http.Request) (Owner, error) {
	// The browser binding first: an Owner that reads the app's scs session
	// panics when the request reached onboard without LoadAndSave, which
	// the binding reports as ErrNoSession.
	if _, err := o.browserKey(r.Context(), false); err != nil {
		return Owner{}, err
	}
	owner, err := o.cfg.Owner(r)
	if err != nil {
		if errors.Is(err, ErrSession) || errors.Is(err, ErrNoSession) {
			return Owner{}, err
		}
		return Owner{}, fmt.Errorf("%w: %w", ErrNotSignedIn, err)
	}
	if owner.IsZero() {
		return Owner{}, ErrNotSignedIn
	}
	return owner, nil
}
