package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/bench"
	"github.com/refrouter/refrouter/bench/report"
	"github.com/refrouter/refrouter/bench/scenario"
	"github.com/refrouter/refrouter/node/localcluster"
)

// TestBenchCluster runs `bench cluster` in-process with 60 ms between every
// pair of regions: each region must have a redirect and a decision result;
// a decision taken on a follower crosses the simulated network (forward to
// the leader and the leader's commit), so its p50 is at least the RTT, while
// a redirect never waits on the network (I5) and stays far below it.
func TestBenchCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster and loads it for about 20 s")
	}
	const rtt = 60 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := Run(ctx, []string{"bench", "cluster",
		"--rtt", "ap-east:eu-central=60ms,ap-east:us-east=60ms,eu-central:us-east=60ms",
		"--scenario", "redirect,register", "--wait", "2s",
		"--rate", "200", "--duration", "2s", "--warmup", "500ms", "--connections", "32",
		"--inviters", "50", "--json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench cluster: %v\nstderr:\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`leader (\S+) \((\S+)\)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no leader line on stderr:\n%s", stderr.String())
	}
	leaderRegion := m[2]
	results, err := report.ReadJSON(&stdout)
	if err != nil {
		t.Fatalf("read JSON report: %v\n%s", err, stdout.String())
	}
	byKey := make(map[[2]string]*bench.Result)
	for _, r := range results {
		byKey[[2]string{r.Region, r.Scenario}] = r
	}
	var followers int
	for _, site := range localcluster.DemoSites {
		red, dec := byKey[[2]string{site.Region, scenario.NameRedirect}], byKey[[2]string{site.Region, scenario.NameRegisterDecision}]
		if red == nil || dec == nil {
			t.Fatalf("region %s: redirect %v, decision %v results; want both (report:\n%s)", site.Region, red != nil, dec != nil, stdout.String())
		}
		for _, r := range []*bench.Result{red, dec} {
			if r.OK == 0 || r.ErrorCount() > r.Sent/100 {
				t.Errorf("%s %s: %d OK of %d sent, errors %v", r.Region, r.Scenario, r.OK, r.Sent, r.Errors)
			}
		}
		rp := red.Percentiles()
		t.Logf("%-10s %-6s redirect p50 %v p99 %v", site.Region, site.Name, rp.P50, rp.P99)
		if rp.P50 > rtt/4 {
			t.Errorf("%s: redirect p50 %v is not far below the %v RTT: redirects must not cross the network", site.Region, rp.P50, rtt)
		}
		if site.Region == leaderRegion {
			continue
		}
		followers++
		dp := dec.Percentiles()
		t.Logf("%-10s %-6s decision p50 %v p99 %v (follower of %s)", site.Region, site.Name, dp.P50, dp.P99, leaderRegion)
		if dp.P50 < rtt-5*time.Millisecond {
			t.Errorf("%s (follower of %s): decision p50 %v < RTT to the leader %v: the forward was not delayed", site.Region, leaderRegion, dp.P50, rtt)
		}
	}
	if followers != 2 {
		t.Errorf("leader region %q: %d follower regions, want 2", leaderRegion, followers)
	}
	if !strings.Contains(stderr.String(), "gossip (UDP)") {
		t.Errorf("the run does not say what is not delayed:\n%s", stderr.String())
	}
}

// TestBenchClusterBadInput checks that bad flags fail at once with one clear
// error and start nothing.
func TestBenchClusterBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rtt", "ap-east:eu-central=180ms"}, "no rtt between regions"},
		{[]string{"--rtt", "ap-east=180ms"}, "--rtt"},
		{[]string{"--scenario", "flood"}, `--scenario "flood"`},
		{[]string{"--target", "http://127.0.0.1:1"}, "--target is not used"},
		{[]string{"--rate", "0"}, "must be positive"},
	} {
		var stdout, stderr bytes.Buffer
		err := Run(context.Background(), append([]string{"bench", "cluster"}, tc.args...), &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench cluster %v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}
