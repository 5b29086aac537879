package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDailyCapClockGoesBack: entry time is the leader's clock and may go
// backwards across UTC midnight after a leader change; the daily cap must not
// reset for the older day (I2). Late stamps count into the newest day.
func TestDailyCapClockGoesBack(t *testing.T) {
	l := newRulesLedger(t, RulesLevel)
	c := baseCampaign("c")
	c.PerInviterDailyCap = 2
	l.put(c)
	l.link(t0, "c", "u1")
	midnight := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	stamps := []time.Duration{-10 * time.Second, -9 * time.Second, time.Second, 2 * time.Second, -3 * time.Second, -2 * time.Second}
	var got []string
	for i, d := range stamps {
		r := l.reg(midnight.Add(d), Register{Campaign: "c", InviterNumber: 1, Invitee: fmt.Sprint("v", i)})
		got = append(got, string(r.Status)+"/"+r.Reason)
	}
	want := []string{"rewarded/", "rewarded/", "rewarded/", "rewarded/", "capped/daily_cap", "capped/daily_cap"}
	if !slices.Equal(got, want) {
		t.Errorf("decisions = %v, want %v", got, want)
	}
	// The next day still starts afresh.
	if r := l.reg(midnight.Add(24*time.Hour), Register{Campaign: "c", InviterNumber: 1, Invitee: "next"}); r.Status != StatusRewarded {
		t.Errorf("next day: %+v", r)
	}
}

// taskGrants returns the task grants of a decision.
func taskGrants(d Decision) []Grant {
	var out []Grant
	for _, g := range d.Grants {
		if g.Role == RoleTask {
			out = append(out, g)
		}
	}
	return out
}

// TestReplaceTasksKeepsDoneTasksByName: a task done before a replacement
// stays done when the replacement reorders the tasks or inserts one before it.
func TestReplaceTasksKeepsDoneTasksByName(t *testing.T) {
	first := Task{Name: "first", Invites: 1, Within: Duration(24 * time.Hour), Bonus: Reward{Value: 5}}
	fifth := Task{Name: "fifth", Invites: 5, Within: Duration(24 * time.Hour), Bonus: Reward{Value: 7}}
	tenth := Task{Name: "tenth", Invites: 10, Within: Duration(24 * time.Hour), Bonus: Reward{Value: 9}}
	tests := []struct {
		name  string
		tasks []Task
	}{
		{"reordered", []Task{fifth, first}},
		{"inserted before", []Task{tenth, first, fifth}},
		{"removed before", []Task{fifth}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newRulesLedger(t, RulesLevel)
			c := baseCampaign("c")
			c.Tasks = []Task{first, fifth}
			l.put(c)
			l.link(t0, "c", "u1")
			at := t0.Add(time.Minute)
			d := l.reg(at, Register{Campaign: "c", InviterNumber: 1, Invitee: "v1"})
			if g := taskGrants(d); len(g) != 1 || g[0].Value != 5 {
				t.Fatalf("first invite task grants = %+v", g)
			}
			c.Tasks = tc.tasks
			if r := l.put(c); r.Version != 2 {
				t.Fatalf("replace = %+v", r)
			}
			for i := 2; i <= 4; i++ {
				d := l.reg(at, Register{Campaign: "c", InviterNumber: 1, Invitee: fmt.Sprint("v", i)})
				if g := taskGrants(d); len(g) != 0 {
					t.Fatalf("invite %d paid a task again: %+v", i, g)
				}
			}
			d = l.reg(at, Register{Campaign: "c", InviterNumber: 1, Invitee: "v5"})
			wantFifth := slices.ContainsFunc(tc.tasks, func(t Task) bool { return t.Name == "fifth" })
			if g := taskGrants(d); wantFifth != (len(g) == 1 && g[0].Value == 7) || len(g) > 1 {
				t.Errorf("fifth invite task grants = %+v (task listed: %v)", g, wantFifth)
			}
			checkRestoreSame(t, l)
		})
	}
}

// checkRefused applies cmd again at the last index (so that the index does
// not move) and checks that it is refused with want and changes nothing.
func checkRefused(t *testing.T, l *testLedger, at time.Time, cmd []byte, want error) {
	t.Helper()
	before := l.snapshot()
	if _, err := DecodeResult(l.ApplyBatch(l.index, at, [][]byte{cmd})[0]); !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", CommandType(cmd[1]), err, want)
	}
	if !bytes.Equal(l.snapshot(), before) {
		t.Error("refused command changed the state")
	}
}

// checkRestoreSame restores l's snapshot into a new ledger and checks that it
// snapshots to the same bytes.
func checkRestoreSame(t *testing.T, l *testLedger) {
	t.Helper()
	snap := l.snapshot()
	r := New()
	if err := r.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("restore: %v", err)
	}
	var b bytes.Buffer
	if err := r.Snapshot(&b); err != nil || !bytes.Equal(b.Bytes(), snap) {
		t.Fatalf("restored snapshot differs (%v)", err)
	}
}

// variantLedger has campaign "c" with variants A and B and inviters until one
// of each variant; it returns the inviter numbers by variant.
func variantLedger(t *testing.T) (*testLedger, Campaign, map[uint8]uint32) {
	t.Helper()
	l := newRulesLedger(t, RulesLevel)
	c := baseCampaign("c")
	c.Variants = []Variant{
		{Name: "A", Weight: 1, InviterRewards: []Tier{{From: 1, Value: 3}}},
		{Name: "B", Weight: 1, InviterRewards: []Tier{{From: 1, Value: 7}}},
	}
	l.put(c)
	byVariant := map[uint8]uint32{}
	for i := 0; len(byVariant) < 2 && i < 100; i++ {
		r := l.link(t0, "c", fmt.Sprint("u", i))
		if _, ok := byVariant[r.Variant]; !ok {
			byVariant[r.Variant] = r.InviterNumber
		}
	}
	if len(byVariant) < 2 {
		t.Fatalf("variants not both used: %v", byVariant)
	}
	return l, c, byVariant
}

// TestReplaceVariantsRefusesReorder: inviters (and their share codes) carry
// the variant's position, so a replacement must keep existing variants in
// place. Appending is fine; reordering, renaming, and reusing the position of
// a removed variant that still has inviters are ErrConflict, both from
// CheckPut (before raft) and from the command itself.
func TestReplaceVariantsRefusesReorder(t *testing.T) {
	l, c, byVariant := variantLedger(t)
	a, b, extra := c.Variants[0], c.Variants[1], Variant{Name: "C", Weight: 1}
	refused := []struct {
		name     string
		variants []Variant
		msg      string
	}{
		{"reordered", []Variant{b, a}, `variants[0]`},
		{"renamed", []Variant{a, {Name: "B2", Weight: 1}}, `"B"`},
		{"removed in the middle", []Variant{b}, `variants[0]`},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			nc := c
			nc.Variants = tc.variants
			if err := l.CheckPut(nc); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("CheckPut = %v, want ErrConflict naming %s", err, tc.msg)
			}
			checkRefused(t, l, t0, EncodePutCampaign(nc), ErrConflict)
		})
	}
	// Appending a variant is accepted and moves nobody.
	nc := c
	nc.Variants = []Variant{a, b, extra}
	if err := l.CheckPut(nc); err != nil {
		t.Fatalf("CheckPut(append) = %v", err)
	}
	if r := l.put(nc); r.Version != 2 {
		t.Fatalf("append = %+v", r)
	}
	at := t0.Add(time.Minute)
	if d := l.reg(at, Register{Campaign: "c", InviterNumber: byVariant[2], Invitee: "v1"}); d.Grants[0].Value != 7 {
		t.Errorf("variant B inviter after append: %+v", d)
	}
	// Removing the last variants is accepted (their inviters fall back to
	// the campaign's scheme); their positions cannot be reused while
	// inviters hold them.
	nc.Variants = []Variant{a}
	if r := l.put(nc); r.Version != 3 {
		t.Fatalf("truncate = %+v", r)
	}
	nc.Variants = []Variant{a, {Name: "X", Weight: 1}}
	if err := l.CheckPut(nc); !errors.Is(err, ErrConflict) {
		t.Errorf("CheckPut(reuse removed position) = %v, want ErrConflict", err)
	}
	checkRefused(t, l, t0, EncodePutCampaign(nc), ErrConflict)
	// A new campaign, or an unchanged one, is always fine.
	if err := l.CheckPut(baseCampaign("new")); err != nil {
		t.Errorf("CheckPut(new) = %v", err)
	}
	cur, _, _ := l.Campaign("c")
	if err := l.CheckPut(cur); err != nil {
		t.Errorf("CheckPut(unchanged) = %v", err)
	}
	bad := baseCampaign("bad")
	bad.EndsAt = bad.StartsAt
	if err := l.CheckPut(bad); !errors.Is(err, ErrInvalidCampaign) {
		t.Errorf("CheckPut(invalid) = %v", err)
	}
}

// TestLowerBudgetAndCapBelowUse: a replacement may lower the budget below what
// is spent, or the per-inviter cap below what an inviter already got. It is
// accepted in every build (the invariants build must not panic): nothing is
// taken back and no further grant is made.
func TestLowerBudgetAndCapBelowUse(t *testing.T) {
	l := newRulesLedger(t, RulesLevel)
	c := baseCampaign("c")
	l.put(c)
	l.link(t0, "c", "u1")
	l.link(t0, "c", "u2")
	at := t0.Add(time.Minute)
	for i := 0; i < 3; i++ {
		l.reg(at, Register{Campaign: "c", InviterNumber: 1, Invitee: fmt.Sprint("v", i)})
	}
	_, st, _ := l.Campaign("c")
	spent := st.BudgetSpent
	if spent != 60 {
		t.Fatalf("spent %d", spent)
	}
	c.PerInviterCap = 2
	if r := l.put(c); r.Version != 2 {
		t.Fatalf("lower cap = %+v", r)
	}
	if d := l.reg(at, Register{Campaign: "c", InviterNumber: 1, Invitee: "w1"}); d.Status != StatusCapped || d.Reason != "inviter_cap" {
		t.Errorf("after lowering the cap: %+v", d)
	}
	c.Budget = &Budget{Value: 25}
	if r := l.put(c); r.Version != 3 {
		t.Fatalf("lower budget = %+v", r)
	}
	if d := l.reg(at, Register{Campaign: "c", InviterNumber: 2, Invitee: "w2"}); d.Status != StatusCapped || d.Reason != "budget" {
		t.Errorf("after lowering the budget: %+v", d)
	}
	l.apply(at, EncodeNoop())
	_, st, _ = l.Campaign("c")
	if st.BudgetSpent != spent || st.BudgetLeft != 0 {
		t.Errorf("stats = %+v", st)
	}
	checkRestoreSame(t, l)
	// Raising them again lets grants through up to the new limits.
	c.Budget = &Budget{Value: 100}
	c.PerInviterCap = 4
	l.put(c)
	if d := l.reg(at, Register{Campaign: "c", InviterNumber: 1, Invitee: "w3"}); d.Status != StatusRewarded {
		t.Errorf("after raising: %+v", d)
	}
}

// TestReopenSettledCampaignRefused: a settled campaign stays settled, so a
// replacement that moves its end later (which would make it look running
// while every registration is rejected) is ErrConflict.
func TestReopenSettledCampaignRefused(t *testing.T) {
	l := newRulesLedger(t, RulesLevel)
	c := pkCampaign()
	l.put(c)
	after := c.EndsAt.Add(time.Hour)
	l.apply(after, EncodeNoop())
	if _, ok := l.Settlement("pk"); !ok {
		t.Fatal("not settled")
	}
	nc := c
	nc.EndsAt = c.EndsAt.Add(48 * time.Hour)
	if err := l.CheckPut(nc); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "settled") {
		t.Errorf("CheckPut = %v, want ErrConflict", err)
	}
	checkRefused(t, l, after, EncodePutCampaign(nc), ErrConflict)
	// Other changes to a settled campaign (a bigger budget for releases,
	// an earlier end) are accepted.
	nc = c
	nc.Budget = &Budget{Value: 20000}
	nc.EndsAt = c.EndsAt.Add(-time.Hour)
	if err := l.CheckPut(nc); err != nil {
		t.Errorf("CheckPut = %v", err)
	}
	if r := l.mustDo(after, EncodePutCampaign(nc)).Put; r.Version != 2 {
		t.Errorf("put = %+v", r)
	}
}

// TestReleaseAfterSettlement: a hold released after the campaign is settled
// is rewarded (within the budget) but changes neither team totals nor
// lottery entries, which the settlement already used.
func TestReleaseAfterSettlement(t *testing.T) {
	l := newRulesLedger(t, RulesLevel)
	c := pkCampaign()
	c.Lottery.After = 2
	l.put(c)
	l.link(t0, "pk", "a")
	l.link(t0, "pk", "b")
	l.mustDo(t0, EncodeJoinTeam(JoinTeam{Campaign: "pk", Inviter: "a", Team: "red"}))
	l.mustDo(t0, EncodeJoinTeam(JoinTeam{Campaign: "pk", Inviter: "b", Team: "blue"}))
	at := t0.Add(time.Minute)
	invite(l, at, 1, 1)
	invite(l, at, 2, 2)
	held := l.reg(at, Register{ID: "h", Campaign: "pk", InviterNumber: 1, Invitee: "x", ClickAt: at.Add(-time.Second)})
	if held.Status != StatusHeld {
		t.Fatalf("not held: %+v", held)
	}
	after := c.EndsAt.Add(time.Hour)
	l.apply(after, EncodeNoop())
	s, ok := l.Settlement("pk")
	if !ok || s.WinningTeam != "blue" {
		t.Fatalf("settlement = %+v", s)
	}
	_, before, _ := l.Campaign("pk")
	lottery := slices.Clone(l.Ledger.st.camps[0].lottery)
	d := l.mustDo(after, EncodeReview(Review{RegistrationID: "h", Action: ActionRelease})).Decision
	if d.Status != StatusRewarded || sumGrants(d.Grants) != 20 {
		t.Errorf("release = %+v", d)
	}
	_, st, _ := l.Campaign("pk")
	if !slices.Equal(st.Teams, before.Teams) {
		t.Errorf("teams changed after settlement: %+v, was %+v", st.Teams, before.Teams)
	}
	if got := l.Ledger.st.camps[0].lottery; !slices.Equal(got, lottery) {
		t.Errorf("lottery entries changed after settlement: %v, was %v", got, lottery)
	}
	if p, _ := l.Progress("pk", "a"); p.Invites != 2 || p.Rewarded != 2 {
		t.Errorf("progress = %+v", p)
	}
	checkRestoreSame(t, l)
}

// TestRestoreRejectsDanglingRegistrations: a snapshot whose registrations
// point at no campaign or no inviter where the rules need one is refused
// (ErrBadSnapshot) instead of panicking the FSM later (on review).
func TestRestoreRejectsDanglingRegistrations(t *testing.T) {
	tests := []struct {
		name   string
		status uint8
		reason uint8
		camp   uint16
		inv    uint32
	}{
		{"held without campaign", stHeld, rsTooFast, 0, 1},
		{"held without inviter", stHeld, rsTooFast, 1, 0},
		{"held without either", stHeld, rsTooFast, 0, 0},
		{"rewarded without inviter", stRewarded, rsNone, 1, 0},
		{"capped without inviter", stCapped, rsBudget, 1, 0},
		{"review rejected without inviter", stRejected, rsReview, 1, 0},
		{"duplicate without campaign", stDup, rsNone, 0, 1},
		{"inviter without campaign", stRejected, rsNotRunning, 0, 1},
		{"no campaign but not campaign_not_running", stRejected, rsSelf, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newRulesLedger(t, RulesLevel)
			l.put(baseCampaign("c"))
			l.link(t0, "c", "u1")
			at := t0.Add(time.Minute)
			l.reg(at, Register{ID: "first", Campaign: "c", InviterNumber: 1, Invitee: "v0"})
			l.reg(at, Register{ID: "h", Campaign: "c", InviterNumber: 1, Invitee: "v1", ClickAt: at.Add(-time.Second)})
			p, ok := l.Ledger.st.findReg("h")
			if !ok {
				t.Fatal("no registration")
			}
			r := &l.Ledger.st.regs[p]
			r.status, r.reason, r.camp, r.inviter = tc.status, tc.reason, tc.camp, tc.inv
			if tc.status == stDup {
				l.Ledger.st.regDup[p] = 0
			}
			snap := l.snapshot() // re-encoded, with a valid checksum
			nl := New()
			err := nl.Restore(bytes.NewReader(snap))
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("restore = %v, want ErrBadSnapshot", err)
			}
		})
	}
}

// TestRulesLevelZeroKeepsOldDecisions: until the rules level is raised
// through the log, a replica decides as builds before levels did (so an
// upgraded replica replaying old entries agrees with the decisions already
// made), and its snapshot is the version 1 format older builds read.
func TestRulesLevelZeroKeepsOldDecisions(t *testing.T) {
	play := func(l *testLedger) []string {
		c := baseCampaign("c")
		c.PerInviterDailyCap, c.PerInviterCap = 2, 0
		l.put(c)
		l.link(t0, "c", "u1")
		midnight := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
		var got []string
		for i, at := range []time.Time{midnight.Add(-10 * time.Second), midnight.Add(-9 * time.Second),
			midnight.Add(time.Second), midnight.Add(2 * time.Second), midnight.Add(-3 * time.Second), midnight.Add(-2 * time.Second)} {
			d := l.reg(at, Register{Campaign: "c", InviterNumber: 1, Invitee: fmt.Sprint("v", i)})
			got = append(got, string(d.Status))
		}
		return got
	}
	old := newRulesLedger(t, 0)
	if got := play(old); !slices.Equal(got, []string{"rewarded", "rewarded", "rewarded", "rewarded", "rewarded", "rewarded"}) {
		t.Fatalf("level 0: %v, want the old rules' decisions", got)
	}
	if snap := old.snapshot(); binary.BigEndian.Uint16(snap[8:]) != 1 {
		t.Fatalf("level 0 wrote snapshot version %d, want 1", binary.BigEndian.Uint16(snap[8:]))
	}
	cur := newRulesLedger(t, 1)
	if got := play(cur); !slices.Equal(got, []string{"rewarded", "rewarded", "rewarded", "rewarded", "capped", "capped"}) {
		t.Fatalf("level 1: %v", got)
	}
	snap := cur.snapshot()
	if binary.BigEndian.Uint16(snap[8:]) != 2 {
		t.Fatalf("level 1 wrote snapshot version %d, want 2", binary.BigEndian.Uint16(snap[8:]))
	}
	r := New()
	if err := r.Restore(bytes.NewReader(snap)); err != nil || r.Rules() != 1 {
		t.Fatalf("restore: level %d, %v", r.Rules(), err)
	}
	if _, err := newTestLedger(t).do(t0, EncodeSetRules(RulesLevel+1)); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("a level this build does not know: %v", err)
	}
}
