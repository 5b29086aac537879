package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/refrouter/refrouter/bench"
)

// palette colours the series in order.
var palette = [...]string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// svgWriter writes formatted SVG and keeps the first error.
type svgWriter struct {
	w   io.Writer
	err error
}

func (s *svgWriter) printf(format string, args ...any) {
	if s.err == nil {
		_, s.err = fmt.Fprintf(s.w, format, args...)
	}
}

func esc(v string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(v)) // a strings.Builder never fails
	return b.String()
}

// label names a result in legends.
func label(r *bench.Result) string {
	parts := []string{r.Scenario}
	if r.Target != "" {
		parts = append(parts, r.Target)
	}
	if r.Region != "" {
		parts = append(parts, r.Region)
	}
	return strings.Join(parts, " / ")
}

type xy struct{ x, y float64 }

// plotArea maps data coordinates to an SVG box.
type plotArea struct {
	left, top, width, height float64
	xmax, ymax               float64
}

func (a plotArea) px(p xy) (float64, float64) {
	return a.left + p.x/a.xmax*a.width, a.top + a.height - p.y/a.ymax*a.height
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if !(v > 0) || math.IsInf(v, 0) {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*e {
			return m * e
		}
	}
	return 10 * e
}

func (s *svgWriter) header(w, h int, title string) {
	s.printf(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	s.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	s.printf(`<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	s.printf(`<text x="%d" y="22" font-size="15" text-anchor="middle">%s</text>`+"\n", w/2, esc(title))
}

// axes draws the frame, grid lines and labels of one plot area.
func (s *svgWriter) axes(a plotArea, xticks []float64, xlabel func(float64) string, yname, xname string) {
	s.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", a.left, a.top, a.width, a.height)
	for _, t := range xticks {
		x, _ := a.px(xy{t, 0})
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, a.top, x, a.top+a.height)
		s.printf(`<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, a.top+a.height+16, esc(xlabel(t)))
	}
	for i := 0; i <= 5; i++ {
		v := a.ymax * float64(i) / 5
		_, y := a.px(xy{0, v})
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", a.left, y, a.left+a.width, y)
		s.printf(`<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", a.left-6, y+4, esc(fmt.Sprintf("%.4g", v)))
	}
	s.printf(`<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", a.left+a.width/2, a.top+a.height+34, esc(xname))
	s.printf(`<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", a.left-52, a.top+a.height/2, esc(yname))
}

// polyline draws one series; it is skipped when it has no points.
func (s *svgWriter) polyline(a plotArea, pts []xy, color, name string) {
	if len(pts) == 0 {
		return
	}
	var b strings.Builder
	for i, p := range pts {
		x, y := a.px(p)
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x, y)
	}
	s.printf(`<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"><title>%s</title></polyline>`+"\n",
		color, b.String(), esc(name))
}

func (s *svgWriter) legend(x, y float64, names []string) {
	for i, n := range names {
		yy := y + float64(i)*18
		s.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n",
			x, yy, x+20, yy, palette[i%len(palette)])
		s.printf(`<text x="%.1f" y="%.1f">%s</text>`+"\n", x+26, yy+4, esc(n))
	}
}

// maxPercentileDecades bounds the x axis of the percentile plot (99.9999 %).
const maxPercentileDecades = 6

// percentilePoints returns the latency distribution of r as (log10 of
// 1/(1-q), ms) points: from the histogram at 20 points per decade up to the
// resolution its count allows, or else from the stored summary.
func percentilePoints(r *bench.Result) []xy {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	h := r.Latency
	if h == nil {
		p := r.Percentiles()
		if p.Max == 0 {
			return nil
		}
		return []xy{{math.Log10(2), ms(p.P50)}, {1, ms(p.P90)}, {2, ms(p.P99)}, {3, ms(p.P999)}, {4, ms(p.Max)}}
	}
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	limit := min(math.Log10(float64(n)), maxPercentileDecades)
	var pts []xy
	for k := 0; ; k++ {
		x := float64(k) / 20
		if x > limit {
			break
		}
		q := 100 * (1 - math.Pow(10, -x))
		pts = append(pts, xy{x, float64(h.ValueAtQuantile(q)) / 1000})
	}
	return append(pts, xy{limit, float64(h.Max()) / 1000})
}

// WritePercentileSVG plots latency by percentile, HdrHistogram style: the
// x axis is logarithmic in 1/(1-percentile) (0 %, 90 %, 99 %, 99.9 %, …), the
// y axis latency in ms. One <polyline> per result that has latencies.
func WritePercentileSVG(w io.Writer, rs []*bench.Result) error {
	rs = sorted(rs)
	series := make([][]xy, len(rs))
	xmax, ymax := 3.0, 0.0
	for i, r := range rs {
		series[i] = percentilePoints(r)
		for _, p := range series[i] {
			xmax, ymax = max(xmax, math.Ceil(p.x)), max(ymax, p.y)
		}
	}
	s := &svgWriter{w: w}
	s.header(900, 480, "Latency by percentile")
	a := plotArea{left: 80, top: 40, width: 560, height: 370, xmax: xmax, ymax: niceMax(ymax * 1.05)}
	var ticks []float64
	for d := 0.0; d <= xmax; d++ {
		ticks = append(ticks, d)
	}
	s.axes(a, ticks, func(d float64) string {
		if d == 0 {
			return "0%"
		}
		return fmt.Sprintf("%.*f%%", max(int(d)-2, 0), 100*(1-math.Pow(10, -d)))
	}, "latency (ms)", "percentile")
	var names []string
	for i, r := range rs {
		s.polyline(a, series[i], palette[len(names)%len(palette)], label(r))
		if len(series[i]) > 0 {
			names = append(names, label(r))
		}
	}
	s.legend(660, 60, names)
	s.printf("</svg>\n")
	if s.err != nil {
		return fmt.Errorf("write percentile svg: %w", s.err)
	}
	return nil
}

// WriteOverTimeSVG plots, against time since the end of the warm-up, the
// p99 latency (top panel, ms) and the throughput (bottom panel, req/s) of
// every result that has a series: two <polyline>s per such result.
func WriteOverTimeSVG(w io.Writer, rs []*bench.Result) error {
	rs = sorted(rs)
	var tmax, pmax, thmax float64
	for _, r := range rs {
		for _, p := range r.Series {
			tmax = max(tmax, p.At.Seconds())
			pmax = max(pmax, float64(p.P99)/float64(time.Millisecond))
			thmax = max(thmax, p.Throughput)
		}
	}
	tmax = niceMax(tmax)
	s := &svgWriter{w: w}
	s.header(900, 620, "Latency and throughput over time")
	top := plotArea{left: 80, top: 40, width: 560, height: 230, xmax: tmax, ymax: niceMax(pmax * 1.05)}
	bottom := plotArea{left: 80, top: 340, width: 560, height: 230, xmax: tmax, ymax: niceMax(thmax * 1.05)}
	var ticks []float64
	for i := 0; i <= 10; i++ {
		ticks = append(ticks, tmax*float64(i)/10)
	}
	sec := func(v float64) string { return fmt.Sprintf("%.3g", v) }
	s.axes(top, ticks, sec, "p99 latency (ms)", "time (s)")
	s.axes(bottom, ticks, sec, "throughput (req/s)", "time (s)")
	var names []string
	for _, r := range rs {
		if len(r.Series) == 0 {
			continue
		}
		var lat, thr []xy
		for _, p := range r.Series {
			lat = append(lat, xy{p.At.Seconds(), float64(p.P99) / float64(time.Millisecond)})
			thr = append(thr, xy{p.At.Seconds(), p.Throughput})
		}
		c := palette[len(names)%len(palette)]
		s.polyline(top, lat, c, label(r)+" p99")
		s.polyline(bottom, thr, c, label(r)+" throughput")
		names = append(names, label(r))
	}
	s.legend(660, 60, names)
	s.printf("</svg>\n")
	if s.err != nil {
		return fmt.Errorf("write over-time svg: %w", s.err)
	}
	return nil
}
