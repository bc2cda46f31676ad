package cdata

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/onboardkit/onboard"
)

// fixedCreate answers every request like connection/create, in process,
// so that the benchmark measures Begin's own cost.
type fixedCreate struct{}

func (fixedCreate) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body:    io.NopCloser(strings.NewReader(`{"redirectURL":"https://cloud.cdata.com/oem/user/connections/edit?token=t"}`)),
		Request: r}, nil
}

// BenchmarkBegin compares Begin with the per-sub-account token cache
// against signing a new RS256 token on every call (the cache emptied each
// time). The key is 4096 bits, as CData's docs generate.
func BenchmarkBegin(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		b.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		cache bool
	}{{"cached-token", true}, {"sign-per-call", false}} {
		b.Run(tt.name, func(b *testing.B) {
			p, err := New(Config{AccountID: "oem", PrivateKey: key, HTTPClient: &http.Client{Transport: fixedCreate{}},
				SubAccount: func(context.Context, string) (string, error) { return "sub-1", nil }})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			f := onboard.Flow{ID: strings.Repeat("a", 43), Owner: onboard.Owner{Tenant: "t", User: "u"}, Source: "Salesforce"}
			const returnURL = "https://app.example/connect/cdata/return/" + "x"
			b.ReportAllocs()
			for b.Loop() {
				if !tt.cache {
					p.mu.Lock()
					clear(p.tokens)
					p.mu.Unlock()
				}
				if _, err := p.Begin(ctx, f, returnURL); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
