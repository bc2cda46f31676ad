package onboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// kind is one error kind: the sentinel value itself carries the HTTP
// status and the message that is safe to show to the end user, so no
// table elsewhere has to agree with it.
type kind struct {
	text    string // the error's text, for logs
	status  int
	message string // safe to show
}

func (k *kind) Error() string { return k.text }

// code is the kind's name in metrics: its text, words joined by '_'.
func (k *kind) code() string {
	return strings.ReplaceAll(strings.TrimPrefix(k.text, "onboard: "), " ", "_")
}

func newKind(status int, text, message string) error {
	return &kind{text: "onboard: " + text, status: status, message: message}
}

// kindCode returns the code of err's kind, "unknown" for none.
func kindCode(err error) string {
	var k *kind
	if errors.As(err, &k) {
		return k.code()
	}
	return "unknown"
}

// Sentinel errors. Every refusal and failure of the handlers wraps exactly
// one of them (test with errors.Is); [StatusCode] and [Message] read the
// status and the safe message the kind carries.
var (
	// ErrConfig is an invalid Config (from New) or a setup mistake found
	// while serving.
	ErrConfig = newKind(http.StatusInternalServerError, "invalid configuration",
		"Connecting data sources is not set up correctly on this site.")
	// ErrNotSignedIn is a request with nobody signed in.
	ErrNotSignedIn = newKind(http.StatusUnauthorized, "nobody is signed in",
		"Please sign in, then start again.")
	// ErrSessionEnding is a start whose browser's session ends too soon
	// for a flow to complete (see Config.FlowTTL): its user signs in again.
	ErrSessionEnding = newKind(http.StatusUnauthorized, "session ends too soon",
		"Your session ends in a few minutes, too soon to connect a data source. Sign out, sign in again, then start again.")
	// ErrUnknownProvider is a provider name that is not configured.
	ErrUnknownProvider = newKind(http.StatusNotFound, "unknown provider",
		"This data provider is not available.")
	// ErrBadRequest is a malformed, oversized or hostile request.
	ErrBadRequest = newKind(http.StatusBadRequest, "malformed request",
		"The request was malformed.")
	// ErrBadReturnTo is a return_to that is not a same-origin path.
	ErrBadReturnTo = newKind(http.StatusBadRequest, "return_to is not a same-origin path",
		"The return address must be a page of this site.")
	// ErrNoFlow is a request that names no flow.
	ErrNoFlow = newKind(http.StatusBadRequest, "no flow id",
		"This link does not name a connection setup.")
	// ErrBadFlowID is a flow id that cannot be one onboard made.
	ErrBadFlowID = newKind(http.StatusBadRequest, "malformed flow id",
		"This link is damaged: its connection setup id is not valid. Please start again.")
	// ErrUnknownFlow is a well-formed flow id that the store does not hold.
	ErrUnknownFlow = newKind(http.StatusNotFound, "unknown flow",
		"This connection setup is unknown or was cleaned up. Please start again.")
	// ErrFlowUsed is a flow that is already completed.
	ErrFlowUsed = newKind(http.StatusConflict, "flow already completed",
		"This connection setup was already completed.")
	// ErrFlowPending is a flow whose outcome is not known yet.
	ErrFlowPending = newKind(http.StatusConflict, "flow not completed yet",
		"This connection setup is not finished yet.")
	// ErrFlowExpired is a flow past its lifetime.
	ErrFlowExpired = newKind(http.StatusGone, "flow expired",
		"This connection setup took too long and expired. Please start again.")
	// ErrOtherBrowser is a flow returned to, or asked about, in a browser
	// that did not start it.
	ErrOtherBrowser = newKind(http.StatusForbidden, "flow was started in another browser",
		"This connection setup was started in another browser, so it cannot go on here. Please start again in this browser.")
	// ErrOwnerMismatch is a flow of another owner than the one signed in.
	ErrOwnerMismatch = newKind(http.StatusForbidden, "flow belongs to another owner",
		"This connection setup belongs to another user. Sign in as that user, or start again.")
	// ErrForged is a return the provider's API does not confirm.
	ErrForged = newKind(http.StatusForbidden, "return does not match the provider's records",
		"The data provider does not confirm this connection.")
	// ErrProvider is a provider that cannot be reached, times out, is
	// rate-limited past the deadline, answers junk, or refuses this app's
	// own credentials (401, 403): a fault the user cannot fix.
	ErrProvider = newKind(http.StatusBadGateway, "provider unavailable",
		"The data provider did not answer as expected. Please try again in a moment; if it keeps failing, contact this site's support.")
	// ErrRefused is a provider refusing the request itself (a 4xx other
	// than authentication and rate limiting): an unknown data source, a
	// name already in use.
	ErrRefused = newKind(http.StatusUnprocessableEntity, "provider refused the request",
		"The data provider did not accept this setup, for example because the data source is not available or the name is already in use. Check what you chose and start again.")
	// ErrStore is a failing flow or connection store.
	ErrStore = newKind(http.StatusServiceUnavailable, "store unavailable",
		"Your connection setup could not be saved or read right now. Please try again in a moment.")
	// ErrSession is a failing session store.
	ErrSession = newKind(http.StatusServiceUnavailable, "session store unavailable",
		"Your session could not be loaded or saved right now. Please try again in a moment.")
	// ErrNoSession is a request that reached onboard without the session
	// middleware around it: a setup mistake.
	ErrNoSession = newKind(http.StatusInternalServerError, "no session in the request context",
		"Sessions are not set up on this site.")
	// ErrTooManyFlows is a start refused by admission: the tenant (or the
	// store as a whole) has too many setups in progress.
	ErrTooManyFlows = newKind(http.StatusTooManyRequests, "too many pending flows",
		"Too many connection setups are in progress for your organization. Please finish one, or try again later.")
	// ErrOwnerLimit is what a Store answers when the owner already has
	// Limits.PerOwner pending flows. The handlers never show it: they
	// settle the owner's oldest pending flow as abandoned and admit the
	// new one.
	ErrOwnerLimit = newKind(http.StatusTooManyRequests, "owner has too many pending flows",
		"Too many connection setups are in progress. Please finish one, or try again later.")
	// ErrUnknownConnection is a connection the tenant does not have.
	ErrUnknownConnection = newKind(http.StatusNotFound, "unknown connection",
		"That connection does not exist.")
	// ErrCrossOrigin is a state-changing request from another site.
	ErrCrossOrigin = newKind(http.StatusForbidden, "cross-origin request refused",
		"This request came from another site and was refused. Please start again from this site.")
	// ErrWebhook is a webhook delivery with a missing or wrong signature.
	ErrWebhook = newKind(http.StatusUnauthorized, "webhook refused", "Webhook refused.")
	// ErrRevoked is a reconnect of a connection that was quarantined
	// (Revoked): it may hold what someone else entered, so it is never
	// used again; the user deletes it and connects again.
	ErrRevoked = newKind(http.StatusConflict, "connection revoked",
		"This connection was stopped because a setup of it came back in a browser that did not start it. Delete it, and connect again from your own browser.")
	// ErrNoRoute is a request that reached the handler but matches none
	// of its routes (or not with its method).
	ErrNoRoute = newKind(http.StatusNotFound, "no such route", "This page does not exist.")
)

// StatusCode returns the HTTP status of err's kind: 4xx for refusals, 5xx
// for failures of the provider, the stores or the setup, and 500 for an
// error of no kind.
func StatusCode(err error) int {
	var k *kind
	if errors.As(err, &k) {
		return k.status
	}
	return http.StatusInternalServerError
}

// Message returns a message about err that is safe to show to the end
// user: the message of its kind, never internal error text.
func Message(err error) string {
	var k *kind
	if errors.As(err, &k) {
		return k.message
	}
	return "Something went wrong. Please try again in a moment."
}

// classify is the one place that gives an error its kind: err itself when
// it already wraps a kind, or err wrapped in fallback, keeping the cause
// chain either way. A nil err stays nil.
func classify(err, fallback error) error {
	var k *kind
	if err == nil || errors.As(err, &k) {
		return err
	}
	return fmt.Errorf("%w: %w", fallback, err)
}

// retryable reports whether a user who got err may simply try the same
// thing again later: the failure was the provider's or a store's, or the
// deadline's, not a refusal.
func retryable(err error) bool {
	return errors.Is(err, ErrProvider) || errors.Is(err, ErrStore) || errors.Is(err, ErrSession) ||
		errors.Is(err, context.DeadlineExceeded)
}
