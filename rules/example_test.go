package rules_test

import (
	"fmt"

	"github.com/refrouter/refrouter/rules"
)

func ExampleSet_Match() {
	set, err := rules.Parse([]byte(`[
		{"when": {"country": ["DE", "AT"], "language": ["de"]}, "destination": "https://live.example.com/de"},
		{"split": [{"destination": "https://live.example.com/a", "weight": 50},
		           {"destination": "https://live.example.com/b", "weight": 50}]}
	]`), []string{"live.example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	dest, _, _ := set.Match(&rules.Request{Country: "AT", AcceptLanguage: []byte("de-AT,en;q=0.5")})
	fmt.Println(dest)
	// A returning visitor's rr_ab cookie keeps the arm.
	dest, sticky, _ := set.Match(&rules.Request{Country: "FR", Sticky: []byte("1.1")})
	fmt.Println(dest, sticky)
	// Output:
	// https://live.example.com/de
	// https://live.example.com/b 1.1
}

func ExampleCheckDestination() {
	allowed := []string{"live.example.com", "liveapp://"}
	for _, d := range []string{"https://live.example.com/room/42", "liveapp://room/42", "https://live.example.com@evil.net/"} {
		fmt.Println(rules.CheckDestination(d, allowed) == nil)
	}
	// Output:
	// true
	// true
	// false
}
