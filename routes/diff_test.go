package routes_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ccmkit/ccmkit/routes"
)

var cmpRoutes = cmp.Options{cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func node(name, ip string, cidrs ...string) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}}
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	if ip != "" {
		n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}, {Type: v1.NodeHostName, Address: name}}
	}
	return n
}

// listed returns r as a backend that stores addresses lists it.
func listed(r routes.Route) routes.Route {
	r.AddressesStored = true
	return r
}

func TestDesired(t *testing.T) {
	nodes := []*v1.Node{
		node("a", "10.0.0.1", "10.244.1.0/24"),
		node("ds", "10.0.0.2", "10.244.2.0/24", "fd00:1::/64"),
		node("none", "10.0.0.3"),
		node("bad", "10.0.0.4", "10.244.300.0/24"),
		nil,
	}
	nodes[1].Status.Addresses = append(nodes[1].Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: "fd00::2"})
	got, errs := routes.Desired("c1", nodes)
	want := []routes.Route{
		{Name: "c1--uid-a-v4", TargetNode: "a", Destination: pfx("10.244.1.0/24"), NextHop: netip.MustParseAddr("10.0.0.1"), NodeAddresses: nodes[0].Status.Addresses},
		{Name: "c1--uid-ds-v4", TargetNode: "ds", Destination: pfx("10.244.2.0/24"), NextHop: netip.MustParseAddr("10.0.0.2"), NodeAddresses: nodes[1].Status.Addresses},
		{Name: "c1--uid-ds-v6", TargetNode: "ds", Destination: pfx("fd00:1::/64"), NextHop: netip.MustParseAddr("fd00::2"), NodeAddresses: nodes[1].Status.Addresses},
	}
	if d := cmp.Diff(want, got, cmpRoutes); d != "" {
		t.Errorf("Desired mismatch (-want +got):\n%s", d)
	}
	if len(errs) != 1 || !errors.Is(errs[0], routes.ErrInvalidRoute) {
		t.Errorf("errors = %v, want one wrapping ErrInvalidRoute for node bad", errs)
	}
}

func TestDiff(t *testing.T) {
	cluster := []netip.Prefix{pfx("10.244.0.0/16"), pfx("fd00::/48"), pfx("172.31.0.0/16")}
	addrs := func(ip string) []v1.NodeAddress { return []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}} }
	want := func(node, cidr, ip string) routes.Route {
		p := pfx(cidr)
		return routes.Route{Name: routes.Name("c", "uid-"+node, p), TargetNode: types.NodeName(node), Destination: p,
			NextHop: netip.MustParseAddr(ip), NodeAddresses: addrs(ip)}
	}
	a := want("a", "10.244.1.0/24", "10.0.0.1")
	b := want("b", "10.244.2.0/24", "10.0.0.2")
	b6 := want("b", "fd00:0:0:2::/64", "fd00::2")
	bMoved := want("b", "10.244.2.0/24", "10.0.0.99")
	foreign := routes.Route{Name: "vpn", Destination: pfx("192.168.0.0/24"), TargetNode: "gw"}
	blackhole := listed(a)
	blackhole.Blackhole = true
	noTarget := listed(b)
	noTarget.TargetNode = ""
	nextHopOnly := func(r routes.Route) routes.Route { r.NodeAddresses = nil; return r }
	straddling := routes.Route{Name: "wide", TargetNode: "old", Destination: pfx("10.0.0.0/8")}
	tailInside := routes.Route{Name: "tail", TargetNode: "old", Destination: pfx("172.16.0.0/12")}
	outside := want("z", "10.99.0.0/24", "10.0.0.9")

	tests := []struct {
		name            string
		desired, actual []routes.Route
		want            routes.Plan
	}{
		{name: "empty"},
		{
			name:    "from empty",
			desired: []routes.Route{a, b, b6},
			want:    routes.Plan{Create: []routes.Route{a, b, b6}},
		},
		{
			name:    "steady state",
			desired: []routes.Route{a, b, b6},
			actual:  []routes.Route{listed(b6), listed(a), listed(b)},
			want:    routes.Plan{Keep: 3},
		},
		{
			name:    "stale route of a removed node",
			desired: []routes.Route{a},
			actual:  []routes.Route{listed(a), listed(b)},
			want:    routes.Plan{Delete: []routes.Route{listed(b)}, Keep: 1},
		},
		{
			name:    "blackhole deleted and recreated",
			desired: []routes.Route{a},
			actual:  []routes.Route{blackhole},
			want:    routes.Plan{Delete: []routes.Route{blackhole}, Create: []routes.Route{a}},
		},
		{
			name:    "route without target",
			desired: []routes.Route{a},
			actual:  []routes.Route{listed(a), noTarget},
			want:    routes.Plan{Delete: []routes.Route{noTarget}, Keep: 1},
		},
		{
			name:    "foreign and out-of-cluster routes untouched",
			desired: []routes.Route{a},
			actual:  []routes.Route{foreign, listed(a)},
			want:    routes.Plan{Keep: 1},
		},
		{
			name:   "in cluster by first or last address",
			actual: []routes.Route{straddling, tailInside},
			want:   routes.Plan{Delete: []routes.Route{tailInside}}, // straddling: neither end inside
		},
		{
			name:    "stored addresses changed: replaced",
			desired: []routes.Route{bMoved},
			actual:  []routes.Route{listed(b)},
			want:    routes.Plan{Delete: []routes.Route{listed(b)}, Create: []routes.Route{bMoved}},
		},
		{
			name:    "stored addresses in another order: kept",
			desired: []routes.Route{{Name: b.Name, TargetNode: "b", Destination: b.Destination, NodeAddresses: []v1.NodeAddress{{Type: v1.NodeHostName, Address: "b"}, {Type: v1.NodeInternalIP, Address: "10.0.0.2"}}}},
			actual:  []routes.Route{{Name: b.Name, TargetNode: "b", Destination: b.Destination, AddressesStored: true, NodeAddresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.2"}, {Type: v1.NodeHostName, Address: "b"}}}},
			want:    routes.Plan{Keep: 1},
		},
		{
			name:    "next hop changed without stored addresses: replaced",
			desired: []routes.Route{bMoved},
			actual:  []routes.Route{nextHopOnly(b)},
			want:    routes.Plan{Delete: []routes.Route{nextHopOnly(b)}, Create: []routes.Route{bMoved}},
		},
		{
			name:    "no next hop, no stored addresses: kept",
			desired: []routes.Route{bMoved},
			actual:  []routes.Route{{Name: b.Name, TargetNode: "b", Destination: b.Destination}},
			want:    routes.Plan{Keep: 1},
		},
		{
			name:    "duplicate listed routes: one kept",
			desired: []routes.Route{a},
			actual:  []routes.Route{listed(a), func() routes.Route { r := listed(a); r.Name = "copy"; return r }()},
			want:    routes.Plan{Delete: []routes.Route{func() routes.Route { r := listed(a); r.Name = "copy"; return r }()}, Keep: 1},
		},
		{
			name:    "route moved to another node",
			desired: []routes.Route{want("c", "10.244.1.0/24", "10.0.0.3")},
			actual:  []routes.Route{listed(a)},
			want:    routes.Plan{Delete: []routes.Route{listed(a)}, Create: []routes.Route{want("c", "10.244.1.0/24", "10.0.0.3")}},
		},
		{
			name:    "desired outside the cluster CIDRs rejected",
			desired: []routes.Route{outside, {Name: "zero", TargetNode: "y"}},
			want:    routes.Plan{Rejected: []routes.Route{outside, {Name: "zero", TargetNode: "y"}}},
		},
		{
			name:    "duplicate desired created once",
			desired: []routes.Route{a, a},
			want:    routes.Plan{Create: []routes.Route{a}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := routes.Diff(tt.desired, tt.actual, cluster)
			if d := cmp.Diff(tt.want, got, cmpRoutes); d != "" {
				t.Errorf("Diff mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestInCluster(t *testing.T) {
	cluster := []netip.Prefix{pfx("10.244.0.0/16"), pfx("fd00::/48"), pfx("172.31.0.0/16")}
	tests := []struct {
		dst  string
		want bool
	}{
		{"10.244.1.0/24", true},
		{"172.16.0.0/12", true}, // last address inside
		{"10.0.0.0/8", false},   // straddles: neither end inside
		{"10.245.0.0/24", false},
		{"fd00:0:0:1::/64", true},
		{"fd01::/64", false},
		{"0.0.0.0/0", false},
	}
	for _, tt := range tests {
		if got := routes.InCluster(pfx(tt.dst), cluster); got != tt.want {
			t.Errorf("InCluster(%s) = %v, want %v", tt.dst, got, tt.want)
		}
	}
	if routes.InCluster(netip.Prefix{}, cluster) {
		t.Error("the zero prefix is in no cluster")
	}
}

func TestParseCIDR(t *testing.T) {
	for _, s := range []string{"", "10.0.0.0", "10.0.0.0/33", "fe80::%eth0/64", "x/8"} {
		if _, err := routes.ParseCIDR(s); !errors.Is(err, routes.ErrInvalidRoute) {
			t.Errorf("ParseCIDR(%q) error = %v, want ErrInvalidRoute", s, err)
		}
	}
	got, err := routes.ParseCIDR(" 10.244.1.7/24 ")
	if err != nil || got != pfx("10.244.1.0/24") {
		t.Errorf("ParseCIDR = %v, %v; want the masked prefix", got, err)
	}
}

func TestName(t *testing.T) {
	if got, want := routes.Name("prod", "0a1B_c", pfx("fd00::/64")), "prod--0a1b-c-v6"; got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}
	if routes.Name("c", "u", pfx("10.0.0.0/24")) == routes.Name("c", "u", pfx("fd00::/64")) {
		t.Error("the two families of one node share a name")
	}
}

func TestTableFullError(t *testing.T) {
	err := routes.TableFull(50, errors.New("RouteLimitExceeded"))
	if !errors.Is(err, routes.ErrTableFull) {
		t.Error("not ErrTableFull")
	}
	var tf *routes.TableFullError
	if !errors.As(err, &tf) || tf.Limit != 50 {
		t.Errorf("errors.As: %v", tf)
	}
}
