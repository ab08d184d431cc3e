package routes_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/routes"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

func upstreamRoute(node string, i int) *cloudprovider.Route {
	return &cloudprovider.Route{
		TargetNode:          types.NodeName(node),
		DestinationCIDR:     fmt.Sprintf("10.244.%d.0/24", i),
		TargetNodeAddresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: fmt.Sprintf("10.0.%d.%d", i>>8, i&255)}},
	}
}

// createAll runs n concurrent CreateRoute calls, as upstream's route
// controller does, and returns each one's error.
func createAll(a *routes.Adapter, n int, route func(i int) *cloudprovider.Route) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = a.CreateRoute(context.Background(), "c", fmt.Sprintf("uid-%d", i), route(i)) })
	}
	wg.Wait()
	return errs
}

func TestBatcherCoalescesAndKeepsResultsPerCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		table := cloud.NewRouteTable(fakecloud.RouteTableOptions{MaxBatchSize: 1000})
		// Route 77's destination is taken by a foreign route: only its
		// caller fails.
		if err := table.AddForeign(routes.Route{Name: "vpn", TargetNode: "gw", Destination: netip.MustParsePrefix("10.244.77.0/24")}); err != nil {
			t.Fatal(err)
		}
		a, err := routes.NewAdapter(table.Batch(), routes.Options{})
		if err != nil {
			t.Fatal(err)
		}
		errs := createAll(a, 150, func(i int) *cloudprovider.Route { return upstreamRoute(fmt.Sprintf("n%d", i), i) })
		for i, err := range errs {
			if (err != nil) != (i == 77) {
				t.Errorf("caller %d: error %v", i, err)
			}
		}
		if !errors.Is(errs[77], cloudcall.ErrPermanent) {
			t.Errorf("caller 77: %v, want the cloud's permanent error", errs[77])
		}
		if got := table.Len(); got != 150 {
			t.Errorf("table holds %d routes, want 150 (149 and the foreign one)", got)
		}
		// One batch, then halves down to the bad route: about 2*log2(150).
		if n := cloud.Count(fakecloud.OpApplyRoutes); n > 17 {
			t.Errorf("%d Apply calls for 150 creates with one bad route, want at most 17", n)
		}
	})
}

func TestBatcherHonoursMaxBatchSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		table := cloud.NewRouteTable(fakecloud.RouteTableOptions{MaxBatchSize: 10})
		a, err := routes.NewAdapter(table.Batch(), routes.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i, err := range createAll(a, 35, func(i int) *cloudprovider.Route { return upstreamRoute(fmt.Sprintf("n%d", i), i) }) {
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
		}
		if n := cloud.Count(fakecloud.OpApplyRoutes); n != 4 {
			t.Errorf("%d Apply calls for 35 creates of at most 10, want 4", n)
		}
	})
}

func TestAdapterShortCircuitsAFullTable(t *testing.T) {
	cloud := fakecloud.New(fakecloud.Options{})
	table := cloud.NewRouteTable(fakecloud.RouteTableOptions{Limit: 2})
	a, err := routes.NewAdapter(table.PerRoute(), routes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	create := func(i int) error {
		return a.CreateRoute(ctx, "c", fmt.Sprintf("uid-%d", i), upstreamRoute(fmt.Sprintf("n%d", i), i))
	}
	for i := range 2 {
		if err := create(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := create(2); !errors.Is(err, routes.ErrTableFull) {
		t.Fatalf("create past the limit: %v, want ErrTableFull", err)
	}
	calls := cloud.Count(fakecloud.OpCreateRoute)
	var tf *routes.TableFullError
	if err := create(3); !errors.As(err, &tf) || tf.Limit != 2 {
		t.Fatalf("create into a full table: %v, want a TableFullError naming the limit", err)
	}
	if got := cloud.Count(fakecloud.OpCreateRoute); got != calls {
		t.Errorf("a create the table cannot take reached the cloud")
	}
	listed, err := a.ListRoutes(ctx, "c")
	if err != nil || len(listed) != 2 {
		t.Fatalf("ListRoutes: %d routes, %v", len(listed), err)
	}
	if err := a.DeleteRoute(ctx, "c", listed[0]); err != nil {
		t.Fatal(err)
	}
	if err := create(3); err != nil {
		t.Errorf("create after a delete made room: %v", err)
	}
}

func TestAdapterRejectsBadInput(t *testing.T) {
	a, err := routes.NewAdapter(fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{}).PerRoute(), routes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for name, err := range map[string]error{
		"bad CIDR":    a.CreateRoute(ctx, "c", "h", &cloudprovider.Route{TargetNode: "n", DestinationCIDR: "10.0.0.0/33"}),
		"no target":   a.CreateRoute(ctx, "c", "h", &cloudprovider.Route{DestinationCIDR: "10.0.0.0/24"}),
		"nil route":   a.CreateRoute(ctx, "c", "h", nil),
		"delete junk": a.DeleteRoute(ctx, "c", &cloudprovider.Route{Name: "x", DestinationCIDR: "junk"}),
	} {
		if !errors.Is(err, routes.ErrInvalidRoute) {
			t.Errorf("%s: %v, want ErrInvalidRoute", name, err)
		}
	}
	if _, err := routes.NewAdapter(nil, routes.Options{}); err == nil {
		t.Error("NewAdapter(nil) succeeded")
	}
	if _, err := routes.NewAdapter(fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{}).PerRoute(), routes.Options{Limit: -1}); err == nil {
		t.Error("a negative Limit is accepted")
	}
}

func TestNewControllerValidates(t *testing.T) {
	client := fake.NewSimpleClientset()
	nodes := informers.NewSharedInformerFactory(client, 0).Core().V1().Nodes()
	backend := fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{}).PerRoute()
	for name, cfg := range map[string]routes.ControllerConfig{
		"no CIDRs":       {ClusterName: "c"},
		"two IPv4 CIDRs": {ClusterName: "c", ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("10.1.0.0/16")}},
		"invalid CIDR":   {ClusterName: "c", ClusterCIDRs: []netip.Prefix{{}}},
	} {
		if _, err := routes.NewController(backend, client, nodes, cfg, routes.Options{}); err == nil {
			t.Errorf("%s: NewController succeeded", name)
		}
	}
}
