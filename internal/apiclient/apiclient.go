// Package apiclient is the JSON-over-HTTP client the providers share:
// bounded response bodies, errors of onboard's kinds, and retries with
// backoff within the caller's deadline: for idempotent calls after a
// network error, a 5xx or a 429, and for any call after a 429 (a
// rate-limited request was not carried out).
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/onboardkit/onboard"
)

// maxBody is the largest response body read.
const maxBody = 1 << 20

// Client calls one API.
type Client struct {
	// HTTP does the requests. It should have a Timeout.
	HTTP *http.Client
	// Base is prepended to every path: "https://api.fivetran.com".
	Base string
	// Retries is how many times a call may be repeated.
	Retries int
	// Backoff is the first wait between tries; it doubles, with jitter.
	Backoff time.Duration
	// MaxWait bounds a wait, including one a Retry-After asks for. A
	// longer Retry-After, or one past the context's deadline, fails the
	// call at once.
	MaxWait time.Duration
	// Prepare sets headers (authentication) on every request.
	Prepare func(ctx context.Context, r *http.Request) error
	// Decode turns a non-2xx answer into an error.
	Decode func(status int, body []byte, h http.Header) error
	// Own reports whether an error answer's body is the API's own (its
	// error shape), not a gateway's or a proxy's page: only the API's own
	// 404 says that a thing is not there (NotFound). Nil: any JSON object.
	Own func(body []byte) bool
}

// Error is a failed call: its kind (onboard.ErrRefused for a 4xx other
// than 401, 403, 408 and 429; onboard.ErrProvider otherwise) and its cause
// (the provider's decoded error, a transport error, junk).
type Error struct {
	Op   string // "GET /v1/connections/x"
	Kind error
	Err  error
	// api is true when the answer's body was the API's own (Client.Own),
	// not a gateway's or a proxy's page.
	api bool
}

// Error returns the operation and the cause.
func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }

// Unwrap returns the kind and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// kindOf returns the kind of an answer's status.
func kindOf(status int) error {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return onboard.ErrProvider
	}
	if status >= 400 && status < 500 {
		return onboard.ErrRefused
	}
	return onboard.ErrProvider
}

// ErrMalformed is a 2xx answer whose body is not the JSON expected.
var ErrMalformed = errors.New("malformed response")

// RetryAfter returns the wait a status error asks for, or zero.
type RetryAfter interface{ RetryAfter() time.Duration }

// temporary reports whether a status is worth another try.
func temporary(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// statusError is implemented by errors from Decode that carry the status.
type statusError interface{ HTTPStatus() int }

// Status returns the HTTP status of a failed call's answer, or 0 when the
// call got no answer (a network error, a timeout) or an unreadable one.
func Status(err error) int {
	var se statusError
	if errors.As(err, &se) {
		return se.HTTPStatus()
	}
	return 0
}

// NotFound reports whether a call was answered 404 by the API itself
// (Client.Own): what it asked for is not there. A 404 with any other body
// (a gateway's or a load balancer's page) says nothing of the API's
// records, and is an error like any other: taking it for "not there" would
// have a refresh report a live connection deleted, or a deletion report
// done what it never did.
func NotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.api && Status(err) == http.StatusNotFound
}

// IgnoreNotFound returns nil for a call the API answered 404 (what it
// would remove is gone already; see NotFound), and err otherwise.
func IgnoreNotFound(err error) error {
	if NotFound(err) {
		return nil
	}
	return err
}

// Do sends in as JSON (when not nil) and decodes a 2xx answer into out
// (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	op := method + " " + path
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return &Error{Op: op, Kind: onboard.ErrProvider, Err: err}
		}
	}
	idempotent := method == http.MethodGet || method == http.MethodHead || method == http.MethodDelete || method == http.MethodPut
	wait := c.Backoff
	for try := 0; ; try++ {
		err := c.once(ctx, method, path, body, out)
		if err == nil {
			return nil
		}
		if try >= c.Retries {
			return err
		}
		retry := false
		switch status := Status(err); {
		case status != 0:
			retry = (idempotent && temporary(status)) || status == http.StatusTooManyRequests
		case errors.Is(err, ErrMalformed):
			retry = false
		default: // transport error: only idempotent calls
			retry = idempotent && ctx.Err() == nil
		}
		if !retry {
			return err
		}
		d := wait + rand.N(wait/2+1)
		var ra RetryAfter
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			d = ra.RetryAfter()
		}
		if dl, ok := ctx.Deadline(); d > c.MaxWait || (ok && time.Now().Add(d).After(dl)) {
			return err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait *= 2
	}
}

func (c *Client) once(ctx context.Context, method, path string, body []byte, out any) error {
	op := method + " " + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return &Error{Op: op, Kind: onboard.ErrProvider, Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Prepare != nil {
		if err := c.Prepare(ctx, req); err != nil {
			return &Error{Op: op, Kind: onboard.ErrProvider, Err: err}
		}
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		return &Error{Op: op, Kind: onboard.ErrProvider, Err: err}
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxBody+1))
	if err != nil {
		return &Error{Op: op, Kind: onboard.ErrProvider, Err: fmt.Errorf("reading the response: %w", err)}
	}
	if len(data) > maxBody {
		return &Error{Op: op, Kind: onboard.ErrProvider, Err: fmt.Errorf("%w: body over %d bytes", ErrMalformed, maxBody)}
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		own := c.Own
		if own == nil {
			own = jsonObject
		}
		return &Error{op, kindOf(res.StatusCode), c.Decode(res.StatusCode, data, res.Header), own(data)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &Error{Op: op, Kind: onboard.ErrProvider, Err: fmt.Errorf("%w: %v", ErrMalformed, err)}
	}
	return nil
}

// ParseRetryAfter reads a Retry-After header in seconds or as an HTTP
// date; zero when absent or unreadable.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// BaseURL returns base, or def when base is empty, without a trailing
// slash; an error names the provider when it is not an absolute http(s)
// URL.
func BaseURL(provider, base, def string) (string, error) {
	if base == "" {
		base = def
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("%s: BaseURL %q is not an absolute http(s) URL", provider, base)
	}
	return strings.TrimSuffix(base, "/"), nil
}

// RetryCount maps a configured retry count: 0 is the default 2, a
// negative count is none.
func RetryCount(n int) int {
	switch {
	case n == 0:
		return 2
	case n < 0:
		return 0
	}
	return n
}

// HTTPClient returns c, or a client with timeout when c is nil.
func HTTPClient(c *http.Client, timeout time.Duration) *http.Client {
	if c == nil {
		return &http.Client{Timeout: timeout}
	}
	return c
}

// jsonObject reports whether body is a JSON object: Client.Own's default.
func jsonObject(body []byte) bool {
	var obj map[string]json.RawMessage
	return json.Unmarshal(body, &obj) == nil && obj != nil
}
