package localcluster

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
)

// TestQuietWhileStopping: once the whole cluster is stopping, the cluster
// libraries' errors are demoted to debug (dropped below it); the node's own
// errors, and every error before, stay errors.
func TestQuietWhileStopping(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelError, slog.LevelDebug} {
		var buf bytes.Buffer
		var stopping atomic.Bool
		base := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level})
		log := slog.New(quietWhileStopping{Handler: base, stopping: &stopping}).With("node", "fra-1")
		log.Error("peer unreachable", "src", "raft")
		stopping.Store(true)
		log.Error("connection refused", "src", "raft")
		log.Error("use of closed network connection", "src", "raft-net")
		log.Error("failed to send gossip", "src", "memberlist")
		log.Error("outbox: write failed", "src", "node")
		log.Error("no src")
		out := buf.String()
		for _, msg := range []string{"peer unreachable", "outbox: write failed", "no src"} {
			if !strings.Contains(out, "level=ERROR msg=\""+msg+"\"") {
				t.Errorf("level %v: %q not logged as an error:\n%s", level, msg, out)
			}
		}
		for _, msg := range []string{"connection refused", "use of closed network connection", "failed to send gossip"} {
			if strings.Contains(out, "level=ERROR msg=\""+msg+"\"") {
				t.Errorf("level %v: %q logged as an error while stopping:\n%s", level, msg, out)
			}
			if debug := strings.Contains(out, "level=DEBUG msg=\""+msg+"\""); debug != (level == slog.LevelDebug) {
				t.Errorf("level %v: %q at debug: %v:\n%s", level, msg, debug, out)
			}
		}
		if !strings.Contains(out, "node=fra-1") {
			t.Errorf("the logger's attributes were lost:\n%s", out)
		}
	}
}
