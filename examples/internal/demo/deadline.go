package demo

import (
	"context"
	"net/http"
	"time"

	"github.com/onboardkit/onboard"
)

// SessionTime is what a request's deadline leaves, past onboard's Timeout,
// for loading and saving its session: 2 s for the save, and 2 s for a
// return whose store answer was lost to read its flow again.
const SessionTime = 4 * time.Second

// Deadline returns middleware that gives every request one deadline:
// onboard's Timeout (its default for 0), within which every provider and
// store call of a start or a return fits, and SessionTime more, for the
// session's load and save around it. A database that stops answering costs
// a user at most that, then the error page; a provider that does not answer
// gets its own error page, and the session (with the browser's key made by
// a first start) is still saved.
func Deadline(timeout time.Duration) func(http.Handler) http.Handler {
	if timeout == 0 {
		timeout = onboard.DefaultTimeout
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), timeout+SessionTime)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
