package edgehttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// testServer is an edgehttp.Server on a free loopback port with a fasthttp
// server behind it; the fast path answers "fast <path>", fasthttp "slow
// <method> <path> <body>".
type testServer struct {
	edge   *Server
	slow   *fasthttp.Server
	addr   string
	served atomic.Int64 // requests the fast path answered
	panics atomic.Int64
	done   chan error
}

func startTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startTestServerOn(t, cfg, ln)
}

// startTestServerOn is startTestServer serving ln.
func startTestServerOn(t *testing.T, cfg Config, ln net.Listener) *testServer {
	t.Helper()
	ts := &testServer{done: make(chan error, 2)}
	cfg.Match = matchCode
	cfg.Serve = func(dst []byte, r *Request) []byte {
		if string(r.Path) == "/panic1" {
			panic("boom")
		}
		if string(r.Path) == "/big123" {
			// An answer larger than the socket buffers, for the paths
			// where a write has to wait for the client to read.
			body := strings.Repeat("0123456789abcdef", bigBody/16)
			return fmt.Appendf(dst, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
		// Without allocating (TestServeConnAllocs).
		ts.served.Add(1)
		dst = append(dst, "HTTP/1.1 200 OK\r\nContent-Length: "...)
		dst = strconv.AppendInt(dst, int64(len("fast ")+len(r.Path)), 10)
		dst = append(dst, "\r\nX-Path: fast\r\n\r\n"...)
		if !r.Head {
			dst = append(append(dst, "fast "...), r.Path...)
		}
		return dst
	}
	cfg.Panic = func(any) { ts.panics.Add(1) }
	edge, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.edge = edge
	ts.slow = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("X-Path", "slow")
			fmt.Fprintf(ctx, "slow %s %s %s", ctx.Method(), ctx.Path(), ctx.PostBody())
		},
		ReadBufferSize: 8192,
		Logger:         quietLogger{},
	}
	ts.addr = ln.Addr().String()
	go func() { ts.done <- edge.Serve(ln) }()
	go func() { ts.done <- ts.slow.Serve(edge.Fallback()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		edge.Shutdown(ctx)
		ts.slow.ShutdownWithContext(ctx)
		for range 2 {
			select {
			case err := <-ts.done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-ctx.Done():
				t.Error("Serve did not return after Shutdown")
				return
			}
		}
	})
	return ts
}

// quietLogger keeps the fasthttp servers of the tests from logging the
// requests they reject on purpose.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

func get(t *testing.T, c *http.Client, method, url string, body string) (string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Get("X-Path"), string(b)
}

// TestFastAndFallback: one keep-alive connection of a real HTTP client goes
// fast, then to the fallback (which keeps it), with every answer right.
func TestFastAndFallback(t *testing.T) {
	ts := startTestServer(t, Config{})
	var dials atomic.Int64
	tr := &http.Transport{MaxConnsPerHost: 1, DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, n, a)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	base := "http://" + ts.addr
	for i, step := range []struct{ method, path, body, wantPath, wantBody string }{
		{"GET", "/abc123", "", "fast", "fast /abc123"},
		{"GET", "/abc123?x=1", "", "fast", "fast /abc123"},
		{"HEAD", "/abc123", "", "fast", ""},
		{"GET", "/v1/x", "", "slow", "slow GET /v1/x "},
		{"POST", "/abc123", "hi", "slow", "slow POST /abc123 hi"},
		{"GET", "/abc123", "", "slow", "slow GET /abc123 "}, // the connection is fasthttp's now
	} {
		gotPath, gotBody := get(t, c, step.method, base+step.path, step.body)
		if gotPath != step.wantPath || gotBody != step.wantBody {
			t.Fatalf("step %d %s %s: %s %q, want %s %q", i, step.method, step.path, gotPath, gotBody, step.wantPath, step.wantBody)
		}
	}
	if d := dials.Load(); d != 1 {
		t.Fatalf("%d connections dialled, want 1 (kept alive through the hand-off)", d)
	}
	if n := ts.served.Load(); n != 3 {
		t.Fatalf("fast path served %d, want 3", n)
	}
	if st := ts.edge.Stats(); st.Served != 3 || st.HandedOff != 1 {
		t.Fatalf("Stats = %+v, want 3 served, 1 handed off", st)
	}
}

// rawExchange writes in on a fresh connection and reads n responses; heads
// lists the indexes of responses to HEAD requests (no body).
func rawExchange(t *testing.T, addr, in string, n int, heads ...int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, in); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for i := 0; i < n; i++ {
		req := &http.Request{Method: "GET"}
		for _, h := range heads {
			if h == i {
				req.Method = "HEAD"
			}
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Header.Set("Body", string(b))
		out = append(out, resp)
	}
	return out
}

// TestPipelined: pipelined requests are answered in order, the fast ones
// before the hand-off included, the body of a POST read by the fallback.
func TestPipelined(t *testing.T) {
	ts := startTestServer(t, Config{})
	in := "GET /aaa1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"HEAD /aaa2 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /aaa3 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /aaa4 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /aaa5 HTTP/1.1\r\nHost: x\r\n\r\n"
	want := []string{"fast /aaa1", "", "fast /aaa3", "slow POST /aaa4 hello", "slow GET /aaa5 "}
	resps := rawExchange(t, ts.addr, in, len(want), 1)
	for i, r := range resps {
		if got := r.Header.Get("Body"); got != want[i] {
			t.Errorf("response %d: %q, want %q", i, got, want[i])
		}
	}
}

// TestRequestSplitAcrossReads: a request arriving a few bytes at a time is
// still answered by the fast path.
func TestRequestSplitAcrossReads(t *testing.T) {
	ts := startTestServer(t, Config{})
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	req := "GET /split1 HTTP/1.1\r\nHost: x\r\nUser-Agent: slow typist\r\n\r\n"
	for i := 0; i < len(req); i += 7 {
		io.WriteString(c, req[i:min(i+7, len(req))])
		time.Sleep(2 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Path") != "fast" {
		t.Fatalf("answered by %q", resp.Header.Get("X-Path"))
	}
}

// TestLargeHeadGoesToFallback: a request head larger than the read buffer
// is the fallback's: served when within its limit, 431 beyond.
func TestLargeHeadGoesToFallback(t *testing.T) {
	ts := startTestServer(t, Config{})
	big := strings.Repeat("a", readBufSize)
	resps := rawExchange(t, ts.addr, "GET /abc123 HTTP/1.1\r\nHost: x\r\nCookie: "+big+"\r\n\r\n", 1)
	if resps[0].StatusCode != 200 || resps[0].Header.Get("X-Path") != "slow" {
		t.Fatalf("status %d by %q, want 200 by slow", resps[0].StatusCode, resps[0].Header.Get("X-Path"))
	}
	huge := strings.Repeat("a", 3*8192)
	resps = rawExchange(t, ts.addr, "GET /abc123 HTTP/1.1\r\nHost: x\r\nCookie: "+huge+"\r\n\r\n", 1)
	if resps[0].StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resps[0].StatusCode)
	}
}

// TestConnectionClose: the fast path closes after answering Connection: close.
func TestConnectionClose(t *testing.T) {
	ts := startTestServer(t, Config{})
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /abc123 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /abc123 HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read until close: %v", err)
	}
	if n := strings.Count(string(b), "HTTP/1.1 200"); n != 1 {
		t.Fatalf("%d responses before close, want 1: %q", n, b)
	}
}

// TestTimeouts: an idle connection and one with a half-sent request are
// closed by the server.
func TestTimeouts(t *testing.T) {
	ts := startTestServer(t, Config{IdleTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	for _, first := range []string{"", "GET /abc123 HTTP/1.1\r\nHost"} {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, first)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if !errors.Is(err, io.EOF) {
			t.Fatalf("after %q: read %v, want EOF (closed by the server)", first, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("closed after %v", d)
		}
	}
}

// TestPanicClosesOnlyThatConnection: a panic in Serve is reported, its
// connection closed, and the server keeps serving.
func TestPanicClosesOnlyThatConnection(t *testing.T) {
	ts := startTestServer(t, Config{})
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /panic1 HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read %v, want EOF", err)
	}
	c.Close()
	if ts.panics.Load() != 1 {
		t.Fatalf("panics reported: %d", ts.panics.Load())
	}
	if r := rawExchange(t, ts.addr, "GET /abc123 HTTP/1.1\r\nHost: x\r\n\r\n", 1)[0]; r.Header.Get("X-Path") != "fast" {
		t.Fatal("server stopped serving after a panic")
	}
}

// TestShutdown: Shutdown closes idle fast connections, lets Serve return
// nil, and leaves handed-off connections to the fallback's own shutdown.
func TestShutdown(t *testing.T) {
	ts := startTestServer(t, Config{})
	var idle []net.Conn
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /abc123 HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := ts.edge.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Fatalf("Serve returned %v after Shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	ts.done <- nil // for the cleanup's count
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("idle connection: read %v, want EOF", err)
			}
		}()
	}
	wg.Wait()
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

// bigBody is the body size of /big123's answer: well over what loopback
// socket buffers hold, so that writing it waits for the client.
const bigBody = 32 << 20

// TestWriteWaitsForSlowReader: an answer the socket cannot take at once is
// written in pieces as the client reads (the raw write's EAGAIN path, which
// waits through the poller), whole and in order, and the connection goes on
// serving.
func TestWriteWaitsForSlowReader(t *testing.T) {
	ts := startTestServer(t, Config{})
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /big123 HTTP/1.1\r\nHost: x\r\n\r\nGET /abc123 HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(200 * time.Millisecond) // the server fills the socket and waits
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the big answer: %v", err)
	}
	want := strings.Repeat("0123456789abcdef", bigBody/16)
	if string(body) != want {
		t.Fatalf("big answer: %d bytes, differs from the %d written", len(body), len(want))
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("answer after the big one: %v", err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "fast /abc123" {
		t.Fatalf("answer after the big one: %q", b)
	}
}

// TestShutdownForcesStuckWriter: a connection whose client never reads its
// answer holds Shutdown only until ctx is done; then it is woken, closed by
// its own goroutine, and Shutdown returns ctx's error with nothing left.
func TestShutdownForcesStuckWriter(t *testing.T) {
	ts := startTestServer(t, Config{ReadTimeout: time.Minute})
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /big123 HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := ts.edge.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	ts.edge.mu.Lock()
	left := len(ts.edge.conns)
	ts.edge.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d connections left after a forced Shutdown", left)
	}
	// The connection was closed: reading runs into its end.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading the abandoned answer: %v, want its end", err)
	}
}

// testListener listens on a free loopback port, wrapped in a plainListener
// when plain is set.
func testListener(t *testing.T, plain bool) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if plain {
		return plainListener{ln}
	}
	return ln
}

// plainListener hides the accepted connections' sockets (no syscall.Conn),
// as a wrapping listener might.
type plainListener struct{ net.Listener }

type plainConn struct{ net.Conn }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return plainConn{c}, nil
}

// TestConnWithoutSocket: a connection that does not expose its socket is
// served through its own Read and Write, fast path and hand-off alike.
func TestConnWithoutSocket(t *testing.T) {
	if newConnIO(plainConn{}).raw != nil {
		t.Fatal("raw I/O chosen for a connection without a socket")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startTestServerOn(t, Config{}, plainListener{ln})
	rs := rawExchange(t, ts.addr, "GET /abc123 HTTP/1.1\r\nHost: x\r\n\r\nPOST /abc123 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 2)
	if rs[0].Header.Get("X-Path") != "fast" || rs[1].Header.Get("X-Path") != "slow" {
		t.Fatalf("answered by %q then %q, want fast then slow", rs[0].Header.Get("X-Path"), rs[1].Header.Get("X-Path"))
	}
}

func BenchmarkParseRequest(b *testing.B) {
	in := []byte("GET /CsYd7glmqlFbibSg HTTP/1.1\r\nHost: 127.0.0.1:8081\r\nUser-Agent: Mozilla/5.0 (iPhone) Mobile\r\nX-Forwarded-For: 203.0.113.10\r\n\r\n")
	var r Request
	b.ReportAllocs()
	for b.Loop() {
		parseRequest(in, &r, matchCode)
	}
}

// BenchmarkParseRequestBrowser: a phone browser's request through a proxy.
func BenchmarkParseRequestBrowser(b *testing.B) {
	in := []byte("GET /CsYd7glmqlFbibSg HTTP/1.1\r\nHost: go.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: de-DE,de;q=0.9,en;q=0.8\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nX-Forwarded-For: 203.0.113.10, 10.0.0.2\r\n\r\n")
	var r Request
	b.ReportAllocs()
	for b.Loop() {
		if res, _ := parseRequest(in, &r, matchCode); res != fast {
			b.Fatal("not fast")
		}
	}
}

// TestWallNow: the one-call clock tells the same time as time.Now.
func TestWallNow(t *testing.T) {
	before := time.Now().Truncate(time.Microsecond)
	got := wallNow()
	after := time.Now()
	if got.Before(before) || got.After(after) {
		t.Fatalf("wallNow() = %v, not within [%v, %v]", got, before, after)
	}
}

// TestUnixSocket: a Unix stream connection takes the raw path too, waits
// for its next request without a buffer, and is answered each time.
func TestUnixSocket(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/edge.sock")
	if err != nil {
		t.Fatal(err)
	}
	ts := startTestServerOn(t, Config{}, ln)
	c, err := net.Dial("unix", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if newConnIO(c).raw == nil {
		t.Fatal("no raw I/O for a Unix stream connection")
	}
	br := bufio.NewReader(c)
	for i := range 3 {
		time.Sleep(20 * time.Millisecond) // the server waits, idle, between requests
		if err := getFast(c, br, fmt.Sprintf("/unix%02d", i)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if st := ts.edge.Stats(); st.Served != 3 {
		t.Fatalf("served %d, want 3", st.Served)
	}
}

// TestNoLostWakeups: many connections, each sending its next request as soon
// as the last is answered, keep their goroutines going from answering to
// waiting without a buffer and back; a wake-up lost on the way would stall a
// client until its deadline. (The narrowest window, input arriving while the
// poller's readiness is reset, which inputReady covers, is too rare to hit on
// purpose.)
func TestNoLostWakeups(t *testing.T) {
	ts := startTestServer(t, Config{})
	const conns, reqs = 32, 200
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for j := range reqs {
				if err := getFast(c, br, fmt.Sprintf("/w%02d%03d", i, j)); err != nil {
					errs <- fmt.Errorf("connection %d request %d: %w", i, j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ts.served.Load(); n != conns*reqs {
		t.Fatalf("served %d, want %d", n, conns*reqs)
	}
}

// getFast sends GET path on the keep-alive connection c (read through br)
// and checks that the fast path answered it ("fast " + path).
func getFast(c net.Conn, br *bufio.Reader, path string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if want := "fast " + path; string(b) != want {
		return fmt.Errorf("answered %q, want %q", b, want)
	}
	return nil
}

// TestWriteTimeoutForClientThatDoesNotRead: an answer the client never reads
// is given up after ReadTimeout (which bounds any write), not after the far
// longer IdleTimeout, on the raw path and through net.Conn alike, for one
// large answer and for many pipelined requests' answers.
func TestWriteTimeoutForClientThatDoesNotRead(t *testing.T) {
	const idle, read = time.Minute, 300 * time.Millisecond
	// Answers to 200000 requests (13 MB) overflow the socket buffers too.
	// The requests are 32 bytes long, so that the server's reads (4096
	// bytes) tend to end between two requests: then the server has no
	// request begun when it writes, the case where it used to wait for
	// IdleTimeout.
	pipelined := strings.Repeat("GET /abc12 HTTP/1.1\r\nHost: x\r\n\r\n", 200000)
	for _, plain := range []bool{false, true} {
		for _, in := range []string{"GET /big123 HTTP/1.1\r\nHost: x\r\n\r\n", pipelined} {
			name := fmt.Sprintf("plain=%v/%d bytes", plain, len(in))
			t.Run(name, func(t *testing.T) {
				ln := testListener(t, plain)
				ts := startTestServerOn(t, Config{IdleTimeout: idle, ReadTimeout: read}, ln)
				c, err := net.Dial("tcp", ts.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.(*net.TCPConn).SetReadBuffer(4096)
				// The client writes (in the background: the server stops
				// reading once its answers fill the socket) and never reads.
				go io.WriteString(c, in)
				// Wait for the server to answer (and so to be writing), then
				// (boundedly: far below IdleTimeout, far above ReadTimeout)
				// for it to give the connection up.
				limit := time.Now().Add(10 * time.Second)
				for ts.edge.Stats().Served == 0 {
					if time.Now().After(limit) {
						t.Fatal("no request answered")
					}
					time.Sleep(5 * time.Millisecond)
				}
				for {
					ts.edge.mu.Lock()
					open := len(ts.edge.conns)
					ts.edge.mu.Unlock()
					if open == 0 {
						break
					}
					if time.Now().After(limit) {
						t.Fatalf("connection still open after 10 s with ReadTimeout %v (IdleTimeout %v)", read, idle)
					}
					time.Sleep(20 * time.Millisecond)
				}
				if ts.edge.Stats().HandedOff != 0 {
					t.Fatal("handed off")
				}
			})
		}
	}
}

// TestHostAgreesWithFasthttp: for each Host value, the edge server (fast
// path in front of fasthttp) answers with the status plain fasthttp gives
// the same bytes: 400 for an invalid Host (RFC 9112 §3.2), which the fast
// path must leave to fasthttp, and 200 for a valid one.
func TestHostAgreesWithFasthttp(t *testing.T) {
	ts := startTestServer(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain := &fasthttp.Server{Handler: ts.slow.Handler, ReadBufferSize: 8192, Logger: quietLogger{}}
	go plain.Serve(ln)
	t.Cleanup(func() { plain.Shutdown() })
	for _, h := range []string{
		// valid
		"x", "example.com", "Example.COM:8080", "127.0.0.1", "127.0.0.1:80", "a-b_c.d",
		"[::1]", "[::1]:8081", "[2001:db8::7]", "[1:2:3:4:5:6:7:8]", "[::]", "[fe80::]:1",
		"x:", "[::ffff:1.2.3.4]", "a~b", "a!b", "\x80x",
		// invalid
		"x y", "a:b:c", "a:port", "[::1", "a]", "%zz", "a%20b", "a\tb", "[x]", "[::1]x",
		"[1:2:3:4:5:6:7:8:9]", "[1::2::3]", "[]", "a@b", "a/b", "a?b", "a#b", "[::1%25eth0]", "a\\b",
		"x:80:", "[12345::]", "[::1]:x",
	} {
		req := "GET /abc123 HTTP/1.1\r\nHost: " + h + "\r\n\r\n"
		want := rawExchange(t, ln.Addr().String(), req, 1)[0].StatusCode
		got := rawExchange(t, ts.addr, req, 1)[0].StatusCode
		if got != want {
			t.Errorf("Host %q: edge answers %d, fasthttp %d", h, got, want)
		}
	}
}
