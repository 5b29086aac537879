package links

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
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
	for _, ver := range clickVersions {
		k := newTestKeyringVersion(t, ver, 1, 1, 2)
		// A keyring with the same keys signing the other version.
		other := newTestKeyringVersion(t, ClickTokenV1+ClickTokenV2-ver, 1, 1, 2)
		for _, c := range testClicks() {
			t.Run(versionName(ver)+"/"+c.Node, func(t *testing.T) {
				tok := mustClick(t, k, c)
				if len(tok) > MaxClickTokenLen || len(tok) < minClickTokenLen {
					t.Fatalf("token length %d outside [%d, %d]", len(tok), minClickTokenLen, MaxClickTokenLen)
				}
				if strings.Trim(string(tok), b64Alphabet) != "" {
					t.Fatalf("token %q is not raw base64url", tok)
				}
				raw, _ := base64.RawURLEncoding.DecodeString(string(tok))
				if raw[offVersion] != ver {
					t.Fatalf("version byte %d, want %d", raw[offVersion], ver)
				}
				for _, kk := range []*Keyring{k, other} {
					got, err := kk.VerifyClick(tok, testNow)
					if err != nil {
						t.Fatalf("VerifyClick (keyring signing v%d): %v", kk.ClickTokenVersion(), err)
					}
					if got.Code != c.Code || got.ClickID != c.ClickID || got.Node != c.Node || !got.At.Equal(c.At) {
						t.Fatalf("VerifyClick = %+v, want %+v", got, c)
					}
					if !c.At.IsZero() && got.At.Location() != time.UTC {
						t.Fatalf("At location = %v, want UTC", got.At.Location())
					}
				}
				// The embedded code is the one AppendCode issues for the same gen.
				issuer := newTestKeyring(t, c.Code.Gen, c.Code.Gen)
				code := mustCode(t, issuer, c.Code)
				v, _ := parseValue(code)
				if binary.BigEndian.Uint32(raw[offCode:]) != uint32(v.hi) || binary.BigEndian.Uint64(raw[offCode+4:]) != v.lo {
					t.Fatalf("embedded code value differs from issued code %q", code)
				}
				// The same token whatever dst's spare capacity (v2 borrows
				// it as scratch); dst's content is kept.
				for _, spare := range []int{0, 1, 16, len(tok) - 1, len(tok), MaxClickTokenLen + 7} {
					dst := append(make([]byte, 0, 2+spare), "ab"...)
					got, err := k.AppendClickToken(dst, c)
					if err != nil || string(got) != "ab"+string(tok) {
						t.Fatalf("AppendClickToken with %d spare bytes = %q, %v; want %q", spare, got, err, "ab"+string(tok))
					}
				}
			})
		}
	}
}

func TestClickTokenVersionDefault(t *testing.T) {
	k := newTestKeyring(t, 1, 1)
	if v := k.ClickTokenVersion(); v != ClickTokenV2 {
		t.Fatalf("default ClickTokenVersion() = %d, want %d", v, ClickTokenV2)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(string(mustClick(t, k, testClicks()[0])))
	if raw[offVersion] != ClickTokenV2 {
		t.Fatalf("default keyring signs version %d, want %d", raw[offVersion], ClickTokenV2)
	}
}

func TestNewKeyringClickTokenVersion(t *testing.T) {
	keys := []MasterKey{{Gen: 1, Key: testKey(1, "")}}
	tests := []struct {
		name    string
		opts    []Option
		want    uint8
		wantErr bool
	}{
		{"default", nil, ClickTokenV2, false},
		{"v1", []Option{WithClickTokenVersion(ClickTokenV1)}, ClickTokenV1, false},
		{"v2", []Option{WithClickTokenVersion(ClickTokenV2)}, ClickTokenV2, false},
		{"last wins", []Option{WithClickTokenVersion(ClickTokenV1), WithClickTokenVersion(ClickTokenV2)}, ClickTokenV2, false},
		{"v0", []Option{WithClickTokenVersion(0)}, 0, true},
		{"v3", []Option{WithClickTokenVersion(3)}, 3, true},
		{"v255", []Option{WithClickTokenVersion(255)}, 255, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKeyring(keys, 1, tt.opts...)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("version %d ", tt.want)) {
					t.Fatalf("err = %v, want ErrInvalid naming version %d", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.ClickTokenVersion() != tt.want {
				t.Fatalf("ClickTokenVersion() = %d, want %d", k.ClickTokenVersion(), tt.want)
			}
		})
	}
}

func TestAppendClickTokenInvalid(t *testing.T) {
	tests := []struct {
		name string
		c    Click
	}{
		{"node too long", Click{Code: Code{Gen: 1}, Node: longNode + "x"}},
		{"variant 8", Click{Code: Code{Gen: 1, Variant: 8}}},
		{"gen residue missing", Click{Code: Code{Gen: 3}}},
		{"gen shadowed", Click{Code: Code{Gen: 5}}},
	}
	for _, ver := range clickVersions {
		k := newTestKeyringVersion(t, ver, 1, 1, 2)
		for _, tt := range tests {
			t.Run(versionName(ver)+"/"+tt.name, func(t *testing.T) {
				got, err := k.AppendClickToken([]byte("p"), tt.c)
				if !errors.Is(err, ErrInvalid) || string(got) != "p" {
					t.Fatalf("AppendClickToken = %q, %v; want dst unchanged, ErrInvalid", got, err)
				}
			})
		}
	}
}

// encodeRaw encodes raw token bytes canonically.
func encodeRaw(raw []byte) string { return base64.RawURLEncoding.EncodeToString(raw) }

func TestVerifyClickMalformed(t *testing.T) {
	for _, ver := range clickVersions {
		k := newTestKeyringVersion(t, ver, 1, 1)
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
			{"version 0", mod(func(r []byte) []byte { r[0] = 0; return r }), ErrMalformed},
			{"version 3", mod(func(r []byte) []byte { r[0] = 3; return r }), ErrMalformed},
			{"version 255", mod(func(r []byte) []byte { r[0] = 255; return r }), ErrMalformed},
			// The version is authenticated: the other version's MAC of the
			// same bytes is another tag.
			{"other version", mod(func(r []byte) []byte { r[0] = ClickTokenV1 + ClickTokenV2 - ver; return r }), ErrForged},
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
			t.Run(versionName(ver)+"/"+tt.name, func(t *testing.T) {
				_, err := k.VerifyClick([]byte(tt.tok), testNow)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("VerifyClick(%q) err = %v, want %v", tt.tok, err, tt.wantErr)
				}
			})
		}
	}
}

func TestVerifyClickTamperEveryByte(t *testing.T) {
	for _, ver := range clickVersions {
		k := newTestKeyringVersion(t, ver, 1, 0, 1, 2, 3)
		for _, c := range testClicks()[:3] {
			tok := mustClick(t, k, c)
			if _, err := k.VerifyClick(tok, testNow); err != nil {
				t.Fatalf("v%d: genuine token %q: %v", ver, tok, err)
			}
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
			// Change every byte of the decoded token to every other value,
			// re-encoded canonically.
			raw, _ := base64.RawURLEncoding.DecodeString(string(tok))
			for i := range raw {
				for b := range 256 {
					if byte(b) == raw[i] {
						continue
					}
					r := bytes.Clone(raw)
					r[i] = byte(b)
					if _, err := k.VerifyClick([]byte(encodeRaw(r)), testNow); !errors.Is(err, ErrForged) && !errors.Is(err, ErrMalformed) {
						t.Fatalf("v%d: byte %d set to %#x: err = %v, want rejection", ver, i, b, err)
					}
				}
			}
		}
	}
}

// TestVerifyClickOtherAlgorithm re-tags token bodies with the other
// version's algorithm: a v2 body with an HMAC-SHA256 tag, a v1 body with a
// CMAC tag, each over exactly the bytes before the tag, is rejected (the
// version byte is authenticated and selects the algorithm and key), while
// the body with its own version's algorithm is accepted.
func TestVerifyClickOtherAlgorithm(t *testing.T) {
	k := newTestKeyring(t, 1, 1)
	for _, c := range testClicks()[:4] {
		ck := k.slots[1].campaignKey(c.Code.Campaign)
		raw, _ := base64.RawURLEncoding.DecodeString(string(mustClick(t, k, c)))
		body := raw[:len(raw)-clickTagLen]
		for _, ver := range clickVersions {
			body[offVersion] = ver
			for _, alg := range clickVersions {
				tok := encodeRaw(append(bytes.Clone(body), clickTag(ck, alg, body)...))
				_, err := k.VerifyClick([]byte(tok), testNow)
				if alg == ver && err != nil {
					t.Fatalf("v%d body with its own tag: %v", ver, err)
				}
				if alg != ver && !errors.Is(err, ErrForged) {
					t.Fatalf("v%d body with a v%d tag: err = %v, want ErrForged", ver, alg, err)
				}
			}
		}
	}
}

// TestVerifyClickOtherKeys tags genuine token bodies with the keys of
// another campaign and of another master key of the same generation
// residue: both are rejected.
func TestVerifyClickOtherKeys(t *testing.T) {
	k := newTestKeyring(t, 1, 1, 2)
	c := testClicks()[0] // campaign 1, gen 1
	raw, _ := base64.RawURLEncoding.DecodeString(string(mustClick(t, k, c)))
	body := raw[:len(raw)-clickTagLen]
	tests := []struct {
		name    string
		ck      *campaignKey
		wantErr error
	}{
		{"own key", newCampaignKey(testKey(1, ""), c.Code.Campaign), nil},
		{"other campaign", newCampaignKey(testKey(1, ""), c.Code.Campaign+1), ErrForged},
		{"other gen's master", newCampaignKey(testKey(2, ""), c.Code.Campaign), ErrForged},
		{"gen 5 (same residue)", newCampaignKey(testKey(5, ""), c.Code.Campaign), ErrForged},
	}
	for _, ver := range clickVersions {
		body[offVersion] = ver
		for _, tt := range tests {
			t.Run(versionName(ver)+"/"+tt.name, func(t *testing.T) {
				tok := encodeRaw(append(bytes.Clone(body), clickTag(tt.ck, ver, body)...))
				_, err := k.VerifyClick([]byte(tok), testNow)
				if err != tt.wantErr {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			})
		}
	}
}

func TestVerifyClickKeys(t *testing.T) {
	retire := testNow.Add(time.Hour)
	old := MasterKey{Gen: 0, Key: testKey(0, ""), RetireAt: retire}
	for _, ver := range clickVersions {
		k, err := NewKeyring([]MasterKey{old, {Gen: 1, Key: testKey(1, "")}}, 1, WithClickTokenVersion(ver))
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
			t.Run(versionName(ver)+"/"+tt.name, func(t *testing.T) {
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
}

func TestVerifyClickRejectsForgedEmbeddedCode(t *testing.T) {
	// A token MAC'd correctly around a code whose own tag is wrong must fail.
	for _, ver := range clickVersions {
		k := newTestKeyringVersion(t, ver, 1, 1)
		c := testClicks()[0]
		tok := mustClick(t, k, c)
		raw, _ := base64.RawURLEncoding.DecodeString(string(tok))
		raw[offCode+11] ^= 1 // low bit of the code tag
		body := len(raw) - clickTagLen
		copy(raw[body:], clickTag(k.slots[1].campaignKey(c.Code.Campaign), ver, raw[:body]))
		if _, err := k.VerifyClick([]byte(encodeRaw(raw)), testNow); !errors.Is(err, ErrForged) {
			t.Fatalf("v%d: err = %v, want ErrForged", ver, err)
		}
	}
}

// TestClickKnownAnswer builds a token of each version from the written spec:
// the layout with encoding/binary, the keys with crypto/hmac, the v2 tag
// with the CMAC that TestCMACRFC4493 checks.
func TestClickKnownAnswer(t *testing.T) {
	master := testKey(5, "kat")
	c := Click{Code: Code{Campaign: 4242, Inviter: 3000000000, Variant: 6, Gen: 5}, ClickID: 0x0102030405060708, At: testNow, Node: "fra-1"}
	issuer, err := NewKeyring([]MasterKey{{Gen: 5, Key: master}}, 5)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := parseValue(mustCode(t, issuer, c.Code))
	hmacSHA256 := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	for _, ver := range clickVersions {
		t.Run(versionName(ver), func(t *testing.T) {
			k, err := NewKeyring([]MasterKey{{Gen: 5, Key: master}}, 5, WithClickTokenVersion(ver))
			if err != nil {
				t.Fatal(err)
			}
			body := []byte{ver}
			body = binary.BigEndian.AppendUint32(body, uint32(code.hi))
			body = binary.BigEndian.AppendUint64(body, code.lo)
			body = binary.BigEndian.AppendUint64(body, c.ClickID)
			body = binary.BigEndian.AppendUint64(body, uint64(c.At.UnixNano()))
			body = append(body, byte(len(c.Node)))
			body = append(body, c.Node...)
			var tag []byte
			switch ver {
			case ClickTokenV1:
				tag = hmacSHA256(hmacSHA256(master, "refrouter/v1/campaign/4242"), string(body))[:16]
			case ClickTokenV2:
				cm, err := newCMACKey(hmacSHA256(master, "refrouter/v2/click/campaign/4242")[:16])
				if err != nil {
					t.Fatal(err)
				}
				x := new([16]byte)
				cm.sum(x, body)
				tag = x[:]
			}
			want := base64.RawURLEncoding.EncodeToString(append(body, tag...))
			if got := string(mustClick(t, k, c)); got != want {
				t.Fatalf("token = %q, want %q", got, want)
			}
		})
	}
}
