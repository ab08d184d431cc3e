package ipam

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// u128 is an address as a 128-bit unsigned integer; IPv4 addresses use the
// low 32 bits.
type u128 struct{ hi, lo uint64 }

func u128Of(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) add(v uint64) u128 {
	lo, c := bits.Add64(u.lo, v, 0)
	return u128{u.hi + c, lo}
}

func (u u128) sub(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, b)
	return u128{hi, lo}
}

func (u u128) or(v u128) u128 { return u128{u.hi | v.hi, u.lo | v.lo} }

func (u u128) cmp(v u128) int {
	switch {
	case u.hi < v.hi || u.hi == v.hi && u.lo < v.lo:
		return -1
	case u == v:
		return 0
	}
	return 1
}

// shl shifts left by n < 128 bits.
func (u u128) shl(n uint) u128 {
	if n >= 64 {
		return u128{u.lo << (n - 64), 0}
	}
	return u128{u.hi<<n | u.lo>>(64-n), u.lo << n}
}

// shr shifts right by n < 128 bits.
func (u u128) shr(n uint) u128 {
	if n >= 64 {
		return u128{0, u.hi >> (n - 64)}
	}
	return u128{u.hi >> n, u.lo>>n | u.hi<<(64-n)}
}

// hostMask returns the mask of the low hostBits bits (hostBits <= 128).
func hostMask(hostBits uint) u128 {
	switch {
	case hostBits == 0:
		return u128{}
	case hostBits >= 128:
		return u128{^uint64(0), ^uint64(0)}
	case hostBits >= 64:
		return u128{^uint64(0) >> (128 - hostBits), ^uint64(0)}
	}
	return u128{0, ^uint64(0) >> (64 - hostBits)}
}

// lastAddr returns the highest address of the canonical prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	return u128Of(p.Addr()).or(hostMask(uint(p.Addr().BitLen() - p.Bits()))).addr(p.Addr().Is4())
}

// familyName names the family of a for messages.
func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
