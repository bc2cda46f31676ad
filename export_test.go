package onboard

// ResultURL exposes resultURL to the tests.
var ResultURL = resultURL

// Classify exposes classify to the tests.
var Classify = classify

// ResultToken exposes resultToken to the tests.
var ResultToken = resultToken
