package ledger

import (
	"testing"
	"time"
)

func TestAttributionModelInBatch(t *testing.T) {
	at := t0.Add(time.Hour)
	clickAgo := func(d time.Duration) time.Time { return at.Add(-d) }
	tests := []struct {
		name   string
		model  string
		clicks []time.Time // one registration per inviter 1..n, same invitee, one batch
		winner int         // index into clicks
	}{
		{"first click: earliest wins", ModelFirstClick, []time.Time{clickAgo(time.Minute), clickAgo(time.Hour - time.Second), clickAgo(10 * time.Minute)}, 1},
		{"last click: latest wins", ModelLastClick, []time.Time{clickAgo(time.Hour - time.Second), clickAgo(time.Minute), clickAgo(10 * time.Minute)}, 1},
		{"no click comes last", ModelLastClick, []time.Time{{}, clickAgo(time.Hour - time.Second)}, 1},
		{"ties keep batch order", ModelFirstClick, []time.Time{clickAgo(time.Minute), clickAgo(time.Minute)}, 0},
		{"all without click", ModelFirstClick, []time.Time{{}, {}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLedger(t)
			c := baseCampaign("c")
			c.AttributionModel = tc.model
			l.put(c)
			names := []string{"a", "b", "c", "d"}
			var cmds [][]byte
			for i, click := range tc.clicks {
				l.link(t0, "c", names[i])
				cmds = append(cmds, EncodeRegister(Register{ID: "r" + names[i], Campaign: "c", InviterNumber: uint32(i + 1), Invitee: "v", ClickAt: click, AckAt: at}))
			}
			// An unrelated registration in the middle keeps its place.
			cmds = append(cmds[:1], append([][]byte{EncodeRegister(Register{ID: "other", Campaign: "c", InviterNumber: 1, Invitee: "w", AckAt: at})}, cmds[1:]...)...)
			out := l.apply(at, cmds...)
			var decisions []Decision
			for _, o := range out {
				res, err := DecodeResult(o)
				if err != nil {
					t.Fatal(err)
				}
				decisions = append(decisions, res.Decision)
			}
			if decisions[1].ID != "other" || decisions[1].Status != StatusRewarded {
				t.Errorf("unrelated registration = %+v", decisions[1])
			}
			decisions = append(decisions[:1], decisions[2:]...)
			for i, d := range decisions {
				if d.ID != "r"+names[i] {
					t.Fatalf("result %d is %s: results out of place", i, d.ID)
				}
				want := StatusDup
				if i == tc.winner {
					want = StatusRewarded
				}
				if d.Status != want {
					t.Errorf("%s (inviter %s) = %s, want %s", d.ID, d.Inviter, d.Status, want)
				}
			}
			if d, _ := l.RegistrationFor("c", "v"); d.Inviter != names[tc.winner] {
				t.Errorf("attributed to %q, want %q", d.Inviter, names[tc.winner])
			}
		})
	}
}
