//go:build invariants

package ledger

import "fmt"

// checkInvariants panics when the state breaks I1 (granted value within the
// budget) or I2 (rewarded invites per inviter within the cap). It runs after
// every batch in builds with the invariants tag (`make test`); a panic here
// is a bug in the rules, never bad input.
func (s *state) checkInvariants() {
	for _, cs := range s.camps {
		if cs == nil {
			continue
		}
		if b := cs.c.Budget; b != nil && cs.st.spent > b.Value {
			panic(fmt.Sprintf("ledger: invariant I1 broken: campaign %q spent %d of a budget of %d", cs.c.ID, cs.st.spent, b.Value))
		}
		if limit := cs.c.PerInviterCap; limit > 0 {
			for i := range cs.inviters {
				if got := int64(cs.inviters[i].rewarded); got > limit {
					panic(fmt.Sprintf("ledger: invariant I2 broken: campaign %q inviter %d rewarded %d times, cap %d", cs.c.ID, i+1, got, limit))
				}
			}
		}
	}
}
