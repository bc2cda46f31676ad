package apiclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/apiclient"
)

// statusErr is what a provider's Decode returns: it carries the status
// and the wait asked for.
type statusErr struct {
	status int
	wait   time.Duration
}

func (e statusErr) Error() string             { return fmt.Sprint("status ", e.status) }
func (e statusErr) HTTPStatus() int           { return e.status }
func (e statusErr) RetryAfter() time.Duration { return e.wait }

// TestRetries checks which calls are repeated: any call after a 429 (the
// request was not carried out), and only idempotent ones after a 5xx.
func TestRetries(t *testing.T) {
	for _, tt := range []struct {
		method     string
		status     int
		retryAfter string
		calls      int32
		ok         bool
		kind       error
	}{
		{"POST", http.StatusTooManyRequests, "1", 2, true, nil},
		{"POST", http.StatusTooManyRequests, "", 2, true, nil},
		{"POST", http.StatusServiceUnavailable, "", 1, false, onboard.ErrProvider},
		{"POST", http.StatusConflict, "", 1, false, onboard.ErrRefused},
		{"GET", http.StatusServiceUnavailable, "", 2, true, nil},
		{"DELETE", http.StatusTooManyRequests, "", 2, true, nil},
		{"POST", http.StatusTooManyRequests, "3600", 1, false, onboard.ErrProvider}, // past MaxWait: at once
	} {
		t.Run(fmt.Sprint(tt.method, " ", tt.status, " ", tt.retryAfter), func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					if tt.retryAfter != "" {
						w.Header().Set("Retry-After", tt.retryAfter)
					}
					w.WriteHeader(tt.status)
					return
				}
				w.Write([]byte(`{"ok":true}`))
			}))
			defer srv.Close()
			c := &apiclient.Client{HTTP: srv.Client(), Base: srv.URL, Retries: 2, Backoff: 10 * time.Millisecond,
				MaxWait: 2 * time.Second, Decode: func(status int, _ []byte, h http.Header) error {
					return statusErr{status, apiclient.ParseRetryAfter(h, time.Now())}
				}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			var out struct{ OK bool }
			err := c.Do(ctx, tt.method, "/x", map[string]string{"a": "b"}, &out)
			require.Equal(t, tt.calls, calls.Load())
			if tt.ok {
				require.NoError(t, err)
				require.True(t, out.OK)
				if tt.retryAfter != "" {
					s, _ := strconv.Atoi(tt.retryAfter)
					require.GreaterOrEqual(t, time.Since(start), time.Duration(s)*time.Second, "Retry-After honoured")
				}
				return
			}
			require.ErrorIs(t, err, tt.kind)
			var se statusErr
			require.True(t, errors.As(err, &se))
			require.Equal(t, tt.status, se.status)
		})
	}
}

// TestRetryWithinDeadline: a wait that would pass the caller's deadline
// is not begun.
func TestRetryWithinDeadline(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c := &apiclient.Client{HTTP: srv.Client(), Base: srv.URL, Retries: 2, Backoff: 10 * time.Millisecond,
		MaxWait: 5 * time.Second, Decode: func(status int, _ []byte, h http.Header) error {
			return statusErr{status, apiclient.ParseRetryAfter(h, time.Now())}
		}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err := c.Do(ctx, "POST", "/x", nil, nil)
	require.ErrorIs(t, err, onboard.ErrProvider)
	require.Equal(t, int32(1), calls.Load())
	require.Less(t, time.Since(start), 500*time.Millisecond)
}
