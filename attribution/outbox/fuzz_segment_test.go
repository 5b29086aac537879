package outbox

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpenSegment writes arbitrary bytes as the only segment and opens the outbox: Open
// must not panic; it either fails with ErrCorrupt or keeps a prefix of whole records that
// can all be read back.
func FuzzOpenSegment(f *testing.F) {
	var valid []byte
	for i := 0; i < 3; i++ {
		ev := testEvent(i)
		valid = appendFrame(valid, uint64(i+1), EncodeEvent(nil, &ev))
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-5])
	f.Add(append(append([]byte{}, valid...), 0xff, 0, 0, 0, 1, 2, 3))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		o, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			return
		}
		defer o.Close()
		last := o.LastSeq()
		recs, err := o.Read(1, int(last)+1)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Read: %v", err)
		}
		if err == nil && uint64(len(recs)) != last {
			t.Fatalf("read %d records, LastSeq %d", len(recs), last)
		}
	})
}
