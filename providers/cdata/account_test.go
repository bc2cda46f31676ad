package cdata_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/internal/testutil"
	"github.com/onboardkit/onboard/providers/cdata"
)

// TestFirstStartAccountAnswers: a tenant's first start looks its
// sub-account up and creates it. CData documents only the lookup's 200,
// and the create's answer in two shapes (accountId, or id on its older
// page): an unknown account answered 404 or another 4xx, and either shape
// of the create, make the first start work.
func TestFirstStartAccountAnswers(t *testing.T) {
	for _, tt := range []struct {
		name    string
		lookup  int
		created string
	}{
		{"404, accountId", http.StatusNotFound, `{"accountId":"a1","externalId":"","createdTime":"2024-07-10T19:10:52.139Z"}`},
		{"400, accountId", http.StatusBadRequest, `{"accountId":"a1","externalId":"","createdTime":"2024-07-10T19:10:52.139Z"}`},
		{"404, id", http.StatusNotFound, `{"id":"a1","externalId":null,"created":"2024-07-10T19:10:52.139Z"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var subs []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				switch {
				case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/poweredby/account/"):
					w.WriteHeader(tt.lookup)
					io.WriteString(w, `{"error":{"code":"AccountNotFound","message":"Account not found"}}`)
				case r.URL.Path == "/poweredby/account/create":
					io.WriteString(w, tt.created)
				case r.URL.Path == "/poweredby/connection/create":
					tok, _, _ := strings.Cut(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), ".")
					subs = append(subs, tok)
					json.NewEncoder(w).Encode(map[string]string{"redirectURL": "https://cloud.cdata.com/oem/user/connections/edit?token=x"})
				default:
					w.WriteHeader(http.StatusNotFound)
					io.WriteString(w, `{"error":{"code":"NotFound","message":"no such call"}}`)
				}
			}))
			t.Cleanup(srv.Close)
			p, err := cdata.New(cdata.Config{BaseURL: srv.URL, AccountID: "oem", PrivateKey: testutil.RSAKey(), Retries: -1})
			require.NoError(t, err)
			now := time.Now()
			f := onboard.Flow{ID: "flow1", Owner: onboard.Owner{Tenant: "acme", User: "alice"}, Source: "Salesforce",
				State: onboard.FlowPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			_, err = p.Begin(t.Context(), f, "https://app.example.com/connect/cdata/return/flow1")
			require.NoError(t, err)
			sub, err := p.SubAccount(t.Context(), "acme")
			require.NoError(t, err)
			require.Equal(t, "a1", sub)
		})
	}
}
