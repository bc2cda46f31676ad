// Package demotest runs an example's run function in a test, as `go run`
// does, until the test ends.
package demotest

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Run is an example's run function: it serves until ctx ends, reading its
// configuration with getenv, writing what it says to out, and calling
// ready once it serves.
type Run[A any] func(ctx context.Context, getenv func(string) string, out io.Writer, ready func(A)) error

// Start runs run with env on a free port and, unless env names one, an
// SQLite file of the test's. It returns the app once it serves and what
// it printed by then; the test's end stops it and checks it stopped
// cleanly.
func Start[A any](t *testing.T, env map[string]string, run Run[A]) (A, string) {
	t.Helper()
	all := map[string]string{"ONBOARD_ADDR": "127.0.0.1:0", "ONBOARD_SQLITE": filepath.Join(t.TempDir(), "example.db")}
	for k, v := range env {
		all[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan A, 1)
	done := make(chan error, 1)
	var out strings.Builder
	go func() { done <- run(ctx, func(k string) string { return all[k] }, &out, func(a A) { started <- a }) }()
	var zero A
	select {
	case a := <-started:
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-done)
		})
		return a, out.String()
	case err := <-done:
		cancel()
		t.Fatalf("the example did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("the example did not start in 30 s")
	}
	return zero, ""
}

// SameHost checks that an example served at public (http://localhost:PORT)
// sends a browser that opened 127.0.0.1:PORT to the same page on public,
// and answers its other requests 421: a flow started on one host would
// come back to the other without the session cookie.
func SameHost(t *testing.T, public string) {
	t.Helper()
	other := strings.Replace(public, "//localhost:", "//127.0.0.1:", 1)
	require.NotEqual(t, public, other)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(other + "/connect/cdata/start?source=Salesforce")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusFound, res.StatusCode)
	require.Equal(t, public+"/connect/cdata/start?source=Salesforce", res.Header.Get("Location"))
	res, err = client.PostForm(other+"/login", nil)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusMisdirectedRequest, res.StatusCode)
	res, err = client.Get(public + "/")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
}
