package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ClockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// `getconf CLK_TCK`). It is 100 on every Linux architecture Go supports; the
// meter assumes it rather than calling sysconf through cgo. The resolution
// of ProcCPU is therefore 10 ms: measure runs long enough (seconds).
const ClockTicks = 100

// ErrBadStat is returned (wrapped) when /proc/PID/stat cannot be parsed.
var ErrBadStat = errors.New("bench: bad /proc stat")

// ProcCPU returns the CPU time (user + system) consumed so far by process
// pid, read from /proc/PID/stat. Children are not included. Take it before
// and after a run and divide the difference by the requests served to get
// CPU per request. Safe for concurrent use.
func ProcCPU(pid int) (time.Duration, error) {
	p := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p, err)
	}
	utime, stime, err := ParseProcStat(b)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", p, err)
	}
	return ticks(utime + stime), nil
}

func ticks(n uint64) time.Duration {
	return time.Duration(n) * (time.Second / ClockTicks)
}

// ParseProcStat returns the utime and stime fields (in clock ticks) of the
// content of a /proc/PID/stat file. The command name, in parentheses, may
// itself hold spaces and parentheses, so fields are counted from the last ')'.
func ParseProcStat(b []byte) (utime, stime uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || bytes.IndexByte(b[:i], '(') < 0 {
		return 0, 0, fmt.Errorf("%w: no command name", ErrBadStat)
	}
	// After ") " come field 3 (state) onwards; utime is field 14, stime 15.
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("%w: %d fields after the command name, want at least 13", ErrBadStat, len(f))
	}
	utime, err = strconv.ParseUint(string(f[11]), 10, 63)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: utime: %w", ErrBadStat, err)
	}
	stime, err = strconv.ParseUint(string(f[12]), 10, 63)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: stime: %w", ErrBadStat, err)
	}
	if utime+stime > uint64(1<<63-1)/uint64(time.Second/ClockTicks) {
		return 0, 0, fmt.Errorf("%w: cpu time overflows", ErrBadStat)
	}
	return utime, stime, nil
}
