package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds shared by every latency histogram of a run: values are
// microseconds from 1 µs to 60 s with 3 significant digits.
const (
	HistMinMicros = 1
	HistMaxMicros = 60_000_000
	HistDigits    = 3
)

// Error kinds counted in Result.Errors.
const (
	// KindTimeout: no response within Options.Timeout.
	KindTimeout = "timeout"
	// KindConnection: dial failed or the connection broke before a response.
	KindConnection = "connection"
	// KindStatus4xx: the check rejected a response with a 4xx status.
	KindStatus4xx = "status_4xx"
	// KindStatus5xx: the check rejected a response with a 5xx status.
	KindStatus5xx = "status_5xx"
	// KindUnexpected: the check rejected a response whose status was below 400
	// (for example 202 where 200 was expected, or a 302 without Location).
	KindUnexpected = "unexpected_status"
	// KindDropped: the request was scheduled while the queue in front of the
	// busy workers was full, so it was never sent.
	KindDropped = "dropped"
	// KindOther: any other client error.
	KindOther = "other"
)

// ErrBadResult is returned (wrapped) when a Result cannot be decoded.
var ErrBadResult = errors.New("bench: bad result")

// NewHistogram returns an empty latency histogram with the shared bounds.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(HistMinMicros, HistMaxMicros, HistDigits)
}

// Point is one interval of a run's time series.
type Point struct {
	// At is the end of the interval, measured from the end of the warm-up.
	At time.Duration
	// Count is the number of responses completed in the interval.
	Count uint64
	// Errors is the number of failed requests completed in the interval.
	Errors uint64
	// Throughput is Count per second of interval.
	Throughput float64
	// P99 is the 99th percentile latency of the responses of the interval.
	P99 time.Duration
}

// Percentiles summarises a latency distribution.
type Percentiles struct {
	P50, P90, P99, P999, Max, Mean time.Duration
}

// Result is the outcome of one scenario against one target. A Result is
// plain data: it is not safe for concurrent mutation, but may be read
// concurrently once Run has returned it.
type Result struct {
	Scenario string
	Target   string
	Region   string
	// Start is the wall-clock time the measured window began (after warm-up).
	Start time.Time
	// Duration is the measured window (Options.Duration); Elapsed is the time
	// from the start of the window to the last completion, which is longer
	// when queued requests drain after the window.
	Duration, Elapsed time.Duration
	// Rate is the scheduled request rate (requests/s); Connections the
	// number of connections (and workers).
	Rate        float64
	Connections int
	// Sent counts requests scheduled in the measured window (dropped ones
	// included); OK counts those whose response passed the check.
	Sent, OK uint64
	// Errors counts failed requests by kind (Kind* constants).
	Errors map[string]uint64
	// Throughput is completed responses (OK or not) per second of Elapsed.
	Throughput float64
	// Latency holds, in microseconds, the latency of every request of the
	// window that got a response, measured from its scheduled send time.
	// It may be nil in a Result read from JSON without a histogram.
	Latency *hdrhistogram.Histogram
	// Series is throughput and p99 over time, one Point per interval.
	Series []Point
	// ScheduleLag holds, in microseconds, how late the scheduler handed
	// each request of the window to the queue (timer slack and CPU
	// starvation of the load generator). It is part of Latency; when its
	// p99 is a large share of Latency's, the load generator, not the
	// server, is the bottleneck. Nil in Results read from JSON.
	ScheduleLag *hdrhistogram.Histogram

	// summary holds the percentiles read from JSON when Latency is nil.
	summary Percentiles
}

// Percentiles returns the latency summary, from Latency when present, or
// else from the summary stored in the JSON the Result was read from.
func (r *Result) Percentiles() Percentiles {
	if r.Latency == nil {
		return r.summary
	}
	h := r.Latency
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return Percentiles{
		P50:  us(h.ValueAtQuantile(50)),
		P90:  us(h.ValueAtQuantile(90)),
		P99:  us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)),
		Max:  us(h.Max()),
		Mean: time.Duration(h.Mean() * float64(time.Microsecond)),
	}
}

// ErrorCount returns the sum of Errors.
func (r *Result) ErrorCount() uint64 {
	var n uint64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// jsonLatency is the JSON form of Percentiles, in milliseconds.
type jsonLatency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type jsonPoint struct {
	At         float64 `json:"t_s"`
	Count      uint64  `json:"count"`
	Errors     uint64  `json:"errors,omitempty"`
	Throughput float64 `json:"throughput"`
	P99        float64 `json:"p99_ms"`
}

type jsonResult struct {
	Scenario    string            `json:"scenario"`
	Target      string            `json:"target"`
	Region      string            `json:"region,omitempty"`
	Start       time.Time         `json:"start"`
	Duration    float64           `json:"duration_s"`
	Elapsed     float64           `json:"elapsed_s"`
	Rate        float64           `json:"rate"`
	Connections int               `json:"connections"`
	Sent        uint64            `json:"sent"`
	OK          uint64            `json:"ok"`
	Errors      map[string]uint64 `json:"errors,omitempty"`
	Throughput  float64           `json:"throughput"`
	Latency     jsonLatency       `json:"latency_ms"`
	Histogram   string            `json:"histogram,omitempty"`
	Series      []jsonPoint       `json:"series,omitempty"`
	Lag         *jsonLag          `json:"schedule_lag_ms,omitempty"`
}

type jsonLag struct {
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMS(v float64) (time.Duration, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > float64(math.MaxInt64)/float64(time.Millisecond) {
		return 0, fmt.Errorf("%w: latency %v ms out of range", ErrBadResult, v)
	}
	return time.Duration(v * float64(time.Millisecond)), nil
}

func fromSeconds(v float64) (time.Duration, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > float64(math.MaxInt64)/float64(time.Second) {
		return 0, fmt.Errorf("%w: duration %v s out of range", ErrBadResult, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// MarshalJSON encodes the Result with latencies in milliseconds: a summary
// object "latency_ms" {p50, p90, p99, p99.9, max, mean}, the full histogram
// as HdrHistogram V2 compressed base64 ("histogram"), and the series.
func (r *Result) MarshalJSON() ([]byte, error) {
	p := r.Percentiles()
	j := jsonResult{
		Scenario: r.Scenario, Target: r.Target, Region: r.Region, Start: r.Start,
		Duration: r.Duration.Seconds(), Elapsed: r.Elapsed.Seconds(), Rate: r.Rate,
		Connections: r.Connections, Sent: r.Sent, OK: r.OK, Errors: r.Errors,
		Throughput: r.Throughput,
		Latency: jsonLatency{P50: ms(p.P50), P90: ms(p.P90), P99: ms(p.P99), P999: ms(p.P999),
			Max: ms(p.Max), Mean: ms(p.Mean)},
	}
	if h := r.ScheduleLag; h != nil && h.TotalCount() > 0 {
		j.Lag = &jsonLag{P99: float64(h.ValueAtQuantile(99)) / 1000, Max: float64(h.Max()) / 1000}
	}
	if r.Latency != nil {
		b, err := r.Latency.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
		if err != nil {
			return nil, fmt.Errorf("encode histogram of %s/%s: %w", r.Scenario, r.Target, err)
		}
		j.Histogram = string(b)
	}
	for _, pt := range r.Series {
		j.Series = append(j.Series, jsonPoint{At: pt.At.Seconds(), Count: pt.Count, Errors: pt.Errors,
			Throughput: pt.Throughput, P99: ms(pt.P99)})
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON writes. The histogram is optional;
// without it Percentiles returns the stored summary.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j jsonResult
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("%w: %w", ErrBadResult, err)
	}
	out := Result{Scenario: j.Scenario, Target: j.Target, Region: j.Region, Start: j.Start,
		Rate: j.Rate, Connections: j.Connections, Sent: j.Sent, OK: j.OK, Errors: j.Errors,
		Throughput: j.Throughput}
	var err error
	if out.Duration, err = fromSeconds(j.Duration); err != nil {
		return err
	}
	if out.Elapsed, err = fromSeconds(j.Elapsed); err != nil {
		return err
	}
	if math.IsNaN(j.Rate) || math.IsNaN(j.Throughput) || math.IsInf(j.Rate, 0) || math.IsInf(j.Throughput, 0) {
		return fmt.Errorf("%w: rate or throughput not a number", ErrBadResult)
	}
	vals := []*time.Duration{&out.summary.P50, &out.summary.P90, &out.summary.P99, &out.summary.P999,
		&out.summary.Max, &out.summary.Mean}
	for i, v := range []float64{j.Latency.P50, j.Latency.P90, j.Latency.P99, j.Latency.P999,
		j.Latency.Max, j.Latency.Mean} {
		if *vals[i], err = fromMS(v); err != nil {
			return err
		}
	}
	if j.Histogram != "" {
		h, err := hdrhistogram.Decode([]byte(j.Histogram))
		if err != nil {
			return fmt.Errorf("%w: decode histogram: %w", ErrBadResult, err)
		}
		out.Latency = h
	}
	for _, jp := range j.Series {
		at, err := fromSeconds(jp.At)
		if err != nil {
			return err
		}
		p99, err := fromMS(jp.P99)
		if err != nil {
			return err
		}
		if math.IsNaN(jp.Throughput) || math.IsInf(jp.Throughput, 0) {
			return fmt.Errorf("%w: series throughput not a number", ErrBadResult)
		}
		out.Series = append(out.Series, Point{At: at, Count: jp.Count, Errors: jp.Errors,
			Throughput: jp.Throughput, P99: p99})
	}
	*r = out
	return nil
}
