package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/refrouter/refrouter/bench"
)

// Comparison rules beyond the threshold.
const (
	// MinLatencyDelta is the smallest latency increase that can count as a
	// regression: below it, changes are timer noise whatever the ratio.
	MinLatencyDelta = 50 * time.Microsecond
	// MaxErrorRise is the largest tolerated rise of the error ratio
	// (errors/sent), in absolute terms: one percentage point.
	MaxErrorRise = 0.01
)

// Change is the change of one metric between baseline and current.
type Change struct {
	// Metric is p50, p90, p99, p99.9, max (ms), throughput (req/s) or
	// errors (ratio of errors to sent).
	Metric string
	Base   float64
	Cur    float64
	// Delta is (Cur-Base)/Base, or 0 when Base is 0.
	Delta float64
	// Regressed reports whether this change alone makes the run regress.
	Regressed bool
}

// Row compares one (scenario, target, region).
type Row struct {
	Scenario, Target, Region string
	// Missing: in the baseline but not in the current run (a regression);
	// New: in the current run only (not compared).
	Missing, New bool
	Changes      []Change
}

// Regressed reports whether any change of the row regressed, or the row is
// missing from the current run.
func (r Row) Regressed() bool {
	if r.Missing {
		return true
	}
	for _, c := range r.Changes {
		if c.Regressed {
			return true
		}
	}
	return false
}

// Comparison is the outcome of Compare.
type Comparison struct {
	// Threshold is the tolerated relative change (0.1 = 10 %).
	Threshold float64
	Rows      []Row
}

type key struct{ scenario, target, region string }

func keyOf(r *bench.Result) key { return key{r.Scenario, r.Target, r.Region} }

// Compare matches current results to baseline ones by scenario, target and
// region and computes the change of each percentile, throughput and error
// ratio. It reports regressed when, for any matched pair, p50, p90, p99 or
// p99.9 grew by more than threshold (relative) and by at least
// MinLatencyDelta, throughput fell by more than threshold, or the error
// ratio rose by more than MaxErrorRise; or when a baseline result has no
// current counterpart. Max is printed but never decides: one outlier is not
// a trend.
func Compare(baseline, current []*bench.Result, threshold float64) (Comparison, bool) {
	c := Comparison{Threshold: threshold}
	cur := make(map[key]*bench.Result, len(current))
	for _, r := range current {
		cur[keyOf(r)] = r
	}
	seen := make(map[key]bool, len(baseline))
	for _, b := range sorted(baseline) {
		k := keyOf(b)
		if seen[k] {
			continue
		}
		seen[k] = true
		row := Row{Scenario: b.Scenario, Target: b.Target, Region: b.Region}
		if r, ok := cur[k]; ok {
			row.Changes = changes(b, r, threshold)
		} else {
			row.Missing = true
		}
		c.Rows = append(c.Rows, row)
	}
	for _, r := range sorted(current) {
		if k := keyOf(r); !seen[k] {
			seen[k] = true
			c.Rows = append(c.Rows, Row{Scenario: r.Scenario, Target: r.Target, Region: r.Region, New: true})
		}
	}
	regressed := false
	for _, row := range c.Rows {
		regressed = regressed || row.Regressed()
	}
	return c, regressed
}

func ratio(base, cur float64) float64 {
	if base == 0 {
		return 0
	}
	return (cur - base) / base
}

func changes(b, r *bench.Result, threshold float64) []Change {
	pb, pc := b.Percentiles(), r.Percentiles()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var out []Change
	lat := []struct {
		name      string
		base, cur time.Duration
		decides   bool
	}{
		{"p50", pb.P50, pc.P50, true}, {"p90", pb.P90, pc.P90, true}, {"p99", pb.P99, pc.P99, true},
		{"p99.9", pb.P999, pc.P999, true}, {"max", pb.Max, pc.Max, false},
	}
	for _, l := range lat {
		d := ratio(float64(l.base), float64(l.cur))
		reg := l.decides && l.cur-l.base >= MinLatencyDelta &&
			(l.base == 0 || float64(l.cur) > float64(l.base)*(1+threshold))
		out = append(out, Change{Metric: l.name, Base: ms(l.base), Cur: ms(l.cur), Delta: d, Regressed: reg})
	}
	out = append(out, Change{Metric: "throughput", Base: b.Throughput, Cur: r.Throughput,
		Delta:     ratio(b.Throughput, r.Throughput),
		Regressed: r.Throughput < b.Throughput*(1-threshold)})
	eb, ec := errRatio(b), errRatio(r)
	out = append(out, Change{Metric: "errors", Base: eb, Cur: ec, Delta: ratio(eb, ec), Regressed: ec > eb+MaxErrorRise})
	return out
}

func errRatio(r *bench.Result) float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.ErrorCount()) / float64(r.Sent)
}

// WriteText prints one line per metric: baseline, current, change in
// percent, and REGRESSED where it is one.
func (c Comparison) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "REGION\tSCENARIO\tTARGET\tMETRIC\tBASELINE\tCURRENT\tCHANGE\t(threshold %.1f%%)\n", c.Threshold*100)
	for _, row := range c.Rows {
		id := fmt.Sprintf("%s\t%s\t%s", dash(row.Region), row.Scenario, dash(row.Target))
		switch {
		case row.Missing:
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tMISSING from current run\n", id)
			continue
		case row.New:
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tnew (no baseline)\n", id)
			continue
		}
		for _, ch := range row.Changes {
			mark := ""
			if ch.Regressed {
				mark = "REGRESSED"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%+.1f%%\t%s\n", id, ch.Metric, fmtVal(ch.Metric, ch.Base),
				fmtVal(ch.Metric, ch.Cur), ch.Delta*100, mark)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write comparison: %w", err)
	}
	return nil
}

func fmtVal(metric string, v float64) string {
	switch metric {
	case "throughput":
		return fmt.Sprintf("%.1f req/s", v)
	case "errors":
		return fmt.Sprintf("%.3f%%", v*100)
	default:
		return fmt.Sprintf("%.3f ms", v)
	}
}

// String returns the text of WriteText.
func (c Comparison) String() string {
	var b strings.Builder
	_ = c.WriteText(&b) // a strings.Builder never fails
	return b.String()
}
