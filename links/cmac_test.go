package links

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"testing"
)

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestCMACRFC4493 checks the subkeys and the four AES-128 examples of RFC
// 4493 section 4 (the same as NIST SP 800-38B's).
func TestCMACRFC4493(t *testing.T) {
	c, err := newCMACKey(mustHex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.k1[:], mustHex(t, "fbeed618357133667c85e08f7236a8de"); !bytes.Equal(got, want) {
		t.Errorf("K1 = %x, want %x", got, want)
	}
	if got, want := c.k2[:], mustHex(t, "f7ddac306ae266ccf90bc11ee46d513b"); !bytes.Equal(got, want) {
		t.Errorf("K2 = %x, want %x", got, want)
	}
	msg := mustHex(t, "6bc1bee22e409f96e93d7e117393172a"+
		"ae2d8a571e03ac9c9eb76fac45af8e51"+
		"30c81c46a35ce411e5fbc1191a0a52ef"+
		"f69f2445df4f9b17ad2b417be66c3710")
	tests := []struct {
		name string
		n    int
		want string
	}{
		{"example 1, empty", 0, "bb1d6929e95937287fa37d129b756746"},
		{"example 2, one block", 16, "070a16b46b4d4144f79bdd9dd04a287c"},
		{"example 3, 40 bytes", 40, "dfa66747de9ae63030ca32611497c827"},
		{"example 4, four blocks", 64, "51f0bebf7e3b9d92fc49741779363cfe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := new([aes.BlockSize]byte)
			x[3] = 0xff // sum must not depend on what x held
			c.sum(x, msg[:tt.n])
			if got := hex.EncodeToString(x[:]); got != tt.want {
				t.Fatalf("AES-CMAC(%d bytes) = %s, want %s", tt.n, got, tt.want)
			}
		})
	}
}

// refCMAC is AES-CMAC written from RFC 4493 2.4 with crypto/cipher's CBC
// mode: the whole message, its last block padded and masked, CBC-encrypted
// under a zero IV; the tag is the last ciphertext block.
func refCMAC(b cipher.Block, k1, k2 []byte, msg []byte) []byte {
	n := (len(msg) + aes.BlockSize - 1) / aes.BlockSize
	complete := n > 0 && len(msg)%aes.BlockSize == 0
	if n == 0 {
		n = 1
	}
	m := make([]byte, n*aes.BlockSize)
	copy(m, msg)
	mask := k1
	if !complete {
		m[len(msg)] = 0x80
		mask = k2
	}
	for i := range aes.BlockSize {
		m[len(m)-aes.BlockSize+i] ^= mask[i]
	}
	out := make([]byte, len(m))
	cipher.NewCBCEncrypter(b, make([]byte, aes.BlockSize)).CryptBlocks(out, m)
	return out[len(out)-aes.BlockSize:]
}

// TestCMACLengths holds sum to the CBC-mode reference at every length a
// click token body can have and around every block boundary.
func TestCMACLengths(t *testing.T) {
	key := testKey(9, "cmac")[:16]
	c, err := newCMACKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := aes.NewCipher(key)
	msg := testKey(9, "msg")
	msg = append(msg, testKey(10, "msg")...)
	msg = append(msg, testKey(11, "msg")...)
	msg = append(msg, testKey(12, "msg")...)
	seen := map[[aes.BlockSize]byte]bool{}
	for n := 0; n <= maxRawClick; n++ {
		x := new([aes.BlockSize]byte)
		c.sum(x, msg[:n])
		if want := refCMAC(b, c.k1[:], c.k2[:], msg[:n]); !bytes.Equal(x[:], want) {
			t.Fatalf("sum of %d bytes = %x, want %x", n, x[:], want)
		}
		if seen[*x] {
			t.Fatalf("sum of %d bytes %x repeats a shorter prefix's", n, x[:])
		}
		seen[*x] = true
	}
}

func TestNewCMACKeyLength(t *testing.T) {
	for _, n := range []int{0, 15, 17, 24, 32} {
		if _, err := newCMACKey(make([]byte, n)); !errors.Is(err, ErrInvalid) {
			t.Errorf("newCMACKey(%d bytes) err = %v, want ErrInvalid", n, err)
		}
	}
}
