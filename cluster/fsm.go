package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// FSM is what the cluster replicates. Raft calls ApplyBatch, Snapshot and
// Restore one at a time from its FSM goroutine, never concurrently with each
// other; the FSM may serve its own reads concurrently (with its own lock).
type FSM interface {
	// ApplyBatch applies the commands of one raft entry, in order, at the
	// entry's index and the leader's timestamp of the entry
	// (raft.Log.AppendedAt), and returns one result per command. It must be
	// deterministic: every replica computes the same results.
	ApplyBatch(index uint64, at time.Time, cmds [][]byte) [][]byte
	// Snapshot writes the complete state to w. It is called on the FSM
	// goroutine, so the state is consistent; raft persists the bytes later.
	Snapshot(w io.Writer) error
	// Restore replaces the whole state with one written by Snapshot.
	Restore(r io.Reader) error
}

// outcome is the result of one command of an entry.
type outcome struct {
	index  uint64 // raft index the command was applied at (the first one, for a duplicate)
	result []byte
}

// batchResponse is what fsmAdapter.Apply returns through raft's ApplyFuture.
type batchResponse struct {
	outcomes []outcome
	err      error
}

type dedupEntry struct {
	index  uint64
	result []byte
}

var snapshotMagic = []byte("RRCS1")

// fsmAdapter is the raft.FSM around an FSM: it decodes batch entries, drops
// commands whose id was applied recently, and tracks the applied index for
// WaitIndex. Apply/Snapshot/Restore run on raft's FSM goroutine; the dedup
// table is only touched there.
type fsmAdapter struct {
	fsm    FSM
	window int
	log    *slog.Logger

	seen  map[cmdID]dedupEntry
	order []cmdID // FIFO ring of ids in seen
	head  int     // next slot to overwrite once order is full

	mu      sync.Mutex
	applied uint64
	notify  chan struct{}
}

var _ raft.FSM = (*fsmAdapter)(nil)

func newFSMAdapter(fsm FSM, window int, log *slog.Logger) *fsmAdapter {
	return &fsmAdapter{
		fsm: fsm, window: window, log: log,
		seen:   make(map[cmdID]dedupEntry),
		notify: make(chan struct{}),
	}
}

func (a *fsmAdapter) remember(id cmdID, e dedupEntry) {
	if a.window <= 0 {
		return
	}
	if len(a.order) < a.window {
		a.order = append(a.order, id)
	} else {
		delete(a.seen, a.order[a.head])
		a.order[a.head] = id
		a.head = (a.head + 1) % a.window
	}
	a.seen[id] = e
}

// Apply implements raft.FSM.
func (a *fsmAdapter) Apply(l *raft.Log) interface{} {
	cmds, err := decodeEntry(l.Data)
	if err != nil {
		a.log.Error("cluster: undecodable raft entry", "index", l.Index, "err", err)
		a.advance(l.Index)
		return batchResponse{err: fmt.Errorf("decode entry %d: %w", l.Index, err)}
	}
	outs := make([]outcome, len(cmds))
	fresh := make([][]byte, 0, len(cmds))
	freshPos := make([]int, 0, len(cmds))
	inEntry := make(map[cmdID]int, len(cmds))
	dupOf := make([]int, len(cmds)) // -1: fresh or remembered; else position of the first copy in this entry
	for i, c := range cmds {
		dupOf[i] = -1
		if e, ok := a.seen[c.id]; ok {
			outs[i] = outcome(e)
			continue
		}
		if j, ok := inEntry[c.id]; ok {
			dupOf[i] = j
			continue
		}
		inEntry[c.id] = i
		fresh = append(fresh, c.cmd)
		freshPos = append(freshPos, i)
	}
	if len(fresh) > 0 {
		res := a.fsm.ApplyBatch(l.Index, l.AppendedAt, fresh)
		for k, pos := range freshPos {
			var r []byte
			if k < len(res) {
				r = res[k]
			}
			outs[pos] = outcome{index: l.Index, result: r}
			a.remember(cmds[pos].id, dedupEntry{index: l.Index, result: r})
		}
	}
	for i, j := range dupOf {
		if j >= 0 {
			outs[i] = outs[j]
		}
	}
	a.advance(l.Index)
	return batchResponse{outcomes: outs}
}

func (a *fsmAdapter) advance(index uint64) {
	a.mu.Lock()
	if index > a.applied {
		a.applied = index
	}
	close(a.notify)
	a.notify = make(chan struct{})
	a.mu.Unlock()
}

func (a *fsmAdapter) appliedIndex() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied
}

// waitIndex returns once a command at index or later was applied here.
func (a *fsmAdapter) waitIndex(ctx context.Context, index uint64) error {
	for {
		a.mu.Lock()
		applied, ch := a.applied, a.notify
		a.mu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, applied, ctx.Err())
		}
	}
}

// Snapshot implements raft.FSM: it serialises the dedup table and the FSM
// into memory on the FSM goroutine; Persist only copies bytes.
func (a *fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	var buf bytes.Buffer
	buf.Write(snapshotMagic)
	var tmp []byte
	tmp = binary.AppendUvarint(tmp, a.appliedIndex())
	tmp = binary.AppendUvarint(tmp, uint64(len(a.order)))
	buf.Write(tmp)
	n := len(a.order)
	for i := 0; i < n; i++ {
		id := a.order[(a.head+i)%n]
		e := a.seen[id]
		tmp = append(tmp[:0], id[:]...)
		tmp = binary.AppendUvarint(tmp, e.index)
		tmp = binary.AppendUvarint(tmp, uint64(len(e.result)))
		buf.Write(tmp)
		buf.Write(e.result)
	}
	if err := a.fsm.Snapshot(&buf); err != nil {
		return nil, fmt.Errorf("snapshot fsm: %w", err)
	}
	return &memSnapshot{data: buf.Bytes()}, nil
}

// Restore implements raft.FSM.
func (a *fsmAdapter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReader(rc)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || !bytes.Equal(magic, snapshotMagic) {
		return fmt.Errorf("restore snapshot: bad header: %w", errMalformed)
	}
	applied, err := binary.ReadUvarint(br)
	if err != nil {
		return fmt.Errorf("restore snapshot index: %w", err)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > 1<<24 {
		return fmt.Errorf("restore snapshot dedup count: %w", errMalformed)
	}
	// A snapshot that fails to restore leaves the replica as it was, the
	// remembered command ids included.
	oldSeen, oldOrder, oldHead := a.seen, a.order, a.head
	restored := false
	defer func() {
		if !restored {
			a.seen, a.order, a.head = oldSeen, oldOrder, oldHead
		}
	}()
	a.seen = make(map[cmdID]dedupEntry, n)
	a.order, a.head = nil, 0
	for i := uint64(0); i < n; i++ {
		var id cmdID
		if _, err := io.ReadFull(br, id[:]); err != nil {
			return fmt.Errorf("restore snapshot dedup id: %w", err)
		}
		idx, err := binary.ReadUvarint(br)
		if err != nil {
			return fmt.Errorf("restore snapshot dedup index: %w", err)
		}
		l, err := binary.ReadUvarint(br)
		if err != nil || l > maxFrameBytes {
			return fmt.Errorf("restore snapshot dedup length: %w", errMalformed)
		}
		res := make([]byte, l)
		if _, err := io.ReadFull(br, res); err != nil {
			return fmt.Errorf("restore snapshot dedup result: %w", err)
		}
		a.remember(id, dedupEntry{index: idx, result: res})
	}
	if err := a.fsm.Restore(br); err != nil {
		return fmt.Errorf("restore fsm: %w", err)
	}
	restored = true
	a.mu.Lock()
	a.applied = applied
	close(a.notify)
	a.notify = make(chan struct{})
	a.mu.Unlock()
	return nil
}

// memSnapshot is a snapshot already serialised in memory.
type memSnapshot struct{ data []byte }

// Persist writes the bytes to the sink.
func (s *memSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release drops nothing; the buffer is garbage collected.
func (s *memSnapshot) Release() {}
