//go:build !unix

package outbox

import (
	"os"
	"path/filepath"
)

// lockDir opens dir/LOCK without locking it: advisory file locks are used
// on Unix only.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
}
