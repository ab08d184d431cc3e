package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
	"github.com/ccmkit/ccmkit/routes"
)

// Routes is the routes block's backend over the local cloud's route table:
// routes are tagged with the cluster name and store the Node addresses
// they were created from. It is safe for concurrent use.
type Routes struct{ Client *cloud.Client }

var _ routes.Backend = (*Routes)(nil)

// List returns the routes tagged with cluster.
func (b *Routes) List(ctx context.Context, cluster string) ([]routes.Route, error) {
	list, err := b.Client.ListRoutes(ctx, cluster)
	if err != nil {
		return nil, classify(err)
	}
	out := make([]routes.Route, 0, len(list))
	for _, r := range list {
		if r.Cluster != cluster {
			continue
		}
		dst, err := netip.ParsePrefix(r.Destination)
		if err != nil {
			return nil, cloudcall.Permanent(fmt.Errorf("route %s: destination: %w", r.Name, err))
		}
		rt := routes.Route{Name: r.Name, TargetNode: types.NodeName(r.Target), Destination: dst, AddressesStored: true}
		if r.NextHop != "" {
			rt.NextHop, _ = netip.ParseAddr(r.NextHop)
		}
		for _, a := range r.NodeAddresses {
			rt.NodeAddresses = append(rt.NodeAddresses, v1.NodeAddress{Type: v1.NodeAddressType(a.Type), Address: a.Address})
		}
		out = append(out, rt)
	}
	return out, nil
}

// Create adds r tagged with cluster. A full table is routes.TableFull.
func (b *Routes) Create(ctx context.Context, cluster string, r routes.Route) error {
	cr := &cloud.Route{Name: r.Name, Cluster: cluster, Destination: r.Destination.String(), Target: string(r.TargetNode)}
	if r.NextHop.IsValid() {
		cr.NextHop = r.NextHop.String()
	}
	for _, a := range r.NodeAddresses {
		cr.NodeAddresses = append(cr.NodeAddresses, cloud.Address{Type: string(a.Type), Address: a.Address})
	}
	err := b.Client.PutRoute(ctx, cr)
	var ae *cloud.APIError
	if errors.As(err, &ae) && ae.Code == cloud.CodeTableFull {
		return routes.TableFull(ae.Limit, err)
	}
	return classify(err)
}

// Delete removes r; a route already gone is not an error.
func (b *Routes) Delete(ctx context.Context, _ string, r routes.Route) error {
	err := b.Client.DeleteRoute(ctx, r.Name)
	if cloud.IsNotFound(err) {
		return nil
	}
	return classify(err)
}
