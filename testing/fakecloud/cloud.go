package fakecloud

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
)

// Operation names of the instance backend, for Inject, SetLatency, Count and
// the call log.
const (
	OpGetInstance   Op = "GetInstance"
	OpListInstances Op = "ListInstances"
)

// Options configures a Cloud. The zero value means defaults.
type Options struct {
	// Seed seeds fault decisions (default 1).
	Seed uint64
	// Clock is the time source for latency, read lag and the call log
	// (default the real clock, which is simulated inside a testing/synctest
	// bubble).
	Clock clock.Clock
	// Latency is the baseline latency of every operation (default none);
	// SetLatency overrides it per operation. Faults' latencies add to it.
	Latency time.Duration
	// ReadLag makes the cloud eventually consistent: a write (AddInstance,
	// SetInstanceState, RemoveInstance) is durable at once, but reads see
	// it only ReadLag later on the clock (default 0: reads see every write).
	ReadLag time.Duration

	// LBProvisionPolls and LBProvisionTime make load-balancer provisioning
	// asynchronous: a created or updated load balancer is Pending for that
	// many Find calls that see it and for that long on the clock, then
	// Active (default 0 and 0: Active at once). See LBBackend.
	LBProvisionPolls int
	LBProvisionTime  time.Duration
	// LBDeleteTime makes load-balancer deletion asynchronous: Deleting for
	// that long on the clock, then gone (default 0: gone at once).
	LBDeleteTime time.Duration
	// LBRangeIPv4 and LBRangeIPv6 are the ranges the cloud assigns
	// load-balancer addresses from when a spec asks for none (defaults
	// 203.0.113.0/24 and 2001:db8::/64; an invalid or too small prefix, or
	// one of the other family, keeps the default).
	LBRangeIPv4, LBRangeIPv6 netip.Prefix
	// LBIPMode is the IPMode of every load-balancer ingress address
	// (default VIP).
	LBIPMode v1.LoadBalancerIPMode
	// LBHostnameSuffix, when set, makes the cloud answer with a DNS name
	// instead of addresses, as an AWS ELB or NLB does: every load balancer's
	// ingress is one hostname, "<name>.<suffix>", without an IP; a spec
	// that requests Addresses is a permanent error.
	LBHostnameSuffix string
	// MaxLoadBalancers and MaxListeners are load-balancer quotas: load
	// balancers in the cloud, listeners per load balancer (default 0:
	// unlimited).
	MaxLoadBalancers, MaxListeners int
}

// Cloud is the in-memory cloud. It is safe for concurrent use.
type Cloud struct {
	faults *faults
	clock  clock.Clock

	mu        sync.RWMutex
	readLag   time.Duration
	instances history[instances.Instance]
	byName    map[string]string // node name -> instance ID, current state
	lbs       *lbState          // load balancers (lb.go)
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
		faults:    newFaults(opts.Clock, opts.Seed, opts.Latency),
		clock:     opts.Clock,
		readLag:   max(opts.ReadLag, 0),
		instances: newHistory[instances.Instance](),
		byName:    map[string]string{},
		lbs:       newLBState(opts),
	}
}

// Inject adds a fault to operation op. Faults compose as [Fault] describes.
// The returned function removes the fault.
func (c *Cloud) Inject(op Op, f Fault) (remove func()) { return c.faults.inject(op, f) }

// SetLatency sets op's baseline latency, replacing Options.Latency for it:
// every call of op waits d on the clock before its effect, plus the
// latencies of the faults that apply.
func (c *Cloud) SetLatency(op Op, d time.Duration) { c.faults.setLatency(op, d) }

// SetReadLag changes the read lag (see Options.ReadLag). Versions the cloud
// already dropped under a shorter lag are not restored: a longer lag applies
// fully to writes made after the change.
func (c *Cloud) SetReadLag(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readLag = max(d, 0)
}

// Calls returns a copy of the call log in the order calls finished; each
// Call's At is when it arrived.
func (c *Cloud) Calls() []Call {
	c.faults.mu.Lock()
	defer c.faults.mu.Unlock()
	return slices.Clone(c.faults.log)
}

// Count returns how many calls of op the cloud has received, failed ones
// included.
func (c *Cloud) Count(op Op) int {
	c.faults.mu.Lock()
	defer c.faults.mu.Unlock()
	return c.faults.counts[op]
}

// MaxCallsPerSecond returns the most calls of op that arrived within any one
// second of the clock (any window [t, t+1s)), for rate assertions.
func (c *Cloud) MaxCallsPerSecond(op Op) int { return c.faults.maxInWindow(op, time.Second) }

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
	c.faults.counts = map[Op]int{}
}

// AddInstance stores a copy of inst. It returns an error for an empty ID, an
// invalid state, or an ID or node name already in use (in the current state,
// whatever the read lag).
func (c *Cloud) AddInstance(inst instances.Instance) error {
	if inst.ID == "" {
		return fmt.Errorf("fakecloud: instance without ID")
	}
	if inst.State < instances.StatePending || inst.State > instances.StateTerminated {
		return fmt.Errorf("fakecloud: instance %q: invalid state %v", inst.ID, inst.State)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.instances.current(inst.ID) != nil {
		return fmt.Errorf("fakecloud: instance %q already exists", inst.ID)
	}
	if other, ok := c.byName[inst.NodeName]; ok && inst.NodeName != "" {
		return fmt.Errorf("fakecloud: node name %q already used by instance %q", inst.NodeName, other)
	}
	c.instances.put(inst.ID, c.clock.Now(), c.readLag, copyInstance(&inst))
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
	inst := c.instances.current(id)
	if inst == nil {
		return cloudcall.NotFoundf("fakecloud: instance %q", id)
	}
	next := copyInstance(inst)
	next.State = s
	c.instances.put(id, c.clock.Now(), c.readLag, next)
	return nil
}

// RemoveInstance forgets an instance entirely, as a cloud does some time
// after termination. Removing an unknown ID does nothing.
func (c *Cloud) RemoveInstance(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if inst := c.instances.current(id); inst != nil {
		delete(c.byName, inst.NodeName)
		c.instances.put(id, c.clock.Now(), c.readLag, nil)
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
// It is the operation OpGetInstance, with the key as the log's Arg.
func (b *InstanceBackend) Lookup(ctx context.Context, key instances.Key) (*instances.Instance, error) {
	var out *instances.Instance
	err := b.c.faults.call(ctx, OpGetInstance, key.String(), func() error {
		inst := b.c.read(key)
		if inst == nil {
			return cloudcall.NotFoundf("fakecloud: instance %s", key)
		}
		out = inst
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// List implements instances.Lister: every instance, terminated ones
// included, sorted by ID. It is the operation OpListInstances.
func (b *InstanceBackend) List(ctx context.Context) ([]*instances.Instance, error) {
	var out []*instances.Instance
	err := b.c.faults.call(ctx, OpListInstances, "", func() error {
		b.c.mu.RLock()
		defer b.c.mu.RUnlock()
		vis := b.c.instances.visible(b.c.clock.Now().Add(-b.c.readLag))
		out = make([]*instances.Instance, len(vis))
		for i, inst := range vis {
			out[i] = copyInstance(inst)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// read returns a copy of the instance for key as a read now sees it.
func (c *Cloud) read(key instances.Key) *instances.Instance {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t := c.clock.Now().Add(-c.readLag)
	if key.ID != "" {
		if inst := c.instances.at(key.ID, t); inst != nil {
			return copyInstance(inst)
		}
		return nil
	}
	if c.readLag == 0 {
		if inst := c.instances.current(c.byName[key.NodeName]); inst != nil {
			return copyInstance(inst)
		}
		return nil
	}
	for _, inst := range c.instances.visible(t) {
		if inst.NodeName == key.NodeName {
			return copyInstance(inst)
		}
	}
	return nil
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
