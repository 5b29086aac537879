package node

import (
	"encoding/base64"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/links"
)

// TestNewKeyringClickTokenVersion checks that click_token_version chooses
// the version the keyring signs, that either keyring verifies both, and
// that other values are refused with an error naming the setting.
func TestNewKeyringClickTokenVersion(t *testing.T) {
	secrets := []config.Secret{{Gen: 1, Key: base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))}}
	now := time.Now()
	rings := map[int]*links.Keyring{}
	for _, v := range []int{1, 2} {
		kr, err := NewKeyring(secrets, v, now)
		if err != nil {
			t.Fatalf("click_token_version %d: %v", v, err)
		}
		if got := kr.ClickTokenVersion(); int(got) != v {
			t.Fatalf("click_token_version %d: keyring signs version %d", v, got)
		}
		rings[v] = kr
	}
	for v, signer := range rings {
		code, err := signer.AppendCode(nil, links.Code{Campaign: 3, Inviter: 4})
		if err != nil {
			t.Fatal(err)
		}
		c, err := signer.Verify(code, now)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := signer.AppendClickToken(nil, links.Click{Code: c, ClickID: 1, At: now, Node: "t-1"})
		if err != nil {
			t.Fatal(err)
		}
		for w, verifier := range rings {
			if _, err := verifier.VerifyClick(tok, now); err != nil {
				t.Errorf("a v%d token does not verify with the keyring signing v%d: %v", v, w, err)
			}
		}
	}
	for _, v := range []int{0, 3, 256, -1} {
		if _, err := NewKeyring(secrets, v, now); err == nil || !strings.Contains(err.Error(), "click_token_version") {
			t.Errorf("click_token_version %d: err = %v, want an error naming click_token_version", v, err)
		}
	}
}

func secretOf(gen uint8, b byte) config.Secret {
	return config.Secret{Gen: gen, Key: base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(b), 32)))}
}

// TestKeyRotationIssueFrom: a generation added with issue_from in the future
// verifies at once but issues only from issue_from; a node switches to it
// then without a restart (refreshKeys), and codes of the previous
// generation keep verifying.
func TestKeyRotationIssueFrom(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	next := secretOf(2, 'n')
	next.IssueFrom = now.Add(time.Hour)
	secrets := []config.Secret{secretOf(1, 'o'), next}
	kr, err := NewKeyring(secrets, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	if kr.Current() != 1 {
		t.Fatalf("issuing gen %d before issue_from, want 1", kr.Current())
	}
	// A node already issuing with gen 2 (after issue_from) makes codes that
	// a node still before it verifies.
	later, err := NewKeyring(secrets, 2, now.Add(2*time.Hour))
	if err != nil || later.Current() != 2 {
		t.Fatalf("after issue_from: gen %d, %v", later.Current(), err)
	}
	code, _ := later.AppendCode(nil, links.Code{Campaign: 1, Inviter: 1})
	if _, err := kr.Verify(code, now); err != nil {
		t.Fatalf("a gen 2 code on a node not yet issuing gen 2: %v", err)
	}

	n := &Node{cfg: config.Config{ClickTokenVersion: 2}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if n.masterKeys, err = masterKeys(secrets, now); err != nil {
		t.Fatal(err)
	}
	n.keys.Store(kr)
	old, _ := kr.AppendCode(nil, links.Code{Campaign: 1, Inviter: 2})
	n.refreshKeys(now.Add(30 * time.Minute))
	if n.Keys().Current() != 1 {
		t.Fatalf("switched to gen %d before issue_from", n.Keys().Current())
	}
	n.refreshKeys(now.Add(time.Hour))
	if n.Keys().Current() != 2 {
		t.Fatalf("still gen %d at issue_from", n.Keys().Current())
	}
	if _, err := n.Keys().Verify(old, now.Add(time.Hour)); err != nil {
		t.Fatalf("a gen 1 code after the switch: %v", err)
	}
}

// TestKeyShadowingRefused: a generation equal to a still-verifying one mod 4
// would hide it (codes carry the generation mod 4): refused until the older
// one is retired.
func TestKeyShadowingRefused(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	old := secretOf(0, 'o')
	old.RetireAt = now.Add(7 * 24 * time.Hour)
	if _, err := NewKeyring([]config.Secret{old, secretOf(4, 'n')}, 2, now); err == nil || !strings.Contains(err.Error(), "gen 4 would hide gen 0") {
		t.Fatalf("gen 4 beside a gen 0 in its grace period: %v", err)
	}
	if _, err := NewKeyring([]config.Secret{old, secretOf(4, 'n')}, 2, old.RetireAt); err != nil {
		t.Fatalf("gen 4 once gen 0 is retired: %v", err)
	}
}
