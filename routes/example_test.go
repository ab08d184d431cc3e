package routes_test

import (
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ccmkit/ccmkit/routes"
)

// Diff plans the writes: a new Node's route is created, a removed Node's
// route and a blackhole are deleted, a foreign route outside the cluster
// CIDRs is left alone.
func ExampleDiff() {
	cluster := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	nodes := []*v1.Node{{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: "6b1e"},
		Spec:       v1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24"}},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.1"}}},
	}}
	desired, errs := routes.Desired("prod", nodes)
	listed := []routes.Route{
		{Name: "prod--5a3c-v4", TargetNode: "node-2", Destination: netip.MustParsePrefix("10.244.2.0/24")},
		{Name: "prod--77ee-v4", TargetNode: "node-3", Destination: netip.MustParsePrefix("10.244.3.0/24"), Blackhole: true},
		{Name: "vpn", TargetNode: "gateway", Destination: netip.MustParsePrefix("192.168.0.0/16")},
	}
	plan := routes.Diff(desired, listed, cluster)
	fmt.Println("errors:", len(errs))
	for _, r := range plan.Delete {
		fmt.Println("delete", r)
	}
	for _, r := range plan.Create {
		fmt.Println("create", r, "via", r.NextHop)
	}
	// Output:
	// errors: 0
	// delete prod--5a3c-v4 10.244.2.0/24->node-2
	// delete prod--77ee-v4 10.244.3.0/24->node-3
	// create prod--6b1e-v4 10.244.1.0/24->node-1 via 10.0.0.1
}
