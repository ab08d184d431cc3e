package instances

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
)

// InstancesV2 adapts a Cache to cloudprovider.InstancesV2. It is safe for
// concurrent use.
type InstancesV2 struct {
	cache    *Cache
	provider string
}

var _ cloudprovider.InstancesV2 = (*InstancesV2)(nil)

// NewInstancesV2 returns the adapter; provider is the provider name, the
// scheme of spec.providerID.
func NewInstancesV2(cache *Cache, provider string) *InstancesV2 {
	return &InstancesV2{cache: cache, provider: provider}
}

// KeyForNode returns the lookup key of node: its providerID's instance ID
// when set (authoritative), and its name. It returns an error wrapping
// ErrInvalidNode or ErrInvalidProviderID for a nil node, a node with neither
// name nor providerID, or a malformed providerID.
func KeyForNode(provider string, node *v1.Node) (Key, error) {
	if node == nil {
		return Key{}, fmt.Errorf("%w: nil node", ErrInvalidNode)
	}
	key := Key{NodeName: node.Name}
	if node.Spec.ProviderID != "" {
		id, err := ParseProviderID(provider, node.Spec.ProviderID)
		if err != nil {
			return Key{}, fmt.Errorf("node %q: %w", node.Name, err)
		}
		key.ID = id
	}
	if key.ID == "" && key.NodeName == "" {
		return Key{}, fmt.Errorf("%w: node has neither name nor providerID", ErrInvalidNode)
	}
	return key, nil
}

// InstanceExists returns (false, nil) when node's instance is missing or
// terminated, so that the node lifecycle controller deletes the Node;
// (true, nil) otherwise. A "missing" answer deletes the Node, so it is never
// taken from memory: the cache's negative entry (which may predate the
// instance: a lookup during the cloud's read lag after its creation) is
// dropped and the instance looked up again first. Errors: an invalid node or
// providerID, or a failed cloud lookup (the controller then retries on its
// next pass).
func (a *InstancesV2) InstanceExists(ctx context.Context, node *v1.Node) (bool, error) {
	key, err := KeyForNode(a.provider, node)
	if err != nil {
		return false, err
	}
	inst, err := a.cache.Get(ctx, key)
	if isNotFound(err) {
		a.cache.Forget(key)
		inst, err = a.cache.Get(ctx, key)
	}
	switch {
	case isNotFound(err):
		if lag := a.cache.opts.ReadLag; lag > 0 {
			// The API server stores creationTimestamp in whole seconds:
			// the Node may be up to a second younger than it says.
			if age := a.cache.clock.Since(node.CreationTimestamp.Time); age < lag+time.Second {
				return false, fmt.Errorf("instance of node %q not found, but the node is %v old and the cloud's reads lag its writes by up to %v: not reporting it gone yet (%v)", node.Name, age.Round(time.Millisecond), lag, err)
			}
		}
		return false, nil
	case err != nil:
		return false, err
	}
	return inst.State != StateTerminated, nil
}

// InstanceShutdown returns true when node's instance is stopped. A missing or
// terminated instance is not shut down (InstanceExists reports it gone).
// Errors as InstanceExists.
func (a *InstancesV2) InstanceShutdown(ctx context.Context, node *v1.Node) (bool, error) {
	inst, err := a.get(ctx, node)
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return inst.State == StateStopped, nil
}

// InstanceMetadata returns node's providerID, instance type, addresses, zone,
// region and extra labels. It returns cloudprovider.InstanceNotFound,
// unwrapped, when the instance is missing or terminated, other errors as
// InstanceExists, and never (nil, nil).
func (a *InstancesV2) InstanceMetadata(ctx context.Context, node *v1.Node) (*cloudprovider.InstanceMetadata, error) {
	inst, err := a.get(ctx, node)
	switch {
	case isNotFound(err):
		return nil, cloudprovider.InstanceNotFound
	case err != nil:
		return nil, err
	case inst.State == StateTerminated:
		return nil, cloudprovider.InstanceNotFound
	}
	pid := inst.ProviderID
	if pid == "" {
		pid = FormatProviderID(a.provider, inst.ID)
	}
	md := &cloudprovider.InstanceMetadata{
		ProviderID:    pid,
		InstanceType:  inst.Type,
		NodeAddresses: append([]v1.NodeAddress(nil), inst.Addresses...),
		Zone:          inst.Zone,
		Region:        inst.Region,
	}
	if len(inst.Labels) > 0 {
		md.AdditionalLabels = make(map[string]string, len(inst.Labels))
		for k, v := range inst.Labels {
			md.AdditionalLabels[k] = v
		}
	}
	return md, nil
}

func (a *InstancesV2) get(ctx context.Context, node *v1.Node) (*Instance, error) {
	key, err := KeyForNode(a.provider, node)
	if err != nil {
		return nil, err
	}
	return a.cache.Get(ctx, key)
}
