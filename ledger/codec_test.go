package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"testing"
	"time"
)

func TestResultRoundTrip(t *testing.T) {
	d := Decision{
		ID: "01J0000000000000000000000A", Status: StatusRewarded, Reason: "", Campaign: "c", Inviter: "u1", Invitee: "v1",
		Grants:    []Grant{{User: "u1", Role: RoleInviter, Value: 10}, {User: "v1", Role: RoleInvitee, Value: 5}, {User: "u1", Role: RoleTask, Value: 1}},
		DecidedAt: t0, Index: 42,
	}
	tests := []struct {
		name string
		in   []byte
		want Result
	}{
		{"noop", encodeEmpty(CmdNoop), Result{Type: CmdNoop}},
		{"put", encodePut(PutResult{ID: "c", Number: 65535, Version: 7}), Result{Type: CmdPutCampaign, Put: PutResult{ID: "c", Number: 65535, Version: 7}}},
		{"link", encodeLink(LinkResult{InviterNumber: 1 << 31, Variant: 3, New: true}), Result{Type: CmdIssueLink, Link: LinkResult{InviterNumber: 1 << 31, Variant: 3, New: true}}},
		{"decision", encodeDecision(CmdRegister, &d), Result{Type: CmdRegister, Decision: d}},
		{"dup", encodeDecision(CmdReview, &Decision{ID: "x", Status: StatusDup, DuplicateOf: "y", DecidedAt: t0}), Result{Type: CmdReview, Decision: Decision{ID: "x", Status: StatusDup, DuplicateOf: "y", DecidedAt: t0}}},
		{"segments", encodeEmpty(CmdSetSegments), Result{Type: CmdSetSegments}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeResult(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			// Every strict prefix is malformed.
			for i := 0; i < len(tc.in); i++ {
				if _, err := DecodeResult(tc.in[:i]); !errors.Is(err, ErrMalformedResult) {
					t.Errorf("prefix %d: %v, want ErrMalformedResult", i, err)
				}
			}
			if _, err := DecodeResult(append(tc.in, 0)); !errors.Is(err, ErrMalformedResult) {
				t.Errorf("trailing byte: %v, want ErrMalformedResult", err)
			}
		})
	}
	for _, kind := range errKinds {
		_, err := DecodeResult(encodeError(errors.Join(kind)))
		if !errors.Is(err, kind) {
			t.Errorf("error result of %v decodes to %v", kind, err)
		}
	}
}

func TestULID(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"01ARZ3NDEKTSV4RRFFQ69G5FAV", true},
		{"7ZZZZZZZZZZZZZZZZZZZZZZZZZ", true},
		{"00000000000000000000000000", true},
		{"8ZZZZZZZZZZZZZZZZZZZZZZZZZ", false}, // overflows 128 bits
		{"01arz3ndektsv4rrffq69g5fav", false}, // not canonical
		{"01ARZ3NDEKTSV4RRFFQ69G5FA", false},
		{"01ARZ3NDEKTSV4RRFFQ69G5FAU", false}, // U is not Crockford
		{"", false},
	}
	for _, tc := range tests {
		id, ok := packULID(tc.in)
		if ok != tc.ok {
			t.Errorf("packULID(%q) ok = %v", tc.in, ok)
			continue
		}
		if ok && unpackULID(id) != tc.in {
			t.Errorf("round trip of %q = %q", tc.in, unpackULID(id))
		}
	}
}

func TestWindow(t *testing.T) {
	base := t0.Truncate(time.Hour).UnixNano()
	h := hourNs
	tests := []struct {
		name  string
		times []int64
		want  int64 // estimate after the last hit
	}{
		{"one", []int64{base}, 1},
		{"same bucket", []int64{base, base + 1, base + h/2}, 3},
		{"previous bucket weighted", []int64{base, base, base, base, base + h + h/2}, 1 + 2},
		{"previous bucket at start", []int64{base, base, base + h}, 3},
		{"two buckets later", []int64{base, base, base + 2*h}, 1},
		{"clock goes back", []int64{base + h, base}, 2},
	}
	for _, tc := range tests {
		var w window
		var est int64
		for _, at := range tc.times {
			_, est = w.hit(at, h)
		}
		if est != tc.want {
			t.Errorf("%s: estimate %d, want %d", tc.name, est, tc.want)
		}
	}
}

func TestSnapshotErrors(t *testing.T) {
	l := newTestLedger(t)
	l.put(baseCampaign("c"))
	l.link(t0, "c", "u1")
	good := l.snapshot()
	bad := func(f func([]byte)) []byte { b := bytes.Clone(good); f(b); return b }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrBadSnapshot},
		{"magic", bad(func(b []byte) { b[0] = 'X' }), ErrBadSnapshot},
		{"version", bad(func(b []byte) { b[9] = 3 }), ErrUnsupportedVersion},
		{"checksum", bad(func(b []byte) { b[len(b)-1] ^= 1 }), ErrBadSnapshot},
		{"body", bad(func(b []byte) { b[12] ^= 0x40 }), ErrBadSnapshot},
	}
	other := newTestLedger(t)
	other.put(baseCampaign("keep"))
	before := other.snapshot()
	for _, tc := range tests {
		if err := other.Restore(bytes.NewReader(tc.in)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if !bytes.Equal(other.snapshot(), before) {
			t.Fatalf("%s: failed restore changed the ledger", tc.name)
		}
	}
	if err := other.Restore(bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if other.Campaigns().ByID("c") == nil || other.Campaigns().ByID("keep") != nil {
		t.Error("restore did not republish the table")
	}
	if err := l.Snapshot(failWriter{}); err == nil {
		t.Error("snapshot to a failing writer succeeded")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func FuzzDecodeResult(f *testing.F) {
	d := Decision{ID: "x", Status: StatusCapped, Reason: "budget", Campaign: "c", Grants: []Grant{{User: "u", Role: RoleTeam, Value: 1}}}
	for _, s := range [][]byte{encodeEmpty(CmdNoop), encodePut(PutResult{ID: "c", Number: 1, Version: 2}), encodeLink(LinkResult{InviterNumber: 9}),
		encodeDecision(CmdRegister, &d), encodeError(ErrConflict)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := DecodeResult(b)
		if err != nil {
			return
		}
		var again []byte
		switch res.Type {
		case CmdPutCampaign:
			again = encodePut(res.Put)
		case CmdIssueLink:
			again = encodeLink(res.Link)
		case CmdRegister, CmdReview:
			again = encodeDecision(res.Type, &res.Decision)
		default:
			again = encodeEmpty(res.Type)
		}
		res2, err := DecodeResult(again)
		if err != nil || !reflect.DeepEqual(res, res2) {
			t.Fatalf("re-encoded result differs: %+v vs %+v (%v)", res, res2, err)
		}
	})
}

func FuzzRestore(f *testing.F) {
	l := newTestLedger(f)
	c := pkCampaign()
	l.put(c)
	l.link(t0, "pk", "a")
	l.mustDo(t0, EncodeJoinTeam(JoinTeam{Campaign: "pk", Inviter: "a", Team: "red"}))
	l.reg(t0.Add(time.Minute), Register{ID: "01ARZ3NDEKTSV4RRFFQ69G5FAV", Campaign: "pk", InviterNumber: 1, Invitee: "v"})
	l.apply(t0.Add(48*time.Hour), EncodeNoop())
	good := l.snapshot()
	f.Add(good[10 : len(good)-4])
	// A held registration, to be released after the restore.
	h := newTestLedger(f)
	h.put(baseCampaign("c"))
	h.link(t0, "c", "a")
	h.reg(t0.Add(time.Minute), Register{ID: "held", Campaign: "c", InviterNumber: 1, Invitee: "w", ClickAt: t0.Add(time.Minute - time.Second)})
	held := h.snapshot()
	f.Add(held[10 : len(held)-4])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		// Wrap the fuzzed body in a valid header and checksum, so the decoder itself is exercised.
		b := append([]byte(snapMagic), 0, 1) // version 1: the body alone
		b = append(b, body...)
		b = binary.BigEndian.AppendUint32(b, crc32.Checksum(body, castagnoli))
		r := New()
		if err := r.Restore(bytes.NewReader(b)); err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("restore error %v is not ErrBadSnapshot", err)
			}
			return
		}
		var out bytes.Buffer
		if err := r.Snapshot(&out); err != nil {
			t.Fatal(err)
		}
		// Whatever was restored, the rules must not panic on it: release
		// or reject every held registration, settle, issue links.
		var cmds [][]byte
		for p := range r.st.regs {
			if r.st.regs[p].status == stHeld {
				action := []string{ActionRelease, ActionReject}[p%2]
				cmds = append(cmds, EncodeReview(Review{RegistrationID: r.st.regID(uint32(p)), Action: action}))
			}
		}
		for _, cs := range r.st.camps {
			cmds = append(cmds, EncodeIssueLink(IssueLink{Campaign: cs.c.ID, Inviter: "fuzz"}))
		}
		r.ApplyBatch(r.LastIndex()+1, t0.Add(time.Hour), cmds)
		r.ApplyBatch(r.LastIndex()+1, t0.Add(72*time.Hour), append(cmds, EncodeNoop()))
	})
}

// fuzzSetup returns a ledger with some state and the commands that built it.
func fuzzSetup(tb testing.TB) (*testLedger, [][]byte) {
	l := newTestLedger(tb)
	c := pkCampaign()
	c.Segments = nil
	cmds := [][]byte{
		EncodePutCampaign(c),
		EncodeIssueLink(IssueLink{Campaign: "pk", Inviter: "a"}),
		EncodeJoinTeam(JoinTeam{Campaign: "pk", Inviter: "a", Team: "red"}),
		EncodeSetSegments(SetSegments{Inviter: "a", Segments: []string{"vip"}}),
		EncodeRegister(Register{ID: "r1", Campaign: "pk", InviterNumber: 1, Invitee: "v", AckAt: t0.Add(time.Minute)}),
		EncodeRegister(Register{ID: "r2", Campaign: "pk", InviterNumber: 1, Invitee: "w", ClickAt: t0.Add(59 * time.Second), AckAt: t0.Add(time.Minute)}),
		EncodeReview(Review{RegistrationID: "r2", Action: ActionRelease}),
		EncodeNoop(),
	}
	l.apply(t0.Add(time.Minute), cmds...)
	return l, cmds
}

func FuzzApply(f *testing.F) {
	_, cmds := fuzzSetup(f)
	for _, c := range cmds {
		f.Add(c)
	}
	f.Add(EncodeRegister(Register{ID: "r1", Campaign: "pk", InviterNumber: 1, Invitee: "zz"}))
	f.Add(EncodeReview(Review{RegistrationID: "r9", Action: ActionReject}))
	f.Add([]byte{wireVersion, byte(CmdRegister), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, cmd []byte) {
		l, _ := fuzzSetup(t)
		before := l.snapshot()
		out := l.ApplyBatch(l.index, t0.Add(2*time.Minute), [][]byte{cmd})
		if len(out) != 1 {
			t.Fatalf("%d results", len(out))
		}
		_, err := DecodeResult(out[0])
		if err != nil {
			if !isCommandError(err) {
				t.Fatalf("undecodable result %x: %v", out[0], err)
			}
			if !bytes.Equal(l.snapshot(), before) {
				t.Fatalf("refused command %x changed the state (%v)", cmd, err)
			}
		}
	})
}

func TestWindow32(t *testing.T) {
	base := t0.Truncate(time.Hour).UnixNano()
	h := hourNs
	tests := []struct {
		name  string
		times []int64
		want  int64
	}{
		{"one", []int64{base}, 1},
		{"same bucket", []int64{base, base + 1, base + h/2}, 3},
		{"previous bucket weighted", []int64{base, base, base, base, base + h + h/2}, 1 + 2},
		{"two buckets later", []int64{base, base, base + 2*h}, 1},
		{"clock goes back", []int64{base + h, base}, 2},
		{"clock goes back within bucket", []int64{base + h/2, base + h/4}, 2},
	}
	for _, tc := range tests {
		var w window32
		var est int64
		for _, at := range tc.times {
			est = w.hit(at, h)
		}
		if est != tc.want {
			t.Errorf("%s: estimate %d, want %d", tc.name, est, tc.want)
		}
	}
	var w window32
	for i := 0; i < 2000; i++ {
		w.hit(base, h)
	}
	if est := w.hit(base, h); est != 1023 {
		t.Errorf("saturated estimate = %d, want 1023", est)
	}
}

func TestHitKeySweeps(t *testing.T) {
	var m wtable
	var swept int64
	base := t0.Truncate(time.Hour).UnixNano()
	for i := 0; i < 5; i++ {
		hitKey(&m, &swept, fmt.Sprint("ip", i), base, hourNs)
	}
	if est := hitKey(&m, &swept, "ip0", base+hourNs, hourNs); est != 2 || m.n != 5 {
		t.Fatalf("next hour: estimate %d, %d keys", est, m.n)
	}
	// Three hours later every key counted two or more windows ago is dropped.
	if est := hitKey(&m, &swept, "ip9", base+3*hourNs, hourNs); est != 1 || m.n != 1 {
		t.Fatalf("after two windows: estimate %d, %d keys", est, m.n)
	}
	// Exactly 4096 windows later (bucket numbers alias): cleared, not aliased.
	if est := hitKey(&m, &swept, "ip9", base+(3+w32Buckets)*hourNs, hourNs); est != 1 || m.n != 1 {
		t.Fatalf("after 4096 windows: estimate %d, %d keys", est, m.n)
	}
	if est := hitKey(&m, &swept, "", base, hourNs); est != 0 {
		t.Errorf("empty key counted: %d", est)
	}
}
