package routes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// Options configures the block: the Adapter, its Batcher and the
// Controller. The zero value means defaults.
type Options struct {
	// Budget paces every cloud call (block "routes"); nil runs each call
	// once, unpaced. framework sets the provider's budget.
	Budget *cloudcall.Budget
	// Limit is the route table's capacity in routes, foreign routes
	// included (default 0: unknown; the block then learns it from the
	// backend's TableFull error).
	Limit int
	// BatchWindow is the Batcher's window (default DefaultBatchWindow).
	BatchWindow time.Duration
	// MaxInFlight bounds the Controller's concurrent per-route writes to a
	// backend without Applier (default 32).
	MaxInFlight int
	// UpstreamController selects, in framework, k8s.io/cloud-provider's
	// route controller over the Adapter (with a Batcher when the backend
	// implements Applier) instead of ccmkit's Controller (the default).
	// The routes package itself does not read it.
	UpstreamController bool
	// Metrics records the block's metrics (default a new Metrics; see
	// Adapter.Metrics).
	Metrics *Metrics
	// Clock is the time source (default the real clock).
	Clock clock.Clock
}

func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.Limit < 0 {
		errs = append(errs, fmt.Errorf("option Limit must not be negative, got %d", o.Limit))
	}
	if o.BatchWindow < 0 {
		errs = append(errs, fmt.Errorf("option BatchWindow must not be negative, got %s", o.BatchWindow))
	}
	if o.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("option MaxInFlight must not be negative, got %d", o.MaxInFlight))
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("routes: invalid options: %w", errors.Join(errs...))
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 32
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o, nil
}

// Adapter is the block's cloudprovider.Routes over a Backend, for
// upstream's route controller: it converts routes and CIDRs (a bad CIDR is
// an error wrapping ErrInvalidRoute, never a panic), names created routes
// with [Name] from upstream's name hint (the Node's UID, shared by the two
// routes of a dual-stack node), runs every call through the budget, and,
// when the backend implements Applier, sends creates and deletes through a
// [Batcher] so that upstream's up to 200 concurrent calls become a few
// batch writes.
//
// Capacity: once a create failed because the table is full (or the last
// list showed the configured Limit reached), further creates fail at once
// with a TableFull error, without a cloud call, until a delete succeeds;
// after each list one create is sent to see whether room was made
// elsewhere. It is safe for concurrent use.
type Adapter struct {
	backend Backend
	batcher *Batcher
	opts    Options

	mu     sync.Mutex
	listed map[string]Route // name -> route as last listed
	owned  int              // owned routes: last list, plus creates, minus deletes
	limit  int              // configured or learned capacity
	full   bool             // the table refused a create since the last delete
	probe  bool             // one create may test a full table
}

var _ cloudprovider.Routes = (*Adapter)(nil)

// NewAdapter returns the Adapter over b. It returns an error for a nil
// backend or invalid options.
func NewAdapter(b Backend, opts Options) (*Adapter, error) {
	if b == nil {
		return nil, errors.New("routes: nil Backend")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &Adapter{backend: b, opts: o, listed: map[string]Route{}, limit: o.Limit}
	o.Metrics.setLimit(o.Limit)
	if ap, ok := b.(Applier); ok {
		a.batcher, err = NewBatcher(ap, BatcherOptions{Window: o.BatchWindow, Budget: o.Budget, Metrics: o.Metrics, Clock: o.Clock})
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Metrics returns the block's metrics.
func (a *Adapter) Metrics() *Metrics { return a.opts.Metrics }

// Batched reports whether creates and deletes go through a Batcher.
func (a *Adapter) Batched() bool { return a.batcher != nil }

// ListRoutes lists the cluster's routes: every route the backend owns, with
// EnableNodeAddresses set when the backend stores the Node addresses.
func (a *Adapter) ListRoutes(ctx context.Context, clusterName string) ([]*cloudprovider.Route, error) {
	var list []Route
	err := a.opts.Budget.Do(ctx, cloudcall.Read(BlockName, OpList), func(ctx context.Context) error {
		var err error
		list, err = a.backend.List(ctx, clusterName)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	out := make([]*cloudprovider.Route, len(list))
	listed := make(map[string]Route, len(list))
	for i, r := range list {
		listed[r.Name] = r
		out[i] = &cloudprovider.Route{
			Name:                r.Name,
			TargetNode:          r.TargetNode,
			EnableNodeAddresses: r.AddressesStored,
			TargetNodeAddresses: slices.Clone(r.NodeAddresses),
			DestinationCIDR:     r.Destination.String(),
			Blackhole:           r.Blackhole,
		}
	}
	a.mu.Lock()
	a.listed, a.owned, a.probe = listed, len(list), true
	if a.limit > 0 && a.owned >= a.limit {
		a.full = true
	}
	a.mu.Unlock()
	a.opts.Metrics.listed(len(list))
	return out, nil
}

// CreateRoute creates route for clusterName, named with Name(clusterName,
// nameHint, destination). It returns an error wrapping ErrInvalidRoute for
// a bad CIDR or a missing target, and a TableFull error, without a cloud
// call, when the table is known to be full.
func (a *Adapter) CreateRoute(ctx context.Context, clusterName string, nameHint string, route *cloudprovider.Route) error {
	if route == nil {
		return fmt.Errorf("%w: nil route", ErrInvalidRoute)
	}
	dst, err := ParseCIDR(route.DestinationCIDR)
	if err != nil {
		return err
	}
	if route.TargetNode == "" {
		return fmt.Errorf("%w: route to %s without a target node", ErrInvalidRoute, dst)
	}
	if nameHint == "" {
		nameHint = string(route.TargetNode)
	}
	r := Route{
		Name:          Name(clusterName, nameHint, dst),
		TargetNode:    route.TargetNode,
		Destination:   dst,
		NextHop:       NextHop(route.TargetNodeAddresses, dst),
		NodeAddresses: slices.Clone(route.TargetNodeAddresses),
	}
	if err := a.admitCreate(); err != nil {
		return err
	}
	if a.batcher != nil {
		err = a.batcher.Create(ctx, clusterName, r)
	} else {
		err = a.opts.Budget.Do(ctx, cloudcall.Write(BlockName, OpCreate), func(ctx context.Context) error {
			return a.backend.Create(ctx, clusterName, r)
		})
		a.opts.Metrics.wrote("create", err)
	}
	a.created(err)
	if err != nil {
		return fmt.Errorf("creating route %s: %w", r, err)
	}
	return nil
}

// admitCreate short-circuits a create the table cannot take.
func (a *Adapter) admitCreate() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.full {
		return nil
	}
	if a.probe {
		a.probe = false
		return nil
	}
	return TableFull(a.limit, errors.New("not sent: the route table was full at the last attempt"))
}

func (a *Adapter) created(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err == nil:
		a.owned++
		a.full = a.limit > 0 && a.owned >= a.limit
	case errors.Is(err, ErrTableFull):
		a.full = true
		if limit, _ := tableLimit(err); limit > 0 && limit != a.limit {
			a.limit = limit
			a.opts.Metrics.setLimit(limit)
		}
	}
}

// DeleteRoute deletes route, as ListRoutes returned it. A bad CIDR is an
// error wrapping ErrInvalidRoute.
func (a *Adapter) DeleteRoute(ctx context.Context, clusterName string, route *cloudprovider.Route) error {
	if route == nil {
		return fmt.Errorf("%w: nil route", ErrInvalidRoute)
	}
	dst, err := ParseCIDR(route.DestinationCIDR)
	if err != nil {
		return err
	}
	a.mu.Lock()
	r, ok := a.listed[route.Name]
	a.mu.Unlock()
	if !ok || r.Destination != dst {
		r = Route{Name: route.Name, TargetNode: route.TargetNode, Destination: dst, Blackhole: route.Blackhole,
			NodeAddresses: slices.Clone(route.TargetNodeAddresses), AddressesStored: route.EnableNodeAddresses}
	}
	if a.batcher != nil {
		err = a.batcher.Delete(ctx, clusterName, r)
	} else {
		err = a.opts.Budget.Do(ctx, cloudcall.Write(BlockName, OpDelete), func(ctx context.Context) error {
			return a.backend.Delete(ctx, clusterName, r)
		})
		a.opts.Metrics.wrote("delete", err)
	}
	if errors.Is(err, cloudcall.ErrNotFound) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("deleting route %s: %w", r, err)
	}
	a.mu.Lock()
	a.owned = max(a.owned-1, 0)
	a.full = a.limit > 0 && a.owned >= a.limit
	a.mu.Unlock()
	return nil
}
