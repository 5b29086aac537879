package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"time"
)

// Campaign defaults applied by ParseCampaign and by PutCampaign.
const (
	DefaultAttributionWindow = 7 * 24 * time.Hour
	ModelLastClick           = "last_click"
	ModelFirstClick          = "first_click"

	maxName     = 255 // bytes in an id, inviter, invitee, team or segment name
	maxTasks    = 8
	maxVariants = 7
	maxPrizes   = 10000 // total lottery draws
)

// Campaign is a referral campaign as the admin API carries it (JSON names as in
// API.md) plus the Number and Version the ledger assigns. A *Campaign obtained
// from the ledger (Table, Campaign) is shared and must not be modified.
//
// Putting a campaign with an existing id replaces it and keeps its state:
//   - Budget and caps may be lowered below what is already used (to stop
//     a campaign's spending, say): nothing granted is taken back, the
//     budget's remaining value reads 0, and no further grant is made until
//     the limits are raised above what is used. The invariants build
//     checks that use never grows beyond the limits in force.
//   - Tasks are matched by name: a task an inviter has done stays done
//     whatever its new position; a task removed and added back later is a
//     new task.
//   - Variants are matched by position, which inviters and their share
//     codes carry: existing variants keep their names and order (else
//     ErrConflict). New variants may be added at the end; variants removed
//     from the end leave their inviters on the campaign's scheme, and their
//     positions cannot be filled again while inviters hold them.
//   - A settled campaign stays settled: moving its ends_at later is
//     ErrConflict (create a new campaign instead).
type Campaign struct {
	ID                 string          `json:"id"`
	Destination        string          `json:"destination,omitempty"`
	AllowedHosts       []string        `json:"allowed_hosts,omitempty"`
	StartsAt           time.Time       `json:"starts_at"`
	EndsAt             time.Time       `json:"ends_at"`
	Budget             *Budget         `json:"budget,omitempty"`
	InviteeReward      *Reward         `json:"invitee_reward,omitempty"`
	InviterRewards     []Tier          `json:"inviter_rewards,omitempty"`
	PerInviterCap      int64           `json:"per_inviter_cap,omitempty"`
	PerInviterDailyCap int64           `json:"per_inviter_daily_cap,omitempty"`
	AttributionWindow  Duration        `json:"attribution_window,omitempty"`
	AttributionModel   string          `json:"attribution_model,omitempty"`
	Lottery            *Lottery        `json:"lottery,omitempty"`
	Tasks              []Task          `json:"tasks,omitempty"`
	Teams              *Teams          `json:"teams,omitempty"`
	Variants           []Variant       `json:"variants,omitempty"`
	Segments           []string        `json:"segments,omitempty"`
	Rules              json.RawMessage `json:"rules,omitempty"`
	Fraud              *Fraud          `json:"fraud,omitempty"`
	Number             uint16          `json:"number,omitempty"`
	Version            uint64          `json:"version,omitempty"`
}

// Budget caps a campaign's grants: Value is the total value (minor units) and
// Count, when > 0, the number of rewarded registrations. A campaign without a
// budget block has no budget limit.
type Budget struct {
	Value int64 `json:"value"`
	Count int64 `json:"count,omitempty"`
}

// Reward is a value in minor units with an optional coupon id.
type Reward struct {
	Value  int64  `json:"value"`
	Coupon string `json:"coupon,omitempty"`
}

// Tier is one step of the inviter ladder: the reward for the From-th to the
// To-th successful invite (To 0: no upper end; only the last tier may be open).
type Tier struct {
	From   int64  `json:"from"`
	To     int64  `json:"to,omitempty"`
	Value  int64  `json:"value"`
	Coupon string `json:"coupon,omitempty"`
}

// Lottery gives an inviter one entry on reaching After successful invites;
// prizes are drawn at settlement.
type Lottery struct {
	After  int64   `json:"after"`
	Prizes []Prize `json:"prizes"`
}

// Prize is Count prizes of Value each.
type Prize struct {
	Value int64 `json:"value"`
	Count int64 `json:"count"`
}

// Task unlocks Bonus once when an inviter reaches Invites successful invites
// within Within of their first link.
type Task struct {
	Name    string   `json:"name"`
	Invites int64    `json:"invites"`
	Within  Duration `json:"within"`
	Bonus   Reward   `json:"bonus"`
}

// Teams enables team PK: members of the winning team get Award at settlement.
type Teams struct {
	Award Reward `json:"award"`
}

// Variant is an A/B reward scheme. Nil InviterRewards or InviteeReward fall
// back to the campaign's.
type Variant struct {
	Name           string  `json:"name"`
	Weight         uint32  `json:"weight"`
	InviterRewards []Tier  `json:"inviter_rewards,omitempty"`
	InviteeReward  *Reward `json:"invitee_reward,omitempty"`
}

// Fraud configures the holds. Zero (or omitted) means the default
// (DefaultFraud); a negative value disables the check.
type Fraud struct {
	MaxPerInviterPerHour int64    `json:"max_per_inviter_per_hour,omitempty"`
	MaxPerIPPerHour      int64    `json:"max_per_ip_per_hour,omitempty"`
	MaxPerDevicePerDay   int64    `json:"max_per_device_per_day,omitempty"`
	MinClickToRegister   Duration `json:"min_click_to_register,omitempty"`
}

// DefaultFraud returns the fraud limits used where a campaign leaves them
// zero: 100 registrations per inviter per hour, 20 per IP per hour, 3 per
// device per day, and at least 2s from click to registration.
func DefaultFraud() Fraud {
	return Fraud{
		MaxPerInviterPerHour: 100,
		MaxPerIPPerHour:      20,
		MaxPerDevicePerDay:   3,
		MinClickToRegister:   Duration(2 * time.Second),
	}
}

func (f *Fraud) effective() Fraud {
	e := DefaultFraud()
	if f == nil {
		return e
	}
	if f.MaxPerInviterPerHour != 0 {
		e.MaxPerInviterPerHour = f.MaxPerInviterPerHour
	}
	if f.MaxPerIPPerHour != 0 {
		e.MaxPerIPPerHour = f.MaxPerIPPerHour
	}
	if f.MaxPerDevicePerDay != 0 {
		e.MaxPerDevicePerDay = f.MaxPerDevicePerDay
	}
	if f.MinClickToRegister != 0 {
		e.MinClickToRegister = f.MinClickToRegister
	}
	return e
}

// Duration is a time.Duration that travels in JSON as a Go duration string
// ("168h", "3s").
type Duration time.Duration

// MarshalJSON encodes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON decodes a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	// An *json.UnmarshalTypeError gets the field name added by encoding/json.
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: "non-string (want a duration like \"168h\")", Type: reflect.TypeFor[Duration]()}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("string %q (want a duration like \"168h\")", s), Type: reflect.TypeFor[Duration]()}
	}
	*d = Duration(v)
	return nil
}

// ParseCampaign decodes a campaign strictly (unknown fields and trailing data
// are errors), applies the defaults and validates the reward parts. Errors
// wrap ErrInvalidCampaign and name the field.
func ParseCampaign(raw []byte) (Campaign, error) {
	var c Campaign
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Campaign{}, fmt.Errorf("%w: %w", ErrInvalidCampaign, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Campaign{}, fmt.Errorf("%w: trailing data after the campaign object", ErrInvalidCampaign)
	}
	c.normalize()
	if err := c.Validate(); err != nil {
		return Campaign{}, err
	}
	return c, nil
}

// normalize applies the defaults and puts times in UTC.
func (c *Campaign) normalize() {
	if c.AttributionWindow == 0 {
		c.AttributionWindow = Duration(DefaultAttributionWindow)
	}
	if c.AttributionModel == "" {
		c.AttributionModel = ModelLastClick
	}
	c.StartsAt = c.StartsAt.UTC()
	c.EndsAt = c.EndsAt.UTC()
}

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidCampaign, field, fmt.Sprintf(format, args...))
}

// Validate checks the parts of a campaign the ledger relies on: id, times,
// budget, rewards, ladder, caps, attribution, lottery, tasks, teams, variants,
// segments and fraud. Destination, allowed hosts and rules are the node's to
// check. Errors wrap ErrInvalidCampaign and name the field.
func (c Campaign) Validate() error {
	if c.ID == "" || len(c.ID) > maxName {
		return fieldErr("id", "must be 1 to %d bytes", maxName)
	}
	if c.StartsAt.IsZero() {
		return fieldErr("starts_at", "is required")
	}
	if c.EndsAt.IsZero() {
		return fieldErr("ends_at", "is required")
	}
	if !c.EndsAt.After(c.StartsAt) {
		return fieldErr("ends_at", "must be after starts_at")
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"starts_at", c.StartsAt}, {"ends_at", c.EndsAt}} {
		if y := f.t.UTC().Year(); y < 1 || y > 9999 {
			return fieldErr(f.name, "%s is outside the years 1 to 9999 in UTC", f.t.Format(time.RFC3339))
		}
	}
	if b := c.Budget; b != nil {
		if err := checkMoney("budget.value", b.Value); err != nil {
			return err
		}
		if b.Count < 0 {
			return fieldErr("budget.count", "must be >= 0")
		}
	}
	if r := c.InviteeReward; r != nil {
		if err := checkMoney("invitee_reward.value", r.Value); err != nil {
			return err
		}
	}
	if err := validateLadder("inviter_rewards", c.InviterRewards); err != nil {
		return err
	}
	if c.PerInviterCap < 0 {
		return fieldErr("per_inviter_cap", "must be >= 0")
	}
	if c.PerInviterDailyCap < 0 || c.PerInviterDailyCap > 0xffff {
		return fieldErr("per_inviter_daily_cap", "must be between 0 and 65535")
	}
	if c.AttributionWindow < 0 {
		return fieldErr("attribution_window", "must be > 0")
	}
	switch c.AttributionModel {
	case "", ModelLastClick, ModelFirstClick:
	default:
		return fieldErr("attribution_model", "must be last_click or first_click, not %q", c.AttributionModel)
	}
	if l := c.Lottery; l != nil {
		if l.After < 1 {
			return fieldErr("lottery.after", "must be >= 1")
		}
		if len(l.Prizes) == 0 {
			return fieldErr("lottery.prizes", "must not be empty")
		}
		var total int64
		for i, p := range l.Prizes {
			if err := checkMoney(fmt.Sprintf("lottery.prizes[%d].value", i), p.Value); err != nil {
				return err
			}
			if p.Count < 1 {
				return fieldErr(fmt.Sprintf("lottery.prizes[%d].count", i), "must be >= 1")
			}
			total += p.Count
			if total > maxPrizes {
				return fieldErr("lottery.prizes", "at most %d prizes in total", maxPrizes)
			}
		}
	}
	if len(c.Tasks) > maxTasks {
		return fieldErr("tasks", "at most %d tasks", maxTasks)
	}
	for i, t := range c.Tasks {
		f := fmt.Sprintf("tasks[%d]", i)
		if t.Name == "" || len(t.Name) > maxName {
			return fieldErr(f+".name", "must be 1 to %d bytes", maxName)
		}
		for _, o := range c.Tasks[:i] {
			if o.Name == t.Name {
				return fieldErr(f+".name", "duplicate task %q", t.Name)
			}
		}
		if t.Invites < 1 {
			return fieldErr(f+".invites", "must be >= 1")
		}
		if t.Within <= 0 {
			return fieldErr(f+".within", "must be > 0")
		}
		if err := checkMoney(f+".bonus.value", t.Bonus.Value); err != nil {
			return err
		}
	}
	if t := c.Teams; t != nil {
		if err := checkMoney("teams.award.value", t.Award.Value); err != nil {
			return err
		}
	}
	if len(c.Variants) > maxVariants {
		return fieldErr("variants", "at most %d variants", maxVariants)
	}
	for i, v := range c.Variants {
		f := fmt.Sprintf("variants[%d]", i)
		if v.Name == "" || len(v.Name) > maxName {
			return fieldErr(f+".name", "must be 1 to %d bytes", maxName)
		}
		for _, o := range c.Variants[:i] {
			if o.Name == v.Name {
				return fieldErr(f+".name", "duplicate variant %q", v.Name)
			}
		}
		if v.Weight < 1 || v.Weight > 1_000_000 {
			return fieldErr(f+".weight", "must be 1 to 1000000")
		}
		if err := validateLadder(f+".inviter_rewards", v.InviterRewards); err != nil {
			return err
		}
		if r := v.InviteeReward; r != nil {
			if err := checkMoney(f+".invitee_reward.value", r.Value); err != nil {
				return err
			}
		}
	}
	for i, s := range c.Segments {
		if s == "" || len(s) > maxName {
			return fieldErr(fmt.Sprintf("segments[%d]", i), "must be 1 to %d bytes", maxName)
		}
	}
	if f := c.Fraud; f != nil {
		if f.MinClickToRegister > Duration(24*time.Hour) {
			return fieldErr("fraud.min_click_to_register", "must be at most 24h")
		}
		if f.MaxPerInviterPerHour > 60000 {
			return fieldErr("fraud.max_per_inviter_per_hour", "must be at most 60000")
		}
		if f.MaxPerIPPerHour > 1000 {
			return fieldErr("fraud.max_per_ip_per_hour", "must be at most 1000")
		}
		if f.MaxPerDevicePerDay > 1000 {
			return fieldErr("fraud.max_per_device_per_day", "must be at most 1000")
		}
	}
	return nil
}

// MaxValue bounds every money amount (minor units), so that sums never overflow.
const MaxValue = 1 << 50

func checkMoney(field string, v int64) error {
	if v < 0 || v > MaxValue {
		return fieldErr(field, "must be between 0 and %d", int64(MaxValue))
	}
	return nil
}

func validateLadder(field string, tiers []Tier) error {
	for i, t := range tiers {
		f := fmt.Sprintf("%s[%d]", field, i)
		if t.From < 1 {
			return fieldErr(f+".from", "must be >= 1")
		}
		if t.To != 0 && t.To < t.From {
			return fieldErr(f+".to", "must be >= from (or omitted for no upper end)")
		}
		if err := checkMoney(f+".value", t.Value); err != nil {
			return err
		}
		if i > 0 {
			p := tiers[i-1]
			if p.To == 0 {
				return fieldErr(fmt.Sprintf("%s[%d].to", field, i-1), "only the last tier may be open-ended")
			}
			if t.From <= p.To {
				return fieldErr(f+".from", "tiers must be ascending and must not overlap")
			}
		}
	}
	return nil
}

// tierFor returns the 1-based index and value of the tier containing n (0, 0
// when no tier does).
func tierFor(tiers []Tier, n int64) (int, int64) {
	for i, t := range tiers {
		if n >= t.From && (t.To == 0 || n <= t.To) {
			return i + 1, t.Value
		}
	}
	return 0, 0
}

// canonical returns the JSON of c without Number and Version, used to decide
// whether a PutCampaign changes the campaign.
func (c Campaign) canonical() []byte {
	c.Number, c.Version = 0, 0
	b, err := json.Marshal(c)
	if err != nil {
		// Every field is plain data or validated raw JSON; this cannot happen.
		return nil
	}
	return b
}

// Table is an immutable view of all campaigns, published through an atomic
// pointer on every campaign change, for lock-free reads on the redirect path.
// It and the campaigns it holds must not be modified.
type Table struct {
	byNumber []*Campaign // index number-1
	byID     map[string]*Campaign
}

// ByNumber returns the campaign with number n, or nil. Safe on a nil Table.
func (t *Table) ByNumber(n uint16) *Campaign {
	if t == nil || n == 0 || int(n) > len(t.byNumber) {
		return nil
	}
	return t.byNumber[n-1]
}

// ByID returns the campaign with id, or nil. Safe on a nil Table.
func (t *Table) ByID(id string) *Campaign {
	if t == nil {
		return nil
	}
	return t.byID[id]
}

// Len returns the number of campaigns.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.byNumber)
}
