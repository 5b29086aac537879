package localcluster_test

import (
	"fmt"
	"hash/fnv"
	"maps"
	"sort"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// This file holds the sequential specification of one campaign's
// registrations, as the ledger's package doc states it for a campaign with
// flat rewards, a value budget, a per-inviter cap and the fraud checks off,
// and the porcupine model built on it.
//
// Each registration request takes effect at one point between its call and
// its decision. At that point, if the invitee is not yet attributed, the
// request is decided from the campaign state: capped "inviter_cap" when its
// inviter already has Cap rewarded invites, else capped "budget" when the two
// grants do not fit, else rewarded with both grants; the invitee is then
// attributed to this registration. If the invitee is already attributed, the
// request is either a new registration decided "duplicate" (another id), or
// the same registration answered again (the same id and decision): the API
// returns the stored decision for the same (campaign, invitee).

// spec is a campaign's parameters as the model sees them.
type spec struct {
	Budget       int64
	Cap          int
	InviterValue int64
	InviteeValue int64
	Inviters     []string // index = regInput.Inviter
}

// regInput is one registration request: who invites whom, sent to which node.
type regInput struct {
	Invitee string
	Inviter int
	Node    int
}

// regOutput is what the client learnt about the registration: the decision
// it was answered (200) or, for a 202, the decision fetched afterwards.
// Unknown: no answer (the node stopped, a network error): the registration
// may or may not have taken effect.
type regOutput struct {
	Unknown      bool
	ID           string
	Status       string
	Reason       string
	Inviter      string
	InviterValue int64
	InviteeValue int64
	BadGrants    string // non-empty: the grants were malformed (what was wrong)
}

func (o regOutput) String() string {
	if o.Unknown {
		return "unknown"
	}
	s := fmt.Sprintf("%s %s", o.ID, o.Status)
	if o.Reason != "" {
		s += "/" + o.Reason
	}
	if o.InviterValue != 0 || o.InviteeValue != 0 {
		s += fmt.Sprintf(" grants %d+%d", o.InviterValue, o.InviteeValue)
	}
	if o.BadGrants != "" {
		s += " BAD GRANTS: " + o.BadGrants
	}
	return s
}

// winner is the registration that attributed an invitee. ID "" stands for a
// registration whose answer was lost (an unknown outcome): the first answer
// that repeats its decision names it.
type winner struct {
	ID, Status, Reason, Inviter string
	InviterValue, InviteeValue  int64
}

// campaignState is the model's state. It is never modified once built.
type campaignState struct {
	Spent    int64
	Rewarded []int             // per inviter index
	Winners  map[string]winner // invitee → the registration that attributed it
}

func (s *campaignState) with(invitee string, w winner) *campaignState {
	n := &campaignState{Spent: s.Spent, Rewarded: append([]int(nil), s.Rewarded...), Winners: maps.Clone(s.Winners)}
	n.Winners[invitee] = w
	return n
}

// decide returns the decision the spec gives to a new registration of an
// unattributed invitee in state s.
func (sp spec) decide(s *campaignState, in regInput) winner {
	w := winner{Inviter: sp.Inviters[in.Inviter]}
	switch {
	case s.Rewarded[in.Inviter] >= sp.Cap:
		w.Status, w.Reason = "capped", "inviter_cap"
	case s.Spent+sp.InviterValue+sp.InviteeValue > sp.Budget:
		w.Status, w.Reason = "capped", "budget"
	default:
		w.Status, w.InviterValue, w.InviteeValue = "rewarded", sp.InviterValue, sp.InviteeValue
	}
	return w
}

// apply records the decision w of a new registration of in's invitee.
func (sp spec) apply(s *campaignState, in regInput, w winner) *campaignState {
	n := s.with(in.Invitee, w)
	if w.Status == "rewarded" {
		n.Spent += w.InviterValue + w.InviteeValue
		n.Rewarded[in.Inviter]++
	}
	return n
}

func sameDecision(w winner, o regOutput) bool {
	return w.Status == o.Status && w.Reason == o.Reason && w.Inviter == o.Inviter &&
		w.InviterValue == o.InviterValue && w.InviteeValue == o.InviteeValue
}

// step returns every state the spec allows after the operation (none: the
// operation is illegal in s).
func (sp spec) step(s *campaignState, in regInput, out regOutput) []*campaignState {
	if out.BadGrants != "" {
		return nil
	}
	prev, attributed := s.Winners[in.Invitee]
	if out.Unknown {
		// Either it never took effect, or it took effect here unseen.
		if attributed {
			return []*campaignState{s} // a duplicate changes nothing
		}
		return []*campaignState{s, sp.apply(s, in, sp.decide(s, in))}
	}
	switch out.Status {
	case "duplicate":
		if !attributed || out.ID == prev.ID || out.InviterValue != 0 || out.InviteeValue != 0 {
			return nil
		}
		return []*campaignState{s}
	case "rewarded", "capped":
		if attributed {
			// The same registration answered again.
			if !sameDecision(prev, out) {
				return nil
			}
			switch prev.ID {
			case out.ID:
				return []*campaignState{s}
			case "":
				prev.ID = out.ID
				return []*campaignState{s.with(in.Invitee, prev)}
			}
			return nil
		}
		w := sp.decide(s, in)
		if !sameDecision(w, out) {
			return nil
		}
		w.ID = out.ID
		return []*campaignState{sp.apply(s, in, w)}
	}
	return nil // pending, held, rejected: not allowed for this campaign
}

// model returns the porcupine model of the campaign.
func (sp spec) model() porcupine.Model {
	equal := func(a, b any) bool {
		x, y := a.(*campaignState), b.(*campaignState)
		if x.Spent != y.Spent || len(x.Winners) != len(y.Winners) {
			return false
		}
		for i := range x.Rewarded {
			if x.Rewarded[i] != y.Rewarded[i] {
				return false
			}
		}
		for k, v := range x.Winners {
			if y.Winners[k] != v {
				return false
			}
		}
		return true
	}
	nm := porcupine.NondeterministicModel{
		Init: func() []any {
			return []any{&campaignState{Rewarded: make([]int, len(sp.Inviters)), Winners: map[string]winner{}}}
		},
		Step: func(state, input, output any) []any {
			next := sp.step(state.(*campaignState), input.(regInput), output.(regOutput))
			out := make([]any, len(next))
			for i, n := range next {
				out[i] = n
			}
			return out
		},
		Equal: equal,
		Hash: func(state any) uint64 {
			s := state.(*campaignState)
			h := fnv.New64a()
			fmt.Fprint(h, s.Spent, s.Rewarded, len(s.Winners))
			return h.Sum64()
		},
		DescribeOperation: func(input, output any) string {
			in := input.(regInput)
			return fmt.Sprintf("register(%s by %s on node %d) → %v", in.Invitee, sp.Inviters[in.Inviter], in.Node, output.(regOutput))
		},
		DescribeState: func(state any) string {
			s := state.(*campaignState)
			ks := make([]string, 0, len(s.Winners))
			for k, w := range s.Winners {
				ks = append(ks, k+"="+w.Status)
			}
			sort.Strings(ks)
			return fmt.Sprintf("spent %d, rewarded %v, attributed [%s]", s.Spent, s.Rewarded, strings.Join(ks, " "))
		},
	}
	return nm.ToModel()
}

// TestModelRejectsIllegalHistories feeds the checker hand-made histories: it
// must accept a legal concurrent one and reject each violation of the rules.
func TestModelRejectsIllegalHistories(t *testing.T) {
	sp := spec{Budget: 12, Cap: 2, InviterValue: 3, InviteeValue: 2, Inviters: []string{"alice", "bob"}}
	rew := func(id string, inviter int) regOutput {
		return regOutput{ID: id, Status: "rewarded", Inviter: sp.Inviters[inviter], InviterValue: 3, InviteeValue: 2}
	}
	capped := func(id, reason string, inviter int) regOutput {
		return regOutput{ID: id, Status: "capped", Reason: reason, Inviter: sp.Inviters[inviter]}
	}
	dup := func(id string) regOutput { return regOutput{ID: id, Status: "duplicate"} }
	op := func(client int, invitee string, inviter int, call, ret int64, out regOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: regInput{Invitee: invitee, Inviter: inviter}, Call: call, Output: out, Return: ret}
	}
	const never = 1 << 40
	cases := []struct {
		name  string
		legal bool
		ops   []porcupine.Operation
	}{
		{"concurrent, budget reached by whichever is last", true, []porcupine.Operation{
			op(0, "u1", 0, 0, 10, rew("r1", 0)),
			// u2 and u3 overlap: u3 (bob) got the last reward, u2 (alice) the budget cap.
			op(1, "u2", 0, 11, 30, capped("r2", "budget", 0)),
			op(2, "u3", 1, 12, 25, rew("r3", 1)),
			op(0, "u2", 1, 31, 40, dup("r4")),
			op(1, "u2", 0, 32, 41, capped("r2", "budget", 0)), // answered again
		}},
		{"unknown outcome that took effect unseen", true, []porcupine.Operation{
			op(0, "u1", 0, 0, never, regOutput{Unknown: true}),
			op(1, "u1", 1, 5, 10, dup("r2")),
			op(1, "u1", 1, 11, 20, rew("r1", 0)), // its decision seen later
		}},
		{"two rewarded for one invitee", false, []porcupine.Operation{
			op(0, "u1", 0, 0, 10, rew("r1", 0)),
			op(1, "u1", 1, 5, 15, rew("r2", 1)),
		}},
		{"duplicate before anyone attributed", false, []porcupine.Operation{
			op(0, "u1", 0, 0, 10, dup("r1")),
			op(1, "u1", 1, 11, 15, rew("r2", 1)),
		}},
		{"over budget", false, []porcupine.Operation{
			op(0, "u1", 0, 0, 10, rew("r1", 0)),
			op(1, "u2", 1, 0, 10, rew("r2", 1)),
			op(2, "u3", 1, 0, 10, rew("r3", 1)), // 15 > 12
		}},
		{"over the per-inviter cap", false, []porcupine.Operation{
			op(0, "u1", 0, 0, 10, rew("r1", 0)),
			op(0, "u2", 0, 11, 20, rew("r2", 0)),
			op(0, "u3", 0, 21, 30, capped("r3", "budget", 0)), // must be inviter_cap
		}},
		{"capped although the budget fits", false, []porcupine.Operation{
			op(0, "u1", 0, 0, 10, capped("r1", "budget", 0)),
		}},
		{"a replay with another decision", false, []porcupine.Operation{
			op(0, "u1", 0, 0, 10, rew("r1", 0)),
			op(1, "u1", 0, 11, 20, capped("r1", "budget", 0)),
		}},
		{"decided before the rewards it depends on (real-time order)", false, []porcupine.Operation{
			op(0, "u3", 0, 0, 5, capped("r3", "inviter_cap", 0)),
			op(1, "u1", 0, 6, 10, rew("r1", 0)),
			op(1, "u2", 0, 11, 20, rew("r2", 0)),
		}},
		{"same, in an order that is legal", true, []porcupine.Operation{
			op(1, "u1", 0, 0, 10, rew("r1", 0)),
			op(1, "u2", 0, 11, 20, rew("r2", 0)),
			op(0, "u3", 0, 15, 25, capped("r3", "inviter_cap", 0)),
		}},
	}
	m := sp.model()
	for _, c := range cases {
		res := porcupine.CheckOperations(m, c.ops)
		if res != c.legal {
			t.Errorf("%s: linearizable = %v, want %v", c.name, res, c.legal)
		}
	}
}
