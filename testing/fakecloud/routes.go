package fakecloud

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/routes"
)

// Operation names of the route backends, for Inject, SetLatency, Count and
// the call log.
const (
	OpListRoutes  Op = "ListRoutes"
	OpCreateRoute Op = "CreateRoute"
	OpDeleteRoute Op = "DeleteRoute"
	OpApplyRoutes Op = "ApplyRoutes"
)

// RouteTableOptions shapes a route table. The zero value means defaults.
type RouteTableOptions struct {
	// Limit is the table's capacity in routes, foreign routes included
	// (default 0: unlimited). A write that would exceed it fails with
	// routes.TableFull(Limit, ...).
	Limit int
	// MaxBatchSize is the most changes one Apply of the batch backend
	// takes (default 1000).
	MaxBatchSize int
	// StoreAddresses makes the table keep the Node addresses each route
	// was created with (a tag, on a real cloud): List returns them with
	// AddressesStored. Without it the table keeps the next hop only.
	StoreAddresses bool
}

// TableRoute is one route of a RouteTable with its owner tag ("" for a
// foreign route).
type TableRoute struct {
	Owner string
	Route routes.Route
}

// RouteTable is an in-memory cloud route table, like a VPC's: routes of
// several clusters (by owner tag) and foreign routes, a capacity limit, and
// two ways to write it: per route ([RouteTable.PerRoute]) or in atomic
// batches ([RouteTable.Batch]). It shares its Cloud's faults, latency, call
// log, clock and read lag. It is safe for concurrent use.
//
// Limits: one table per Cloud call of NewRouteTable; destinations must be
// unique in the table (a second route to one destination is refused, as
// clouds do); names are kept as given.
type RouteTable struct {
	c    *Cloud
	opts RouteTableOptions

	mu     sync.Mutex
	routes history[TableRoute]
	count  int                     // current routes
	byDest map[netip.Prefix]string // current routes' destinations -> name
	names  []string                // every name with a version, sorted; nil after a write
}

// NewRouteTable returns an empty route table of c.
func (c *Cloud) NewRouteTable(opts RouteTableOptions) *RouteTable {
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = 1000
	}
	return &RouteTable{c: c, opts: opts, routes: newHistory[TableRoute](), byDest: map[netip.Prefix]string{}}
}

// PerRoute returns the table's per-route backend: routes.Backend only, so
// every change is one CreateRoute or DeleteRoute call.
func (t *RouteTable) PerRoute() *RouteBackend { return &RouteBackend{t: t} }

// Batch returns the table's batch backend: routes.Backend and
// routes.Applier, the table written whole (each Create and Delete is an
// ApplyRoutes call of one change).
func (t *RouteTable) Batch() *RouteBatchBackend { return &RouteBatchBackend{t: t} }

// Add stores r as cluster's route directly (no call, no fault), for
// tests that start from a populated table. AddForeign adds a route no
// cluster owns.
func (t *RouteTable) Add(cluster string, r routes.Route) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.apply(cluster, nil, []routes.Route{r}, t.c.clock.Now(), t.lag())
}

// AddForeign stores a route no cluster owns (a VPN, a peering).
func (t *RouteTable) AddForeign(r routes.Route) error { return t.Add("", r) }

// SetBlackhole marks route name as a blackhole, as a cloud does when the
// route's instance is gone. It returns an error wrapping
// cloudcall.ErrNotFound for an unknown name.
func (t *RouteTable) SetBlackhole(name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.routes.current(name)
	if cur == nil {
		return cloudcall.NotFoundf("fakecloud: route %q", name)
	}
	next := copyTableRoute(cur)
	next.Route.Blackhole = true
	t.names = nil
	t.routes.put(name, t.c.clock.Now(), t.lag(), next)
	return nil
}

// Routes returns the table's current routes, foreign ones included, sorted
// by name, whatever the read lag.
func (t *RouteTable) Routes() []TableRoute {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.c.clock.Now().Add(time.Hour) // past every version: the current state
	vis := t.routes.visible(now)
	out := make([]TableRoute, len(vis))
	for i, r := range vis {
		out[i] = *copyTableRoute(r)
	}
	return out
}

// Len returns the number of routes in the table now.
func (t *RouteTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}

func (t *RouteTable) lag() time.Duration {
	t.c.mu.RLock()
	defer t.c.mu.RUnlock()
	return t.c.readLag
}

func copyTableRoute(in *TableRoute) *TableRoute {
	out := *in
	out.Route.NodeAddresses = slices.Clone(in.Route.NodeAddresses)
	return &out
}

// apply deletes then creates, all or nothing, for cluster. t.mu is held.
func (t *RouteTable) apply(cluster string, del, create []routes.Route, now time.Time, lag time.Duration) error {
	gone := map[string]bool{}
	for _, r := range del {
		cur := t.routes.current(r.Name)
		if cur == nil {
			continue // already gone
		}
		if cur.Owner != cluster || cluster == "" {
			return cloudcall.Permanent(fmt.Errorf("fakecloud: route %q is not owned by cluster %q", r.Name, cluster))
		}
		gone[r.Name] = true
	}
	count := t.count - len(gone)
	var news []*TableRoute
	dests := map[netip.Prefix]string{}
	names := map[string]bool{}
	for _, r := range create {
		switch {
		case r.Name == "":
			return cloudcall.Permanent(errors.New("fakecloud: route without a name"))
		case !r.Destination.IsValid():
			return cloudcall.Permanent(fmt.Errorf("fakecloud: route %q without a destination", r.Name))
		case names[r.Name]:
			return cloudcall.Permanent(fmt.Errorf("fakecloud: route name %q given twice", r.Name))
		}
		names[r.Name] = true
		r.Destination = r.Destination.Masked()
		if cur := t.routes.current(r.Name); cur != nil && !gone[r.Name] {
			if cur.Owner == cluster && cur.Route.Destination == r.Destination && cur.Route.TargetNode == r.TargetNode {
				continue // idempotent
			}
			return cloudcall.Permanent(fmt.Errorf("fakecloud: route name %q already in use", r.Name))
		}
		if other, ok := dests[r.Destination]; ok {
			return cloudcall.Permanent(fmt.Errorf("fakecloud: destination %s given twice (%s, %s)", r.Destination, other, r.Name))
		}
		if other, ok := t.byDest[r.Destination]; ok && !gone[other] {
			return cloudcall.Permanent(fmt.Errorf("fakecloud: destination %s is already routed by %q", r.Destination, other))
		}
		dests[r.Destination] = r.Name
		count++
		if t.opts.Limit > 0 && count > t.opts.Limit {
			return routes.TableFull(t.opts.Limit, errors.New("fakecloud: RouteLimitExceeded"))
		}
		stored := TableRoute{Owner: cluster, Route: r}
		stored.Route.AddressesStored = false
		if !t.opts.StoreAddresses {
			stored.Route.NodeAddresses = nil
		} else {
			stored.Route.NodeAddresses = slices.Clone(r.NodeAddresses)
		}
		news = append(news, &stored)
	}
	t.names = nil
	for name := range gone {
		delete(t.byDest, t.routes.current(name).Route.Destination)
		t.routes.put(name, now, lag, nil)
	}
	for _, r := range news {
		t.byDest[r.Route.Destination] = r.Route.Name
		t.routes.put(r.Route.Name, now, lag, r)
	}
	t.count = count
	return nil
}

// list returns cluster's routes as a read now sees them, sorted by name.
func (t *RouteTable) list(cluster string) []routes.Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.names == nil {
		t.names = make([]string, 0, len(t.routes.versions))
		for name := range t.routes.versions {
			t.names = append(t.names, name)
		}
		slices.Sort(t.names)
	}
	at := t.c.clock.Now().Add(-t.lag())
	out := make([]routes.Route, 0, len(t.names))
	for _, name := range t.names {
		r := t.routes.at(name, at)
		if r == nil || r.Owner != cluster || cluster == "" {
			continue
		}
		rt := r.Route
		rt.NodeAddresses = slices.Clone(r.Route.NodeAddresses)
		if t.opts.StoreAddresses {
			rt.AddressesStored = true
		}
		out = append(out, rt)
	}
	return out
}

func (t *RouteTable) write(ctx context.Context, op Op, arg, cluster string, del, create []routes.Route) error {
	return t.c.faults.call(ctx, op, arg, func() error {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.apply(cluster, del, create, t.c.clock.Now(), t.lag())
	})
}

// RouteBackend is a RouteTable written one route per call. It implements
// routes.Backend; it is safe for concurrent use.
type RouteBackend struct{ t *RouteTable }

var _ routes.Backend = (*RouteBackend)(nil)

// List returns cluster's routes (never foreign ones), sorted by name. It is
// the operation OpListRoutes.
func (b *RouteBackend) List(ctx context.Context, cluster string) ([]routes.Route, error) {
	var out []routes.Route
	err := b.t.c.faults.call(ctx, OpListRoutes, cluster, func() error {
		out = b.t.list(cluster)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Create adds r, owned by cluster: OpCreateRoute, with r's name as the
// log's Arg.
func (b *RouteBackend) Create(ctx context.Context, cluster string, r routes.Route) error {
	return b.t.write(ctx, OpCreateRoute, r.Name, cluster, nil, []routes.Route{r})
}

// Delete removes cluster's route r: OpDeleteRoute. A missing route is not
// an error; another owner's is.
func (b *RouteBackend) Delete(ctx context.Context, cluster string, r routes.Route) error {
	return b.t.write(ctx, OpDeleteRoute, r.Name, cluster, []routes.Route{r}, nil)
}

// RouteBatchBackend is a RouteTable written whole, in atomic batches of at
// most RouteTableOptions.MaxBatchSize changes. It implements routes.Backend
// and routes.Applier; every write is one OpApplyRoutes call. It is safe for
// concurrent use.
type RouteBatchBackend struct{ t *RouteTable }

var (
	_ routes.Backend = (*RouteBatchBackend)(nil)
	_ routes.Applier = (*RouteBatchBackend)(nil)
)

// List is RouteBackend.List.
func (b *RouteBatchBackend) List(ctx context.Context, cluster string) ([]routes.Route, error) {
	return (&RouteBackend{t: b.t}).List(ctx, cluster)
}

// Create is an Apply of one create.
func (b *RouteBatchBackend) Create(ctx context.Context, cluster string, r routes.Route) error {
	return b.Apply(ctx, cluster, routes.Batch{Create: []routes.Route{r}})
}

// Delete is an Apply of one delete.
func (b *RouteBatchBackend) Delete(ctx context.Context, cluster string, r routes.Route) error {
	return b.Apply(ctx, cluster, routes.Batch{Delete: []routes.Route{r}})
}

// Apply deletes then creates in one write, all or nothing: OpApplyRoutes,
// with "-<deletes>+<creates>" as the log's Arg. A batch larger than
// MaxBatchSize is a permanent error.
func (b *RouteBatchBackend) Apply(ctx context.Context, cluster string, batch routes.Batch) error {
	arg := "-" + strconv.Itoa(len(batch.Delete)) + "+" + strconv.Itoa(len(batch.Create))
	if n := batch.Len(); n > b.t.opts.MaxBatchSize {
		err := cloudcall.Permanent(fmt.Errorf("fakecloud: batch of %d changes, the table takes at most %d", n, b.t.opts.MaxBatchSize))
		return b.t.c.faults.call(ctx, OpApplyRoutes, arg, func() error { return err })
	}
	return b.t.write(ctx, OpApplyRoutes, arg, cluster, batch.Delete, batch.Create)
}

// MaxBatchSize returns RouteTableOptions.MaxBatchSize.
func (b *RouteBatchBackend) MaxBatchSize() int { return b.t.opts.MaxBatchSize }
