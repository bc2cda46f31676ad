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

// TestNotFound: only a 404 that the API itself answered says that what a
// call asked for is not there: by default one with a JSON object, or, for
// a client that knows its API's error shape (Own), one of that shape. A
// gateway's page, an empty body or JSON of another shape says nothing of
// the API's records.
func TestNotFound(t *testing.T) {
	withCode := func(b []byte) bool { return strings.Contains(string(b), `"code"`) }
	for _, tt := range []struct {
		name   string
		own    func([]byte) bool
		status int
		body   string
		want   bool
	}{
		{"the API's 404", nil, http.StatusNotFound, `{"code":"NotFound_Connection","message":"no such connection"}`, true},
		{"the API's 404, another shape", nil, http.StatusNotFound, `{"error":{"code":"404","message":"not found"}}`, true},
		{"a gateway's HTML 404", nil, http.StatusNotFound, `<html><body><h1>404 Not Found</h1>nginx</body></html>`, false},
		{"an empty 404", nil, http.StatusNotFound, ``, false},
		{"a JSON string", nil, http.StatusNotFound, `"not found"`, false},
		{"JSON null", nil, http.StatusNotFound, `null`, false},
		{"the API's 410", nil, http.StatusGone, `{"code":"Gone"}`, false},
		{"the API's 400", nil, http.StatusBadRequest, `{"code":"NotFound_Connection"}`, false},
		{"the API's own shape", withCode, http.StatusNotFound, `{"code":"NotFound_Connection","message":"no such connection"}`, true},
		{"a gateway's JSON of another shape", withCode, http.StatusNotFound, `{"message":"Not Found"}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			c := &apiclient.Client{HTTP: srv.Client(), Base: srv.URL, Own: tt.own,
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
