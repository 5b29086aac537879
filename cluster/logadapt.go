package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// slogWriter turns the text lines of hclog and log.Logger into slog records,
// taking the level from the "[LEVEL]" token the libraries print. Once
// stopping is set (the node is shutting down), errors go out at debug level:
// they are the libraries' reads and writes on connections the shutdown closed.
type slogWriter struct {
	log      *slog.Logger
	src      string
	stopping *atomic.Bool
}

// Write implements io.Writer; each call carries one or more whole lines.
func (w slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := string(line)
		lvl := slog.LevelInfo
		if i := strings.Index(s, "["); i >= 0 {
			if j := strings.Index(s[i:], "]"); j > 0 {
				switch strings.TrimSpace(s[i+1 : i+j]) {
				case "TRACE", "DEBUG":
					lvl = slog.LevelDebug
				case "WARN":
					lvl = slog.LevelWarn
				case "ERR", "ERROR":
					lvl = slog.LevelError
					if w.stopping != nil && w.stopping.Load() {
						lvl = slog.LevelDebug
					}
				}
				s = strings.TrimSpace(s[i+j+1:])
			}
		}
		w.log.Log(context.Background(), lvl, s, "src", w.src)
	}
	return len(p), nil
}

// newHCLogger returns an hclog.Logger for the library name that logs to l;
// stopping may be nil.
func newHCLogger(l *slog.Logger, name string, stopping *atomic.Bool) hclog.Logger {
	level := hclog.Info
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        name,
		Output:      slogWriter{log: l, src: name, stopping: stopping},
		Level:       level,
		DisableTime: true,
	})
}

// newStdLogger returns a log.Logger for the library name that logs to l;
// stopping may be nil.
func newStdLogger(l *slog.Logger, name string, stopping *atomic.Bool) *log.Logger {
	return log.New(slogWriter{log: l, src: name, stopping: stopping}, "", 0)
}
