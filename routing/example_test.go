package routing_test

import (
	"fmt"

	"github.com/refrouter/refrouter/routing"
)

func ExamplePolicy_Decide() {
	t := routing.NewTable("hk-1", routing.DefaultOptions())
	t.Update([]routing.Node{
		{Name: "hk-1", URL: "http://hk.example", Lat: 22.32, Lon: 114.17, Alive: true},
		{Name: "fra-1", URL: "http://fra.example", Lat: 50.11, Lon: 8.68, Alive: true},
		{Name: "iad-1", URL: "http://iad.example", Lat: 38.95, Lon: -77.45, Alive: true},
	})
	p := routing.Policy{Mode: routing.ModeRedirect, ThresholdKm: 2000}
	target, redirect := p.Decide(t, "hk-1", 51.5074, -0.1278, true, false) // a client in London
	fmt.Printf("%s %v %.0f km\n", target.Name, redirect, target.DistanceKm)
	_, redirect = p.Decide(t, "hk-1", 51.5074, -0.1278, true, true) // already carries rr_hop=1
	fmt.Println(redirect)
	// Output:
	// fra-1 true 638 km
	// false
}
