// Package loadgen is an open-loop, constant-rate HTTP load generator built
// on fasthttp's HostClient.
//
// Requests are scheduled at fixed intervals (1/Rate) whatever the server
// does, and each request's latency is measured from its scheduled send time,
// not from the moment a connection was free to send it. A server that stalls
// therefore shows the stall in the latency of every request scheduled during
// it (no coordinated omission), as wrk2 does.
//
// Goroutines: Run uses exactly Options.Connections workers (one connection
// each) plus the calling goroutine as the scheduler; it returns only after
// all workers have stopped. When every worker is busy, scheduled requests
// wait in a bounded queue (their wait counts as latency); a request
// scheduled while the queue is full is not sent and counts as a "dropped"
// error.
//
// Time is the real monotonic clock: a load generator measures real time, so
// there is no clock to inject.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/refrouter/refrouter/bench"
)

// ErrInvalidOptions is returned (wrapped) by Run for bad Options or Target.
var ErrInvalidOptions = errors.New("loadgen: invalid options")

// Defaults applied by Run to zero fields of Options.
const (
	DefaultTimeout = 5 * time.Second
	// MinQueue is the smallest default queue bound.
	MinQueue = 64
	// MaxQueue caps the default queue bound (one second of requests).
	MaxQueue = 1 << 20
	// spinWindow is how long before a due time the scheduler leaves the
	// runtime's timers (their resolution on Linux) for nanosleep.
	spinWindow = time.Millisecond
)

// Options configures one run.
type Options struct {
	// Rate is the constant request rate in requests per second (> 0).
	Rate float64
	// Connections is the number of connections and workers (> 0).
	Connections int
	// Duration is the measured window (> 0); Warmup (≥ 0) runs before it
	// at the same rate and is excluded from the Result.
	Duration, Warmup time.Duration
	// Timeout bounds each request from its send (default DefaultTimeout).
	Timeout time.Duration
	// Name is the scenario name copied to Result.Scenario.
	Name string
	// Interval is the time-series step: 0 means 100 ms when Duration is at
	// most 10 s, else 1 s.
	Interval time.Duration
	// CoarseTimer makes the scheduler sleep on runtime timers only. By
	// default it sleeps on a timer until spinWindow (1 ms) before a request
	// is due and then in a nanosleep system call, because the runtime's
	// timers on Linux wake up to 1 ms late, which would add up to 1 ms to
	// every measured latency (see Result.ScheduleLag).
	CoarseTimer bool
	// QueueLimit bounds the requests waiting for a free worker: 0 means one
	// second of requests (Rate), at least MinQueue and at most MaxQueue.
	QueueLimit int
}

// Target is the server under test. URL is its base URL ("http://host:port");
// only scheme and host are used, the path comes from the Request builder.
type Target struct {
	Name, Region, URL string
}

// Request fills one request: method, path and query (req.URI().SetPath,
// SetQueryString, or SetRequestURI with a path or a full URL), headers and
// body. seq numbers the scheduled requests from 0 (warm-up included). Run
// sets the target's host when the builder leaves it empty. It is called
// concurrently from all workers, so it must be safe for concurrent use; req
// belongs to the caller only during the call.
type Request func(req *fasthttp.Request, seq uint64)

// Check judges one response: nil means OK. A non-nil error counts as
// status_5xx, status_4xx or unexpected_status by the response's status
// code. A nil Check accepts every status below 400. Called concurrently;
// resp must not be retained.
type Check func(resp *fasthttp.Response) error

type job struct {
	seq uint64
	at  time.Time
}

// Run drives target t at o.Rate for o.Warmup+o.Duration and returns the
// measurements of the Duration window. It blocks until the last queued
// request has completed (or timed out). If ctx is cancelled, Run stops
// scheduling, waits for the workers and returns the partial Result together
// with an error wrapping ctx.Err().
func Run(ctx context.Context, o Options, t Target, build Request, check Check) (*bench.Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if build == nil {
		return nil, fmt.Errorf("%w: nil request builder", ErrInvalidOptions)
	}
	if check == nil {
		check = defaultCheck
	}
	host, tls, err := parseTarget(t.URL)
	if err != nil {
		return nil, err
	}
	client := &fasthttp.HostClient{
		Addr:                     host,
		IsTLS:                    tls,
		MaxConns:                 o.Connections,
		NoDefaultUserAgentHeader: true,
		MaxIdleConnDuration:      time.Minute,
		ReadBufferSize:           16 << 10,
		// No silent retries: a failed request is one error, not a slower
		// success.
		MaxIdemponentCallAttempts: 1,
	}
	defer client.CloseIdleConnections()

	rec := newRecorder(o)
	jobs := make(chan job, o.QueueLimit)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The scheduler: request i is due at start + i/Rate.
	start := time.Now().Add(time.Millisecond)
	rec.measureStart = start.Add(o.Warmup)
	total := uint64(math.Ceil((o.Warmup + o.Duration).Seconds() * o.Rate))
	due := func(i uint64) time.Time {
		return start.Add(time.Duration(float64(i) * float64(time.Second) / o.Rate))
	}

	var wg sync.WaitGroup
	for range o.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(runCtx, client, host, tls, o.Timeout, jobs, build, check, rec)
		}()
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lag := bench.NewHistogram() // owned by the scheduler (this goroutine)
	var i uint64
schedule:
	for i < total {
		select {
		case <-runCtx.Done():
			break schedule
		default:
		}
		now := time.Now()
		for ; i < total && !due(i).After(now); i++ {
			j := job{seq: i, at: due(i)}
			if !j.at.Before(rec.measureStart) {
				_ = lag.RecordValue(min(max(now.Sub(j.at).Microseconds(), bench.HistMinMicros), bench.HistMaxMicros))
			}
			select {
			case jobs <- j:
			default:
				rec.drop(j.at)
			}
		}
		if i >= total {
			break
		}
		wait := time.Until(due(i))
		if !o.CoarseTimer {
			wait -= spinWindow
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-runCtx.Done():
				break schedule
			case <-timer.C:
			}
		}
		// Sleep in the kernel through the last stretch, which the
		// runtime's timers cannot resolve.
		if d := time.Until(due(i)); !o.CoarseTimer && d > 0 {
			preciseSleep(d)
		}
	}
	close(jobs)
	wg.Wait()

	res := rec.result(t)
	res.ScheduleLag = lag
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("run %s against %s: %w", o.Name, t.Name, err)
	}
	return res, nil
}

func (o Options) withDefaults() (Options, error) {
	switch {
	case !(o.Rate > 0) || math.IsInf(o.Rate, 0):
		return o, fmt.Errorf("%w: rate %v must be positive", ErrInvalidOptions, o.Rate)
	case o.Connections <= 0:
		return o, fmt.Errorf("%w: connections %d must be positive", ErrInvalidOptions, o.Connections)
	case o.Duration <= 0:
		return o, fmt.Errorf("%w: duration %v must be positive", ErrInvalidOptions, o.Duration)
	case o.Warmup < 0 || o.Timeout < 0 || o.Interval < 0 || o.QueueLimit < 0:
		return o, fmt.Errorf("%w: negative warmup, timeout, interval or queue limit", ErrInvalidOptions)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Interval == 0 {
		o.Interval = 100 * time.Millisecond
		if o.Duration > 10*time.Second {
			o.Interval = time.Second
		}
	}
	if o.QueueLimit == 0 {
		o.QueueLimit = int(min(max(o.Rate, MinQueue), MaxQueue))
	}
	return o, nil
}

func parseTarget(raw string) (host string, tls bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, fmt.Errorf("%w: target url %q: %w", ErrInvalidOptions, raw, err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		tls = true
	default:
		return "", false, fmt.Errorf("%w: target url %q: scheme must be http or https", ErrInvalidOptions, raw)
	}
	if u.Host == "" {
		return "", false, fmt.Errorf("%w: target url %q: no host", ErrInvalidOptions, raw)
	}
	host = u.Host
	if u.Port() == "" {
		port := "80"
		if tls {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	return host, tls, nil
}

func work(ctx context.Context, c *fasthttp.HostClient, host string, tls bool, timeout time.Duration,
	jobs <-chan job, build Request, check Check, rec *recorder) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for {
		var j job
		var ok bool
		select {
		case <-ctx.Done():
			return
		case j, ok = <-jobs:
			if !ok {
				return
			}
		}
		if start := time.Now(); start.Sub(j.at) >= timeout {
			// Queued past its timeout (the target stalls and the
			// connections are all busy): it has timed out already, and
			// sending it would keep a stalled run going for
			// queue x timeout / connections after its end.
			rec.record(j.at, j.at.Add(timeout), bench.KindTimeout, false)
			continue
		}
		req.Reset()
		resp.Reset()
		build(req, j.seq)
		if u := req.URI(); len(u.Host()) == 0 {
			u.SetHost(host)
			if tls {
				u.SetScheme("https")
			}
		}
		err := c.DoTimeout(req, resp, timeout)
		done := time.Now()
		kind := ""
		if err != nil {
			kind = errorKind(err)
		} else if cerr := check(resp); cerr != nil {
			kind = statusKind(resp.StatusCode())
		}
		rec.record(j.at, done, kind, err == nil)
	}
}

func defaultCheck(resp *fasthttp.Response) error {
	if resp.StatusCode() >= 400 {
		return fmt.Errorf("status %d", resp.StatusCode())
	}
	return nil
}

func statusKind(code int) string {
	switch {
	case code >= 500:
		return bench.KindStatus5xx
	case code >= 400:
		return bench.KindStatus4xx
	default:
		return bench.KindUnexpected
	}
}

func errorKind(err error) string {
	var te interface{ Timeout() bool }
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		(errors.As(err, &te) && te.Timeout()) {
		return bench.KindTimeout
	}
	var ne net.Error
	if errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, fasthttp.ErrNoFreeConns) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &ne) {
		return bench.KindConnection
	}
	return bench.KindOther
}

// recorder collects measurements; workers and the scheduler call it
// concurrently, so every method takes mu.
type recorder struct {
	mu           sync.Mutex
	o            Options
	measureStart time.Time // set before any worker records
	hist         *hdrhistogram.Histogram
	series       []bucket
	sent, ok     uint64
	responses    uint64
	errs         map[string]uint64
	last         time.Time
}

type bucket struct {
	count, errors uint64
	hist          *hdrhistogram.Histogram
}

// seriesDigits is the precision of the per-interval histograms: 2
// significant digits keep each at about 20 KB.
const seriesDigits = 2

func newRecorder(o Options) *recorder {
	return &recorder{o: o, hist: bench.NewHistogram(), errs: make(map[string]uint64)}
}

func (r *recorder) bucket(at time.Time) *bucket {
	i := int(at.Sub(r.measureStart) / r.o.Interval)
	i = max(i, 0)
	for len(r.series) <= i {
		r.series = append(r.series, bucket{})
	}
	return &r.series[i]
}

func (r *recorder) drop(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if at.Before(r.measureStart) {
		return
	}
	r.sent++
	r.errs[bench.KindDropped]++
	r.bucket(at).errors++
}

// record books one completed request scheduled at 'at' and finished at
// 'done'; kind is "" for OK; responded tells whether a response came.
func (r *recorder) record(at, done time.Time, kind string, responded bool) {
	if at.Before(r.measureStart) {
		return // warm-up
	}
	us := min(max(done.Sub(at).Microseconds(), bench.HistMinMicros), bench.HistMaxMicros)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent++
	if done.After(r.last) {
		r.last = done
	}
	b := r.bucket(done)
	if kind == "" {
		r.ok++
	} else {
		r.errs[kind]++
		b.errors++
	}
	if !responded {
		return
	}
	r.responses++
	_ = r.hist.RecordValue(us) // us is clamped into range
	b.count++
	if b.hist == nil {
		b.hist = hdrhistogram.New(bench.HistMinMicros, bench.HistMaxMicros, seriesDigits)
	}
	_ = b.hist.RecordValue(us)
}

func (r *recorder) result(t Target) *bench.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	elapsed := r.o.Duration
	if d := r.last.Sub(r.measureStart); d > elapsed {
		elapsed = d
	}
	res := &bench.Result{
		Scenario: r.o.Name, Target: t.Name, Region: t.Region,
		Start: r.measureStart.Round(0), Duration: r.o.Duration, Elapsed: elapsed,
		Rate: r.o.Rate, Connections: r.o.Connections,
		Sent: r.sent, OK: r.ok, Errors: make(map[string]uint64, len(r.errs)),
		Throughput: float64(r.responses) / elapsed.Seconds(),
		Latency:    r.hist,
	}
	for k, v := range r.errs {
		res.Errors[k] = v
	}
	for i, b := range r.series {
		p := bench.Point{At: time.Duration(i+1) * r.o.Interval, Count: b.count, Errors: b.errors,
			Throughput: float64(b.count) / r.o.Interval.Seconds()}
		if b.hist != nil {
			p.P99 = time.Duration(b.hist.ValueAtQuantile(99)) * time.Microsecond
		}
		res.Series = append(res.Series, p)
	}
	return res
}
