package routes

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// BlockName is the block's name in cloudcall calls and metrics.
const BlockName = "routes"

// Operation names of the block, used as cloudcall.Call.Op (metrics, the
// budget's log) for each Backend method.
const (
	OpList   = "ListRoutes"
	OpCreate = "CreateRoute"
	OpDelete = "DeleteRoute"
	OpApply  = "ApplyRoutes"
)

// Route is one route of the cloud's route table as the block sees it: pods
// of Destination are reached through the node TargetNode. A Route is a
// value; the block never modifies one it was given.
type Route struct {
	// Name is the route's name in the cloud. ccmkit chooses it on create
	// (see [Name]); a backend that cannot keep it (clouds that name routes
	// themselves) lists the cloud's name instead.
	Name string
	// TargetNode is the Node the route sends traffic to. Empty when the
	// cloud no longer knows the target (its instance is gone): such a route
	// inside the cluster CIDRs is deleted.
	TargetNode types.NodeName
	// Destination is the pod CIDR the route covers.
	Destination netip.Prefix
	// NextHop is the address the cloud routes to, when the cloud reports
	// one (routes to an instance rather than to an IP leave it zero). When
	// AddressesStored is false, [Diff] replaces a route whose NextHop
	// differs from the Node's current one (see [NextHop]).
	NextHop netip.Addr
	// NodeAddresses are the Node's status.addresses the route was created
	// from. Create receives them; a backend that can store them with the
	// route (tags, a description) lists them back exactly and sets
	// AddressesStored.
	NodeAddresses []v1.NodeAddress
	// AddressesStored says that NodeAddresses holds exactly the addresses
	// the route was created from, so an address change can be detected
	// from them (upstream's EnableNodeAddresses).
	AddressesStored bool
	// Blackhole marks a route whose target is gone; inside the cluster
	// CIDRs it is deleted.
	Blackhole bool
}

func (r Route) String() string {
	return fmt.Sprintf("%s %s->%s", r.Name, r.Destination, r.TargetNode)
}

// Backend is what a provider author implements for the routes block: the
// cloud's route table, in three calls. The block calls it through the
// provider's cloudcall.Budget (block "routes"), so its errors must be
// classified with the cloudcall helpers; a table that has no room left is
// reported with [TableFull].
//
// Ownership: List returns this cluster's routes only, recognised by a tag
// holding the cluster name or by the name prefix [NamePrefix]; routes of
// other clusters and routes made by hand (foreign routes) are never listed,
// so nothing the block or upstream's route controller does can touch them.
//
// Optional capability, found by type assertion: [Applier], for clouds that
// write the table in batches (or whole). A Backend must be safe for
// concurrent use.
type Backend interface {
	// List returns every route this cluster owns, with Name, TargetNode,
	// Destination, Blackhole and, where the cloud keeps them, NextHop or
	// the stored NodeAddresses (then AddressesStored). It must not return
	// foreign routes.
	List(ctx context.Context, cluster string) ([]Route, error)
	// Create adds r (Name, TargetNode, Destination, NextHop and
	// NodeAddresses are set), marking it as this cluster's. Creating a
	// route that exists with the same destination and target is not an
	// error. When the table is full, return an error from [TableFull].
	Create(ctx context.Context, cluster string, r Route) error
	// Delete removes r, as List returned it. A route already gone is not
	// an error (return nil or an error wrapping cloudcall.ErrNotFound).
	Delete(ctx context.Context, cluster string, r Route) error
}

// Applier is an optional Backend capability for clouds whose route table is
// written in batches or whole (one write replaces many routes at once, and
// clouds rate-limit those writes). The block then groups its changes into
// as few Apply calls as MaxBatchSize allows.
type Applier interface {
	// Apply deletes b.Delete and then creates b.Create in one write, all or
	// nothing: on error nothing changed. len(b.Delete)+len(b.Create) never
	// exceeds MaxBatchSize.
	Apply(ctx context.Context, cluster string, b Batch) error
	// MaxBatchSize is the most route changes one Apply may carry (at
	// least 1).
	MaxBatchSize() int
}

// Batch is one Apply call's changes: deletes run before creates.
type Batch struct {
	Delete []Route
	Create []Route
}

// Len returns the number of changes in b.
func (b Batch) Len() int { return len(b.Delete) + len(b.Create) }

// Errors of the block.
var (
	// ErrTableFull is wrapped by the errors of a write the route table has
	// no room for (see [TableFull]).
	ErrTableFull = errors.New("route table is full")
	// ErrInvalidRoute is wrapped by the errors for a route the block cannot
	// use: an unparsable or out-of-cluster CIDR, a Node without a name.
	ErrInvalidRoute = errors.New("invalid route")
)

// TableFullError reports a route-table limit. It matches ErrTableFull and
// cloudcall.ErrPermanent (a full table is not retried) with errors.Is.
type TableFullError struct {
	// Limit is the table's capacity in routes, 0 when unknown.
	Limit int
	// Err is the cloud's error, if any.
	Err error
}

// TableFull returns the error a Backend returns for a write the table has no
// room for: limit is the table's capacity (0 when the cloud does not say),
// err the cloud's error (may be nil).
func TableFull(limit int, err error) error { return &TableFullError{Limit: limit, Err: err} }

func (e *TableFullError) Error() string {
	msg := ErrTableFull.Error()
	if e.Limit > 0 {
		msg += fmt.Sprintf(" (limit %d routes)", e.Limit)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns ErrTableFull, cloudcall.ErrPermanent and the cause.
func (e *TableFullError) Unwrap() []error {
	out := []error{ErrTableFull, cloudcall.ErrPermanent}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// tableLimit returns the limit named by a TableFullError in err's chain.
func tableLimit(err error) (int, bool) {
	var tf *TableFullError
	if errors.As(err, &tf) {
		return tf.Limit, true
	}
	return 0, false
}

// NamePrefix is the prefix of the names [Name] gives this cluster's routes,
// for backends that recognise their routes by name: "<cluster>--".
func NamePrefix(cluster string) string { return cluster + "--" }

// Name returns the name ccmkit gives the route of a node: NamePrefix, the
// name hint (the Node's UID, as upstream's route controller passes it), and
// the IP family, so that the two routes of a dual-stack node do not collide:
// "<cluster>--<hint>-v4" or "-v6". Characters outside [a-z0-9-] in the
// hint become '-'.
func Name(cluster, hint string, dst netip.Prefix) string {
	fam := "v4"
	if dst.Addr().Is6() && !dst.Addr().Is4In6() {
		fam = "v6"
	}
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, hint)
	return NamePrefix(cluster) + clean + "-" + fam
}

// ParseCIDR parses a CIDR as Nodes and upstream's route controller write
// them ("10.244.1.0/24"), returning the masked prefix, or an error wrapping
// ErrInvalidRoute. It never panics.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: CIDR %q: %w", ErrInvalidRoute, s, err)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%w: CIDR %q has a zone", ErrInvalidRoute, s)
	}
	return p.Masked(), nil
}

// NextHop returns the address of addrs a route for dst should point at: the
// first InternalIP of dst's family, else the first ExternalIP of that
// family, else the first InternalIP of any family; zero when none parses.
func NextHop(addrs []v1.NodeAddress, dst netip.Prefix) netip.Addr {
	want4 := dst.Addr().Is4()
	var internalAny netip.Addr
	var external netip.Addr
	for _, a := range addrs {
		if a.Type != v1.NodeInternalIP && a.Type != v1.NodeExternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		same := ip.Is4() == want4
		switch {
		case a.Type == v1.NodeInternalIP && same:
			return ip
		case a.Type == v1.NodeExternalIP && same && !external.IsValid():
			external = ip
		case a.Type == v1.NodeInternalIP && !internalAny.IsValid():
			internalAny = ip
		}
	}
	if external.IsValid() {
		return external
	}
	return internalAny
}

// Desired returns the routes the cluster's Nodes need: one per pod CIDR of
// each Node (both families of a dual-stack Node, under one name hint, the
// Node's UID), named with [Name], carrying the Node's addresses and next
// hop. Nodes without pod CIDRs need none. A pod CIDR that does not parse is
// left out and reported in the errors (wrapping ErrInvalidRoute), never a
// panic; duplicate pod CIDRs count once.
func Desired(cluster string, nodes []*v1.Node) ([]Route, []error) {
	var out []Route
	var errs []error
	for _, n := range nodes {
		if n == nil || len(n.Spec.PodCIDRs) == 0 {
			continue
		}
		if n.Name == "" {
			errs = append(errs, fmt.Errorf("%w: a Node without a name", ErrInvalidRoute))
			continue
		}
		hint := string(n.UID)
		if hint == "" {
			hint = n.Name
		}
		first := len(out)
		for _, c := range n.Spec.PodCIDRs {
			p, err := ParseCIDR(c)
			if err != nil {
				errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
				continue
			}
			if slices.ContainsFunc(out[first:], func(r Route) bool { return r.Destination == p }) {
				continue
			}
			if slices.ContainsFunc(out[first:], func(r Route) bool { return r.Destination.Addr().Is4() == p.Addr().Is4() }) {
				errs = append(errs, fmt.Errorf("node %s: %w: two pod CIDRs of one IP family (%s)", n.Name, ErrInvalidRoute, p))
				continue
			}
			out = append(out, Route{
				Name:          Name(cluster, hint, p),
				TargetNode:    types.NodeName(n.Name),
				Destination:   p,
				NextHop:       NextHop(n.Status.Addresses, p),
				NodeAddresses: n.Status.Addresses,
			})
		}
	}
	return out, errs
}
