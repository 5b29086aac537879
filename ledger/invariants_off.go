//go:build !invariants

package ledger

// checkInvariants is compiled out without the invariants build tag.
func (s *state) checkInvariants() {}
