package framework

import (
	"context"
	"errors"

	"github.com/spf13/pflag"

	"github.com/ccmkit/ccmkit/ipam/nodeipam"
)

// Names of ccmkit's node IPAM controller in --controllers.
const (
	// NodeIPAMControllerName is its canonical name, kube-controller-manager's.
	NodeIPAMControllerName = nodeipam.Name
	// NodeIPAMControllerAlias is its short name, kube-controller-manager's.
	NodeIPAMControllerAlias = nodeipam.Alias
)

// NodeIPAMController returns ccmkit's node IPAM controller
// (ipam/nodeipam) as a table entry: name "node-ipam-controller", alias
// "nodeipam", API client "node-controller" (kube-controller-manager's), its
// flags (--node-cidr-mask-size[-ipv4|-ipv6], --service-cluster-ip-range) in
// a section named after it, bound to f (nil: a new nodeipam.Flags). Every
// command has it.
//
// Its Check validates those flags with upstream's --allocate-node-cidrs,
// --cluster-cidr and --cidr-allocator-type before leader election
// (nodeipam.Flags.Options); it reports ErrNotStarted when
// --allocate-node-cidrs is false. CloudAllocator needs the provider's
// instances block (Builder.WithInstances).
func NodeIPAMController(f *nodeipam.Flags) Controller {
	if f == nil {
		f = &nodeipam.Flags{}
	}
	options := func(cfg *Config) (nodeipam.Options, error) {
		if cfg == nil || cfg.Upstream == nil {
			return nodeipam.Options{}, errors.New("node IPAM: no manager configuration")
		}
		shared := cfg.Upstream.ComponentConfig.KubeCloudShared
		hasInstances := cfg.provider != nil && cfg.provider.InstanceCache() != nil
		opts, enabled, err := f.Options(nodeipam.UpstreamFlags{
			AllocateNodeCIDRs: shared.AllocateNodeCIDRs,
			ClusterCIDR:       shared.ClusterCIDR,
			CIDRAllocatorType: shared.CIDRAllocatorType,
		}, hasInstances || cfg.provider == nil)
		if err != nil {
			return opts, err
		}
		if !enabled {
			return opts, NotStarted("--allocate-node-cidrs is false")
		}
		return opts, nil
	}
	return Controller{
		Name:       nodeipam.Name,
		Aliases:    []string{nodeipam.Alias},
		ClientName: nodeipam.ClientName,
		Flags:      func(fs *pflag.FlagSet) { f.AddFlags(fs) },
		Check: func(cfg *Config) error {
			_, err := options(cfg)
			return err
		},
		New: func(_ context.Context, cc ControllerContext) (Runnable, error) {
			opts, err := options(cc.Config)
			if err != nil {
				return nil, err
			}
			if opts.Allocator == nodeipam.CloudAllocator {
				if cc.Provider == nil || cc.Provider.InstanceCache() == nil {
					return nil, errors.New("node IPAM: --cidr-allocator-type=CloudAllocator takes pod CIDRs from the provider's instances block, which it does not have (Builder.WithInstances)")
				}
				opts.CloudCIDRs, err = nodeipam.InstanceCIDRs(cc.Provider.InstanceCache(), cc.Provider.ProviderName())
				if err != nil {
					return nil, err
				}
			}
			c, err := nodeipam.New(cc.Client, cc.Informers.Core().V1().Nodes(), opts)
			if err != nil {
				return nil, err
			}
			return c, nil
		},
	}
}
