package cdata_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/providers/emulate"
)

// TestGateway404IsNotGone: a 404 that is not CData's own error (an empty
// body, a gateway's page, JSON of another shape) says nothing of CData's
// records: a delete does not report success while CData still holds the
// connection (a quarantine would leave a victim's credentials there).
func TestGateway404IsNotGone(t *testing.T) {
	ctx := context.Background()
	for _, body := range []string{" ", "<html><h1>404 Not Found</h1></html>", `{"message":"Not Found"}`, `{"error":{"message":"Not Found"}}`} {
		e := newCEnv(t, opts{})
		b := e.app.Browser("alice", "acme")
		c := e.connect(b, "acme", "source=Salesforce")
		e.emu.API.Fail(emulate.Fault{Status: http.StatusNotFound, Body: body})
		require.Error(t, e.p.Delete(ctx, c), "a 404 with %q was taken for deleted", body)
		require.Len(t, e.emu.AllConnections(), 1, "still held at CData")
	}
}
