package loadgen

import (
	"syscall"
	"time"
)

// preciseSleep sleeps for d in a nanosleep system call, which the kernel's
// high-resolution timers end within tens of microseconds. It blocks the
// calling thread (the runtime hands its P to other goroutines meanwhile).
func preciseSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil) // EINTR just ends the nap early
}
