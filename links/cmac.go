package links

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
)

// cmacKey is an AES-128-CMAC key (RFC 4493, NIST SP 800-38B): the AES
// cipher and the two subkeys K1 and K2, computed once. It is immutable after
// newCMACKey and safe for concurrent use (a cipher.Block from crypto/aes is).
type cmacKey struct {
	b      cipher.Block
	k1, k2 [aes.BlockSize]byte
}

// newCMACKey returns the CMAC key of a 16-byte AES-128 key. It allocates
// (the cipher, the key's own struct); sum does not.
func newCMACKey(key []byte) (*cmacKey, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("new cmac key: %d bytes, want 16: %w", len(key), ErrInvalid)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("new cmac key: %w", err)
	}
	c := &cmacKey{b: b}
	// Subkey generation (RFC 4493 2.3): L = AES(K, 0^128), K1 = dbl(L),
	// K2 = dbl(K1). c.k2 serves as L's buffer on the heap, since a slice
	// passed to the cipher.Block interface escapes.
	b.Encrypt(c.k2[:], c.k2[:])
	c.k1 = dbl(c.k2)
	c.k2 = dbl(c.k1)
	return c, nil
}

// dbl doubles x in GF(2^128) as CMAC defines it: x shifted left by one bit,
// its top bit folded back as the constant Rb = 0x87. It runs in constant
// time.
func dbl(x [aes.BlockSize]byte) [aes.BlockSize]byte {
	hi := binary.BigEndian.Uint64(x[:8])
	lo := binary.BigEndian.Uint64(x[8:])
	carry := hi >> 63
	hi = hi<<1 | lo>>63
	lo = lo<<1 ^ 0x87&-carry
	var y [aes.BlockSize]byte
	binary.BigEndian.PutUint64(y[:8], hi)
	binary.BigEndian.PutUint64(y[8:], lo)
	return y
}

// sum computes the 16-byte AES-CMAC of msg into x (RFC 4493 2.4), one block
// encryption per started 16-byte block of msg (one for an empty msg). x is
// the cipher's working state: it is handed to the cipher.Block interface, so
// the caller passes memory that is already on the heap (scratch it owns)
// rather than a stack array, which would escape and cost an allocation per
// call. msg must not overlap x. sum does not allocate.
func (c *cmacKey) sum(x *[aes.BlockSize]byte, msg []byte) {
	*x = [aes.BlockSize]byte{}
	// Every block but the last: CBC with a zero IV.
	for len(msg) > aes.BlockSize {
		xorBlock(x, msg[:aes.BlockSize])
		c.b.Encrypt(x[:], x[:])
		msg = msg[aes.BlockSize:]
	}
	// The last block: a complete one is masked with K1; a partial (or
	// empty) one is padded with 10* and masked with K2.
	if len(msg) == aes.BlockSize {
		xorBlock(x, msg)
		xorBlock(x, c.k1[:])
	} else {
		var last [aes.BlockSize]byte
		copy(last[:], msg)
		last[len(msg)] = 0x80
		xorBlock(x, last[:])
		xorBlock(x, c.k2[:])
	}
	c.b.Encrypt(x[:], x[:])
}

// xorBlock sets x ^= m for a 16-byte m.
func xorBlock(x *[aes.BlockSize]byte, m []byte) {
	_ = m[aes.BlockSize-1]
	binary.LittleEndian.PutUint64(x[:8], binary.LittleEndian.Uint64(x[:8])^binary.LittleEndian.Uint64(m[:8]))
	binary.LittleEndian.PutUint64(x[8:], binary.LittleEndian.Uint64(x[8:])^binary.LittleEndian.Uint64(m[8:16]))
}
