package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

type svcOpt func(*v1.Service)

// newSvc returns a single-stack IPv4 LoadBalancer Service on TCP/80 with a
// UID derived from its name.
func newSvc(ns, name string, opts ...svcOpt) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeLoadBalancer,
			Ports:      []v1.ServicePort{{Protocol: v1.ProtocolTCP, Port: 80}},
			IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func families(policy v1.IPFamilyPolicy, fams ...v1.IPFamily) svcOpt {
	return func(s *v1.Service) { s.Spec.IPFamilyPolicy, s.Spec.IPFamilies = &policy, fams }
}

// ports takes "TCP/80"-style entries.
func ports(ps ...string) svcOpt {
	return func(s *v1.Service) {
		s.Spec.Ports = nil
		for _, p := range ps {
			proto, num, _ := strings.Cut(p, "/")
			n, _ := strconv.Atoi(num)
			s.Spec.Ports = append(s.Spec.Ports, v1.ServicePort{Protocol: v1.Protocol(proto), Port: int32(n)})
		}
	}
}

func lbIP(ip string) svcOpt { return func(s *v1.Service) { s.Spec.LoadBalancerIP = ip } }

func svcLabels(kv ...string) svcOpt {
	return func(s *v1.Service) {
		s.Labels = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			s.Labels[kv[i]] = kv[i+1]
		}
	}
}

func ingress(ips ...string) svcOpt {
	return func(s *v1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
		}
	}
}

func created(sec int64) svcOpt {
	return func(s *v1.Service) { s.CreationTimestamp = metav1.NewTime(time.Unix(sec, 0)) }
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func pool(t testing.TB, name, ranges string) Pool {
	t.Helper()
	rs, err := ParseRanges(ranges)
	require.NoError(t, err)
	return Pool{Name: name, Ranges: rs}
}

func newAlloc(t testing.TB, pools ...Pool) *LBAllocator {
	t.Helper()
	a, err := NewLBAllocator(pools...)
	require.NoError(t, err)
	return a
}

func restored(t testing.TB, pools ...Pool) *LBAllocator {
	t.Helper()
	a := newAlloc(t, pools...)
	require.NoError(t, a.Restore(t.Context(), nil, nil))
	return a
}

func TestNewLBAllocatorErrors(t *testing.T) {
	ok := pool(t, "a", "10.0.0.0/24")
	tests := []struct {
		name  string
		pools []Pool
	}{
		{"no pools", nil},
		{"no name", []Pool{{Ranges: ok.Ranges}}},
		{"duplicate name", []Pool{ok, pool(t, "a", "10.0.1.0/24")}},
		{"no ranges", []Pool{{Name: "a"}}},
		{"invalid range", []Pool{{Name: "a", Ranges: []Range{{}}}}},
		{"overlap within", []Pool{{Name: "a", Ranges: append(ok.Ranges, ok.Ranges...)}}},
		{"overlap across", []Pool{ok, pool(t, "b", "10.0.0.255-10.0.1.5")}},
		{"empty namespace", []Pool{{Name: "a", Ranges: ok.Ranges, Namespaces: []string{""}}}},
		{"too large", []Pool{pool(t, "a", "2001:db8::/64")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewLBAllocator(tt.pools...)
			require.ErrorIs(t, err, ErrInvalid)
			require.Nil(t, a)
		})
	}
}

func TestLBAllocatorNotReady(t *testing.T) {
	a := newAlloc(t, pool(t, "a", "10.0.0.0/30"))
	req := Request{Service: newSvc("ns", "s")}
	require.False(t, a.Ready())
	_, err := a.Allocate(req)
	require.ErrorIs(t, err, ErrNotReady)
	require.ErrorIs(t, a.Release(RefOf(req.Service)), ErrNotReady)

	cloudDown := errors.New("cloud down")
	failing := OwnedAddressesFunc(func(context.Context) ([]OwnedAddress, error) { return nil, cloudDown })
	require.ErrorIs(t, a.Restore(t.Context(), nil, failing), cloudDown)
	require.False(t, a.Ready())
	_, err = a.Allocate(req)
	require.ErrorIs(t, err, ErrNotReady)

	require.ErrorIs(t, a.Restore(t.Context(), []Request{{}}, nil), ErrInvalid)
	require.False(t, a.Ready())

	require.NoError(t, a.Restore(t.Context(), nil, nil))
	require.True(t, a.Ready())
	got, err := a.Allocate(req)
	require.NoError(t, err)
	require.Equal(t, addrs("10.0.0.0"), got)
	require.ErrorIs(t, a.Restore(t.Context(), nil, nil), ErrInvalid, "second restore")
}

// step is one call in a scripted allocator test: Allocate (when req is set)
// or Release.
type step struct {
	req     *Request
	release *v1.Service
	want    []string // addresses from Allocate
	err     error    // sentinel the error must wrap
	holder  string   // for conflicts: the name of the holding Service
}

func alloc(s *v1.Service, want ...string) step {
	return step{req: &Request{Service: s}, want: want}
}

func allocReq(r Request, want ...string) step { return step{req: &r, want: want} }

func allocErr(r Request, err error) step { return step{req: &r, err: err} }

func conflict(r Request, holder string) step { return step{req: &r, err: ErrConflict, holder: holder} }

func release(s *v1.Service) step { return step{release: s} }

func runSteps(t *testing.T, a *LBAllocator, steps []step) {
	t.Helper()
	for i, st := range steps {
		if st.release != nil {
			require.NoError(t, a.Release(RefOf(st.release)), "step %d", i)
			require.Nil(t, a.Addrs(RefOf(st.release)), "step %d", i)
			continue
		}
		got, err := a.Allocate(*st.req)
		var name string
		if st.req.Service != nil {
			name = st.req.Service.Name
		}
		if st.err != nil {
			require.ErrorIs(t, err, st.err, "step %d (%s)", i, name)
			require.Nil(t, got)
			if st.holder != "" {
				var ce *ConflictError
				require.ErrorAs(t, err, &ce)
				require.Equal(t, st.holder, ce.Holder.Name, "step %d: holder", i)
			}
			continue
		}
		require.NoError(t, err, "step %d (%s)", i, name)
		if diff := cmp.Diff(addrs(st.want...), got, cmpNetip); diff != "" {
			t.Fatalf("step %d (%s): Allocate (-want +got):\n%s", i, name, diff)
		}
		if diff := cmp.Diff(got, a.Addrs(RefOf(st.req.Service)), cmpNetip); diff != "" {
			t.Fatalf("step %d (%s): Addrs differs from Allocate (-alloc +addrs):\n%s", i, name, diff)
		}
	}
	checkAllocator(t, a)
}

// checkAllocator checks the allocator's invariants: every held address is
// occupied in its pool and only there, no address is held by two Services
// that may not share it, and holders and users agree.
func checkAllocator(t testing.TB, a *LBAllocator) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	var occupied [2]uint64
	for _, p := range a.pools {
		for f, s := range p.sets {
			if s != nil {
				occupied[f] += s.Allocated()
			}
		}
	}
	var held [2]uint64
	for addr, u := range a.addrs {
		held[famOf(addr)]++
		if u.pool != a.poolOf(addr) || !u.pool.sets[famOf(addr)].Has(addr) {
			t.Fatalf("%s is held but not occupied in its pool", addr)
		}
		if len(u.users) == 0 {
			t.Fatalf("%s is held by nobody", addr)
		}
		for i, x := range u.users {
			h := a.holders[x]
			if h == nil || !contains(h.addrs, addr) {
				t.Fatalf("%s lists user %s, which does not hold it", addr, x)
			}
			for _, y := range u.users[i+1:] {
				if r := shareRefusal(h.key, h.ports, a.holders[y]); r != "" {
					t.Fatalf("%s is held by %s and %s: %s", addr, x, y, r)
				}
			}
		}
	}
	if held != occupied {
		t.Fatalf("held %v addresses, pools have %v occupied", held, occupied)
	}
	for ref, h := range a.holders {
		for _, addr := range h.addrs {
			if u := a.addrs[addr]; u == nil || !contains(u.users, ref) {
				t.Fatalf("%s holds %s, which does not list it", ref, addr)
			}
		}
	}
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestLBAllocatorAllocate(t *testing.T) {
	dual := families(v1.IPFamilyPolicyRequireDualStack, v1.IPv6Protocol, v1.IPv4Protocol)
	prefer := families(v1.IPFamilyPolicyPreferDualStack, v1.IPv4Protocol, v1.IPv6Protocol)
	s1, s2, s3 := newSvc("ns", "s1"), newSvc("ns", "s2"), newSvc("ns", "s3")
	tests := []struct {
		name  string
		pools []Pool
		steps []step
	}{
		{
			name:  "lowest first, idempotent, exhausted, release",
			pools: []Pool{pool(t, "a", "10.0.0.10-10.0.0.11")},
			steps: []step{
				alloc(s1, "10.0.0.10"),
				alloc(s1, "10.0.0.10"),
				alloc(s2, "10.0.0.11"),
				allocErr(Request{Service: s3}, ErrExhausted),
				release(s1),
				release(s1),
				alloc(s3, "10.0.0.10"),
			},
		},
		{
			name:  "pools in order",
			pools: []Pool{pool(t, "a", "10.0.0.1"), pool(t, "b", "10.0.1.0/31")},
			steps: []step{
				alloc(s1, "10.0.0.1"),
				alloc(s2, "10.0.1.0"),
				allocReq(Request{Service: s1, Pool: "a"}, "10.0.0.1"),
				allocErr(Request{Service: s3, Pool: "a"}, ErrExhausted),
				allocReq(Request{Service: s1, Pool: "b"}, "10.0.1.1"),
				allocReq(Request{Service: newSvc("ns", "s4"), Pool: "a"}, "10.0.0.1"),
				allocErr(Request{Service: newSvc("ns", "s4"), Pool: "nope"}, ErrNoPool),
			},
		},
		{
			name: "namespace and selector pools",
			pools: []Pool{
				{Name: "team", Ranges: pool(t, "", "10.0.0.1").Ranges, Namespaces: []string{"team"}},
				{Name: "gold", Ranges: pool(t, "", "10.0.0.2").Ranges, Selector: labels.SelectorFromSet(labels.Set{"tier": "gold"})},
				{Name: "both", Ranges: pool(t, "", "10.0.0.3").Ranges, Namespaces: []string{"team"}, Selector: labels.SelectorFromSet(labels.Set{"tier": "gold"})},
			},
			steps: []step{
				alloc(newSvc("team", "a"), "10.0.0.1"),
				alloc(newSvc("other", "b", svcLabels("tier", "gold")), "10.0.0.2"),
				alloc(newSvc("team", "c", svcLabels("tier", "gold")), "10.0.0.3"),
				allocErr(Request{Service: newSvc("other", "d")}, ErrNoPool),
				allocErr(Request{Service: newSvc("other", "e", lbIP("10.0.0.1"))}, ErrNotEligible),
				allocErr(Request{Service: newSvc("team", "f", lbIP("10.0.0.1")), Pool: "gold"}, ErrNotEligible),
			},
		},
		{
			name:  "requested addresses",
			pools: []Pool{pool(t, "a", "10.0.0.0/29, fd00::/125")},
			steps: []step{
				alloc(newSvc("ns", "s1", lbIP("10.0.0.5")), "10.0.0.5"),
				allocReq(Request{Service: s2, RequestedIPs: addrs("10.0.0.6")}, "10.0.0.6"),
				alloc(s3, "10.0.0.0"),
				conflict(Request{Service: newSvc("ns", "s4", lbIP("10.0.0.5"))}, "s1"),
				allocErr(Request{Service: newSvc("ns", "s4", lbIP("10.1.0.5"))}, ErrOutOfRange),
				allocErr(Request{Service: newSvc("ns", "s4", lbIP("fd00::1"))}, ErrInvalid), // IPv4-only Service
				allocErr(Request{Service: newSvc("ns", "s4", lbIP("10.0.0.1")), RequestedIPs: addrs("10.0.0.2")}, ErrInvalid),
				allocErr(Request{Service: newSvc("ns", "s4", lbIP("not-an-ip"))}, ErrInvalid),
				allocErr(Request{Service: s2, RequestedIPs: addrs("::ffff:10.0.0.3")}, ErrInvalid),
				// Changing the request moves the Service and frees the old address.
				allocReq(Request{Service: s2, RequestedIPs: addrs("10.0.0.7")}, "10.0.0.7"),
				alloc(newSvc("ns", "s5"), "10.0.0.1"),
				alloc(newSvc("ns", "s6"), "10.0.0.2"),
				alloc(newSvc("ns", "s7"), "10.0.0.3"),
				alloc(newSvc("ns", "s8"), "10.0.0.4"),
				alloc(newSvc("ns", "s9"), "10.0.0.6"),
				// Dual-stack with one requested family.
				release(newSvc("ns", "s1")),
				alloc(newSvc("ns", "d1", dual, lbIP("fd00::7")), "fd00::7", "10.0.0.5"),
			},
		},
		{
			name:  "requested address held by the same Service is kept",
			pools: []Pool{pool(t, "a", "10.0.0.0/30")},
			steps: []step{
				alloc(s1, "10.0.0.0"),
				alloc(newSvc("ns", "s1", lbIP("10.0.0.0")), "10.0.0.0"),
				alloc(s2, "10.0.0.1"),
			},
		},
		{
			name:  "sharing",
			pools: []Pool{pool(t, "a", "10.0.0.0/30")},
			steps: []step{
				allocReq(Request{Service: newSvc("ns", "web", ports("TCP/80")), SharingKey: "k"}, "10.0.0.0"),
				// Same key, disjoint ports: joins the address.
				allocReq(Request{Service: newSvc("ns", "tls", ports("TCP/443", "UDP/443")), SharingKey: "k"}, "10.0.0.0"),
				// Same key, clashing port: a new address (no request).
				allocReq(Request{Service: newSvc("ns", "web2", ports("TCP/80")), SharingKey: "k"}, "10.0.0.1"),
				// Same key, port clash on a requested address: conflict.
				conflict(Request{Service: newSvc("ns", "dns", ports("UDP/443"), lbIP("10.0.0.0")), SharingKey: "k"}, "tls"),
				// Different key, no key: conflict.
				conflict(Request{Service: newSvc("ns", "x", ports("TCP/22"), lbIP("10.0.0.0")), SharingKey: "other"}, "web"),
				conflict(Request{Service: newSvc("ns", "y", ports("TCP/22"), lbIP("10.0.0.0"))}, "web"),
				// Without a key, a Service never joins.
				alloc(newSvc("ns", "z", ports("TCP/22")), "10.0.0.2"),
				// Same key, disjoint, requested.
				allocReq(Request{Service: newSvc("ns", "dns", ports("UDP/53"), lbIP("10.0.0.0")), SharingKey: "k"}, "10.0.0.0"),
				// Releasing one sharer keeps the address for the others.
				release(newSvc("ns", "web", ports("TCP/80"))),
				alloc(newSvc("ns", "other"), "10.0.0.3"),
				// The freed port may be taken by the group again.
				allocReq(Request{Service: newSvc("ns", "web3", ports("TCP/80")), SharingKey: "k"}, "10.0.0.0"),
				// Dropping the key leaves the group: the Service moves.
				release(newSvc("ns", "other")),
				alloc(newSvc("ns", "web3", ports("TCP/80")), "10.0.0.3"),
			},
		},
		{
			name:  "sharing with protocols",
			pools: []Pool{pool(t, "a", "10.0.0.0/30")},
			steps: []step{
				allocReq(Request{Service: newSvc("ns", "tcp", ports("TCP/53")), SharingKey: "k"}, "10.0.0.0"),
				allocReq(Request{Service: newSvc("ns", "udp", ports("UDP/53")), SharingKey: "k"}, "10.0.0.0"),
				// Empty protocol means TCP, as the API server defaults it.
				allocReq(Request{Service: newSvc("ns", "dflt", ports("/53")), SharingKey: "k"}, "10.0.0.1"),
			},
		},
		{
			name:  "dual-stack",
			pools: []Pool{pool(t, "a", "10.0.0.0/31, fd00::/127")},
			steps: []step{
				alloc(newSvc("ns", "d1", dual), "fd00::", "10.0.0.0"),
				alloc(newSvc("ns", "p1", prefer), "10.0.0.1", "fd00::1"),
				// v4 is exhausted: RequireDualStack fails and takes nothing.
				allocErr(Request{Service: newSvc("ns", "d2", dual)}, ErrExhausted),
				release(newSvc("ns", "p1")),
				alloc(newSvc("ns", "v6", families(v1.IPFamilyPolicySingleStack, v1.IPv6Protocol)), "fd00::1"),
				// PreferDualStack takes v4 alone when v6 is exhausted.
				alloc(newSvc("ns", "p2", prefer), "10.0.0.1"),
				// Single-stack with two families listed uses the first.
				alloc(newSvc("ns", "p2", families(v1.IPFamilyPolicySingleStack, v1.IPv4Protocol, v1.IPv6Protocol)), "10.0.0.1"),
				release(newSvc("ns", "v6")),
				// Going dual keeps the held address and adds the other family.
				alloc(newSvc("ns", "p2", prefer), "10.0.0.1", "fd00::1"),
				// Going single-stack releases the other family.
				alloc(newSvc("ns", "p2"), "10.0.0.1"),
				alloc(newSvc("ns", "v6b", families(v1.IPFamilyPolicySingleStack, v1.IPv6Protocol)), "fd00::1"),
			},
		},
		{
			name:  "dual-stack without a v6 pool",
			pools: []Pool{pool(t, "a", "10.0.0.0/31")},
			steps: []step{
				alloc(newSvc("ns", "p1", prefer), "10.0.0.0"),
				allocErr(Request{Service: newSvc("ns", "d1", dual)}, ErrNoPool),
				allocErr(Request{Service: newSvc("ns", "d2", families(v1.IPFamilyPolicyRequireDualStack, v1.IPv4Protocol, v1.IPv6Protocol), lbIP("10.0.0.1"))}, ErrNoPool),
			},
		},
		{
			name:  "malformed requests",
			pools: []Pool{pool(t, "a", "10.0.0.0/31")},
			steps: []step{
				allocErr(Request{}, ErrInvalid),
				allocErr(Request{Service: newSvc("ns", "")}, ErrInvalid),
				allocErr(Request{Service: newSvc("ns", "f", families(v1.IPFamilyPolicySingleStack))}, ErrInvalid),
				allocErr(Request{Service: newSvc("ns", "f", families(v1.IPFamilyPolicyRequireDualStack, v1.IPv4Protocol))}, ErrInvalid),
				allocErr(Request{Service: newSvc("ns", "f", families(v1.IPFamilyPolicyPreferDualStack, v1.IPv4Protocol, v1.IPv4Protocol))}, ErrInvalid),
				allocErr(Request{Service: newSvc("ns", "f", families("Sometimes", v1.IPv4Protocol))}, ErrInvalid),
				allocErr(Request{Service: newSvc("ns", "f", families(v1.IPFamilyPolicySingleStack, "IPv5"))}, ErrInvalid),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, restored(t, tt.pools...), tt.steps)
		})
	}
}

func TestLBAllocatorConflictError(t *testing.T) {
	a := restored(t, pool(t, "a", "10.0.0.0/31"))
	holder := newSvc("ns", "holder")
	_, err := a.Allocate(Request{Service: holder})
	require.NoError(t, err)
	_, err = a.Allocate(Request{Service: newSvc("ns", "other", lbIP("10.0.0.0"))})
	var ce *ConflictError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, RefOf(holder), ce.Holder)
	require.Equal(t, netip.MustParseAddr("10.0.0.0"), ce.Addr)
	require.Contains(t, ce.Error(), "ns/holder", "the message names the holder")
}

func TestLBAllocatorRestore(t *testing.T) {
	pools := []Pool{pool(t, "a", "10.0.0.0/28, fd00::/124")}
	web := newSvc("ns", "web", ingress("10.0.0.5", "lb.example.com"), created(1))
	// A v4 address stored with a leading zero by an old API server.
	legacy := newSvc("ns", "legacy", ingress("010.000.000.006"), created(2))
	// Not in status yet, but owned by a cloud LB (matched by UID).
	fresh := newSvc("ns", "fresh", created(3))
	// Owned LB reported by name only.
	named := newSvc("ns", "named", created(4))
	// Wishes: the older one wins 10.0.0.9; the younger keeps asking.
	old := newSvc("ns", "old", lbIP("10.0.0.9"), created(5))
	young := newSvc("ns", "young", lbIP("10.0.0.9"), created(6))
	// Two sharers restored from status, with the key from the request.
	sh1 := newSvc("ns", "sh1", ports("TCP/80"), ingress("10.0.0.10"), created(7))
	sh2 := newSvc("ns", "sh2", ports("TCP/443"), ingress("10.0.0.10"), created(8))
	// A wish that conflicts with a fact is not recorded.
	late := newSvc("ns", "late", lbIP("10.0.0.5"), created(9))
	// An address outside every pool is ignored.
	outside := newSvc("ns", "outside", ingress("192.0.2.1"), created(10))
	reqs := []Request{
		{Service: young}, {Service: web}, {Service: legacy}, {Service: fresh}, {Service: named}, {Service: old},
		{Service: sh1, SharingKey: "k"}, {Service: sh2, SharingKey: "k"}, {Service: late}, {Service: outside},
	}
	orphan := ServiceRef{Namespace: "ns", Name: "gone", UID: "uid-gone"}
	owned := OwnedAddressesFunc(func(context.Context) ([]OwnedAddress, error) {
		return []OwnedAddress{
			{Service: ServiceRef{UID: fresh.UID}, Addrs: addrs("10.0.0.7")},
			{Service: ServiceRef{Namespace: "ns", Name: "named"}, Addrs: addrs("fd00::3")},
			{Service: orphan, Addrs: addrs("10.0.0.1", "fd00::1")},
			{Service: ServiceRef{Namespace: "ns", Name: "web", UID: web.UID}, Addrs: addrs("10.0.0.5")},
		}, nil
	})
	a := newAlloc(t, pools...)
	require.NoError(t, a.Restore(t.Context(), reqs, owned))
	checkAllocator(t, a)

	for _, tt := range []struct {
		ref  ServiceRef
		want []string
	}{
		{RefOf(web), []string{"10.0.0.5"}},
		{RefOf(legacy), []string{"10.0.0.6"}},
		{RefOf(fresh), []string{"10.0.0.7"}},
		{RefOf(named), []string{"fd00::3"}},
		{RefOf(old), []string{"10.0.0.9"}},
		{RefOf(young), nil},
		{RefOf(sh1), []string{"10.0.0.10"}},
		{RefOf(sh2), []string{"10.0.0.10"}},
		{RefOf(late), nil},
		{RefOf(outside), nil},
		{orphan, []string{"10.0.0.1", "fd00::1"}},
	} {
		if diff := cmp.Diff(addrs(tt.want...), a.Addrs(tt.ref), cmpNetip); diff != "" {
			t.Errorf("Addrs(%s) (-want +got):\n%s", tt.ref, diff)
		}
	}

	// Allocations after the restore keep what was restored and avoid it.
	runSteps(t, a, []step{
		alloc(web, "10.0.0.5"),
		alloc(legacy, "10.0.0.6"),
		alloc(fresh, "10.0.0.7"),
		alloc(old, "10.0.0.9"),
		conflict(Request{Service: young}, "old"),
		conflict(Request{Service: late}, "web"),
		allocReq(Request{Service: newSvc("ns", "sh3", ports("UDP/53")), SharingKey: "k"}, "10.0.0.10"),
		alloc(newSvc("ns", "new1"), "10.0.0.0"),
		alloc(newSvc("ns", "new2"), "10.0.0.2"),
		alloc(newSvc("ns", "new3", families(v1.IPFamilyPolicySingleStack, v1.IPv6Protocol)), "fd00::"),
		alloc(newSvc("ns", "new4", families(v1.IPFamilyPolicySingleStack, v1.IPv6Protocol)), "fd00::2"),
	})
	// The orphan's addresses are freed when its load balancer is deleted.
	require.NoError(t, a.Release(orphan))
	runSteps(t, a, []step{alloc(newSvc("ns", "new5"), "10.0.0.1")})
}

// TestLBAllocatorRestoreConflictingFacts checks that addresses two Services
// already hold without a right to share are kept held by both, and that no
// third Service gets them.
func TestLBAllocatorRestoreConflictingFacts(t *testing.T) {
	a := newAlloc(t, pool(t, "a", "10.0.0.0/31"))
	s1 := newSvc("ns", "s1", ingress("10.0.0.0"))
	s2 := newSvc("ns", "s2", ingress("10.0.0.0"))
	require.NoError(t, a.Restore(t.Context(), []Request{{Service: s1}, {Service: s2}}, nil))
	require.Equal(t, addrs("10.0.0.0"), a.Addrs(RefOf(s1)))
	require.Equal(t, addrs("10.0.0.0"), a.Addrs(RefOf(s2)))
	got, err := a.Allocate(Request{Service: newSvc("ns", "s3")})
	require.NoError(t, err)
	require.Equal(t, addrs("10.0.0.1"), got)
	// s1 re-syncs: its address conflicts with s2, so it moves (no space).
	_, err = a.Allocate(Request{Service: s1})
	require.ErrorIs(t, err, ErrExhausted)
	require.NoError(t, a.Release(RefOf(s2)))
	got, err = a.Allocate(Request{Service: s1})
	require.NoError(t, err)
	require.Equal(t, addrs("10.0.0.0"), got)
}

func TestLBAllocatorConcurrent(t *testing.T) {
	a := restored(t, pool(t, "a", "10.0.0.0/24"))
	const workers, each = 4, 40
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				s := newSvc("ns", fmt.Sprintf("w%d-%d", w, i))
				if _, err := a.Allocate(Request{Service: s}); err != nil {
					errs <- err
					return
				}
				if i%2 == 0 {
					if err := a.Release(RefOf(s)); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		require.NoError(t, <-errs)
	}
	checkAllocator(t, a)
	require.Len(t, a.addrs, workers*each/2)
}
