package nodeipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"

	"github.com/ccmkit/ccmkit/ipam"
)

// Values of --cidr-allocator-type the controller accepts.
const (
	// RangeAllocator (upstream's default) allocates Node CIDRs from
	// --cluster-cidr, which it requires.
	RangeAllocator = "RangeAllocator"
	// CloudAllocator copies the pod CIDRs the cloud reports for a Node's
	// instance (instances.Instance.PodCIDRs, see [InstanceCIDRs]). It does
	// not need --cluster-cidr: when set, it bounds the cloud's CIDRs and
	// orders their families.
	CloudAllocator = "CloudAllocator"
)

// UpstreamFlags are the node IPAM values of flags that k8s.io/cloud-provider
// owns, read from the manager's configuration (KubeCloudShared).
type UpstreamFlags struct {
	// AllocateNodeCIDRs is --allocate-node-cidrs: false means the
	// controller does not run.
	AllocateNodeCIDRs bool
	// ClusterCIDR is --cluster-cidr: one CIDR, or an IPv4 and an IPv6 CIDR
	// comma-separated. Required by RangeAllocator, optional for
	// CloudAllocator.
	ClusterCIDR string
	// CIDRAllocatorType is --cidr-allocator-type: RangeAllocator (also
	// when empty) or CloudAllocator.
	CIDRAllocatorType string
}

// Flags holds the node IPAM flags that k8s.io/cloud-provider's options
// lack, with kube-controller-manager's names, defaults and meaning. The
// zero value means defaults. It is not safe for concurrent use: bind it
// with AddFlags, parse, then call Options.
type Flags struct {
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

// FlagNames returns the names of the flags AddFlags adds, in a new slice.
func FlagNames() []string {
	return []string{"service-cluster-ip-range", "node-cidr-mask-size", "node-cidr-mask-size-ipv4", "node-cidr-mask-size-ipv6"}
}

// AddFlags adds the flags to fs, bound to f, with kube-controller-manager's
// names and help. A flag of that name already in fs makes pflag panic, as
// for any duplicate flag: check FlagNames first when fs holds others'.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.ServiceClusterIPRange, "service-cluster-ip-range", f.ServiceClusterIPRange,
		"CIDR Range for Services in cluster. Requires --allocate-node-cidrs to be true")
	fs.Int32Var(&f.NodeCIDRMaskSize, "node-cidr-mask-size", f.NodeCIDRMaskSize,
		"Mask size for node cidr in cluster. Default is 24 for IPv4 and 64 for IPv6.")
	fs.Int32Var(&f.NodeCIDRMaskSizeIPv4, "node-cidr-mask-size-ipv4", f.NodeCIDRMaskSizeIPv4,
		"Mask size for IPv4 node cidr in dual-stack cluster. Default is 24.")
	fs.Int32Var(&f.NodeCIDRMaskSizeIPv6, "node-cidr-mask-size-ipv6", f.NodeCIDRMaskSizeIPv6,
		"Mask size for IPv6 node cidr in dual-stack cluster. Default is 64.")
}

// Options validates the flags together with upstream's and returns the
// controller's options. It is pure (it reads nothing but its arguments),
// so a command calls it before leader election: every problem it reports
// would otherwise stop the controller when it starts.
//
// enabled is false, with no error and no check of the other flags, when
// --allocate-node-cidrs is false: the controller is not started, as in
// kube-controller-manager.
//
// hasInstances says whether the provider has an instances block: for
// --cidr-allocator-type=CloudAllocator it is required, and the returned
// options have Allocator CloudAllocator but no CloudCIDRs; set them (see
// [InstanceCIDRs]) before [New], which otherwise reports it.
//
// The error wraps [ipam.ErrInvalid] and names the flag at fault, joining
// every problem: an unknown --cidr-allocator-type, RangeAllocator without
// --cluster-cidr, CloudAllocator without an instances block, a malformed
// --cluster-cidr or --service-cluster-ip-range (host bits, a /33, two of
// one family, more than two), a mask size that is negative, longer than
// the address or shorter than its cluster CIDR, cuts it into more than
// [ipam.MaxSetSize] subnets, or breaks kube-controller-manager's rules
// (--node-cidr-mask-size not with a dual-stack --cluster-cidr nor with the
// per-family sizes; a per-family size not with a single-stack cluster of
// the other family).
func (f *Flags) Options(up UpstreamFlags, hasInstances bool) (opts Options, enabled bool, err error) {
	if !up.AllocateNodeCIDRs {
		return Options{}, false, nil
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("node IPAM: "+format+": %w", append(args, ipam.ErrInvalid)...))
	}
	clusterCIDR := strings.TrimSpace(up.ClusterCIDR)
	switch up.CIDRAllocatorType {
	case RangeAllocator, "":
		opts.Allocator = RangeAllocator
		if clusterCIDR == "" {
			bad("--allocate-node-cidrs with --cidr-allocator-type=%s requires --cluster-cidr (%s does not)", RangeAllocator, CloudAllocator)
		}
	case CloudAllocator:
		opts.Allocator = CloudAllocator
		if !hasInstances {
			bad("--cidr-allocator-type=%s takes pod CIDRs from the provider's instances block, which it does not have", CloudAllocator)
		}
	default:
		bad("unknown --cidr-allocator-type %q: want %s or %s", up.CIDRAllocatorType, RangeAllocator, CloudAllocator)
	}
	if clusterCIDR != "" {
		cidrs, err := parseFamilies("--cluster-cidr", clusterCIDR)
		if err != nil {
			errs = append(errs, err)
		} else {
			opts.ClusterCIDRs = cidrs
		}
	}
	if s := strings.TrimSpace(f.ServiceClusterIPRange); s != "" {
		cidrs, err := parseFamilies("--service-cluster-ip-range", s)
		if err != nil {
			errs = append(errs, err)
		} else {
			opts.ServiceCIDRs = cidrs
		}
	}
	if err := f.masks(&opts); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Options{}, false, errors.Join(errs...)
	}
	// Anything else New would reject (nothing, if the checks above are
	// complete), reported now rather than at start.
	check := opts
	if check.Allocator == CloudAllocator {
		check.Allocator = "" // CloudCIDRs are set by the caller
		check.CloudCIDRs = func(context.Context, *v1.Node) ([]netip.Prefix, error) { return nil, nil }
	}
	if _, err := checkOptions(check); err != nil {
		return Options{}, false, fmt.Errorf("node IPAM flags: %w", err)
	}
	return opts, true, nil
}

// parseFamilies parses flag's value: one CIDR, or one per family.
func parseFamilies(flag, s string) ([]netip.Prefix, error) {
	cidrs, err := ipam.ParseCIDRs(s)
	if err != nil {
		return nil, fmt.Errorf("node IPAM: %s: %w", flag, err)
	}
	switch {
	case len(cidrs) > 2:
		return nil, fmt.Errorf("node IPAM: %s %q: at most two CIDRs, one per IP family: %w", flag, s, ipam.ErrInvalid)
	case len(cidrs) == 2 && cidrs[0].Addr().Is4() == cidrs[1].Addr().Is4():
		return nil, fmt.Errorf("node IPAM: %s %q: %s and %s are both %s: at most one per family (dual-stack is one IPv4 and one IPv6): %w",
			flag, s, cidrs[0], cidrs[1], familyName(cidrs[0].Addr()), ipam.ErrInvalid)
	}
	return cidrs, nil
}

// masks applies kube-controller-manager's rules (setNodeCIDRMaskSizes) to
// the mask-size flags, checks each size against its cluster CIDR, and sets
// opts' sizes (0 for the default).
func (f *Flags) masks(opts *Options) error {
	all, m4, m6 := int(f.NodeCIDRMaskSize), int(f.NodeCIDRMaskSizeIPv4), int(f.NodeCIDRMaskSizeIPv6)
	var errs []error
	for i, v := range []int{all, m4, m6} {
		if v < 0 {
			name := []string{"--node-cidr-mask-size", "--node-cidr-mask-size-ipv4", "--node-cidr-mask-size-ipv6"}[i]
			errs = append(errs, fmt.Errorf("node IPAM: %s=%d is negative: %w", name, v, ipam.ErrInvalid))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	clusters := opts.ClusterCIDRs
	// flag4 and flag6 name the flag each family's size comes from.
	flag4, flag6 := "--node-cidr-mask-size-ipv4", "--node-cidr-mask-size-ipv6"
	switch {
	case len(clusters) == 0:
		if all != 0 || m4 != 0 || m6 != 0 {
			return fmt.Errorf("node IPAM: the node mask sizes need --cluster-cidr (with %s the cloud chooses the sizes): %w", CloudAllocator, ipam.ErrInvalid)
		}
		return nil
	case len(clusters) > 1:
		if all != 0 {
			return fmt.Errorf("node IPAM: --node-cidr-mask-size is not allowed with a dual-stack --cluster-cidr; use --node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6: %w", ipam.ErrInvalid)
		}
	default:
		is6 := clusters[0].Addr().Is6()
		switch {
		case all != 0 && (m4 != 0 || m6 != 0):
			return fmt.Errorf("node IPAM: --node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6 are not allowed with --node-cidr-mask-size: %w", ipam.ErrInvalid)
		case all != 0 && is6:
			m6, flag6 = all, "--node-cidr-mask-size"
		case all != 0:
			m4, flag4 = all, "--node-cidr-mask-size"
		case m4 != 0 && is6:
			return fmt.Errorf("node IPAM: --node-cidr-mask-size-ipv4 is not allowed with a single-stack IPv6 --cluster-cidr: %w", ipam.ErrInvalid)
		case m6 != 0 && !is6:
			return fmt.Errorf("node IPAM: --node-cidr-mask-size-ipv6 is not allowed with a single-stack IPv4 --cluster-cidr: %w", ipam.ErrInvalid)
		}
	}
	for _, cl := range clusters {
		size, flag, def := m4, flag4, DefaultMaskSizeIPv4
		if cl.Addr().Is6() {
			size, flag, def = m6, flag6, DefaultMaskSizeIPv6
		}
		shown := fmt.Sprintf("%s=%d", flag, size)
		if size == 0 {
			size, shown = def, fmt.Sprintf("the default %s node mask size /%d (%s)", familyName(cl.Addr()), def, flag)
		}
		switch {
		case size > cl.Addr().BitLen():
			errs = append(errs, fmt.Errorf("node IPAM: %s is longer than an %s address (%d bits): %w", shown, familyName(cl.Addr()), cl.Addr().BitLen(), ipam.ErrInvalid))
		case size < cl.Bits():
			errs = append(errs, fmt.Errorf("node IPAM: %s is shorter than --cluster-cidr %s: a Node's CIDR cannot be larger than the cluster's: %w", shown, cl, ipam.ErrInvalid))
		case size-cl.Bits() > 48:
			errs = append(errs, fmt.Errorf("node IPAM: %s cuts --cluster-cidr %s into 2^%d subnets, more than the limit of 2^48; use a longer cluster prefix or a shorter mask size: %w",
				shown, cl, size-cl.Bits(), ipam.ErrInvalid))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	opts.MaskSizeIPv4, opts.MaskSizeIPv6 = m4, m6
	return nil
}
