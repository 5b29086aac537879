package ledger

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

type batch struct {
	index uint64
	at    time.Time
	cmds  [][]byte
}

// model is the random world of one property run.
type model struct {
	l        *Ledger
	log      []batch
	index    uint64
	now      time.Time
	camps    []Campaign
	ids      []string
	inviters []string
	invitees []string
	limits   map[string]limits // the highest limits ever proposed, per campaign
}

// limits are a campaign's budget (value, count; -1 none) and per-inviter cap
// (0 none). Replacements may lower them below what is used; what is used
// stays within the highest ever proposed.
type limits struct{ value, count, cap int64 }

func (m *model) propose(c Campaign) {
	next := limits{value: -1, count: -1, cap: c.PerInviterCap}
	if c.Budget != nil {
		next.value = c.Budget.Value
		if c.Budget.Count > 0 {
			next.count = c.Budget.Count
		}
	}
	l, ok := m.limits[c.ID]
	if !ok {
		m.limits[c.ID] = next
		return
	}
	higher := func(a, b, none int64) int64 {
		if a == none || b == none {
			return none
		}
		return max(a, b)
	}
	m.limits[c.ID] = limits{value: higher(l.value, next.value, -1), count: higher(l.count, next.count, -1), cap: higher(l.cap, next.cap, 0)}
}

// replacement returns a changed version of campaign c: other limits (maybe
// below what is used), tasks reordered, added or removed, variants appended,
// truncated or reordered (refused), the end moved (maybe refused).
func (m *model) replacement(t *rapid.T, c Campaign) Campaign {
	if rapid.Bool().Draw(t, "newBudget") {
		c.Budget = nil
		if rapid.IntRange(0, 3).Draw(t, "budgetKind") > 0 {
			c.Budget = &Budget{Value: int64(rapid.IntRange(0, 60).Draw(t, "rBudget")), Count: int64(rapid.IntRange(0, 5).Draw(t, "rBudgetCount"))}
		}
	}
	c.PerInviterCap = int64(rapid.IntRange(0, 3).Draw(t, "rCap"))
	c.PerInviterDailyCap = int64(rapid.IntRange(0, 2).Draw(t, "rDailyCap"))
	task := Task{Name: "t", Invites: 2, Within: Duration(5 * time.Hour), Bonus: Reward{Value: 9}}
	other := Task{Name: "u", Invites: 1, Within: Duration(5 * time.Hour), Bonus: Reward{Value: 3}}
	c.Tasks = rapid.SampledFrom([][]Task{nil, {task}, {task, other}, {other, task}, {other}}).Draw(t, "rTasks")
	if len(c.Variants) > 0 {
		a, b := c.Variants[0], c.Variants[1]
		c.Variants = rapid.SampledFrom([][]Variant{{a, b}, {b, a}, {a}, {a, b, {Name: "C", Weight: 3}}, nil}).Draw(t, "rVariants")
	}
	c.EndsAt = c.EndsAt.Add(time.Duration(rapid.IntRange(-2, 3).Draw(t, "rEnd")) * time.Hour)
	m.propose(c)
	return c
}

func genCampaign(t *rapid.T, id string) Campaign {
	c := Campaign{
		ID:               id,
		StartsAt:         t0,
		EndsAt:           t0.Add(time.Duration(rapid.IntRange(2, 30).Draw(t, "hours")) * time.Hour),
		InviteeReward:    &Reward{Value: int64(rapid.IntRange(0, 7).Draw(t, "inviteeValue"))},
		PerInviterCap:    int64(rapid.IntRange(0, 3).Draw(t, "cap")),
		AttributionModel: rapid.SampledFrom([]string{ModelLastClick, ModelFirstClick}).Draw(t, "model"),
	}
	if rapid.Bool().Draw(t, "hasBudget") {
		c.Budget = &Budget{Value: int64(rapid.IntRange(0, 60).Draw(t, "budget")), Count: int64(rapid.IntRange(0, 5).Draw(t, "budgetCount"))}
	}
	c.PerInviterDailyCap = int64(rapid.IntRange(0, 2).Draw(t, "dailyCap"))
	c.InviterRewards = []Tier{{From: 1, To: 2, Value: int64(rapid.IntRange(0, 9).Draw(t, "t1"))}, {From: 3, Value: int64(rapid.IntRange(0, 20).Draw(t, "t2"))}}
	if rapid.Bool().Draw(t, "variants") {
		c.Variants = []Variant{{Name: "A", Weight: 1}, {Name: "B", Weight: 2, InviterRewards: []Tier{{From: 1, Value: 4}}, InviteeReward: &Reward{Value: 2}}}
	}
	if rapid.Bool().Draw(t, "tasks") {
		c.Tasks = []Task{{Name: "t", Invites: 2, Within: Duration(5 * time.Hour), Bonus: Reward{Value: 9}}}
	}
	if rapid.Bool().Draw(t, "lottery") {
		c.Lottery = &Lottery{After: 1, Prizes: []Prize{{Value: 15, Count: 2}}}
	}
	if rapid.Bool().Draw(t, "teams") {
		c.Teams = &Teams{Award: Reward{Value: 6}}
	}
	if rapid.Bool().Draw(t, "segments") {
		c.Segments = []string{"vip"}
	}
	c.Fraud = &Fraud{
		MaxPerInviterPerHour: int64(rapid.IntRange(-1, 4).Draw(t, "velInviter")),
		MaxPerIPPerHour:      int64(rapid.IntRange(-1, 4).Draw(t, "velIP")),
		MaxPerDevicePerDay:   int64(rapid.IntRange(-1, 4).Draw(t, "velDevice")),
		MinClickToRegister:   Duration(time.Duration(rapid.IntRange(-1, 3).Draw(t, "minClick")) * time.Second),
	}
	c.normalize()
	return c
}

func (m *model) genCommand(t *rapid.T) []byte {
	camp := rapid.SampledFrom(m.camps).Draw(t, "campaign").ID
	inviter := rapid.SampledFrom(m.inviters).Draw(t, "inviter")
	switch rapid.IntRange(0, 9).Draw(t, "kind") {
	case 0, 1:
		return EncodeIssueLink(IssueLink{Campaign: camp, Inviter: inviter})
	case 2:
		id := rapid.SampledFrom(m.ids).Draw(t, "reviewID")
		return EncodeReview(Review{RegistrationID: id, Action: rapid.SampledFrom([]string{ActionRelease, ActionReject}).Draw(t, "action")})
	case 3:
		segs := rapid.SliceOfN(rapid.SampledFrom([]string{"vip", "active"}), 0, 2).Draw(t, "segs")
		scope := rapid.SampledFrom([]string{"", camp}).Draw(t, "scope")
		return EncodeSetSegments(SetSegments{Campaign: scope, Inviter: inviter, Segments: segs})
	case 4:
		return EncodeJoinTeam(JoinTeam{Campaign: camp, Inviter: inviter, Team: rapid.SampledFrom([]string{"red", "blue"}).Draw(t, "team")})
	case 5:
		if rapid.Bool().Draw(t, "garbage") {
			return rapid.SliceOfN(rapid.Byte(), 0, 12).Draw(t, "bytes")
		}
		if rapid.Bool().Draw(t, "replace") {
			return EncodePutCampaign(m.replacement(t, rapid.SampledFrom(m.camps).Draw(t, "replaced")))
		}
		return EncodePutCampaign(rapid.SampledFrom(m.camps).Draw(t, "same"))
	default:
		id := fmt.Sprintf("r%d", len(m.ids))
		if len(m.ids) > 0 && rapid.IntRange(0, 5).Draw(t, "repeatID") == 0 {
			id = rapid.SampledFrom(m.ids).Draw(t, "oldID")
		} else {
			m.ids = append(m.ids, id)
		}
		r := Register{
			ID: id, Campaign: camp,
			InviterNumber: uint32(rapid.IntRange(0, 6).Draw(t, "inviterNumber")),
			Invitee:       rapid.SampledFrom(m.invitees).Draw(t, "invitee"),
			Device:        rapid.SampledFrom([]string{"", "d1", "d2", "d3"}).Draw(t, "device"),
			IP:            rapid.SampledFrom([]string{"", "1.1.1.1", "2.2.2.2"}).Draw(t, "ip"),
			AckAt:         m.now,
			Node:          "n1",
		}
		if rapid.Bool().Draw(t, "click") {
			r.ClickAt = m.now.Add(-time.Duration(rapid.IntRange(0, 200).Draw(t, "clickAgo")) * time.Second)
		}
		return EncodeRegister(r)
	}
}

func (m *model) step(t *rapid.T) {
	m.now = m.now.Add(time.Duration(rapid.IntRange(0, 90).Draw(t, "advanceMin")) * time.Minute)
	n := rapid.IntRange(1, 5).Draw(t, "batch")
	cmds := make([][]byte, n)
	for i := range cmds {
		cmds[i] = m.genCommand(t)
	}
	m.index++
	m.log = append(m.log, batch{m.index, m.now, cmds})
	out := m.l.ApplyBatch(m.index, m.now, cmds)
	if len(out) != n {
		t.Fatalf("%d results for %d commands", len(out), n)
	}
	for _, o := range out {
		if _, err := DecodeResult(o); err != nil && !isCommandError(err) {
			t.Fatalf("undecodable result: %v", err)
		}
	}
	m.checkInvariants(t)
}

func isCommandError(err error) bool {
	_, ok := err.(*resultError)
	return ok
}

// checkInvariants recomputes I1-I3 from the decisions the ledger reports.
func (m *model) checkInvariants(t *rapid.T) {
	granted := map[string]int64{}
	rewardedBy := map[[2]string]int64{}
	attributed := map[[2]string]string{}
	for _, id := range m.ids {
		d, ok := m.l.Registration(id)
		if !ok {
			continue
		}
		granted[d.Campaign] += sumGrants(d.Grants)
		switch d.Status {
		case StatusRewarded:
			rewardedBy[[2]string{d.Campaign, d.Inviter}]++
			fallthrough
		case StatusCapped, StatusHeld:
			k := [2]string{d.Campaign, d.Invitee}
			if other, dup := attributed[k]; dup {
				t.Fatalf("I3: invitee %v attributed by %s and %s", k, other, d.ID)
			}
			attributed[k] = d.ID
		case StatusRejected, StatusDup:
			if len(d.Grants) != 0 {
				t.Fatalf("%s decision with grants: %+v", d.Status, d)
			}
		}
	}
	for _, c := range m.camps {
		if s, ok := m.l.Settlement(c.ID); ok {
			granted[c.ID] += sumGrants(s.Grants)
		}
		_, st, ok := m.l.Campaign(c.ID)
		if !ok {
			t.Fatalf("campaign %s missing", c.ID)
		}
		if st.BudgetSpent != granted[c.ID] {
			t.Fatalf("budget_spent %d != granted %d in %s", st.BudgetSpent, granted[c.ID], c.ID)
		}
		lim := m.limits[c.ID]
		if lim.value >= 0 && granted[c.ID] > lim.value {
			t.Fatalf("I1: granted %d > budget %d in %s", granted[c.ID], lim.value, c.ID)
		}
		if lim.count > 0 && st.Rewarded > lim.count {
			t.Fatalf("I1: %d rewarded > budget count %d", st.Rewarded, lim.count)
		}
		for _, u := range m.inviters {
			n := rewardedBy[[2]string{c.ID, u}]
			p, ok := m.l.Progress(c.ID, u)
			if ok && p.Rewarded != n {
				t.Fatalf("progress of %s says %d rewarded, decisions %d", u, p.Rewarded, n)
			}
			if lim.cap > 0 && n > lim.cap {
				t.Fatalf("I2: inviter %s rewarded %d > cap %d", u, n, lim.cap)
			}
		}
	}
}

// reads collects every read answer of the model, to compare two ledgers.
func (m *model) reads(l *Ledger) []any {
	var out []any
	for _, c := range m.camps {
		cc, st, ok := l.Campaign(c.ID)
		s, sok := l.Settlement(c.ID)
		n, nok := l.CampaignNumber(c.ID)
		out = append(out, cc.canonical(), st, ok, s, sok, n, nok)
		for _, u := range m.inviters {
			p, ok := l.Progress(c.ID, u)
			num, nok := l.InviterNumber(c.ID, u)
			name, _ := l.InviterName(n, num)
			out = append(out, p, ok, num, nok, name)
		}
		for _, v := range m.invitees {
			d, ok := l.RegistrationFor(c.ID, v)
			out = append(out, d, ok)
		}
	}
	for _, id := range m.ids {
		d, ok := l.Registration(id)
		out = append(out, d, ok)
	}
	return append(out, l.LastIndex(), l.Campaigns().Len())
}

func snap(t *rapid.T, l *Ledger) []byte {
	var b bytes.Buffer
	if err := l.Snapshot(&b); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return b.Bytes()
}

func TestPropertyInvariantsAndDeterminism(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := &model{l: New(), now: t0.Add(-30 * time.Minute), limits: map[string]limits{}}
		for i := 0; i < rapid.IntRange(1, 2).Draw(t, "campaigns"); i++ {
			m.camps = append(m.camps, genCampaign(t, fmt.Sprintf("c%d", i)))
			m.propose(m.camps[i])
		}
		m.inviters = []string{"a", "b", "c", "d", "e"}
		m.invitees = []string{"a", "v1", "v2", "v3", "v4", "v5", "v6", "v7"}
		var puts [][]byte
		for _, c := range m.camps {
			puts = append(puts, EncodePutCampaign(c))
		}
		m.index++
		m.log = append(m.log, batch{m.index, m.now, puts})
		m.l.ApplyBatch(m.index, m.now, puts)
		m.ids = []string{"r-none"}
		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		for i := 0; i < steps; i++ {
			m.step(t)
		}
		want := snap(t, m.l)

		// Replay into a fresh ledger: byte-identical.
		replay := New()
		for _, b := range m.log {
			replay.ApplyBatch(b.index, b.at, b.cmds)
		}
		if got := snap(t, replay); !bytes.Equal(got, want) {
			t.Fatalf("replay snapshot differs (%d vs %d bytes)", len(got), len(want))
		}

		// Snapshot -> restore: byte-identical, same reads.
		restored := New()
		if err := restored.Restore(bytes.NewReader(want)); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if got := snap(t, restored); !bytes.Equal(got, want) {
			t.Fatalf("restored snapshot differs")
		}
		if a, b := m.reads(m.l), m.reads(restored); !reflect.DeepEqual(a, b) {
			t.Fatalf("restored ledger answers differently")
		}

		// Both go on identically (indexes rebuilt correctly).
		m.step(t)
		last := m.log[len(m.log)-1]
		restored.ApplyBatch(last.index, last.at, last.cmds)
		if !bytes.Equal(snap(t, restored), snap(t, m.l)) {
			t.Fatalf("restored ledger diverges after one more entry")
		}
	})
}
