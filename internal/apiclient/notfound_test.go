package apiclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/internal/apiclient"
)

// TestNotFound: only a 404 that the API itself answered (by default, with
// a JSON object) says that what a call asked for is not there; a gateway's
// page, an empty body or JSON that is no object says nothing of the API's
// records.
func TestNotFound(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   bool
	}{
		{"the API's 404", http.StatusNotFound, `{"code":"NotFound_Connection","message":"no such connection"}`, true},
		{"the API's 404, another shape", http.StatusNotFound, `{"error":{"code":"404","message":"not found"}}`, true},
		{"a gateway's HTML 404", http.StatusNotFound, `<html><body><h1>404 Not Found</h1>nginx</body></html>`, false},
		{"an empty 404", http.StatusNotFound, ``, false},
		{"a JSON string", http.StatusNotFound, `"not found"`, false},
		{"JSON null", http.StatusNotFound, `null`, false},
		{"the API's 410", http.StatusGone, `{"code":"Gone"}`, false},
		{"the API's 400", http.StatusBadRequest, `{"code":"NotFound_Connection"}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			c := &apiclient.Client{HTTP: srv.Client(), Base: srv.URL,
				Decode: func(status int, _ []byte, _ http.Header) error { return statusErr{status: status} }}
			err := c.Do(context.Background(), http.MethodDelete, "/thing", nil, nil)
			require.Error(t, err)
			require.Equal(t, tt.want, apiclient.NotFound(err))
			if tt.want {
				require.NoError(t, apiclient.IgnoreNotFound(err))
			} else {
				require.Error(t, apiclient.IgnoreNotFound(err))
			}
		})
	}
}

// TestNotFoundOwnShape: a client that knows its API's error shape (Own)
// takes a gateway's JSON 404 of another shape for an error.
func TestNotFoundOwnShape(t *testing.T) {
	for body, want := range map[string]bool{
		`{"code":"NotFound_Connection","message":"no such connection"}`: true,
		`{"message":"Not Found"}`: false,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(body))
		}))
		c := &apiclient.Client{HTTP: srv.Client(), Base: srv.URL,
			Decode: func(status int, _ []byte, _ http.Header) error { return statusErr{status: status} },
			Own:    func(b []byte) bool { return strings.Contains(string(b), `"code"`) }}
		err := c.Do(context.Background(), http.MethodGet, "/thing", nil, nil)
		srv.Close()
		require.Equal(t, want, apiclient.NotFound(err), body)
	}
}
