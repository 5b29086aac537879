package ledger

import "slices"

// Stats are a campaign's counters. Held counts registrations currently held;
// BudgetLeft is -1 when the campaign has no value budget.
type Stats struct {
	Links         int64          `json:"links"`
	Inviters      int64          `json:"inviters"`
	Registrations int64          `json:"registrations"`
	Rewarded      int64          `json:"rewarded"`
	Duplicates    int64          `json:"duplicates"`
	Capped        int64          `json:"capped"`
	Held          int64          `json:"held"`
	Rejected      int64          `json:"rejected"`
	BudgetSpent   int64          `json:"budget_spent"`
	BudgetLeft    int64          `json:"budget_left"`
	Settled       bool           `json:"settled"`
	Variants      []VariantStats `json:"variants,omitempty"`
	Teams         []TeamStats    `json:"teams,omitempty"`
}

// VariantStats are the counters of one A/B variant. Value includes task bonuses.
type VariantStats struct {
	Name          string `json:"name"`
	Links         int64  `json:"links"`
	Registrations int64  `json:"registrations"`
	Rewarded      int64  `json:"rewarded"`
	Value         int64  `json:"value"`
}

// TeamStats are a team's members and total successful invites.
type TeamStats struct {
	Name    string `json:"name"`
	Members int64  `json:"members"`
	Total   int64  `json:"total"`
}

// Progress is an inviter's standing in a campaign (API.md shape). Invites
// counts successful invites (rewarded or capped); Tier is the 1-based ladder
// tier of that count (0: none).
type Progress struct {
	Invites  int64 `json:"invites"`
	Rewarded int64 `json:"rewarded"`
	Value    int64 `json:"value"`
	Tier     int   `json:"tier"`
}

// Campaigns returns the current immutable campaign table without locking.
func (l *Ledger) Campaigns() *Table { return l.table.Load() }

// Campaign returns a copy of the campaign with its stats. Slices inside the
// returned Campaign are shared and must not be modified.
func (l *Ledger) Campaign(id string) (Campaign, Stats, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	cs := l.st.campaign(id)
	if cs == nil {
		return Campaign{}, Stats{}, false
	}
	c := cs.c
	st := Stats{
		Links: cs.st.links, Inviters: int64(len(cs.inviters)), Registrations: cs.st.regs,
		Rewarded: cs.st.rewarded, Duplicates: cs.st.dups, Capped: cs.st.capped, Held: cs.st.held,
		Rejected: cs.st.rejected, BudgetSpent: cs.st.spent, BudgetLeft: -1, Settled: cs.settled != nil,
	}
	if c.Budget != nil {
		st.BudgetLeft = max(c.Budget.Value-cs.st.spent, 0)
	}
	for i, v := range c.Variants {
		vc := cs.variants[i]
		st.Variants = append(st.Variants, VariantStats{Name: v.Name, Links: vc.links, Registrations: vc.regs, Rewarded: vc.rewarded, Value: vc.value})
	}
	for _, t := range cs.teams {
		st.Teams = append(st.Teams, TeamStats{Name: t.name, Members: t.members, Total: t.total})
	}
	return *c, st, true
}

// CampaignNumber returns the number assigned to campaign id.
func (l *Ledger) CampaignNumber(id string) (uint16, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n, ok := l.st.campIdx[id]
	return n, ok
}

// InviterName returns the name of inviter number inviter in campaign number campaign.
func (l *Ledger) InviterName(campaign uint16, inviter uint32) (string, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	s := l.st
	if campaign == 0 || int(campaign) > len(s.camps) {
		return "", false
	}
	cs := s.camps[campaign-1]
	if inviter == 0 || int(inviter) > len(cs.inviters) {
		return "", false
	}
	return s.names.get(cs.inviters[inviter-1].name), true
}

// InviterNumber returns the number of an inviter in a campaign.
func (l *Ledger) InviterNumber(campaign, inviter string) (uint32, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	cs := l.st.campaign(campaign)
	if cs == nil {
		return 0, false
	}
	p, ok := l.st.findInviter(cs, inviter)
	return p + 1, ok
}

// Progress returns an inviter's progress in a campaign.
func (l *Ledger) Progress(campaign, inviter string) (Progress, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	cs := l.st.campaign(campaign)
	if cs == nil {
		return Progress{}, false
	}
	p, ok := l.st.findInviter(cs, inviter)
	if !ok {
		return Progress{}, false
	}
	inv := &cs.inviters[p]
	tiers, _ := scheme(cs.c, inv.variant)
	tier, _ := tierFor(tiers, int64(inv.invites))
	return Progress{Invites: int64(inv.invites), Rewarded: int64(inv.rewarded), Value: inv.value, Tier: tier}, true
}

// Registration returns the decision of a registration by its id.
func (l *Ledger) Registration(id string) (Decision, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	p, ok := l.st.findReg(id)
	if !ok {
		return Decision{}, false
	}
	return l.st.decision(p), true
}

// RegistrationFor returns the registration that attributed invitee in the
// campaign (rewarded, capped, held, or rejected on review).
func (l *Ledger) RegistrationFor(campaign, invitee string) (Decision, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	cs := l.st.campaign(campaign)
	if cs == nil {
		return Decision{}, false
	}
	p, ok := l.st.findInvitee(cs, invitee)
	if !ok {
		return Decision{}, false
	}
	return l.st.decision(p), true
}

// Settlement returns a campaign's settlement once it has ended and settled.
func (l *Ledger) Settlement(campaign string) (Settlement, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	cs := l.st.campaign(campaign)
	if cs == nil || cs.settled == nil {
		return Settlement{}, false
	}
	st := *cs.settled
	st.Grants = slices.Clone(st.Grants)
	st.LotteryWinners = slices.Clone(st.LotteryWinners)
	return st, true
}

// LastIndex returns the raft index of the last applied entry (or of the
// restored snapshot).
func (l *Ledger) LastIndex() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.st.index
}
