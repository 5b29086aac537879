package cluster

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var commandCases = []struct {
	name string
	cmds []command
}{
	{"empty", nil},
	{"one", []command{{id: cmdID{1}, cmd: []byte("hello")}}},
	{"empty command", []command{{id: cmdID{2}, cmd: []byte{}}}},
	{"several", []command{{id: cmdID{1}, cmd: []byte("a")}, {id: cmdID{2}, cmd: bytes.Repeat([]byte("b"), 300)}, {id: cmdID{3}, cmd: nil}}},
}

func TestEntryRoundTrip(t *testing.T) {
	for _, tc := range commandCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeEntry(encodeEntry(tc.cmds))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.cmds) {
				t.Fatalf("got %d commands, want %d", len(got), len(tc.cmds))
			}
			for i := range got {
				if got[i].id != tc.cmds[i].id || !bytes.Equal(got[i].cmd, tc.cmds[i].cmd) {
					t.Fatalf("command %d: got %+v want %+v", i, got[i], tc.cmds[i])
				}
			}
		})
	}
	bad := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"version", []byte{9, 0}},
		{"count too big", []byte{entryVersion, 5}},
		{"truncated", encodeEntry(commandCases[3].cmds)[:40]},
		{"trailing", append(encodeEntry(commandCases[1].cmds), 0)},
	}
	for _, tc := range bad {
		if _, err := decodeEntry(tc.in); !errors.Is(err, errMalformed) {
			t.Errorf("%s: got %v, want errMalformed", tc.name, err)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, tc := range commandCases {
		f.Add(encodeEntry(tc.cmds))
	}
	f.Add([]byte{entryVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := decodeEntry(b)
		if err != nil {
			return
		}
		if again := encodeEntry(cmds); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %x vs %x", again, b)
		}
	})
}

var replyCases = [][]reply{
	nil,
	{{id: cmdID{1}, ok: true, index: 7, data: []byte("r")}},
	{{id: cmdID{1}, ok: false, data: []byte("node is not the leader")}, {id: cmdID{2}, ok: true, index: math.MaxUint64}},
}

func TestRepliesRoundTrip(t *testing.T) {
	for i, rs := range replyCases {
		got, err := decodeReplies(appendReplies(nil, rs))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(got) != len(rs) {
			t.Fatalf("case %d: %d replies, want %d", i, len(got), len(rs))
		}
		for j := range got {
			if got[j].id != rs[j].id || got[j].ok != rs[j].ok || got[j].index != rs[j].index || !bytes.Equal(got[j].data, rs[j].data) {
				t.Fatalf("case %d reply %d: %+v want %+v", i, j, got[j], rs[j])
			}
		}
	}
	if _, err := decodeReplies([]byte{1, 1, 2, 3}); !errors.Is(err, errMalformed) {
		t.Fatalf("short reply: %v", err)
	}
	// Zero replies written in two bytes instead of one: each message has one encoding.
	if _, err := decodeReplies([]byte{0x80, 0x00}); !errors.Is(err, errMalformed) {
		t.Fatalf("overlong count: %v", err)
	}
	if _, err := decodeEntry([]byte{entryVersion, 0x80, 0x00}); !errors.Is(err, errMalformed) {
		t.Fatalf("overlong entry count: %v", err)
	}
}

func FuzzDecodeReplies(f *testing.F) {
	for _, rs := range replyCases {
		f.Add(appendReplies(nil, rs))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeReplies(b)
		if err != nil {
			return
		}
		if again := appendReplies(nil, rs); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), 70000)} {
		if err := writeFrame(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []int{0, 1, 70000} {
		got, err := readFrame(&buf, nil)
		if err != nil || len(got) != want {
			t.Fatalf("frame of %d: got %d, %v", want, len(got), err)
		}
	}
	if _, err := readFrame(&buf, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: %v", err)
	}
	if _, err := readFrame(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}), nil); !errors.Is(err, errMalformed) {
		t.Fatalf("huge frame: %v", err)
	}
}

var metaCases = []Meta{
	{},
	{Region: "eu-central", Lat: 50.1, Lon: 8.7, PublicURL: "https://fra.example", ClusterAddr: "10.0.0.1:8300",
		Voter: true, Role: RoleLeader, Load: 0.5, Version: "v1.2.3", HasState: true},
	{Lat: -33.9, Lon: 151.2, Role: RoleNonvoter},
}

func TestMetaRoundTrip(t *testing.T) {
	for i, m := range metaCases {
		m.Name = "node"
		b, err := encodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		got, leaving, err := decodeMeta("node", b)
		if err != nil || leaving || got != m {
			t.Fatalf("case %d: got %+v %v %v, want %+v", i, got, leaving, err, m)
		}
		lb, err := encodeWireMeta(m, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, leaving, _ := decodeMeta("node", lb); !leaving {
			t.Fatalf("case %d: leaving flag lost", i)
		}
	}
	if _, err := encodeMeta(Meta{PublicURL: strings.Repeat("u", 600)}); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("large meta: %v", err)
	}
	if _, _, err := decodeMeta("x", []byte("{")); err == nil {
		t.Fatal("bad json accepted")
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range metaCases {
		b, _ := encodeMeta(m)
		f.Add(b)
	}
	for _, bm := range badMetas {
		f.Add([]byte(bm.json))
	}
	for _, js := range goodMetas {
		f.Add([]byte(js))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, _, err := decodeMeta("n", b)
		if err != nil {
			if m != (Meta{Name: "n"}) {
				t.Fatalf("rejected metadata kept: %+v", m)
			}
			return
		}
		if math.IsNaN(m.Lat) || math.IsNaN(m.Lon) || m.Lat < -90 || m.Lat > 90 || m.Lon < -180 || m.Lon > 180 {
			t.Fatalf("coordinates %v %v decoded", m.Lat, m.Lon)
		}
		if strings.ContainsFunc(m.PublicURL+m.ClusterAddr, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Fatalf("URL %q or cluster address %q with a space, control or non-ASCII character", m.PublicURL, m.ClusterAddr)
		}
		if m.PublicURL != "" {
			u, err := url.Parse(m.PublicURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
				u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
				t.Fatalf("URL %q accepted: %+v %v", m.PublicURL, u, err)
			}
		}
		if m.ClusterAddr != "" {
			if _, p, err := net.SplitHostPort(m.ClusterAddr); err != nil || p == "0" {
				t.Fatalf("cluster address %q accepted", m.ClusterAddr)
			}
		}
		if len(b) <= 512 {
			if _, err := encodeMeta(m); err != nil && !errors.Is(err, ErrMetaTooLarge) {
				t.Fatalf("re-encode: %v", err)
			}
		}
	})
}

func TestCounters(t *testing.T) {
	a, b := newCounters("a"), newCounters("b")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.Add("clicks", 3))
	must(b.Add("clicks", 4))
	must(b.Add("links", 1))
	stB, err := decodeCounters(b.encode())
	must(err)
	a.merge(stB)
	if a.Total("clicks") != 7 || a.Total("links") != 1 || a.Local("clicks") != 3 {
		t.Fatalf("after merge: %v", a.Totals())
	}
	// Merging old state again never lowers a value.
	must(b.Add("clicks", 10))
	stB2, _ := decodeCounters(b.encode())
	a.merge(stB2)
	a.merge(stB)
	if got := a.Total("clicks"); got != 17 {
		t.Fatalf("clicks %d, want 17", got)
	}
	// A restarted node resumes from what peers remember of it.
	restarted := newCounters("b")
	stA, _ := decodeCounters(a.encode())
	restarted.merge(stA)
	must(restarted.Add("clicks", 1))
	if got := restarted.Local("clicks"); got != 15 {
		t.Fatalf("restarted local clicks %d, want 15", got)
	}
	if err := a.Add(strings.Repeat("k", MaxCounterKeyLen+1), 1); err == nil {
		t.Fatal("long key accepted")
	}
	if _, err := decodeCounters([]byte{counterVersion, 1, 1, 'a', 1, 1, 'k'}); !errors.Is(err, errMalformed) {
		t.Fatalf("truncated counters: %v", err)
	}
}

func FuzzDecodeCounters(f *testing.F) {
	c := newCounters("a")
	_ = c.Add("clicks", 5)
	f.Add(c.encode())
	f.Add([]byte{counterVersion, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeCounters(b)
		if err != nil {
			return
		}
		x := newCounters("z")
		x.merge(st)
		st2, err := decodeCounters(x.encode())
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		for n, m := range st {
			for k, v := range m {
				if st2[n][k] != v {
					t.Fatalf("%s/%s: %d after round trip, want %d", n, k, st2[n][k], v)
				}
			}
		}
	})
}

// TestFSMAdapterDedupAndSnapshot checks, without a network, that duplicate
// ids are applied once (within and across entries) and that the dedup table
// and state survive a snapshot.
func TestFSMAdapterDedupAndSnapshot(t *testing.T) {
	fsm := &listFSM{}
	a := newFSMAdapter(fsm, 3, testLogger())
	at := time.Unix(100, 0)
	apply := func(idx uint64, cmds ...command) batchResponse {
		t.Helper()
		r := a.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: encodeEntry(cmds), AppendedAt: at})
		br := r.(batchResponse)
		if br.err != nil || len(br.outcomes) != len(cmds) {
			t.Fatalf("apply %d: %+v", idx, br)
		}
		return br
	}
	r := apply(1, command{cmdID{1}, []byte("x")}, command{cmdID{1}, []byte("x")}, command{cmdID{2}, []byte("y")})
	if r.outcomes[1].index != 1 || string(r.outcomes[1].result) != "1" || string(r.outcomes[2].result) != "2" {
		t.Fatalf("in-entry duplicate: %+v", r.outcomes)
	}
	r = apply(2, command{cmdID{1}, []byte("x")}, command{cmdID{3}, []byte("z")})
	if r.outcomes[0].index != 1 || string(r.outcomes[0].result) != "1" || r.outcomes[1].index != 2 {
		t.Fatalf("cross-entry duplicate: %+v", r.outcomes)
	}
	if got := fsm.list(); !sameList(got, []string{"x", "y", "z"}) {
		t.Fatalf("state %v", got)
	}
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	fsm2 := &listFSM{}
	b := newFSMAdapter(fsm2, 3, testLogger())
	if err := b.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if b.appliedIndex() != 2 || !sameList(fsm2.list(), fsm.list()) {
		t.Fatalf("restored index %d state %v", b.appliedIndex(), fsm2.list())
	}
	// Window 3: ids 1,2,3 remembered; a 4th evicts id 1.
	r2 := b.Apply(&raft.Log{Index: 3, Data: encodeEntry([]command{{cmdID{3}, []byte("z")}, {cmdID{4}, []byte("w")}})}).(batchResponse)
	if r2.outcomes[0].index != 2 || fsm2.count("z") != 1 {
		t.Fatalf("dedup lost in snapshot: %+v", r2.outcomes)
	}
	b.Apply(&raft.Log{Index: 4, Data: encodeEntry([]command{{cmdID{1}, []byte("x")}})})
	if fsm2.count("x") != 2 {
		t.Fatalf("id 1 should have left the window of 3: x applied %d times", fsm2.count("x"))
	}
	if err := b.Restore(io.NopCloser(bytes.NewReader([]byte("junk")))); !errors.Is(err, errMalformed) {
		t.Fatalf("junk snapshot: %v", err)
	}
	// A snapshot whose command ids read fine but whose FSM state does not
	// leaves b as it was: it still remembers id 4 and does not apply it again.
	cut := sink.Bytes()[:sink.Len()-3]
	if err := b.Restore(io.NopCloser(bytes.NewReader(cut))); err == nil {
		t.Fatal("restore of a cut snapshot succeeded")
	}
	if r := b.Apply(&raft.Log{Index: 5, Data: encodeEntry([]command{{cmdID{4}, []byte("w")}})}).(batchResponse); r.outcomes[0].index != 3 || fsm2.count("w") != 1 {
		t.Fatalf("after a failed restore: %+v, w applied %d times", r.outcomes, fsm2.count("w"))
	}
	if br := a.Apply(&raft.Log{Index: 9, Data: []byte{0}}).(batchResponse); br.err == nil || a.appliedIndex() != 9 {
		t.Fatalf("bad entry: %+v", br)
	}
}

type memSink struct {
	bytes.Buffer
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }
