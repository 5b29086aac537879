package clustertest

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"
)

type countFSM struct {
	mu sync.Mutex
	n  int
}

func (f *countFSM) ApplyBatch(_ uint64, _ time.Time, cmds [][]byte) [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n += len(cmds)
	return make([][]byte, len(cmds))
}
func (f *countFSM) Snapshot(w io.Writer) error { return nil }
func (f *countFSM) Restore(r io.Reader) error  { return nil }

func TestStartGroup(t *testing.T) {
	a, b := &countFSM{}, &countFSM{}
	nodes := StartGroup(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range nodes {
		if _, idx, err := c.ApplyIndex(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		} else if err := nodes[0].WaitIndex(ctx, idx); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[1].WaitIndex(ctx, nodes[0].AppliedIndex()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*countFSM{a, b} {
		f.mu.Lock()
		n := f.n
		f.mu.Unlock()
		if n != 2 {
			t.Fatalf("applied %d commands, want 2", n)
		}
	}
	var buf bytes.Buffer
	if err := nodes[0].Status().WriteText(&buf); err != nil || !bytes.Contains(buf.Bytes(), []byte("n1")) {
		t.Fatalf("status: %v\n%s", err, buf.String())
	}
}
