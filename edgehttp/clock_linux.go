//go:build linux && amd64

package edgehttp

import (
	"syscall"
	"time"
)

// wallNow returns the wall-clock time to the microsecond, without the
// monotonic reading time.Now adds: on linux/amd64 syscall.Gettimeofday is a
// single vDSO call, where time.Now makes two (26 against 50 ns here). The
// fast path reads the clock once per batch of requests and uses it for
// wall-clock things only: Date, the click's time, deadlines a second apart.
func wallNow() time.Time {
	var tv syscall.Timeval
	if syscall.Gettimeofday(&tv) != nil {
		return time.Now()
	}
	return time.Unix(tv.Sec, tv.Usec*1000)
}
