package node_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refrouter/refrouter/internal/testutil"
	"github.com/refrouter/refrouter/ledger"
	"github.com/refrouter/refrouter/links"
)

// BenchmarkDecisions measures registration decisions per second on a real
// three-node cluster (raft over loopback TCP, raft-wal with fsync): 256
// concurrent submitters spread over the three nodes, as the nodes' submitters
// do, so followers forward to the leader and the cluster batches.
//
//	go test -run '^$' -bench Decisions -benchtime 20000x ./node
func BenchmarkDecisions(b *testing.B) {
	lc := testutil.StartCluster(b, nil, nil)
	c := testutil.NewClient()
	camp := testutil.Campaign("dec", 1<<40, 0)
	camp["fraud"] = map[string]any{"min_click_to_register": "-1s", "max_per_inviter_per_hour": -1, "max_per_ip_per_hour": -1, "max_per_device_per_day": -1}
	testutil.Expect(b, c.Do(b, "POST", lc.Configs[0].PublicURL+"/v1/campaigns", lc.Secrets.AdminToken, camp), 201, "campaign")
	const inviters = 64
	for i := 0; i < inviters; i++ {
		r := c.Do(b, "POST", lc.Configs[0].PublicURL+"/v1/campaigns/dec/links", lc.Secrets.PlatformToken, map[string]string{"inviter": fmt.Sprint("inv", i)})
		testutil.Expect(b, r, 201, "link")
		var l struct{ Code string }
		r.JSON(b, &l)
		if code, err := links.Peek([]byte(l.Code)); err != nil || code.Inviter == 0 {
			b.Fatalf("code %q: %v", l.Code, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	const workers = 256
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			n := lc.Nodes[w%len(lc.Nodes)]
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				cmd := ledger.EncodeRegister(ledger.Register{
					ID: fmt.Sprintf("b%012d", i), Campaign: "dec", InviterNumber: uint32(i%inviters) + 1,
					Invitee: fmt.Sprint("u", i), AckAt: time.Now(),
				})
				if _, err := n.Cluster().Apply(ctx, cmd); err != nil {
					failed.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d of %d applies failed", failed.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
	_, st, _ := lc.Nodes[0].Ledger().Campaign("dec")
	if b.N >= 1000 && st.Registrations < int64(b.N)*9/10 {
		b.Fatalf("only %d registrations decided on node 0", st.Registrations)
	}
}
