package node

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refrouter/refrouter/attribution"
)

// TestRetryNotAcknowledgedBeforeDurable: a retry of a registration whose
// first request is still being recorded waits for that record, and is not
// acknowledged when the record fails (I4: no 202 for what is not on disk).
func TestRetryNotAcknowledgedBeforeDurable(t *testing.T) {
	n, _ := newTestNode(t, false, "")
	if err := n.outbox.Close(); err != nil { // every durable append fails from here on
		t.Fatal(err)
	}
	for i := range 200 {
		ev := attribution.Event{Kind: attribution.KindRegistration, At: time.Now().UTC(), Node: n.cfg.Name,
			Campaign: "bench", Invitee: fmt.Sprint("v", i)}
		key := ev.Campaign + "\x00" + ev.Invitee
		var wg sync.WaitGroup
		var acked atomic.Int32
		for range 2 {
			wg.Go(func() {
				if _, _, err := n.acknowledge(key, ev); err == nil {
					acked.Add(1)
				}
			})
		}
		wg.Wait()
		if got := acked.Load(); got != 0 {
			t.Fatalf("attempt %d: %d callers acknowledged although the durable append failed", i, got)
		}
	}
}
