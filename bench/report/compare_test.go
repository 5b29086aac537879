package report

import (
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/bench"
)

func TestCompare(t *testing.T) {
	ms := time.Millisecond
	base := func() *bench.Result { return newTestResult(t, "redirect", "hk-1", "ap-east", ms, 10*ms) }
	tests := []struct {
		name      string
		cur       func() []*bench.Result
		threshold float64
		want      bool
		wantText  string
	}{
		{"identical", func() []*bench.Result { return []*bench.Result{base()} }, 0.1, false, "+0.0%"},
		{"20% slower beyond 10%", func() []*bench.Result {
			return []*bench.Result{newTestResult(t, "redirect", "hk-1", "ap-east", 1200*time.Microsecond, 12*ms)}
		}, 0.1, true, "REGRESSED"},
		{"5% slower within 10%", func() []*bench.Result {
			return []*bench.Result{newTestResult(t, "redirect", "hk-1", "ap-east", 1050*time.Microsecond, 10500*time.Microsecond)}
		}, 0.1, false, "+5.0%"},
		{"faster", func() []*bench.Result {
			return []*bench.Result{newTestResult(t, "redirect", "hk-1", "ap-east", ms/2, 5*ms)}
		}, 0.1, false, "-50.0%"},
		{"throughput drop", func() []*bench.Result {
			r := base()
			r.Throughput = 80
			return []*bench.Result{r}
		}, 0.1, true, "REGRESSED"},
		{"errors rise", func() []*bench.Result {
			r := base()
			r.Errors = map[string]uint64{bench.KindTimeout: 50}
			return []*bench.Result{r}
		}, 0.1, true, "REGRESSED"},
		{"missing", func() []*bench.Result { return nil }, 0.1, true, "MISSING"},
		{"new only besides", func() []*bench.Result {
			return []*bench.Result{base(), newTestResult(t, "funnel", "hk-1", "ap-east", ms, 90*ms)}
		}, 0.1, false, "new (no baseline)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, regressed := Compare([]*bench.Result{base()}, tc.cur(), tc.threshold)
			text := c.String()
			if regressed != tc.want {
				t.Errorf("regressed = %v, want %v\n%s", regressed, tc.want, text)
			}
			if !strings.Contains(text, tc.wantText) {
				t.Errorf("text lacks %q:\n%s", tc.wantText, text)
			}
			if !tc.want && strings.Contains(text, "REGRESSED") {
				t.Errorf("text marks a regression:\n%s", text)
			}
		})
	}
}

// TestCompareMinDelta: a tiny absolute change is noise even when large in
// relative terms.
func TestCompareMinDelta(t *testing.T) {
	b := newTestResult(t, "redirect", "a", "r", 20*time.Microsecond, 60*time.Microsecond)
	c := newTestResult(t, "redirect", "a", "r", 40*time.Microsecond, 100*time.Microsecond)
	cmp, regressed := Compare([]*bench.Result{b}, []*bench.Result{c}, 0.1)
	if regressed {
		t.Errorf("a change under %v regressed:\n%s", MinLatencyDelta, cmp)
	}
	var p99 Change
	for _, ch := range cmp.Rows[0].Changes {
		if ch.Metric == "p99" {
			p99 = ch
		}
	}
	if p99.Delta < 0.5 {
		t.Errorf("p99 change %+v, want about +67%%", p99)
	}
}
