package links

import (
	"bytes"
	"crypto/sha256"
	"fmt"
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
// issuing with current, with the default options.
func newTestKeyring(tb testing.TB, current uint8, gens ...uint8) *Keyring {
	tb.Helper()
	return newTestKeyringOpts(tb, nil, current, gens...)
}

// newTestKeyringVersion is newTestKeyring signing click tokens of version v.
func newTestKeyringVersion(tb testing.TB, v uint8, current uint8, gens ...uint8) *Keyring {
	tb.Helper()
	k := newTestKeyringOpts(tb, []Option{WithClickTokenVersion(v)}, current, gens...)
	if k.ClickTokenVersion() != v {
		tb.Fatalf("ClickTokenVersion() = %d, want %d", k.ClickTokenVersion(), v)
	}
	return k
}

func newTestKeyringOpts(tb testing.TB, opts []Option, current uint8, gens ...uint8) *Keyring {
	tb.Helper()
	keys := make([]MasterKey, 0, len(gens))
	for _, g := range gens {
		keys = append(keys, MasterKey{Gen: g, Key: testKey(g, "")})
	}
	k, err := NewKeyring(keys, current, opts...)
	if err != nil {
		tb.Fatalf("NewKeyring: %v", err)
	}
	return k
}

// clickVersions lists the click token versions a keyring can sign.
var clickVersions = []uint8{ClickTokenV1, ClickTokenV2}

// versionName names a click token version in subtest names.
func versionName(v uint8) string { return fmt.Sprintf("v%d", v) }

// clickTag returns the tag of a click token body of the given version made
// with ck, as the spec defines it: the top 128 bits of HMAC-SHA256 under the
// campaign key for v1, the AES-128-CMAC under the click key for v2 (any
// other version gets v2's).
func clickTag(ck *campaignKey, version uint8, body []byte) []byte {
	st := ck.get()
	defer ck.put(st)
	if version == ClickTokenV1 {
		return bytes.Clone(st.mac(body)[:clickTagLen])
	}
	x := new([16]byte)
	ck.clickKey().sum(x, body)
	return x[:]
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
