package links

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

func FuzzVerify(f *testing.F) {
	k := newTestKeyring(f, 1, 1, 2)
	for _, c := range []Code{{}, {Campaign: 1, Inviter: 2, Variant: 3}, {Campaign: 0xffff, Inviter: 0xffffffff, Variant: 7}} {
		f.Add(mustCode(f, k, c))
	}
	for _, s := range []string{"", "0000000000000000", "zzzzzzzzzzzzzzzz", "000000000000000", "000000000000000-", "00000000000000é"} {
		f.Add([]byte(s))
	}
	// Same keys: plain has no code cache, tiny has one slot (every genuine
	// code evicts the last), k the full cache.
	plain := newTestKeyring(f, 1, 1, 2)
	plain.cache = nil
	tiny := newTestKeyring(f, 1, 1, 2)
	tiny.cache = newCodeCache(1)
	signsV1 := newTestKeyringVersion(f, ClickTokenV1, 1, 1, 2)
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantErr := plain.VerifyCode(in, testNow)
		var vk VerifiedCode // k's verification
		// The second call of a genuine code is a hit.
		for i := 0; i < 2; i++ {
			for _, kk := range []*Keyring{k, tiny} {
				v, err := kk.VerifyCode(in, testNow)
				if err != wantErr || !sameVerification(v, want) {
					t.Fatalf("VerifyCode(%q) = %+v, %v; uncached %+v, %v", in, v, err, want, wantErr)
				}
				if kk == k {
					vk = v
				}
			}
		}
		if wantErr != nil {
			if len(in) == CodeLen && (isCached(k, in) || isCached(tiny, in)) {
				t.Fatalf("rejected code %q is cached", in)
			}
		} else {
			cl := Click{Code: want.Code(), ClickID: 5, At: testNow, Node: "hk-1"}
			tok, err := k.AppendClickTokenFor(nil, vk, cl)
			if err != nil || !bytes.Equal(tok, mustClick(t, k, cl)) {
				t.Fatalf("AppendClickTokenFor(%q) = %q, %v; AppendClickToken differs", in, tok, err)
			}
			// The same for v1 tokens, with v1's own verification and with
			// k's (another keyring's, so the tag is recomputed).
			v1, err := signsV1.VerifyCode(in, testNow)
			if err != nil {
				t.Fatalf("VerifyCode(%q) by the v1 keyring: %v", in, err)
			}
			want1 := mustClick(t, signsV1, cl)
			for _, v := range []VerifiedCode{v1, vk} {
				tok, err := signsV1.AppendClickTokenFor(nil, v, cl)
				if err != nil || !bytes.Equal(tok, want1) {
					t.Fatalf("v1 AppendClickTokenFor(%q) = %q, %v; AppendClickToken gives %q", in, tok, err, want1)
				}
			}
		}
		c, err := k.Verify(in, testNow)
		p, perr := Peek(in)
		if (perr == nil) != !errors.Is(err, ErrMalformed) {
			t.Fatalf("Peek err %v disagrees with Verify err %v", perr, err)
		}
		if perr == nil {
			v, ok := parseValue(in)
			if !ok || !bytes.Equal(appendValue(nil, v), in) {
				t.Fatalf("parse/encode round trip of %q failed", in)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForged) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if p.Campaign != c.Campaign || p.Inviter != c.Inviter || p.Variant != c.Variant || p.Gen != c.Gen&3 {
			t.Fatalf("Peek %+v disagrees with Verify %+v", p, c)
		}
		if c.Gen == k.Current() {
			if re := mustCode(t, k, c); !bytes.Equal(re, in) {
				t.Fatalf("re-issued %q, want %q", re, in)
			}
		}
	})
}

func FuzzVerifyClick(f *testing.F) {
	// Same keys, one keyring signing each version; both verify both.
	signers := map[uint8]*Keyring{}
	for _, v := range clickVersions {
		signers[v] = newTestKeyringVersion(f, v, 1, 1, 2)
	}
	for _, v := range clickVersions {
		k := signers[v]
		for _, c := range testClicks() {
			f.Add(mustClick(f, k, c))
		}
		good := mustClick(f, k, testClicks()[0])
		raw, _ := base64.RawURLEncoding.DecodeString(string(good))
		f.Add(good[:len(good)-1])
		f.Add(append(bytes.Clone(good), 'A'))
		f.Add([]byte(base64.URLEncoding.EncodeToString(raw)))
		// The other version's byte on this version's tag.
		raw[offVersion] = ClickTokenV1 + ClickTokenV2 - v
		f.Add([]byte(encodeRaw(raw)))
	}
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, in []byte) {
		var c Click
		var err error
		for i, v := range clickVersions {
			ci, erri := signers[v].VerifyClick(in, testNow)
			if i > 0 && (erri != err || ci != c) {
				t.Fatalf("keyrings signing different versions disagree on %q: %+v, %v and %+v, %v", in, c, err, ci, erri)
			}
			c, err = ci, erri
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForged) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// A genuine token is canonical: its version's signer re-signs it
		// byte for byte.
		raw, derr := base64.RawURLEncoding.DecodeString(string(in))
		if derr != nil {
			t.Fatalf("accepted %q, which does not decode: %v", in, derr)
		}
		k, ok := signers[raw[offVersion]]
		if !ok {
			t.Fatalf("accepted %q of version %d", in, raw[offVersion])
		}
		re, err := k.AppendClickToken(nil, c)
		if err != nil {
			t.Fatalf("re-sign %+v: %v", c, err)
		}
		if !bytes.Equal(re, in) {
			t.Fatalf("re-signed %q, want %q", re, in)
		}
	})
}
