package cluster

import (
	"context"
	"log/slog"
	"testing"
)

// records is a slog.Handler that keeps what it is given.
type records struct{ got []slog.Record }

func (h *records) Enabled(context.Context, slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.got = append(h.got, r)
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

// TestSlogWriterLevels: the libraries' [LEVEL] tokens become slog levels, and
// once the node is stopping (QuietLibraryErrors, which Shutdown calls first)
// their errors go out at debug level.
func TestSlogWriterLevels(t *testing.T) {
	h := &records{}
	c := &Cluster{}
	w := slogWriter{log: slog.New(h), src: "raft", stopping: &c.stopping}
	w.Write([]byte("[ERROR] raft: failed to heartbeat\n[WARN] raft: slow\n[DEBUG] raft: x\nplain line\n"))
	c.QuietLibraryErrors()
	w.Write([]byte("[ERROR] raft-net: use of closed network connection\n[WARN] raft: still a warning\n"))
	want := []struct {
		level slog.Level
		msg   string
	}{
		{slog.LevelError, "raft: failed to heartbeat"},
		{slog.LevelWarn, "raft: slow"},
		{slog.LevelDebug, "raft: x"},
		{slog.LevelInfo, "plain line"},
		{slog.LevelDebug, "raft-net: use of closed network connection"},
		{slog.LevelWarn, "raft: still a warning"},
	}
	if len(h.got) != len(want) {
		t.Fatalf("%d records, want %d", len(h.got), len(want))
	}
	for i, r := range h.got {
		if r.Level != want[i].level || r.Message != want[i].msg {
			t.Errorf("record %d: %v %q, want %v %q", i, r.Level, r.Message, want[i].level, want[i].msg)
		}
	}
}
