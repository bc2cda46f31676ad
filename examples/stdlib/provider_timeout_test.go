package main

import (
	"database/sql"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard/onboardtest"
	"github.com/onboardkit/onboard/providers/emulate"
)

// TestProviderTimeoutIsNotASessionOutage: when the provider stops
// answering during a browser's first start, the page says the provider did
// not answer (502), not that the session store failed: the request's
// deadline leaves time past onboard's Timeout to save the session.
func TestProviderTimeoutIsNotASessionOutage(t *testing.T) {
	dsn := os.Getenv("ONBOARD_TEST_POSTGRES_URL")
	if dsn == "" {
		t.Skip("ONBOARD_TEST_POSTGRES_URL not set")
	}
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	_, err = db.Exec("CREATE SCHEMA IF NOT EXISTS zz_demo_timeout")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = db.Exec("DROP SCHEMA zz_demo_timeout CASCADE"); db.Close() }) // runs after the app stopped
	a := start(t, map[string]string{"DATABASE_URL": dsn + "&search_path=zz_demo_timeout", "ONBOARD_TIMEOUT": "1s"})
	b := onboardtest.NewBrowser(t)
	require.Equal(t, http.StatusSeeOther, b.PostForm(a.URL+"/login", url.Values{"user": {"alice"}}).Code)
	hang := make([]emulate.Fault, 8)
	for i := range hang {
		hang[i] = emulate.Fault{Hang: true}
	}
	a.FivetranEmulator.API.Fail(hang...)
	t0 := time.Now()
	res := b.PostForm(a.URL+"/connect/fivetran/start", url.Values{"source": {"Salesforce"}})
	a.FivetranEmulator.API.Clear()
	t.Logf("answered %d after %v", res.Code, time.Since(t0))
	require.Equal(t, http.StatusBadGateway, res.Code, res.Body)
	require.Contains(t, res.Body, "did not answer as expected")
}
