package ledger

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const apiExample = `{
  "id": "spring-live",
  "destination": "https://live.example.com/room/42",
  "allowed_hosts": ["live.example.com"],
  "starts_at": "2026-11-21T00:00:00Z", "ends_at": "2026-12-21T00:00:00Z",
  "budget": {"value": 100000},
  "invitee_reward": {"value": 10},
  "inviter_rewards": [{"from": 1, "to": 3, "value": 10}, {"from": 4, "to": 10, "value": 20}, {"from": 11, "value": 50}],
  "per_inviter_cap": 20,
  "attribution_window": "168h",
  "attribution_model": "last_click"
}`

var parseCases = []struct {
	name    string
	in      string
	wantErr string // substring naming the field; "" for success
}{
	{"api example", apiExample, ""},
	{"all blocks", `{"id":"x","starts_at":"2026-11-21T00:00:00+08:00","ends_at":"2026-12-21T00:00:00Z",
	  "lottery":{"after":3,"prizes":[{"value":100,"count":1}]},
	  "tasks":[{"name":"fast5","invites":5,"within":"24h","bonus":{"value":30}}],
	  "teams":{"award":{"value":50}},
	  "variants":[{"name":"A","weight":50,"inviter_rewards":[{"from":1,"value":5}],"invitee_reward":{"value":1}},{"name":"B","weight":50}],
	  "segments":["vip"], "rules":{"any":[1,2]},
	  "fraud":{"max_per_inviter_per_hour":5,"max_per_ip_per_hour":-1,"max_per_device_per_day":2,"min_click_to_register":"3s"}}`, ""},
	{"unknown field", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","bogus":1}`, "bogus"},
	{"trailing data", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z"} {}`, "trailing"},
	{"not json", `{`, "invalid campaign"},
	{"missing id", `{"starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z"}`, "id"},
	{"missing start", `{"id":"x","ends_at":"2026-12-21T00:00:00Z"}`, "starts_at"},
	{"end past year 9999 in UTC", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"9999-12-31T23:00:00-05:00"}`, "ends_at"},
	{"end before start", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-11-20T00:00:00Z"}`, "ends_at"},
	{"negative budget", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","budget":{"value":-1}}`, "budget.value"},
	{"negative budget count", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","budget":{"value":1,"count":-1}}`, "budget.count"},
	{"huge value", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","invitee_reward":{"value":9007199254740993}}`, "invitee_reward.value"},
	{"overlapping tiers", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","inviter_rewards":[{"from":1,"to":3,"value":1},{"from":3,"value":2}]}`, "inviter_rewards[1].from"},
	{"descending tiers", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","inviter_rewards":[{"from":5,"to":6,"value":1},{"from":1,"to":2,"value":2}]}`, "inviter_rewards[1].from"},
	{"open tier not last", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","inviter_rewards":[{"from":1,"value":1},{"from":5,"value":2}]}`, "inviter_rewards[0].to"},
	{"tier to below from", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","inviter_rewards":[{"from":4,"to":2,"value":1}]}`, "inviter_rewards[0].to"},
	{"tier from zero", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","inviter_rewards":[{"from":0,"value":1}]}`, "inviter_rewards[0].from"},
	{"negative tier value", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","inviter_rewards":[{"from":1,"value":-1}]}`, "inviter_rewards[0].value"},
	{"negative cap", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","per_inviter_cap":-1}`, "per_inviter_cap"},
	{"negative daily cap", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","per_inviter_daily_cap":-1}`, "per_inviter_daily_cap"},
	{"negative window", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","attribution_window":"-1h"}`, "attribution_window"},
	{"bad window", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","attribution_window":"week"}`, "attribution_window"},
	{"bad model", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","attribution_model":"linear"}`, "attribution_model"},
	{"lottery after", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","lottery":{"after":0,"prizes":[{"value":1,"count":1}]}}`, "lottery.after"},
	{"lottery no prizes", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","lottery":{"after":1}}`, "lottery.prizes"},
	{"lottery count", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","lottery":{"after":1,"prizes":[{"value":1,"count":0}]}}`, "lottery.prizes[0].count"},
	{"task within", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","tasks":[{"name":"t","invites":1,"within":"0s","bonus":{"value":1}}]}`, "tasks[0].within"},
	{"task dup", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","tasks":[{"name":"t","invites":1,"within":"1h","bonus":{"value":1}},{"name":"t","invites":2,"within":"1h","bonus":{"value":1}}]}`, "tasks[1].name"},
	{"team award", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","teams":{"award":{"value":-5}}}`, "teams.award.value"},
	{"variant weight", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","variants":[{"name":"A","weight":0}]}`, "variants[0].weight"},
	{"variant ladder", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","variants":[{"name":"A","weight":1,"inviter_rewards":[{"from":0,"value":1}]}]}`, "variants[0].inviter_rewards[0].from"},
	{"empty segment", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","segments":[""]}`, "segments[0]"},
	{"type mismatch", `{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z","per_inviter_cap":"ten"}`, "per_inviter_cap"},
}

func TestParseCampaign(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCampaign([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseCampaign succeeded, want error naming %q", tc.wantErr)
				}
				if !errors.Is(err, ErrInvalidCampaign) {
					t.Errorf("error %v does not wrap ErrInvalidCampaign", err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not name %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCampaign: %v", err)
			}
			if c.AttributionWindow <= 0 || c.AttributionModel == "" {
				t.Errorf("defaults not applied: %+v", c)
			}
			if c.StartsAt.Location() != time.UTC {
				t.Errorf("starts_at not in UTC: %v", c.StartsAt)
			}
			// Round trip: encoding and parsing again gives the same canonical form.
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			c2, err := ParseCampaign(b)
			if err != nil {
				t.Fatalf("reparse %s: %v", b, err)
			}
			if string(c.canonical()) != string(c2.canonical()) {
				t.Errorf("round trip changed the campaign:\n%s\n%s", c.canonical(), c2.canonical())
			}
		})
	}
}

func TestParseCampaignDefaults(t *testing.T) {
	c, err := ParseCampaign([]byte(`{"id":"x","starts_at":"2026-11-21T00:00:00Z","ends_at":"2026-12-21T00:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.AttributionWindow) != DefaultAttributionWindow || c.AttributionModel != ModelLastClick {
		t.Errorf("defaults = %v %q", time.Duration(c.AttributionWindow), c.AttributionModel)
	}
	b, _ := json.Marshal(c)
	if !strings.Contains(string(b), `"attribution_window":"168h0m0s"`) {
		t.Errorf("window not encoded as a duration string: %s", b)
	}
}

func TestTierFor(t *testing.T) {
	tiers := baseCampaign("x").InviterRewards
	tests := []struct {
		n         int64
		tier      int
		wantValue int64
	}{{0, 0, 0}, {1, 1, 10}, {3, 1, 10}, {4, 2, 20}, {10, 2, 20}, {11, 3, 50}, {1000, 3, 50}}
	for _, tc := range tests {
		tier, v := tierFor(tiers, tc.n)
		if tier != tc.tier || v != tc.wantValue {
			t.Errorf("tierFor(%d) = %d, %d; want %d, %d", tc.n, tier, v, tc.tier, tc.wantValue)
		}
	}
}

func TestTable(t *testing.T) {
	var nilTable *Table
	if nilTable.ByNumber(1) != nil || nilTable.ByID("x") != nil || nilTable.Len() != 0 {
		t.Fatal("nil table not empty")
	}
	l := newTestLedger(t)
	before := l.Campaigns()
	l.put(baseCampaign("a"))
	l.put(baseCampaign("b"))
	tab := l.Campaigns()
	if tab == before || before.Len() != 0 {
		t.Fatal("table not republished on change")
	}
	if tab.Len() != 2 || tab.ByNumber(2).ID != "b" || tab.ByID("a").Number != 1 || tab.ByNumber(3) != nil || tab.ByNumber(0) != nil {
		t.Fatalf("table = %+v", tab)
	}
	l.link(t0, "a", "u1") // not a campaign change
	if l.Campaigns() != tab {
		t.Error("table republished without a campaign change")
	}
}

func FuzzParseCampaign(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseCampaign(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidCampaign) {
				t.Fatalf("error %v does not wrap ErrInvalidCampaign", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed campaign fails Validate: %v", err)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseCampaign(b)
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if string(c.canonical()) != string(c2.canonical()) {
			t.Fatalf("round trip changed the campaign")
		}
	})
}
