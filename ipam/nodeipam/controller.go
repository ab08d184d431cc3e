package nodeipam

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
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

	"github.com/ccmkit/ccmkit/ipam"
)

// Names of the controller, as kube-controller-manager's.
const (
	// Name is the controller's canonical name in --controllers.
	Name = "node-ipam-controller"
	// Alias is its short name in --controllers.
	Alias = "nodeipam"
	// ClientName is the identity of its API client (its service account
	// with --use-service-account-credentials).
	ClientName = "node-controller"
)

// Reasons of the Events a [Controller] records on Nodes. All are of type
// Warning. A Node gets an Event once per occurrence: while it is retried
// for the same reason with the same message, the Event is not repeated.
const (
	// ReasonCIDRNotAvailable: a cluster CIDR has no free subnet for the Node
	// (nothing was allocated, in no family), or in cloud mode the Node's
	// instance reports no pod CIDRs yet. The Node is retried with backoff
	// (see [Options].RateLimiter), and at once when a Node deletion frees
	// space (range mode) or its providerID changes (cloud mode).
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
	// ReasonPodCIDRFamilyMissing: in cloud mode on a dual-stack cluster
	// (two cluster CIDRs), the cloud reported pod CIDRs of one family only.
	// The Node is given them and is single-stack; the message names the
	// missing family.
	ReasonPodCIDRFamilyMissing = "PodCIDRFamilyMissing"
)

// Defaults of [Options].
const (
	// DefaultMaskSizeIPv4 is kube-controller-manager's default IPv4 node
	// mask size (--node-cidr-mask-size-ipv4).
	DefaultMaskSizeIPv4 = 24
	// DefaultMaskSizeIPv6 is kube-controller-manager's default IPv6 node
	// mask size (--node-cidr-mask-size-ipv6).
	DefaultMaskSizeIPv6 = 64
	// DefaultWorkers is the default number of Nodes synced in parallel.
	DefaultWorkers = 10
	// DefaultMaxRetryDelay caps the per-Node backoff of the default rate
	// limiter: a Node waiting for space or for the cloud is retried at
	// least this often.
	DefaultMaxRetryDelay = 5 * time.Minute
)

// CloudCIDRsFunc returns the pod CIDRs the cloud assigned to node (at most
// one per IP family), for the cloud mode of a [Controller]. An empty
// result means "none yet". It is called without any lock held and must be
// safe for concurrent use.
type CloudCIDRsFunc func(ctx context.Context, node *v1.Node) ([]netip.Prefix, error)

// Options configures a [Controller]. The zero value of each field means
// its default; ClusterCIDRs or CloudCIDRs must be set. [Flags.Options]
// builds them from command-line flags.
type Options struct {
	// ClusterCIDRs are the pod network (--cluster-cidr): one prefix, or one
	// IPv4 and one IPv6 prefix (dual-stack). Their order is the order of
	// every Node's spec.podCIDRs (the first is the primary family). Required
	// in range mode; optional in cloud mode, where the cloud's CIDRs are
	// then checked to lie inside them and not to overlap.
	ClusterCIDRs []netip.Prefix
	// MaskSizeIPv4 is the prefix length of the IPv4 CIDR of a Node
	// (default [DefaultMaskSizeIPv4]). It must be at least the IPv4
	// cluster CIDR's length, and may be set only with an IPv4 cluster CIDR.
	MaskSizeIPv4 int
	// MaskSizeIPv6 is the same for IPv6 (default [DefaultMaskSizeIPv6]).
	MaskSizeIPv6 int
	// ServiceCIDRs are the service ranges (--service-cluster-ip-range), at
	// most one per family. Every node subnet overlapping one is occupied
	// before anything is allocated, so it never goes to a Node. A service
	// range of a family without a cluster CIDR, or outside it, is ignored.
	ServiceCIDRs []netip.Prefix
	// Allocator is the mode, as --cidr-allocator-type: [RangeAllocator] or
	// [CloudAllocator]. Empty means CloudAllocator when CloudCIDRs is set,
	// else RangeAllocator. CloudAllocator requires CloudCIDRs and
	// RangeAllocator forbids it.
	Allocator string
	// CloudCIDRs selects cloud mode: a Node's pod CIDRs are the ones it
	// returns instead of subnets allocated from ClusterCIDRs. See
	// [InstanceCIDRs].
	CloudCIDRs CloudCIDRsFunc
	// Workers is the number of Nodes synced in parallel (default
	// [DefaultWorkers]).
	Workers int
	// RateLimiter paces the retries of a Node: after a failed write or
	// cloud lookup, and while it waits for space in an exhausted range or
	// for the cloud to report its CIDRs. Default: per Node, 5 ms doubling
	// up to [DefaultMaxRetryDelay], then every DefaultMaxRetryDelay, and at
	// most 10 retries per second overall (burst 100). A Node being retried
	// is not synced again on Node updates that change nothing the
	// controller reads (its UID, providerID and pod CIDRs).
	RateLimiter workqueue.TypedRateLimiter[string]
}

// DefaultRateLimiter returns a new rate limiter as the default of
// [Options].RateLimiter. It is safe for concurrent use.
func DefaultRateLimiter() workqueue.TypedRateLimiter[string] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Millisecond, DefaultMaxRetryDelay),
		&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

// Controller is the node IPAM controller: it assigns spec.podCIDRs (and
// spec.podCIDR, the first of them) to every Node that has none, one CIDR
// per cluster CIDR (dual-stack: one per family), and never changes a Node
// that has them. Its bookkeeping is a [Ledger].
//
// In range mode the CIDRs are the lowest free subnets of the cluster CIDRs
// (an [ipam.CIDRSet] per family). A Node gets every family or none: when
// one family is exhausted the others are released at once, the Node gets
// an Event [ReasonCIDRNotAvailable] and is retried when a Node deletion
// frees space, and periodically with backoff (see [Options].RateLimiter).
// In cloud mode ([Options].CloudCIDRs) the CIDRs are the cloud's, copied as
// they are (checked against the cluster CIDRs when these are given); a
// Node whose instance has none yet is retried with backoff.
//
// Restart safety: Run waits for the Node informer to sync and occupies the
// pod CIDRs of every existing Node before it allocates anything, so no CIDR
// is given twice across restarts. Pod CIDRs that a Node already has are
// occupied as they are, even when they are wrong; when they lie outside the
// cluster CIDRs or overlap another Node's or a service range, the Node gets
// an Event ([ReasonInvalidPodCIDR], [ReasonPodCIDRConflict]) and is left
// unchanged. A CIDR reserved for a Node stays reserved until the Node is
// deleted, even when writing it fails, so it is never given to two Nodes.
//
// The Node is written with a JSON merge patch of spec.podCIDR and
// spec.podCIDRs only, preconditioned on the Node's UID and resourceVersion,
// and retried on conflict after re-reading the Node.
//
// A Controller is safe for concurrent use: its state is guarded by mutexes
// that are never held across an API or cloud call. Run must be called
// once.
type Controller struct {
	client   kubernetes.Interface
	informer cache.SharedIndexInformer
	lister   corelisters.NodeLister
	cloud    CloudCIDRsFunc
	workers  int
	limiter  workqueue.TypedRateLimiter[string]
	ledger   *Ledger

	started atomic.Bool
	// Set by Run before any handler or worker runs.
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder

	mu sync.Mutex
	// retrying Nodes are retried by the rate limiter: updates that change
	// nothing the controller reads do not sync them.
	retrying map[string]struct{}
	// lastEvent is the last Event recorded on each Node since its last
	// successful sync, not repeated.
	lastEvent map[string]eventKey
}

type eventKey struct {
	uid             types.UID
	reason, message string
}

// New returns a node IPAM controller that writes Nodes with client and
// watches them through nodes (whose informer it obtains at once, so that
// starting the informer factory afterwards starts it). It does not start
// anything: call Run.
//
// Bad options yield an error wrapping [ipam.ErrInvalid] that names every
// problem: a nil client or informer, a negative worker count, an unknown
// Allocator or one that contradicts CloudCIDRs, no cluster CIDR in range
// mode, and every problem [NewLedger] reports.
func New(client kubernetes.Interface, nodes coreinformers.NodeInformer, opts Options) (*Controller, error) {
	var errs []error
	if client == nil {
		errs = append(errs, fmt.Errorf("nodeipam: nil client: %w", ipam.ErrInvalid))
	}
	if nodes == nil {
		errs = append(errs, fmt.Errorf("nodeipam: nil Node informer: %w", ipam.ErrInvalid))
	}
	ledger, err := checkOptions(opts)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	limiter := opts.RateLimiter
	if limiter == nil {
		limiter = DefaultRateLimiter()
	}
	return &Controller{
		client:    client,
		informer:  nodes.Informer(),
		lister:    nodes.Lister(),
		cloud:     opts.CloudCIDRs,
		workers:   cmp.Or(opts.Workers, DefaultWorkers),
		limiter:   limiter,
		ledger:    ledger,
		retrying:  map[string]struct{}{},
		lastEvent: map[string]eventKey{},
	}, nil
}

// checkOptions validates opts (all but the client and informer) and returns
// the ledger they describe.
func checkOptions(opts Options) (*Ledger, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("nodeipam: "+format+": %w", append(args, ipam.ErrInvalid)...))
	}
	if opts.Workers < 0 {
		bad("negative Workers %d", opts.Workers)
	}
	cloud := opts.CloudCIDRs != nil
	switch opts.Allocator {
	case "":
	case RangeAllocator:
		if cloud {
			bad("Allocator %s with CloudCIDRs set: CloudCIDRs selects %s", RangeAllocator, CloudAllocator)
		}
	case CloudAllocator:
		if !cloud {
			bad("Allocator %s needs CloudCIDRs (see InstanceCIDRs)", CloudAllocator)
			cloud = true // report the other problems as for cloud mode
		}
	default:
		bad("unknown Allocator %q: want %s or %s", opts.Allocator, RangeAllocator, CloudAllocator)
	}
	if !cloud && len(opts.ClusterCIDRs) == 0 {
		bad("range mode (%s) needs a cluster CIDR", RangeAllocator)
	}
	ledger, err := NewLedger(LedgerOptions{
		ClusterCIDRs:      opts.ClusterCIDRs,
		MaskSizeIPv4:      opts.MaskSizeIPv4,
		MaskSizeIPv6:      opts.MaskSizeIPv6,
		ServiceCIDRs:      opts.ServiceCIDRs,
		UntrackedFamilies: cloud,
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ledger, nil
}

// Usage returns the use of each cluster CIDR, in the order of
// ClusterCIDRs (none in cloud mode without cluster CIDRs). It is safe for
// concurrent use and consistent.
func (c *Controller) Usage() []CIDRUsage { return c.ledger.Usage() }

// Run runs the controller until ctx ends, and returns once every goroutine
// it started has stopped: it blocks. It starts an Event broadcaster,
// watches Nodes, waits for the Node informer to sync, occupies the pod
// CIDRs of every existing Node, and only then syncs Nodes with the
// configured number of workers from a rate-limited queue. It logs through
// klog.FromContext(ctx).
//
// It returns nil when ctx ends (also before the informer has synced), and
// an error when it cannot run: a second call, or the Node event handler
// cannot be added (the informer has stopped).
func (c *Controller) Run(ctx context.Context) error {
	logger := klog.LoggerWithName(klog.FromContext(ctx), "node-ipam")
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("nodeipam: Controller.Run called twice")
	}
	ctx = klog.NewContext(ctx, logger)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartStructuredLogging(3)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: Name})

	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(c.limiter,
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "node_ipam"})
	defer c.queue.ShutDown()

	reg, err := c.informer.AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: c.nodeUpdated,
		DeleteFunc: c.enqueue,
	}, cache.HandlerOptions{Logger: &logger})
	if err != nil {
		return fmt.Errorf("nodeipam: watching Nodes: %w", err)
	}
	defer func() { _ = c.informer.RemoveEventHandler(reg) }()

	mode := RangeAllocator
	if c.cloud != nil {
		mode = CloudAllocator
	}
	logger.Info("Starting node IPAM controller", "mode", mode, "usage", c.Usage())
	defer logger.Info("Stopped node IPAM controller")
	if !cache.WaitFor(ctx, "Node informer sync", reg.HasSyncedChecker()) {
		return nil
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
	return nil
}

// rebuild occupies the pod CIDRs of every Node in the synced informer, in
// name order.
func (c *Controller) rebuild(ctx context.Context) {
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

func (c *Controller) enqueue(obj any) {
	// Handles cache.DeletedFinalStateUnknown tombstones.
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		klog.Background().Error(err, "Cannot get the key of a Node event", "object", fmt.Sprintf("%T", obj))
		return
	}
	c.queue.Add(key)
}

// nodeUpdated enqueues a Node whose pod CIDRs or identity changed, or that
// still has none. Heartbeats of Nodes with pod CIDRs are ignored, and so
// are updates of a Node being retried with backoff that change neither its
// UID, nor its providerID (cloud mode looks it up by it), nor its pod
// CIDRs: the rate limiter retries it.
func (c *Controller) nodeUpdated(oldObj, newObj any) {
	o, ok1 := oldObj.(*v1.Node)
	n, ok2 := newObj.(*v1.Node)
	if ok1 && ok2 && o.UID == n.UID && slices.Equal(specCIDRs(o), specCIDRs(n)) {
		if len(specCIDRs(n)) > 0 {
			return
		}
		c.mu.Lock()
		_, retrying := c.retrying[n.Name]
		c.mu.Unlock()
		if retrying && o.Spec.ProviderID == n.Spec.ProviderID {
			return
		}
	}
	c.enqueue(newObj)
}

func (c *Controller) processNext(ctx context.Context) bool {
	name, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(name)
	err := c.sync(ctx, name)
	switch {
	case err == nil:
		c.queue.Forget(name)
		c.settled(name)
	case ctx.Err() != nil:
	default:
		c.mu.Lock()
		c.retrying[name] = struct{}{}
		c.mu.Unlock()
		if errors.Is(err, ipam.ErrFull) { // waiting for space or for the cloud
			klog.FromContext(ctx).V(2).Info("Node waits for pod CIDRs; will retry", "node", name, "reason", err, "retries", c.queue.NumRequeues(name))
		} else {
			klog.FromContext(ctx).Error(err, "Syncing Node pod CIDRs failed; will retry", "node", name)
		}
		c.queue.AddRateLimited(name)
	}
	return true
}

// settled drops what the controller keeps about Node name while it is
// retried.
func (c *Controller) settled(name string) {
	c.mu.Lock()
	delete(c.retrying, name)
	delete(c.lastEvent, name)
	c.mu.Unlock()
}

// sync brings Node name to its desired state. An error means "retry with
// backoff"; one wrapping ipam.ErrFull means the Node waits for space or
// for the cloud.
func (c *Controller) sync(ctx context.Context, name string) error {
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
	if err != nil {
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
func (c *Controller) forget(ctx context.Context, name string) {
	cidrs, _, known := c.ledger.CIDRs(name)
	c.wake(c.ledger.Forget(name))
	if known {
		klog.FromContext(ctx).V(2).Info("Released the pod CIDRs of a Node", "node", name, "podCIDRs", cidrs)
	}
}

func (c *Controller) wake(names []string) {
	for _, n := range names {
		c.queue.Add(n)
	}
}

// adopt records the pod CIDRs Node already has (spec), occupying them.
// Problems become Events; the Node is never changed.
func (c *Controller) adopt(ctx context.Context, node *v1.Node, spec []string) {
	problems, wake := c.ledger.Adopt(node.Name, node.UID, spec)
	c.wake(wake)
	klog.FromContext(ctx).V(4).Info("Occupied the pod CIDRs of a Node", "node", node.Name, "podCIDRs", spec)
	if len(problems) > 0 {
		// One Event for all: a conflict is the reason when there is one.
		reason := ReasonInvalidPodCIDR
		if slices.ContainsFunc(problems, func(p Problem) bool { return p.Reason == ReasonPodCIDRConflict }) {
			reason = ReasonPodCIDRConflict
		}
		c.event(ctx, node, reason, "The Node's pod CIDRs are left as they are: %s", joinProblems(problems))
	}
}

func joinProblems(problems []Problem) string {
	msgs := make([]string, 0, len(problems))
	for _, p := range problems {
		msgs = append(msgs, p.Message)
	}
	return strings.Join(msgs, "; ")
}

// reserve returns the CIDRs for a Node without pod CIDRs: those reserved
// for it earlier, else new ones (range mode) or the cloud's (cloud mode).
// An error wrapping ipam.ErrFull means the Node waits for space or for the
// cloud.
func (c *Controller) reserve(ctx context.Context, node *v1.Node) ([]netip.Prefix, error) {
	if c.cloud != nil {
		cidrs, wake := c.ledger.Reserved(node.Name, node.UID)
		c.wake(wake)
		if len(cidrs) > 0 {
			return cidrs, nil // reserved, or the Node lost them: write them (again)
		}
		return c.reserveFromCloud(ctx, node)
	}
	cidrs, wake, err := c.ledger.Allocate(node.Name, node.UID)
	c.wake(wake)
	if ex := (*ExhaustedError)(nil); errors.As(err, &ex) {
		u := ex.Usage
		c.event(ctx, node, ReasonCIDRNotAvailable, "No pod CIDRs allocated: every /%d subnet of cluster CIDR %s is in use (%d of %d); the Node is retried when a Node is deleted, and with backoff",
			u.MaskSize, u.ClusterCIDR, u.Used, u.Size)
	}
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node.Name, err)
	}
	return cidrs, nil
}

// reserveFromCloud asks the cloud for the Node's CIDRs and claims them, all
// or nothing.
func (c *Controller) reserveFromCloud(ctx context.Context, node *v1.Node) ([]netip.Prefix, error) {
	got, err := c.cloud(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("pod CIDRs of node %s from the cloud: %w", node.Name, err)
	}
	if len(got) == 0 {
		c.event(ctx, node, ReasonCIDRNotAvailable, "The cloud reports no pod CIDRs for the Node yet; it is retried with backoff")
		return nil, fmt.Errorf("the cloud reports no pod CIDRs for node %s yet: %w", node.Name, ipam.ErrFull)
	}
	cidrs, err := c.ledger.Order(got)
	if err != nil {
		c.event(ctx, node, ReasonCIDRAssignmentFailed, "Unusable pod CIDRs from the cloud: %v", err)
		return nil, fmt.Errorf("node %s: %w", node.Name, err)
	}
	problems, wake := c.ledger.Claim(node.Name, node.UID, cidrs)
	c.wake(wake)
	if len(problems) > 0 {
		msg := joinProblems(problems)
		sentinel := ipam.ErrOutOfRange
		if slices.ContainsFunc(problems, func(p Problem) bool { return p.Reason == ReasonPodCIDRConflict }) {
			sentinel = ipam.ErrConflict
		}
		c.event(ctx, node, ReasonCIDRAssignmentFailed, "Pod CIDRs from the cloud not assigned: %s", msg)
		return nil, fmt.Errorf("node %s: pod CIDRs from the cloud: %s: %w", node.Name, msg, sentinel)
	}
	if missing := c.ledger.MissingFamilies(cidrs); len(missing) > 0 {
		c.event(ctx, node, ReasonPodCIDRFamilyMissing, "The cloud reports no %s pod CIDR for the Node although the cluster is dual-stack (%v): the Node gets only %v and is single-stack",
			strings.Join(missing, " and "), c.ledger.ClusterCIDRs(), cidrs)
	}
	return cidrs, nil
}

// write sets the Node's pod CIDRs unless it already has some. On conflict
// it re-reads the Node and tries again. When the Node got other pod CIDRs
// meanwhile, the reservation is dropped and those are adopted.
func (c *Controller) write(ctx context.Context, node *v1.Node, cidrs []netip.Prefix) error {
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

// event records a Warning Event on node, unless it is the same (reason
// and message) as the last one recorded on it since its last successful
// sync.
func (c *Controller) event(ctx context.Context, node *v1.Node, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	key := eventKey{node.UID, reason, msg}
	c.mu.Lock()
	repeated := c.lastEvent[node.Name] == key
	c.lastEvent[node.Name] = key
	c.mu.Unlock()
	if repeated {
		klog.FromContext(ctx).V(5).Info("Node event not repeated", "node", node.Name, "reason", reason)
		return
	}
	klog.FromContext(ctx).V(2).Info("Node event", "node", node.Name, "reason", reason, "message", msg)
	c.recorder.Event(node, v1.EventTypeWarning, reason, msg)
}
