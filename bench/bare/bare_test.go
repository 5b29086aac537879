package bare

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestServe(t *testing.T) {
	for name, serve := range map[string]func(net.Listener) error{"fasthttp": Serve, "edgehttp": ServeEdge} {
		t.Run(name, func(t *testing.T) { testServe(t, serve) })
	}
}

func testServe(t *testing.T, serve func(net.Listener) error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- serve(ln) }()
	c := &fasthttp.HostClient{Addr: ln.Addr().String()}
	for _, path := range []string{"/", "/AbCdEfGh12345678", "/v1/registrations"} {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + ln.Addr().String() + path)
		if err := c.DoTimeout(req, resp, 2*time.Second); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if resp.StatusCode() != fasthttp.StatusFound || string(resp.Header.Peek("Location")) != Location {
			t.Errorf("GET %s = %d %q", path, resp.StatusCode(), resp.Header.Peek("Location"))
		}
		for name, want := range map[string]string{"X-Served-By": servedBy, "X-Region": region, "Cache-Control": cacheControl} {
			if got := string(resp.Header.Peek(name)); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, name, got, want)
			}
		}
		if d, err := time.Parse(http.TimeFormat, string(resp.Header.Peek("Date"))); err != nil || time.Since(d).Abs() > time.Minute {
			t.Errorf("GET %s: Date %q is not the current time (%v)", path, resp.Header.Peek("Date"), err)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	ln.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve after close = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the listener closed")
	}
}

func BenchmarkHandle(b *testing.B) {
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		handle(&ctx)
	}
}
