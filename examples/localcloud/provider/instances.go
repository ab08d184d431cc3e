package provider

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
	"github.com/ccmkit/ccmkit/instances"
)

// Instances is the instances block's backend over the local cloud: an
// instances.Source and instances.Lister. It is safe for concurrent use.
type Instances struct{ Client *cloud.Client }

var (
	_ instances.Source = (*Instances)(nil)
	_ instances.Lister = (*Instances)(nil)
)

// Lookup finds the instance by ID when the key has one, else by node name.
func (b *Instances) Lookup(ctx context.Context, key instances.Key) (*instances.Instance, error) {
	if key.ID != "" {
		in, err := b.Client.GetInstance(ctx, key.ID)
		if err != nil {
			return nil, classify(err)
		}
		return toInstance(in), nil
	}
	list, err := b.Client.ListInstances(ctx, key.NodeName)
	if err != nil {
		return nil, classify(err)
	}
	var found *cloud.Instance
	for _, in := range list {
		if in.State == cloud.InstanceTerminated && found != nil {
			continue // a replacement runs the node
		}
		found = in
	}
	if found == nil {
		return nil, cloudcall.NotFoundf("no instance runs node %q", key.NodeName)
	}
	return toInstance(found), nil
}

// List returns every instance.
func (b *Instances) List(ctx context.Context) ([]*instances.Instance, error) {
	list, err := b.Client.ListInstances(ctx, "")
	if err != nil {
		return nil, classify(err)
	}
	out := make([]*instances.Instance, 0, len(list))
	for _, in := range list {
		out = append(out, toInstance(in))
	}
	return out, nil
}

func toInstance(in *cloud.Instance) *instances.Instance {
	state := instances.StateUnspecified
	switch in.State {
	case cloud.InstancePending:
		state = instances.StatePending
	case cloud.InstanceRunning:
		state = instances.StateRunning
	case cloud.InstanceStopped:
		state = instances.StateStopped
	case cloud.InstanceTerminated:
		state = instances.StateTerminated
	}
	out := &instances.Instance{
		ID:       in.ID,
		NodeName: in.Name,
		Type:     in.Type,
		Zone:     in.Zone,
		Region:   in.Region,
		State:    state,
		PodCIDRs: in.PodCIDRs,
		Labels:   in.Labels,
	}
	for _, a := range in.Addresses {
		out.Addresses = append(out.Addresses, v1.NodeAddress{Type: v1.NodeAddressType(a.Type), Address: a.Address})
	}
	return out
}

// InstanceOf returns the cloud instance for a Node of the example: what
// tests and the demo register before creating the Node.
func InstanceOf(id, nodeName, internalIP string) *cloud.Instance {
	return &cloud.Instance{
		ID:        id,
		Name:      nodeName,
		Type:      "local.small",
		Zone:      "local-a",
		Region:    "local",
		State:     cloud.InstanceRunning,
		Addresses: []cloud.Address{{Type: string(v1.NodeInternalIP), Address: internalIP}, {Type: string(v1.NodeHostName), Address: nodeName}},
	}
}

// ProviderID returns the providerID of instance id.
func ProviderID(id string) string { return fmt.Sprintf("%s://%s", Name, id) }
