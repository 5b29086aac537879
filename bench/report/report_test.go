package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/bench"
)

// newTestResult returns a result whose latencies are spread uniformly over
// [lo, hi] (1000 values) and a 10-point series.
func newTestResult(tb testing.TB, scenario, target, region string, lo, hi time.Duration) *bench.Result {
	tb.Helper()
	h := bench.NewHistogram()
	for i := range 1000 {
		v := lo + time.Duration(i)*(hi-lo)/999
		if err := h.RecordValue(v.Microseconds()); err != nil {
			tb.Fatal(err)
		}
	}
	r := &bench.Result{Scenario: scenario, Target: target, Region: region, Start: time.Unix(1700000000, 0).UTC(),
		Duration: 10 * time.Second, Elapsed: 10 * time.Second, Rate: 100, Connections: 4,
		Sent: 1000, OK: 1000, Errors: map[string]uint64{}, Throughput: 100, Latency: h}
	for i := range 10 {
		r.Series = append(r.Series, bench.Point{At: time.Duration(i+1) * time.Second, Count: 100,
			Throughput: 100, P99: hi - time.Duration(i)*time.Microsecond})
	}
	return r
}

func TestWriteText(t *testing.T) {
	a := newTestResult(t, "redirect", "iad-1", "us-east", time.Millisecond, 2*time.Millisecond)
	b := newTestResult(t, "redirect", "hk-1", "ap-east", time.Millisecond, 3*time.Millisecond)
	b.Errors = map[string]uint64{bench.KindTimeout: 3, bench.KindStatus5xx: 2, bench.KindDropped: 0}
	var buf bytes.Buffer
	if err := WriteText(&buf, []*bench.Result{a, b}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Log("\n" + out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want header + 2", len(lines))
	}
	if !strings.Contains(lines[1], "ap-east") || !strings.Contains(lines[2], "us-east") {
		t.Errorf("rows not sorted by region:\n%s", out)
	}
	if !strings.Contains(lines[1], "status_5xx=2 timeout=3") || strings.Contains(lines[1], "dropped") {
		t.Errorf("errors not rendered by kind: %q", lines[1])
	}
	if !strings.Contains(lines[2], "2.000") || !strings.Contains(lines[2], "1.499") {
		t.Errorf("percentiles missing (max 2.000, p50 1.499): %q", lines[2])
	}
}

func TestJSONRoundTrip(t *testing.T) {
	in := []*bench.Result{
		newTestResult(t, "redirect", "hk-1", "ap-east", 100*time.Microsecond, 900*time.Microsecond),
		newTestResult(t, "register-ack", "fra-1", "eu-central", time.Millisecond, 20*time.Millisecond),
	}
	in[1].Errors[bench.KindConnection] = 7
	var buf bytes.Buffer
	if err := WriteJSON(&buf, in); err != nil {
		t.Fatal(err)
	}
	// The summary is readable by people and tools in ms.
	var raw struct {
		Results []struct {
			Latency map[string]float64 `json:"latency_ms"`
		} `json:"results"`
	}
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"p50", "p90", "p99", "p99.9", "max"} {
		if _, ok := raw.Results[0].Latency[k]; !ok {
			t.Errorf("latency_ms has no %q: %v", k, raw.Results[0].Latency)
		}
	}
	if got := raw.Results[1].Latency["max"]; math.Abs(got-20) > 0.02 {
		t.Errorf("max = %v ms, want 20 (±0.1%%)", got)
	}
	out, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d results, want %d", len(out), len(in))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.Percentiles() != b.Percentiles() || !a.Latency.Equals(b.Latency) {
			t.Errorf("result %d: percentiles %+v != %+v", i, b.Percentiles(), a.Percentiles())
		}
		if a.Scenario != b.Scenario || a.Target != b.Target || a.Region != b.Region || a.Sent != b.Sent ||
			a.OK != b.OK || a.Throughput != b.Throughput || !a.Start.Equal(b.Start) || a.Duration != b.Duration ||
			len(a.Errors) != len(b.Errors) || a.Errors[bench.KindConnection] != b.Errors[bench.KindConnection] {
			t.Errorf("result %d differs: %+v vs %+v", i, b, a)
		}
		if len(a.Series) != len(b.Series) || a.Series[3] != b.Series[3] {
			t.Errorf("result %d series differ: %+v vs %+v", i, b.Series, a.Series)
		}
	}
}

func TestReadJSONSummaryOnly(t *testing.T) {
	doc := `{"version":1,"results":[{"scenario":"redirect","target":"t","latency_ms":{"p50":0.5,"p90":1,"p99":2,"p99.9":3,"max":4},"sent":10,"ok":10}]}`
	rs, err := ReadJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	p := rs[0].Percentiles()
	if p.P50 != 500*time.Microsecond || p.P99 != 2*time.Millisecond || p.Max != 4*time.Millisecond {
		t.Errorf("percentiles %+v", p)
	}
}

var badJSON = []string{
	`not json`,
	`{"version":2,"results":[]}`,
	`{"version":1,"results":[null]}`,
	`{"version":1,"results":[{"latency_ms":{"p50":-1}}]}`,
	`{"version":1,"results":[{"histogram":"!!!"}]}`,
	`{"version":1,"results":[{"duration_s":1e300}]}`,
}

func TestReadJSONErrors(t *testing.T) {
	for _, doc := range badJSON {
		if _, err := ReadJSON(strings.NewReader(doc)); !errors.Is(err, ErrBadReport) {
			t.Errorf("ReadJSON(%s) err = %v, want ErrBadReport", doc, err)
		}
	}
}

func FuzzReadJSON(f *testing.F) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, []*bench.Result{newTestResult(f, "s", "t", "r", time.Millisecond, 5*time.Millisecond)}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.String())
	for _, d := range badJSON {
		f.Add(d)
	}
	f.Add(`{"version":1,"results":[{"latency_ms":{"p50":0.5,"max":4}}]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		rs, err := ReadJSON(strings.NewReader(doc))
		if err != nil {
			return
		}
		// Whatever reads must write and read back to the same percentiles.
		var out bytes.Buffer
		if err := WriteJSON(&out, rs); err != nil {
			t.Fatalf("write back: %v", err)
		}
		again, err := ReadJSON(&out)
		if err != nil {
			t.Fatalf("read back: %v\n%s", err, out.String())
		}
		for i := range rs {
			if a, b := rs[i].Percentiles(), again[i].Percentiles(); a.Max != b.Max || a.P99 != b.P99 {
				t.Fatalf("result %d: %+v != %+v", i, b, a)
			}
		}
	})
}

// svgPolylines parses an SVG document and returns the point lists of its
// polylines.
func svgPolylines(t *testing.T, r io.Reader) [][][2]float64 {
	t.Helper()
	dec := xml.NewDecoder(r)
	var out [][][2]float64
	sawSVG := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("svg is not XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Local == "svg" {
			sawSVG = true
		}
		if se.Name.Local != "polyline" {
			continue
		}
		var pts [][2]float64
		for _, a := range se.Attr {
			if a.Name.Local != "points" {
				continue
			}
			for _, pair := range strings.Fields(a.Value) {
				x, y, ok := strings.Cut(pair, ",")
				fx, err1 := strconv.ParseFloat(x, 64)
				fy, err2 := strconv.ParseFloat(y, 64)
				if !ok || err1 != nil || err2 != nil || math.IsNaN(fx) || math.IsNaN(fy) {
					t.Fatalf("bad point %q", pair)
				}
				pts = append(pts, [2]float64{fx, fy})
			}
		}
		out = append(out, pts)
	}
	if !sawSVG {
		t.Fatal("no <svg> element")
	}
	return out
}

func TestSVG(t *testing.T) {
	rs := []*bench.Result{
		newTestResult(t, "redirect", "hk-1", "ap-east", time.Millisecond, 2*time.Millisecond),
		newTestResult(t, "redirect", "fra-1", "eu-<central>&", time.Millisecond, 4*time.Millisecond),
		{Scenario: "empty", Target: "x"}, // no latencies, no series
	}
	var buf bytes.Buffer
	if err := WritePercentileSVG(&buf, rs); err != nil {
		t.Fatal(err)
	}
	lines := svgPolylines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("percentile svg has %d polylines, want 2", len(lines))
	}
	for i, l := range lines {
		// 1000 values: 3 decades at 20 points each, plus 0 and max.
		if len(l) != 62 {
			t.Errorf("polyline %d has %d points, want 62", i, len(l))
		}
		for j := 1; j < len(l); j++ {
			if l[j][0] < l[j-1][0] || l[j][1] > l[j-1][1] { // x grows, y (latency) grows upwards
				t.Errorf("polyline %d not monotonic at point %d: %v then %v", i, j, l[j-1], l[j])
				break
			}
		}
	}
	buf.Reset()
	if err := WriteOverTimeSVG(&buf, rs); err != nil {
		t.Fatal(err)
	}
	lines = svgPolylines(t, &buf)
	if len(lines) != 4 {
		t.Fatalf("over-time svg has %d polylines, want 4 (p99 and throughput of 2 results)", len(lines))
	}
	for i, l := range lines {
		if len(l) != 10 {
			t.Errorf("polyline %d has %d points, want 10", i, len(l))
		}
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir() + "/out"
	rs := []*bench.Result{newTestResult(t, "redirect", "hk-1", "ap-east", time.Millisecond, 2*time.Millisecond)}
	f, err := WriteFiles(dir, "run1", rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.Text, f.JSON, f.Percentiles, f.OverTime} {
		st, err := os.Stat(p)
		if err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	back, err := ReadJSONFile(f.JSON)
	if err != nil || len(back) != 1 || back[0].Percentiles() != rs[0].Percentiles() {
		t.Errorf("read back %v, %v", back, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("%d files in %s, want 4 (no temporaries left)", len(entries), dir)
	}
}
