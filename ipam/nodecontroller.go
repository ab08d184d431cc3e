package ipam

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Reasons of the Events a [NodeController] records on Nodes. All are of
// type Warning.
const (
	// ReasonCIDRNotAvailable: a cluster CIDR has no free subnet for the Node
	// (nothing was allocated, in no family), or in cloud mode the Node's
	// instance reports no pod CIDRs yet. The Node is retried when space is
	// released (range mode) or with backoff (cloud mode).
	ReasonCIDRNotAvailable = "CIDRNotAvailable"
	// ReasonCIDRAssignmentFailed: the pod CIDRs could not be written to the
	// Node, or the cloud reported CIDRs that cannot be used (malformed,
	// outside the cluster CIDRs, overlapping another Node's). Retried with
	// backoff.
	ReasonCIDRAssignmentFailed = "CIDRAssignmentFailed"
	// ReasonPodCIDRConflict: the pod CIDRs the Node already has overlap
	// another Node's or a service range. The Node is left unchanged.
	ReasonPodCIDRConflict = "PodCIDRConflict"
	// ReasonInvalidPodCIDR: the pod CIDRs the Node already has are
	// malformed, lie outside the cluster CIDRs, or name a family twice. The
	// Node is left unchanged.
	ReasonInvalidPodCIDR = "InvalidPodCIDR"
)

// Defaults of [NodeControllerOptions].
const (
	// DefaultNodeMaskSizeIPv4 is kube-controller-manager's default IPv4
	// node mask size (--node-cidr-mask-size-ipv4).
	DefaultNodeMaskSizeIPv4 = 24
	// DefaultNodeMaskSizeIPv6 is kube-controller-manager's default IPv6
	// node mask size (--node-cidr-mask-size-ipv6).
	DefaultNodeMaskSizeIPv6 = 64
	// DefaultNodeControllerWorkers is the default number of Nodes synced in
	// parallel.
	DefaultNodeControllerWorkers = 10
)

// maxWideSlotBits bounds the node-mask subnets a pre-existing node CIDR wider
// than the node mask may cover and still be tracked (2^12).
const maxWideSlotBits = 12

// CloudCIDRsFunc returns the pod CIDRs the cloud assigned to node (at most
// one per IP family), for the cloud mode of a [NodeController]. An empty
// result means "none yet". It is called without any lock held and must be
// safe for concurrent use.
type CloudCIDRsFunc func(ctx context.Context, node *v1.Node) ([]netip.Prefix, error)

// NodeControllerOptions configures a [NodeController]. The zero value of
// each field means its default; ClusterCIDRs or CloudCIDRs must be set.
type NodeControllerOptions struct {
	// ClusterCIDRs are the pod network (--cluster-cidr): one prefix, or one
	// IPv4 and one IPv6 prefix (dual-stack). Their order is the order of
	// every Node's spec.podCIDRs (the first is the primary family). Required
	// in range mode; optional in cloud mode, where the cloud's CIDRs are
	// then checked to lie inside them and not to overlap.
	ClusterCIDRs []netip.Prefix
	// MaskSizeIPv4 is the prefix length of the IPv4 CIDR of a Node
	// (default [DefaultNodeMaskSizeIPv4]). It must be at least the IPv4
	// cluster CIDR's length, and may be set only with an IPv4 cluster CIDR.
	MaskSizeIPv4 int
	// MaskSizeIPv6 is the same for IPv6 (default [DefaultNodeMaskSizeIPv6]).
	MaskSizeIPv6 int
	// ServiceCIDRs are the service ranges (--service-cluster-ip-range), at
	// most one per family. Every node subnet overlapping one is occupied
	// before anything is allocated, so it never goes to a Node. A service
	// range of a family without a cluster CIDR, or outside it, is ignored.
	ServiceCIDRs []netip.Prefix
	// CloudCIDRs selects cloud mode when set: a Node's pod CIDRs are the
	// ones it returns instead of subnets allocated from ClusterCIDRs.
	CloudCIDRs CloudCIDRsFunc
	// Workers is the number of Nodes synced in parallel (default
	// [DefaultNodeControllerWorkers]).
	Workers int
}

// CIDRUsage is the use of one cluster CIDR of a [NodeController].
type CIDRUsage struct {
	// ClusterCIDR is the cluster CIDR.
	ClusterCIDR netip.Prefix
	// MaskSize is the prefix length of a Node's CIDR in it.
	MaskSize int
	// Used counts the node subnets in use: held by Nodes, reserved for a
	// Node not yet updated, or overlapping a service range.
	Used uint64
	// Size is the number of node subnets of ClusterCIDR.
	Size uint64
}

// NodeController is the node IPAM controller: it assigns spec.podCIDRs
// (and spec.podCIDR, the first of them) to every Node that has none, one
// CIDR per cluster CIDR (dual-stack: one per family), and never changes a
// Node that has them.
//
// In range mode the CIDRs are the lowest free subnets of the cluster CIDRs
// (a [CIDRSet] per family). A Node gets every family or none: when one
// family is exhausted the others are released at once, the Node gets an
// Event [ReasonCIDRNotAvailable] and waits until a Node deletion frees
// space. In cloud mode ([NodeControllerOptions].CloudCIDRs) the CIDRs are
// the cloud's, copied as they are (checked against the cluster CIDRs when
// these are given).
//
// Restart safety: Run waits for the Node informer to sync and occupies the
// pod CIDRs of every existing Node before it allocates anything, so no CIDR
// is given twice across restarts. Pod CIDRs that a Node already has are
// occupied as they are, even when they are wrong; when they lie outside the
// cluster CIDRs or overlap another Node's or a service range, the Node gets
// an Event ([ReasonInvalidPodCIDR], [ReasonPodCIDRConflict]) and is left
// unchanged. Space is tracked per node-mask subnet: an overlap is the use
// of one subnet by two holders; when the first holder is deleted the
// subnet passes to the other rather than being freed. A CIDR reserved for a
// Node stays reserved until the Node is deleted, even when writing it
// fails, so it is never given to two Nodes.
//
// The Node is written with a JSON merge patch of spec.podCIDR and
// spec.podCIDRs only, preconditioned on the Node's UID and resourceVersion,
// and retried on conflict after re-reading the Node.
//
// A NodeController is safe for concurrent use: its state is guarded by a
// mutex that is never held across an API or cloud call. Run must be called
// once.
type NodeController struct {
	client   kubernetes.Interface
	informer cache.SharedIndexInformer
	lister   corelisters.NodeLister
	cloud    CloudCIDRsFunc
	workers  int
	sets     []*CIDRSet // one per cluster CIDR, in the order of ClusterCIDRs

	started atomic.Bool
	// Set by Run before any handler or worker runs.
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder

	mu      sync.Mutex
	records map[string]*nodeRecord // by Node name
	owners  map[netip.Prefix]string
	// contested Nodes have slots held by another Node (nodeRecord.wanted).
	contested map[string]struct{}
	// starved Nodes found a cluster CIDR full; they are requeued when a
	// slot is freed.
	starved map[string]struct{}
}

// nodeRecord is what the controller knows about one Node.
type nodeRecord struct {
	uid types.UID
	// spec is the Node's spec.podCIDRs the record was built from; nil for
	// CIDRs reserved for the Node and not yet seen on it.
	spec []string
	// cidrs are the Node's pod CIDRs, or the ones reserved for it.
	cidrs []netip.Prefix
	// slots are the node-mask subnets of the sets this Node holds.
	slots []netip.Prefix
	// wanted are the subnets its CIDRs cover that another Node holds.
	wanted []netip.Prefix
}

// problem is something to report on a Node with an Event.
type problem struct {
	reason, msg string
}

// NewNodeController returns a node IPAM controller that writes Nodes with
// client and watches them through nodes (whose informer it obtains at once,
// so that starting the informer factory afterwards starts it). It does not
// start anything: call Run.
//
// Bad options yield an error wrapping [ErrInvalid] that names every
// problem: a nil client or informer, a negative size or worker count, a
// non-canonical prefix, more than one cluster or service CIDR of a family,
// no cluster CIDR in range mode, a mask size set for a family without a
// cluster CIDR, shorter than its cluster CIDR or longer than the address,
// or a cluster cut into more than [MaxSetSize] subnets.
func NewNodeController(client kubernetes.Interface, nodes coreinformers.NodeInformer, opts NodeControllerOptions) (*NodeController, error) {
	var errs []error
	if client == nil {
		errs = append(errs, fmt.Errorf("ipam: node controller: nil client: %w", ErrInvalid))
	}
	if nodes == nil {
		errs = append(errs, fmt.Errorf("ipam: node controller: nil Node informer: %w", ErrInvalid))
	}
	if opts.Workers < 0 {
		errs = append(errs, fmt.Errorf("ipam: node controller: negative Workers %d: %w", opts.Workers, ErrInvalid))
	}
	sets, err := nodeSets(opts)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := &NodeController{
		client:    client,
		informer:  nodes.Informer(),
		lister:    nodes.Lister(),
		cloud:     opts.CloudCIDRs,
		workers:   cmp.Or(opts.Workers, DefaultNodeControllerWorkers),
		sets:      sets,
		records:   map[string]*nodeRecord{},
		owners:    map[netip.Prefix]string{},
		contested: map[string]struct{}{},
		starved:   map[string]struct{}{},
	}
	return c, nil
}

// nodeSets validates the address options and returns the cluster CIDR
// sets, service ranges occupied.
func nodeSets(opts NodeControllerOptions) ([]*CIDRSet, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("ipam: node controller: "+format+": %w", append(args, ErrInvalid)...))
	}
	var cluster [2]netip.Prefix // by family: 0 IPv4, 1 IPv6
	for _, p := range opts.ClusterCIDRs {
		if err := checkPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("ipam: node controller: cluster CIDR: %w", err))
			continue
		}
		f := family(p.Addr())
		if cluster[f].IsValid() {
			bad("cluster CIDRs %s and %s are both %s: at most one per family (dual-stack is one IPv4 and one IPv6)", cluster[f], p, familyName(p.Addr()))
			continue
		}
		cluster[f] = p
	}
	if opts.CloudCIDRs == nil && len(opts.ClusterCIDRs) == 0 {
		bad("range mode (no CloudCIDRs) needs a cluster CIDR")
	}
	masks := [2]int{opts.MaskSizeIPv4, opts.MaskSizeIPv6}
	for f, name := range [2]string{"IPv4", "IPv6"} {
		size := masks[f]
		switch {
		case size < 0:
			bad("negative MaskSize%s %d", name, size)
		case size != 0 && !cluster[f].IsValid():
			bad("MaskSize%s is %d but there is no %s cluster CIDR", name, size, name)
		case size != 0 && size < cluster[f].Bits():
			bad("%s node mask size /%d is shorter than cluster CIDR %s: a Node's CIDR cannot be larger than the cluster's", name, size, cluster[f])
		case size > cluster[f].Addr().BitLen():
			bad("%s node mask size /%d is longer than an %s address", name, size, name)
		}
	}
	var service [2]netip.Prefix
	for _, p := range opts.ServiceCIDRs {
		if err := checkPrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("ipam: node controller: service CIDR: %w", err))
			continue
		}
		f := family(p.Addr())
		if service[f].IsValid() {
			bad("service CIDRs %s and %s are both %s: at most one per family", service[f], p, familyName(p.Addr()))
			continue
		}
		service[f] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	defaults := [2]int{DefaultNodeMaskSizeIPv4, DefaultNodeMaskSizeIPv6}
	var sets []*CIDRSet
	for _, p := range opts.ClusterCIDRs {
		f := family(p.Addr())
		set, err := NewCIDRSet(p, cmp.Or(masks[f], defaults[f]))
		if err != nil {
			errs = append(errs, fmt.Errorf("ipam: node controller: %w", err))
			continue
		}
		if svc := service[f]; svc.IsValid() {
			switch {
			case svc.Bits() <= p.Bits() && svc.Contains(p.Addr()):
				_ = set.Occupy(p) // the service range covers the whole cluster
			case p.Bits() <= svc.Bits() && p.Contains(svc.Addr()):
				_ = set.Occupy(svc) // cannot fail: svc is canonical and inside
			}
		}
		sets = append(sets, set)
	}
	return sets, errors.Join(errs...)
}

// family returns 0 for IPv4, 1 for IPv6.
func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// Usage returns the use of each cluster CIDR, in the order of
// ClusterCIDRs (none in cloud mode without cluster CIDRs). It is safe for
// concurrent use and consistent: a Node's families are allocated and
// rolled back under one lock.
func (c *NodeController) Usage() []CIDRUsage {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]CIDRUsage, 0, len(c.sets))
	for _, s := range c.sets {
		out = append(out, CIDRUsage{ClusterCIDR: s.Cluster(), MaskSize: s.SubnetBits(), Used: s.Allocated(), Size: s.Size()})
	}
	return out
}

// Run runs the controller until ctx ends, and returns once every goroutine
// it started has stopped. It starts an Event broadcaster, watches Nodes,
// waits for the Node informer to sync, occupies the pod CIDRs of every
// existing Node, and only then syncs Nodes with the configured number of
// workers from a rate-limited queue. It logs through klog.FromContext(ctx).
// A second call returns at once.
func (c *NodeController) Run(ctx context.Context) {
	logger := klog.LoggerWithName(klog.FromContext(ctx), "node-ipam")
	if !c.started.CompareAndSwap(false, true) {
		logger.Error(nil, "NodeController.Run called twice; ignoring the second call")
		return
	}
	ctx = klog.NewContext(ctx, logger)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartStructuredLogging(3)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "node-ipam-controller"})

	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "node_ipam"})
	defer c.queue.ShutDown()

	reg, err := c.informer.AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: c.nodeUpdated,
		DeleteFunc: c.enqueue,
	}, cache.HandlerOptions{Logger: &logger})
	if err != nil {
		logger.Error(err, "Cannot watch Nodes; node IPAM controller not started")
		return
	}
	defer func() { _ = c.informer.RemoveEventHandler(reg) }()

	mode := "range"
	if c.cloud != nil {
		mode = "cloud"
	}
	logger.Info("Starting node IPAM controller", "mode", mode, "usage", c.Usage())
	defer logger.Info("Stopped node IPAM controller")
	if !cache.WaitFor(ctx, "Node informer sync", reg.HasSyncedChecker()) {
		return
	}
	c.rebuild(ctx)

	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

// rebuild occupies the pod CIDRs of every Node in the synced informer, in
// name order.
func (c *NodeController) rebuild(ctx context.Context) {
	nodes, err := c.lister.List(labels.Everything())
	if err != nil { // the cache lister does not fail
		klog.FromContext(ctx).Error(err, "Listing Nodes from the informer")
	}
	slices.SortFunc(nodes, func(a, b *v1.Node) int { return strings.Compare(a.Name, b.Name) })
	with := 0
	for _, n := range nodes {
		if spec := specCIDRs(n); len(spec) > 0 {
			c.adopt(ctx, n, spec)
			with++
		}
	}
	klog.FromContext(ctx).V(1).Info("Occupied the pod CIDRs of existing Nodes", "nodes", len(nodes), "withPodCIDRs", with, "usage", c.Usage())
}

func (c *NodeController) enqueue(obj any) {
	// Handles cache.DeletedFinalStateUnknown tombstones.
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		klog.Background().Error(err, "Cannot get the key of a Node event", "object", fmt.Sprintf("%T", obj))
		return
	}
	c.queue.Add(key)
}

// nodeUpdated enqueues a Node whose pod CIDRs or identity changed, or that
// still has none; heartbeats of Nodes with pod CIDRs are ignored.
func (c *NodeController) nodeUpdated(oldObj, newObj any) {
	o, ok1 := oldObj.(*v1.Node)
	n, ok2 := newObj.(*v1.Node)
	if ok1 && ok2 && o.UID == n.UID && len(specCIDRs(n)) > 0 && slices.Equal(specCIDRs(o), specCIDRs(n)) {
		return
	}
	c.enqueue(newObj)
}

func (c *NodeController) processNext(ctx context.Context) bool {
	name, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(name)
	if err := c.sync(ctx, name); err != nil {
		if ctx.Err() != nil {
			return true
		}
		klog.FromContext(ctx).Error(err, "Syncing Node pod CIDRs failed; will retry", "node", name)
		c.queue.AddRateLimited(name)
		return true
	}
	c.queue.Forget(name)
	return true
}

// sync brings Node name to its desired state. An error means "retry with
// backoff".
func (c *NodeController) sync(ctx context.Context, name string) error {
	node, err := c.lister.Get(name)
	switch {
	case apierrors.IsNotFound(err):
		c.forget(ctx, name)
		return nil
	case err != nil:
		return err
	}
	if spec := specCIDRs(node); len(spec) > 0 {
		c.adopt(ctx, node, spec)
		return nil
	}
	cidrs, err := c.reserve(ctx, node)
	if err != nil || len(cidrs) == 0 {
		return err
	}
	return c.write(ctx, node, cidrs)
}

// specCIDRs returns the Node's pod CIDRs as written: spec.podCIDRs, or
// spec.podCIDR when only that is set.
func specCIDRs(n *v1.Node) []string {
	if len(n.Spec.PodCIDRs) > 0 {
		return n.Spec.PodCIDRs
	}
	if n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return nil
}

// forget releases what Node name holds, after its deletion.
func (c *NodeController) forget(ctx context.Context, name string) {
	c.mu.Lock()
	wake := c.forgetLocked(ctx, name)
	c.mu.Unlock()
	c.wake(wake)
}

func (c *NodeController) wake(names []string) {
	for _, n := range names {
		c.queue.Add(n)
	}
}

// forgetLocked drops Node name's record: each slot it holds passes to a
// Node whose existing CIDRs want it, or is freed. It returns the starved
// Nodes to requeue when a slot was freed.
func (c *NodeController) forgetLocked(ctx context.Context, name string) (wake []string) {
	delete(c.starved, name)
	rec, ok := c.records[name]
	if !ok {
		return nil
	}
	delete(c.records, name)
	delete(c.contested, name)
	logger := klog.FromContext(ctx)
	freed := false
	for _, s := range rec.slots {
		if c.owners[s] != name {
			continue
		}
		delete(c.owners, s)
		if heir := c.heirLocked(s); heir != "" {
			c.owners[s] = heir
			logger.V(2).Info("Pod CIDR subnet passes to the Node that overlaps it", "subnet", s, "from", name, "to", heir)
			continue
		}
		_ = c.setFor(s.Addr()).Release(s) // cannot fail: s is a subnet of the set
		freed = true
	}
	logger.V(2).Info("Released the pod CIDRs of a Node", "node", name, "podCIDRs", rec.cidrs)
	if freed && len(c.starved) > 0 {
		wake = slices.Sorted(maps.Keys(c.starved))
		clear(c.starved)
	}
	return wake
}

// heirLocked gives slot s to the first contested Node (by name) that wants
// it, and returns its name, or "".
func (c *NodeController) heirLocked(s netip.Prefix) string {
	for _, n := range slices.Sorted(maps.Keys(c.contested)) {
		rec := c.records[n]
		i := slices.Index(rec.wanted, s)
		if i < 0 {
			continue
		}
		rec.wanted = slices.Delete(rec.wanted, i, i+1)
		rec.slots = append(rec.slots, s)
		if len(rec.wanted) == 0 {
			delete(c.contested, n)
		}
		return n
	}
	return ""
}

// setFor returns the set of a's family, or nil.
func (c *NodeController) setFor(a netip.Addr) *CIDRSet {
	for _, s := range c.sets {
		if s.Cluster().Addr().Is4() == a.Is4() {
			return s
		}
	}
	return nil
}

// adopt records the pod CIDRs Node already has (spec), occupying them.
// Problems become Events; the Node is never changed.
func (c *NodeController) adopt(ctx context.Context, node *v1.Node, spec []string) {
	cidrs, problems := parseSpec(spec)
	c.mu.Lock()
	rec := c.records[node.Name]
	if rec != nil && rec.uid == node.UID {
		if slices.Equal(rec.spec, spec) {
			c.mu.Unlock()
			return // known
		}
		if rec.spec == nil && len(problems) == 0 && slices.Equal(rec.cidrs, cidrs) {
			rec.spec = slices.Clone(spec) // our reservation, now on the Node
			c.mu.Unlock()
			return
		}
	}
	wake := c.forgetLocked(ctx, node.Name)
	rec = &nodeRecord{uid: node.UID, spec: slices.Clone(spec), cidrs: cidrs}
	c.records[node.Name] = rec
	problems = append(problems, c.claimLocked(node.Name, rec, false)...)
	c.mu.Unlock()
	c.wake(wake)
	klog.FromContext(ctx).V(4).Info("Occupied the pod CIDRs of a Node", "node", node.Name, "podCIDRs", spec)
	if len(problems) > 0 {
		// One Event for all: a conflict is the reason when there is one.
		reason := ReasonInvalidPodCIDR
		if slices.ContainsFunc(problems, func(p problem) bool { return p.reason == ReasonPodCIDRConflict }) {
			reason = ReasonPodCIDRConflict
		}
		c.event(ctx, node, reason, "The Node's pod CIDRs are left as they are: %s", joinProblems(problems))
	}
}

func joinProblems(problems []problem) string {
	msgs := make([]string, 0, len(problems))
	for _, p := range problems {
		msgs = append(msgs, p.msg)
	}
	return strings.Join(msgs, "; ")
}

// parseSpec parses a Node's pod CIDRs leniently (host bits are masked, as
// upstream does); it reports what it cannot use.
func parseSpec(spec []string) ([]netip.Prefix, []problem) {
	var out []netip.Prefix
	var problems []problem
	for _, s := range spec {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			problems = append(problems, problem{ReasonInvalidPodCIDR, fmt.Sprintf("Pod CIDR %q is not a valid CIDR; it is ignored", s)})
			continue
		}
		p = p.Masked()
		if i := slices.IndexFunc(out, func(q netip.Prefix) bool { return q.Addr().Is4() == p.Addr().Is4() }); i >= 0 {
			problems = append(problems, problem{ReasonInvalidPodCIDR, fmt.Sprintf("Pod CIDRs %s and %s are both %s; only the first is tracked", out[i], p, familyName(p.Addr()))})
			continue
		}
		out = append(out, p)
	}
	return out, problems
}

// claimLocked occupies the slots that rec.cidrs cover for Node name. A slot
// held by another Node is recorded as wanted (it passes to name when the
// holder goes); one in a service range is reported. When strict, nothing is
// taken if there is any problem.
func (c *NodeController) claimLocked(name string, rec *nodeRecord, strict bool) []problem {
	var problems []problem
	var take, wanted []netip.Prefix
	reason, invalid := ReasonPodCIDRConflict, ReasonInvalidPodCIDR
	for _, p := range rec.cidrs {
		set := c.setFor(p.Addr())
		if set == nil {
			if c.cloud == nil {
				problems = append(problems, problem{invalid, fmt.Sprintf("Pod CIDR %s: there is no %s cluster CIDR", p, familyName(p.Addr()))})
			}
			continue // cloud mode: untracked family
		}
		cl := set.Cluster()
		if p.Bits() < cl.Bits() || !cl.Contains(p.Addr()) {
			problems = append(problems, problem{invalid, fmt.Sprintf("Pod CIDR %s is outside cluster CIDR %s", p, cl)})
			continue
		}
		slots, ok := slotsOf(set, p)
		if !ok {
			problems = append(problems, problem{invalid, fmt.Sprintf("Pod CIDR %s is more than 2^%d times the /%d node mask size; it is not tracked", p, maxWideSlotBits, set.SubnetBits())})
			continue
		}
		holders := map[string]bool{}
		service := false
		for _, s := range slots {
			owner, held := c.owners[s]
			switch {
			case held && owner == name:
			case held:
				wanted = append(wanted, s)
				holders[owner] = true
			case set.Has(s):
				service = true
			default:
				take = append(take, s)
			}
		}
		for _, h := range slices.Sorted(maps.Keys(holders)) {
			problems = append(problems, problem{reason, fmt.Sprintf("Pod CIDR %s overlaps the pod CIDRs of Node %s", p, h)})
		}
		if service {
			problems = append(problems, problem{reason, fmt.Sprintf("Pod CIDR %s overlaps the service range", p)})
		}
	}
	if strict && len(problems) > 0 {
		return problems
	}
	for _, s := range take {
		_ = c.setFor(s.Addr()).Occupy(s) // cannot fail: s is a subnet of the set
		c.owners[s] = name
	}
	rec.slots = append(rec.slots, take...)
	rec.wanted = wanted
	if len(wanted) > 0 {
		c.contested[name] = struct{}{}
	}
	return problems
}

// slotsOf returns the node-mask subnets of set that p (inside its cluster)
// covers: the one containing p when p is narrower, every one inside p when
// it is wider (ok is false past 2^maxWideSlotBits).
func slotsOf(set *CIDRSet, p netip.Prefix) ([]netip.Prefix, bool) {
	bits := set.SubnetBits()
	if p.Bits() >= bits {
		return []netip.Prefix{netip.PrefixFrom(p.Addr(), bits).Masked()}, true
	}
	k := bits - p.Bits()
	if k > maxWideSlotBits {
		return nil, false
	}
	base, shift := u128Of(p.Addr()), uint(p.Addr().BitLen()-bits)
	out := make([]netip.Prefix, 0, 1<<k)
	for i := range uint64(1) << k {
		out = append(out, netip.PrefixFrom(base.or(u128{0, i}.shl(shift)).addr(p.Addr().Is4()), bits))
	}
	return out, true
}

// reserve returns the CIDRs for a Node without pod CIDRs: those reserved
// for it earlier, else new ones (range mode) or the cloud's (cloud mode).
// It returns nothing, and no error, for a Node waiting for space.
func (c *NodeController) reserve(ctx context.Context, node *v1.Node) ([]netip.Prefix, error) {
	name := node.Name
	c.mu.Lock()
	var wake []string
	if rec := c.records[name]; rec != nil {
		if rec.uid == node.UID && len(rec.cidrs) > 0 {
			cidrs := rec.cidrs
			c.mu.Unlock()
			return cidrs, nil // reserved, or the Node lost them: write them (again)
		}
		wake = c.forgetLocked(ctx, name) // a previous Node of that name
	}
	if c.cloud != nil {
		c.mu.Unlock()
		c.wake(wake)
		return c.reserveFromCloud(ctx, node)
	}
	if _, ok := c.starved[name]; ok {
		c.mu.Unlock()
		return nil, nil // woken when a subnet is freed
	}
	cidrs, full := c.allocateLocked(name)
	if full != nil {
		c.starved[name] = struct{}{}
	} else {
		c.records[name] = &nodeRecord{uid: node.UID, cidrs: cidrs, slots: slices.Clone(cidrs)}
	}
	c.mu.Unlock()
	c.wake(wake)
	if full != nil {
		klog.FromContext(ctx).V(2).Info("No free pod CIDR for Node", "node", name, "clusterCIDR", full.Cluster())
		c.event(ctx, node, ReasonCIDRNotAvailable, "No pod CIDRs allocated: every /%d subnet of cluster CIDR %s is in use (%d of %d); the Node is retried when a Node is deleted",
			full.SubnetBits(), full.Cluster(), full.Allocated(), full.Size())
		return nil, nil
	}
	return cidrs, nil
}

// allocateLocked allocates one subnet per set for Node name, all or
// nothing: when a set is full it releases what it took and returns that set.
func (c *NodeController) allocateLocked(name string) ([]netip.Prefix, *CIDRSet) {
	got := make([]netip.Prefix, 0, len(c.sets))
	for _, set := range c.sets {
		p, err := set.AllocateNext()
		if err != nil { // ErrFull
			for _, q := range got {
				_ = c.setFor(q.Addr()).Release(q)
				delete(c.owners, q)
			}
			return nil, set
		}
		got = append(got, p)
		c.owners[p] = name
	}
	return got, nil
}

// reserveFromCloud asks the cloud for the Node's CIDRs and claims them, all
// or nothing.
func (c *NodeController) reserveFromCloud(ctx context.Context, node *v1.Node) ([]netip.Prefix, error) {
	got, err := c.cloud(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("pod CIDRs of node %s from the cloud: %w", node.Name, err)
	}
	if len(got) == 0 {
		c.event(ctx, node, ReasonCIDRNotAvailable, "The cloud reports no pod CIDRs for the Node yet")
		return nil, fmt.Errorf("the cloud reports no pod CIDRs for node %s yet: %w", node.Name, ErrFull)
	}
	cidrs, err := c.checkCloud(got)
	if err != nil {
		c.event(ctx, node, ReasonCIDRAssignmentFailed, "Unusable pod CIDRs from the cloud: %v", err)
		return nil, fmt.Errorf("node %s: %w", node.Name, err)
	}
	rec := &nodeRecord{uid: node.UID, cidrs: cidrs}
	c.mu.Lock()
	problems := c.claimLocked(node.Name, rec, true)
	if len(problems) == 0 {
		c.records[node.Name] = rec
	}
	c.mu.Unlock()
	if len(problems) > 0 {
		msg := joinProblems(problems)
		sentinel := ErrOutOfRange
		if slices.ContainsFunc(problems, func(p problem) bool { return p.reason == ReasonPodCIDRConflict }) {
			sentinel = ErrConflict
		}
		c.event(ctx, node, ReasonCIDRAssignmentFailed, "Pod CIDRs from the cloud not assigned: %s", msg)
		return nil, fmt.Errorf("node %s: pod CIDRs from the cloud: %s: %w", node.Name, msg, sentinel)
	}
	return cidrs, nil
}

// checkCloud validates the cloud's CIDRs and orders them as the cluster
// CIDRs (families without one last, in the cloud's order).
func (c *NodeController) checkCloud(got []netip.Prefix) ([]netip.Prefix, error) {
	var seen [2]bool
	for _, p := range got {
		if err := checkPrefix(p); err != nil {
			return nil, fmt.Errorf("ipam: %w", err)
		}
		f := family(p.Addr())
		if seen[f] {
			return nil, fmt.Errorf("ipam: more than one %s pod CIDR (%v): %w", familyName(p.Addr()), got, ErrInvalid)
		}
		seen[f] = true
	}
	rank := func(p netip.Prefix) int {
		for i, s := range c.sets {
			if s.Cluster().Addr().Is4() == p.Addr().Is4() {
				return i
			}
		}
		return len(c.sets)
	}
	out := slices.Clone(got)
	slices.SortStableFunc(out, func(a, b netip.Prefix) int { return rank(a) - rank(b) })
	return out, nil
}

// write sets the Node's pod CIDRs unless it already has some. On conflict
// it re-reads the Node and tries again. When the Node got other pod CIDRs
// meanwhile, the reservation is dropped and those are adopted.
func (c *NodeController) write(ctx context.Context, node *v1.Node, cidrs []netip.Prefix) error {
	logger := klog.FromContext(ctx)
	strs := make([]string, len(cidrs))
	for i, p := range cidrs {
		strs[i] = p.String()
	}
	nodes := c.client.CoreV1().Nodes()
	cur := node
	var other *v1.Node
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		n := cur
		cur = nil
		if n == nil {
			var err error
			if n, err = nodes.Get(ctx, node.Name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		if n.UID != node.UID {
			return apierrors.NewNotFound(v1.Resource("nodes"), node.Name) // replaced: its deletion releases
		}
		if spec := specCIDRs(n); len(spec) > 0 {
			if !slices.Equal(spec, strs) {
				other = n
			}
			return nil
		}
		patch, err := podCIDRsPatch(n, strs)
		if err != nil {
			return err
		}
		_, err = nodes.Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	switch {
	case apierrors.IsNotFound(err):
		return nil // the Node's deletion releases its reservation
	case err != nil:
		c.event(ctx, node, ReasonCIDRAssignmentFailed, "Writing pod CIDRs %v failed; they stay reserved for the Node: %v", strs, err)
		return fmt.Errorf("writing pod CIDRs %v to node %s: %w", strs, node.Name, err)
	case other != nil:
		logger.Info("Node got other pod CIDRs meanwhile; releasing the ones reserved for it", "node", node.Name, "reserved", strs, "podCIDRs", specCIDRs(other))
		c.forget(ctx, node.Name)
		c.adopt(ctx, other, specCIDRs(other))
		return nil
	}
	logger.V(2).Info("Assigned pod CIDRs", "node", node.Name, "podCIDRs", strs)
	return nil
}

// podCIDRsPatch is a JSON merge patch setting only spec.podCIDR and
// spec.podCIDRs, preconditioned on n's UID and resourceVersion.
func podCIDRsPatch(n *v1.Node, cidrs []string) ([]byte, error) {
	type meta struct {
		UID             types.UID `json:"uid,omitempty"`
		ResourceVersion string    `json:"resourceVersion,omitempty"`
	}
	type spec struct {
		PodCIDR  string   `json:"podCIDR"`
		PodCIDRs []string `json:"podCIDRs"`
	}
	return json.Marshal(struct {
		Metadata meta `json:"metadata"`
		Spec     spec `json:"spec"`
	}{meta{n.UID, n.ResourceVersion}, spec{cidrs[0], cidrs}})
}

func (c *NodeController) event(ctx context.Context, node *v1.Node, reason, format string, args ...any) {
	klog.FromContext(ctx).V(2).Info("Node event", "node", node.Name, "reason", reason, "message", fmt.Sprintf(format, args...))
	c.recorder.Eventf(node, v1.EventTypeWarning, reason, format, args...)
}
