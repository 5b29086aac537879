package ledger

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentReads runs the read methods, Campaigns and Snapshot while
// ApplyBatch runs (meaningful under -race), and checks each snapshot taken
// mid-flight restores to a consistent ledger.
func TestConcurrentReads(t *testing.T) {
	l := newTestLedger(t)
	l.put(baseCampaign("c"))
	l.link(t0, "c", "u1")
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				l.Campaign("c")
				l.Progress("c", "u1")
				l.RegistrationFor("c", "v7")
				l.Registration("r7")
				l.InviterName(1, 1)
				if tab := l.Campaigns(); tab.ByID("c") == nil {
					t.Error("campaign missing from the table")
					return
				}
				reads.Add(1)
			}
		}()
	}
	var snaps [][]byte // owned by the snapshot goroutine until wg.Wait
	var nsnaps atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			var b bytes.Buffer
			if err := l.Snapshot(&b); err != nil {
				t.Error(err)
				return
			}
			snaps = append(snaps, b.Bytes())
			nsnaps.Add(1)
		}
	}()
	at := t0.Add(time.Minute)
	for i := 0; i < 200; i++ {
		l.index++
		l.ApplyBatch(l.index, at, [][]byte{
			EncodeIssueLink(IssueLink{Campaign: "c", Inviter: fmt.Sprint("u", i)}),
			EncodeRegister(Register{ID: fmt.Sprint("r", i), Campaign: "c", InviterNumber: uint32(i%5 + 1), Invitee: fmt.Sprint("v", i), AckAt: at}),
		})
	}
	// Bounded wait for the readers and the snapshotter to have run at all.
	for deadline := time.Now().Add(5 * time.Second); (reads.Load() == 0 || nsnaps.Load() == 0) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if reads.Load() == 0 || len(snaps) == 0 {
		t.Fatalf("readers did not run: %d reads, %d snapshots", reads.Load(), len(snaps))
	}
	for _, s := range snaps {
		r := New()
		if err := r.Restore(bytes.NewReader(s)); err != nil {
			t.Fatalf("mid-flight snapshot does not restore: %v", err)
		}
		_, st, _ := r.Campaign("c")
		if st.Registrations != int64(r.LastIndex())-2 && r.LastIndex() > 2 {
			t.Errorf("snapshot at index %d has %d registrations", r.LastIndex(), st.Registrations)
		}
	}
}
