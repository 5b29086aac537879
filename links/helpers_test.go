package links

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"
)

// testKey returns a deterministic 32-byte master key for gen, varied by salt.
func testKey(gen uint8, salt string) []byte {
	s := sha256.Sum256([]byte{gen})
	s = sha256.Sum256(append(s[:], salt...))
	return s[:]
}

// newTestKeyring builds a keyring of the given generations (no retirement)
// issuing with current.
func newTestKeyring(tb testing.TB, current uint8, gens ...uint8) *Keyring {
	tb.Helper()
	keys := make([]MasterKey, 0, len(gens))
	for _, g := range gens {
		keys = append(keys, MasterKey{Gen: g, Key: testKey(g, "")})
	}
	k, err := NewKeyring(keys, current)
	if err != nil {
		tb.Fatalf("NewKeyring: %v", err)
	}
	return k
}

// mustCode issues c with k.
func mustCode(tb testing.TB, k *Keyring, c Code) []byte {
	tb.Helper()
	b, err := k.AppendCode(nil, c)
	if err != nil {
		tb.Fatalf("AppendCode(%+v): %v", c, err)
	}
	return b
}

// mustClick signs c with k.
func mustClick(tb testing.TB, k *Keyring, c Click) []byte {
	tb.Helper()
	b, err := k.AppendClickToken(nil, c)
	if err != nil {
		tb.Fatalf("AppendClickToken(%+v): %v", c, err)
	}
	return b
}

var testNow = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

var longNode = string(bytes.Repeat([]byte("n"), MaxNodeLen))
