package ipam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestCIDRSetProperty runs seeded random sequences of allocate, release,
// occupy and restart (a new set rebuilt by occupying everything the old one
// held) and checks, against a map model, that no subnet is ever handed out
// twice and that counts stay consistent.
func TestCIDRSetProperty(t *testing.T) {
	configs := []struct {
		cluster string
		bits    int
	}{
		{"10.0.0.0/20", 24},
		{"10.0.0.0/12", 24},
		{"fd00::/52", 64},
		{"2001:db8::/32", 48},
	}
	for _, c := range configs {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("%s_%d/seed=%d", c.cluster, c.bits, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 42))
				s := newSet(t, c.cluster, c.bits)
				held := &prefixBag{pos: map[netip.Prefix]int{}}
				for step := range 10000 {
					switch r := rng.IntN(100); {
					case r < 55:
						p, err := s.AllocateNext()
						if errors.Is(err, ErrFull) {
							if uint64(held.len()) != s.Size() {
								t.Fatalf("step %d: ErrFull with %d of %d held", step, held.len(), s.Size())
							}
							continue
						}
						if err != nil {
							t.Fatalf("step %d: %v", step, err)
						}
						if held.has(p) {
							t.Fatalf("step %d: %s allocated twice", step, p)
						}
						held.add(p)
					case r < 85:
						if held.len() == 0 {
							continue
						}
						p := held.removeRandom(rng)
						if err := s.Release(p); err != nil {
							t.Fatalf("step %d: %v", step, err)
						}
					case r < 97:
						p := s.prefix(rng.Uint64N(s.Size()))
						if err := s.Occupy(p); err != nil {
							t.Fatalf("step %d: %v", step, err)
						}
						held.add(p)
					default: // restart
						n := newSet(t, c.cluster, c.bits)
						for _, p := range held.list {
							if err := n.Occupy(p); err != nil {
								t.Fatalf("step %d: restart: %v", step, err)
							}
						}
						s = n
					}
					if s.Allocated() != uint64(held.len()) || s.Free() != s.Size()-uint64(held.len()) {
						t.Fatalf("step %d: Allocated %d, Free %d, model holds %d of %d", step, s.Allocated(), s.Free(), held.len(), s.Size())
					}
				}
				for _, p := range held.list {
					if !s.Has(p) {
						t.Fatalf("%s is held but Has says no", p)
					}
				}
			})
		}
	}
}

// prefixBag is a set of prefixes with O(1) random removal.
type prefixBag struct {
	list []netip.Prefix
	pos  map[netip.Prefix]int
}

func (b *prefixBag) len() int                { return len(b.list) }
func (b *prefixBag) has(p netip.Prefix) bool { _, ok := b.pos[p]; return ok }

func (b *prefixBag) add(p netip.Prefix) {
	if !b.has(p) {
		b.pos[p] = len(b.list)
		b.list = append(b.list, p)
	}
}

func (b *prefixBag) removeRandom(rng *rand.Rand) netip.Prefix {
	i := rng.IntN(len(b.list))
	p, last := b.list[i], b.list[len(b.list)-1]
	b.list[i], b.pos[last] = last, i
	b.list = b.list[:len(b.list)-1]
	delete(b.pos, p)
	return p
}

// randomKey returns a uniformly chosen key of m, deterministically for rng.
func randomKey[K interface {
	comparable
	String() string
}, V any](rng *rand.Rand, m map[K]V) K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b K) int { return strings.Compare(a.String(), b.String()) })
	return keys[rng.IntN(len(keys))]
}

// lbModel is what the outside world knows in TestLBAllocatorProperty: each
// Service's last granted request and addresses (what its status and cloud
// load balancer show), and the load balancers of deleted Services whose
// deletion was cut short (orphans).
type lbModel struct {
	gen     map[string]int          // Service name -> incarnation
	live    map[string]*modelHolder // by Service name
	orphans map[ServiceRef]*modelHolder
}

type modelHolder struct {
	req   Request
	addrs []netip.Addr
}

func (h *modelHolder) key() string   { return h.req.SharingKey }
func (h *modelHolder) ports() []Port { return portsOf(h.req.Service) }

// TestLBAllocatorProperty runs seeded random sequences of allocate, delete
// (sometimes leaving an orphan load balancer), reap and restart (a new
// allocator restored from Service status, requests and the cloud's load
// balancers) and checks that no address is ever held by two Services that
// may not share it, that allocations are stable, and that a restart loses
// nothing.
func TestLBAllocatorProperty(t *testing.T) {
	pools := []Pool{
		{Name: "team", Ranges: []Range{rng("10.0.1.0", "10.0.1.5")}, Namespaces: []string{"team"}},
		{Name: "v4", Ranges: []Range{rng("10.0.0.0", "10.0.0.11")}},
		{Name: "v6", Ranges: []Range{rng("fd00::", "fd00::9")}},
	}
	var poolAddrs []netip.Addr
	for _, p := range pools {
		for _, r := range p.Ranges {
			for a := r.First; a.Compare(r.Last) <= 0; a = a.Next() {
				poolAddrs = append(poolAddrs, a)
			}
		}
	}
	allPorts := []string{"TCP/80", "TCP/443", "UDP/53", "TCP/53", "UDP/443"}
	policies := []svcOpt{
		func(*v1.Service) {},
		families(v1.IPFamilyPolicySingleStack, v1.IPv6Protocol),
		families(v1.IPFamilyPolicyPreferDualStack, v1.IPv4Protocol, v1.IPv6Protocol),
		families(v1.IPFamilyPolicyRequireDualStack, v1.IPv6Protocol, v1.IPv4Protocol),
	}

	// Coverage of the interesting cases, over all seeds.
	var grants, refusals, shared, restarts, orphanRestores int
	defer func() {
		t.Logf("grants=%d refusals=%d shared=%d restarts=%d orphan-restores=%d", grants, refusals, shared, restarts, orphanRestores)
		if grants < 1000 || refusals < 100 || shared < 50 || restarts < 50 || orphanRestores < 20 {
			t.Errorf("the random sequences miss cases: grants=%d refusals=%d shared=%d restarts=%d orphan-restores=%d",
				grants, refusals, shared, restarts, orphanRestores)
		}
	}()
	for seed := range uint64(12) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			m := &lbModel{gen: map[string]int{}, live: map[string]*modelHolder{}, orphans: map[ServiceRef]*modelHolder{}}
			a := restored(t, pools...)
			randomRequest := func(name string) Request {
				ns := "default"
				if name[1]%3 == 0 {
					ns = "team"
				}
				var ps []string
				for _, p := range allPorts {
					if rng.IntN(3) == 0 {
						ps = append(ps, p)
					}
				}
				if len(ps) == 0 {
					ps = allPorts[:1]
				}
				opts := []svcOpt{policies[rng.IntN(len(policies))], ports(ps...)}
				svc := newSvc(ns, name, opts...)
				svc.UID = types.UID(fmt.Sprintf("uid-%s-%d", name, m.gen[name]))
				req := Request{Service: svc}
				if k := rng.IntN(4); k < 2 {
					req.SharingKey = []string{"k1", "k2"}[k]
				}
				if rng.IntN(5) == 0 {
					want := poolAddrs[rng.IntN(len(poolAddrs))]
					used := svc.Spec.IPFamilies
					if p := svc.Spec.IPFamilyPolicy; p == nil || *p == v1.IPFamilyPolicySingleStack {
						used = used[:1]
					}
					if slices.Contains(used, familyNames[famOf(want)]) {
						req.RequestedIPs = []netip.Addr{want}
					}
				}
				return req
			}

			for step := range 1500 {
				name := fmt.Sprintf("s%d", rng.IntN(24))
				switch r := rng.IntN(100); {
				case r < 55: // (re)configure and allocate
					req := randomRequest(name)
					got, err := a.Allocate(req)
					if err != nil {
						if errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotReady) || errors.Is(err, ErrOutOfRange) {
							t.Fatalf("step %d: %s: unexpected error %v", step, name, err)
						}
						refusals++
						continue
					}
					grants++
					m.live[name] = &modelHolder{req: req, addrs: got}
				case r < 65: // allocate again with the last granted request: stable
					h := m.live[name]
					if h == nil {
						continue
					}
					got, err := a.Allocate(h.req)
					if err != nil {
						t.Fatalf("step %d: re-allocating %s: %v", step, name, err)
					}
					for _, x := range h.addrs {
						if !slices.Contains(got, x) {
							t.Fatalf("step %d: %s lost %s on re-allocation: %v", step, name, x, got)
						}
					}
					h.addrs = got
				case r < 80: // delete the Service
					h := m.live[name]
					if h == nil {
						continue
					}
					delete(m.live, name)
					m.gen[name]++
					if rng.IntN(4) == 0 {
						// Crash before the cloud load balancer was deleted.
						m.orphans[RefOf(h.req.Service)] = h
						continue
					}
					if err := a.Release(RefOf(h.req.Service)); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
				case r < 85: // the reaper deletes an orphan
					if len(m.orphans) == 0 {
						continue
					}
					ref := randomKey(rng, m.orphans)
					delete(m.orphans, ref)
					if err := a.Release(ref); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
				default: // restart
					a = m.restart(t, rng, pools)
					restarts++
					orphanRestores += len(m.orphans)
				}
				shared += m.check(t, step, a)
			}
		})
	}
}

// restart builds a new allocator and restores it the way a controller would
// after a crash: Service status is written for some Services only, and the
// cloud reports every load balancer (with its key and ports) including
// orphans.
func (m *lbModel) restart(t *testing.T, rng *rand.Rand, pools []Pool) *LBAllocator {
	t.Helper()
	var reqs []Request
	var owned []OwnedAddress
	names := make([]string, 0, len(m.live))
	for n := range m.live {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		h := m.live[n]
		req := h.req
		svc := req.Service.DeepCopy()
		svc.Status = v1.ServiceStatus{}
		statusWritten := rng.IntN(3) > 0
		if statusWritten {
			for _, x := range h.addrs {
				svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: x.String()})
			}
		}
		req.Service = svc
		reqs = append(reqs, req)
		if !statusWritten || rng.IntN(2) == 0 {
			ref := RefOf(svc)
			if rng.IntN(2) == 0 {
				ref = ServiceRef{UID: svc.UID}
			}
			owned = append(owned, OwnedAddress{Service: ref, Addrs: h.addrs})
		}
	}
	for ref, h := range m.orphans {
		owned = append(owned, OwnedAddress{Service: ref, Addrs: h.addrs, SharingKey: h.key(), Ports: h.ports()})
	}
	slices.SortFunc(owned, func(a, b OwnedAddress) int { return strings.Compare(a.Service.String(), b.Service.String()) })
	a := newAlloc(t, pools...)
	src := OwnedAddressesFunc(func(context.Context) ([]OwnedAddress, error) { return owned, nil })
	if err := a.Restore(t.Context(), reqs, src); err != nil {
		t.Fatalf("restore: %v", err)
	}
	// Nothing is lost: every holder holds exactly what it held.
	for _, n := range names {
		h := m.live[n]
		if got := a.Addrs(RefOf(h.req.Service)); !sameAddrs(got, h.addrs) {
			t.Fatalf("after restart %s holds %v, want %v", n, got, h.addrs)
		}
	}
	for ref, h := range m.orphans {
		if got := a.Addrs(ref); !sameAddrs(got, h.addrs) {
			t.Fatalf("after restart orphan %s holds %v, want %v", ref, got, h.addrs)
		}
	}
	return a
}

func sameAddrs(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}

// check verifies, from the model alone, that no two holders share an address
// without the right to, and that the allocator agrees with the model. It
// returns the number of shared addresses.
func (m *lbModel) check(t *testing.T, step int, a *LBAllocator) (shared int) {
	t.Helper()
	type holderAt struct {
		ref ServiceRef
		h   *modelHolder
	}
	byAddr := map[netip.Addr][]holderAt{}
	for _, h := range m.live {
		for _, x := range h.addrs {
			byAddr[x] = append(byAddr[x], holderAt{RefOf(h.req.Service), h})
		}
		if got := a.Addrs(RefOf(h.req.Service)); !slices.Equal(got, h.addrs) {
			t.Fatalf("step %d: %s holds %v, model says %v", step, RefOf(h.req.Service), got, h.addrs)
		}
	}
	for ref, h := range m.orphans {
		for _, x := range h.addrs {
			byAddr[x] = append(byAddr[x], holderAt{ref, h})
		}
	}
	for x, hs := range byAddr {
		if len(hs) > 1 {
			shared++
		}
		for i, p := range hs {
			for _, q := range hs[i+1:] {
				if p.h.key() == "" || p.h.key() != q.h.key() {
					t.Fatalf("step %d: %s held by %s and %s with keys %q, %q", step, x, p.ref, q.ref, p.h.key(), q.h.key())
				}
				for _, port := range p.h.ports() {
					if slices.Contains(q.h.ports(), port) {
						t.Fatalf("step %d: %s held by %s and %s, both on %s", step, x, p.ref, q.ref, port)
					}
				}
			}
		}
	}
	checkAllocator(t, a)
	return shared
}
