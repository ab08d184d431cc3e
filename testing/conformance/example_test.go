package conformance_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/routes"
	"github.com/ccmkit/ccmkit/testing/conformance"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// TestLoadBalancers checks a backend outside a Go test (a smoke check
// against a staging account, say) and returns every violation joined. A
// test calls RunLoadBalancers instead, for one subtest per rule.
func ExampleTestLoadBalancers() {
	cloud := fakecloud.New(fakecloud.Options{})
	err := conformance.TestLoadBalancers(context.Background(), conformance.LoadBalancersFixture{
		Backend: cloud.LoadBalancers(),
		Cluster: "staging",
	})
	fmt.Println("violations:", err)
	fmt.Println("left behind:", len(cloud.LoadBalancerList()))

	// A backend that forgets what it created breaks the rules; each
	// violation names its case and rule.
	err = conformance.TestLoadBalancers(context.Background(), conformance.LoadBalancersFixture{
		Backend: forgetful{cloud.LoadBalancers()},
		Cluster: "staging",
	})
	first, _, _ := strings.Cut(err.Error(), " (")
	fmt.Println("first violation:", first)
	// Output:
	// violations: <nil>
	// left behind: 0
	// first violation: create-then-find
}

// forgetful is a backend whose Find never finds anything.
type forgetful struct{ lb.Backend }

func (forgetful) Find(_ context.Context, key lb.Key) (*lb.LoadBalancer, error) {
	return nil, fmt.Errorf("forgetful: no load balancer %s: %w", key, cloudcall.ErrNotFound)
}

// TestRoutes takes a constructor: each case needs an empty table.
func ExampleTestRoutes() {
	cloud := fakecloud.New(fakecloud.Options{})
	err := conformance.TestRoutes(context.Background(), func() conformance.RoutesFixture {
		table := cloud.NewRouteTable(fakecloud.RouteTableOptions{})
		var backend routes.Backend = table.Batch() // an Applier: the batch cases run too
		return conformance.RoutesFixture{Backend: backend, Cluster: "staging"}
	})
	fmt.Println("violations:", err)
	// Output:
	// violations: <nil>
}
