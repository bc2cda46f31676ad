package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Server is the example app listening.
type Server struct {
	App *App
	// URL is the app's public URL.
	URL string
	srv *http.Server
}

// Close stops the server and the app.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	s.App.Close()
}

// Start listens on cfg.Addr, builds the app and serves routes(app). An
// empty cfg.PublicURL becomes http://localhost:PORT with the port
// listened on (so Addr may end in ":0").
func Start(ctx context.Context, cfg Config, log *slog.Logger, routes func(*App) http.Handler) (*Server, error) {
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://localhost:" + port(l.Addr().String())
	}
	app, err := New(ctx, cfg, log)
	if err != nil {
		l.Close()
		return nil, err
	}
	s := &Server{App: app, URL: cfg.PublicURL, srv: &http.Server{Handler: routes(app), ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// Run is an example's main: configuration from getenv, serve until ctx
// ends.
func Run(ctx context.Context, getenv func(string) string, out io.Writer, router string, routes func(*App) http.Handler) error {
	cfg := FromEnv(getenv)
	s, err := Start(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)), routes)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(out, "onboard example (%s) listening on %s: open %s\n", router, cfg.Addr, s.URL)
	<-ctx.Done()
	return nil
}

// Main runs an example until SIGINT or SIGTERM and exits non-zero on
// failure.
func Main(router string, routes func(*App) http.Handler) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, os.Getenv, os.Stdout, router, routes); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
