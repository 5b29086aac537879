package ledger

import (
	"bytes"
	"cmp"
	"slices"
)

// regPeek is what batchOrder needs of a Register command.
type regPeek struct {
	pos      int
	hash     uint64
	campaign []byte
	invitee  []byte
	click    int64 // unix ns; 0 none
}

// peekRegister reads campaign, invitee and click time of an encoded Register
// without allocating. ok is false for anything that is not a well-formed one.
func peekRegister(cmd []byte) (p regPeek, ok bool) {
	if len(cmd) < 2 || cmd[0] != wireVersion || CommandType(cmd[1]) != CmdRegister {
		return p, false
	}
	r := reader{b: cmd[2:]}
	r.raw(r.uvarint()) // id
	p.campaign = r.raw(r.uvarint())
	r.uvarint() // inviter number
	p.invitee = r.raw(r.uvarint())
	r.raw(r.uvarint()) // device
	r.raw(r.uvarint()) // ip
	p.click = r.varint()
	return p, r.err == nil
}

// batchOrder returns the order in which to apply the commands of a batch, or
// nil for the given order. Registrations of the same invitee in the same
// campaign within one batch are applied best click first, so the attribution
// model decides between them: for first_click the earliest ClickAt, for
// last_click the latest; registrations without a click come last; ties keep
// batch order. Every other command keeps its place. The model is the one the
// campaign has at the start of the batch.
func (s *state) batchOrder(cmds [][]byte) []int {
	var regs []regPeek
	for i, c := range cmds {
		if p, ok := peekRegister(c); ok {
			p.pos = i
			p.hash = hashKey(p.invitee) ^ hashKey(p.campaign)*31
			regs = append(regs, p)
		}
	}
	if len(regs) < 2 {
		return nil
	}
	slices.SortFunc(regs, func(a, b regPeek) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), bytes.Compare(a.campaign, b.campaign), bytes.Compare(a.invitee, b.invitee), cmp.Compare(a.pos, b.pos))
	})
	var order []int
	for i := 0; i < len(regs); {
		j := i + 1
		for j < len(regs) && bytes.Equal(regs[j].campaign, regs[i].campaign) && bytes.Equal(regs[j].invitee, regs[i].invitee) {
			j++
		}
		if j-i > 1 {
			order = s.orderGroup(order, regs[i:j], len(cmds))
		}
		i = j
	}
	return order
}

// orderGroup reorders one group (sorted by position) inside order.
func (s *state) orderGroup(order []int, group []regPeek, n int) []int {
	n16, ok := s.campIdx[string(group[0].campaign)]
	if !ok {
		return order
	}
	first := s.camps[n16-1].c.AttributionModel == ModelFirstClick
	slots := make([]int, len(group))
	for k, g := range group {
		slots[k] = g.pos
	}
	best := slices.Clone(group)
	slices.SortStableFunc(best, func(a, b regPeek) int {
		switch {
		case a.click == 0 && b.click == 0:
			return 0
		case a.click == 0:
			return 1
		case b.click == 0:
			return -1
		case first:
			return cmp.Compare(a.click, b.click)
		default:
			return cmp.Compare(b.click, a.click)
		}
	})
	if order == nil {
		order = make([]int, n)
		for i := range order {
			order[i] = i
		}
	}
	for k, slot := range slots {
		order[slot] = best[k].pos
	}
	return order
}
