//go:build !(linux && amd64)

package edgehttp

import "time"

// wallNow returns the wall-clock time (see clock_linux.go).
func wallNow() time.Time { return time.Now() }
