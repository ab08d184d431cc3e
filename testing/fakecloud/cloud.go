package fakecloud

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
)

// Operation names, for Inject, Count and the call log.
const (
	OpGetInstance   = "GetInstance"
	OpListInstances = "ListInstances"
)

// Options configures a Cloud. The zero value means defaults.
type Options struct {
	// Seed seeds fault decisions (default 1).
	Seed uint64
	// Clock is the time source for latency (default the real clock, which
	// is simulated inside a testing/synctest bubble).
	Clock clock.Clock
}

// Cloud is the in-memory cloud. It is safe for concurrent use.
type Cloud struct {
	faults *faults

	mu        sync.RWMutex
	instances map[string]*instances.Instance
	byName    map[string]string // node name -> instance ID
}

// New returns an empty Cloud.
func New(opts Options) *Cloud {
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Cloud{
		faults:    newFaults(opts.Clock, opts.Seed),
		instances: map[string]*instances.Instance{},
		byName:    map[string]string{},
	}
}

// Inject adds a fault to operation op (one of the Op constants). Faults are
// tried in the order added; the first applicable one wins. The returned
// function removes the fault.
func (c *Cloud) Inject(op string, f Fault) (remove func()) { return c.faults.inject(op, f) }

// Calls returns a copy of the call log, oldest first.
func (c *Cloud) Calls() []Call {
	c.faults.mu.Lock()
	defer c.faults.mu.Unlock()
	return slices.Clone(c.faults.log)
}

// Count returns how many calls of op the cloud has received, failed ones
// included.
func (c *Cloud) Count(op string) int {
	c.faults.mu.Lock()
	defer c.faults.mu.Unlock()
	return c.faults.counts[op]
}

// TotalCalls returns how many calls the cloud has received.
func (c *Cloud) TotalCalls() int {
	c.faults.mu.Lock()
	defer c.faults.mu.Unlock()
	return len(c.faults.log)
}

// ResetCalls clears the call log and counters.
func (c *Cloud) ResetCalls() {
	c.faults.mu.Lock()
	defer c.faults.mu.Unlock()
	c.faults.log = nil
	c.faults.counts = map[string]int{}
}

// AddInstance stores a copy of inst. It returns an error for an empty ID, an
// invalid state, or an ID or node name already in use.
func (c *Cloud) AddInstance(inst instances.Instance) error {
	if inst.ID == "" {
		return fmt.Errorf("fakecloud: instance without ID")
	}
	if inst.State < instances.StatePending || inst.State > instances.StateTerminated {
		return fmt.Errorf("fakecloud: instance %q: invalid state %v", inst.ID, inst.State)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.instances[inst.ID]; ok {
		return fmt.Errorf("fakecloud: instance %q already exists", inst.ID)
	}
	if other, ok := c.byName[inst.NodeName]; ok && inst.NodeName != "" {
		return fmt.Errorf("fakecloud: node name %q already used by instance %q", inst.NodeName, other)
	}
	c.instances[inst.ID] = copyInstance(&inst)
	if inst.NodeName != "" {
		c.byName[inst.NodeName] = inst.ID
	}
	return nil
}

// SetInstanceState changes an instance's state, as the cloud would on stop,
// start or termination. It returns an error wrapping cloudcall.ErrNotFound
// for an unknown ID.
func (c *Cloud) SetInstanceState(id string, s instances.State) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inst, ok := c.instances[id]
	if !ok {
		return cloudcall.NotFoundf("fakecloud: instance %q", id)
	}
	next := copyInstance(inst)
	next.State = s
	c.instances[id] = next
	return nil
}

// RemoveInstance forgets an instance entirely, as a cloud does some time
// after termination. Removing an unknown ID does nothing.
func (c *Cloud) RemoveInstance(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if inst, ok := c.instances[id]; ok {
		delete(c.byName, inst.NodeName)
		delete(c.instances, id)
	}
}

// Instances returns the cloud's instance backend.
func (c *Cloud) Instances() *InstanceBackend { return &InstanceBackend{c: c} }

// InstanceBackend implements instances.Source and instances.Lister over the
// Cloud. It is safe for concurrent use.
type InstanceBackend struct{ c *Cloud }

var (
	_ instances.Source = (*InstanceBackend)(nil)
	_ instances.Lister = (*InstanceBackend)(nil)
)

// Lookup implements instances.Source: by ID when key.ID is set, otherwise by
// node name. A missing instance is an error wrapping cloudcall.ErrNotFound.
func (b *InstanceBackend) Lookup(ctx context.Context, key instances.Key) (*instances.Instance, error) {
	if err := b.c.faults.before(ctx, OpGetInstance, key.String()); err != nil {
		return nil, err
	}
	b.c.mu.RLock()
	id := key.ID
	if id == "" {
		id = b.c.byName[key.NodeName]
	}
	inst, ok := b.c.instances[id]
	b.c.mu.RUnlock()
	if !ok {
		err := cloudcall.NotFoundf("fakecloud: instance %s", key)
		b.c.faults.record(OpGetInstance, key.String(), err)
		return nil, err
	}
	b.c.faults.record(OpGetInstance, key.String(), nil)
	return copyInstance(inst), nil
}

// List implements instances.Lister: every instance, terminated ones
// included, sorted by ID.
func (b *InstanceBackend) List(ctx context.Context) ([]*instances.Instance, error) {
	if err := b.c.faults.before(ctx, OpListInstances, ""); err != nil {
		return nil, err
	}
	b.c.mu.RLock()
	out := make([]*instances.Instance, 0, len(b.c.instances))
	for _, inst := range b.c.instances {
		out = append(out, copyInstance(inst))
	}
	b.c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	b.c.faults.record(OpListInstances, "", nil)
	return out, nil
}

func copyInstance(in *instances.Instance) *instances.Instance {
	out := *in
	out.Addresses = slices.Clone(in.Addresses)
	out.PodCIDRs = slices.Clone(in.PodCIDRs)
	if in.Labels != nil {
		out.Labels = make(map[string]string, len(in.Labels))
		for k, v := range in.Labels {
			out.Labels[k] = v
		}
	}
	return &out
}

// NewInstance returns a running instance with conventional test values:
// node name, internal address, type "fake.small", zone "zone-a", region
// "region-1".
func NewInstance(id, nodeName, internalIP string) instances.Instance {
	return instances.Instance{
		ID:        id,
		NodeName:  nodeName,
		Type:      "fake.small",
		Zone:      "zone-a",
		Region:    "region-1",
		State:     instances.StateRunning,
		Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: internalIP}, {Type: v1.NodeHostName, Address: nodeName}},
	}
}
