package framework

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"

	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/ipam"
)

// Names of ccmkit's node IPAM controller in --controllers.
const (
	// NodeIPAMControllerName is its canonical name, kube-controller-manager's.
	NodeIPAMControllerName = "node-ipam-controller"
	// NodeIPAMControllerAlias is its short name, kube-controller-manager's.
	NodeIPAMControllerAlias = "nodeipam"
)

// Values of --cidr-allocator-type the node IPAM controller accepts.
const (
	// RangeAllocator (upstream's default) allocates Node CIDRs from
	// --cluster-cidr.
	RangeAllocator = "RangeAllocator"
	// CloudAllocator copies the pod CIDRs the instances block reports
	// (instances.Instance.PodCIDRs); --cluster-cidr, when set, bounds them.
	CloudAllocator = "CloudAllocator"
)

// NodeIPAMOptions holds the node IPAM flags that k8s.io/cloud-provider's
// options lack, with kube-controller-manager's names, defaults and meaning.
// --allocate-node-cidrs, --cluster-cidr and --cidr-allocator-type are
// upstream's and are read from the manager's completed configuration. The
// zero value means defaults. NewCommand binds one to the command's flags;
// it is read when the controller starts.
type NodeIPAMOptions struct {
	// NodeCIDRMaskSize is --node-cidr-mask-size: the Node CIDR prefix
	// length of a single-stack cluster (default 24 for IPv4, 64 for IPv6).
	// Not allowed with a dual-stack --cluster-cidr, nor with the per-family
	// sizes.
	NodeCIDRMaskSize int32
	// NodeCIDRMaskSizeIPv4 is --node-cidr-mask-size-ipv4 (default 24). Not
	// allowed with a single-stack IPv6 --cluster-cidr.
	NodeCIDRMaskSizeIPv4 int32
	// NodeCIDRMaskSizeIPv6 is --node-cidr-mask-size-ipv6 (default 64). Not
	// allowed with a single-stack IPv4 --cluster-cidr.
	NodeCIDRMaskSizeIPv6 int32
	// ServiceClusterIPRange is --service-cluster-ip-range: one CIDR, or two
	// of different families, comma-separated. Node CIDRs overlapping them
	// are never allocated.
	ServiceClusterIPRange string
}

// nodeIPAMFlagNames are the names of NodeIPAMOptions' flags.
var nodeIPAMFlagNames = []string{"service-cluster-ip-range", "node-cidr-mask-size", "node-cidr-mask-size-ipv4", "node-cidr-mask-size-ipv6"}

// Flags returns the options' flags, bound to o, in a section named
// "node-ipam-controller".
func (o *NodeIPAMOptions) Flags() cliflag.NamedFlagSets {
	var fss cliflag.NamedFlagSets
	fs := fss.FlagSet(NodeIPAMControllerName)
	fs.StringVar(&o.ServiceClusterIPRange, "service-cluster-ip-range", o.ServiceClusterIPRange,
		"CIDR Range for Services in cluster (one, or two of different IP families, comma-separated). Node CIDRs overlapping it are not allocated. Requires --allocate-node-cidrs to be true")
	fs.Int32Var(&o.NodeCIDRMaskSize, "node-cidr-mask-size", o.NodeCIDRMaskSize,
		"Mask size for node cidr in cluster. Default is 24 for IPv4 and 64 for IPv6.")
	fs.Int32Var(&o.NodeCIDRMaskSizeIPv4, "node-cidr-mask-size-ipv4", o.NodeCIDRMaskSizeIPv4,
		"Mask size for IPv4 node cidr in dual-stack cluster. Default is 24.")
	fs.Int32Var(&o.NodeCIDRMaskSizeIPv6, "node-cidr-mask-size-ipv6", o.NodeCIDRMaskSizeIPv6,
		"Mask size for IPv6 node cidr in dual-stack cluster. Default is 64.")
	return fss
}

// withNodeIPAMFlags returns o's flag section followed by the provider's
// sections. A provider flag named as one of o's is an error.
func withNodeIPAMFlags(provider cliflag.NamedFlagSets, o *NodeIPAMOptions) (cliflag.NamedFlagSets, error) {
	out := o.Flags()
	out.NormalizeNameFunc = provider.NormalizeNameFunc
	var errs []error
	for _, section := range provider.Order {
		fs := provider.FlagSets[section]
		if fs == nil {
			continue
		}
		for _, name := range nodeIPAMFlagNames {
			if fs.Lookup(name) != nil {
				errs = append(errs, fmt.Errorf("framework: provider flag --%s (section %q) is the node IPAM controller's", name, section))
			}
		}
		out.FlagSet(section).AddFlagSet(fs)
	}
	return out, errors.Join(errs...)
}

// NodeIPAMController returns ccmkit's node IPAM controller (name
// "node-ipam-controller", alias "nodeipam"; API client "node-controller",
// as kube-controller-manager's). NewCommand always registers it; o holds
// its flags (nil means defaults).
//
// Start does nothing but log when --allocate-node-cidrs is false. Otherwise
// it builds an ipam.NodeController from the completed configuration
// (--cluster-cidr, --cidr-allocator-type) and o, runs it until ctx ends, and
// returns. It returns an error, fatal to the manager, for an unknown
// --cidr-allocator-type, RangeAllocator without --cluster-cidr,
// CloudAllocator without the provider's instances block, and bad CIDRs or
// mask sizes (errors.Is ipam.ErrInvalid).
func NodeIPAMController(o *NodeIPAMOptions) Controller {
	if o == nil {
		o = &NodeIPAMOptions{}
	}
	return Controller{
		Name:       NodeIPAMControllerName,
		Aliases:    []string{NodeIPAMControllerAlias},
		ClientName: "node-controller",
		Start: func(ctx context.Context, cc ControllerContext) error {
			if cc.Config == nil {
				return errors.New("node IPAM: no manager configuration")
			}
			shared := cc.Config.ComponentConfig.KubeCloudShared
			if !shared.AllocateNodeCIDRs {
				klog.FromContext(ctx).Info("Not starting the node IPAM controller: --allocate-node-cidrs is false", "controller", NodeIPAMControllerName)
				return nil
			}
			opts, err := o.controllerOptions(shared.ClusterCIDR, shared.CIDRAllocatorType, cc.Provider)
			if err != nil {
				return fmt.Errorf("node IPAM: %w", err)
			}
			if cc.Client == nil || cc.Informers == nil {
				return errors.New("node IPAM: no API client or informers")
			}
			c, err := ipam.NewNodeController(cc.Client, cc.Informers.Core().V1().Nodes(), opts)
			if err != nil {
				return fmt.Errorf("node IPAM: %w", err)
			}
			go c.Run(ctx)
			return nil
		},
	}
}

// controllerOptions turns the flags into the controller's options, with
// kube-controller-manager's rules for the mask sizes.
func (o *NodeIPAMOptions) controllerOptions(clusterCIDR, allocatorType string, p *Provider) (ipam.NodeControllerOptions, error) {
	var opts ipam.NodeControllerOptions
	clusterCIDR = strings.TrimSpace(clusterCIDR)
	switch allocatorType {
	case RangeAllocator, "":
		if clusterCIDR == "" {
			return opts, fmt.Errorf("--allocate-node-cidrs with --cidr-allocator-type=%s requires --cluster-cidr", RangeAllocator)
		}
	case CloudAllocator:
		if p == nil || p.InstanceCache() == nil {
			return opts, fmt.Errorf("--cidr-allocator-type=%s takes pod CIDRs from the provider's instances block, which it does not have (Builder.WithInstances)", CloudAllocator)
		}
		opts.CloudCIDRs = instanceCIDRs(p)
	default:
		return opts, fmt.Errorf("unknown --cidr-allocator-type %q: want %s or %s", allocatorType, RangeAllocator, CloudAllocator)
	}
	if clusterCIDR != "" {
		cidrs, err := ipam.ParseCIDRs(clusterCIDR)
		if err != nil {
			return opts, fmt.Errorf("--cluster-cidr: %w", err)
		}
		opts.ClusterCIDRs = cidrs
	}
	if s := strings.TrimSpace(o.ServiceClusterIPRange); s != "" {
		cidrs, err := ipam.ParseCIDRs(s)
		if err != nil {
			return opts, fmt.Errorf("--service-cluster-ip-range: %w", err)
		}
		if len(cidrs) > 2 {
			return opts, fmt.Errorf("--service-cluster-ip-range %q: at most two CIDRs: %w", s, ipam.ErrInvalid)
		}
		opts.ServiceCIDRs = cidrs
	}
	v4, v6, err := o.maskSizes(opts.ClusterCIDRs)
	opts.MaskSizeIPv4, opts.MaskSizeIPv6 = v4, v6
	return opts, err
}

// maskSizes applies kube-controller-manager's rules (setNodeCIDRMaskSizes)
// and returns the mask sizes to set, 0 for the default.
func (o *NodeIPAMOptions) maskSizes(clusters []netip.Prefix) (v4, v6 int, err error) {
	all, m4, m6 := int(o.NodeCIDRMaskSize), int(o.NodeCIDRMaskSizeIPv4), int(o.NodeCIDRMaskSizeIPv6)
	switch {
	case len(clusters) == 0:
		return 0, 0, nil // cloud mode without --cluster-cidr: the cloud's sizes
	case len(clusters) > 1:
		if all != 0 {
			return 0, 0, fmt.Errorf("--node-cidr-mask-size is not allowed with a dual-stack --cluster-cidr; use --node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6: %w", ipam.ErrInvalid)
		}
		return m4, m6, nil
	}
	is6 := clusters[0].Addr().Is6()
	switch {
	case all != 0 && (m4 != 0 || m6 != 0):
		return 0, 0, fmt.Errorf("--node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6 are not allowed with --node-cidr-mask-size: %w", ipam.ErrInvalid)
	case all != 0 && is6:
		return 0, all, nil
	case all != 0:
		return all, 0, nil
	case m4 != 0 && is6:
		return 0, 0, fmt.Errorf("--node-cidr-mask-size-ipv4 is not allowed with a single-stack IPv6 --cluster-cidr: %w", ipam.ErrInvalid)
	case m6 != 0 && !is6:
		return 0, 0, fmt.Errorf("--node-cidr-mask-size-ipv6 is not allowed with a single-stack IPv4 --cluster-cidr: %w", ipam.ErrInvalid)
	}
	return m4, m6, nil
}

// instanceCIDRs returns the pod CIDRs of a Node's instance, from p's
// instance cache.
func instanceCIDRs(p *Provider) ipam.CloudCIDRsFunc {
	cache := p.InstanceCache()
	return func(ctx context.Context, node *v1.Node) ([]netip.Prefix, error) {
		key, err := instances.KeyForNode(p.name, node)
		if err != nil {
			return nil, err
		}
		inst, err := cache.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		out := make([]netip.Prefix, 0, len(inst.PodCIDRs))
		for _, s := range inst.PodCIDRs {
			c, err := ipam.ParseCIDR(s)
			if err != nil {
				return nil, fmt.Errorf("instance %q: pod CIDR: %w", inst.ID, err)
			}
			out = append(out, c)
		}
		return slices.Clip(out), nil
	}
}
