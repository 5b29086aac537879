package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refrouter/refrouter/bench/loadgen"
	"github.com/refrouter/refrouter/bench/scenario"
	"github.com/refrouter/refrouter/internal/pgtest"
	"github.com/refrouter/refrouter/internal/testutil"
	"github.com/refrouter/refrouter/node/localcluster"
)

// BenchmarkReplicationLag runs a steady funnel (clicks and 10 % registrations)
// against each node of a three-node cluster that replicates into PostgreSQL,
// samples every node's refrouter_replicator_lag_seconds every 100 ms, and
// reports the lag's p50, p99 and max.
//
//	go test -run '^$' -bench ReplicationLag -benchtime 1x ./internal/e2e
func BenchmarkReplicationLag(b *testing.B) {
	const rate, dur = 1000.0, 10 * time.Second // per node
	dsn := pgtest.NewDB(b)
	lc := testutil.StartCluster(b, nil, func(o *localcluster.Options) { o.DSN = dsn })
	a := clusterAPI(b, lc)
	a.createCampaign(0, campaignBody("lag", 0))
	var codes []string
	for i := 0; i < 30; i++ {
		codes = append(codes, a.link(i%3, "lag", fmt.Sprint("lag-inviter-", i)))
	}
	a.waitInviters("lag", 30)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var lags []float64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, u := range a.urls {
				if v, ok := scrapeLag(u); ok {
					mu.Lock()
					lags = append(lags, v)
					mu.Unlock()
				}
			}
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var runs sync.WaitGroup
		for n, u := range a.urls {
			runs.Add(1)
			go func() {
				defer runs.Done()
				sc, err := scenario.Funnel(scenario.FunnelConfig{
					Codes: codes, Conversion: 0.1,
					Register: scenario.RegisterConfig{Campaign: "lag", Token: a.platform, InviteePrefix: fmt.Sprintf("lag-%d-%d", i, n)},
				})
				if err != nil {
					b.Error(err)
					return
				}
				res, err := loadgen.Run(ctx, loadgen.Options{Rate: rate, Connections: 16, Duration: dur}, loadgen.Target{URL: u}, sc.Build, sc.Check)
				if err != nil {
					b.Error(err)
					return
				}
				if res.ErrorCount() > 0 {
					b.Errorf("node %d: %d errors: %v", n, res.ErrorCount(), res.Errors)
				}
			}()
		}
		runs.Wait()
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	if len(lags) == 0 {
		b.Fatal("no lag samples")
	}
	slices.Sort(lags)
	q := func(p float64) float64 { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	b.ReportMetric(q(0.5), "lag-p50-s")
	b.ReportMetric(q(0.99), "lag-p99-s")
	b.ReportMetric(lags[len(lags)-1], "lag-max-s")
	b.ReportMetric(rate*3, "events/s-offered")
}

// scrapeLag reads refrouter_replicator_lag_seconds from a node's /metrics.
func scrapeLag(base string) (float64, bool) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "refrouter_replicator_lag_seconds ") {
			v, err := strconv.ParseFloat(strings.TrimPrefix(line, "refrouter_replicator_lag_seconds "), 64)
			return v, err == nil
		}
	}
	return 0, false
}
