package clientip_test

import (
	"fmt"
	"net/netip"

	"github.com/refrouter/refrouter/clientip"
)

func ExampleResolver_From() {
	trusted, err := clientip.ParsePrefixes([]string{"10.0.0.0/8"})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := clientip.NewResolver(trusted, clientip.HeaderXFF)
	// The load balancer 10.0.0.2 appended the client's address; the client
	// tried to claim 1.2.3.4 on the left.
	fmt.Println(r.From(netip.MustParseAddr("10.0.0.2"), []byte("1.2.3.4, 203.0.113.9"), nil))
	// A direct client cannot spoof anything.
	fmt.Println(r.From(netip.MustParseAddr("198.51.100.7"), []byte("1.2.3.4"), nil))
	// Output:
	// 203.0.113.9
	// 198.51.100.7
}
