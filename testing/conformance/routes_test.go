package conformance_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/routes"
	"github.com/ccmkit/ccmkit/testing/conformance"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// routesFixture returns a fixture over a fresh fake route table holding a
// foreign route and another cluster's route.
func routesFixture(t *testing.T, opts fakecloud.RouteTableOptions, batch bool) conformance.RoutesFixture {
	t.Helper()
	cloud := fakecloud.New(fakecloud.Options{})
	table := cloud.NewRouteTable(opts)
	foreign := []routes.Route{
		{Name: "vpn", TargetNode: "gateway", Destination: netip.MustParsePrefix("192.168.0.0/16")},
		{Name: "other--uid-x-v4", TargetNode: "x", Destination: netip.MustParsePrefix("10.99.0.0/24")},
	}
	require.NoError(t, table.AddForeign(foreign[0]))
	require.NoError(t, table.Add("other", foreign[1]))
	var backend routes.Backend = table.PerRoute()
	ops := []fakecloud.Op{fakecloud.OpListRoutes, fakecloud.OpCreateRoute, fakecloud.OpDeleteRoute}
	if batch {
		backend = table.Batch()
		ops = []fakecloud.Op{fakecloud.OpListRoutes, fakecloud.OpApplyRoutes}
	}
	var removes []func()
	return conformance.RoutesFixture{
		Backend: backend,
		Cluster: "conformance",
		Foreign: foreign,
		Limit:   opts.Limit,
		FailNext: func(f conformance.SDKFailure) {
			for _, remove := range removes {
				remove()
			}
			removes = nil
			cause := fmt.Errorf("HTTP %d", f.StatusCode)
			fault := fakecloud.Fault{Times: 1}
			switch {
			case f.RetryAfter > 0:
				fault.Err, fault.RetryAfter = cause, f.RetryAfter
			case f.StatusCode >= 500:
				fault.Err = cloudcall.Transient(cause)
			default:
				fault.Err = cloudcall.Permanent(cause)
			}
			for _, op := range ops {
				removes = append(removes, cloud.Inject(op, fault))
			}
		},
	}
}

func TestFakeCloudRoutesConformance(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  fakecloud.RouteTableOptions
		batch bool
	}{
		{"per-route", fakecloud.RouteTableOptions{}, false},
		{"per-route-stored-addresses-limit", fakecloud.RouteTableOptions{StoreAddresses: true, Limit: 40}, false},
		{"batch", fakecloud.RouteTableOptions{MaxBatchSize: 10}, true},
		{"batch-stored-addresses-limit", fakecloud.RouteTableOptions{StoreAddresses: true, Limit: 30, MaxBatchSize: 100}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conformance.RunRoutes(t, func(t *testing.T) conformance.RoutesFixture { return routesFixture(t, tc.opts, tc.batch) })
		})
	}
}

func TestRoutesReportsViolations(t *testing.T) {
	// A backend that lists every route, foreign ones included, fails the
	// suite.
	err := conformance.TestRoutes(t.Context(), func() conformance.RoutesFixture {
		f := routesFixture(t, fakecloud.RouteTableOptions{}, false)
		f.Backend = listsForeign{f.Backend, f.Foreign}
		return f
	})
	require.ErrorContains(t, err, "foreign-routes-not-listed")
}

type listsForeign struct {
	routes.Backend
	foreign []routes.Route
}

func (b listsForeign) List(ctx context.Context, cluster string) ([]routes.Route, error) {
	list, err := b.Backend.List(ctx, cluster)
	return append(list, b.foreign...), err
}
