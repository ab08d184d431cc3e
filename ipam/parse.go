package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Range is an inclusive range of addresses of one IP family, such as
// 10.0.0.10-10.0.0.20. The zero Range is invalid. A Range is a value: safe
// for concurrent use.
type Range struct {
	// First is the lowest address of the range.
	First netip.Addr
	// Last is the highest address of the range; First <= Last.
	Last netip.Addr
}

// PrefixRange returns the range of every address of the prefix p, network
// and broadcast addresses included. p must be valid and canonical (see
// [ParseCIDR]); otherwise it returns the zero Range, which [Range.Validate]
// and [NewAddrSet] reject with [ErrInvalid]. It is a pure function.
func PrefixRange(p netip.Prefix) Range {
	if checkPrefix(p) != nil {
		return Range{}
	}
	return Range{First: p.Addr(), Last: lastAddr(p)}
}

// Validate returns nil for a usable range, else an error wrapping
// [ErrInvalid]: both ends must be valid, unzoned, of the same family (no
// IPv4-mapped IPv6) and First <= Last.
func (r Range) Validate() error {
	switch {
	case !r.First.IsValid() || !r.Last.IsValid():
		return fmt.Errorf("ipam: range %s: both ends must be set: %w", r, ErrInvalid)
	case r.First.Zone() != "" || r.Last.Zone() != "":
		return fmt.Errorf("ipam: range %s: addresses must not have a zone: %w", r, ErrInvalid)
	case r.First.Is4In6() || r.Last.Is4In6():
		return fmt.Errorf("ipam: range %s: IPv4-mapped IPv6 address; write the IPv4 address: %w", r, ErrInvalid)
	case r.First.Is4() != r.Last.Is4():
		return fmt.Errorf("ipam: range %s mixes IPv4 and IPv6: %w", r, ErrInvalid)
	case r.Last.Less(r.First):
		return fmt.Errorf("ipam: range %s: first address is above the last: %w", r, ErrInvalid)
	}
	return nil
}

// Contains reports whether a lies in the range (same family, no mapping).
func (r Range) Contains(a netip.Addr) bool {
	return a.IsValid() && a.Is4() == r.First.Is4() && !a.Less(r.First) && !r.Last.Less(a)
}

// Overlaps reports whether the ranges share an address.
func (r Range) Overlaps(o Range) bool {
	return r.First.Is4() == o.First.Is4() && !r.Last.Less(o.First) && !o.Last.Less(r.First)
}

// String returns "first-last", or the single address for a range of one.
func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// size returns the number of addresses of a valid range; ok is false when it
// exceeds MaxSetSize.
func (r Range) size() (n uint64, ok bool) {
	d := u128Of(r.Last).sub(u128Of(r.First))
	if d.hi != 0 || d.lo >= MaxSetSize {
		return 0, false
	}
	return d.lo + 1, true
}

// ParseCIDR parses a canonical CIDR prefix such as "10.0.0.0/8" or
// "fd00::/48". It rejects, with an error wrapping [ErrInvalid], anything
// [netip.ParsePrefix] rejects (leading zeros, zones, missing length), a prefix
// with host bits set ("10.0.0.1/8": the error suggests "10.0.0.0/8") and an
// IPv4-mapped IPv6 prefix. It never panics.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ipam: parse CIDR %q: %w: %w", s, err, ErrInvalid)
	}
	if err := checkPrefix(p); err != nil {
		return netip.Prefix{}, fmt.Errorf("ipam: parse CIDR %q: %w", s, err)
	}
	return p, nil
}

// ParseCIDRs parses a comma-separated list of CIDRs such as
// "10.0.0.0/8,fd00::/48" (the form of --cluster-cidr). Spaces around an entry
// are ignored. Each entry is parsed by [ParseCIDR]; an empty list, an empty
// entry, and entries that overlap are rejected. Errors wrap [ErrInvalid].
// It never panics.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("ipam: parse CIDR list %q: empty list: %w", s, ErrInvalid)
	}
	var out []netip.Prefix
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return nil, fmt.Errorf("ipam: parse CIDR list %q: entry %d is empty: %w", s, i+1, ErrInvalid)
		}
		p, err := ParseCIDR(f)
		if err != nil {
			return nil, err
		}
		for _, q := range out {
			if q.Overlaps(p) {
				return nil, fmt.Errorf("ipam: parse CIDR list %q: %s overlaps %s: %w", s, p, q, ErrInvalid)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseRange parses one address range in any of three forms: "first-last"
// (inclusive, e.g. "10.0.0.10-10.0.0.20", spaces around the dash allowed), a
// CIDR (every address of it, network and broadcast included) or a single
// address. Both ends must be of one family, first <= last; leading zeros,
// zones and IPv4-mapped IPv6 addresses are rejected. Errors wrap
// [ErrInvalid]. It never panics.
func ParseRange(s string) (Range, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Range{}, fmt.Errorf("ipam: parse range %q: empty: %w", s, ErrInvalid)
	}
	if strings.Contains(t, "/") {
		p, err := ParseCIDR(t)
		if err != nil {
			return Range{}, fmt.Errorf("ipam: parse range %q: %w", s, err)
		}
		return PrefixRange(p), nil
	}
	first, last, isRange := strings.Cut(t, "-")
	a, err := netip.ParseAddr(strings.TrimSpace(first))
	if err != nil {
		return Range{}, fmt.Errorf("ipam: parse range %q: first address: %w: %w", s, err, ErrInvalid)
	}
	b := a
	if isRange {
		if b, err = netip.ParseAddr(strings.TrimSpace(last)); err != nil {
			return Range{}, fmt.Errorf("ipam: parse range %q: last address: %w: %w", s, err, ErrInvalid)
		}
	}
	r := Range{First: a, Last: b}
	if err := r.Validate(); err != nil {
		return Range{}, fmt.Errorf("ipam: parse range %q: %w", s, err)
	}
	return r, nil
}

// ParseRanges parses a comma-separated list of [ParseRange] entries, such as
// "10.0.0.10-10.0.0.20, 192.0.2.0/28, 2001:db8::/120". An empty list, an
// empty entry and overlapping entries are rejected. Errors wrap [ErrInvalid].
// It never panics.
func ParseRanges(s string) ([]Range, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("ipam: parse range list %q: empty list: %w", s, ErrInvalid)
	}
	var out []Range
	for i, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			return nil, fmt.Errorf("ipam: parse range list %q: entry %d is empty: %w", s, i+1, ErrInvalid)
		}
		r, err := ParseRange(f)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := checkOverlaps(out); err != nil {
		return nil, fmt.Errorf("ipam: parse range list %q: %w", s, err)
	}
	return out, nil
}

// checkOverlaps returns an error wrapping ErrInvalid naming two overlapping
// ranges of rs (which must be valid), or nil.
func checkOverlaps(rs []Range) error {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b Range) int { return a.First.Compare(b.First) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i-1].Overlaps(sorted[i]) {
			return fmt.Errorf("range %s overlaps %s: %w", sorted[i-1], sorted[i], ErrInvalid)
		}
	}
	return nil
}
