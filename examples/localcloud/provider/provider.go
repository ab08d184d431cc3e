package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/routes"
)

// Name is the provider's name: --cloud-provider and the providerID scheme
// (localcloud://<instance-id>).
const Name = "localcloud"

// New builds the provider from the command's completed configuration: the
// --cloud-config file (Config) is parsed, the credentials are checked
// against the cloud, and the blocks are composed with the Builder. It is
// framework.CommandOptions.NewProvider.
func New(ctx context.Context, cfg *framework.Config) (*framework.Provider, error) {
	if cfg.CloudConfig == nil {
		return nil, errors.New("--cloud-config is required: a JSON file with endpoint and token (see go doc github.com/ccmkit/ccmkit/examples/localcloud/provider.Config)")
	}
	cc, err := ParseConfig(cfg.CloudConfig)
	if err != nil {
		return nil, fmt.Errorf("--cloud-config %s: %w", cfg.CloudConfigFile, err)
	}
	return Build(ctx, cc)
}

// Build checks cc against the cloud (its token, its address range and
// route limit) and returns the provider: instances (listed in one call),
// load balancers with an address pool, and routes through ccmkit's route
// controller.
func Build(ctx context.Context, cc *Config) (*framework.Provider, error) {
	client := cloud.NewClient(cc.Endpoint, cloud.ClientOptions{Token: cc.Token, Timeout: cc.timeout})
	ctx, cancel := context.WithTimeout(ctx, cc.timeout)
	defer cancel()
	info, err := client.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("checking the credentials against %s: %w", cc.Endpoint, err)
	}
	ranges := cc.ranges
	if len(ranges) == 0 {
		p, err := netip.ParsePrefix(info.AddressRange)
		if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
			return nil, fmt.Errorf("the cloud at %s reports the address range %q: set loadBalancerAddresses in --cloud-config", cc.Endpoint, info.AddressRange)
		}
		ranges = []ipam.Range{{First: p.Addr().Next(), Last: lastOf(p).Prev()}}
	}
	pools, err := ipam.NewLBAllocator(ipam.Pool{Name: "default", Ranges: ranges})
	if err != nil {
		return nil, fmt.Errorf("loadBalancerAddresses: %w", err)
	}
	return framework.NewBuilder(Name).
		WithInstances(&Instances{Client: client}, instances.CacheOptions{}).
		WithLoadBalancers(&LoadBalancers{Client: client}, lb.Options{
			Annotations:  Annotations,
			Pools:        pools,
			PollInterval: cc.poll,
		}).
		WithRoutes(&Routes{Client: client}, routes.Options{Limit: info.MaxRoutes}).
		Build()
}

// lastOf returns the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	for i := 3; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		a[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	return netip.AddrFrom4(a)
}
