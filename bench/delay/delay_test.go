package delay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// newEchoServer echoes every connection back (and half-closes after EOF)
// until the test ends; it returns the address.
func newEchoServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	connc := make(chan net.Conn)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connc <- c
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	collect := make(chan struct{})
	go func() {
		defer close(collect)
		for c := range connc {
			conns = append(conns, c)
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		close(connc)
		<-collect
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func newTestProxy(tb testing.TB, target string, d time.Duration) *Proxy {
	tb.Helper()
	p, err := New(Config{Target: target, Delay: d})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// waitFor polls cond every 10 ms for up to timeout.
func waitFor(tb testing.TB, timeout time.Duration, cond func() bool) bool {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func TestRoundTripDelay(t *testing.T) {
	const d = 25 * time.Millisecond
	p := newTestProxy(t, newEchoServer(t), d)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rtts []time.Duration
	buf := make([]byte, 5)
	for i := range 5 {
		msg := []byte{'p', 'i', 'n', 'g', byte('0' + i)}
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
		if !bytes.Equal(buf, msg) {
			t.Fatalf("echo %q, want %q", buf, msg)
		}
	}
	t.Logf("round trips %v", rtts)
	for _, r := range rtts {
		if r < 2*d {
			t.Errorf("round trip %v < 2×delay %v", r, 2*d)
		}
	}
	if med := slices.Sorted(slices.Values(rtts))[len(rtts)/2]; med >= 2*d+20*time.Millisecond {
		t.Errorf("median round trip %v ≥ 2×delay + 20 ms", med)
	}
}

// TestBytesAndThroughput sends 8 MiB through a 10 ms proxy both ways at
// once: every byte must come back in order, far faster than one chunk per
// delay would allow (8 MiB / 32 KiB × 20 ms = 5 s).
func TestBytesAndThroughput(t *testing.T) {
	p := newTestProxy(t, newEchoServer(t), 10*time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c) // ends at EOF: the half-close went through both ways
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("8 MiB echoed in %v", took)
	if !bytes.Equal(got, data) {
		t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(data))
	}
	if took > 3*time.Second {
		t.Errorf("8 MiB took %v: throughput limited by the delay", took)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	base := runtime.NumGoroutine()
	echo := newEchoServer(t)
	p, err := New(Config{Target: echo, Delay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("in flight")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if !waitFor(t, 2*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.links) == 3
	}) {
		t.Fatal("proxy did not set up 3 links")
	}
	begin := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("close took %v", d)
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(c); err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("client connection still open after Close")
		}
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Error("proxy still accepts after Close")
	}
	// Echo server goroutines belong to the test; allow them as slack.
	if !waitFor(t, 2*time.Second, func() bool { return runtime.NumGoroutine() <= base+8 }) {
		t.Errorf("goroutines %d, want ≤ %d after Close", runtime.NumGoroutine(), base+8)
	}
}

func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p := newTestProxy(t, target, time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read = %v, want the connection closed", err)
	}
}

func TestNewInvalid(t *testing.T) {
	for _, cfg := range []Config{{}, {Target: "127.0.0.1:1", Delay: -1}, {Target: "127.0.0.1:1", BufferSize: -1}} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) err = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := New(Config{Target: "x:1", Listen: "256.0.0.1:0"}); err == nil {
		t.Error("bad listen address accepted")
	}
}

var rttCases = []struct {
	name    string
	in      string
	want    map[[2]string]time.Duration
	wantErr string
}{
	{"two pairs", "ap-east:eu-central=180ms,ap-east:us-east=200ms", map[[2]string]time.Duration{
		{"ap-east", "eu-central"}: 180 * time.Millisecond, {"eu-central", "ap-east"}: 180 * time.Millisecond,
		{"ap-east", "us-east"}: 200 * time.Millisecond, {"us-east", "ap-east"}: 200 * time.Millisecond}, ""},
	{"spaces", " a : b = 1.5ms , ", map[[2]string]time.Duration{{"a", "b"}: 1500 * time.Microsecond, {"b", "a"}: 1500 * time.Microsecond}, ""},
	{"empty", "", map[[2]string]time.Duration{}, ""},
	{"same twice both orders", "a:b=10ms,b:a=10ms", map[[2]string]time.Duration{{"a", "b"}: 10 * time.Millisecond, {"b", "a"}: 10 * time.Millisecond}, ""},
	{"conflict", "a:b=10ms,b:a=20ms", nil, "entry 2"},
	{"no equals", "a:b", nil, "entry 1"},
	{"no colon", "ab=3ms", nil, "entry 1"},
	{"three regions", "a:b:c=3ms", nil, "entry 1"},
	{"empty region", ":b=3ms", nil, "entry 1"},
	{"self", "a:a=3ms", nil, "itself"},
	{"bad duration", "a:b=3", nil, "entry 1"},
	{"negative", "a:b=-3ms", nil, "negative"},
	{"empty entry", "a:b=3ms,,c:d=1ms", map[[2]string]time.Duration{{"a", "b"}: 3 * time.Millisecond, {"b", "a"}: 3 * time.Millisecond,
		{"c", "d"}: time.Millisecond, {"d", "c"}: time.Millisecond}, ""},
	{"bad after empty", "a:b=3ms,,c", nil, "entry 3"},
}

func TestParseRTT(t *testing.T) {
	for _, tc := range rttCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRTT(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrBadRTT) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrBadRTT naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			back, err := ParseRTT(FormatRTT(got))
			if err != nil || !maps.Equal(back, got) {
				t.Errorf("format round trip: %q → %v, %v", FormatRTT(got), back, err)
			}
		})
	}
}

func FuzzParseRTT(f *testing.F) {
	for _, tc := range rttCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		m, err := ParseRTT(spec)
		if err != nil {
			return
		}
		for k, v := range m {
			if v < 0 || k[0] == k[1] || m[[2]string{k[1], k[0]}] != v {
				t.Fatalf("bad entry %v=%v", k, v)
			}
		}
		back, err := ParseRTT(FormatRTT(m))
		if err != nil || !maps.Equal(back, m) {
			t.Fatalf("round trip of %q via %q: %v, %v", spec, FormatRTT(m), back, err)
		}
	})
}
