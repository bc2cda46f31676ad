// Command stdlib is onboard mounted in a standard library web app. Run it
// from the repository's root with
//
//	go run ./examples/stdlib
//
// and open the address it prints. With no configuration it runs the CData
// and Fivetran emulators on 127.0.0.1 and keeps its data in an SQLite
// file; the README lists the variables for the real providers and
// PostgreSQL.
//
// This file is the whole wiring, top to bottom: logging, the store and
// its migrations, the session manager, the providers (real or emulated),
// onboard.New, the routes, the server, the Fivetran webhook and the
// background runner. Only the demo's pages come from examples/internal.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/examples/internal/demo"
	"github.com/onboardkit/onboard/middleware"
	"github.com/onboardkit/onboard/providers/cdata"
	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
	"github.com/onboardkit/onboard/store/sqlstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// app is the running example, for its tests.
type app struct {
	URL       string
	Onboarder *onboard.Onboarder
	Sessions  *scs.SessionManager
	Emulators map[string]string
	// CDataEmulator and FivetranEmulator are the emulators in use (nil for
	// a real account): tests inject faults through their API fields.
	CDataEmulator    *cdatatest.Server
	FivetranEmulator *fivetrantest.Server
}

// run serves the app until ctx ends. ready, when not nil, is told the
// app once it serves.
func run(ctx context.Context, getenv func(string) string, out io.Writer, ready func(*app)) error {
	// Every log line, the database driver's and the standard log
	// package's included, goes through one slog handler.
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)

	env, err := demo.ReadEnv(getenv)
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", env.Addr)
	if err != nil {
		return err
	}
	defer listener.Close()
	if !env.PublicURLSet {
		env.PublicURL = "http://localhost:" + demo.Port(listener.Addr().String())
	}

	// The store: flows and connections in SQLite, or in PostgreSQL when
	// several instances share them. The pool is sized: database/sql's
	// default keeps 2 idle connections, and under load reopens the rest.
	dialect, driver, dsn := sqlstore.SQLite, "sqlite", "file:"+env.SQLitePath+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	if env.DatabaseURL != "" {
		dialect, driver, dsn = sqlstore.Postgres, "pgx", env.DatabaseURL
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	store, err := sqlstore.New(db, sqlstore.Options{Dialect: dialect, Logger: log})
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}

	// Sessions: scs, SameSite=Lax (its default: the cookie must come back
	// with the provider's redirect), Secure over HTTPS. On PostgreSQL they
	// are shared by every instance, in a store that honours deadlines.
	sessionManager := scs.New()
	sessionManager.Lifetime = 12 * time.Hour
	sessionManager.Cookie.Name = "demo_session"
	sessionManager.Cookie.Secure = strings.HasPrefix(env.PublicURL, "https://")
	if env.DatabaseURL != "" {
		pool, err := pgxpool.New(ctx, env.DatabaseURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		if _, err := pool.Exec(ctx, demo.SessionsTable); err != nil {
			return fmt.Errorf("sessions table: %w", err)
		}
		sessions := demo.NewPGSessions(pool)
		defer sessions.StopCleanup()
		sessionManager.Store = sessions
	}
	sessions, err := middleware.NewSCS(sessionManager) // onboard's browser binding
	if err != nil {
		return err
	}

	// The providers: the real accounts when configured, else their
	// emulators on 127.0.0.1 (another site than localhost, as a real
	// provider is).
	emulators := map[string]string{}
	var cdataEmulator *cdatatest.Server
	var fivetranEmulator *fivetrantest.Server
	cdataConfig := cdata.Config{Logger: log}
	if c := env.CData; c != nil {
		cdataConfig.AccountID, cdataConfig.PrivateKeyFile, cdataConfig.BaseURL = c.AccountID, c.PrivateKeyFile, c.BaseURL
	} else {
		emu, key, err := demo.CDataEmulator()
		if err != nil {
			return err
		}
		defer emu.Close()
		emulators["cdata"], cdataEmulator = emu.URL, emu.Server
		cdataConfig.AccountID, cdataConfig.PrivateKey, cdataConfig.BaseURL = demo.EmulatorAccountID, key, emu.URL+"/api"
	}
	cdataProvider, err := cdata.New(cdataConfig)
	if err != nil {
		return err
	}
	fivetranConfig := fivetran.Config{HideSetupGuide: true, Logger: log}
	if f := env.Fivetran; f != nil {
		fivetranConfig.APIKey, fivetranConfig.APISecret, fivetranConfig.BaseURL = f.APIKey, f.APISecret, f.BaseURL
		fivetranConfig.WebhookSecret = f.WebhookSecret
	} else {
		emu, err := demo.FivetranEmulator()
		if err != nil {
			return err
		}
		defer emu.Close()
		emulators["fivetran"], fivetranEmulator = emu.URL, emu.Server
		fivetranConfig.APIKey, fivetranConfig.APISecret, fivetranConfig.BaseURL = demo.EmulatorAPIKey, demo.EmulatorAPISecret, emu.URL
		fivetranConfig.WebhookSecret = demo.EmulatorWebhookSecret
	}
	fivetranProvider, err := fivetran.New(fivetranConfig)
	if err != nil {
		return err
	}

	// onboard, mounted at /connect.
	pages := &demo.Pages{Sessions: sessionManager, CData: cdataProvider, Emulators: emulators, Users: env.Users, Log: log}
	ob, err := onboard.New(onboard.Config{
		URL:       env.PublicURL + "/connect",
		Providers: []onboard.Provider{cdataProvider, fivetranProvider},
		Store:     store,
		Sessions:  sessions,
		Owner:     pages.Owner,
		FlowTTL:   env.FlowTTL, // zero: onboard's defaults
		Timeout:   env.Timeout,
		Logger:    log,
	})
	if err != nil {
		return err
	}
	pages.Onboarder = ob

	// The routes: onboard's, and the app's own pages. Around them, the
	// session middleware, whose failures render the same error page as
	// onboard's, the standard library's cross-origin protection, and one
	// deadline for the whole request (demo.Deadline): onboard's Timeout,
	// and a little more for loading and saving the session.
	mux := http.NewServeMux()
	mux.Handle("/connect/", ob.Handler()) // start, return, popup, status, webhook
	mux.HandleFunc("GET /{$}", pages.Home)
	mux.HandleFunc("POST /login", pages.Login)
	mux.HandleFunc("POST /logout", pages.Logout)
	mux.Handle("POST /connections/delete", pages.RequireOwner(http.HandlerFunc(pages.Delete)))
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(pages.CrossOrigin))
	var handler http.Handler = demo.Deadline(env.Timeout)(
		cop.Handler(middleware.LoadAndSave(sessionManager, ob.SessionError)(mux)))
	if !env.PublicURLSet {
		// Browsers that open 127.0.0.1 are sent to localhost, the host
		// whose session cookie the providers' returns carry.
		handler = demo.SameHost(env.PublicURL, handler)
	}

	// The server, with every timeout set: a slow client cannot hold a
	// connection open.
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()

	// The Fivetran webhook, registered once its route is served: Fivetran
	// sends the URL a test event first. Registering again reuses the
	// webhook that has this URL.
	switch {
	case fivetranConfig.WebhookSecret != "" && (env.Fivetran == nil || env.PublicURLSet):
		if _, err := fivetranProvider.RegisterWebhook(ctx, env.PublicURL+"/connect/fivetran/webhook"); err != nil {
			_ = server.Close()
			return fmt.Errorf("register the Fivetran webhook: %w", err)
		}
	case env.Fivetran != nil:
		log.Warn("no Fivetran webhook: set FIVETRAN_WEBHOOK_SECRET and ONBOARD_PUBLIC_URL (an https URL Fivetran can reach); the runner's refresh still notices changes")
	}

	// The background runner: it settles flows whose browser never came
	// back, removes what they made at the providers, and refreshes the
	// stored connections' state. Run it on one or more instances.
	go ob.Run(ctx, time.Minute)

	fmt.Fprintf(out, "onboard example (net/http) listening on %s: open %s\n", listener.Addr(), env.PublicURL)
	if ready != nil {
		ready(&app{URL: env.PublicURL, Onboarder: ob, Sessions: sessionManager, Emulators: emulators,
			CDataEmulator: cdataEmulator, FivetranEmulator: fivetranEmulator})
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// A request ends by its deadline and its answer is written within
	// WriteTimeout, so wait the longer of the two (more than the 5 s
	// net/http gives a connection that has sent nothing yet); then cut
	// what is left, which only a handler that ignores its deadline can
	// leave, and stop as usual.
	shutdown, cancel := context.WithTimeout(context.Background(), max(server.WriteTimeout, env.Timeout, onboard.DefaultTimeout)+time.Second)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("requests still running at shutdown were cut", "err", err)
		return server.Close()
	}
	return nil
}
