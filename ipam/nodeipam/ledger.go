package nodeipam

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/ccmkit/ccmkit/ipam"
)

// maxWideSlotBits bounds the node-mask subnets a pre-existing node CIDR wider
// than the node mask may cover and still be tracked (2^12).
const maxWideSlotBits = 12

// LedgerOptions configures a [Ledger]. The zero value of a mask size means
// its default.
type LedgerOptions struct {
	// ClusterCIDRs are the pod network: none, one prefix, or one IPv4 and
	// one IPv6 prefix. Their order is the order of the CIDRs Allocate
	// returns and of the CIDRs Order sorts.
	ClusterCIDRs []netip.Prefix
	// MaskSizeIPv4 is the prefix length of a Node's IPv4 CIDR (default
	// [DefaultMaskSizeIPv4]). It must be at least the IPv4 cluster CIDR's
	// length, and may be set only with an IPv4 cluster CIDR.
	MaskSizeIPv4 int
	// MaskSizeIPv6 is the same for IPv6 (default [DefaultMaskSizeIPv6]).
	MaskSizeIPv6 int
	// ServiceCIDRs are the service ranges, at most one per family. Every
	// node subnet overlapping one is occupied at once, so it never goes to
	// a Node. A service range of a family without a cluster CIDR, or
	// outside it, is ignored.
	ServiceCIDRs []netip.Prefix
	// UntrackedFamilies accepts pod CIDRs of a family that has no cluster
	// CIDR without reporting them (cloud mode, where the cloud chooses);
	// otherwise such a CIDR is a [ReasonInvalidPodCIDR] problem.
	UntrackedFamilies bool
}

// CIDRUsage is the use of one cluster CIDR.
type CIDRUsage struct {
	// ClusterCIDR is the cluster CIDR.
	ClusterCIDR netip.Prefix
	// MaskSize is the prefix length of a Node's CIDR in it.
	MaskSize int
	// Used counts the node subnets in use: held by Nodes, reserved for a
	// Node not yet updated, or overlapping a service range.
	Used uint64
	// Size is the number of node subnets of ClusterCIDR.
	Size uint64
}

// Problem is something wrong with a Node's pod CIDRs, to report with an
// Event: Reason is one of the Reason constants, Message says what and why.
type Problem struct {
	Reason  string
	Message string
}

// ExhaustedError reports that a cluster CIDR has no free node subnet. It
// matches [ipam.ErrFull] with [errors.Is].
type ExhaustedError struct {
	// Usage is the full cluster CIDR's use (Used == Size).
	Usage CIDRUsage
}

// Error implements error.
func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("nodeipam: every /%d subnet of cluster CIDR %s is in use (%d of %d)",
		e.Usage.MaskSize, e.Usage.ClusterCIDR, e.Usage.Used, e.Usage.Size)
}

// Unwrap returns [ipam.ErrFull].
func (e *ExhaustedError) Unwrap() error { return ipam.ErrFull }

// Ledger is the ownership bookkeeping of node IPAM, without any API client:
// which Node holds which node-mask subnet of the cluster CIDRs (one
// [ipam.CIDRSet] per family), which CIDRs are reserved for a Node not yet
// updated, which Node inherits a subnet that two Nodes' pod CIDRs overlap
// when its holder goes, and which Nodes wait for space.
//
// Nodes are identified by name and UID: a record of a Node name with
// another UID is a previous Node of that name, dropped before anything is
// given to the new one. Space is tracked per node-mask subnet ("slot"): a
// Node's pod CIDR narrower than the mask occupies the slot containing it, a
// wider one every slot inside it (at most 2^12). An overlap is the use of
// one slot by two Nodes: the first holds it, the others want it, and when
// the holder is forgotten the slot passes to the first of them by name
// instead of being freed.
//
// Methods that can free space return the Nodes waiting for it ("wake"),
// in name order: the caller retries them. Allocate records a Node that
// found a cluster CIDR full as waiting, until it gets CIDRs or is
// forgotten.
//
// A Ledger is safe for concurrent use: every method takes its mutex, which
// is never held across anything but memory operations. A caller must not
// run Allocate or Claim for the same Node concurrently (client-go's
// workqueue never hands one key to two workers).
type Ledger struct {
	untracked bool
	sets      []*ipam.CIDRSet // one per cluster CIDR, in their order

	mu      sync.Mutex
	records map[string]*nodeRecord // by Node name
	owners  map[netip.Prefix]string
	// contested Nodes have slots held by another Node (record.wanted).
	contested map[string]struct{}
	// starved Nodes found a cluster CIDR full.
	starved map[string]struct{}
}

// nodeRecord is what the ledger knows about one Node.
type nodeRecord struct {
	uid types.UID
	// spec is the Node's pod CIDRs as written that the record was built
	// from; nil for CIDRs reserved for the Node and not yet seen on it.
	spec []string
	// cidrs are the Node's pod CIDRs, or the ones reserved for it.
	cidrs []netip.Prefix
	// slots are the node-mask subnets of the sets this Node holds.
	slots []netip.Prefix
	// wanted are the subnets its CIDRs cover that another Node holds.
	wanted []netip.Prefix
}

// NewLedger returns an empty ledger with the service ranges occupied.
//
// Bad options yield an error wrapping [ipam.ErrInvalid] that names every
// problem: a non-canonical prefix, more than one cluster or service CIDR
// of a family, a negative mask size, a mask size set for a family without
// a cluster CIDR, shorter than its cluster CIDR or longer than the
// address, or a cluster CIDR cut into more than [ipam.MaxSetSize] subnets.
func NewLedger(opts LedgerOptions) (*Ledger, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("nodeipam: "+format+": %w", append(args, ipam.ErrInvalid)...))
	}
	var cluster [2]netip.Prefix // by family: 0 IPv4, 1 IPv6
	for _, p := range opts.ClusterCIDRs {
		if err := checkPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("nodeipam: cluster CIDR: %w", err))
			continue
		}
		f := family(p.Addr())
		if cluster[f].IsValid() {
			bad("cluster CIDRs %s and %s are both %s: at most one per family (dual-stack is one IPv4 and one IPv6)", cluster[f], p, familyName(p.Addr()))
			continue
		}
		cluster[f] = p
	}
	masks := [2]int{opts.MaskSizeIPv4, opts.MaskSizeIPv6}
	for f, name := range [2]string{"IPv4", "IPv6"} {
		size := masks[f]
		switch {
		case size < 0:
			bad("negative MaskSize%s %d", name, size)
		case size != 0 && !cluster[f].IsValid():
			bad("MaskSize%s is %d but there is no %s cluster CIDR", name, size, name)
		case size != 0 && size < cluster[f].Bits():
			bad("%s node mask size /%d is shorter than cluster CIDR %s: a Node's CIDR cannot be larger than the cluster's", name, size, cluster[f])
		case size > cluster[f].Addr().BitLen():
			bad("%s node mask size /%d is longer than an %s address", name, size, name)
		}
	}
	var service [2]netip.Prefix
	for _, p := range opts.ServiceCIDRs {
		if err := checkPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("nodeipam: service CIDR: %w", err))
			continue
		}
		f := family(p.Addr())
		if service[f].IsValid() {
			bad("service CIDRs %s and %s are both %s: at most one per family", service[f], p, familyName(p.Addr()))
			continue
		}
		service[f] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	defaults := [2]int{DefaultMaskSizeIPv4, DefaultMaskSizeIPv6}
	var sets []*ipam.CIDRSet
	for _, p := range opts.ClusterCIDRs {
		f := family(p.Addr())
		set, err := ipam.NewCIDRSet(p, cmp.Or(masks[f], defaults[f]))
		if err != nil {
			errs = append(errs, fmt.Errorf("nodeipam: %w", err))
			continue
		}
		if svc := service[f]; svc.IsValid() {
			switch {
			case svc.Bits() <= p.Bits() && svc.Contains(p.Addr()):
				_ = set.Occupy(p) // the service range covers the whole cluster
			case p.Bits() <= svc.Bits() && p.Contains(svc.Addr()):
				_ = set.Occupy(svc) // cannot fail: svc is canonical and inside
			}
		}
		sets = append(sets, set)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Ledger{
		untracked: opts.UntrackedFamilies,
		sets:      sets,
		records:   map[string]*nodeRecord{},
		owners:    map[netip.Prefix]string{},
		contested: map[string]struct{}{},
		starved:   map[string]struct{}{},
	}, nil
}

// checkPrefix reports (wrapping ipam.ErrInvalid) a prefix that is invalid,
// has host bits set or is an IPv4-mapped IPv6 prefix.
func checkPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("invalid prefix %q: %w", p, ipam.ErrInvalid)
	case p.Addr().Is4In6():
		return fmt.Errorf("prefix %s is IPv4-mapped IPv6; write the IPv4 prefix: %w", p, ipam.ErrInvalid)
	case p != p.Masked():
		return fmt.Errorf("prefix %s has host bits set (did you mean %s?): %w", p, p.Masked(), ipam.ErrInvalid)
	}
	return nil
}

// family returns 0 for IPv4, 1 for IPv6.
func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// familyName names the family of a for messages.
func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// ClusterCIDRs returns the cluster CIDRs, in their configured order.
func (l *Ledger) ClusterCIDRs() []netip.Prefix {
	out := make([]netip.Prefix, len(l.sets))
	for i, s := range l.sets {
		out[i] = s.Cluster()
	}
	return out
}

// Usage returns the use of each cluster CIDR, in their order. It is
// consistent: a Node's families are allocated and rolled back under one
// lock.
func (l *Ledger) Usage() []CIDRUsage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.usageLocked()
}

func (l *Ledger) usageLocked() []CIDRUsage {
	out := make([]CIDRUsage, 0, len(l.sets))
	for _, s := range l.sets {
		out = append(out, usageOf(s))
	}
	return out
}

func usageOf(s *ipam.CIDRSet) CIDRUsage {
	return CIDRUsage{ClusterCIDR: s.Cluster(), MaskSize: s.SubnetBits(), Used: s.Allocated(), Size: s.Size()}
}

// Holder returns the Node holding the node-mask subnet s (or the one
// containing s, for a narrower prefix), if any. A subnet in a service range
// has no holder.
func (l *Ledger) Holder(s netip.Prefix) (node string, ok bool) {
	set := l.setFor(s.Addr())
	if set == nil || !s.IsValid() {
		return "", false
	}
	slots, ok := slotsOf(set, s.Masked())
	if !ok || len(slots) != 1 {
		return "", false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	node, ok = l.owners[slots[0]]
	return node, ok
}

// CIDRs returns the pod CIDRs recorded for Node name (held or reserved)
// and its UID; ok is false when the ledger has no record of it.
func (l *Ledger) CIDRs(name string) (cidrs []netip.Prefix, uid types.UID, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec, ok := l.records[name]
	if !ok {
		return nil, "", false
	}
	return slices.Clone(rec.cidrs), rec.uid, true
}

// Waiting reports whether Node name found a cluster CIDR full at its last
// Allocate and has not been given CIDRs or been forgotten since.
func (l *Ledger) Waiting(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.starved[name]
	return ok
}

// Forget drops Node name's record, after its deletion: each slot it holds
// passes to a Node whose pod CIDRs want it, or is freed. It returns the
// waiting Nodes to retry when a slot was freed. Forgetting an unknown
// Node does nothing.
func (l *Ledger) Forget(name string) (wake []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.forgetLocked(name)
}

func (l *Ledger) forgetLocked(name string) (wake []string) {
	delete(l.starved, name)
	rec, ok := l.records[name]
	if !ok {
		return nil
	}
	delete(l.records, name)
	delete(l.contested, name)
	freed := false
	for _, s := range rec.slots {
		if l.owners[s] != name {
			continue
		}
		delete(l.owners, s)
		if heir := l.heirLocked(s); heir != "" {
			l.owners[s] = heir
			continue
		}
		_ = l.setFor(s.Addr()).Release(s) // cannot fail: s is a subnet of the set
		freed = true
	}
	if freed && len(l.starved) > 0 {
		wake = slices.Sorted(maps.Keys(l.starved))
		clear(l.starved)
	}
	return wake
}

// heirLocked gives slot s to the first contested Node (by name) that wants
// it, and returns its name, or "".
func (l *Ledger) heirLocked(s netip.Prefix) string {
	for _, n := range slices.Sorted(maps.Keys(l.contested)) {
		rec := l.records[n]
		i := slices.Index(rec.wanted, s)
		if i < 0 {
			continue
		}
		rec.wanted = slices.Delete(rec.wanted, i, i+1)
		rec.slots = append(rec.slots, s)
		if len(rec.wanted) == 0 {
			delete(l.contested, n)
		}
		return n
	}
	return ""
}

// setFor returns the set of a's family, or nil.
func (l *Ledger) setFor(a netip.Addr) *ipam.CIDRSet {
	for _, s := range l.sets {
		if s.Cluster().Addr().Is4() == a.Is4() {
			return s
		}
	}
	return nil
}

// Adopt records the pod CIDRs that Node name (uid) already has, as written
// in its spec (spec.podCIDRs), occupying them; they are parsed leniently
// (host bits are masked, as upstream does). It returns the problems to
// report: unparsable CIDRs, a family twice, CIDRs outside the cluster
// CIDRs or too wide to track ([ReasonInvalidPodCIDR]), and overlaps with
// another Node's CIDRs or a service range ([ReasonPodCIDRConflict]). What
// it can use is occupied whatever the problems: a Node's pod CIDRs are
// never changed. Adopting what the ledger already has for that Node
// (including CIDRs it reserved for it) changes nothing and returns no
// problem. A record of the Node with other CIDRs or another UID is
// forgotten first; the Nodes to retry are returned in wake.
func (l *Ledger) Adopt(name string, uid types.UID, spec []string) (problems []Problem, wake []string) {
	cidrs, problems := parseSpec(spec)
	l.mu.Lock()
	defer l.mu.Unlock()
	if rec := l.records[name]; rec != nil && rec.uid == uid {
		if slices.Equal(rec.spec, spec) {
			return nil, nil // known
		}
		if rec.spec == nil && len(problems) == 0 && slices.Equal(rec.cidrs, cidrs) {
			rec.spec = slices.Clone(spec) // our reservation, now on the Node
			return nil, nil
		}
	}
	wake = l.forgetLocked(name)
	rec := &nodeRecord{uid: uid, spec: slices.Clone(spec), cidrs: cidrs}
	if spec == nil {
		rec.spec = []string{} // adopted, not reserved
	}
	l.records[name] = rec
	problems = append(problems, l.claimLocked(name, rec, false)...)
	return problems, wake
}

// parseSpec parses a Node's pod CIDRs leniently; it reports what it cannot
// use.
func parseSpec(spec []string) ([]netip.Prefix, []Problem) {
	var out []netip.Prefix
	var problems []Problem
	for _, s := range spec {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			problems = append(problems, Problem{ReasonInvalidPodCIDR, fmt.Sprintf("Pod CIDR %q is not a valid CIDR; it is ignored", s)})
			continue
		}
		p = p.Masked()
		if i := slices.IndexFunc(out, func(q netip.Prefix) bool { return q.Addr().Is4() == p.Addr().Is4() }); i >= 0 {
			problems = append(problems, Problem{ReasonInvalidPodCIDR, fmt.Sprintf("Pod CIDRs %s and %s are both %s; only the first is tracked", out[i], p, familyName(p.Addr()))})
			continue
		}
		out = append(out, p)
	}
	return out, problems
}

// claimLocked occupies the slots that rec.cidrs cover for Node name. A slot
// held by another Node is recorded as wanted (it passes to name when the
// holder goes); one in a service range is reported. When strict, nothing is
// taken if there is any problem.
func (l *Ledger) claimLocked(name string, rec *nodeRecord, strict bool) []Problem {
	var problems []Problem
	var take, wanted []netip.Prefix
	for _, p := range rec.cidrs {
		set := l.setFor(p.Addr())
		if set == nil {
			if !l.untracked {
				problems = append(problems, Problem{ReasonInvalidPodCIDR, fmt.Sprintf("Pod CIDR %s: there is no %s cluster CIDR", p, familyName(p.Addr()))})
			}
			continue // untracked family
		}
		cl := set.Cluster()
		if p.Bits() < cl.Bits() || !cl.Contains(p.Addr()) {
			problems = append(problems, Problem{ReasonInvalidPodCIDR, fmt.Sprintf("Pod CIDR %s is outside cluster CIDR %s", p, cl)})
			continue
		}
		slots, ok := slotsOf(set, p)
		if !ok {
			problems = append(problems, Problem{ReasonInvalidPodCIDR, fmt.Sprintf("Pod CIDR %s is more than 2^%d times the /%d node mask size; it is not tracked", p, maxWideSlotBits, set.SubnetBits())})
			continue
		}
		holders := map[string]bool{}
		service := false
		for _, s := range slots {
			owner, held := l.owners[s]
			switch {
			case held && owner == name:
			case held:
				wanted = append(wanted, s)
				holders[owner] = true
			case set.Has(s):
				service = true
			default:
				take = append(take, s)
			}
		}
		for _, h := range slices.Sorted(maps.Keys(holders)) {
			problems = append(problems, Problem{ReasonPodCIDRConflict, fmt.Sprintf("Pod CIDR %s overlaps the pod CIDRs of Node %s", p, h)})
		}
		if service {
			problems = append(problems, Problem{ReasonPodCIDRConflict, fmt.Sprintf("Pod CIDR %s overlaps the service range", p)})
		}
	}
	if strict && len(problems) > 0 {
		return problems
	}
	for _, s := range take {
		_ = l.setFor(s.Addr()).Occupy(s) // cannot fail: s is a free subnet of the set
		l.owners[s] = name
	}
	rec.slots = append(rec.slots, take...)
	rec.wanted = wanted
	if len(wanted) > 0 {
		l.contested[name] = struct{}{}
	}
	return problems
}

// slotsOf returns the node-mask subnets of set that p (inside its cluster)
// covers: the one containing p when p is narrower, every one inside p when
// it is wider (ok is false past 2^maxWideSlotBits).
func slotsOf(set *ipam.CIDRSet, p netip.Prefix) ([]netip.Prefix, bool) {
	bits := set.SubnetBits()
	if p.Bits() >= bits {
		return []netip.Prefix{netip.PrefixFrom(p.Addr(), bits).Masked()}, true
	}
	k := bits - p.Bits()
	if k > maxWideSlotBits {
		return nil, false
	}
	out := make([]netip.Prefix, 0, 1<<k)
	s := netip.PrefixFrom(p.Addr(), bits)
	for range 1 << k {
		out = append(out, s)
		s = netip.PrefixFrom(lastAddr(s).Next(), bits)
	}
	return out, true
}

// lastAddr returns the highest address of the canonical prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	off := 0
	if p.Addr().Is4() {
		off = 12
	}
	for i := off*8 + p.Bits(); i < 128; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
}

// Reserved returns the CIDRs held by or reserved for Node name with that
// uid, for writing them (again) to the Node. When the ledger has nothing
// for it, or only a record of a previous Node of that name, or one without
// usable CIDRs, it returns no CIDRs, after forgetting that record: the
// Nodes to retry are returned in wake.
func (l *Ledger) Reserved(name string, uid types.UID) (cidrs []netip.Prefix, wake []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reservedLocked(name, uid)
}

func (l *Ledger) reservedLocked(name string, uid types.UID) (cidrs []netip.Prefix, wake []string) {
	rec := l.records[name]
	if rec == nil {
		return nil, nil
	}
	if rec.uid == uid && len(rec.cidrs) > 0 {
		return slices.Clone(rec.cidrs), nil
	}
	return nil, l.forgetLocked(name)
}

// Allocate returns pod CIDRs for Node name (uid), which has none: the ones
// already reserved for it (see Reserved), else the lowest free subnet of
// every cluster CIDR, reserved for it until it is forgotten. Allocation is
// all or nothing: when a cluster CIDR is full, the subnets taken in the
// others are released, the Node is recorded as waiting (its name will be
// in the wake list of the call that frees a subnet) and the error is an
// [*ExhaustedError] for the full cluster CIDR, matching [ipam.ErrFull].
// Without cluster CIDRs the error wraps [ipam.ErrInvalid].
func (l *Ledger) Allocate(name string, uid types.UID) (cidrs []netip.Prefix, wake []string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cidrs, wake = l.reservedLocked(name, uid); len(cidrs) > 0 {
		return cidrs, wake, nil
	}
	if len(l.sets) == 0 {
		return nil, wake, fmt.Errorf("nodeipam: allocate for node %s: no cluster CIDR: %w", name, ipam.ErrInvalid)
	}
	got := make([]netip.Prefix, 0, len(l.sets))
	for _, set := range l.sets {
		p, err := set.AllocateNext()
		if err != nil { // ErrFull
			for _, q := range got {
				_ = l.setFor(q.Addr()).Release(q)
				delete(l.owners, q)
			}
			l.starved[name] = struct{}{}
			return nil, wake, &ExhaustedError{Usage: usageOf(set)}
		}
		got = append(got, p)
		l.owners[p] = name
	}
	delete(l.starved, name)
	l.records[name] = &nodeRecord{uid: uid, cidrs: got, slots: slices.Clone(got)}
	return slices.Clone(got), wake, nil
}

// Claim reserves cidrs, chosen by someone else (the cloud), for Node name
// (uid), all or nothing: when any of them is unusable (outside the cluster
// CIDRs, too wide, overlapping another Node's CIDRs or a service range, or
// of a family without a cluster CIDR unless UntrackedFamilies) nothing is
// taken and the problems are returned. cidrs must be canonical, at most
// one per family (see Order). A previous record of the Node is forgotten
// first; the Nodes to retry are returned in wake.
func (l *Ledger) Claim(name string, uid types.UID, cidrs []netip.Prefix) (problems []Problem, wake []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	wake = l.forgetLocked(name)
	rec := &nodeRecord{uid: uid, cidrs: slices.Clone(cidrs)}
	problems = l.claimLocked(name, rec, true)
	if len(problems) == 0 {
		l.records[name] = rec
	}
	return problems, wake
}

// Order validates CIDRs chosen by someone else (the cloud) and returns
// them in the order of the cluster CIDRs (families without one last, in
// their given order). Errors wrap [ipam.ErrInvalid]: a non-canonical
// prefix, or two of one family.
func (l *Ledger) Order(cidrs []netip.Prefix) ([]netip.Prefix, error) {
	var seen [2]bool
	for _, p := range cidrs {
		if err := checkPrefix(p); err != nil {
			return nil, fmt.Errorf("nodeipam: %w", err)
		}
		f := family(p.Addr())
		if seen[f] {
			return nil, fmt.Errorf("nodeipam: more than one %s pod CIDR (%v): %w", familyName(p.Addr()), cidrs, ipam.ErrInvalid)
		}
		seen[f] = true
	}
	rank := func(p netip.Prefix) int {
		for i, s := range l.sets {
			if s.Cluster().Addr().Is4() == p.Addr().Is4() {
				return i
			}
		}
		return len(l.sets)
	}
	out := slices.Clone(cidrs)
	slices.SortStableFunc(out, func(a, b netip.Prefix) int { return rank(a) - rank(b) })
	return out, nil
}

// MissingFamilies returns the families of the cluster CIDRs ("IPv4",
// "IPv6") that cidrs have none of: on a dual-stack cluster, a Node given
// only one family is single-stack.
func (l *Ledger) MissingFamilies(cidrs []netip.Prefix) []string {
	var out []string
	for _, s := range l.sets {
		is4 := s.Cluster().Addr().Is4()
		if !slices.ContainsFunc(cidrs, func(p netip.Prefix) bool { return p.Addr().Is4() == is4 }) {
			out = append(out, familyName(s.Cluster().Addr()))
		}
	}
	return out
}

// check verifies the ledger's invariants: every used subnet is owned by
// exactly one live record or lies in a service range, every record's slots
// are owned by it, and every wanted slot is held by another Node. For
// tests.
func (l *Ledger) check(service []netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	owned := map[netip.Prefix]string{}
	for name, rec := range l.records {
		for _, s := range rec.slots {
			if l.owners[s] != name {
				errs = append(errs, fmt.Errorf("slot %s of %s is owned by %q", s, name, l.owners[s]))
			}
			if _, dup := owned[s]; dup {
				errs = append(errs, fmt.Errorf("slot %s listed twice", s))
			}
			owned[s] = name
		}
		for _, s := range rec.wanted {
			if owner, ok := l.owners[s]; !ok || owner == name {
				errs = append(errs, fmt.Errorf("%s wants %s, held by %q", name, s, owner))
			}
		}
		if _, contested := l.contested[name]; contested != (len(rec.wanted) > 0) {
			errs = append(errs, fmt.Errorf("%s: contested is %v with %d wanted", name, contested, len(rec.wanted)))
		}
	}
	if len(owned) != len(l.owners) {
		errs = append(errs, fmt.Errorf("%d owners for %d owned slots", len(l.owners), len(owned)))
	}
	for n := range l.starved {
		if _, ok := l.records[n]; ok {
			errs = append(errs, fmt.Errorf("%s is waiting but has a record", n))
		}
	}
	for _, set := range l.sets {
		var want uint64
		for s := range owned {
			if s.Addr().Is4() == set.Cluster().Addr().Is4() {
				want++
				if !set.Has(s) {
					errs = append(errs, fmt.Errorf("owned slot %s is free", s))
				}
			}
		}
		for _, svc := range service {
			cl := set.Cluster()
			if svc.Addr().Is4() != cl.Addr().Is4() || svc.Bits() < cl.Bits() || !cl.Contains(svc.Addr()) {
				continue
			}
			slots, ok := slotsOf(set, svc)
			if !ok {
				continue
			}
			for _, s := range slots {
				if !set.Has(s) {
					errs = append(errs, fmt.Errorf("service subnet %s is free", s))
				}
				if o, ok := l.owners[s]; ok {
					errs = append(errs, fmt.Errorf("service subnet %s is owned by %s", s, o))
				}
				want++
			}
		}
		if got := set.Allocated(); got != want {
			errs = append(errs, fmt.Errorf("%s: %d subnets used, want %d (owned + service)", set.Cluster(), got, want))
		}
	}
	return errors.Join(errs...)
}
