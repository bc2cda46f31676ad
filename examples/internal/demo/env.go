// Package demo is what the two examples share that is not onboard's
// wiring: the demo's pages, its configuration from the environment, the
// provider emulators it runs when no real account is configured, and a
// PostgreSQL session store that honours request deadlines. The wiring
// itself is in each example's main.go.
package demo

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/onboardkit/onboard"
)

// Env is the examples' configuration, read from environment variables by
// [ReadEnv].
type Env struct {
	// Addr is where the app listens (ONBOARD_ADDR). Default
	// "127.0.0.1:8080".
	Addr string
	// PublicURL is the app's URL as browsers and the providers reach it
	// (ONBOARD_PUBLIC_URL). Default http://localhost:PORT.
	PublicURL string
	// PublicURLSet reports that ONBOARD_PUBLIC_URL was given.
	PublicURLSet bool
	// DatabaseURL is a PostgreSQL URL for flows, connections and sessions
	// (DATABASE_URL); empty means SQLite at SQLitePath (ONBOARD_SQLITE,
	// default "onboard-example.db") and sessions in memory.
	DatabaseURL, SQLitePath string
	// CData is the real CData account, when configured.
	CData *CDataEnv
	// Fivetran is the real Fivetran account, when configured.
	Fivetran *FivetranEnv
	// FlowTTL is how long a started flow may take (ONBOARD_FLOW_TTL, a
	// Go duration such as "30m"); zero means onboard's default.
	FlowTTL time.Duration
	// Timeout is the one deadline of every request (ONBOARD_TIMEOUT, a Go
	// duration); zero means onboard's default.
	Timeout time.Duration
	// Users are the demo's accounts (ONBOARD_DEMO_USERS, comma-separated
	// user@tenant pairs such as "alice@acme,eve@globex"). Default [Users].
	Users []onboard.Owner
}

// CDataEnv configures the real CData Connect AI Embed.
type CDataEnv struct {
	AccountID, PrivateKeyFile, BaseURL string
}

// FivetranEnv configures the real Fivetran.
type FivetranEnv struct {
	APIKey, APISecret, BaseURL, WebhookSecret string
}

// ReadEnv reads the configuration:
//
//	ONBOARD_ADDR, ONBOARD_PUBLIC_URL, DATABASE_URL, ONBOARD_SQLITE,
//	ONBOARD_FLOW_TTL, ONBOARD_TIMEOUT, ONBOARD_DEMO_USERS,
//	CDATA_ACCOUNT_ID, CDATA_PRIVATE_KEY_FILE, CDATA_BASE_URL,
//	FIVETRAN_API_KEY, FIVETRAN_API_SECRET, FIVETRAN_BASE_URL,
//	FIVETRAN_WEBHOOK_SECRET
//
// A provider with none of its variables set runs on its emulator; one
// with only some of its required variables set is an error that names
// the missing ones, never a silent fallback to the emulator.
func ReadEnv(getenv func(string) string) (Env, error) {
	e := Env{Addr: getenv("ONBOARD_ADDR"), PublicURL: getenv("ONBOARD_PUBLIC_URL"),
		DatabaseURL: getenv("DATABASE_URL"), SQLitePath: getenv("ONBOARD_SQLITE")}
	if e.Addr == "" {
		e.Addr = "127.0.0.1:8080"
	}
	e.PublicURLSet = e.PublicURL != ""
	if e.PublicURLSet {
		u, err := url.Parse(e.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Env{}, fmt.Errorf("ONBOARD_PUBLIC_URL %q is not an absolute http(s) URL", e.PublicURL)
		}
		e.PublicURL = strings.TrimSuffix(e.PublicURL, "/")
	}
	if e.SQLitePath == "" {
		e.SQLitePath = "onboard-example.db"
	}
	var err error
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"ONBOARD_FLOW_TTL", &e.FlowTTL}, {"ONBOARD_TIMEOUT", &e.Timeout}} {
		if v := getenv(d.name); v != "" {
			if *d.to, err = time.ParseDuration(v); err != nil || *d.to <= 0 {
				return Env{}, fmt.Errorf("%s %q is not a positive duration such as 30s", d.name, v)
			}
		}
	}
	if e.Users, err = users(getenv("ONBOARD_DEMO_USERS")); err != nil {
		return Env{}, err
	}
	if e.CData, err = provider(getenv, []string{"CDATA_ACCOUNT_ID", "CDATA_PRIVATE_KEY_FILE"}, []string{"CDATA_BASE_URL"},
		func(v map[string]string) *CDataEnv {
			return &CDataEnv{v["CDATA_ACCOUNT_ID"], v["CDATA_PRIVATE_KEY_FILE"], v["CDATA_BASE_URL"]}
		}); err != nil {
		return Env{}, err
	}
	if e.Fivetran, err = provider(getenv, []string{"FIVETRAN_API_KEY", "FIVETRAN_API_SECRET"},
		[]string{"FIVETRAN_BASE_URL", "FIVETRAN_WEBHOOK_SECRET"}, func(v map[string]string) *FivetranEnv {
			return &FivetranEnv{v["FIVETRAN_API_KEY"], v["FIVETRAN_API_SECRET"], v["FIVETRAN_BASE_URL"], v["FIVETRAN_WEBHOOK_SECRET"]}
		}); err != nil {
		return Env{}, err
	}
	return e, nil
}

// users reads ONBOARD_DEMO_USERS: comma-separated user@tenant pairs, each
// user named once (the sign-in form picks a user by name).
func users(v string) ([]onboard.Owner, error) {
	if v == "" {
		return Users, nil
	}
	var out []onboard.Owner
	for _, pair := range strings.Split(v, ",") {
		user, tenant, ok := strings.Cut(strings.TrimSpace(pair), "@")
		o := onboard.Owner{Tenant: tenant, User: user}
		if !ok || o.IsZero() || strings.Contains(tenant, "@") {
			return nil, fmt.Errorf("ONBOARD_DEMO_USERS: %q is not user@tenant", pair)
		}
		if slices.ContainsFunc(out, func(u onboard.Owner) bool { return u.User == user }) {
			return nil, fmt.Errorf("ONBOARD_DEMO_USERS: user %q is named twice", user)
		}
		out = append(out, o)
	}
	return out, nil
}

// provider reads one provider's variables: nil when none is set, an error
// naming the missing required ones when only some are.
func provider[T any](getenv func(string) string, required, optional []string, build func(map[string]string) *T) (*T, error) {
	v := map[string]string{}
	var missing []string
	for _, k := range append(required, optional...) {
		v[k] = getenv(k)
	}
	set := 0
	for _, k := range append(required, optional...) {
		if v[k] != "" {
			set++
		}
	}
	if set == 0 {
		return nil, nil
	}
	for _, k := range required {
		if v[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s set, but %s missing: set all of %s for the real provider, or none for its emulator",
			strings.Join(setNames(v), ", "), strings.Join(missing, " and "), strings.Join(required, ", "))
	}
	return build(v), nil
}

func setNames(v map[string]string) []string {
	var out []string
	for k, val := range v {
		if val != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Port returns the port of a listen address, for the default public URL.
func Port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "8080"
	}
	return p
}
