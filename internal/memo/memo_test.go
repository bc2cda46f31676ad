package memo

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/singleflight"
)

// TestDoWaitsOnlyForItsOwnContext: a caller who joins a shared call stops
// at its own deadline; one whose shared call ended with another caller's
// context calls again.
func TestDoWaitsOnlyForItsOwnContext(t *testing.T) {
	var g singleflight.Group
	release := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := Do(context.Background(), &g, "k", func() (string, error) { <-release; return "v", nil })
		first <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Do(ctx, &g, "k", func() (string, error) { return "joined", nil })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), time.Second)
	close(release)
	require.NoError(t, <-first)

	calls := 0
	v, err := Do(context.Background(), &g, "k", func() (string, error) {
		calls++
		if calls == 1 {
			return "", context.Canceled // the first caller's context ended
		}
		return "again", nil
	})
	require.NoError(t, err)
	require.Equal(t, "again", v)
	require.Equal(t, 2, calls)

	_, err = Do(context.Background(), &g, "k", func() (string, error) { return "", errors.New("refused") })
	require.EqualError(t, err, "refused")
}
