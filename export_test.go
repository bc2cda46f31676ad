package onboard

// ResultURL exposes resultURL to the tests.
var ResultURL = resultURL
