package ipam

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	netutils "k8s.io/utils/net"
)

// Pool configures one pool of LoadBalancer addresses for an [LBAllocator].
// The zero values of Namespaces and Selector mean "every Service". It is
// plain data: [NewLBAllocator] copies what it needs, so a Pool may be reused
// or changed afterwards.
type Pool struct {
	// Name identifies the pool; it must be non-empty and unique. A Request
	// may name it to draw only from it.
	Name string
	// Ranges are the addresses of the pool, IPv4, IPv6 or both (see
	// [ParseRanges]); every address of a CIDR counts, network and broadcast
	// included. Ranges of all pools of an allocator must not overlap.
	Ranges []Range
	// Namespaces, when non-empty, restricts the pool to Services in these
	// namespaces.
	Namespaces []string
	// Selector, when non-nil, restricts the pool to Services whose labels it
	// matches. Both restrictions apply when both are set.
	Selector labels.Selector
}

// ServiceRef identifies a Service that holds addresses. Two refs name the
// same holder only when all their fields are equal: a Service deleted and
// re-created under the same name is a new holder. Services read from the API
// server always carry a UID; build refs with [RefOf]. It is a comparable
// value, safe for concurrent use.
type ServiceRef struct {
	Namespace string
	Name      string
	UID       types.UID
}

// RefOf returns the ref of svc, which must not be nil.
func RefOf(svc *v1.Service) ServiceRef {
	return ServiceRef{Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID}
}

// String returns "namespace/name (uid)".
func (r ServiceRef) String() string {
	s := r.Namespace + "/" + r.Name
	if r.UID != "" {
		s += " (" + string(r.UID) + ")"
	}
	return s
}

// Port is a (protocol, port) pair of a Service; two Services may share an
// address only when their ports are disjoint. It is a comparable value.
type Port struct {
	Protocol v1.Protocol
	Port     int32
}

// String returns "TCP/80".
func (p Port) String() string { return fmt.Sprintf("%s/%d", p.Protocol, p.Port) }

// Request asks an [LBAllocator] for the addresses of one Service. It is
// plain data, read (never modified) during the call it is passed to.
type Request struct {
	// Service is the Service to serve; required. The allocator reads its
	// namespace, name, UID, labels, spec.ports, spec.ipFamilies,
	// spec.ipFamilyPolicy, spec.loadBalancerIP and (in Restore)
	// status.loadBalancer.ingress. It is not modified.
	Service *v1.Service
	// RequestedIPs are addresses the Service asks for besides
	// spec.loadBalancerIP, e.g. parsed from an annotation. Together with
	// spec.loadBalancerIP there may be at most one per IP family.
	RequestedIPs []netip.Addr
	// SharingKey, when non-empty, lets the Service share an address with
	// other Services of the same key whose ports are disjoint.
	SharingKey string
	// Pool, when non-empty, restricts the Service to the pool of that name.
	Pool string
}

// OwnedAddress is a cloud load balancer owned by this cluster and the
// addresses it holds, as reported by [OwnedAddresses]. It is plain data.
type OwnedAddress struct {
	// Service is the Service the load balancer was made for. UID alone,
	// namespace and name alone, or all three may be set; Restore matches it
	// against the live Services.
	Service ServiceRef
	// Addrs are the load balancer's addresses.
	Addrs []netip.Addr
	// SharingKey is the load balancer's sharing key, if known.
	SharingKey string
	// Ports are the load balancer's ports, if known. When empty the ports
	// are unknown and the addresses are shared with no other Service.
	Ports []Port
}

// OwnedAddresses lists the addresses of the cloud load balancers this cluster
// owns; the lb block implements it. OwnedLBAddresses must return every such
// load balancer or an error (never a partial list: a missing address could be
// handed out again); [LBAllocator.Restore] returns that error wrapped.
// Implementations must be safe for concurrent use.
type OwnedAddresses interface {
	OwnedLBAddresses(ctx context.Context) ([]OwnedAddress, error)
}

// OwnedAddressesFunc adapts a function to [OwnedAddresses]; it is as safe
// for concurrent use as the function.
type OwnedAddressesFunc func(ctx context.Context) ([]OwnedAddress, error)

// OwnedLBAddresses calls f and returns its result.
func (f OwnedAddressesFunc) OwnedLBAddresses(ctx context.Context) ([]OwnedAddress, error) {
	return f(ctx)
}

// LBAllocator assigns LoadBalancer addresses to Services from a list of
// pools. It guarantees that no address is held by two Services unless both
// have the same non-empty sharing key and disjoint, known ports.
//
// It starts not ready: until [LBAllocator.Restore] has rebuilt its state from
// the Services and the cloud, Allocate and Release return [ErrNotReady], so
// that an address in use is never handed out after a restart.
//
// An LBAllocator is safe for concurrent use by multiple goroutines.
type LBAllocator struct {
	pools []*lbPool

	mu      sync.Mutex
	ready   bool
	holders map[ServiceRef]*holding
	addrs   map[netip.Addr]*addrUse
	byKey   map[string]map[ServiceRef]struct{} // sharing key -> holders
}

type lbPool struct {
	name string
	ns   map[string]bool // nil: any namespace
	sel  labels.Selector // nil: any Service
	sets [2]*AddrSet     // by family index; nil when the pool has none
}

type holding struct {
	addrs []netip.Addr
	key   string
	ports []Port // empty: unknown
}

type addrUse struct {
	pool  *lbPool
	users []ServiceRef
}

const (
	v4 = 0
	v6 = 1
)

var familyNames = [2]v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return v4
	}
	return v6
}

// NewLBAllocator returns a not yet ready allocator over pools, tried in the
// given order for each Service. There must be at least one pool; names must
// be non-empty and unique, every pool must have a range, ranges must be valid
// and must not overlap (within or across pools), each family of a pool may
// hold at most [MaxSetSize] addresses, and namespaces must be non-empty.
// Otherwise the error wraps [ErrInvalid].
func NewLBAllocator(pools ...Pool) (*LBAllocator, error) {
	if len(pools) == 0 {
		return nil, fmt.Errorf("ipam: an LB allocator needs at least one pool: %w", ErrInvalid)
	}
	a := &LBAllocator{
		holders: map[ServiceRef]*holding{},
		addrs:   map[netip.Addr]*addrUse{},
		byKey:   map[string]map[ServiceRef]struct{}{},
	}
	var all []Range
	seen := map[string]bool{}
	for _, p := range pools {
		switch {
		case p.Name == "":
			return nil, fmt.Errorf("ipam: a pool has no name: %w", ErrInvalid)
		case seen[p.Name]:
			return nil, fmt.Errorf("ipam: two pools are named %q: %w", p.Name, ErrInvalid)
		case len(p.Ranges) == 0:
			return nil, fmt.Errorf("ipam: pool %q has no ranges: %w", p.Name, ErrInvalid)
		}
		seen[p.Name] = true
		lp := &lbPool{name: p.Name, sel: p.Selector}
		if len(p.Namespaces) > 0 {
			lp.ns = map[string]bool{}
			for _, ns := range p.Namespaces {
				if ns == "" {
					return nil, fmt.Errorf("ipam: pool %q lists an empty namespace: %w", p.Name, ErrInvalid)
				}
				lp.ns[ns] = true
			}
		}
		var byFam [2][]Range
		for _, r := range p.Ranges {
			if err := r.Validate(); err != nil {
				return nil, fmt.Errorf("ipam: pool %q: %w", p.Name, err)
			}
			byFam[famOf(r.First)] = append(byFam[famOf(r.First)], r)
			all = append(all, r)
		}
		for f, rs := range byFam {
			if len(rs) == 0 {
				continue
			}
			set, err := NewAddrSet(rs...)
			if err != nil {
				return nil, fmt.Errorf("ipam: pool %q: %w", p.Name, err)
			}
			lp.sets[f] = set
		}
		a.pools = append(a.pools, lp)
	}
	if err := checkOverlaps(all); err != nil {
		return nil, fmt.Errorf("ipam: pools: %w", err)
	}
	return a, nil
}

// poolOf returns the pool that contains addr, or nil.
func (a *LBAllocator) poolOf(addr netip.Addr) *lbPool {
	f := famOf(addr)
	for _, p := range a.pools {
		if p.sets[f] != nil && p.sets[f].Contains(addr) {
			return p
		}
	}
	return nil
}

func (p *lbPool) serves(svc *v1.Service, pool string) bool {
	return (pool == "" || pool == p.name) &&
		(p.ns == nil || p.ns[svc.Namespace]) &&
		(p.sel == nil || p.sel.Matches(labels.Set(svc.Labels)))
}

// Ready reports whether Restore has completed. It is safe for concurrent use.
func (a *LBAllocator) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready
}

// request is a validated Request.
type request struct {
	svc       *v1.Service
	ref       ServiceRef
	fams      []int  // in spec.ipFamilies order
	required  []bool // per fams entry
	requested [2]netip.Addr
	ports     []Port
	key       string
	pool      string
}

// parseIP parses an address from a Service field, accepting the leading
// zeros that old API servers stored.
func parseIP(s string) (netip.Addr, bool) {
	ip := netutils.ParseIPSloppy(s)
	if ip == nil {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

func portsOf(svc *v1.Service) []Port {
	var ps []Port
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP // the API server's default
		}
		ps = append(ps, Port{Protocol: proto, Port: p.Port})
	}
	slices.SortFunc(ps, func(a, b Port) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
	return slices.Compact(ps)
}

func (a *LBAllocator) parseRequest(req Request) (*request, error) {
	svc := req.Service
	if svc == nil || svc.Name == "" {
		return nil, fmt.Errorf("ipam: request has no Service or a Service without a name: %w", ErrInvalid)
	}
	r := &request{svc: svc, ref: RefOf(svc), ports: portsOf(svc), key: req.SharingKey, pool: req.Pool}
	if r.pool != "" && !slices.ContainsFunc(a.pools, func(p *lbPool) bool { return p.name == r.pool }) {
		return nil, fmt.Errorf("ipam: %s asks for pool %q, which does not exist: %w", r.ref, r.pool, ErrNoPool)
	}
	fams := svc.Spec.IPFamilies
	if len(fams) == 0 || len(fams) > 2 {
		return nil, fmt.Errorf("ipam: %s has %d IP families in spec.ipFamilies, want 1 or 2: %w", r.ref, len(fams), ErrInvalid)
	}
	for _, f := range fams {
		switch f {
		case v1.IPv4Protocol:
			r.fams = append(r.fams, v4)
		case v1.IPv6Protocol:
			r.fams = append(r.fams, v6)
		default:
			return nil, fmt.Errorf("ipam: %s has unknown IP family %q: %w", r.ref, f, ErrInvalid)
		}
	}
	if len(r.fams) == 2 && r.fams[0] == r.fams[1] {
		return nil, fmt.Errorf("ipam: %s lists IP family %s twice: %w", r.ref, fams[0], ErrInvalid)
	}
	policy := v1.IPFamilyPolicySingleStack
	if svc.Spec.IPFamilyPolicy != nil {
		policy = *svc.Spec.IPFamilyPolicy
	}
	switch policy {
	case v1.IPFamilyPolicySingleStack:
		r.fams, r.required = r.fams[:1], []bool{true}
	case v1.IPFamilyPolicyPreferDualStack:
		r.required = []bool{true, false}[:len(r.fams)]
	case v1.IPFamilyPolicyRequireDualStack:
		if len(r.fams) != 2 {
			return nil, fmt.Errorf("ipam: %s requires dual-stack but lists one IP family: %w", r.ref, ErrInvalid)
		}
		r.required = []bool{true, true}
	default:
		return nil, fmt.Errorf("ipam: %s has unknown spec.ipFamilyPolicy %q: %w", r.ref, policy, ErrInvalid)
	}
	requested := slices.Clone(req.RequestedIPs)
	if s := svc.Spec.LoadBalancerIP; s != "" {
		ip, ok := parseIP(s)
		if !ok {
			return nil, fmt.Errorf("ipam: %s: spec.loadBalancerIP %q is not an IP address: %w", r.ref, s, ErrInvalid)
		}
		requested = append(requested, ip)
	}
	for _, ip := range requested {
		switch {
		case !ip.IsValid() || ip.Zone() != "" || ip.Is4In6():
			return nil, fmt.Errorf("ipam: %s: requested address %q is not a plain IP address: %w", r.ref, ip, ErrInvalid)
		case !slices.Contains(r.fams, famOf(ip)):
			return nil, fmt.Errorf("ipam: %s requests %s but serves only %v: %w", r.ref, ip, r.familyList(), ErrInvalid)
		}
		if prev := r.requested[famOf(ip)]; prev.IsValid() && prev != ip {
			return nil, fmt.Errorf("ipam: %s requests two %s addresses, %s and %s: %w", r.ref, familyName(ip), prev, ip, ErrInvalid)
		}
		r.requested[famOf(ip)] = ip
	}
	return r, nil
}

func (r *request) familyList() []v1.IPFamily {
	var out []v1.IPFamily
	for _, f := range r.fams {
		out = append(out, familyNames[f])
	}
	return out
}

// Allocate returns the addresses of a Service, one per IP family it is given,
// in spec.ipFamilies order, and records them as held by it. It is idempotent:
// while the request stays the same, the same addresses are returned. Per
// family, in order of preference, it picks
//   - the requested address (spec.loadBalancerIP or RequestedIPs), else
//   - the address the Service already holds, if still allowed, else
//   - with a sharing key, the lowest address held by Services of the same key
//     that it may share (ports disjoint), else
//   - the lowest free address of the first eligible pool (in pool order) that
//     has one.
//
// SingleStack (or no policy) uses the first family; RequireDualStack needs
// both; PreferDualStack needs the first and takes the second only when a
// pool has one. Addresses the Service held and no longer gets are released.
// On error nothing changes.
//
// Errors: [ErrNotReady] before Restore; [ErrInvalid] for a malformed request;
// [ErrNoPool] when no pool serves the Service for a required family (or the
// named pool does not exist); [ErrExhausted] when the pools that serve it
// are full; [ErrOutOfRange] when a requested address is in no pool;
// [ErrNotEligible] when it is in a pool the Service may not use; a
// [*ConflictError] when another Service holds it and may not share it.
//
// It is safe for concurrent use.
func (a *LBAllocator) Allocate(req Request) ([]netip.Addr, error) {
	r, err := a.parseRequest(req)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ready {
		return nil, fmt.Errorf("ipam: allocate for %s: %w", r.ref, ErrNotReady)
	}
	var chosen, fresh []netip.Addr
	for i, f := range r.fams {
		addr, isNew, err := a.pick(r, f)
		if err != nil {
			if !r.required[i] && (errors.Is(err, ErrExhausted) || errors.Is(err, ErrNoPool)) {
				continue // PreferDualStack: the second family is optional
			}
			for _, x := range fresh {
				_ = a.poolOf(x).sets[famOf(x)].Release(x)
			}
			return nil, err
		}
		if isNew {
			fresh = append(fresh, addr)
		}
		chosen = append(chosen, addr)
	}
	a.commit(r.ref, chosen, r.key, r.ports)
	return slices.Clone(chosen), nil
}

// pick chooses the address of family f for r; isNew reports an address just
// taken from a pool's free space.
func (a *LBAllocator) pick(r *request, f int) (addr netip.Addr, isNew bool, err error) {
	if want := r.requested[f]; want.IsValid() {
		p := a.poolOf(want)
		switch {
		case p == nil:
			return want, false, fmt.Errorf("ipam: %s requests %s, which is in no pool: %w", r.ref, want, ErrOutOfRange)
		case !p.serves(r.svc, r.pool):
			return want, false, fmt.Errorf("ipam: %s requests %s from pool %q, which does not serve it: %w", r.ref, want, p.name, ErrNotEligible)
		}
		if u := a.addrs[want]; u != nil {
			if err := a.compatible(want, u, r.ref, r.key, r.ports); err != nil {
				return want, false, err
			}
		}
		return want, false, nil
	}
	usable := func(x netip.Addr) bool {
		u := a.addrs[x]
		return famOf(x) == f && u.pool.serves(r.svc, r.pool) && a.compatible(x, u, r.ref, r.key, r.ports) == nil
	}
	best := netip.Addr{}
	if h := a.holders[r.ref]; h != nil {
		for _, x := range h.addrs {
			if usable(x) && (!best.IsValid() || x.Less(best)) {
				best = x
			}
		}
	}
	if !best.IsValid() && r.key != "" {
		for o := range a.byKey[r.key] {
			for _, x := range a.holders[o].addrs {
				if usable(x) && (!best.IsValid() || x.Less(best)) {
					best = x
				}
			}
		}
	}
	if best.IsValid() {
		return best, false, nil
	}
	served := false
	for _, p := range a.pools {
		if p.sets[f] == nil || !p.serves(r.svc, r.pool) {
			continue
		}
		served = true
		if x, err := p.sets[f].AllocateNext(); err == nil {
			return x, true, nil
		}
	}
	if !served {
		return netip.Addr{}, false, fmt.Errorf("ipam: no pool serves %s addresses to %s: %w", familyNames[f], r.ref, ErrNoPool)
	}
	return netip.Addr{}, false, fmt.Errorf("ipam: every pool that serves %s addresses to %s is full: %w", familyNames[f], r.ref, ErrExhausted)
}

// compatible returns nil when ref (with key and ports) may hold addr next to
// its current users, else a *ConflictError naming the first that refuses.
func (a *LBAllocator) compatible(addr netip.Addr, u *addrUse, ref ServiceRef, key string, ports []Port) error {
	for _, o := range u.users {
		if o == ref {
			continue
		}
		if reason := shareRefusal(key, ports, a.holders[o]); reason != "" {
			return &ConflictError{Addr: addr, Holder: o, Reason: reason}
		}
	}
	return nil
}

// shareRefusal says why a holder with key and ports may not share with h,
// or returns "" when it may.
func shareRefusal(key string, ports []Port, h *holding) string {
	switch {
	case key == "" || h.key == "":
		return "sharing needs the same non-empty sharing key on both Services"
	case key != h.key:
		return fmt.Sprintf("sharing keys differ (%q and %q)", key, h.key)
	case len(ports) == 0 || len(h.ports) == 0:
		return "the ports of one Service are unknown"
	}
	for _, p := range ports {
		if slices.Contains(h.ports, p) {
			return "both use port " + p.String()
		}
	}
	return ""
}

// commit makes ref hold exactly addrs, with key and ports.
func (a *LBAllocator) commit(ref ServiceRef, addrs []netip.Addr, key string, ports []Port) {
	h := a.holders[ref]
	if h == nil {
		h = &holding{}
		a.holders[ref] = h
	}
	for _, x := range h.addrs {
		if !slices.Contains(addrs, x) {
			a.drop(x, ref)
		}
	}
	for _, x := range addrs {
		a.take(x, ref)
	}
	h.addrs = slices.Clone(addrs)
	h.ports = ports
	a.setKey(ref, h, key)
}

// take records ref as a user of addr, occupying it in its pool.
func (a *LBAllocator) take(addr netip.Addr, ref ServiceRef) {
	u := a.addrs[addr]
	if u == nil {
		u = &addrUse{pool: a.poolOf(addr)}
		a.addrs[addr] = u
		_ = u.pool.sets[famOf(addr)].Occupy(addr) // addr is in the pool
	}
	if !slices.Contains(u.users, ref) {
		u.users = append(u.users, ref)
	}
}

// drop removes ref from the users of addr, freeing it when none is left.
func (a *LBAllocator) drop(addr netip.Addr, ref ServiceRef) {
	u := a.addrs[addr]
	if u == nil {
		return
	}
	u.users = slices.DeleteFunc(u.users, func(o ServiceRef) bool { return o == ref })
	if len(u.users) == 0 {
		delete(a.addrs, addr)
		_ = u.pool.sets[famOf(addr)].Release(addr) // addr is in the pool
	}
}

func (a *LBAllocator) setKey(ref ServiceRef, h *holding, key string) {
	if h.key != "" {
		delete(a.byKey[h.key], ref)
		if len(a.byKey[h.key]) == 0 {
			delete(a.byKey, h.key)
		}
	}
	h.key = key
	if key != "" {
		if a.byKey[key] == nil {
			a.byKey[key] = map[ServiceRef]struct{}{}
		}
		a.byKey[key][ref] = struct{}{}
	}
}

// Release frees every address held by ref (an address shared with other
// Services stays held by them). Releasing a ref that holds nothing is not an
// error. Before Restore it returns [ErrNotReady]. It is safe for concurrent
// use.
func (a *LBAllocator) Release(ref ServiceRef) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ready {
		return fmt.Errorf("ipam: release %s: %w", ref, ErrNotReady)
	}
	h := a.holders[ref]
	if h == nil {
		return nil
	}
	for _, x := range h.addrs {
		a.drop(x, ref)
	}
	a.setKey(ref, h, "")
	delete(a.holders, ref)
	return nil
}

// Addrs returns the addresses ref holds (nil when none, or before Restore).
// It is safe for concurrent use.
func (a *LBAllocator) Addrs(ref ServiceRef) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h := a.holders[ref]; h != nil {
		return slices.Clone(h.addrs)
	}
	return nil
}

// Restore rebuilds the allocator's state and makes it ready. It records as
// held, whatever the pools' rules say (they are facts):
//   - the addresses in each Service's status.loadBalancer.ingress,
//   - the addresses of the cloud load balancers listed by owned (nil means
//     none), under the live Service they name (matched by UID, else by
//     namespace and name) or, for a Service that is gone, under the ref they
//     report, until Release is called with that ref;
//
// then, for Services in creation order, each requested address
// (spec.loadBalancerIP, RequestedIPs) that the Service may use and that
// conflicts with nothing recorded. Addresses in no pool are ignored. reqs
// should hold every LoadBalancer Service the allocator serves, built as for
// Allocate (same sharing keys).
//
// Addresses that two Services already hold without being allowed to share
// are kept held by both (and logged through klog.FromContext(ctx)): the
// allocator never makes such a pair itself.
//
// Restore lists owned addresses before taking its lock. If listing fails it
// returns that error (wrapped) and stays not ready; call it again. Calling it
// after it succeeded returns an error wrapping [ErrInvalid]. A request without
// a Service is refused with [ErrInvalid]. It is safe for concurrent use.
func (a *LBAllocator) Restore(ctx context.Context, reqs []Request, owned OwnedAddresses) error {
	logger := klog.FromContext(ctx)
	if a.Ready() {
		return fmt.Errorf("ipam: restore: already restored: %w", ErrInvalid)
	}
	for i, req := range reqs {
		if req.Service == nil {
			return fmt.Errorf("ipam: restore: request %d has no Service: %w", i, ErrInvalid)
		}
	}
	var owns []OwnedAddress
	if owned != nil {
		var err error
		if owns, err = owned.OwnedLBAddresses(ctx); err != nil {
			return fmt.Errorf("ipam: restore: list the addresses of owned load balancers: %w", err)
		}
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ready {
		return fmt.Errorf("ipam: restore: already restored: %w", ErrInvalid)
	}
	byUID := map[types.UID]int{}
	byName := map[types.NamespacedName]int{}
	for i, req := range reqs {
		if uid := req.Service.UID; uid != "" {
			byUID[uid] = i
		}
		byName[types.NamespacedName{Namespace: req.Service.Namespace, Name: req.Service.Name}] = i
	}
	fact := func(ref ServiceRef, addr netip.Addr, key string, ports []Port, source string) {
		if !addr.IsValid() {
			return
		}
		addr = addr.WithZone("").Unmap()
		if a.poolOf(addr) == nil {
			return
		}
		if u := a.addrs[addr]; u != nil {
			if err := a.compatible(addr, u, ref, key, ports); err != nil {
				logger.Info("Restored address is held by Services that may not share it", "address", addr, "service", ref, "source", source, "err", err)
			}
		}
		h := a.holders[ref]
		if h == nil {
			h = &holding{ports: ports}
			a.holders[ref] = h
			a.setKey(ref, h, key)
		}
		a.take(addr, ref)
		if !slices.Contains(h.addrs, addr) {
			h.addrs = append(h.addrs, addr)
		}
	}
	for _, req := range reqs {
		svc := req.Service
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP == "" {
				continue
			}
			addr, ok := parseIP(ing.IP)
			if !ok {
				logger.Info("Ignoring an unparsable load balancer ingress IP", "service", RefOf(svc), "ip", ing.IP)
				continue
			}
			fact(RefOf(svc), addr, req.SharingKey, portsOf(svc), "status")
		}
	}
	for _, o := range owns {
		ref, key, ports := o.Service, o.SharingKey, o.Ports
		i, ok := byUID[ref.UID]
		if !ok && ref.UID == "" {
			i, ok = byName[types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}]
		}
		if ok {
			ref, key, ports = RefOf(reqs[i].Service), reqs[i].SharingKey, portsOf(reqs[i].Service)
		}
		for _, addr := range o.Addrs {
			fact(ref, addr, key, ports, "cloud")
		}
	}

	order := make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		si, sj := reqs[i].Service, reqs[j].Service
		return cmp.Or(si.CreationTimestamp.Time.Compare(sj.CreationTimestamp.Time),
			strings.Compare(si.Namespace, sj.Namespace), strings.Compare(si.Name, sj.Name))
	})
	for _, i := range order {
		r, err := a.parseRequest(reqs[i])
		if err != nil {
			continue // Allocate will report it
		}
		for _, f := range r.fams {
			want := r.requested[f]
			if !want.IsValid() {
				continue
			}
			p := a.poolOf(want)
			if p == nil || !p.serves(r.svc, r.pool) {
				continue
			}
			if u := a.addrs[want]; u != nil && a.compatible(want, u, r.ref, r.key, r.ports) != nil {
				continue
			}
			fact(r.ref, want, r.key, r.ports, "request")
		}
	}
	a.ready = true
	logger.V(2).Info("LoadBalancer address allocator restored", "services", len(a.holders), "addresses", len(a.addrs))
	return nil
}

// PoolUsage is how many addresses of one family of one pool are held.
type PoolUsage struct {
	Pool   string
	Family v1.IPFamily
	// Size is the number of addresses; Used how many are held.
	Size, Used uint64
}

// Usage returns the usage of each pool and family, in pool order (IPv4
// before IPv6), for metrics. It is safe for concurrent use.
func (a *LBAllocator) Usage() []PoolUsage {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []PoolUsage
	for _, p := range a.pools {
		for f, set := range p.sets {
			if set != nil {
				out = append(out, PoolUsage{Pool: p.name, Family: familyNames[f], Size: set.Size(), Used: set.Allocated()})
			}
		}
	}
	return out
}
