package routes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clientretry "k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// NetworkUnavailable reasons, as upstream's route controller sets them.
const (
	ReasonRouteCreated   = "RouteCreated"
	ReasonNoRouteCreated = "NoRouteCreated"
)

// Event reasons of the Controller.
const (
	// EventFailedToCreateRoute is upstream's Warning for a failed create,
	// emitted once per route and failure (not every pass).
	EventFailedToCreateRoute = "FailedToCreateRoute"
	// EventRouteTableFull is the one Warning emitted when the table runs
	// out of room; its message names the limit.
	EventRouteTableFull = "RouteTableFull"
)

// ControllerConfig is what the Controller takes from the manager's
// configuration.
type ControllerConfig struct {
	// ClusterName is --cluster-name: the owner of the routes.
	ClusterName string
	// ClusterCIDRs is --cluster-cidr: one CIDR, or one per IP family.
	// Required: only routes inside them are touched.
	ClusterCIDRs []netip.Prefix
	// Period is --route-reconciliation-period: a full reconcile runs at
	// least this often (default 10s).
	Period time.Duration
	// MinInterval spaces reconciles caused by Node events (default 1s): a
	// burst of Node changes costs one reconcile per interval.
	MinInterval time.Duration
	// FullRetry is how long the Controller waits, while the table is full
	// and nothing it deleted made room, before it tries creates again
	// (default 5m): room may be made by others.
	FullRetry time.Duration
}

// Controller is ccmkit's route controller: it lists the cluster's routes,
// computes the plan with [Diff] and applies it in as few writes as the
// backend allows (Applier batches of MaxBatchSize, deletes first; else
// bounded concurrent per-route calls, deletes before creates), and sets each
// Node's NetworkUnavailable condition as upstream's route controller does
// (False/RouteCreated once every route of the Node exists, True/
// NoRouteCreated otherwise, and True for a Node without pod CIDRs that the
// cloud lists a route for). It reconciles on Node events (added, deleted,
// pod CIDRs or addresses changed) and every Period.
//
// It is quiet in steady state: a reconcile that changes nothing costs one
// list call, no API write and no log line at default verbosity. A full
// route table yields one Warning Event naming the limit; while it is full a
// reconcile makes one cloud read and no create write (deletes still run,
// so the table can recover).
//
// Its methods are safe for concurrent use; Run once.
type Controller struct {
	backend Backend
	applier Applier
	client  kubernetes.Interface
	lister  corelisters.NodeLister
	synced  cache.InformerSynced
	cfg     ControllerConfig
	opts    Options
	queue   workqueue.TypedRateLimitingInterface[string]

	mu        sync.Mutex
	recorder  record.EventRecorder
	full      bool      // the table refused creates
	fullSince time.Time // when it did, or creates were last tried
	warned    bool      // the full-table Warning was emitted this episode
	limit     int       // configured or learned capacity
	failed    map[string]string
	badCIDRs  map[string]bool // invalid pod CIDR messages already logged

	memo map[*v1.Node]memoEntry // Desired per informer object (immutable), last reconcile
}

type memoEntry struct {
	routes []Route
	errs   []error
}

const queueKey = "routes"

// Result is what one reconcile did.
type Result struct {
	// Created and Deleted count the routes written successfully.
	Created, Deleted int
	// Failed counts the routes whose write failed (or was not sent because
	// the table is full).
	Failed int
	// Kept counts the listed routes left as they were.
	Kept int
	// Full reports that the table has no room for the missing routes.
	Full bool
	// NodesUpdated counts the Nodes whose NetworkUnavailable was patched.
	NodesUpdated int
}

// NewController returns ccmkit's route controller over b. It registers its
// handlers with nodes (start the informer afterwards). It returns an error
// for a nil backend or client, missing or invalid cluster CIDRs (two of one
// family, or more than two), and invalid options.
func NewController(b Backend, client kubernetes.Interface, nodes coreinformers.NodeInformer, cfg ControllerConfig, opts Options) (*Controller, error) {
	var errs []error
	if b == nil {
		errs = append(errs, errors.New("nil Backend"))
	}
	if client == nil || nodes == nil {
		errs = append(errs, errors.New("nil client or node informer"))
	}
	switch n := len(cfg.ClusterCIDRs); {
	case n == 0:
		errs = append(errs, errors.New("no cluster CIDRs (--cluster-cidr): the route controller needs the pod network"))
	case n > 2 || (n == 2 && cfg.ClusterCIDRs[0].Addr().Is4() == cfg.ClusterCIDRs[1].Addr().Is4()):
		errs = append(errs, fmt.Errorf("cluster CIDRs %v: want one CIDR, or one IPv4 and one IPv6 CIDR (dual-stack)", cfg.ClusterCIDRs))
	}
	for _, p := range cfg.ClusterCIDRs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("invalid cluster CIDR %v", p))
		}
	}
	if cfg.Period < 0 || cfg.MinInterval < 0 || cfg.FullRetry < 0 {
		errs = append(errs, errors.New("config Period, MinInterval and FullRetry must not be negative"))
	}
	o, err := opts.withDefaults()
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("routes: controller: %w", errors.Join(errs...))
	}
	if cfg.Period == 0 {
		cfg.Period = 10 * time.Second
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = time.Second
	}
	if cfg.FullRetry == 0 {
		cfg.FullRetry = 5 * time.Minute
	}
	cfg.ClusterCIDRs = slices.Clone(cfg.ClusterCIDRs)
	queueClock, _ := o.Clock.(clock.WithTicker)
	c := &Controller{
		backend: b, client: client, cfg: cfg, opts: o,
		lister: nodes.Lister(), synced: nodes.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "ccmkit-routes", Clock: queueClock}),
		limit:    o.Limit,
		failed:   map[string]string{},
		badCIDRs: map[string]bool{},
	}
	if ap, ok := b.(Applier); ok {
		if ap.MaxBatchSize() < 1 {
			return nil, fmt.Errorf("routes: controller: the Applier's MaxBatchSize() is %d, want at least 1", ap.MaxBatchSize())
		}
		c.applier = ap
	}
	o.Metrics.setLimit(o.Limit)
	_, err = nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.queue.Add(queueKey) },
		DeleteFunc: func(any) { c.queue.Add(queueKey) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*v1.Node)
			n, ok2 := newObj.(*v1.Node)
			if !ok1 || !ok2 || !slices.Equal(o.Spec.PodCIDRs, n.Spec.PodCIDRs) || !slices.Equal(o.Status.Addresses, n.Status.Addresses) {
				c.queue.Add(queueKey)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("routes: controller: %w", err)
	}
	return c, nil
}

// Metrics returns the controller's metrics.
func (c *Controller) Metrics() *Metrics { return c.opts.Metrics }

// Run waits for the node informer to sync, then reconciles on Node events
// and every Period until ctx ends; it records Events through the client. It
// returns nil once ctx ended and everything it started has stopped, or an
// error if the informer never synced.
func (c *Controller) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	c.mu.Lock()
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "route_controller"})
	c.mu.Unlock()
	defer c.queue.ShutDown()

	logger.Info("Starting ccmkit route controller", "period", c.cfg.Period, "clusterCIDRs", c.cfg.ClusterCIDRs, "batched", c.applier != nil)
	defer logger.Info("Shutting down ccmkit route controller")
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("routes: node informer did not sync")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		ticker := c.opts.Clock.NewTimer(c.cfg.Period)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
				c.queue.Add(queueKey)
				ticker.Reset(c.cfg.Period)
			}
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		c.queue.ShutDown()
	})
	c.queue.Add(queueKey)
	for c.processNext(ctx) {
	}
	wg.Wait()
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	start := c.opts.Clock.Now()
	_, err := c.Reconcile(ctx)
	if err != nil && ctx.Err() == nil {
		klog.FromContext(ctx).Error(err, "Cannot reconcile routes; retrying")
		c.queue.AddRateLimited(key)
	} else {
		c.queue.Forget(key)
	}
	c.queue.Done(key)
	// Space reconciles out: Node events during a reconcile queue one more.
	if wait := c.cfg.MinInterval - c.opts.Clock.Since(start); wait > 0 {
		select {
		case <-ctx.Done():
		case <-c.opts.Clock.After(wait):
		}
	}
	return true
}

// Reconcile runs one pass: list, diff, write, update Node conditions. It
// returns an error when the routes or Nodes cannot be listed; failed writes
// are counted in the Result, reported by Events, and retried next pass.
func (c *Controller) Reconcile(ctx context.Context) (Result, error) {
	logger := klog.FromContext(ctx)
	var res Result
	var actual []Route
	err := c.opts.Budget.Do(ctx, cloudcall.Read(BlockName, OpList), func(ctx context.Context) error {
		var err error
		actual, err = c.backend.List(ctx, c.cfg.ClusterName)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("listing routes: %w", err)
	}
	c.opts.Metrics.listed(len(actual))
	nodes, err := c.lister.List(labels.Everything())
	if err != nil {
		return res, fmt.Errorf("listing nodes: %w", err)
	}
	desired, errs := c.desired(nodes)
	c.logInvalid(logger, errs)
	plan := Diff(desired, actual, c.cfg.ClusterCIDRs)
	res.Kept = plan.Keep

	// Which creates to send.
	owned := len(actual) - len(plan.Delete)
	creates := plan.Create
	var notSent []Route
	c.mu.Lock()
	full, limit := c.full, c.limit
	retried := full && c.opts.Clock.Since(c.fullSince) >= c.cfg.FullRetry
	if retried {
		full = false // try again: room may have been made elsewhere
	}
	c.mu.Unlock()
	switch {
	case full:
		creates, notSent = nil, creates
	case limit > 0 && owned+len(creates) > limit:
		room := max(limit-owned, 0)
		creates, notSent = creates[:room], creates[room:]
	}

	delErrs, createErrs := c.write(ctx, plan.Delete, creates)
	failedRoutes := map[string]error{}
	tableFull := len(notSent) > 0
	for i, err := range delErrs {
		if err == nil || errors.Is(err, cloudcall.ErrNotFound) {
			res.Deleted++
		} else {
			logger.Error(err, "Cannot delete route", "route", plan.Delete[i].Name, "destination", plan.Delete[i].Destination)
		}
	}
	for i, err := range createErrs {
		r := creates[i]
		if err == nil {
			res.Created++
			c.forgetFailure(r.Name)
			continue
		}
		res.Failed++
		failedRoutes[r.Name] = err
		if errors.Is(err, ErrTableFull) {
			tableFull = true
			if l, ok := tableLimit(err); ok && l > 0 {
				limit = l
			}
			continue
		}
		c.reportFailure(ctx, nodeOf(nodes, r.TargetNode), r, err)
	}
	for _, r := range notSent {
		res.Failed++
		failedRoutes[r.Name] = ErrTableFull
	}
	for _, r := range plan.Rejected {
		failedRoutes[r.Name] = ErrInvalidRoute
	}
	c.noteCapacity(ctx, nodes, tableFull, retried, res.Deleted > 0, limit, len(notSent)+countFull(createErrs))
	c.mu.Lock()
	res.Full = c.full
	c.mu.Unlock()

	res.NodesUpdated = c.updateConditions(ctx, nodes, desired, actual, failedRoutes)
	if !plan.Empty() || res.NodesUpdated > 0 {
		logger.Info("Reconciled routes", "created", res.Created, "deleted", res.Deleted, "failed", res.Failed, "kept", res.Kept, "nodesUpdated", res.NodesUpdated, "full", res.Full)
	} else {
		logger.V(4).Info("Routes in sync", "routes", res.Kept)
	}
	return res, nil
}

// desired is Desired over nodes, reusing the routes of Node objects seen at
// the last reconcile (informer objects are never modified in place).
func (c *Controller) desired(nodes []*v1.Node) ([]Route, []error) {
	c.mu.Lock()
	old := c.memo
	c.mu.Unlock()
	out := make([]Route, 0, len(nodes))
	var errs []error
	// Steady state: every Node object is one the memo has seen (the
	// informer hands out the same pointers until a Node changes), so the
	// memo is reused as it is.
	hits := 0
	for _, n := range nodes {
		e, ok := old[n]
		if !ok {
			break
		}
		hits++
		out = append(out, e.routes...)
		errs = append(errs, e.errs...)
	}
	if hits == len(nodes) && len(old) == len(nodes) {
		return out, errs
	}
	out, errs = out[:0], nil
	memo := make(map[*v1.Node]memoEntry, len(nodes))
	for _, n := range nodes {
		e, ok := old[n]
		if !ok {
			e.routes, e.errs = Desired(c.cfg.ClusterName, []*v1.Node{n})
		}
		memo[n] = e
		out = append(out, e.routes...)
		errs = append(errs, e.errs...)
	}
	c.mu.Lock()
	c.memo = memo
	c.mu.Unlock()
	return out, errs
}

func countFull(errs []error) int {
	n := 0
	for _, err := range errs {
		if errors.Is(err, ErrTableFull) {
			n++
		}
	}
	return n
}

// write applies deletes, then creates, and returns each one's error.
func (c *Controller) write(ctx context.Context, deletes, creates []Route) (delErrs, createErrs []error) {
	if c.applier != nil {
		changes := make([]change, 0, len(deletes)+len(creates))
		for _, r := range deletes {
			changes = append(changes, change{delete: true, route: r})
		}
		for _, r := range creates {
			changes = append(changes, change{route: r})
		}
		errs := applyChanges(ctx, c.applier, c.opts.Budget, c.opts.Metrics, c.cfg.ClusterName, changes)
		return errs[:len(deletes)], errs[len(deletes):]
	}
	perRoute := func(rs []Route, op, kind string, fn func(context.Context, string, Route) error) []error {
		errs := make([]error, len(rs))
		var g errgroup.Group
		g.SetLimit(c.opts.MaxInFlight)
		for i, r := range rs {
			g.Go(func() error {
				errs[i] = c.opts.Budget.Do(ctx, cloudcall.Write(BlockName, op), func(ctx context.Context) error {
					return fn(ctx, c.cfg.ClusterName, r)
				})
				c.opts.Metrics.wrote(kind, errs[i])
				return nil
			})
		}
		_ = g.Wait()
		return errs
	}
	delErrs = perRoute(deletes, OpDelete, "delete", c.backend.Delete)
	createErrs = perRoute(creates, OpCreate, "create", c.backend.Create)
	return delErrs, createErrs
}

// noteCapacity tracks whether the table is full, and emits one Warning per
// episode: from the first refused create until every route fits again.
func (c *Controller) noteCapacity(ctx context.Context, nodes []*v1.Node, full, retried, deleted bool, limit, waiting int) {
	c.mu.Lock()
	if limit != c.limit && limit > 0 {
		c.limit = limit
		c.opts.Metrics.setLimit(limit)
	}
	switch {
	case !full:
		c.full, c.warned = false, false
	case deleted:
		c.full = false // room was made: the next reconcile creates
	case !c.full || retried:
		c.full, c.fullSince = true, c.opts.Clock.Now()
	}
	warn := full && !c.warned
	if warn {
		c.warned = true
	}
	rec := c.recorder
	c.mu.Unlock()
	if !warn {
		return
	}
	limitText := "limit unknown"
	if limit > 0 {
		limitText = fmt.Sprintf("limit %d routes", limit)
	}
	msg := fmt.Sprintf("The cloud's route table is full (%s): %d routes of cluster %q cannot be created. Delete unused routes or raise the table's limit.", limitText, waiting, c.cfg.ClusterName)
	klog.FromContext(ctx).Error(ErrTableFull, "Route table full; creates stop until room is made", "limit", limit, "waiting", waiting)
	if rec == nil {
		return
	}
	// One Event, on the first Node (by name) with pod CIDRs.
	var target *v1.Node
	for _, n := range nodes {
		if len(n.Spec.PodCIDRs) > 0 && (target == nil || n.Name < target.Name) {
			target = n
		}
	}
	if target != nil {
		rec.Event(nodeRef(target), v1.EventTypeWarning, EventRouteTableFull, msg)
	}
}

func (c *Controller) reportFailure(ctx context.Context, n *v1.Node, r Route, err error) {
	msg := fmt.Sprintf("Could not create route %s %s for node %s: %v", r.Name, r.Destination, r.TargetNode, err)
	c.mu.Lock()
	same := c.failed[r.Name] == msg
	c.failed[r.Name] = msg
	rec := c.recorder
	c.mu.Unlock()
	if same {
		return
	}
	klog.FromContext(ctx).Error(err, "Cannot create route", "route", r.Name, "node", r.TargetNode, "destination", r.Destination)
	if rec != nil && n != nil {
		rec.Event(nodeRef(n), v1.EventTypeWarning, EventFailedToCreateRoute, msg)
	}
}

func (c *Controller) forgetFailure(name string) {
	c.mu.Lock()
	delete(c.failed, name)
	c.mu.Unlock()
}

func (c *Controller) logInvalid(logger klog.Logger, errs []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, err := range errs {
		if msg := err.Error(); !c.badCIDRs[msg] {
			c.badCIDRs[msg] = true
			logger.Error(err, "Ignoring an invalid pod CIDR")
		}
	}
}

func nodeRef(n *v1.Node) *v1.ObjectReference {
	return &v1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}
}

func nodeOf(nodes []*v1.Node, name types.NodeName) *v1.Node {
	for _, n := range nodes {
		if n.Name == string(name) {
			return n
		}
	}
	return nil
}

// updateConditions sets NetworkUnavailable as upstream does, patching only
// Nodes whose condition differs, and returns how many it patched.
func (c *Controller) updateConditions(ctx context.Context, nodes []*v1.Node, desired, actual []Route, failed map[string]error) int {
	listedFor := make(map[types.NodeName]bool, len(actual))
	for _, r := range actual {
		if r.TargetNode != "" {
			listedFor[r.TargetNode] = true
		}
	}
	ok := make(map[types.NodeName]bool, len(nodes))
	for _, r := range desired {
		good, seen := ok[r.TargetNode]
		_, bad := failed[r.Name]
		ok[r.TargetNode] = (good || !seen) && !bad
	}
	type update struct {
		node    *v1.Node
		created bool
	}
	var updates []update
	for _, n := range nodes {
		name := types.NodeName(n.Name)
		var created bool
		switch {
		case len(n.Spec.PodCIDRs) > 0:
			good, seen := ok[name]
			created = seen && good
		case listedFor[name]:
			created = false
		default:
			continue // no pod CIDRs, no route: left alone, as upstream
		}
		if !conditionSet(n, created) {
			updates = append(updates, update{n, created})
		}
	}
	if len(updates) == 0 {
		return 0
	}
	var g errgroup.Group
	g.SetLimit(16)
	var mu sync.Mutex
	patched := 0
	for _, u := range updates {
		g.Go(func() error {
			if err := c.setCondition(ctx, u.node.Name, u.created); err != nil {
				klog.FromContext(ctx).Error(err, "Cannot update NetworkUnavailable", "node", u.node.Name)
				return nil
			}
			mu.Lock()
			patched++
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	return patched
}

// conditionSet reports whether n already has the NetworkUnavailable
// condition upstream would set for created.
func conditionSet(n *v1.Node, created bool) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type != v1.NodeNetworkUnavailable {
			continue
		}
		if created {
			return cond.Status == v1.ConditionFalse && cond.Reason == ReasonRouteCreated
		}
		return cond.Status == v1.ConditionTrue && cond.Reason == ReasonNoRouteCreated
	}
	return false
}

var conditionBackoff = clientretry.DefaultBackoff

func (c *Controller) setCondition(ctx context.Context, node string, created bool) error {
	now := metav1.NewTime(c.opts.Clock.Now())
	cond := v1.NodeCondition{
		Type:               v1.NodeNetworkUnavailable,
		Status:             v1.ConditionTrue,
		Reason:             ReasonNoRouteCreated,
		Message:            "RouteController failed to create a route",
		LastTransitionTime: now,
		LastHeartbeatTime:  now,
	}
	if created {
		cond.Status, cond.Reason, cond.Message = v1.ConditionFalse, ReasonRouteCreated, "RouteController created a route"
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []v1.NodeCondition{cond}}})
	if err != nil {
		return err
	}
	return clientretry.RetryOnConflict(conditionBackoff, func() error {
		_, err := c.client.CoreV1().Nodes().PatchStatus(ctx, node, patch)
		return err
	})
}
