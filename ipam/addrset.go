package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// AddrSet allocates single addresses from one or more ranges of one IP
// family: the core of an address pool, used by [LBAllocator] and usable
// alone.
//
// AllocateNext returns the lowest free address (ranges in address order), in
// O(log64 n) whatever the load, with no heap allocation once the bitmap nodes
// it touches exist; see [CIDRSet] for the structure.
//
// An AddrSet is safe for concurrent use by multiple goroutines.
type AddrSet struct {
	ranges []setRange // sorted by address
	is4    bool

	set *syncBitmap
}

type setRange struct {
	first u128
	off   uint64 // index of first in the bitmap
	n     uint64 // addresses in the range
	r     Range
}

// NewAddrSet returns an empty set of the addresses of ranges. There must be
// at least one range; every range must be valid (see [Range.Validate]), all
// of one family, none overlapping another, and together hold at most
// [MaxSetSize] addresses. Otherwise the error wraps [ErrInvalid].
func NewAddrSet(ranges ...Range) (*AddrSet, error) {
	if len(ranges) == 0 {
		return nil, fmt.Errorf("ipam: address set needs at least one range: %w", ErrInvalid)
	}
	for _, r := range ranges {
		if err := r.Validate(); err != nil {
			return nil, err
		}
		if r.First.Is4() != ranges[0].First.Is4() {
			return nil, fmt.Errorf("ipam: address set mixes IPv4 and IPv6 (%s and %s): %w", ranges[0], r, ErrInvalid)
		}
	}
	if err := checkOverlaps(ranges); err != nil {
		return nil, fmt.Errorf("ipam: address set: %w", err)
	}
	s := &AddrSet{is4: ranges[0].First.Is4()}
	sorted := slices.Clone(ranges)
	slices.SortFunc(sorted, func(a, b Range) int { return a.First.Compare(b.First) })
	var total uint64
	for _, r := range sorted {
		n, ok := r.size()
		if !ok || total+n > MaxSetSize {
			return nil, fmt.Errorf("ipam: address set %s holds more than 2^48 addresses; use smaller ranges (e.g. a /80 or longer IPv6 prefix): %w", r, ErrInvalid)
		}
		s.ranges = append(s.ranges, setRange{first: u128Of(r.First), off: total, n: n, r: r})
		total += n
	}
	s.set = newSyncBitmap(total)
	return s, nil
}

// Ranges returns the ranges of the set in address order. It is safe for
// concurrent use.
func (s *AddrSet) Ranges() []Range {
	out := make([]Range, len(s.ranges))
	for i, r := range s.ranges {
		out[i] = r.r
	}
	return out
}

// Is4 reports whether the set holds IPv4 addresses. It is safe for concurrent
// use.
func (s *AddrSet) Is4() bool { return s.is4 }

// index returns the bitmap index of a, or ok false if a is in no range.
func (s *AddrSet) index(a netip.Addr) (uint64, bool) {
	if !a.IsValid() || a.Is4() != s.is4 || a.Zone() != "" {
		return 0, false
	}
	u := u128Of(a)
	// The last range whose first address is <= a.
	lo, hi := 0, len(s.ranges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.ranges[m].first.cmp(u) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return 0, false
	}
	r := &s.ranges[lo-1]
	d := u.sub(r.first)
	if d.hi != 0 || d.lo >= r.n {
		return 0, false
	}
	return r.off + d.lo, true
}

// addr returns the address at bitmap index i.
func (s *AddrSet) addr(i uint64) netip.Addr {
	lo, hi := 0, len(s.ranges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.ranges[m].off <= i {
			lo = m + 1
		} else {
			hi = m
		}
	}
	r := &s.ranges[lo-1]
	return r.first.add(i - r.off).addr(s.is4)
}

func (s *AddrSet) rangesString() string {
	names := make([]string, len(s.ranges))
	for i, r := range s.ranges {
		names[i] = r.r.String()
	}
	return strings.Join(names, ",")
}

func (s *AddrSet) outOfRange(a netip.Addr) error {
	return fmt.Errorf("ipam: address %s is not in %s: %w", a, s.rangesString(), ErrOutOfRange)
}

// AllocateNext marks the lowest free address allocated and returns it. When
// every address is allocated it returns an error wrapping [ErrFull].
// It is safe for concurrent use.
func (s *AddrSet) AllocateNext() (netip.Addr, error) {
	i, ok := s.set.allocNext()
	if !ok {
		return netip.Addr{}, fmt.Errorf("ipam: all %d addresses of %s are allocated: %w", s.set.size(), s.rangesString(), ErrFull)
	}
	return s.addr(i), nil
}

// Occupy marks a allocated; occupying an allocated address is not an error.
// An address in none of the ranges yields an error wrapping [ErrOutOfRange].
// It is safe for concurrent use.
func (s *AddrSet) Occupy(a netip.Addr) error {
	i, ok := s.index(a)
	if !ok {
		return s.outOfRange(a)
	}
	s.set.mark(i, i+1, true)
	return nil
}

// Release marks a free; releasing a free address is not an error. An address
// in none of the ranges yields an error wrapping [ErrOutOfRange]. It is safe
// for concurrent use.
func (s *AddrSet) Release(a netip.Addr) error {
	i, ok := s.index(a)
	if !ok {
		return s.outOfRange(a)
	}
	s.set.mark(i, i+1, false)
	return nil
}

// Contains reports whether a lies in one of the ranges. It is safe for
// concurrent use.
func (s *AddrSet) Contains(a netip.Addr) bool {
	_, ok := s.index(a)
	return ok
}

// Has reports whether a is allocated. It is safe for concurrent use.
func (s *AddrSet) Has(a netip.Addr) bool {
	i, ok := s.index(a)
	if !ok {
		return false
	}
	return s.set.test(i)
}

// Size returns the number of addresses in the set. It is safe for concurrent
// use.
func (s *AddrSet) Size() uint64 { return s.set.size() }

// Allocated returns the number of allocated addresses. It is safe for
// concurrent use.
func (s *AddrSet) Allocated() uint64 {
	return s.set.allocated()
}

// Free returns the number of free addresses. It is safe for concurrent use.
func (s *AddrSet) Free() uint64 {
	return s.set.free()
}
