package ledger

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// testLedger wraps a Ledger with a raft-like index counter.
type testLedger struct {
	*Ledger
	tb    testing.TB
	index uint64
	ids   int
}

func newTestLedger(tb testing.TB) *testLedger {
	tb.Helper()
	return &testLedger{Ledger: New(), tb: tb}
}

// apply applies cmds as one entry at time at and returns the raw results.
func (l *testLedger) apply(at time.Time, cmds ...[]byte) [][]byte {
	l.index++
	return l.ApplyBatch(l.index, at, cmds)
}

// do applies one command and decodes its result.
func (l *testLedger) do(at time.Time, cmd []byte) (Result, error) {
	return DecodeResult(l.apply(at, cmd)[0])
}

func (l *testLedger) mustDo(at time.Time, cmd []byte) Result {
	l.tb.Helper()
	res, err := l.do(at, cmd)
	if err != nil {
		l.tb.Fatalf("apply %s: %v", CommandType(cmd[1]), err)
	}
	return res
}

func (l *testLedger) put(c Campaign) PutResult {
	l.tb.Helper()
	return l.mustDo(t0, EncodePutCampaign(c)).Put
}

func (l *testLedger) link(at time.Time, campaign, inviter string) LinkResult {
	l.tb.Helper()
	return l.mustDo(at, EncodeIssueLink(IssueLink{Campaign: campaign, Inviter: inviter})).Link
}

// reg registers invitee through inviter's number with a fresh id; device and
// IP are unique unless set in r.
func (l *testLedger) reg(at time.Time, r Register) Decision {
	l.tb.Helper()
	l.ids++
	if r.ID == "" {
		r.ID = fmt.Sprintf("reg-%d", l.ids)
	}
	if r.Device == "" {
		r.Device = fmt.Sprintf("dev-%d", l.ids)
	}
	if r.IP == "" {
		r.IP = fmt.Sprintf("10.0.%d.%d", l.ids/256, l.ids%256)
	}
	if r.AckAt.IsZero() {
		r.AckAt = at
	}
	return l.mustDo(at, EncodeRegister(r)).Decision
}

func (l *testLedger) snapshot() []byte {
	l.tb.Helper()
	var b bytes.Buffer
	if err := l.Snapshot(&b); err != nil {
		l.tb.Fatalf("snapshot: %v", err)
	}
	return b.Bytes()
}

// baseCampaign runs for 30 days from t0-1h with a ladder, invitee reward and budget.
func baseCampaign(id string) Campaign {
	return Campaign{
		ID:            id,
		Destination:   "https://live.example.com/room/1",
		AllowedHosts:  []string{"live.example.com"},
		StartsAt:      t0.Add(-time.Hour),
		EndsAt:        t0.Add(30 * 24 * time.Hour),
		Budget:        &Budget{Value: 100000},
		InviteeReward: &Reward{Value: 10},
		InviterRewards: []Tier{
			{From: 1, To: 3, Value: 10},
			{From: 4, To: 10, Value: 20},
			{From: 11, Value: 50},
		},
		PerInviterCap:    20,
		AttributionModel: ModelLastClick,
	}
}

func sumGrants(gs []Grant) int64 {
	var v int64
	for _, g := range gs {
		v += g.Value
	}
	return v
}

// fsm is cluster.FSM, restated here because ledger must not import cluster.
type fsm interface {
	ApplyBatch(index uint64, at time.Time, cmds [][]byte) [][]byte
	Snapshot(w io.Writer) error
	Restore(r io.Reader) error
}

var _ fsm = (*Ledger)(nil)

// newRulesLedger is a test ledger whose rules level was raised to level
// through the log, as a cluster raises it.
func newRulesLedger(tb testing.TB, level uint8) *testLedger {
	tb.Helper()
	l := newTestLedger(tb)
	if level > 0 {
		l.mustDo(time.Unix(0, 0), EncodeSetRules(level))
	}
	return l
}
