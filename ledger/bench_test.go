package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func benchULID(i uint64) string {
	var id [16]byte
	binary.BigEndian.PutUint64(id[0:], uint64(t0.UnixMilli())<<16)
	binary.BigEndian.PutUint64(id[8:], i)
	return unpackULID(id)
}

// cpuTime returns the CPU time (user+system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchCampaign() Campaign {
	c := baseCampaign("bench")
	c.Budget = &Budget{Value: MaxValue}
	c.PerInviterCap = 0
	c.EndsAt = t0.Add(365 * 24 * time.Hour)
	return c
}

// BenchmarkApplyRegister256 applies raft entries of 256 registrations each
// (distinct invitees, IPs and devices over 10,000 inviters).
func BenchmarkApplyRegister256(b *testing.B) {
	const inviters, per = 10000, 256
	l := New()
	l.ApplyBatch(1, t0, [][]byte{EncodePutCampaign(benchCampaign())})
	links := make([][]byte, 0, inviters)
	for i := 0; i < inviters; i++ {
		links = append(links, EncodeIssueLink(IssueLink{Campaign: "bench", Inviter: fmt.Sprintf("u%07d", i)}))
	}
	l.ApplyBatch(2, t0, links)
	b.ReportAllocs()
	b.ResetTimer()
	var seq uint64
	cmds := make([][]byte, per)
	var applyTime, applyCPU time.Duration
	for i := 0; i < b.N; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		b.StopTimer()
		for k := range cmds {
			seq++
			cmds[k] = EncodeRegister(Register{
				ID: benchULID(seq), Campaign: "bench", InviterNumber: uint32(seq%inviters) + 1,
				Invitee: fmt.Sprintf("v%09d", seq), Device: fmt.Sprintf("d%09d", seq), IP: fmt.Sprintf("10.%d.%d.%d", seq>>16&255, seq>>8&255, seq&255),
				ClickAt: at.Add(-time.Minute), AckAt: at, Node: "hk-1",
			})
		}
		b.StartTimer()
		t, c := time.Now(), cpuTime()
		out := l.ApplyBatch(uint64(i+3), at, cmds)
		applyTime += time.Since(t)
		applyCPU += cpuTime() - c
		if len(out) != per {
			b.Fatal("short results")
		}
	}
	// The machine is shared: CPU time of the process is the steadier figure.
	b.ReportMetric(float64(b.N*per)/applyTime.Seconds(), "registrations/s")
	b.ReportMetric(float64(b.N*per)/applyCPU.Seconds(), "registrations/cpu-s")
}

// BenchmarkMemoryPerInviter adds 1,000,000 inviters, each with a link and one
// registration (distinct invitee, IP and device, all within one hour), and
// reports the heap bytes per inviter and the snapshot and restore times.
// Run it with -benchtime=1x; it is skipped with -short and under -race.
func BenchmarkMemoryPerInviter(b *testing.B) {
	if testing.Short() || raceEnabled {
		b.Skip("1M inviters: not with -short or -race")
	}
	const n, per = 1_000_000, 512
	for range b.N {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		l := New()
		l.ApplyBatch(1, t0, [][]byte{EncodePutCampaign(benchCampaign())})
		index := uint64(1)
		cmds := make([][]byte, 0, 2*per)
		applyStart, applyCPU := time.Now(), cpuTime()
		for i := 0; i < n; i += per {
			cmds = cmds[:0]
			for k := i; k < i+per && k < n; k++ {
				cmds = append(cmds, EncodeIssueLink(IssueLink{Campaign: "bench", Inviter: fmt.Sprintf("u%07d", k)}))
			}
			for k := i; k < i+per && k < n; k++ {
				at := t0.Add(time.Duration(k) * 50 * time.Microsecond)
				cmds = append(cmds, EncodeRegister(Register{
					ID: benchULID(uint64(k)), Campaign: "bench", InviterNumber: uint32(k + 1),
					Invitee: fmt.Sprintf("v%07d", k), Device: fmt.Sprintf("d%07d", k), IP: fmt.Sprintf("10.%d.%d.%d", k>>16&255, k>>8&255, k&255),
					ClickAt: at.Add(-time.Minute), AckAt: at, Node: "hk-1",
				}))
			}
			index++
			l.ApplyBatch(index, t0.Add(time.Duration(i)*50*time.Microsecond), cmds)
		}
		applied, appliedCPU := time.Since(applyStart), cpuTime()-applyCPU
		runtime.GC()
		runtime.ReadMemStats(&m1)
		_, st, _ := l.Campaign("bench")
		if st.Rewarded != n {
			b.Fatalf("rewarded %d of %d: %+v", st.Rewarded, n, st)
		}
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "B/inviter")
		b.ReportMetric(float64(2*n)/applied.Seconds(), "commands/s")
		b.ReportMetric(float64(2*n)/appliedCPU.Seconds(), "commands/cpu-s")

		var buf bytes.Buffer
		t, c := time.Now(), cpuTime()
		if err := l.Snapshot(&buf); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t).Seconds(), "snapshot-s")
		b.ReportMetric((cpuTime() - c).Seconds(), "snapshot-cpu-s")
		b.ReportMetric(float64(buf.Len())/n, "snapshot-B/inviter")
		r := New()
		t, c = time.Now(), cpuTime()
		if err := r.Restore(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t).Seconds(), "restore-s")
		b.ReportMetric((cpuTime() - c).Seconds(), "restore-cpu-s")
		runtime.KeepAlive(l)
	}
}

// BenchmarkRegistrationFor measures the concurrent read path.
func BenchmarkRegistrationFor(b *testing.B) {
	l := New()
	l.ApplyBatch(1, t0, [][]byte{EncodePutCampaign(benchCampaign()), EncodeIssueLink(IssueLink{Campaign: "bench", Inviter: "u"})})
	var cmds [][]byte
	for i := 0; i < 1000; i++ {
		cmds = append(cmds, EncodeRegister(Register{ID: benchULID(uint64(i)), Campaign: "bench", InviterNumber: 1, Invitee: fmt.Sprint("v", i)}))
	}
	l.ApplyBatch(2, t0.Add(time.Minute), cmds)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := l.RegistrationFor("bench", "v500"); !ok {
				b.Fatal("missing")
			}
		}
	})
}
