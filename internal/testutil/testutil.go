// Package testutil holds what onboard's own tests share and apps do not
// need: one RSA key per test binary, a worker pool, a log buffer and a
// check of the benchmarks' count.
package testutil

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"flag"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// RSAKey returns a 2048-bit key, made once per test binary.
var RSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return k
})

// FixedCount fails b unless benchmarks run with a fixed count
// (-benchtime Nx), as those that call it must: their figures compare
// benchmarks that hold the same number of flows, or steps that use the
// flows an earlier step made.
func FixedCount(b *testing.B) {
	if f := flag.Lookup("test.benchtime"); f == nil || !strings.HasSuffix(f.Value.String(), "x") {
		b.Fatal("run with a fixed count, -benchtime Nx (BENCHMARKS.md gives the commands)")
	}
}

// Concurrently calls fn(i) for every i below n from workers goroutines
// and returns how many calls failed and the first failure.
func Concurrently(n, workers int, fn func(i int) error) (failed int, first error) {
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if failed++; failed == 1 {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return failed, first
}

// GetAll sends n GETs of url, 16 at a time, the i-th through client(i),
// each as a link on a page of url's own site (Sec-Fetch-Site:
// same-origin), and counts the answers by status. It returns the first
// request that failed to get an answer, if any.
func GetAll(n int, client func(i int) *http.Client, url string) (map[int]int, error) {
	var mu sync.Mutex
	codes := map[int]int{}
	_, first := Concurrently(n, 16, func(i int) error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		res, err := client(i).Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		mu.Lock()
		codes[res.StatusCode]++
		mu.Unlock()
		return nil
	})
	return codes, first
}

// Buffer collects log lines; it is safe for the concurrent writes of a
// logger.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines returns the lines that contain every one of substr.
func (l *Buffer) Lines(substr ...string) []string {
	var out []string
next:
	for _, line := range strings.Split(l.String(), "\n") {
		for _, s := range substr {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// Quantile returns the q-quantile (0 to 1) of sorted, nearest rank below.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(q*float64(len(sorted)-1))]
}
