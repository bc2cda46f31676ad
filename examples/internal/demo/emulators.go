package demo

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/onboardkit/onboard/providers/cdata/cdatatest"
	"github.com/onboardkit/onboard/providers/fivetran/fivetrantest"
)

// Emulator credentials: the emulators accept these, and the examples'
// providers use them when no real account is configured.
const (
	EmulatorAccountID     = "demo-oem"
	EmulatorAPIKey        = "demo-key"
	EmulatorAPISecret     = "demo-secret"
	EmulatorWebhookSecret = "demo-webhook-secret"
)

// Emulator is a provider emulator served on 127.0.0.1: another site than
// the app's "localhost", as a real provider is. Server is the emulator
// itself, for tests that inject faults through its API field or compare
// what it holds with what the app stored.
type Emulator[S http.Handler] struct {
	URL    string
	Server S
	Close  func()
}

func serve[S http.Handler](s S) (Emulator[S], error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Emulator[S]{}, err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	go func() { _ = srv.Serve(l) }()
	return Emulator[S]{URL: "http://" + l.Addr().String(), Server: s, Close: func() { _ = srv.Close() }}, nil
}

// CDataEmulator runs the CData emulator and returns it with the private
// key its partner account accepts.
func CDataEmulator() (Emulator[*cdatatest.Server], *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return Emulator[*cdatatest.Server]{}, nil, err
	}
	e, err := serve(cdatatest.New(cdatatest.Options{AccountID: EmulatorAccountID, PublicKey: &key.PublicKey}))
	if err != nil {
		return e, nil, fmt.Errorf("cdata emulator: %w", err)
	}
	return e, key, nil
}

// FivetranEmulator runs the Fivetran emulator.
func FivetranEmulator() (Emulator[*fivetrantest.Server], error) {
	e, err := serve(fivetrantest.New(fivetrantest.Options{APIKey: EmulatorAPIKey, APISecret: EmulatorAPISecret}))
	if err != nil {
		return e, fmt.Errorf("fivetran emulator: %w", err)
	}
	return e, nil
}
