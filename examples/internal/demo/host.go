package demo

import (
	"net/http"
	"net/url"
)

// SameHost sends a browser that reached the app on another host than
// public's (127.0.0.1 where the app is localhost) to the same page on
// public: the session cookie is the host's, so a flow started on one host
// and returned to the other is refused as a return in another browser.
// GET and HEAD requests are redirected; others are answered 421 with the
// URL to open. Use it only when public names the host the app is reached
// on directly: behind a proxy that rewrites Host, it would send every
// request away.
func SameHost(public string, next http.Handler) http.Handler {
	u, err := url.Parse(public)
	if err != nil || u.Host == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == u.Host {
			next.ServeHTTP(w, r)
			return
		}
		to := u.Scheme + "://" + u.Host + r.URL.RequestURI()
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		http.Error(w, "This app is served at "+u.Scheme+"://"+u.Host+": open it there.", http.StatusMisdirectedRequest)
	})
}
