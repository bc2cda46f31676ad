package onboard_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/providers/fake"
	"github.com/onboardkit/onboard/store/memstore"
)

func TestNewValidates(t *testing.T) {
	sessions, err := middleware.NewSCS(scs.New())
	require.NoError(t, err)
	valid := func() onboard.Config {
		return onboard.Config{
			URL: "https://app.example/connect", Providers: []onboard.Provider{fake.New("fake")},
			Store: memstore.New(memstore.Options{}), Sessions: sessions,
			Owner: func(*http.Request) (onboard.Owner, error) { return onboard.Owner{}, nil },
		}
	}
	tests := []struct {
		name string
		mod  func(*onboard.Config)
		want string
	}{
		{"empty URL", func(c *onboard.Config) { c.URL = "" }, "URL is empty"},
		{"relative URL", func(c *onboard.Config) { c.URL = "/connect" }, "not an absolute"},
		{"URL with query", func(c *onboard.Config) { c.URL = "https://a.example/c?x=1" }, "query"},
		{"URL with user", func(c *onboard.Config) { c.URL = "https://u:p@a.example/c" }, "user"},
		{"URL with a port alone", func(c *onboard.Config) { c.URL = "http://:8080/connect" }, "names no host"},
		{"URL of a listen address", func(c *onboard.Config) { c.URL = "http://0.0.0.0:8080/connect" }, "names no host"},
		{"URL of an IPv6 listen address", func(c *onboard.Config) { c.URL = "http://[::]:8080/connect" }, "names no host"},
		{"no providers", func(c *onboard.Config) { c.Providers = nil }, "no Providers"},
		{"nil provider", func(c *onboard.Config) { c.Providers = []onboard.Provider{nil} }, "nil"},
		{"bad provider name", func(c *onboard.Config) { c.Providers = []onboard.Provider{fake.New("Bad Name")} }, "lower-case"},
		{"duplicate provider", func(c *onboard.Config) { c.Providers = append(c.Providers, fake.New("fake")) }, "two providers"},
		{"no store", func(c *onboard.Config) { c.Store = nil }, "Store is nil"},
		{"no sessions", func(c *onboard.Config) { c.Sessions = nil }, "Sessions is nil"},
		{"no owner", func(c *onboard.Config) { c.Owner = nil }, "Owner is nil"},
		{"negative TTL", func(c *onboard.Config) { c.FlowTTL = -1 }, "FlowTTL"},
		{"negative timeout", func(c *onboard.Config) { c.Timeout = -1 }, "Timeout"},
		{"negative owner cap", func(c *onboard.Config) { c.MaxFlowsPerOwner = -1 }, "MaxFlowsPerOwner"},
		{"tenant cap below owner cap", func(c *onboard.Config) { c.MaxFlowsPerOwner, c.MaxFlowsPerTenant = 30, 10 }, "below"},
		{"unsafe DonePath", func(c *onboard.Config) { c.DonePath = "https://evil.example" }, "DonePath"},
		{"sessions too short for any flow", func(c *onboard.Config) {
			sm := scs.New()
			sm.IdleTimeout = 5 * time.Minute
			c.Sessions, _ = middleware.NewSCS(sm)
		}, "too soon for any flow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mod(&c)
			_, err := onboard.New(c)
			require.ErrorIs(t, err, onboard.ErrConfig)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err = onboard.New(valid())
	require.NoError(t, err)
}

func TestSafeReturnPath(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want string
	}{
		{"/", true, "/"},
		{"/settings?tab=data#x", true, "/settings?tab=data#x"},
		{"", false, ""},
		{"settings", false, ""},
		{"//evil.example", false, ""},
		{`/\evil.example`, false, ""},
		{"https://evil.example/", false, ""},
		{"/a\x00b", false, ""},
		{"/a\\b", false, ""},
		{"/" + strings.Repeat("a", 2000), false, ""},
	}
	for _, tt := range tests {
		got, ok := onboard.SafeReturnPath(tt.in)
		require.Equal(t, tt.ok, ok, "%q", tt.in)
		require.Equal(t, tt.want, got, "%q", tt.in)
	}
}
