package fakecloud

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/lb"
)

// Operation names of the load-balancer backend, for Inject, SetLatency,
// Count and the call log. They are the lb block's operation names.
const (
	OpFindLoadBalancer          Op = Op(lb.OpFind)
	OpCreateLoadBalancer        Op = Op(lb.OpCreate)
	OpUpdateLoadBalancer        Op = Op(lb.OpUpdate)
	OpUpdateLoadBalancerTargets Op = Op(lb.OpUpdateTargets)
	OpDeleteLoadBalancer        Op = Op(lb.OpDelete)
	OpListLoadBalancers         Op = Op(lb.OpList)
	OpFindLegacyLoadBalancer    Op = Op(lb.OpFindLegacy)
)

// The cloud's default address ranges, used when a spec asks for no address
// (Options.LBRangeIPv4 and LBRangeIPv6 replace them).
var (
	lbRangeV4 = netip.MustParsePrefix("203.0.113.0/24")
	lbRangeV6 = netip.MustParsePrefix("2001:db8::/64")
)

// lbEntry is one version of a load balancer in the cloud's history. A
// version is never changed once stored, except for prov.polls, which the
// Find calls that see the version count down.
type lbEntry struct {
	// lb.Status is the stored state: Active, Pending (provisioning, see
	// prov), Failed or Deleting. What a read reports is computed by status.
	lb   lb.LoadBalancer
	prov *provisioning
}

// provisioning is an asynchronous create or update in progress.
type provisioning struct {
	polls int       // Find calls still to see the load balancer Pending
	until time.Time // Pending while a read's view of the cloud is before it
}

// lbState is the Cloud's load-balancer state. The Cloud's mutex guards it.
type lbState struct {
	lbs      history[lbEntry]               // by name
	byID     map[string]string              // ID -> name, current state
	byKey    map[lb.Key]map[string]struct{} // ownership key -> names, current state
	addrs    map[netip.Addr]string          // held address -> name, current state
	deleting map[string]time.Time           // name -> when the deletion completes
	holds    map[string]int                 // name ("" for all) -> holds
	rangeV4  netip.Prefix                   // addresses assigned when a spec asks for none
	rangeV6  netip.Prefix
	lastID   int
	nextV4   netip.Addr
	nextV6   netip.Addr

	provisionPolls int
	provisionTime  time.Duration
	deleteTime     time.Duration
	listLag        time.Duration
	ipMode         v1.LoadBalancerIPMode
	hostnames      string // Options.LBHostnameSuffix
	maxLBs         int
	maxListeners   int
}

func newLBState(opts Options) *lbState {
	mode := opts.LBIPMode
	if mode == "" {
		mode = v1.LoadBalancerIPModeVIP
	}
	rangeV4, rangeV6 := lbRangeV4, lbRangeV6
	if p := opts.LBRangeIPv4; p.IsValid() && p.Addr().Is4() && p.Bits() <= 30 {
		rangeV4 = p.Masked()
	}
	if p := opts.LBRangeIPv6; p.IsValid() && p.Addr().Is6() && p.Bits() <= 126 {
		rangeV6 = p.Masked()
	}
	return &lbState{
		lbs:            newHistory[lbEntry](),
		byID:           map[string]string{},
		byKey:          map[lb.Key]map[string]struct{}{},
		addrs:          map[netip.Addr]string{},
		deleting:       map[string]time.Time{},
		holds:          map[string]int{},
		rangeV4:        rangeV4,
		rangeV6:        rangeV6,
		nextV4:         rangeV4.Addr().Next(),
		nextV6:         rangeV6.Addr().Next(),
		hostnames:      opts.LBHostnameSuffix,
		provisionPolls: max(opts.LBProvisionPolls, 0),
		provisionTime:  max(opts.LBProvisionTime, 0),
		deleteTime:     max(opts.LBDeleteTime, 0),
		ipMode:         mode,
		maxLBs:         max(opts.MaxLoadBalancers, 0),
		maxListeners:   max(opts.MaxListeners, 0),
	}
}

// LoadBalancers returns the cloud's load-balancer backend.
func (c *Cloud) LoadBalancers() *LBBackend { return &LBBackend{c: c} }

// LBBackend implements lb.Backend and its optional capabilities
// (lb.TargetUpdater, lb.Lister, lb.LegacyFinder) over the Cloud. Every
// method is an operation of the fault core (OpFindLoadBalancer, ...): it is
// logged and counted, waits its latency, and fails as injected faults say.
// It is safe for concurrent use.
//
// The model:
//   - Names are unique in the cloud's current state, whatever the read lag:
//     Create of a name in use makes nothing and returns an *lb.ExistsError
//     holding the load balancer as stored (ownership key included).
//   - The spec is stored as a deep copy and reported back as given (Options
//     included; slices in the order given). Update keeps the name the load
//     balancer was created with.
//   - Provisioning is asynchronous when Options.LBProvisionPolls or
//     LBProvisionTime (or SetLBProvisioning) say so: a created or updated
//     load balancer is Pending for that many Find calls that see it and
//     until that much time has passed on the clock (for a lagged read: its
//     view of the clock), then Active. HoldLoadBalancer keeps it Pending.
//     Update and UpdateTargets are accepted on a Pending load balancer, as
//     on an Active or Failed one: with asynchronous provisioning it is (or
//     stays) Pending, its provisioning starting over; without, it is Active
//     at once (unless held).
//   - Deletion is asynchronous when Options.LBDeleteTime says so: Deleting
//     for that long, then gone. Update of a Deleting load balancer fails with
//     a transient error (a conflict); Delete of it, or of a missing one,
//     returns nil.
//   - Addresses: a spec without Addresses gets one per IP family (IPv4 from
//     Options.LBRangeIPv4, default 203.0.113.0/24, from .1 up; IPv6 from LBRangeIPv6, default 2001:db8::/64), never one another
//     load balancer holds; a spec with Addresses gets those, or a permanent
//     error when another load balancer holds one. Ingress follows the
//     spec's IPFamilies order, each with Options.LBIPMode (default VIP).
//     Addresses are released when the load balancer is gone. With
//     Options.LBHostnameSuffix the ingress is one hostname and no address,
//     and a spec with Addresses is a permanent error.
//   - Quotas (Options.MaxLoadBalancers, MaxListeners): exceeding one is a
//     permanent error naming the quota.
//   - Find and FindLegacy read with the cloud's read lag; List reads the
//     current state (a Lister reads its own writes) unless SetListLag.
type LBBackend struct{ c *Cloud }

var (
	_ lb.Backend       = (*LBBackend)(nil)
	_ lb.TargetUpdater = (*LBBackend)(nil)
	_ lb.Lister        = (*LBBackend)(nil)
	_ lb.LegacyFinder  = (*LBBackend)(nil)
)

// Find implements lb.Backend: the load balancer whose stored key is key, as
// a read with the cloud's read lag sees it, or an error wrapping
// cloudcall.ErrNotFound (always for the zero key). Each Find that sees a
// provisioning load balancer counts as one of its polls. The log's Arg is
// key.String().
func (b *LBBackend) Find(ctx context.Context, key lb.Key) (*lb.LoadBalancer, error) {
	var out *lb.LoadBalancer
	err := b.c.faults.call(ctx, OpFindLoadBalancer, key.String(), func() error {
		c := b.c
		c.mu.Lock()
		defer c.mu.Unlock()
		now := c.clock.Now()
		c.lbs.sweep(now, c.readLag)
		view := now.Add(-c.readLag)
		name, e := c.lbs.findByKey(key, view, c.readLag == 0)
		if e == nil {
			return cloudcall.NotFoundf("fakecloud: no load balancer with key %q", key)
		}
		out = c.lbs.observe(name, e, view, true)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Create implements lb.Backend. It returns an *lb.ExistsError when a load
// balancer named spec.Name exists (Deleting ones included), a permanent
// error for a spec without a name, a quota exceeded, an address held by
// another load balancer or the cloud's range exhausted. The new load
// balancer is Pending when provisioning is asynchronous, else Active. The
// log's Arg is spec.Name.
func (b *LBBackend) Create(ctx context.Context, spec *lb.Spec) (*lb.LoadBalancer, error) {
	if spec == nil {
		return nil, cloudcall.Permanent(fmt.Errorf("fakecloud %s: nil spec", OpCreateLoadBalancer))
	}
	var out *lb.LoadBalancer
	err := b.c.faults.call(ctx, OpCreateLoadBalancer, spec.Name, func() error {
		c := b.c
		c.mu.Lock()
		defer c.mu.Unlock()
		s := c.lbs
		now := c.clock.Now()
		s.sweep(now, c.readLag)
		if spec.Name == "" {
			return cloudcall.Permanent(fmt.Errorf("fakecloud: load balancer without a name"))
		}
		if e := s.lbs.current(spec.Name); e != nil {
			return &lb.ExistsError{LoadBalancer: s.observe(spec.Name, e, now, false)}
		}
		if s.maxLBs > 0 && len(s.byID) >= s.maxLBs {
			return cloudcall.Permanent(fmt.Errorf("fakecloud: quota MaxLoadBalancers exceeded: %d load balancers exist, the limit is %d", len(s.byID), s.maxLBs))
		}
		if err := s.checkListeners(spec); err != nil {
			return err
		}
		addrs, err := s.assign(spec.Name, spec, nil)
		if err != nil {
			return err
		}
		e := &lbEntry{lb: lb.LoadBalancer{
			ID:      s.newID(),
			Spec:    *spec.Clone(),
			Status:  lb.StatusActive,
			Ingress: s.ingress(spec.Name, addrs),
		}}
		s.hold(spec.Name, nil, addrs)
		s.startProvisioning(e, now)
		s.put(spec.Name, now, c.readLag, e)
		out = s.observe(spec.Name, e, now, false)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Update implements lb.Backend: it stores spec (keeping the load balancer's
// name) as the configuration of the load balancer with cur.ID (cur.Spec.Name
// when cur.ID is empty) and starts provisioning it again. A missing load
// balancer is an error wrapping cloudcall.ErrNotFound; a Deleting one a
// transient error; a quota or address conflict a permanent one. Changed
// Addresses or IPFamilies re-assign the addresses. The log's Arg is the
// load balancer's name.
func (b *LBBackend) Update(ctx context.Context, cur *lb.LoadBalancer, spec *lb.Spec) (*lb.LoadBalancer, error) {
	if cur == nil || spec == nil {
		return nil, cloudcall.Permanent(fmt.Errorf("fakecloud %s: nil load balancer or spec", OpUpdateLoadBalancer))
	}
	return b.update(ctx, OpUpdateLoadBalancer, cur, func(s *lbState, e *lbEntry) (*lbEntry, error) {
		if err := s.checkListeners(spec); err != nil {
			return nil, err
		}
		next := &lbEntry{lb: e.lb}
		next.lb.Spec = *spec.Clone()
		next.lb.Spec.Name = e.lb.Spec.Name
		next.lb.Status = lb.StatusActive
		next.lb.Message = ""
		if !slices.Equal(spec.Addresses, e.lb.Spec.Addresses) || !slices.Equal(spec.IPFamilies, e.lb.Spec.IPFamilies) {
			addrs, err := s.assign(e.lb.Spec.Name, spec, e.lb.Ingress)
			if err != nil {
				return nil, err
			}
			s.hold(e.lb.Spec.Name, e.lb.Ingress, addrs)
			next.lb.Ingress = s.ingress(e.lb.Spec.Name, addrs)
		} else {
			next.lb.Ingress = slices.Clone(e.lb.Ingress)
		}
		return next, nil
	})
}

// UpdateTargets implements lb.TargetUpdater: it replaces the targets of
// the load balancer with cur.ID and nothing else, and starts provisioning
// it again. Errors as for Update.
func (b *LBBackend) UpdateTargets(ctx context.Context, cur *lb.LoadBalancer, targets []lb.Target) (*lb.LoadBalancer, error) {
	if cur == nil {
		return nil, cloudcall.Permanent(fmt.Errorf("fakecloud %s: nil load balancer", OpUpdateLoadBalancerTargets))
	}
	targets = (&lb.Spec{Targets: targets}).Clone().Targets
	return b.update(ctx, OpUpdateLoadBalancerTargets, cur, func(s *lbState, e *lbEntry) (*lbEntry, error) {
		next := &lbEntry{lb: *e.lb.Clone()}
		next.lb.Spec.Targets = targets
		next.lb.Status = lb.StatusActive
		next.lb.Message = ""
		return next, nil
	})
}

func (b *LBBackend) update(ctx context.Context, op Op, cur *lb.LoadBalancer, change func(*lbState, *lbEntry) (*lbEntry, error)) (*lb.LoadBalancer, error) {
	var out *lb.LoadBalancer
	err := b.c.faults.call(ctx, op, cur.Spec.Name, func() error {
		c := b.c
		c.mu.Lock()
		defer c.mu.Unlock()
		s := c.lbs
		now := c.clock.Now()
		s.sweep(now, c.readLag)
		name, e := s.byRef(cur)
		switch {
		case e == nil:
			return cloudcall.NotFoundf("fakecloud: load balancer %q (id %s)", cur.Spec.Name, cur.ID)
		case e.lb.Status == lb.StatusDeleting:
			return cloudcall.Transient(fmt.Errorf("fakecloud: load balancer %q is being deleted", name))
		}
		next, err := change(s, e)
		if err != nil {
			return err
		}
		s.startProvisioning(next, now)
		s.put(name, now, c.readLag, next)
		out = s.observe(name, next, now, false)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete implements lb.Backend: it deletes the load balancer with cur.ID
// (cur.Spec.Name when cur.ID is empty), at once, or after Options.LBDeleteTime
// during which it is Deleting. A missing or Deleting load balancer is not an
// error. The log's Arg is cur.Spec.Name.
func (b *LBBackend) Delete(ctx context.Context, cur *lb.LoadBalancer) error {
	if cur == nil {
		return cloudcall.Permanent(fmt.Errorf("fakecloud %s: nil load balancer", OpDeleteLoadBalancer))
	}
	return b.c.faults.call(ctx, OpDeleteLoadBalancer, cur.Spec.Name, func() error {
		c := b.c
		c.mu.Lock()
		defer c.mu.Unlock()
		s := c.lbs
		now := c.clock.Now()
		s.sweep(now, c.readLag)
		name, e := s.byRef(cur)
		switch {
		case e == nil, e.lb.Status == lb.StatusDeleting:
			return nil
		case s.deleteTime == 0:
			s.remove(name, now, c.readLag)
			return nil
		}
		next := &lbEntry{lb: *e.lb.Clone()}
		next.lb.Status, next.lb.Message = lb.StatusDeleting, ""
		s.put(name, now, c.readLag, next)
		s.deleting[name] = now.Add(s.deleteTime)
		return nil
	})
}

// List implements lb.Lister: the load balancers whose key names cluster
// (never ones with the zero key), sorted by name, from the current state
// unless SetListLag set a lag. The log's Arg is cluster.
func (b *LBBackend) List(ctx context.Context, cluster string) ([]*lb.LoadBalancer, error) {
	var out []*lb.LoadBalancer
	err := b.c.faults.call(ctx, OpListLoadBalancers, cluster, func() error {
		c := b.c
		c.mu.Lock()
		defer c.mu.Unlock()
		s := c.lbs
		now := c.clock.Now()
		s.sweep(now, c.readLag)
		view := now.Add(-s.listLag)
		out = []*lb.LoadBalancer{}
		for _, e := range s.lbs.visible(view) {
			if k := e.lb.Spec.Key; !k.IsZero() && k.Cluster == cluster {
				out = append(out, s.observe(e.lb.Spec.Name, e, view, false))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FindLegacy implements lb.LegacyFinder: the load balancer named
// legacyName, whatever its key, as a read with the cloud's read lag sees
// it, or an error wrapping cloudcall.ErrNotFound. The log's Arg is
// legacyName.
func (b *LBBackend) FindLegacy(ctx context.Context, svc *v1.Service, legacyName string) (*lb.LoadBalancer, error) {
	var out *lb.LoadBalancer
	err := b.c.faults.call(ctx, OpFindLegacyLoadBalancer, legacyName, func() error {
		c := b.c
		c.mu.Lock()
		defer c.mu.Unlock()
		now := c.clock.Now()
		c.lbs.sweep(now, c.readLag)
		view := now.Add(-c.readLag)
		e := c.lbs.lbs.at(legacyName, view)
		if e == nil || legacyName == "" {
			return cloudcall.NotFoundf("fakecloud: no load balancer named %q", legacyName)
		}
		out = c.lbs.observe(legacyName, e, view, false)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AddLoadBalancer stores a copy of l as the cloud's current state, as a
// test's setup: a load balancer another cluster owns, one with the zero Key
// made by a previous CCM, a Failed one. An empty ID gets one assigned;
// empty Ingress gets addresses as Create assigns them. A Pending one
// provisions as a created one does (see HoldLoadBalancer to keep it
// Pending); an Active or Failed one stays so until it is updated. Quotas do
// not apply. It returns an error for an empty name, a Deleting status, or a
// name, ID or address already in use. It is not an operation: it is not
// logged and faults do not apply.
func (c *Cloud) AddLoadBalancer(l lb.LoadBalancer) error {
	name := l.Spec.Name
	if name == "" {
		return fmt.Errorf("fakecloud: load balancer without a name")
	}
	if l.Status == lb.StatusDeleting || l.Status < lb.StatusActive || l.Status > lb.StatusFailed {
		return fmt.Errorf("fakecloud: load balancer %q: status %v cannot be added (Delete it instead)", name, l.Status)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.lbs
	now := c.clock.Now()
	s.sweep(now, c.readLag)
	if s.lbs.current(name) != nil {
		return fmt.Errorf("fakecloud: load balancer %q already exists", name)
	}
	if _, dup := s.byID[l.ID]; dup {
		return fmt.Errorf("fakecloud: load balancer ID %q already in use", l.ID)
	}
	e := &lbEntry{lb: *l.Clone()}
	var addrs []netip.Addr
	if len(l.Ingress) > 0 {
		for _, in := range l.Ingress {
			if !in.IP.IsValid() {
				continue
			}
			if owner, held := s.addrs[in.IP]; held {
				return fmt.Errorf("fakecloud: load balancer %q: address %s already held by %q", name, in.IP, owner)
			}
			addrs = append(addrs, in.IP)
		}
	} else {
		var err error
		if addrs, err = s.assign(name, &l.Spec, nil); err != nil {
			return err
		}
		e.lb.Ingress = s.ingress(name, addrs)
	}
	if e.lb.ID == "" {
		e.lb.ID = s.newID()
	}
	s.hold(name, nil, addrs)
	if e.lb.Status == lb.StatusPending {
		e.lb.Status = lb.StatusActive
		s.startProvisioning(e, now)
	}
	s.put(name, now, c.readLag, e)
	return nil
}

// LoadBalancer returns a copy of the load balancer named name in the
// current state (whatever the read lag), with the status a read now would
// see (without counting as a poll), and whether it exists.
func (c *Cloud) LoadBalancer(name string) (*lb.LoadBalancer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	c.lbs.sweep(now, c.readLag)
	e := c.lbs.lbs.current(name)
	if e == nil {
		return nil, false
	}
	return c.lbs.observe(name, e, now, false), true
}

// LoadBalancerList returns copies of every load balancer in the current
// state, of every cluster and none, sorted by name.
func (c *Cloud) LoadBalancerList() []*lb.LoadBalancer {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	c.lbs.sweep(now, c.readLag)
	var out []*lb.LoadBalancer
	for _, e := range c.lbs.lbs.visible(now) {
		out = append(out, c.lbs.observe(e.lb.Spec.Name, e, now, false))
	}
	return out
}

// HoldLoadBalancer makes the load balancer named name (every load balancer
// when name is empty) read as Pending until release is called, whatever its
// provisioning, from now on: it may not exist yet, and one already Active
// reads Pending again. Deleting and Failed ones keep their status. Holds
// nest; release is idempotent. Finds that see a held load balancer do not
// count as polls.
func (c *Cloud) HoldLoadBalancer(name string) (release func()) {
	c.mu.Lock()
	c.lbs.holds[name]++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.lbs.holds[name]--; c.lbs.holds[name] <= 0 {
				delete(c.lbs.holds, name)
			}
		})
	}
}

// FailLoadBalancer marks the load balancer named name Failed with msg, as a
// cloud that gave up provisioning it; an Update provisions it again. It
// returns an error wrapping cloudcall.ErrNotFound for a missing one.
func (c *Cloud) FailLoadBalancer(name, msg string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.lbs
	now := c.clock.Now()
	s.sweep(now, c.readLag)
	e := s.lbs.current(name)
	if e == nil {
		return cloudcall.NotFoundf("fakecloud: load balancer %q", name)
	}
	next := &lbEntry{lb: *e.lb.Clone()}
	next.lb.Status, next.lb.Message = lb.StatusFailed, msg
	s.put(name, now, c.readLag, next)
	return nil
}

// SetLBProvisioning changes Options.LBProvisionPolls and LBProvisionTime
// for the load balancers created or updated from now on.
func (c *Cloud) SetLBProvisioning(polls int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lbs.provisionPolls, c.lbs.provisionTime = max(polls, 0), max(d, 0)
}

// SetLBDeleteTime changes Options.LBDeleteTime for the deletions from now
// on.
func (c *Cloud) SetLBDeleteTime(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lbs.deleteTime = max(d, 0)
}

// SetLBQuotas changes Options.MaxLoadBalancers and MaxListeners (0:
// unlimited) for the calls from now on.
func (c *Cloud) SetLBQuotas(maxLoadBalancers, maxListeners int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lbs.maxLBs, c.lbs.maxListeners = max(maxLoadBalancers, 0), max(maxListeners, 0)
}

// SetListLag makes LBBackend.List read the state as it was d ago (default
// 0: the current state), for tests of callers that must cope with a Lister
// that does not read its own writes. It is separate from the read lag of
// Find. Versions the cloud already dropped under the read lag are not
// restored: a list lag longer than the read lag applies fully to writes
// made after the change.
func (c *Cloud) SetListLag(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lbs.listLag = max(d, 0)
}

// observe returns what a read with view sees of e: a copy with its status
// and message. A poll counts down e's provisioning.
func (s *lbState) observe(name string, e *lbEntry, view time.Time, poll bool) *lb.LoadBalancer {
	out := e.lb.Clone()
	switch e.lb.Status {
	case lb.StatusDeleting, lb.StatusFailed:
		return out
	}
	out.Status, out.Message = lb.StatusActive, ""
	if s.holds[name] > 0 || s.holds[""] > 0 {
		out.Status, out.Message = lb.StatusPending, "fakecloud: held by the test"
		return out
	}
	if p := e.prov; p != nil {
		pending := view.Before(p.until)
		if p.polls > 0 {
			if poll {
				p.polls--
			}
			pending = true
		}
		if pending {
			out.Status, out.Message = lb.StatusPending, "fakecloud: provisioning"
		}
	}
	return out
}

// newID returns the next free ID: "lb-1", "lb-2", ...
func (s *lbState) newID() string {
	for {
		s.lastID++
		id := fmt.Sprintf("lb-%d", s.lastID)
		if _, used := s.byID[id]; !used {
			return id
		}
	}
}

func (s *lbState) startProvisioning(e *lbEntry, now time.Time) {
	e.prov = nil
	if s.provisionPolls > 0 || s.provisionTime > 0 {
		e.lb.Status = lb.StatusPending
		e.prov = &provisioning{polls: s.provisionPolls, until: now.Add(s.provisionTime)}
	}
}

// put stores e as name's current version and keeps the indexes in step.
func (s *lbState) put(name string, now time.Time, lag time.Duration, e *lbEntry) {
	if old := s.lbs.current(name); old != nil {
		s.unindex(name, old)
	}
	s.lbs.put(name, now, max(lag, s.listLag), e)
	s.byID[e.lb.ID] = name
	names := s.byKey[e.lb.Spec.Key]
	if names == nil {
		names = map[string]struct{}{}
		s.byKey[e.lb.Spec.Key] = names
	}
	names[name] = struct{}{}
}

func (s *lbState) unindex(name string, e *lbEntry) {
	delete(s.byID, e.lb.ID)
	if names := s.byKey[e.lb.Spec.Key]; names != nil {
		delete(names, name)
		if len(names) == 0 {
			delete(s.byKey, e.lb.Spec.Key)
		}
	}
}

// remove deletes name from the current state at time at, releasing its
// addresses.
func (s *lbState) remove(name string, at time.Time, lag time.Duration) {
	e := s.lbs.current(name)
	if e == nil {
		return
	}
	s.unindex(name, e)
	s.hold(name, e.lb.Ingress, nil)
	s.lbs.put(name, at, max(lag, s.listLag), nil)
	delete(s.deleting, name)
}

// sweep completes the asynchronous deletions due by now.
func (s *lbState) sweep(now time.Time, lag time.Duration) {
	for name, at := range s.deleting {
		if !now.Before(at) {
			s.remove(name, at, lag)
		}
	}
}

// byRef returns the current load balancer cur refers to: by ID, or by name
// when cur has no ID.
func (s *lbState) byRef(cur *lb.LoadBalancer) (string, *lbEntry) {
	name := cur.Spec.Name
	if cur.ID != "" {
		var ok bool
		if name, ok = s.byID[cur.ID]; !ok {
			return "", nil
		}
	}
	return name, s.lbs.current(name)
}

// findByKey returns the load balancer with key as a read at view sees it
// (the first by name when several have it); current says view is now.
func (s *lbState) findByKey(key lb.Key, view time.Time, current bool) (string, *lbEntry) {
	if key.IsZero() {
		return "", nil
	}
	var (
		best string
		out  *lbEntry
	)
	consider := func(name string, e *lbEntry) {
		if e != nil && e.lb.Spec.Key == key && (out == nil || name < best) {
			best, out = name, e
		}
	}
	if current {
		for name := range s.byKey[key] {
			consider(name, s.lbs.current(name))
		}
		return best, out
	}
	for name := range s.lbs.versions {
		consider(name, s.lbs.at(name, view))
	}
	return best, out
}

func (s *lbState) checkListeners(spec *lb.Spec) error {
	if s.maxListeners > 0 && len(spec.Listeners) > s.maxListeners {
		return cloudcall.Permanent(fmt.Errorf("fakecloud: quota MaxListeners exceeded: load balancer %q has %d listeners, the limit is %d", spec.Name, len(spec.Listeners), s.maxListeners))
	}
	return nil
}

// assign returns the addresses load balancer name gets for spec, in the
// order of spec.IPFamilies: spec.Addresses, or, when it is empty, prev's
// address of each family (on update) or a free one from the cloud's range.
// It changes nothing but the range cursors.
func (s *lbState) assign(name string, spec *lb.Spec, prev []lb.Ingress) ([]netip.Addr, error) {
	if s.hostnames != "" {
		if len(spec.Addresses) > 0 {
			return nil, cloudcall.Permanent(fmt.Errorf("fakecloud: load balancer %q requests addresses %v, but this cloud assigns hostnames, not addresses", name, spec.Addresses))
		}
		return nil, nil
	}
	families := spec.IPFamilies
	if len(families) == 0 {
		families = []v1.IPFamily{v1.IPv4Protocol}
	}
	if len(spec.Addresses) > 0 {
		var out []netip.Addr
		for _, a := range spec.Addresses {
			if owner, held := s.addrs[a]; held && owner != name {
				return nil, cloudcall.Permanent(fmt.Errorf("fakecloud: address %s is held by load balancer %q", a, owner))
			}
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
		rank := func(a netip.Addr) int {
			for i, f := range families {
				if familyOf(a) == f {
					return i
				}
			}
			return len(families)
		}
		slices.SortStableFunc(out, func(a, b netip.Addr) int { return rank(a) - rank(b) })
		return out, nil
	}
	var out []netip.Addr
	for _, f := range families {
		reused := false
		for _, in := range prev {
			if in.IP.IsValid() && familyOf(in.IP) == f && !slices.Contains(out, in.IP) {
				out, reused = append(out, in.IP), true
				break
			}
		}
		if reused {
			continue
		}
		a, err := s.allocate(f)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// allocate returns the next address of family f's range that no load
// balancer holds, moving the range's cursor past it.
func (s *lbState) allocate(f v1.IPFamily) (netip.Addr, error) {
	cursor, prefix, tries := &s.nextV4, s.rangeV4, 1<<(32-s.rangeV4.Bits())
	if f == v1.IPv6Protocol {
		cursor, prefix, tries = &s.nextV6, s.rangeV6, 1<<16
	}
	for range tries {
		a := *cursor
		next := a.Next()
		if !prefix.Contains(next) || next == lastOf(prefix) {
			next = prefix.Addr().Next()
		}
		*cursor = next
		if _, held := s.addrs[a]; !held {
			return a, nil
		}
	}
	return netip.Addr{}, cloudcall.Permanent(fmt.Errorf("fakecloud: no free %s load-balancer address in %s", f, prefix))
}

// lastOf returns the last address of p (the IPv4 broadcast address).
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// hold moves load balancer name's addresses from those of prev to next.
func (s *lbState) hold(name string, prev []lb.Ingress, next []netip.Addr) {
	for _, in := range prev {
		if s.addrs[in.IP] == name {
			delete(s.addrs, in.IP)
		}
	}
	for _, a := range next {
		s.addrs[a] = name
	}
}

// ingress returns load balancer name's ingress: its addresses, or its
// hostname when the cloud assigns hostnames.
func (s *lbState) ingress(name string, addrs []netip.Addr) []lb.Ingress {
	if s.hostnames != "" {
		return []lb.Ingress{{Hostname: name + "." + s.hostnames}}
	}
	out := make([]lb.Ingress, len(addrs))
	for i, a := range addrs {
		out[i] = lb.Ingress{IP: a, IPMode: s.ipMode}
	}
	return out
}

func familyOf(a netip.Addr) v1.IPFamily {
	if a.Is4() || a.Is4In6() {
		return v1.IPv4Protocol
	}
	return v1.IPv6Protocol
}
