// Package memo remembers values that are costly to find and never change
// once found (a tenant's sub-account or group id): each key is looked up
// once, even by concurrent callers.
package memo

import (
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
// callers when it is not known yet. Errors and empty values are not
// remembered.
func (s *Strings) Get(key string, find func() (string, error)) (string, error) {
	s.mu.Lock()
	v, ok := s.m[key]
	s.mu.Unlock()
	if ok {
		return v, nil
	}
	r, err, _ := s.group.Do(key, func() (any, error) { return find() })
	if err != nil {
		return "", err
	}
	if v = r.(string); v == "" {
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
