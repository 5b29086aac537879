//go:build !invariants

package bots

// invariants is set in builds with the invariants tag: Match then checks
// every verdict, cached or not, against the reference automaton.
const invariants = false
