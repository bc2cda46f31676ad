// Package memo remembers values that are costly to find and never change
// once found (a tenant's sub-account or group id): each key is looked up
// once, even by concurrent callers.
package memo

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/sync/singleflight"
)

// ErrEmpty is a lookup that found an empty value.
var ErrEmpty = errors.New("empty value")

// Strings maps keys to remembered strings. The zero value is ready.
type Strings struct {
	mu    sync.Mutex
	m     map[string]string
	group singleflight.Group
}

// Get returns the value of key, calling find once for all concurrent
// callers when it is not known yet (see [Do]). Errors and empty values are
// not remembered.
func (s *Strings) Get(ctx context.Context, key string, find func() (string, error)) (string, error) {
	s.mu.Lock()
	v, ok := s.m[key]
	s.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := Do(ctx, &s.group, key, find)
	if err != nil {
		return "", err
	}
	if v == "" {
		return "", ErrEmpty
	}
	s.Set(key, v)
	return v, nil
}

// Set remembers v as the value of key.
func (s *Strings) Set(key, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]string)
	}
	s.m[key] = v
}

// Do calls fn once for all concurrent callers of key in g, as
// singleflight does, but each caller waits at most until its own ctx
// ends: fn runs under the first caller's context, and a caller who joined
// it does not wait past its own deadline. When the shared call ended with
// the first caller's context while ctx goes on, Do calls again.
func Do[T any](ctx context.Context, g *singleflight.Group, key string, fn func() (T, error)) (T, error) {
	var zero T
	for try := 0; ; try++ {
		select {
		case r := <-g.DoChan(key, func() (any, error) { return fn() }):
			switch {
			case r.Err == nil:
				return r.Val.(T), nil
			case try == 0 && ctx.Err() == nil &&
				(errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, context.DeadlineExceeded)):
				continue // another caller's context ended
			}
			return zero, r.Err
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
}
