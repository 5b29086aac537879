//go:build invariants

package ledger

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestInvariantCheckFires: the invariants build panics on a broken budget.
func TestInvariantCheckFires(t *testing.T) {
	l := newTestLedger(t)
	l.put(baseCampaign("c"))
	cs := l.Ledger.st.camps[0]
	cs.st.spent = cs.c.Budget.Value + 1 // what a bug in the rules would do
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "I1") {
			t.Fatalf("recovered %v, want an I1 panic", r)
		}
	}()
	l.index++
	l.ApplyBatch(l.index, t0, [][]byte{EncodeNoop()})
}

// TestInvariantCheckAfterLoweredLimits: a replacement may lower the budget
// and the per-inviter cap below what is used (no panic), but that use must
// not grow afterwards.
func TestInvariantCheckAfterLoweredLimits(t *testing.T) {
	setup := func(t *testing.T) (*testLedger, *campState) {
		l := newTestLedger(t)
		c := baseCampaign("c")
		l.put(c)
		l.link(t0, "c", "u1")
		for i := range 3 {
			l.reg(t0.Add(time.Minute), Register{Campaign: "c", InviterNumber: 1, Invitee: fmt.Sprint("v", i)})
		}
		c.Budget = &Budget{Value: 25}
		c.PerInviterCap = 2
		l.put(c) // would panic here without the allowance
		return l, l.Ledger.st.camps[0]
	}
	tests := []struct {
		name, want string
		bug        func(cs *campState)
	}{
		{"spent grows", "I1", func(cs *campState) { cs.st.spent++ }},
		{"rewarded grows", "I2", func(cs *campState) { cs.inviters[0].rewarded++ }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, cs := setup(t)
			l.apply(t0.Add(time.Hour), EncodeNoop()) // fine as it is
			tc.bug(cs)
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(r.(string), tc.want) {
					t.Fatalf("recovered %v, want an %s panic", r, tc.want)
				}
			}()
			l.apply(t0.Add(time.Hour), EncodeNoop())
		})
	}
	// An overspend made before a lowering is not excused by it.
	t.Run("overspent before lowering", func(t *testing.T) {
		l, cs := setup(t)
		c := *cs.c
		c.Budget = &Budget{Value: 30}
		cs.st.spent = 200 // above both the old allowance (60) and the new budget
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "I1") {
				t.Fatalf("recovered %v, want an I1 panic", r)
			}
		}()
		l.put(c)
	})
}
