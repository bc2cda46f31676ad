// Package store holds the implementations of [onboard.Store]:
// memstore (in memory, the default for one instance and for tests),
// sqlstore (database/sql on PostgreSQL or SQLite, for many instances) and
// storetest, the conformance suite every Store must pass.
package store
