// Package bench compares ccmkit's ipam sets with the upstream allocators of
// k8s.io/kubernetes on the same work. It is its own module so that ccmkit
// does not depend on k8s.io/kubernetes.
package bench

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/ccmkit/ccmkit/ipam"
	"k8s.io/kubernetes/pkg/controller/nodeipam/ipam/cidrset"
	"k8s.io/kubernetes/pkg/registry/core/service/ipallocator"
)

// cidrAllocator is the work both implementations do in the CIDR benchmarks.
type cidrAllocator interface {
	next(b *testing.B)
	release(b *testing.B, i int)
}

type ccmkitCIDR struct {
	s        *ipam.CIDRSet
	prefixes []netip.Prefix
}

func (c *ccmkitCIDR) next(b *testing.B) {
	if _, err := c.s.AllocateNext(); err != nil {
		b.Fatal(err)
	}
}

func (c *ccmkitCIDR) release(b *testing.B, i int) {
	if err := c.s.Release(c.prefixes[i]); err != nil {
		b.Fatal(err)
	}
}

type upstreamCIDR struct {
	s        *cidrset.CidrSet
	prefixes []*net.IPNet
}

func (c *upstreamCIDR) next(b *testing.B) {
	if _, err := c.s.AllocateNext(); err != nil {
		b.Fatal(err)
	}
}

func (c *upstreamCIDR) release(b *testing.B, i int) {
	if err := c.s.Release(c.prefixes[i]); err != nil {
		b.Fatal(err)
	}
}

type cidrCase struct {
	family  string
	cluster netip.Prefix
	bits    int
}

func (cc cidrCase) size() int { return 1 << (cc.bits - cc.cluster.Bits()) }

// subnets returns every subnet of the case, in order, in both forms.
func (cc cidrCase) subnets() ([]netip.Prefix, []*net.IPNet) {
	s, err := ipam.NewCIDRSet(cc.cluster, cc.bits)
	if err != nil {
		panic(err)
	}
	var ps []netip.Prefix
	var ns []*net.IPNet
	for range cc.size() {
		p, err := s.AllocateNext()
		if err != nil {
			panic(err)
		}
		ps = append(ps, p)
		ns = append(ns, &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return ps, ns
}

// impls returns constructors of an empty set of each implementation.
func (cc cidrCase) impls(b *testing.B) []struct {
	name string
	make func() cidrAllocator
} {
	ps, ns := cc.subnets()
	clusterNet := &net.IPNet{IP: cc.cluster.Addr().AsSlice(), Mask: net.CIDRMask(cc.cluster.Bits(), cc.cluster.Addr().BitLen())}
	return []struct {
		name string
		make func() cidrAllocator
	}{
		{"ccmkit", func() cidrAllocator {
			s, err := ipam.NewCIDRSet(cc.cluster, cc.bits)
			if err != nil {
				b.Fatal(err)
			}
			return &ccmkitCIDR{s: s, prefixes: ps}
		}},
		{"upstream", func() cidrAllocator {
			s, err := cidrset.NewCIDRSet(clusterNet, cc.bits)
			if err != nil {
				b.Fatal(err)
			}
			return &upstreamCIDR{s: s, prefixes: ns}
		}},
	}
}

var (
	ipv4Case = cidrCase{"ipv4", netip.MustParsePrefix("10.0.0.0/8"), 24}
	ipv6Case = cidrCase{"ipv6", netip.MustParsePrefix("fd00:1234:5678::/48"), 64}
)

// BenchmarkCIDRFill measures AllocateNext while filling a cluster CIDR
// (10.0.0.0/8 into /24s, fd00:1234:5678::/48 into /64s) from empty to full,
// starting over with a new set (off the clock) when it is full.
func BenchmarkCIDRFill(b *testing.B) {
	for _, cc := range []cidrCase{ipv4Case, ipv6Case} {
		b.Run("family="+cc.family, func(b *testing.B) {
			for _, impl := range cc.impls(b) {
				b.Run("impl="+impl.name, func(b *testing.B) {
					b.ReportAllocs()
					s := impl.make()
					left := cc.size()
					for b.Loop() {
						if left == 0 {
							b.StopTimer()
							s, left = impl.make(), cc.size()
							b.StartTimer()
						}
						s.next(b)
						left--
					}
				})
			}
		})
	}
}

// BenchmarkCIDRChurnFull measures, on a full 10.0.0.0/8 cut into /24s,
// releasing a random subnet and allocating one (which must find it).
func BenchmarkCIDRChurnFull(b *testing.B) {
	cc := ipv4Case
	for _, impl := range cc.impls(b) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			b.ReportAllocs()
			s := impl.make()
			for range cc.size() {
				s.next(b)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				s.release(b, rng.IntN(cc.size()))
				s.next(b)
			}
		})
	}
}

// BenchmarkPoolAllocateAtLoad measures, on the addresses of 10.0.0.0/16 at
// 99.9% load (65 addresses free), allocating the next free address and
// releasing it. Upstream is the Service ClusterIP allocator, which keeps the
// network and broadcast addresses out of the range and scans from a random
// offset in its upper band first.
//
// Two ways to reach the load:
//   - fill=random: the same 65 random addresses are free in both;
//   - fill=allocnext: each allocator is filled by its own AllocateNext, the
//     state it reaches in use. Upstream then has its free addresses in the
//     low band it scans last; ccmkit has them at the top.
func BenchmarkPoolAllocateAtLoad(b *testing.B) {
	prefix := netip.MustParsePrefix("10.0.0.0/16")
	const size = 1 << 16
	const free = size / 1000
	rng := rand.New(rand.NewPCG(3, 4))
	freeSet := map[int]bool{}
	for len(freeSet) < free {
		freeSet[1+rng.IntN(size-2)] = true // never network or broadcast
	}
	addrAt := func(i int) netip.Addr {
		a := prefix.Addr().As4()
		a[2], a[3] = byte(i>>8), byte(i)
		return netip.AddrFrom4(a)
	}
	newCCMKit := func(b *testing.B, random bool) *ipam.AddrSet {
		s, err := ipam.NewAddrSet(ipam.PrefixRange(prefix))
		if err != nil {
			b.Fatal(err)
		}
		// Keep network and broadcast out, as upstream does.
		for _, a := range []netip.Addr{addrAt(0), addrAt(size - 1)} {
			if err := s.Occupy(a); err != nil {
				b.Fatal(err)
			}
		}
		for i := 1; i < size-1; i++ {
			var err error
			switch {
			case random && !freeSet[i]:
				err = s.Occupy(addrAt(i))
			case !random && s.Free() > free:
				_, err = s.AllocateNext()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if s.Free() != free {
			b.Fatalf("%d free, want %d", s.Free(), free)
		}
		return s
	}
	newUpstream := func(b *testing.B, random bool) *ipallocator.Range {
		r, err := ipallocator.NewInMemory(&net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(16, 32)})
		if err != nil {
			b.Fatal(err)
		}
		for i := 1; i < size-1; i++ {
			var err error
			switch {
			case random && !freeSet[i]:
				err = r.Allocate(addrAt(i).AsSlice())
			case !random && r.Free() > free:
				_, err = r.AllocateNext()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if r.Free() != free {
			b.Fatalf("%d free, want %d", r.Free(), free)
		}
		return r
	}

	for _, fill := range []string{"random", "allocnext"} {
		random := fill == "random"
		b.Run("fill="+fill, func(b *testing.B) {
			b.Run("impl=ccmkit", func(b *testing.B) {
				s := newCCMKit(b, random)
				b.ReportAllocs()
				for b.Loop() {
					a, err := s.AllocateNext()
					if err != nil {
						b.Fatal(err)
					}
					if err := s.Release(a); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("impl=upstream", func(b *testing.B) {
				r := newUpstream(b, random)
				b.ReportAllocs()
				for b.Loop() {
					ip, err := r.AllocateNext()
					if err != nil {
						b.Fatal(err)
					}
					if err := r.Release(ip); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
