package ledger

import "fmt"

// ResultError returns the error a command result carries (wrapping one of the
// command sentinels), ErrMalformedResult wrapped for bytes that are not a
// result, or nil for a success.
func ResultError(b []byte) error {
	_, err := DecodeResult(b)
	return err
}

func decodeTyped(b []byte, want ...CommandType) (Result, error) {
	res, err := DecodeResult(b)
	if err != nil {
		return Result{}, err
	}
	for _, t := range want {
		if res.Type == t {
			return res, nil
		}
	}
	return Result{}, fmt.Errorf("%w: got a %s result, want %s", ErrMalformedResult, res.Type, want[0])
}

// DecodePutCampaignResult decodes the result of a PutCampaign.
func DecodePutCampaignResult(b []byte) (PutResult, error) {
	res, err := decodeTyped(b, CmdPutCampaign)
	return res.Put, err
}

// DecodeIssueLinkResult decodes the result of an IssueLink.
func DecodeIssueLinkResult(b []byte) (LinkResult, error) {
	res, err := decodeTyped(b, CmdIssueLink)
	return res.Link, err
}

// DecodeDecision decodes the result of a Register or a Review.
func DecodeDecision(b []byte) (Decision, error) {
	res, err := decodeTyped(b, CmdRegister, CmdReview)
	return res.Decision, err
}

// All returns the campaigns in number order. The slice is the caller's; the
// campaigns are shared and must not be modified. Safe on a nil Table.
func (t *Table) All() []*Campaign {
	if t == nil {
		return nil
	}
	return append([]*Campaign(nil), t.byNumber...)
}

// Inviter returns the number and variant of an inviter who has been issued a
// link in the campaign; ok is false otherwise (also for an inviter known only
// from JoinTeam, so that the caller issues the link and its time is recorded).
func (l *Ledger) Inviter(campaign, inviter string) (number uint32, variant uint8, ok bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	cs := l.st.campaign(campaign)
	if cs == nil {
		return 0, 0, false
	}
	p, found := l.st.findInviter(cs, inviter)
	if !found || cs.inviters[p].firstLink == 0 {
		return 0, 0, false
	}
	return p + 1, cs.inviters[p].variant, true
}
