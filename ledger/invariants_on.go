//go:build invariants

package ledger

import "fmt"

// invCheck is what a replacement that lowered a campaign's budget or
// per-inviter cap below what was already used left allowed: nothing is taken
// back, so the old use stays valid, but it must not grow.
type invCheck struct {
	spent    int64            // spent allowed above the budget; 0: none
	rewarded map[uint32]int64 // inviter position -> rewarded allowed above the cap
}

// allowUse records, after the campaign's terms changed from prev (nil: a
// restored snapshot, whose use is taken as it is), the use above the new
// limits that the previous terms allowed.
func (cs *campState) allowUse(prev *Campaign) {
	c, old := cs.c, cs.chk
	cs.chk = invCheck{}
	if b := c.Budget; b != nil && cs.st.spent > b.Value {
		allowed := cs.st.spent
		if prev != nil && prev.Budget != nil {
			allowed = min(allowed, max(prev.Budget.Value, old.spent))
		}
		cs.chk.spent = allowed
	}
	if limit := c.PerInviterCap; limit > 0 {
		for i := range cs.inviters {
			got := int64(cs.inviters[i].rewarded)
			if got <= limit {
				continue
			}
			allowed := got
			if prev != nil && prev.PerInviterCap > 0 {
				allowed = min(allowed, max(prev.PerInviterCap, old.rewarded[uint32(i)]))
			}
			if cs.chk.rewarded == nil {
				cs.chk.rewarded = map[uint32]int64{}
			}
			cs.chk.rewarded[uint32(i)] = allowed
		}
	}
}

// checkInvariants panics when the state breaks I1 (granted value within the
// budget) or I2 (rewarded invites per inviter within the cap). A replacement
// may lower a limit below what is already used (see Campaign): that use, as
// far as the earlier terms allowed it, stays valid but may not grow. It runs
// after every batch in builds with the invariants tag (`make test`); a panic
// here is a bug in the rules, never bad input.
func (s *state) checkInvariants() {
	for _, cs := range s.camps {
		if cs == nil {
			continue
		}
		if b := cs.c.Budget; b != nil && cs.st.spent > max(b.Value, cs.chk.spent) {
			panic(fmt.Sprintf("ledger: invariant I1 broken: campaign %q spent %d of a budget of %d (allowed %d)", cs.c.ID, cs.st.spent, b.Value, max(b.Value, cs.chk.spent)))
		}
		if limit := cs.c.PerInviterCap; limit > 0 {
			for i := range cs.inviters {
				if got := int64(cs.inviters[i].rewarded); got > limit && got > cs.chk.rewarded[uint32(i)] {
					panic(fmt.Sprintf("ledger: invariant I2 broken: campaign %q inviter %d rewarded %d times, cap %d (allowed %d)", cs.c.ID, i+1, got, limit, max(limit, cs.chk.rewarded[uint32(i)])))
				}
			}
		}
	}
}
