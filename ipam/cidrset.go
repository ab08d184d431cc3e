package ipam

import (
	"fmt"
	"net/netip"
)

// CIDRSet allocates equal-size subnets of a cluster prefix, IPv4 or IPv6:
// for example the /24 pod CIDRs of 10.0.0.0/8.
//
// AllocateNext always returns the lowest free subnet, so allocation order is
// deterministic. It costs O(log64 n) whatever the load: the set is a
// hierarchical bitmap whose nodes are allocated lazily, so a /32 cut into /64s
// (2^32 subnets) costs a few hundred bytes until it is used, and a successful
// AllocateNext does not allocate on the heap once the bitmap nodes it touches
// exist (they are kept when their subnets are released).
//
// A CIDRSet is safe for concurrent use by multiple goroutines.
type CIDRSet struct {
	cluster    netip.Prefix
	subnetBits int
	shift      uint // host bits of a subnet
	base       u128
	is4        bool

	set *syncBitmap
}

// NewCIDRSet returns an empty set of the subnets of length subnetBits in
// cluster. The cluster must be a valid, canonical prefix (no host bits set,
// not an IPv4-mapped IPv6 prefix), subnetBits must lie between cluster.Bits()
// and the address length, and the set may hold at most [MaxSetSize] subnets
// (subnetBits - cluster.Bits() <= 48). Otherwise the error wraps [ErrInvalid].
func NewCIDRSet(cluster netip.Prefix, subnetBits int) (*CIDRSet, error) {
	if err := checkPrefix(cluster); err != nil {
		return nil, fmt.Errorf("ipam: cluster CIDR: %w", err)
	}
	addrBits := cluster.Addr().BitLen()
	switch {
	case subnetBits < cluster.Bits():
		return nil, fmt.Errorf("ipam: subnet size /%d is larger than cluster CIDR %s: %w", subnetBits, cluster, ErrInvalid)
	case subnetBits > addrBits:
		return nil, fmt.Errorf("ipam: subnet size /%d is longer than an %s address (%d bits): %w", subnetBits, familyName(cluster.Addr()), addrBits, ErrInvalid)
	case subnetBits-cluster.Bits() > 48:
		return nil, fmt.Errorf("ipam: cluster CIDR %s holds 2^%d /%d subnets, more than the limit of 2^48; use a longer cluster prefix or a shorter subnet size: %w",
			cluster, subnetBits-cluster.Bits(), subnetBits, ErrInvalid)
	}
	return &CIDRSet{
		cluster:    cluster,
		subnetBits: subnetBits,
		shift:      uint(addrBits - subnetBits),
		base:       u128Of(cluster.Addr()),
		is4:        cluster.Addr().Is4(),
		set:        newSyncBitmap(1 << (subnetBits - cluster.Bits())),
	}, nil
}

// checkPrefix reports (wrapping ErrInvalid) a prefix that is invalid, has
// host bits set or is an IPv4-mapped IPv6 prefix.
func checkPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("invalid prefix %q: %w", p, ErrInvalid)
	case p.Addr().Is4In6():
		return fmt.Errorf("prefix %s is IPv4-mapped IPv6; write the IPv4 prefix: %w", p, ErrInvalid)
	case p != p.Masked():
		return fmt.Errorf("prefix %s has host bits set (did you mean %s?): %w", p, p.Masked(), ErrInvalid)
	}
	return nil
}

// Cluster returns the cluster prefix. It is safe for concurrent use.
func (s *CIDRSet) Cluster() netip.Prefix { return s.cluster }

// SubnetBits returns the prefix length of the subnets. It is safe for
// concurrent use.
func (s *CIDRSet) SubnetBits() int { return s.subnetBits }

// AllocateNext marks the lowest free subnet allocated and returns it. When
// every subnet is allocated it returns an error wrapping [ErrFull].
// It is safe for concurrent use.
func (s *CIDRSet) AllocateNext() (netip.Prefix, error) {
	i, ok := s.set.allocNext()
	if !ok {
		return netip.Prefix{}, fmt.Errorf("ipam: all %d /%d subnets of %s are allocated: %w", s.set.size(), s.subnetBits, s.cluster, ErrFull)
	}
	return s.prefix(i), nil
}

func (s *CIDRSet) prefix(i uint64) netip.Prefix {
	return netip.PrefixFrom(s.base.or(u128{0, i}.shl(s.shift)).addr(s.is4), s.subnetBits)
}

// span returns the subnet indexes [lo, hi) that p covers. A prefix longer
// than the subnets yields the one subnet that contains it.
func (s *CIDRSet) span(p netip.Prefix) (lo, hi uint64, err error) {
	if err := checkPrefix(p); err != nil {
		return 0, 0, fmt.Errorf("ipam: %w", err)
	}
	if p.Addr().Is4() != s.is4 || p.Bits() < s.cluster.Bits() || !s.cluster.Contains(p.Addr()) {
		return 0, 0, fmt.Errorf("ipam: %s is not inside cluster CIDR %s: %w", p, s.cluster, ErrOutOfRange)
	}
	lo = u128Of(p.Addr()).shr(s.shift).lo & (s.set.size() - 1)
	if p.Bits() >= s.subnetBits {
		return lo, lo + 1, nil
	}
	return lo, lo + 1<<(s.subnetBits-p.Bits()), nil
}

// Occupy marks every subnet that p covers allocated: p itself when it has the
// subnet size, every subnet inside it when it is shorter, and the subnet that
// contains it when it is longer (so that no other holder gets an overlapping
// subnet). Occupying an allocated subnet is not an error. A p outside the
// cluster (or of the other family) yields an error wrapping [ErrOutOfRange];
// a non-canonical p one wrapping [ErrInvalid]. Its cost does not grow with the
// width of p. It is safe for concurrent use.
func (s *CIDRSet) Occupy(p netip.Prefix) error {
	lo, hi, err := s.span(p)
	if err != nil {
		return err
	}
	s.set.mark(lo, hi, true)
	return nil
}

// Release marks every subnet that p covers free: p itself when it has the
// subnet size, every subnet inside it when it is shorter. Releasing a free
// subnet is not an error. A p longer than the subnet size is refused with an
// error wrapping [ErrInvalid], since freeing its whole subnet would free
// addresses it does not name; a p outside the cluster yields an error
// wrapping [ErrOutOfRange]. It is safe for concurrent use.
func (s *CIDRSet) Release(p netip.Prefix) error {
	lo, hi, err := s.span(p)
	if err != nil {
		return err
	}
	if p.Bits() > s.subnetBits {
		return fmt.Errorf("ipam: cannot release %s: it is only part of a /%d subnet: %w", p, s.subnetBits, ErrInvalid)
	}
	s.set.mark(lo, hi, false)
	return nil
}

// Has reports whether p is an allocated subnet of the set. It is false for a
// p that is not exactly one subnet of the set. It is safe for concurrent use.
func (s *CIDRSet) Has(p netip.Prefix) bool {
	if p.Bits() != s.subnetBits {
		return false
	}
	lo, _, err := s.span(p)
	if err != nil {
		return false
	}
	return s.set.test(lo)
}

// Size returns the number of subnets in the set, at most [MaxSetSize].
// It is safe for concurrent use.
func (s *CIDRSet) Size() uint64 { return s.set.size() }

// Allocated returns the number of allocated subnets. It is safe for
// concurrent use.
func (s *CIDRSet) Allocated() uint64 {
	return s.set.allocated()
}

// Free returns the number of free subnets. It is safe for concurrent use.
func (s *CIDRSet) Free() uint64 {
	return s.set.free()
}

// String returns a summary such as "10.0.0.0/8 /24: 3/65536 allocated".
// It is safe for concurrent use.
func (s *CIDRSet) String() string {
	return fmt.Sprintf("%s /%d: %d/%d allocated", s.cluster, s.subnetBits, s.Allocated(), s.Size())
}
