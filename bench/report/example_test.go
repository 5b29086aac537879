package report_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/refrouter/refrouter/bench"
	"github.com/refrouter/refrouter/bench/bare"
	"github.com/refrouter/refrouter/bench/loadgen"
	"github.com/refrouter/refrouter/bench/report"
	"github.com/refrouter/refrouter/bench/scenario"
)

// Example shows a whole benchmark: drive a server with the redirect
// scenario, print the table, write the files and compare with a baseline.
func Example() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() { _ = bare.Serve(ln) }()

	ips, err := scenario.IPsFromCIDRs([]netip.Prefix{netip.MustParsePrefix("81.2.69.0/24")}, 100, 1)
	if err != nil {
		panic(err)
	}
	s := scenario.Redirect([]string{"0123456789abcdef"}, ips)
	res, err := loadgen.Run(context.Background(),
		loadgen.Options{Rate: 500, Connections: 8, Duration: 200 * time.Millisecond, Name: s.Name},
		loadgen.Target{Name: "bare", Region: "local", URL: "http://" + ln.Addr().String()}, s.Build, s.Check)
	if err != nil {
		panic(err)
	}
	results := []*bench.Result{res}
	_ = report.WriteText(os.Stdout, results)
	if _, err := report.WriteFiles(os.TempDir(), "bench-example", results); err != nil {
		panic(err)
	}
	cmp, regressed := report.Compare(results, results, 0.10)
	fmt.Println(cmp, regressed)
}
