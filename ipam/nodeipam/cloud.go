package nodeipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"

	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/ipam"
)

// InstanceCIDRs returns the CloudCIDRsFunc of cloud mode
// (--cidr-allocator-type=CloudAllocator): the pod CIDRs of a Node's
// instance (instances.Instance.PodCIDRs), looked up in cache by the Node's
// providerID, or its name while it has none (see instances.KeyForNode with
// provider, the provider's name).
//
// The returned function is safe for concurrent use. It returns the
// cache's errors (a missing instance wraps cloudcall.ErrNotFound), the
// errors of instances.KeyForNode, and one wrapping [ipam.ErrInvalid] for a
// malformed pod CIDR of the instance; the controller retries the Node with
// backoff on any of them. InstanceCIDRs itself returns an error wrapping
// [ipam.ErrInvalid] for a nil cache or an empty provider name.
func InstanceCIDRs(cache *instances.Cache, provider string) (CloudCIDRsFunc, error) {
	var errs []error
	if cache == nil {
		errs = append(errs, fmt.Errorf("nodeipam: InstanceCIDRs: nil instance cache: %w", ipam.ErrInvalid))
	}
	if provider == "" {
		errs = append(errs, fmt.Errorf("nodeipam: InstanceCIDRs: empty provider name: %w", ipam.ErrInvalid))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return func(ctx context.Context, node *v1.Node) ([]netip.Prefix, error) {
		key, err := instances.KeyForNode(provider, node)
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
	}, nil
}
