package routes

import (
	"net/netip"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Plan is what [Diff] decided: the writes that turn the listed routes into
// the desired ones. Apply every Delete before any Create (a replaced route
// appears in both, under one name).
type Plan struct {
	// Delete lists, in the listed order, the owned routes inside the
	// cluster CIDRs that must go: blackholes, routes without a target,
	// routes no Node needs (stale), extra copies of one route, and routes
	// whose target addresses changed (replaced).
	Delete []Route
	// Create lists, in the desired order, the routes to create: missing and
	// replaced ones.
	Create []Route
	// Keep counts the listed routes that stay as they are.
	Keep int
	// Rejected lists desired routes Diff will not create: without a valid
	// destination or target, or outside every cluster CIDR (once created,
	// nothing would own them: no route outside the cluster CIDRs is ever
	// deleted).
	Rejected []Route
}

// Empty reports whether the plan writes nothing.
func (p Plan) Empty() bool { return len(p.Delete) == 0 && len(p.Create) == 0 }

type routeKey struct {
	node types.NodeName
	dst  netip.Prefix
}

// Diff compares the desired routes (from [Desired]) with the actual ones (a
// Backend's List) and returns the plan, touching only routes inside the
// cluster CIDRs, as upstream's route controller does: a route is inside
// when the first or the last address of its destination is in one of
// clusterCIDRs. It is a pure function, O(len(desired)+len(actual)), safe for
// concurrent use; it never modifies its arguments.
//
// A listed route is kept when a desired route has its target and
// destination and, when the route stores its Node addresses
// (AddressesStored), the same addresses (in any order), or otherwise, when
// both report a next hop, the same next hop. Else it is replaced (deleted
// and created again).
func Diff(desired, actual []Route, clusterCIDRs []netip.Prefix) Plan {
	var p Plan
	want := make(map[routeKey]int, len(desired))
	for i, r := range desired {
		if !r.Destination.IsValid() || r.TargetNode == "" || !InCluster(r.Destination, clusterCIDRs) {
			p.Rejected = append(p.Rejected, r)
			continue
		}
		k := routeKey{r.TargetNode, r.Destination.Masked()}
		if _, dup := want[k]; !dup {
			want[k] = i
		}
	}
	kept := make([]bool, len(desired)) // by index into desired
	for _, a := range actual {
		if !a.Destination.IsValid() || !InCluster(a.Destination, clusterCIDRs) {
			continue // not ours to touch
		}
		i, needed := want[routeKey{a.TargetNode, a.Destination.Masked()}]
		switch {
		case a.Blackhole, a.TargetNode == "", !needed, kept[i], changed(desired[i], a):
			p.Delete = append(p.Delete, a)
		default:
			kept[i] = true
			p.Keep++
		}
	}
	for i, r := range desired {
		if kept[i] || !r.Destination.IsValid() || r.TargetNode == "" {
			continue
		}
		if j, ok := want[routeKey{r.TargetNode, r.Destination.Masked()}]; ok && j == i {
			p.Create = append(p.Create, r)
		}
	}
	return p
}

// changed reports whether the listed route a no longer matches the Node's
// addresses in the desired route d.
func changed(d, a Route) bool {
	if a.AddressesStored {
		return !sameAddresses(d.NodeAddresses, a.NodeAddresses)
	}
	return a.NextHop.IsValid() && d.NextHop.IsValid() && a.NextHop != d.NextHop
}

// sameAddresses is upstream's comparison of TargetNodeAddresses: the same
// length and every address of x (type and address) in y.
func sameAddresses(x, y []v1.NodeAddress) bool {
	if len(x) != len(y) {
		return false
	}
	for _, a := range x {
		found := false
		for _, b := range y {
			if a == b {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// InCluster reports whether dst is inside the cluster CIDRs as upstream's
// route controller decides it: its first or its last address is in one of
// them.
func InCluster(dst netip.Prefix, clusterCIDRs []netip.Prefix) bool {
	if !dst.IsValid() {
		return false
	}
	dst = dst.Masked()
	first, last := dst.Addr(), lastAddr(dst)
	for _, c := range clusterCIDRs {
		if c.Contains(first) || c.Contains(last) {
			return true
		}
	}
	return false
}

// lastAddr returns the last address of the masked prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		setHostBits(b[:], p.Bits())
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	setHostBits(b[:], p.Bits())
	return netip.AddrFrom16(b).WithZone(a.Zone())
}

func setHostBits(b []byte, bits int) {
	for i := range b {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			b[i] |= 0xff >> bits
			bits = 0
		default:
			b[i] = 0xff
		}
	}
}
