package demo

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/alexedwards/scs/pgxstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SessionsTable creates the table scs's pgxstore keeps sessions in. Its
// statements run in one implicit transaction (pgx sends a statement
// without arguments as a simple query), which first takes an advisory
// lock: instances starting at once on a fresh database take turns, where
// two CREATE TABLE IF NOT EXISTS at once would fail one of them.
const SessionsTable = `SELECT pg_advisory_xact_lock(hashtext('onboard example: sessions table'));
CREATE TABLE IF NOT EXISTS sessions (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_expiry_idx ON sessions (expiry)`

// PGSessions is scs's pgxstore with the context-taking methods scs uses
// when a store has them: pgxstore itself runs every query with
// context.Background(), so a database that stops answering would hold a
// request for as long as TCP takes to give up. With these, loading and
// saving a session end with the request's context, and the app answers
// with its error page instead. Expired sessions are deleted every five
// minutes, each time under a deadline, until StopCleanup.
type PGSessions struct {
	*pgxstore.PostgresStore
	pool *pgxpool.Pool
	stop context.CancelFunc
	done chan struct{}
}

// NewPGSessions returns the session store over pool (the table is
// SessionsTable), and starts its cleanup of expired sessions.
func NewPGSessions(pool *pgxpool.Pool) *PGSessions {
	// pgxstore's own cleanup is not used: it deletes without a deadline,
	// and its StopCleanup reads the channel its goroutine sets without
	// synchronization (a data race), blocking forever while a stalled
	// delete holds that goroutine.
	ctx, stop := context.WithCancel(context.Background())
	s := &PGSessions{PostgresStore: pgxstore.NewWithCleanupInterval(pool, 0), pool: pool, stop: stop,
		done: make(chan struct{})}
	go s.cleanup(ctx, 5*time.Minute)
	return s
}

func (s *PGSessions) cleanup(ctx context.Context, every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		if _, err := s.pool.Exec(dctx, "DELETE FROM sessions WHERE expiry < current_timestamp"); err != nil && ctx.Err() == nil {
			slog.WarnContext(ctx, "delete expired sessions; trying again later", "err", err)
		}
		cancel()
	}
}

// StopCleanup stops the cleanup of expired sessions, a delete under way
// included, and waits for it to end.
func (s *PGSessions) StopCleanup() {
	s.stop()
	<-s.done
}

// FindCtx returns the data of an unexpired session.
func (s *PGSessions) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	var b []byte
	err := s.pool.QueryRow(ctx, "SELECT data FROM sessions WHERE token = $1 AND current_timestamp < expiry", token).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return b, err == nil, err
}

// CommitCtx saves a session.
func (s *PGSessions) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	_, err := s.pool.Exec(ctx, "INSERT INTO sessions (token, data, expiry) VALUES ($1, $2, $3) "+
		"ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry", token, b, expiry)
	return err
}

// DeleteCtx deletes a session.
func (s *PGSessions) DeleteCtx(ctx context.Context, token string) error {
	_, err := s.pool.Exec(ctx, "DELETE FROM sessions WHERE token = $1", token)
	return err
}
