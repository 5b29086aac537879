// Package report renders benchmark results: a text table per region and
// scenario, JSON (for baselines), SVG plots (latency by percentile and
// latency over time) and the comparison of a run against a baseline.
//
// Functions here only read the Results they are given; they may be called
// concurrently on the same Results.
package report

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/refrouter/refrouter/bench"
)

// ErrBadReport is returned (wrapped) when a JSON report cannot be read.
var ErrBadReport = errors.New("report: bad report")

// reportVersion is the version of the JSON document WriteJSON writes.
const reportVersion = 1

type document struct {
	Version int             `json:"version"`
	Results []*bench.Result `json:"results"`
}

// sorted returns rs ordered by region, scenario and target.
func sorted(rs []*bench.Result) []*bench.Result {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b *bench.Result) int {
		return cmp.Or(cmp.Compare(a.Region, b.Region), cmp.Compare(a.Scenario, b.Scenario),
			cmp.Compare(a.Target, b.Target))
	})
	return out
}

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond))
}

// formatErrors renders error counts as "kind=n kind=n" in kind order, or "-".
func formatErrors(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// WriteText writes one table row per result, grouped by region and
// scenario: latency percentiles in ms, throughput in req/s, and errors by
// kind.
func WriteText(w io.Writer, rs []*bench.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "REGION\tSCENARIO\tTARGET\tRATE\tP50 ms\tP90 ms\tP99 ms\tP99.9 ms\tMAX ms\tREQ/S\tSENT\tOK\t ERRORS")
	for _, r := range sorted(rs) {
		p := r.Percentiles()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.1f\t%d\t%d\t %s\n",
			dash(r.Region), r.Scenario, dash(r.Target), r.Rate, fmtMS(p.P50), fmtMS(p.P90), fmtMS(p.P99),
			fmtMS(p.P999), fmtMS(p.Max), r.Throughput, r.Sent, r.OK, formatErrors(r.Errors))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write text report: %w", err)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteJSON writes rs as one JSON document {"version":1,"results":[…]};
// each result carries its full histogram, so ReadJSON gives back the same
// percentiles.
func WriteJSON(w io.Writer, rs []*bench.Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(document{Version: reportVersion, Results: rs}); err != nil {
		return fmt.Errorf("write json report: %w", err)
	}
	return nil
}

// ReadJSON reads what WriteJSON wrote (for example a stored baseline).
func ReadJSON(r io.Reader) ([]*bench.Result, error) {
	var d document
	dec := json.NewDecoder(r)
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrBadReport, err)
	}
	if d.Version != reportVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrBadReport, d.Version, reportVersion)
	}
	for i, r := range d.Results {
		if r == nil {
			return nil, fmt.Errorf("%w: result %d is null", ErrBadReport, i)
		}
	}
	return d.Results, nil
}

// ReadJSONFile reads a JSON report from path.
func ReadJSONFile(path string) ([]*bench.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open report: %w", err)
	}
	defer f.Close()
	rs, err := ReadJSON(f)
	if err != nil {
		return nil, fmt.Errorf("read report %q: %w", path, err)
	}
	return rs, nil
}

// Files names the files WriteFiles wrote.
type Files struct {
	Text, JSON, Percentiles, OverTime string
}

// WriteFiles writes, in dir, base.txt (the table), base.json, and beside
// them base-percentiles.svg and base-over-time.svg. It creates dir if needed.
func WriteFiles(dir, base string, rs []*bench.Result) (Files, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Files{}, fmt.Errorf("create report dir: %w", err)
	}
	f := Files{
		Text:        filepath.Join(dir, base+".txt"),
		JSON:        filepath.Join(dir, base+".json"),
		Percentiles: filepath.Join(dir, base+"-percentiles.svg"),
		OverTime:    filepath.Join(dir, base+"-over-time.svg"),
	}
	writers := []struct {
		path  string
		write func(io.Writer, []*bench.Result) error
	}{
		{f.Text, WriteText}, {f.JSON, WriteJSON}, {f.Percentiles, WritePercentileSVG}, {f.OverTime, WriteOverTimeSVG},
	}
	for _, wr := range writers {
		if err := writeFile(wr.path, func(w io.Writer) error { return wr.write(w, rs) }); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

// writeFile writes through a temporary file and renames it, so a failed
// write never leaves a half-written report.
func writeFile(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create %q: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %q: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename to %q: %w", path, err)
	}
	return nil
}
