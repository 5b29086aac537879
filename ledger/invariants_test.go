//go:build invariants

package ledger

import (
	"strings"
	"testing"
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
