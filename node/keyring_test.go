package node

import (
	"encoding/base64"
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
