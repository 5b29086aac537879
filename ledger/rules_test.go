package ledger

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestRegisterRules(t *testing.T) {
	at := t0.Add(time.Minute)
	click := at.Add(-10 * time.Second)
	u1v1 := []Grant{{User: "u1", Role: RoleInviter, Value: 10}, {User: "v1", Role: RoleInvitee, Value: 10}}
	// prior registers n other invitees through u1 before the case's registration.
	prior := func(n int, r Register) func(*testLedger) {
		return func(l *testLedger) {
			for i := 0; i < n; i++ {
				r := r
				r.Campaign, r.InviterNumber, r.ClickAt = "c", 1, click
				r.Invitee = "w" + string(rune('a'+i))
				l.reg(at, r)
			}
		}
	}
	tests := []struct {
		name       string
		camp       func(*Campaign)
		setup      func(*testLedger)
		at         time.Time
		reg        Register // Campaign "c", inviter 1, invitee v1, click 10s before at unless set
		wantStatus Status
		wantReason string
		wantGrants []Grant // nil: not checked
	}{
		{name: "rewarded", wantStatus: StatusRewarded, wantGrants: u1v1},
		{name: "by code without click", reg: Register{ClickAt: time.Time{}}, wantStatus: StatusRewarded, wantGrants: u1v1},
		{name: "unknown campaign", reg: Register{Campaign: "nope"}, wantStatus: StatusRejected, wantReason: "campaign_not_running"},
		{name: "before start", at: t0.Add(-2 * time.Hour), wantStatus: StatusRejected, wantReason: "campaign_not_running"},
		{name: "at end", at: t0.Add(30 * 24 * time.Hour), wantStatus: StatusRejected, wantReason: "campaign_not_running"},
		{name: "unknown inviter", reg: Register{InviterNumber: 99}, wantStatus: StatusRejected, wantReason: "unknown_inviter"},
		{name: "window expired", reg: Register{ClickAt: at.Add(-169 * time.Hour)}, wantStatus: StatusRejected, wantReason: "attribution_expired"},
		{name: "window edge", reg: Register{ClickAt: at.Add(-168 * time.Hour)}, wantStatus: StatusRewarded},
		{name: "custom window", camp: func(c *Campaign) { c.AttributionWindow = Duration(time.Minute) }, reg: Register{ClickAt: at.Add(-2 * time.Minute)}, wantStatus: StatusRejected, wantReason: "attribution_expired"},
		{name: "self invite", reg: Register{Invitee: "u1"}, wantStatus: StatusRejected, wantReason: "self_invite"},
		{name: "duplicate", setup: func(l *testLedger) {
			l.reg(at, Register{ID: "first", Campaign: "c", InviterNumber: 1, Invitee: "v1", ClickAt: click})
		}, wantStatus: StatusDup},
		{name: "duplicate of held", camp: func(c *Campaign) { c.Fraud = &Fraud{MinClickToRegister: Duration(time.Hour)} }, setup: func(l *testLedger) {
			l.reg(at, Register{ID: "first", Campaign: "c", InviterNumber: 1, Invitee: "v1", ClickAt: click})
		}, reg: Register{ClickAt: at.Add(-2 * time.Hour)}, wantStatus: StatusDup},
		{name: "segment missing", camp: func(c *Campaign) { c.Segments = []string{"vip"} }, wantStatus: StatusRejected, wantReason: "segment"},
		{name: "segment global", camp: func(c *Campaign) { c.Segments = []string{"vip", "active"} }, setup: func(l *testLedger) {
			l.mustDo(at, EncodeSetSegments(SetSegments{Inviter: "u1", Segments: []string{"active"}}))
		}, wantStatus: StatusRewarded},
		{name: "segment per campaign", camp: func(c *Campaign) { c.Segments = []string{"vip"} }, setup: func(l *testLedger) {
			l.mustDo(at, EncodeSetSegments(SetSegments{Campaign: "c", Inviter: "u1", Segments: []string{"vip"}}))
		}, wantStatus: StatusRewarded},
		{name: "segment other", camp: func(c *Campaign) { c.Segments = []string{"vip"} }, setup: func(l *testLedger) {
			l.mustDo(at, EncodeSetSegments(SetSegments{Inviter: "u1", Segments: []string{"dormant"}}))
		}, wantStatus: StatusRejected, wantReason: "segment"},
		{name: "segment cleared", camp: func(c *Campaign) { c.Segments = []string{"vip"} }, setup: func(l *testLedger) {
			l.mustDo(at, EncodeSetSegments(SetSegments{Inviter: "u1", Segments: []string{"vip"}}))
			l.mustDo(at, EncodeSetSegments(SetSegments{Inviter: "u1"}))
		}, wantStatus: StatusRejected, wantReason: "segment"},
		{name: "too fast default", reg: Register{ClickAt: at.Add(-time.Second)}, wantStatus: StatusHeld, wantReason: "too_fast", wantGrants: []Grant{}},
		{name: "too fast custom", camp: func(c *Campaign) { c.Fraud = &Fraud{MinClickToRegister: Duration(3 * time.Second)} }, reg: Register{ClickAt: at.Add(-2500 * time.Millisecond)}, wantStatus: StatusHeld, wantReason: "too_fast"},
		{name: "too fast disabled", camp: func(c *Campaign) { c.Fraud = &Fraud{MinClickToRegister: -1} }, reg: Register{ClickAt: at.Add(-time.Second)}, wantStatus: StatusRewarded},
		{name: "velocity inviter", camp: func(c *Campaign) { c.Fraud = &Fraud{MaxPerInviterPerHour: 2} }, setup: prior(2, Register{}), wantStatus: StatusHeld, wantReason: "velocity_inviter"},
		{name: "velocity inviter under", camp: func(c *Campaign) { c.Fraud = &Fraud{MaxPerInviterPerHour: 3} }, setup: prior(2, Register{}), wantStatus: StatusRewarded},
		{name: "velocity ip", camp: func(c *Campaign) { c.Fraud = &Fraud{MaxPerIPPerHour: 1} }, setup: prior(1, Register{IP: "1.2.3.4"}), reg: Register{IP: "1.2.3.4"}, wantStatus: StatusHeld, wantReason: "velocity_ip"},
		{name: "velocity ip disabled", camp: func(c *Campaign) { c.Fraud = &Fraud{MaxPerIPPerHour: -1}; c.PerInviterCap = 0 }, setup: prior(25, Register{IP: "1.2.3.4"}), reg: Register{IP: "1.2.3.4"}, wantStatus: StatusRewarded},
		{name: "velocity device", camp: func(c *Campaign) { c.Fraud = &Fraud{MaxPerDevicePerDay: 2} }, setup: prior(2, Register{Device: "d"}), reg: Register{Device: "d"}, wantStatus: StatusHeld, wantReason: "velocity_device"},
		{name: "inviter cap", camp: func(c *Campaign) { c.PerInviterCap = 1 }, setup: prior(1, Register{}), wantStatus: StatusCapped, wantReason: "inviter_cap", wantGrants: []Grant{}},
		{name: "daily cap", camp: func(c *Campaign) { c.PerInviterDailyCap = 1 }, setup: prior(1, Register{}), wantStatus: StatusCapped, wantReason: "daily_cap"},
		{name: "daily cap next day", camp: func(c *Campaign) { c.PerInviterDailyCap = 1 }, setup: prior(1, Register{}), at: at.Add(24 * time.Hour), reg: Register{ClickAt: at.Add(24*time.Hour - 10*time.Second)}, wantStatus: StatusRewarded},
		{name: "budget value", camp: func(c *Campaign) { c.Budget = &Budget{Value: 35} }, setup: prior(1, Register{}), wantStatus: StatusCapped, wantReason: "budget"},
		{name: "budget exact", camp: func(c *Campaign) { c.Budget = &Budget{Value: 40} }, setup: prior(1, Register{}), wantStatus: StatusRewarded},
		{name: "budget count", camp: func(c *Campaign) { c.Budget = &Budget{Value: 1000, Count: 1} }, setup: prior(1, Register{}), wantStatus: StatusCapped, wantReason: "budget_count"},
		{name: "no budget block", camp: func(c *Campaign) { c.Budget = nil; c.InviteeReward = &Reward{Value: 1 << 40} }, setup: prior(3, Register{}), wantStatus: StatusRewarded},
		{name: "ladder tier 2", setup: prior(3, Register{}), wantStatus: StatusRewarded,
			wantGrants: []Grant{{User: "u1", Role: RoleInviter, Value: 20}, {User: "v1", Role: RoleInvitee, Value: 10}}},
		{name: "no tier no invitee reward", camp: func(c *Campaign) { c.InviterRewards = []Tier{{From: 2, Value: 5}}; c.InviteeReward = nil }, wantStatus: StatusRewarded, wantGrants: []Grant{}},
		{name: "variant scheme", camp: func(c *Campaign) {
			c.Variants = []Variant{{Name: "A", Weight: 1, InviterRewards: []Tier{{From: 1, Value: 7}}, InviteeReward: &Reward{Value: 3}}}
		}, wantStatus: StatusRewarded, wantGrants: []Grant{{User: "u1", Role: RoleInviter, Value: 7}, {User: "v1", Role: RoleInvitee, Value: 3}}},
		{name: "variant falls back", camp: func(c *Campaign) { c.Variants = []Variant{{Name: "A", Weight: 1}} }, wantStatus: StatusRewarded, wantGrants: u1v1},
		{name: "task bonus", camp: func(c *Campaign) {
			c.Tasks = []Task{{Name: "fast2", Invites: 2, Within: Duration(24 * time.Hour), Bonus: Reward{Value: 30}}}
		}, setup: prior(1, Register{}), wantStatus: StatusRewarded,
			wantGrants: []Grant{{User: "u1", Role: RoleInviter, Value: 10}, {User: "v1", Role: RoleInvitee, Value: 10}, {User: "u1", Role: RoleTask, Value: 30}}},
		{name: "task too late", camp: func(c *Campaign) {
			c.Tasks = []Task{{Name: "fast2", Invites: 2, Within: Duration(time.Second), Bonus: Reward{Value: 30}}}
		}, setup: prior(1, Register{}), wantStatus: StatusRewarded, wantGrants: u1v1},
		{name: "task over budget", camp: func(c *Campaign) {
			c.Budget = &Budget{Value: 60}
			c.Tasks = []Task{{Name: "fast2", Invites: 2, Within: Duration(24 * time.Hour), Bonus: Reward{Value: 30}}}
		}, setup: prior(1, Register{}), wantStatus: StatusRewarded, wantGrants: u1v1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLedger(t)
			c := baseCampaign("c")
			if tc.camp != nil {
				tc.camp(&c)
			}
			l.put(c)
			if n := l.link(t0, "c", "u1").InviterNumber; n != 1 {
				t.Fatalf("inviter number = %d", n)
			}
			if tc.setup != nil {
				tc.setup(l)
			}
			r := tc.reg
			if r.Campaign == "" {
				r.Campaign = "c"
			}
			if r.InviterNumber == 0 {
				r.InviterNumber = 1
			}
			if r.Invitee == "" {
				r.Invitee = "v1"
			}
			when := at
			if !tc.at.IsZero() {
				when = tc.at
			}
			if r.ClickAt.IsZero() && tc.name != "by code without click" {
				r.ClickAt = when.Add(-10 * time.Second)
			}
			_, before, _ := l.Campaign("c")
			d := l.reg(when, r)
			if d.Status != tc.wantStatus || d.Reason != tc.wantReason {
				t.Fatalf("decision = %s %q, want %s %q (%+v)", d.Status, d.Reason, tc.wantStatus, tc.wantReason, d)
			}
			if tc.wantGrants != nil && !(len(d.Grants) == 0 && len(tc.wantGrants) == 0) && !reflect.DeepEqual(d.Grants, tc.wantGrants) {
				t.Errorf("grants = %+v, want %+v", d.Grants, tc.wantGrants)
			}
			if d.Status != StatusRewarded && len(d.Grants) != 0 {
				t.Errorf("%s decision has grants %+v", d.Status, d.Grants)
			}
			if d.Campaign != r.Campaign || d.Invitee != r.Invitee || d.Index != l.index || !d.DecidedAt.Equal(when) {
				t.Errorf("decision fields = %+v", d)
			}
			if d.Status == StatusDup && d.DuplicateOf != "first" {
				t.Errorf("duplicate_of = %q, want first", d.DuplicateOf)
			}
			// Stats moved by exactly this decision.
			_, after, ok := l.Campaign("c")
			if !ok {
				t.Fatal("campaign missing")
			}
			delta := map[Status]int64{
				StatusRewarded: after.Rewarded - before.Rewarded, StatusDup: after.Duplicates - before.Duplicates,
				StatusCapped: after.Capped - before.Capped, StatusHeld: after.Held - before.Held, StatusRejected: after.Rejected - before.Rejected,
			}
			if r.Campaign == "c" {
				for st, n := range delta {
					want := int64(0)
					if st == d.Status {
						want = 1
					}
					if n != want {
						t.Errorf("stats %s moved by %d, want %d", st, n, want)
					}
				}
				if got := after.BudgetSpent - before.BudgetSpent; got != sumGrants(d.Grants) {
					t.Errorf("budget spent moved by %d, grants total %d", got, sumGrants(d.Grants))
				}
			}
			// Stored and idempotent.
			got, ok := l.Registration(d.ID)
			if !ok || !reflect.DeepEqual(got, d) {
				t.Errorf("Registration(%q) = %+v, %v; want %+v", d.ID, got, ok, d)
			}
			again := l.mustDo(when.Add(time.Hour), EncodeRegister(Register{ID: d.ID, Campaign: "c", InviterNumber: 1, Invitee: "zz"})).Decision
			if !reflect.DeepEqual(again, d) {
				t.Errorf("same id again = %+v, want %+v", again, d)
			}
		})
	}
}

func TestReview(t *testing.T) {
	l := newTestLedger(t)
	c := baseCampaign("c")
	c.Budget = &Budget{Value: 20}
	l.put(c)
	l.link(t0, "c", "u1")
	at := t0.Add(time.Minute)
	held := l.reg(at, Register{ID: "h1", Campaign: "c", InviterNumber: 1, Invitee: "v1", ClickAt: at.Add(-time.Second)})
	held2 := l.reg(at, Register{ID: "h2", Campaign: "c", InviterNumber: 1, Invitee: "v2", ClickAt: at.Add(-time.Second)})
	if held.Status != StatusHeld || held2.Status != StatusHeld {
		t.Fatalf("not held: %+v %+v", held, held2)
	}
	if p, _ := l.Progress("c", "u1"); p.Invites != 0 {
		t.Errorf("held registration counted as invite: %+v", p)
	}
	var seen []Decision
	l.SetObserver(func(d Decision) { seen = append(seen, d) })
	later := at.Add(time.Hour)
	rel := l.mustDo(later, EncodeReview(Review{RegistrationID: "h1", Action: ActionRelease})).Decision
	if rel.Status != StatusRewarded || sumGrants(rel.Grants) != 20 || !rel.DecidedAt.Equal(later) || rel.Index != l.index {
		t.Fatalf("released = %+v", rel)
	}
	// The observer's copy is the result, marked as a review's.
	want := rel
	want.Review = true
	if len(seen) != 1 || !reflect.DeepEqual(seen[0], want) {
		t.Errorf("observer saw %+v", seen)
	}
	// Budget now spent: the second release is capped.
	rel2 := l.mustDo(later, EncodeReview(Review{RegistrationID: "h2", Action: ActionRelease})).Decision
	if rel2.Status != StatusCapped || rel2.Reason != "budget" {
		t.Errorf("second release = %+v", rel2)
	}
	if _, err := l.do(later, EncodeReview(Review{RegistrationID: "h1", Action: ActionReject})); !errors.Is(err, ErrConflict) {
		t.Errorf("review of a decided registration: %v, want ErrConflict", err)
	}
	if _, err := l.do(later, EncodeReview(Review{RegistrationID: "nope", Action: ActionReject})); !errors.Is(err, ErrNotFound) {
		t.Errorf("review of unknown registration: %v, want ErrNotFound", err)
	}
	if _, err := l.do(later, EncodeReview(Review{RegistrationID: "h1", Action: "approve"})); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad action: %v, want ErrMalformed", err)
	}
	h3 := l.reg(at, Register{ID: "h3", Campaign: "c", InviterNumber: 1, Invitee: "v3", ClickAt: at.Add(-time.Second)})
	if h3.Status != StatusHeld {
		t.Fatalf("h3 = %+v", h3)
	}
	rej := l.mustDo(later, EncodeReview(Review{RegistrationID: "h3", Action: ActionReject})).Decision
	if rej.Status != StatusRejected || rej.Reason != "review" {
		t.Errorf("rejected = %+v", rej)
	}
	// The rejected invitee stays attributed.
	if d, ok := l.RegistrationFor("c", "v3"); !ok || d.ID != "h3" {
		t.Errorf("RegistrationFor(v3) = %+v %v", d, ok)
	}
	_, st, _ := l.Campaign("c")
	if st.Held != 0 || st.Rewarded != 1 || st.Capped != 1 || st.Rejected != 1 || st.BudgetSpent != 20 || st.BudgetLeft != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestIssueLink(t *testing.T) {
	l := newTestLedger(t)
	c := baseCampaign("c")
	c.Variants = []Variant{{Name: "A", Weight: 30}, {Name: "B", Weight: 70}}
	l.put(c)
	l.put(baseCampaign("d"))
	first := l.link(t0, "c", "u1")
	if first != (LinkResult{InviterNumber: 1, Variant: first.Variant, New: true}) || first.Variant < 1 || first.Variant > 2 {
		t.Fatalf("first link = %+v", first)
	}
	if again := l.link(t0.Add(time.Hour), "c", "u1"); again.InviterNumber != 1 || again.New || again.Variant != first.Variant {
		t.Errorf("again = %+v", again)
	}
	if l2 := l.link(t0, "c", "u2"); l2.InviterNumber != 2 || !l2.New {
		t.Errorf("second inviter = %+v", l2)
	}
	if d := l.link(t0, "d", "u2"); d.InviterNumber != 1 || d.Variant != 0 {
		t.Errorf("other campaign = %+v", d)
	}
	if _, err := l.do(t0, EncodeIssueLink(IssueLink{Campaign: "nope", Inviter: "u1"})); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown campaign: %v", err)
	}
	if _, err := l.do(t0, EncodeIssueLink(IssueLink{Campaign: "c"})); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty inviter: %v", err)
	}
	// Variants follow the weights roughly and are a pure function of (campaign, inviter).
	counts := [3]int{}
	for i := 0; i < 2000; i++ {
		name := "user-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		r := l.link(t0, "c", name)
		counts[r.Variant]++
		other := New()
		other.ApplyBatch(1, t0, [][]byte{EncodePutCampaign(c)})
		if i < 20 {
			res, _ := DecodeResult(other.ApplyBatch(2, t0, [][]byte{EncodeIssueLink(IssueLink{Campaign: "c", Inviter: name})})[0])
			if res.Link.Variant != r.Variant {
				t.Fatalf("variant of %s differs between ledgers", name)
			}
		}
	}
	if counts[0] != 0 || counts[1] < 450 || counts[1] > 750 {
		t.Errorf("variant counts = %v, want about 600/1400", counts)
	}
	if n, ok := l.InviterNumber("c", "u2"); !ok || n != 2 {
		t.Errorf("InviterNumber = %d %v", n, ok)
	}
	if name, ok := l.InviterName(1, 2); !ok || name != "u2" {
		t.Errorf("InviterName = %q %v", name, ok)
	}
	if _, ok := l.InviterName(1, 99999); ok {
		t.Error("InviterName of unknown number")
	}
	if _, ok := l.InviterName(9, 1); ok {
		t.Error("InviterName of unknown campaign")
	}
	_, st, _ := l.Campaign("c")
	if st.Links != 2002 || st.Variants[0].Links+st.Variants[1].Links != 2002 {
		t.Errorf("links = %d, variants %+v", st.Links, st.Variants)
	}
}

func TestPutCampaign(t *testing.T) {
	l := newTestLedger(t)
	c := baseCampaign("c")
	if r := l.put(c); r != (PutResult{ID: "c", Number: 1, Version: 1}) {
		t.Fatalf("create = %+v", r)
	}
	if r := l.put(c); r.Version != 1 {
		t.Errorf("same body: version %d", r.Version)
	}
	c.Number, c.Version = 40, 9 // ignored
	if r := l.put(c); r.Version != 1 || r.Number != 1 {
		t.Errorf("number/version in the body changed the result: %+v", r)
	}
	c.PerInviterCap = 5
	if r := l.put(c); r.Version != 2 || r.Number != 1 {
		t.Errorf("changed body = %+v", r)
	}
	if r := l.put(baseCampaign("d")); r.Number != 2 || r.Version != 1 {
		t.Errorf("second campaign = %+v", r)
	}
	got, _, ok := l.Campaign("c")
	if !ok || got.PerInviterCap != 5 || got.Version != 2 || got.Number != 1 {
		t.Errorf("Campaign = %+v", got)
	}
	if n, ok := l.CampaignNumber("d"); !ok || n != 2 {
		t.Errorf("CampaignNumber = %d %v", n, ok)
	}
	bad := baseCampaign("e")
	bad.InviterRewards = []Tier{{From: 2, To: 1}}
	if _, err := l.do(t0, EncodePutCampaign(bad)); !errors.Is(err, ErrInvalidCampaign) {
		t.Errorf("invalid campaign: %v", err)
	}
	if _, ok := l.CampaignNumber("e"); ok {
		t.Error("invalid campaign stored")
	}
}

func TestRefusedCommandsChangeNothing(t *testing.T) {
	l := newTestLedger(t)
	l.put(baseCampaign("c"))
	l.link(t0, "c", "u1")
	cases := []struct {
		name string
		cmd  []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"bad version", []byte{9, 1}, ErrMalformed},
		{"unknown type", []byte{wireVersion, 77}, ErrUnknownCommand},
		{"noop with body", []byte{wireVersion, 0, 1}, ErrMalformed},
		{"truncated register", EncodeRegister(Register{ID: "x", Campaign: "c", InviterNumber: 1, Invitee: "v"})[:8], ErrMalformed},
		{"register trailing", append(EncodeRegister(Register{ID: "x", Campaign: "c", InviterNumber: 1, Invitee: "v"}), 0), ErrMalformed},
		{"register no invitee", EncodeRegister(Register{ID: "x", Campaign: "c", InviterNumber: 1}), ErrMalformed},
		{"register no id", EncodeRegister(Register{Campaign: "c", InviterNumber: 1, Invitee: "v"}), ErrMalformed},
		{"bad campaign json", append([]byte{wireVersion, byte(CmdPutCampaign)}, "{"...), ErrInvalidCampaign},
		{"join team without teams", EncodeJoinTeam(JoinTeam{Campaign: "c", Inviter: "u1", Team: "red"}), ErrConflict},
		{"join team unknown campaign", EncodeJoinTeam(JoinTeam{Campaign: "x", Inviter: "u1", Team: "red"}), ErrNotFound},
		{"segments unknown campaign", EncodeSetSegments(SetSegments{Campaign: "x", Inviter: "u1", Segments: []string{"a"}}), ErrNotFound},
		{"segments empty name", EncodeSetSegments(SetSegments{Inviter: "u1", Segments: []string{""}}), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := l.snapshot()
			_, err := DecodeResult(l.ApplyBatch(l.index, t0, [][]byte{tc.cmd})[0])
			if !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
			if string(l.snapshot()) != string(before) {
				t.Error("a refused command changed the snapshot")
			}
		})
	}
}

func TestNoopAndObserver(t *testing.T) {
	l := newTestLedger(t)
	var got []Decision
	l.SetObserver(func(d Decision) {
		// The observer runs after the lock is released: reads work.
		if _, ok := l.Registration(d.ID); !ok && d.Reason != "settlement" {
			t.Errorf("observer cannot read %s", d.ID)
		}
		got = append(got, d)
	})
	if res := l.mustDo(t0, EncodeNoop()); res.Type != CmdNoop {
		t.Errorf("noop result = %+v", res)
	}
	l.put(baseCampaign("c"))
	l.link(t0, "c", "u1")
	at := t0.Add(time.Minute)
	d := l.reg(at, Register{ID: "r1", Campaign: "c", InviterNumber: 1, Invitee: "v1"})
	l.reg(at, Register{ID: "r1", Campaign: "c", InviterNumber: 1, Invitee: "v1"})
	if len(got) != 1 || !reflect.DeepEqual(got[0], d) {
		t.Errorf("observer got %+v, want one %+v", got, d)
	}
	if l.LastIndex() != l.index {
		t.Errorf("LastIndex = %d, want %d", l.LastIndex(), l.index)
	}
}

func TestReplaceCampaignKeepsState(t *testing.T) {
	l := newTestLedger(t)
	c := baseCampaign("c")
	c.Variants = []Variant{{Name: "A", Weight: 1}, {Name: "B", Weight: 1000000}}
	l.put(c)
	if v := l.link(t0, "c", "u1").Variant; v != 2 {
		t.Skipf("variant %d: hash moved", v)
	}
	at := t0.Add(time.Minute)
	l.reg(at, Register{Campaign: "c", InviterNumber: 1, Invitee: "v1"})
	c.Variants = nil // fewer variants than inviters were assigned
	c.PerInviterCap = 1
	if r := l.put(c); r.Version != 2 {
		t.Fatalf("replace = %+v", r)
	}
	if d := l.reg(at, Register{Campaign: "c", InviterNumber: 1, Invitee: "v2"}); d.Status != StatusCapped {
		t.Errorf("new cap not applied: %+v", d)
	}
	if p, _ := l.Progress("c", "u1"); p.Invites != 2 || p.Rewarded != 1 {
		t.Errorf("progress lost on replace: %+v", p)
	}
	snap := l.snapshot()
	r := New()
	if err := r.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("restore after replace: %v", err)
	}
	var b bytes.Buffer
	if err := r.Snapshot(&b); err != nil || !bytes.Equal(b.Bytes(), snap) {
		t.Errorf("restored snapshot differs (%v)", err)
	}
}
