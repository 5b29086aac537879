package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/refrouter/refrouter/bench"
)

// newTestServer serves h on 127.0.0.1:0 until the test ends and returns the
// base URL.
func newTestServer(tb testing.TB, h fasthttp.RequestHandler) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	s := &fasthttp.Server{Handler: h, ReadTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	tb.Cleanup(func() {
		_ = s.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String()
}

func getPath(p string) Request {
	return func(req *fasthttp.Request, _ uint64) {
		req.Header.SetMethod(fasthttp.MethodGet)
		req.URI().SetPath(p)
	}
}

// timingAttempts is how often a timing-sensitive test may run before it
// fails: the machine is shared, and one starved run says nothing about the
// code.
const timingAttempts = 3

// retryTiming runs attempt until it reports no problems, at most
// timingAttempts times, and fails the test with the last problems.
func retryTiming(t *testing.T, attempt func() []string) {
	t.Helper()
	var problems []string
	for i := range timingAttempts {
		if problems = attempt(); len(problems) == 0 {
			return
		}
		t.Logf("attempt %d: %s", i+1, strings.Join(problems, "; "))
	}
	t.Errorf("%d attempts failed, last: %s", timingAttempts, strings.Join(problems, "; "))
}

func TestRateAccuracy(t *testing.T) {
	var hits atomic.Int64
	url := newTestServer(t, func(ctx *fasthttp.RequestCtx) {
		hits.Add(1)
		ctx.SetStatusCode(fasthttp.StatusFound)
		ctx.Response.Header.Set("Location", "https://example.com/")
	})
	const rate = 5000.0
	o := Options{Rate: rate, Connections: 32, Duration: 3 * time.Second, Warmup: 500 * time.Millisecond,
		Name: "rate", Interval: time.Second}
	check := func(resp *fasthttp.Response) error {
		if resp.StatusCode() != fasthttp.StatusFound {
			return fmt.Errorf("status %d", resp.StatusCode())
		}
		return nil
	}
	retryTiming(t, func() []string {
		hits.Store(0)
		begin := time.Now()
		res, err := Run(context.Background(), o, Target{Name: "local", Region: "test", URL: url}, getPath("/abc"), check)
		took := time.Since(begin)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		lag := res.ScheduleLag
		t.Logf("sent=%d ok=%d errors=%v throughput=%.1f p99=%v took=%v lag p50=%dµs p99=%dµs", res.Sent, res.OK,
			res.Errors, res.Throughput, res.Percentiles().P99, took, lag.ValueAtQuantile(50), lag.ValueAtQuantile(99))
		// Exact, whatever the machine's load.
		if res.Sent != rate*3 {
			t.Fatalf("sent = %d, want %d", res.Sent, int(rate*3))
		}
		if lag.TotalCount() != int64(res.Sent) {
			t.Fatalf("schedule lag has %d values, want one per request", lag.TotalCount())
		}
		if res.Scenario != "rate" || res.Target != "local" || res.Region != "test" {
			t.Fatalf("labels = %q %q %q", res.Scenario, res.Target, res.Region)
		}
		if len(res.Series) < 3 {
			t.Fatalf("series has %d points, want ≥ 3", len(res.Series))
		}
		// Timing.
		var problems []string
		within := func(name string, got, want, tol float64) {
			if math.Abs(got-want) > tol*want {
				problems = append(problems, fmt.Sprintf("%s = %.1f, want %.1f ±%.0f%%", name, got, want, tol*100))
			}
		}
		within("ok", float64(res.OK), rate*3, 0.02)
		within("throughput", res.Throughput, rate, 0.02)
		within("server hits", float64(hits.Load()), rate*3.5, 0.02)
		for _, p := range res.Series[:3] {
			within(fmt.Sprintf("series throughput at %v", p.At), p.Throughput, rate, 0.05)
		}
		if took > 5*time.Second {
			problems = append(problems, fmt.Sprintf("run took %v for a 3.5 s schedule", took))
		}
		return problems
	})
}

func TestFixedDelayHistogram(t *testing.T) {
	url := newTestServer(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(20 * time.Millisecond)
		ctx.SetStatusCode(fasthttp.StatusOK)
	})
	o := Options{Rate: 200, Connections: 16, Duration: 1500 * time.Millisecond, Warmup: 200 * time.Millisecond}
	retryTiming(t, func() []string {
		res, err := Run(context.Background(), o, Target{Name: "slow", URL: url}, getPath("/"), nil)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		p := res.Percentiles()
		t.Logf("p50=%v p90=%v p99=%v max=%v", p.P50, p.P90, p.P99, p.Max)
		if got := res.Latency.TotalCount(); got != int64(res.OK) || res.OK != 300 {
			t.Fatalf("histogram count %d, ok %d, want 300 both", got, res.OK)
		}
		if res.Latency.Min() < 20_000 {
			t.Fatalf("min latency %d µs below the server's fixed delay", res.Latency.Min())
		}
		if p.P50 < 20*time.Millisecond || p.P50 > 25*time.Millisecond {
			return []string{fmt.Sprintf("p50 = %v, want within [20ms, 25ms]", p.P50)}
		}
		return nil
	})
}

// TestStallIsMeasuredFromSchedule checks there is no coordinated omission:
// a server that pauses every response for 200 ms once must show the pause
// in every request scheduled during it, not only in one per connection.
func TestStallIsMeasuredFromSchedule(t *testing.T) {
	const stall = 200 * time.Millisecond
	var (
		n          atomic.Int64
		mu         sync.Mutex
		stallUntil time.Time
	)
	url := newTestServer(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1) == 1000 { // about 0.8 s into the measured window
			mu.Lock()
			stallUntil = time.Now().Add(stall)
			mu.Unlock()
		}
		mu.Lock()
		until := stallUntil
		mu.Unlock()
		if d := time.Until(until); d > 0 {
			time.Sleep(d)
		}
		ctx.SetStatusCode(fasthttp.StatusOK)
	})
	const conns = 16
	o := Options{Rate: 1000, Connections: conns, Duration: 2 * time.Second, Warmup: 200 * time.Millisecond}
	res, err := Run(context.Background(), o, Target{Name: "stall", URL: url}, getPath("/"), nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	h := res.Latency
	t.Logf("p50=%v p97=%dµs p99=%dµs max=%dµs count=%d", res.Percentiles().P50, h.ValueAtQuantile(97),
		h.ValueAtQuantile(99), h.Max(), h.TotalCount())
	if h.Max() < 190_000 {
		t.Errorf("max = %d µs, want ≥ 190 ms", h.Max())
	}
	// About 100 of 2000 requests were scheduled in the first half of the
	// stall (≥ 100 ms late); a closed-loop tool would report at most one
	// slow request per connection, 16 of 2000 (0.8 %).
	if v := h.ValueAtQuantile(97); v < 100_000 {
		t.Errorf("p97 = %d µs: fewer than 3%% of requests above 100 ms", v)
	}
	if res.ErrorCount() != 0 {
		t.Errorf("errors %v", res.Errors)
	}
}

func TestErrorKinds(t *testing.T) {
	statusServer := func(code int, sleep time.Duration) string {
		return newTestServer(t, func(ctx *fasthttp.RequestCtx) {
			time.Sleep(sleep)
			ctx.SetStatusCode(code)
		})
	}
	closedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closedLn.Addr().String()
	closedLn.Close()
	want302 := func(resp *fasthttp.Response) error {
		if resp.StatusCode() != fasthttp.StatusFound {
			return errors.New("not a redirect")
		}
		return nil
	}
	tests := []struct {
		name  string
		url   string
		check Check
		o     Options
		kind  string
	}{
		{"404", statusServer(404, 0), nil, Options{}, bench.KindStatus4xx},
		{"503", statusServer(503, 0), want302, Options{}, bench.KindStatus5xx},
		{"200 not 302", statusServer(200, 0), want302, Options{}, bench.KindUnexpected},
		{"refused", closedURL, nil, Options{}, bench.KindConnection},
		{"timeout", statusServer(200, 300*time.Millisecond), nil, Options{Timeout: 50 * time.Millisecond}, bench.KindTimeout},
		{"dropped", statusServer(200, 50*time.Millisecond), nil, Options{Connections: 1, QueueLimit: 2}, bench.KindDropped},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Rate, o.Duration = 200, 300*time.Millisecond
			if o.Connections == 0 {
				o.Connections = 4
			}
			res, err := Run(context.Background(), o, Target{Name: tc.name, URL: tc.url}, getPath("/"), tc.check)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if res.Errors[tc.kind] == 0 {
				t.Fatalf("errors %v, want some %q", res.Errors, tc.kind)
			}
			if tc.kind != bench.KindDropped {
				if res.OK != 0 || res.Errors[tc.kind] != res.Sent {
					t.Errorf("ok=%d sent=%d errors=%v, want every request a %q", res.OK, res.Sent, res.Errors, tc.kind)
				}
			} else if res.OK+res.Errors[tc.kind] != res.Sent || res.OK == 0 {
				t.Errorf("ok=%d sent=%d errors=%v", res.OK, res.Sent, res.Errors)
			}
			if res.Sent != 60 {
				t.Errorf("sent = %d, want 60", res.Sent)
			}
		})
	}
}

// TestBoundedGoroutines: a server far slower than the rate fills the queue;
// the goroutine count must not grow with the backlog.
func TestBoundedGoroutines(t *testing.T) {
	var peak atomic.Int64
	url := newTestServer(t, func(ctx *fasthttp.RequestCtx) {
		if g := int64(runtime.NumGoroutine()); g > peak.Load() {
			peak.Store(g)
		}
		time.Sleep(20 * time.Millisecond)
	})
	base := runtime.NumGoroutine()
	const conns = 4
	o := Options{Rate: 2000, Connections: conns, Duration: 500 * time.Millisecond, QueueLimit: 100, Timeout: time.Second}
	res, err := Run(context.Background(), o, Target{Name: "slow", URL: url}, getPath("/"), nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Errors[bench.KindDropped] == 0 {
		t.Errorf("errors %v, want dropped requests", res.Errors)
	}
	// Workers plus, on the server side, one goroutine per connection, plus slack.
	if limit := int64(base + 2*conns + 8); peak.Load() > limit {
		t.Errorf("peak goroutines %d > %d", peak.Load(), limit)
	}
}

func TestCancel(t *testing.T) {
	url := newTestServer(t, func(ctx *fasthttp.RequestCtx) {})
	for _, rate := range []float64{100, 20000} { // slow: waits on the timer; fast: never sleeps long
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			begin := time.Now()
			res, err := Run(ctx, Options{Rate: rate, Connections: 2, Duration: time.Minute}, Target{URL: url}, getPath("/"), nil)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want deadline exceeded", err)
			}
			if res == nil || res.OK == 0 {
				t.Fatalf("partial result %+v, want some OK requests", res)
			}
			if d := time.Since(begin); d > 2*time.Second {
				t.Errorf("cancel took %v", d)
			}
		})
	}
}

func TestInvalidOptions(t *testing.T) {
	good := Options{Rate: 1, Connections: 1, Duration: time.Second}
	tests := []struct {
		name string
		mut  func(*Options)
		url  string
	}{
		{"zero rate", func(o *Options) { o.Rate = 0 }, "http://127.0.0.1:1"},
		{"NaN rate", func(o *Options) { o.Rate = math.NaN() }, "http://127.0.0.1:1"},
		{"no connections", func(o *Options) { o.Connections = 0 }, "http://127.0.0.1:1"},
		{"no duration", func(o *Options) { o.Duration = 0 }, "http://127.0.0.1:1"},
		{"negative warmup", func(o *Options) { o.Warmup = -1 }, "http://127.0.0.1:1"},
		{"bad scheme", func(o *Options) {}, "ftp://127.0.0.1:1"},
		{"no host", func(o *Options) {}, "http:///x"},
		{"unparsable", func(o *Options) {}, "http://[::1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.mut(&o)
			_, err := Run(context.Background(), o, Target{URL: tc.url}, getPath("/"), nil)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		host string
		tls  bool
	}{
		{"http://127.0.0.1:8080", "127.0.0.1:8080", false},
		{"http://example.com", "example.com:80", false},
		{"https://example.com/x", "example.com:443", true},
		{"http://[::1]:9", "[::1]:9", false},
	}
	for _, tc := range tests {
		host, tls, err := parseTarget(tc.in)
		if err != nil || host != tc.host || tls != tc.tls {
			t.Errorf("parseTarget(%q) = %q, %v, %v; want %q, %v", tc.in, host, tls, err, tc.host, tc.tls)
		}
	}
}

// BenchmarkRun runs one short open-loop run per iteration against a local
// server and reports the achieved rate.
func BenchmarkRun(b *testing.B) {
	url := newTestServer(b, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusFound) })
	b.ReportAllocs()
	for b.Loop() {
		res, err := Run(context.Background(), Options{Rate: 10000, Connections: 32, Duration: time.Second, Warmup: 200 * time.Millisecond},
			Target{URL: url}, getPath("/x"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.Throughput, "req/s")
		b.ReportMetric(float64(res.Percentiles().P99.Microseconds()), "p99-µs")
	}
}

// TestStalledTargetEndsOnTime: against a target that accepts connections and
// never answers, a run ends about its timeout after its schedule, counting
// every request as a timeout, instead of sending the whole queue one
// timeout at a time per connection.
func TestStalledTargetEndsOnTime(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	o := Options{Rate: 20, Connections: 1, Duration: time.Second, Timeout: 500 * time.Millisecond}
	begin := time.Now()
	res, err := Run(context.Background(), o, Target{Name: "stalled", URL: "http://" + ln.Addr().String()}, getPath("/"), nil)
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	// Sending all 20 one after another would take 20 x 0.5 s = 10 s.
	if took > 5*time.Second {
		t.Errorf("a 1 s run against a stalled target took %v", took)
	}
	if res.Sent != 20 || res.Errors[bench.KindTimeout] != 20 {
		t.Errorf("sent %d, errors %v: want 20 timeouts", res.Sent, res.Errors)
	}
}
