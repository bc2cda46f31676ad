// Package demo is the small app both examples mount onboard in: demo
// users of two tenants, their connections, and buttons to connect through
// CData and Fivetran. With no configuration it runs the two providers'
// emulators on 127.0.0.1 and keeps its data in an SQLite file; with the
// environment variables of [FromEnv] it talks to the real providers and
// PostgreSQL.
package demo

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/alexedwards/scs/pgxstore"
	"github.com/alexedwards/scs/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
	"github.com/onboardkit/onboard/store/sqlstore"
)

// Config is the example's configuration.
type Config struct {
	// Addr is where the app listens. Default "127.0.0.1:8080".
	Addr string
	// PublicURL is the app's URL as browsers reach it; the providers send
	// browsers back to it. Default "http://localhost:8080".
	PublicURL string
	// DatabaseURL is a PostgreSQL URL; empty means SQLite at SQLitePath.
	DatabaseURL string
	// SQLitePath is the SQLite file. Default "onboard-example.db".
	SQLitePath string
	// CData: a real account when AccountID and KeyFile are set.
	CDataAccountID, CDataKeyFile, CDataBaseURL string
	// Fivetran: a real account when APIKey and APISecret are set.
	FivetranAPIKey, FivetranAPISecret, FivetranBaseURL, FivetranWebhookSecret string
}

// FromEnv reads the configuration from environment variables:
//
//	ONBOARD_ADDR, ONBOARD_PUBLIC_URL, DATABASE_URL, ONBOARD_SQLITE,
//	CDATA_ACCOUNT_ID, CDATA_PRIVATE_KEY_FILE, CDATA_BASE_URL,
//	FIVETRAN_API_KEY, FIVETRAN_API_SECRET, FIVETRAN_BASE_URL,
//	FIVETRAN_WEBHOOK_SECRET
func FromEnv(getenv func(string) string) Config {
	c := Config{
		Addr: getenv("ONBOARD_ADDR"), PublicURL: getenv("ONBOARD_PUBLIC_URL"),
		DatabaseURL: getenv("DATABASE_URL"), SQLitePath: getenv("ONBOARD_SQLITE"),
		CDataAccountID: getenv("CDATA_ACCOUNT_ID"), CDataKeyFile: getenv("CDATA_PRIVATE_KEY_FILE"), CDataBaseURL: getenv("CDATA_BASE_URL"),
		FivetranAPIKey: getenv("FIVETRAN_API_KEY"), FivetranAPISecret: getenv("FIVETRAN_API_SECRET"),
		FivetranBaseURL: getenv("FIVETRAN_BASE_URL"), FivetranWebhookSecret: getenv("FIVETRAN_WEBHOOK_SECRET"),
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://localhost:" + port(c.Addr)
	}
	if c.SQLitePath == "" {
		c.SQLitePath = "onboard-example.db"
	}
	return c
}

func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "8080"
	}
	return p
}

// App is the running example.
type App struct {
	Onboarder *onboard.Onboarder
	Sessions  *scs.SessionManager
	CData     *cdata.Provider
	Fivetran  *fivetran.Provider
	// Emulators are the base URLs of the emulators in use, by provider.
	Emulators map[string]string
	log       *slog.Logger
	closers   []func()
}

// Close stops the emulators and closes the databases.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// emulator serves h on a fresh 127.0.0.1 port: another site than the
// app's "localhost", as a real provider is.
func (a *App) emulator(name string, h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("%s emulator: %w", name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	a.closers = append(a.closers, func() { _ = srv.Close() })
	u := "http://" + l.Addr().String()
	a.Emulators[name] = u
	a.log.Info("emulator running", "provider", name, "url", u)
	return u, nil
}

// New builds the app: store, sessions, providers (real or emulated) and
// the Onboarder.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	a := &App{log: log, Emulators: map[string]string{}}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	a.Sessions = scs.New()
	a.Sessions.Lifetime = 12 * time.Hour
	a.Sessions.Cookie.Name = "demo_session"
	a.Sessions.Cookie.Secure = strings.HasPrefix(cfg.PublicURL, "https://")

	store, err := a.openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := a.setupCData(cfg); err != nil {
		return nil, err
	}
	if err := a.setupFivetran(ctx, cfg); err != nil {
		return nil, err
	}
	sessions, err := middleware.NewSCS(a.Sessions)
	if err != nil {
		return nil, err
	}
	a.Onboarder, err = onboard.New(onboard.Config{
		URL:       strings.TrimSuffix(cfg.PublicURL, "/") + "/connect",
		Providers: []onboard.Provider{a.CData, a.Fivetran},
		Store:     store,
		Sessions:  sessions,
		Owner:     a.Owner,
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	if a.Emulators["fivetran"] != "" {
		// The emulator delivers webhooks to the app, as Fivetran would.
		if _, err := a.Fivetran.RegisterWebhook(ctx, strings.TrimSuffix(cfg.PublicURL, "/")+"/connect/fivetran/webhook"); err != nil {
			return nil, fmt.Errorf("register webhook: %w", err)
		}
	}
	return a, nil
}

func (a *App) openStore(ctx context.Context, cfg Config) (onboard.Store, error) {
	dialect, driver, dsn := sqlstore.SQLite, "sqlite", "file:"+cfg.SQLitePath+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	if cfg.DatabaseURL != "" {
		dialect, driver, dsn = sqlstore.Postgres, "pgx", cfg.DatabaseURL
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	a.closers = append(a.closers, func() { _ = db.Close() })
	store, err := sqlstore.New(db, sqlstore.Options{Dialect: dialect})
	if err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if cfg.DatabaseURL != "" { // sessions shared by every instance
		pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, pool.Close)
		if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS sessions (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL);
			CREATE INDEX IF NOT EXISTS sessions_expiry_idx ON sessions (expiry)`); err != nil {
			return nil, fmt.Errorf("sessions table: %w", err)
		}
		ps := pgxstore.New(pool)
		a.closers = append(a.closers, ps.StopCleanup)
		a.Sessions.Store = ps
	}
	a.log.Info("store ready", "dialect", driver)
	return store, nil
}

func (a *App) setupCData(cfg Config) error {
	c := cdata.Config{AccountID: cfg.CDataAccountID, PrivateKeyFile: cfg.CDataKeyFile, BaseURL: cfg.CDataBaseURL, Logger: a.log}
	if cfg.CDataAccountID == "" || cfg.CDataKeyFile == "" {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		base, err := a.emulator("cdata", cdatatest.New(cdatatest.Options{AccountID: "demo-oem", PublicKey: &key.PublicKey}))
		if err != nil {
			return err
		}
		c = cdata.Config{AccountID: "demo-oem", PrivateKey: key, BaseURL: base + "/api", Logger: a.log}
	}
	var err error
	a.CData, err = cdata.New(c)
	return err
}

func (a *App) setupFivetran(ctx context.Context, cfg Config) error {
	c := fivetran.Config{APIKey: cfg.FivetranAPIKey, APISecret: cfg.FivetranAPISecret, BaseURL: cfg.FivetranBaseURL,
		WebhookSecret: cfg.FivetranWebhookSecret, HideSetupGuide: true, Logger: a.log}
	if cfg.FivetranAPIKey == "" || cfg.FivetranAPISecret == "" {
		base, err := a.emulator("fivetran", fivetrantest.New(fivetrantest.Options{APIKey: "demo-key", APISecret: "demo-secret"}))
		if err != nil {
			return err
		}
		c = fivetran.Config{APIKey: "demo-key", APISecret: "demo-secret", BaseURL: base, WebhookSecret: "demo-webhook-secret",
			HideSetupGuide: true, Logger: a.log}
	}
	var err error
	a.Fivetran, err = fivetran.New(c)
	return err
}

// users are the demo's accounts: two users of Acme, one of Globex.
var users = []onboard.Owner{{Tenant: "acme", User: "alice"}, {Tenant: "acme", User: "bob"}, {Tenant: "globex", User: "eve"}}

// Owner returns the signed-in demo user.
func (a *App) Owner(r *http.Request) (onboard.Owner, error) {
	o := onboard.Owner{Tenant: a.Sessions.GetString(r.Context(), "tenant"), User: a.Sessions.GetString(r.Context(), "user")}
	if o.IsZero() {
		return o, errors.New("not signed in")
	}
	return o, nil
}
