// Package emulate holds what the provider emulators (cdatatest,
// fivetrantest) share: injected faults (errors, rate limits, delays, junk,
// hangs, dropped connections) and a record of the API requests they
// received. An app's tests make an emulator fail through its API field:
//
//	emu.API.Fail(emulate.Fault{Status: 429, RetryAfter: time.Second})
package emulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is one injected failure of one API call.
type Fault struct {
	// Status answers with this status and Body (default a JSON error).
	Status int
	// RetryAfter sets the Retry-After header, in whole seconds.
	RetryAfter time.Duration
	// Body replaces the answer's body. With Status 0 it is sent with 200:
	// malformed JSON. The call is not carried out (set AfterHandling for
	// junk sent after it was): a DELETE whose answer has no body to check
	// reads such a fault as success.
	Body string
	// Delay waits before answering (or until the client gives up).
	Delay time.Duration
	// Hang sends the headers and a part of a body, then never ends it.
	Hang bool
	// Drop closes the connection without an answer.
	Drop bool
	// AfterHandling applies Drop or Delay only after the call was carried
	// out: the answer is lost, but what the call did stays done.
	AfterHandling bool
}

// Request is one recorded API request.
type Request struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
}

// API wraps an emulator's API handler with faults and a request record.
type API struct {
	mu     sync.Mutex
	faults []Fault
	delay  time.Duration
	reqs   []Request
	// ErrorBody renders the default error body for a status.
	ErrorBody func(status int) string
}

// Fail queues faults; each is used by one API call, in order.
func (a *API) Fail(f ...Fault) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.faults = append(a.faults, f...)
}

// Clear drops the queued faults that no call used.
func (a *API) Clear() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.faults = nil
}

// SetDelay delays every API answer by d (0 to stop).
func (a *API) SetDelay(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.delay = d
}

// Requests returns the API requests received so far.
func (a *API) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.reqs...)
}

// Wrap records each request, then applies the next fault, if any, or
// hands the request to h.
func (a *API) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		a.mu.Lock()
		a.reqs = append(a.reqs, Request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		var f *Fault
		if len(a.faults) > 0 {
			f = &a.faults[0]
			a.faults = a.faults[1:]
		}
		delay := a.delay
		a.mu.Unlock()
		var done *httptest.ResponseRecorder
		if f != nil && f.AfterHandling {
			done = httptest.NewRecorder()
			h.ServeHTTP(done, r)
		}
		if f != nil && f.Delay > 0 {
			delay = f.Delay
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		switch {
		case f != nil && (f.Status != 0 || f.Body != "" || f.Hang || f.Drop):
			a.apply(w, r, f)
		case done != nil: // the call was carried out; send its answer late
			for k, v := range done.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(done.Code)
			_, _ = w.Write(done.Body.Bytes())
		default:
			h.ServeHTTP(w, r)
		}
	})
}

func (a *API) apply(w http.ResponseWriter, r *http.Request, f *Fault) {
	switch {
	case f.Drop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		// No hijacking (HTTP/2): the nearest thing is a bare 502.
		w.WriteHeader(http.StatusBadGateway)
		return
	case f.Hang:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"data":`)
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		<-r.Context().Done()
		return
	}
	status, body := f.Status, f.Body
	if status == 0 {
		status = http.StatusOK
	}
	if body == "" && a.ErrorBody != nil {
		body = a.ErrorBody(status)
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter/time.Second)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// JSON writes v with status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// BaseURL returns the scheme and host the request was sent to, for links
// an emulator hands out.
func BaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// ValidRedirect reports whether s is an absolute http(s) URL, as both
// providers require of the URL they send the browser back to.
func ValidRedirect(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Visitor drives a hosted page like a browser that does not follow
// redirects, for the emulators' Fill helpers.
type Visitor struct {
	client *http.Client
	page   *url.URL
}

// NewVisitor opens the hosted page at pageURL with a copy of client that
// does not follow redirects; the page must answer 200.
func NewVisitor(ctx context.Context, client *http.Client, pageURL string) (*Visitor, error) {
	u, err := url.Parse(pageURL)
	if err != nil {
		return nil, err
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	v := &Visitor{client: &c, page: u}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pageURL, nil)
	if err != nil {
		return nil, err
	}
	res, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("emulate: hosted page answered %d", res.StatusCode)
	}
	return v, nil
}

// Param returns a query parameter of the page's URL.
func (v *Visitor) Param(name string) string { return v.page.Query().Get(name) }

// Submit posts form to the page's path and returns the status and the
// redirect target, if any.
func (v *Visitor) Submit(ctx context.Context, form url.Values) (status int, location string, err error) {
	target := v.page.Scheme + "://" + v.page.Host + v.page.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := v.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Location"), nil
}
