package main

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/examples/internal/demo"
)

// TestRunServesAndStops is what `go run ./examples/stdlib` does: it
// serves the app with no configuration and stops on a signal.
func TestRunServesAndStops(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	env := map[string]string{"ONBOARD_ADDR": addr, "ONBOARD_SQLITE": filepath.Join(t.TempDir(), "run.db")}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		var b strings.Builder
		done <- demo.Run(ctx, func(k string) string { return env[k] }, &b, "net/http", routes)
		out <- b.String()
	}()
	var code int
	for range 100 {
		if res, err := http.Get("http://" + addr + "/"); err == nil {
			res.Body.Close()
			code = res.StatusCode
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, http.StatusOK, code)
	cancel()
	require.NoError(t, <-done)
	_, port, _ := net.SplitHostPort(addr)
	require.Contains(t, <-out, "open http://localhost:"+port)
}
