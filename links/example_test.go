package links_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/refrouter/refrouter/links"
)

func ExampleKeyring() {
	keys := []links.MasterKey{
		{Gen: 0, Key: bytes.Repeat([]byte{1}, 32), RetireAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{Gen: 1, Key: bytes.Repeat([]byte{2}, 32)},
	}
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	gen, _ := links.LatestGen(keys, now)
	k, err := links.NewKeyring(keys, gen)
	if err != nil {
		panic(err)
	}
	code, err := k.AppendCode(nil, links.Code{Campaign: 3, Inviter: 42, Variant: 1})
	if err != nil {
		panic(err)
	}
	c, err := k.Verify(code, now)
	fmt.Println(len(code), c.Campaign, c.Inviter, c.Variant, c.Gen, err)

	tok, err := k.AppendClickToken(nil, links.Click{Code: c, ClickID: 7, At: now, Node: "hk-1"})
	if err != nil {
		panic(err)
	}
	click, err := k.VerifyClick(tok, now)
	fmt.Println(click.ClickID, click.Node, click.At.Equal(now), err)
	// Output:
	// 16 3 42 1 1 <nil>
	// 7 hk-1 true <nil>
}

// A redirect verifies the code once and signs the click token with the
// verified tag: one MAC per click (the token's AES-CMAC), none at all to
// verify a repeated code.
func ExampleKeyring_VerifyCode() {
	k, err := links.NewKeyring([]links.MasterKey{{Gen: 1, Key: bytes.Repeat([]byte{2}, 32)}}, 1)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	code, _ := k.AppendCode(nil, links.Code{Campaign: 3, Inviter: 42})

	v, err := k.VerifyCode(code, now)
	if err != nil {
		panic(err) // answer 404
	}
	c := v.Code() // what Verify returns
	tok, err := k.AppendClickTokenFor(nil, v, links.Click{Code: c, ClickID: 7, At: now, Node: "hk-1"})
	if err != nil {
		panic(err)
	}
	old, _ := k.AppendClickToken(nil, links.Click{Code: c, ClickID: 7, At: now, Node: "hk-1"})
	fmt.Println(c.Campaign, c.Inviter, bytes.Equal(tok, old))
	// Output:
	// 3 42 true
}
