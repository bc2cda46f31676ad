// Package providers holds one package per data provider: cdata (CData
// Connect AI Embed), fivetran (Fivetran Connect Card) and fake (an
// in-process provider for tests). Each real provider has an emulator of
// its API and hosted page in a ...test subpackage, for offline development
// and tests.
package providers
