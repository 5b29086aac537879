package ledger

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

const (
	hourNs = int64(time.Hour)
	dayNs  = 24 * hourNs
)

// Settlement is what a campaign's end produced: the team PK award and the
// lottery draw. It is computed once, by the first entry at or after ends_at.
type Settlement struct {
	At             time.Time `json:"at"`
	Index          uint64    `json:"index"`
	WinningTeam    string    `json:"winning_team,omitempty"`
	LotteryWinners []string  `json:"lottery_winners,omitempty"`
	Grants         []Grant   `json:"grants,omitempty"`
}

func (s *state) findReg(id string) (uint32, bool) {
	h := hashKey(id)
	if u, ok := packULID(id); ok {
		return s.regIdx.lookup(h, func(p uint32) bool { return s.regs[p].id == u && !s.strID(p) })
	}
	return s.regIdx.lookup(h, func(p uint32) bool { return s.regStr[p] == id })
}

func (s *state) strID(p uint32) bool {
	if len(s.regStr) == 0 {
		return false
	}
	_, ok := s.regStr[p]
	return ok
}

func (s *state) regID(p uint32) string {
	if s.strID(p) {
		return s.regStr[p]
	}
	return unpackULID(s.regs[p].id)
}

func (s *state) findInvitee(cs *campState, name string) (uint32, bool) {
	return cs.invitees.lookup(hashKey(name), func(p uint32) bool { return s.names.eq(s.regs[p].invitee, name) })
}

func (s *state) register(v Register, index uint64, at time.Time) []byte {
	if p, ok := s.findReg(v.ID); ok {
		d := s.decision(p)
		return encodeDecision(CmdRegister, &d)
	}
	p := uint32(len(s.regs))
	r := reg{invitee: s.names.add(v.Invitee), at: at.UnixNano(), index: index}
	if u, ok := packULID(v.ID); ok {
		r.id = u
	} else {
		s.regStr[p] = v.ID
	}
	s.regs = append(s.regs, r)
	s.regIdx.insert(hashKey(v.ID), p, func(q uint32) uint64 { return hashKey(s.regID(q)) })
	s.decide(p, v, at)
	d := s.decision(p)
	if s.watch {
		s.notes = append(s.notes, d)
	}
	return encodeDecision(CmdRegister, &d)
}

// decide applies the registration rules (see the package doc) to the new
// registration at position p.
func (s *state) decide(p uint32, v Register, at time.Time) {
	r := &s.regs[p]
	cs := s.campaign(v.Campaign)
	if cs == nil {
		s.regCamp[p] = v.Campaign
		r.status, r.reason = stRejected, rsNotRunning
		return
	}
	c := cs.c
	r.camp = c.Number
	cs.st.regs++
	reject := func(reason uint8) {
		r.status, r.reason = stRejected, reason
		cs.st.rejected++
	}
	if at.Before(c.StartsAt) || !at.Before(c.EndsAt) || cs.settled != nil {
		reject(rsNotRunning)
		return
	}
	if v.InviterNumber == 0 || int(v.InviterNumber) > len(cs.inviters) {
		reject(rsUnknownInviter)
		return
	}
	r.inviter = v.InviterNumber
	inv := &cs.inviters[v.InviterNumber-1]
	if k := int(inv.variant); k > 0 && k <= len(cs.variants) {
		cs.variants[k-1].regs++
	}
	ack := v.AckAt
	if ack.IsZero() {
		ack = at
	}
	if !v.ClickAt.IsZero() && ack.Sub(v.ClickAt) > time.Duration(c.AttributionWindow) {
		reject(rsExpired)
		return
	}
	if s.names.eq(inv.name, v.Invitee) {
		reject(rsSelf)
		return
	}
	if q, ok := s.findInvitee(cs, v.Invitee); ok {
		r.status = stDup
		s.regDup[p] = q
		cs.st.dups++
		return
	}
	if len(c.Segments) > 0 && !s.inSegments(c, s.names.get(inv.name)) {
		reject(rsSegment)
		return
	}
	// Attributed from here on.
	cs.invitees.insert(hashKey(v.Invitee), p, func(q uint32) uint64 { return hashKey(s.names.bytes(s.regs[q].invitee)) })
	atN := at.UnixNano()
	f := cs.fraud
	_, perInviter := inv.vel.hit(atN, hourNs)
	perIP := hitKey(&cs.ipVel, &cs.ipSwept, v.IP, atN, hourNs)
	perDevice := hitKey(&cs.devVel, &cs.devSwept, v.Device, atN, dayNs)
	hold := rsNone
	switch {
	case f.MinClickToRegister >= 0 && !v.ClickAt.IsZero() && ack.Sub(v.ClickAt) < time.Duration(f.MinClickToRegister):
		hold = rsTooFast
	case f.MaxPerInviterPerHour > 0 && perInviter > f.MaxPerInviterPerHour:
		hold = rsVelInviter
	case f.MaxPerIPPerHour > 0 && perIP > f.MaxPerIPPerHour:
		hold = rsVelIP
	case f.MaxPerDevicePerDay > 0 && perDevice > f.MaxPerDevicePerDay:
		hold = rsVelDevice
	}
	if hold != rsNone {
		r.status, r.reason = stHeld, hold
		cs.st.held++
		return
	}
	s.reward(cs, p, at)
}

// hitKey counts one event for key (skipped when empty) in a per-key window
// map and returns the estimate. Once per window width it drops the keys whose
// counts no longer matter, so memory stays proportional to the keys seen in
// the last two windows.
func hitKey(m *wtable, swept *int64, key string, atN, width int64) int64 {
	if key == "" {
		return 0
	}
	b := floorDiv(atN, width)
	switch {
	case b-*swept >= w32Buckets-1:
		// Entries are at most b-swept+1 windows old; past the bucket
		// counter's range they would alias, and they are all stale anyway.
		*m = wtable{}
		*swept = b
	case b > *swept+1:
		m.rebuild(16, func(w window32) bool { return w.age(b) < 2 })
		*swept = b
	}
	return m.hit(hashKey(key), atN, width)
}

// scheme returns the ladder and invitee reward of an inviter's variant.
func scheme(c *Campaign, variant uint8) ([]Tier, *Reward) {
	tiers, invitee := c.InviterRewards, c.InviteeReward
	if k := int(variant); k > 0 && k <= len(c.Variants) {
		v := &c.Variants[k-1]
		if v.InviterRewards != nil {
			tiers = v.InviterRewards
		}
		if v.InviteeReward != nil {
			invitee = v.InviteeReward
		}
	}
	return tiers, invitee
}

func (cs *campState) fits(v int64) bool {
	return cs.c.Budget == nil || cs.st.spent+v <= cs.c.Budget.Value
}

// reward counts a successful invite for the registration at p and grants its
// rewards whole, or caps it.
func (s *state) reward(cs *campState, p uint32, at time.Time) {
	r := &s.regs[p]
	c := cs.c
	inv := &cs.inviters[r.inviter-1]
	inv.invites++
	// After settlement (a hold released late) the team PK and the lottery
	// are decided: team totals and lottery entries no longer change.
	if cs.settled == nil || s.rules < 1 {
		if inv.team > 0 {
			t := &cs.teams[inv.team-1]
			t.total++
			t.reached = s.seq
		}
		if c.Lottery != nil && inv.flags&flagLottery == 0 && int64(inv.invites) >= c.Lottery.After {
			inv.flags |= flagLottery
			cs.lottery = append(cs.lottery, r.inviter)
		}
	}
	tiers, inviteeR := scheme(c, inv.variant)
	_, iv := tierFor(tiers, int64(inv.invites))
	var ev int64
	if inviteeR != nil {
		ev = inviteeR.Value
	}
	atN := at.UnixNano()
	// The day only moves forward: entry time is the leader's clock and may
	// go back after a leader change; a late stamp counts into the newest day
	// (over-counting, never under-counting: I2).
	if day := uint16(floorDiv(atN, dayNs)); day > inv.day || (s.rules < 1 && day != inv.day) {
		inv.day, inv.dayCount = day, 0
	}
	capped := rsNone
	switch {
	case c.PerInviterCap > 0 && int64(inv.rewarded) >= c.PerInviterCap:
		capped = rsInviterCap
	case c.PerInviterDailyCap > 0 && int64(inv.dayCount) >= c.PerInviterDailyCap:
		capped = rsDailyCap
	case c.Budget != nil && c.Budget.Count > 0 && cs.st.rewarded >= c.Budget.Count:
		capped = rsBudgetCount
	case !cs.fits(iv + ev):
		capped = rsBudget
	}
	if capped != rsNone {
		r.status, r.reason = stCapped, capped
		cs.st.capped++
		return
	}
	r.status, r.invVal, r.inveeVal = stRewarded, iv, ev
	cs.st.rewarded++
	cs.st.spent += iv + ev
	inv.rewarded++
	inv.dayCount = min(inv.dayCount+1, 0xffff)
	inv.value += iv
	var vc *varCounters
	if k := int(inv.variant); k > 0 && k <= len(cs.variants) {
		vc = &cs.variants[k-1]
		vc.rewarded++
		vc.value += iv + ev
	}
	for i, t := range c.Tasks {
		if inv.tasks&(1<<i) != 0 || int64(inv.invites) < t.Invites || inv.firstLink == 0 ||
			(int64(unixSeconds(at))-int64(inv.firstLink))*int64(time.Second) > int64(t.Within) || !cs.fits(t.Bonus.Value) {
			continue
		}
		inv.tasks |= 1 << i
		if t.Bonus.Value == 0 {
			continue
		}
		cs.st.spent += t.Bonus.Value
		inv.value += t.Bonus.Value
		if vc != nil {
			vc.value += t.Bonus.Value
		}
		s.regExtra[p] = append(s.regExtra[p], Grant{User: s.names.get(inv.name), Role: RoleTask, Value: t.Bonus.Value})
	}
}

func (s *state) review(v Review, index uint64, at time.Time) []byte {
	p, ok := s.findReg(v.RegistrationID)
	if !ok {
		return encodeError(fmt.Errorf("%w: registration %q", ErrNotFound, v.RegistrationID))
	}
	r := &s.regs[p]
	if r.status != stHeld {
		return encodeError(fmt.Errorf("%w: registration %q is %s, not held", ErrConflict, v.RegistrationID, statusCodes[r.status]))
	}
	cs := s.camps[r.camp-1]
	cs.st.held--
	r.at, r.index, r.reason = at.UnixNano(), index, rsNone
	if v.Action == ActionReject {
		r.status, r.reason = stRejected, rsReview
		cs.st.rejected++
	} else {
		s.reward(cs, p, at)
	}
	d := s.decision(p)
	if s.watch {
		n := d
		n.Review = true
		s.notes = append(s.notes, n)
	}
	return encodeDecision(CmdReview, &d)
}

// decision renders the stored registration at p.
func (s *state) decision(p uint32) Decision {
	r := &s.regs[p]
	d := Decision{
		ID:        s.regID(p),
		Status:    statusCodes[r.status],
		Reason:    reasonNames[r.reason],
		Invitee:   s.names.get(r.invitee),
		DecidedAt: time.Unix(0, r.at).UTC(),
		Index:     r.index,
	}
	if r.camp == 0 {
		d.Campaign = s.regCamp[p]
	} else {
		cs := s.camps[r.camp-1]
		d.Campaign = cs.c.ID
		if r.inviter > 0 {
			d.Inviter = s.names.get(cs.inviters[r.inviter-1].name)
		}
	}
	if r.status == stDup {
		d.DuplicateOf = s.regID(s.regDup[p])
	}
	extra := s.regExtra[p]
	if r.invVal > 0 || r.inveeVal > 0 || len(extra) > 0 {
		d.Grants = make([]Grant, 0, 2+len(extra))
		if r.invVal > 0 {
			d.Grants = append(d.Grants, Grant{User: d.Inviter, Role: RoleInviter, Value: r.invVal})
		}
		if r.inveeVal > 0 {
			d.Grants = append(d.Grants, Grant{User: d.Invitee, Role: RoleInvitee, Value: r.inveeVal})
		}
		d.Grants = append(d.Grants, extra...)
	}
	return d
}

// settleDue settles, in campaign-number order, every unsettled campaign whose
// ends_at is at or before at.
func (s *state) settleDue(index uint64, at time.Time) {
	for _, cs := range s.camps {
		if cs.settled == nil && !at.Before(cs.c.EndsAt) {
			s.settle(cs, index, at)
		}
	}
	s.computeNextEnd()
}

// settle awards the team PK and draws the lottery of one campaign.
func (s *state) settle(cs *campState, index uint64, at time.Time) {
	c := cs.c
	st := &Settlement{At: at, Index: index}
	grant := func(p uint32, role string, v int64) {
		if v <= 0 || !cs.fits(v) {
			return
		}
		inv := &cs.inviters[p]
		cs.st.spent += v
		inv.value += v
		st.Grants = append(st.Grants, Grant{User: s.names.get(inv.name), Role: role, Value: v})
	}
	if c.Teams != nil {
		best := -1
		for i, t := range cs.teams {
			if t.total == 0 {
				continue
			}
			if best < 0 || t.total > cs.teams[best].total || (t.total == cs.teams[best].total && t.reached < cs.teams[best].reached) {
				best = i
			}
		}
		if best >= 0 {
			st.WinningTeam = cs.teams[best].name
			for p := range cs.inviters {
				if int(cs.inviters[p].team) == best+1 {
					grant(uint32(p), RoleTeam, c.Teams.Award.Value)
				}
			}
		}
	}
	if c.Lottery != nil && len(cs.lottery) > 0 {
		src := rand.NewPCG(index, uint64(c.Number))
		pool := slices.Clone(cs.lottery)
		for _, pr := range c.Lottery.Prizes {
			for k := int64(0); k < pr.Count && len(pool) > 0; k++ {
				j := bounded(src, uint64(len(pool)))
				w := pool[j]
				pool[j] = pool[len(pool)-1]
				pool = pool[:len(pool)-1]
				st.LotteryWinners = append(st.LotteryWinners, s.names.get(cs.inviters[w-1].name))
				grant(w-1, RoleLottery, pr.Value)
			}
		}
	}
	cs.settled = st
	if s.watch {
		s.notes = append(s.notes, Decision{
			ID: SettlementPrefix + c.ID, Status: StatusRewarded, Reason: "settlement", Campaign: c.ID,
			Grants: slices.Clone(st.Grants), DecidedAt: at, Index: index,
		})
	}
}

// SettlementPrefix starts the ID of the Decision the observer gets for a
// campaign's settlement ("settlement:<campaign id>").
const SettlementPrefix = "settlement:"

// bounded returns a uniform number in [0, n) from src by rejection sampling
// (so the draw depends only on the PCG-DXSM output, not on library internals).
func bounded(src *rand.PCG, n uint64) uint64 {
	thresh := -n % n
	for {
		if x := src.Uint64(); x >= thresh {
			return x % n
		}
	}
}
