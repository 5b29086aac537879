//go:build !invariants

package ledger

// invCheck is empty without the invariants build tag.
//
//lint:ignore U1000 the invariants build's version carries the check's state
type invCheck struct{}

// allowUse is compiled out without the invariants build tag.
func (cs *campState) allowUse(*Campaign) {}

// checkInvariants is compiled out without the invariants build tag.
func (s *state) checkInvariants() {}
