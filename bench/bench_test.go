package bench

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

var statCases = []struct {
	name         string
	in           string
	utime, stime uint64
	wantErr      bool
}{
	{"cat", "2391 (cat) R 2388 2388 4973 0 -1 4194304 103 0 0 0 7 3 0 0 20 0 1 0 87530 3133440 418", 7, 3, false},
	{"spaces and parens in comm", "42 (my (odd) proc) S 1 42 42 0 -1 4194560 1 0 0 0 1234 567 0 0 20 0 9 0 1 2 3", 1234, 567, false},
	{"no comm", "42 cat R 1 2 3", 0, 0, true},
	{"short", "42 (cat) R 1 2 3 4 5 6 7 8 9", 0, 0, true},
	{"bad utime", "1 (x) R 1 1 1 0 -1 0 0 0 0 0 x 3 0", 0, 0, true},
	{"negative stime", "1 (x) R 1 1 1 0 -1 0 0 0 0 0 1 -3 0", 0, 0, true},
	{"empty", "", 0, 0, true},
}

func TestParseProcStat(t *testing.T) {
	for _, tc := range statCases {
		t.Run(tc.name, func(t *testing.T) {
			u, s, err := ParseProcStat([]byte(tc.in))
			if tc.wantErr {
				if !errors.Is(err, ErrBadStat) {
					t.Fatalf("err = %v, want ErrBadStat", err)
				}
				return
			}
			if err != nil || u != tc.utime || s != tc.stime {
				t.Fatalf("got %d, %d, %v; want %d, %d", u, s, err, tc.utime, tc.stime)
			}
		})
	}
}

func FuzzParseProcStat(f *testing.F) {
	for _, tc := range statCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, s, err := ParseProcStat([]byte(in))
		if err != nil {
			return
		}
		if d := ticks(u + s); d < 0 {
			t.Fatalf("negative cpu time %v from %q", d, in)
		}
	})
}

func TestProcCPU(t *testing.T) {
	pid := os.Getpid()
	before, err := ProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn about 100 ms of CPU, then expect at least some of it counted
	// (the resolution is 10 ms).
	deadline := time.Now().Add(100 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	after, err := ProcCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < 20*time.Millisecond || d > 5*time.Second {
		t.Errorf("cpu delta %v after a 100 ms busy loop (%d spins)", d, x)
	}
	if _, err := ProcCPU(1 << 30); err == nil || !strings.Contains(err.Error(), "/proc/") {
		t.Errorf("missing pid err = %v", err)
	}
}

func TestResultJSON(t *testing.T) {
	h := NewHistogram()
	for _, v := range []int64{100, 200, 300, 5_000, 70_000_000 - 10_000_000} {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	r := &Result{Scenario: "redirect", Target: "hk-1", Region: "ap-east", Duration: 3 * time.Second,
		Elapsed: 3 * time.Second, Sent: 5, OK: 5, Throughput: 1.5, Latency: h,
		Series: []Point{{At: 100 * time.Millisecond, Count: 5, Throughput: 50, P99: 60 * time.Second}}}
	r.ScheduleLag = NewHistogram()
	_ = r.ScheduleLag.RecordValue(1500)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"schedule_lag_ms":{"p99":1.5`) {
		t.Errorf("json lacks the schedule lag: %s", b)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Percentiles() != r.Percentiles() || back.Series[0] != r.Series[0] {
		t.Errorf("round trip: %+v %+v, want %+v %+v", back.Percentiles(), back.Series, r.Percentiles(), r.Series)
	}
	if p := r.Percentiles(); p.Max < 59*time.Second || p.P50 != 300*time.Microsecond {
		t.Errorf("percentiles %+v", p)
	}
	if (&Result{}).Percentiles() != (Percentiles{}) {
		t.Error("empty result has percentiles")
	}
}
