package ledger

import (
	"errors"
	"testing"
	"time"
)

func TestTypedResults(t *testing.T) {
	l := newTestLedger(t)
	put := l.apply(t0, EncodePutCampaign(baseCampaign("c")))[0]
	p, err := DecodePutCampaignResult(put)
	if err != nil || p.ID != "c" || p.Number != 1 || p.Version != 1 {
		t.Fatalf("DecodePutCampaignResult = %+v, %v", p, err)
	}
	if _, err := DecodeIssueLinkResult(put); !errors.Is(err, ErrMalformedResult) {
		t.Errorf("wrong type accepted: %v", err)
	}
	if _, _, ok := l.Inviter("c", "u1"); ok {
		t.Error("Inviter before any link")
	}
	l.mustDo(t0, EncodePutCampaign(func() Campaign { c := baseCampaign("c"); c.Teams = &Teams{}; return c }()))
	l.mustDo(t0, EncodeJoinTeam(JoinTeam{Campaign: "c", Inviter: "u1", Team: "red"}))
	if _, _, ok := l.Inviter("c", "u1"); ok {
		t.Error("Inviter known only from a team counts as linked")
	}
	lr, err := DecodeIssueLinkResult(l.apply(t0, EncodeIssueLink(IssueLink{Campaign: "c", Inviter: "u1"}))[0])
	if err != nil || lr.InviterNumber != 1 || !lr.New {
		t.Fatalf("DecodeIssueLinkResult = %+v, %v", lr, err)
	}
	if n, v, ok := l.Inviter("c", "u1"); !ok || n != 1 || v != lr.Variant {
		t.Errorf("Inviter = %d %d %v", n, v, ok)
	}
	d, err := DecodeDecision(l.apply(t0.Add(time.Minute), EncodeRegister(Register{ID: "r", Campaign: "c", InviterNumber: 1, Invitee: "v"}))[0])
	if err != nil || d.ID != "r" || d.Status != StatusRewarded {
		t.Errorf("DecodeDecision = %+v, %v", d, err)
	}
	if err := ResultError(l.apply(t0, EncodeJoinTeam(JoinTeam{Campaign: "zz", Inviter: "u", Team: "t"}))[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("ResultError = %v", err)
	}
	if err := ResultError(l.apply(t0, EncodeNoop())[0]); err != nil {
		t.Errorf("ResultError(noop) = %v", err)
	}
	if all := l.Campaigns().All(); len(all) != 1 || all[0].ID != "c" {
		t.Errorf("All = %v", all)
	}
}
