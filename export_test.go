package onboard

import "net/http"

// ResultURL exposes resultURL to the tests.
var ResultURL = resultURL

// Classify exposes classify to the tests.
var Classify = classify

// ResultToken exposes resultToken to the tests.
var ResultToken = resultToken

// RetryLink exposes retryLink to the tests.
func (o *Onboarder) RetryLink(r *http.Request, err error) (href, text string) {
	return o.retryLink(r, nil, err)
}
