package sqlstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/onboardkit/onboard"
	"github.com/onboardkit/onboard/store/sqlstore"
)

// TestCompleteFlowAnswerUnderRace: a completion whose snapshot saw the
// flow pending waits on the connection's row lock while another
// transaction settles the flow and revokes the connection. The flow is
// done when the completion reads the connection: it answers ErrFlowUsed,
// as memstore and SQLite do, from the flow as that transaction left it.
func TestCompleteFlowAnswerUnderRace(t *testing.T) {
	db := openPostgres(t)
	p := "zz_race_" + strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36) + "_"
	t.Cleanup(func() {
		for _, st := range []string{"DROP FUNCTION IF EXISTS " + p + "create_flow", "DROP TABLE IF EXISTS " + p + "flows",
			"DROP TABLE IF EXISTS " + p + "tenant_flows", "DROP TABLE IF EXISTS " + p + "connections",
			"DROP TABLE IF EXISTS " + p + "schema_migrations"} {
			_, _ = db.Exec(st)
		}
	})
	s := storeAt(t, db, sqlstore.Postgres, p)
	ctx := context.Background()
	now := time.Now().Truncate(time.Microsecond)
	o := onboard.Owner{Tenant: "acme", User: "alice"}
	conn := onboard.Connection{Provider: "fake", ID: "c1", Owner: o, State: onboard.Connected, CreatedAt: now, UpdatedAt: now}
	require.NoError(t, s.SaveConnection(ctx, conn))
	f := onboard.Flow{ID: "f1", Owner: o, Provider: "fake", ConnectionID: "c1", Reconnect: true, Browser: "b",
		State: onboard.FlowPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	require.NoError(t, s.CreateFlow(ctx, f, onboard.Limits{}))

	tx, err := db.Begin()
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback() }) // before the tables are dropped (cleanups run last first)
	_, err = tx.Exec("UPDATE " + p + "connections SET state = 'revoked' WHERE id = 'c1'")
	require.NoError(t, err)
	_, err = tx.Exec("UPDATE " + p + "flows SET state = 'done', outcome = 'revoked' WHERE id = 'f1'")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		c := conn
		c.FlowID, c.UpdatedAt = "f1", now.Add(time.Minute)
		done <- s.CompleteFlow(ctx, "f1", c, false)
	}()
	require.Eventually(t, func() bool { // the completion waits on the connection's lock
		var n int
		_ = db.QueryRow("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"+
			" AND query LIKE 'WITH conn AS%' AND query LIKE '%'||$1||'connections%'", p).Scan(&n)
		return n >= 1
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, tx.Commit())
	err = <-done
	got, _, _ := s.Flow(ctx, "f1")
	require.Equal(t, onboard.FlowDone, got.State)
	require.ErrorIs(t, err, onboard.ErrFlowUsed, "the flow was done; got %v", err)
}
