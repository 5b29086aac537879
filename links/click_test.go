package links

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func testClicks() []Click {
	return []Click{
		{Code: Code{Campaign: 1, Inviter: 2, Variant: 3, Gen: 1}, ClickID: 42, At: testNow, Node: "hk-1"},
		{Code: Code{Gen: 1}, Node: ""},
		{Code: Code{Campaign: 0xffff, Inviter: 0xffffffff, Variant: 7, Gen: 1}, ClickID: ^uint64(0), At: time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC), Node: longNode},
		{Code: Code{Campaign: 300, Inviter: 7, Gen: 1}, ClickID: 1, At: time.Date(1980, 5, 6, 7, 8, 9, 123456789, time.UTC), Node: "fra-1"},
		{Code: Code{Campaign: 9, Inviter: 9, Gen: 2}, ClickID: 9, At: testNow.Add(time.Nanosecond), Node: "iad-1"},
	}
}

func TestClickRoundTrip(t *testing.T) {
	k := newTestKeyring(t, 1, 1, 2)
	for _, c := range testClicks() {
		t.Run(c.Node, func(t *testing.T) {
			tok := mustClick(t, k, c)
			if len(tok) > MaxClickTokenLen || len(tok) < minClickTokenLen {
				t.Fatalf("token length %d outside [%d, %d]", len(tok), minClickTokenLen, MaxClickTokenLen)
			}
			if strings.Trim(string(tok), b64Alphabet) != "" {
				t.Fatalf("token %q is not raw base64url", tok)
			}
			got, err := k.VerifyClick(tok, testNow)
			if err != nil {
				t.Fatalf("VerifyClick: %v", err)
			}
			if got.Code != c.Code || got.ClickID != c.ClickID || got.Node != c.Node || !got.At.Equal(c.At) {
				t.Fatalf("VerifyClick = %+v, want %+v", got, c)
			}
			if !c.At.IsZero() && got.At.Location() != time.UTC {
				t.Fatalf("At location = %v, want UTC", got.At.Location())
			}
			// The embedded code is the one AppendCode issues for the same gen.
			raw, _ := base64.RawURLEncoding.DecodeString(string(tok))
			issuer := newTestKeyring(t, c.Code.Gen, c.Code.Gen)
			code := mustCode(t, issuer, c.Code)
			v, _ := parseValue(code)
			if binary.BigEndian.Uint32(raw[offCode:]) != uint32(v.hi) || binary.BigEndian.Uint64(raw[offCode+4:]) != v.lo {
				t.Fatalf("embedded code value differs from issued code %q", code)
			}
		})
	}
}

func TestAppendClickTokenInvalid(t *testing.T) {
	k := newTestKeyring(t, 1, 1, 2)
	tests := []struct {
		name string
		c    Click
	}{
		{"node too long", Click{Code: Code{Gen: 1}, Node: longNode + "x"}},
		{"variant 8", Click{Code: Code{Gen: 1, Variant: 8}}},
		{"gen residue missing", Click{Code: Code{Gen: 3}}},
		{"gen shadowed", Click{Code: Code{Gen: 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := k.AppendClickToken([]byte("p"), tt.c)
			if !errors.Is(err, ErrInvalid) || string(got) != "p" {
				t.Fatalf("AppendClickToken = %q, %v; want dst unchanged, ErrInvalid", got, err)
			}
		})
	}
}

// encodeRaw encodes raw token bytes canonically.
func encodeRaw(raw []byte) string { return base64.RawURLEncoding.EncodeToString(raw) }

func TestVerifyClickMalformed(t *testing.T) {
	k := newTestKeyring(t, 1, 1)
	good := mustClick(t, k, testClicks()[0])
	raw, err := base64.RawURLEncoding.DecodeString(string(good))
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(r []byte) []byte) string { return encodeRaw(f(bytes.Clone(raw))) }
	tests := []struct {
		name    string
		tok     string
		wantErr error
	}{
		{"empty", "", ErrMalformed},
		{"too short", string(good[:minClickTokenLen-1]), ErrMalformed},
		{"truncated", string(good[:len(good)-1]), ErrMalformed},
		{"too long", string(good) + strings.Repeat("A", MaxClickTokenLen), ErrMalformed},
		{"one extra char", string(good) + "A", ErrMalformed},
		{"padding", base64.URLEncoding.EncodeToString(raw), ErrMalformed},
		{"std alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(string(good)) + "+", ErrMalformed},
		{"bad char", "!" + string(good[1:]), ErrMalformed},
		{"newline inserted", string(good[:10]) + "\n" + string(good[10:len(good)-1]), ErrMalformed},
		{"version 2", mod(func(r []byte) []byte { r[0] = 2; return r }), ErrMalformed},
		{"version 0", mod(func(r []byte) []byte { r[0] = 0; return r }), ErrMalformed},
		{"node len too big", mod(func(r []byte) []byte { r[offNodeLen] = 65; return r }), ErrMalformed},
		{"node len short", mod(func(r []byte) []byte { r[offNodeLen]--; return r }), ErrMalformed},
		{"node len long", mod(func(r []byte) []byte { r[offNodeLen]++; return r }), ErrMalformed},
		{"value >= 2^95", mod(func(r []byte) []byte { r[offCode] |= 0x80; return r }), ErrMalformed},
		{"body only", mod(func(r []byte) []byte { return r[:len(r)-clickTagLen] }), ErrMalformed},
		{"tag flipped", mod(func(r []byte) []byte { r[len(r)-1] ^= 1; return r }), ErrForged},
		{"click id changed", mod(func(r []byte) []byte { r[offClickID] ^= 1; return r }), ErrForged},
		{"gen not in keyring", mod(func(r []byte) []byte { r[offCode] ^= 0x40; return r }), ErrForged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.VerifyClick([]byte(tt.tok), testNow)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyClick(%q) err = %v, want %v", tt.tok, err, tt.wantErr)
			}
		})
	}
}

func TestVerifyClickTamperEveryByte(t *testing.T) {
	k := newTestKeyring(t, 1, 0, 1, 2, 3)
	for _, c := range testClicks()[:3] {
		tok := mustClick(t, k, c)
		mut := make([]byte, len(tok))
		for i := range tok {
			for j := 0; j < len(b64Alphabet); j++ {
				if b64Alphabet[j] == tok[i] {
					continue
				}
				copy(mut, tok)
				mut[i] = b64Alphabet[j]
				if _, err := k.VerifyClick(mut, testNow); !errors.Is(err, ErrForged) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("VerifyClick(%q) (from %q) err = %v, want rejection", mut, tok, err)
				}
			}
		}
		// Flip every bit of the decoded token, re-encoded canonically.
		raw, _ := base64.RawURLEncoding.DecodeString(string(tok))
		for i := range raw {
			for bit := 0; bit < 8; bit++ {
				r := bytes.Clone(raw)
				r[i] ^= 1 << bit
				if _, err := k.VerifyClick([]byte(encodeRaw(r)), testNow); err == nil {
					t.Fatalf("bit %d of byte %d flipped: accepted", bit, i)
				}
			}
		}
	}
}

func TestVerifyClickKeys(t *testing.T) {
	retire := testNow.Add(time.Hour)
	old := MasterKey{Gen: 0, Key: testKey(0, ""), RetireAt: retire}
	k, err := NewKeyring([]MasterKey{old, {Gen: 1, Key: testKey(1, "")}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := Click{Code: Code{Campaign: 3, Inviter: 4, Gen: 0}, ClickID: 5, At: testNow, Node: "hk-1"}
	tok := mustClick(t, k, c)
	other, err := NewKeyring([]MasterKey{{Gen: 0, Key: testKey(0, "other")}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		k       *Keyring
		now     time.Time
		wantErr error
	}{
		{"before retire", k, retire.Add(-time.Nanosecond), nil},
		{"at retire", k, retire, ErrRetired},
		{"other master key", other, testNow, ErrForged},
		{"gen missing", newTestKeyring(t, 1, 1), testNow, ErrForged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.k.VerifyClick(tok, tt.now)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if (err == nil || errors.Is(err, ErrRetired)) && got.ClickID != c.ClickID {
				t.Fatalf("click = %+v", got)
			}
		})
	}
}

func TestVerifyClickRejectsForgedEmbeddedCode(t *testing.T) {
	// A token MAC'd correctly around a code whose own tag is wrong must fail.
	k := newTestKeyring(t, 1, 1)
	c := testClicks()[0]
	tok := mustClick(t, k, c)
	raw, _ := base64.RawURLEncoding.DecodeString(string(tok))
	raw[offCode+11] ^= 1 // low bit of the code tag
	body := len(raw) - clickTagLen
	st := k.slots[1].campaignKey(c.Code.Campaign).get()
	sum := st.mac(raw[:body])
	copy(raw[body:], sum[:clickTagLen])
	if _, err := k.VerifyClick([]byte(encodeRaw(raw)), testNow); !errors.Is(err, ErrForged) {
		t.Fatalf("err = %v, want ErrForged", err)
	}
}
