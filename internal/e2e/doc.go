// Package e2e holds refrouter's end-to-end tests of attribution replication: real nodes
// (in-process local clusters and separate `refrouter serve` processes) replicating clicks,
// links, registrations, decisions and grants into a real PostgreSQL started by
// internal/pgtest, under node crashes (SIGKILL) and database outages. The tests check
// invariant I4: every acknowledged registration reaches the ledger and the database
// exactly once, and the funnel of attribution/report agrees with what the API acknowledged.
//
// The package has no non-test code besides this comment.
package e2e
