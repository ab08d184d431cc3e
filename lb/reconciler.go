package lb

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"
	"k8s.io/component-base/metrics"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/ipam"
)

// Options configures a Reconciler. The zero value means defaults.
type Options struct {
	// Annotations are the provider's own annotations (ccmkit's, in
	// Annotations, are always read too). Nil: none.
	Annotations *Schema
	// Budget paces and retries every backend call (block "lb"). Nil: each
	// call runs once, unpaced (the framework's Builder sets the provider's).
	Budget *cloudcall.Budget
	// PollInterval is how soon the service controller asks again about a
	// load balancer the cloud is still provisioning (default 5s).
	PollInterval time.Duration
	// ReadLag is how long the cloud's reads may lag its writes (default 0).
	// Within ReadLag of its own write for a Service, the Reconciler does
	// not trust Find:
	//   - a "not found": GetLoadBalancer and EnsureLoadBalancerDeleted
	//     return an error instead of reporting the load balancer gone, and
	//     EnsureLoadBalancer waits instead of creating;
	//   - the spec Find shows: Ensure and Update compare the desired spec
	//     with what that write left (the backend's answer), so a read that
	//     predates the write does not make them skip a needed write.
	// Within ReadLag of the Reconciler's start, Get and Delete (not
	// Ensure: Create is idempotent on the name) of every Service it has not
	// written do not trust a "not found" either: a previous manager may
	// have created the load balancer just before a crash, so deletions right
	// after a restart wait out the lag instead of dropping the finalizer of
	// a load balancer the cloud still holds.
	ReadLag time.Duration
	// Pools, when set, allocates the address of every load balancer before
	// the cloud creates it (for clouds whose addresses the provider picks).
	// The backend must implement Lister.
	Pools *ipam.LBAllocator
	// Recorder records Events on Services. Nil: Initialize makes one that
	// writes through the client it is given.
	Recorder record.EventRecorder
	// Clock is the time source (default the real clock).
	Clock clock.Clock
}

// Reconciler implements cloudprovider.LoadBalancer over a Backend. It is
// safe for concurrent use; it serializes the operations on one Service
// (keyed by UID), since upstream's service controller runs
// UpdateLoadBalancer from its node worker concurrently with its service
// worker.
type Reconciler struct {
	backend Backend
	opts    Options
	schema  *Schema
	clock   clock.Clock
	m       *lbMetrics

	locks keyedMutex

	mu        sync.Mutex
	recorder  record.EventRecorder
	services  corelisters.ServiceLister
	synced    cache.InformerSynced
	lastWrite map[types.UID]writeRecord
	pending   map[types.UID]bool
	started   time.Time // when NewReconciler ran, for mayHaveLegacy
	// restoring holds a token across the cloud list of a pool restore
	// (never with mu): a channel, so that a waiter gives up with its context
	// (see keyedMutex).
	restoring chan struct{}
}

var _ cloudprovider.LoadBalancer = (*Reconciler)(nil)

// ErrInvalidOptions is wrapped by NewReconciler's errors.
var ErrInvalidOptions = errors.New("invalid load balancer options")

// NewReconciler returns a Reconciler over backend. Errors wrap
// ErrInvalidOptions: a nil backend, a negative duration, an annotation
// declared by ccmkit too, or Pools with a backend that is not a Lister.
func NewReconciler(backend Backend, opts Options) (*Reconciler, error) {
	var errs []error
	if backend == nil {
		errs = append(errs, errors.New("nil Backend"))
	}
	if opts.PollInterval < 0 || opts.ReadLag < 0 {
		errs = append(errs, errors.New("PollInterval and ReadLag must not be negative"))
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 5 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if _, ok := backend.(Lister); opts.Pools != nil && !ok {
		errs = append(errs, errors.New("address Pools need a Backend that implements lb.Lister (to restore the addresses in use after a restart)"))
	}
	schema, err := mergeSchemas(opts.Annotations)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	r := &Reconciler{
		backend:   backend,
		opts:      opts,
		schema:    schema,
		clock:     opts.Clock,
		m:         newLBMetrics(),
		recorder:  opts.Recorder,
		lastWrite: map[types.UID]writeRecord{},
		pending:   map[types.UID]bool{},
		restoring: make(chan struct{}, 1),
		started:   opts.Clock.Now(),
	}
	r.updatePoolMetrics()
	return r, nil
}

// Schema returns the annotations the Reconciler reads: ccmkit's and the
// provider's.
func (r *Reconciler) Schema() *Schema { return r.schema }

// Initialize starts recording Events through client, unless
// Options.Recorder was set, until stop is closed. Calls after the first
// change nothing.
func (r *Reconciler) Initialize(client kubernetes.Interface, stop <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.recorder != nil || client == nil {
		return
	}
	b := record.NewBroadcaster(record.WithContext(contextFrom(stop)))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	r.recorder = b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "service-controller"})
	go func() {
		<-stop
		b.Shutdown()
	}()
}

func contextFrom(stop <-chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stop
		cancel()
	}()
	return ctx
}

// SetInformers gives the Reconciler the shared Service informer, which
// address pools need (Restore waits for it to sync). Calls after the first
// change nothing.
func (r *Reconciler) SetInformers(f informers.SharedInformerFactory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.services != nil || f == nil {
		return
	}
	inf := f.Core().V1().Services()
	r.services = inf.Lister()
	r.synced = inf.Informer().HasSynced
}

// Collectors returns the block's metrics (ccmkit_lb_*), for the binary's
// registry.
func (r *Reconciler) Collectors() []metrics.Registerable {
	return []metrics.Registerable{r.m.pending, r.m.writes, r.m.pool, r.m.reaped, r.m.orphans}
}

// Gatherer returns a private registry holding the block's metrics.
func (r *Reconciler) Gatherer() metrics.Gatherer { return r.m.registry }

// GetLoadBalancerName returns Name(service.UID).
func (r *Reconciler) GetLoadBalancerName(_ context.Context, _ string, service *v1.Service) string {
	return Name(service.UID)
}

// GetLoadBalancer finds the Service's load balancer by its ownership key
// (then, with a LegacyFinder, by the previous CCM's scheme). It reports
// exists=false only when the backend says the load balancer is absent and
// no write of this Reconciler within ReadLag could be hidden by lagging
// reads; otherwise it returns an error, so that the service controller never
// skips EnsureLoadBalancerDeleted for a load balancer that still exists. It
// never returns cloudprovider.ImplementedElsewhere.
func (r *Reconciler) GetLoadBalancer(ctx context.Context, clusterName string, service *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	if err := checkArgs(clusterName, service); err != nil {
		return nil, false, err
	}
	unlock, err := r.locks.lock(ctx, service.UID)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	got, err := r.find(ctx, clusterName, service)
	if err != nil {
		if errors.Is(err, cloudprovider.ImplementedElsewhere) {
			err = fmt.Errorf("load balancer of %s: the backend reported it is implemented elsewhere", ref(service))
		}
		return nil, false, plain(err)
	}
	if got == nil {
		if err := r.absenceConfirmed(service.UID); err != nil {
			return nil, false, err
		}
		return nil, false, nil
	}
	return r.status(got, service), true, nil
}

// find looks the Service's load balancer up by key, then through the
// LegacyFinder. It returns (nil, nil) when neither finds one.
func (r *Reconciler) find(ctx context.Context, cluster string, svc *v1.Service) (*LoadBalancer, error) {
	key := Key{Cluster: cluster, UID: svc.UID}
	var got *LoadBalancer
	err := r.opts.Budget.Do(ctx, cloudcall.Read(BlockName, OpFind), func(ctx context.Context) error {
		var err error
		got, err = r.backend.Find(ctx, key)
		return err
	})
	switch {
	case err == nil && got == nil:
		return nil, fmt.Errorf("backend Find(%s) returned neither a load balancer nor an error", key)
	case err == nil:
		if got.Spec.Key != key {
			return nil, fmt.Errorf("backend Find(%s) returned load balancer %s owned by %q", key, got.ID, got.Spec.Key.String())
		}
		return got, nil
	case !errors.Is(err, cloudcall.ErrNotFound):
		return nil, err
	}
	lf, ok := r.backend.(LegacyFinder)
	if !ok || !r.mayHaveLegacy(svc) {
		return nil, nil
	}
	legacyName := cloudprovider.DefaultLoadBalancerName(svc)
	err = r.opts.Budget.Do(ctx, cloudcall.Read(BlockName, OpFindLegacy), func(ctx context.Context) error {
		var err error
		got, err = lf.FindLegacy(ctx, svc, legacyName)
		return err
	})
	switch {
	case errors.Is(err, cloudcall.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case got == nil:
		return nil, fmt.Errorf("backend FindLegacy(%s) returned neither a load balancer nor an error", ref(svc))
	case !got.Spec.Key.IsZero() && got.Spec.Key != key:
		// Another ccmkit cluster owns it: not ours to adopt.
		return nil, nil
	}
	return got, nil
}

// mayHaveLegacy reports whether a previous CCM may have made svc's load
// balancer: the Service has ingress in its status, or it was created
// before this Reconciler (a Service created since cannot have been served
// by the previous CCM, so its lookup would be a wasted call per create).
func (r *Reconciler) mayHaveLegacy(svc *v1.Service) bool {
	return len(svc.Status.LoadBalancer.Ingress) > 0 || svc.CreationTimestamp.Time.Before(r.started)
}

// absenceConfirmed returns nil unless a write for uid may be recent enough
// that lagging reads could hide the load balancer: a write of this
// Reconciler within ReadLag (see ownWriteHidden), or, for a Service it has
// not written, one a previous manager made just before it stopped (any
// time up to this Reconciler's start), so within ReadLag of the start.
// Get and Delete use it: reporting "gone" too early drops the finalizer.
func (r *Reconciler) absenceConfirmed(uid types.UID) error {
	if err := r.ownWriteHidden(uid); err != nil {
		return err
	}
	r.mu.Lock()
	_, wrote := r.lastWrite[uid]
	r.mu.Unlock()
	if wrote || r.opts.ReadLag == 0 {
		return nil
	}
	if wait := r.started.Add(r.opts.ReadLag).Sub(r.clock.Now()); wait > 0 {
		return fmt.Errorf("cannot confirm that the load balancer is gone: the cloud's reads lag its writes by up to %v, and a previous manager may have written it before this one started %v ago", r.opts.ReadLag, r.clock.Since(r.started).Round(time.Millisecond))
	}
	return nil
}

// ownWriteHidden returns an error when this Reconciler wrote uid's load
// balancer within ReadLag, so that lagging reads could hide it. Ensure uses
// it alone: a create after a previous manager's lost one is safe, since
// Create is idempotent on the name.
func (r *Reconciler) ownWriteHidden(uid types.UID) error {
	r.mu.Lock()
	w, ok := r.lastWrite[uid]
	r.mu.Unlock()
	at := w.at
	if !ok || r.opts.ReadLag == 0 {
		return nil
	}
	if wait := at.Add(r.opts.ReadLag).Sub(r.clock.Now()); wait > 0 {
		return fmt.Errorf("cannot confirm that the load balancer is gone: the cloud's reads lag its writes by up to %v and it was written %v ago", r.opts.ReadLag, r.clock.Since(at).Round(time.Millisecond))
	}
	return nil
}

// writeRecord is this Reconciler's last cloud write for a Service.
type writeRecord struct {
	at time.Time
	// spec is the load balancer's spec as the write left it (the backend's
	// answer), nil when that is unknown: a write that failed or timed out
	// (it may have happened), or a deletion.
	spec *Spec
}

// wrote records a cloud write for uid: done is the load balancer the
// backend returned, nil when the write failed or deleted it.
func (r *Reconciler) wrote(uid types.UID, kind string, done *LoadBalancer) {
	r.m.writes.WithLabelValues(kind).Inc()
	w := writeRecord{at: r.clock.Now()}
	if done != nil {
		w.spec = done.Spec.Clone()
	}
	r.mu.Lock()
	r.lastWrite[uid] = w
	r.mu.Unlock()
}

// observedSpec returns the spec to compare a desired one against, for a
// load balancer Find observed as seen: seen itself, unless this Reconciler
// wrote it within ReadLag, when the read may predate the write. Then it is
// the spec that write left, or, when that is unknown, trusted is false
// and the caller writes anyway (writes are idempotent).
func (r *Reconciler) observedSpec(uid types.UID, seen *Spec) (spec *Spec, trusted bool) {
	if r.opts.ReadLag == 0 {
		return seen, true
	}
	r.mu.Lock()
	w, ok := r.lastWrite[uid]
	r.mu.Unlock()
	if !ok || r.clock.Since(w.at) >= r.opts.ReadLag {
		return seen, true
	}
	if w.spec == nil {
		return nil, false
	}
	return w.spec, true
}

func (r *Reconciler) setPending(uid types.UID, p bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p {
		r.pending[uid] = true
	} else {
		delete(r.pending, uid)
	}
	r.m.pending.Set(float64(len(r.pending)))
}

// EnsureLoadBalancer makes the Service's load balancer match the Service
// and nodes, and returns its status.
//
// A bad annotation or Service spec is a Warning Event (InvalidAnnotation or
// InvalidLoadBalancer) and an error before any cloud call. It finds the load
// balancer by key (adopting a previous CCM's once, through a LegacyFinder);
// without one it creates it, idempotently: a name conflict with this
// cluster's key adopts the existing load balancer, and one with another
// cluster's key is refused with an Event (ClusterNameChanged when only the
// cluster name differs). When the observed load balancer equals the desired
// spec it writes nothing.
//
// Errors: an *api.RetryError while the cloud provisions (after
// PollInterval) or throttles (after its Retry-After), or while address
// pools restore; cloudprovider.ImplementedElsewhere unwrapped when the
// backend returns it; otherwise plain errors, which the service controller
// retries with backoff.
func (r *Reconciler) EnsureLoadBalancer(ctx context.Context, clusterName string, service *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	if err := checkArgs(clusterName, service); err != nil {
		return nil, err
	}
	unlock, err := r.locks.lock(ctx, service.UID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	want, err := r.desired(clusterName, service, nodes)
	if err != nil {
		return nil, err
	}
	got, err := r.find(ctx, clusterName, service)
	if err != nil {
		return nil, r.boundary(err, service)
	}
	if got == nil {
		if err := r.ownWriteHidden(service.UID); err != nil {
			return nil, api.NewRetryError(fmt.Sprintf("load balancer %s was just written and the cloud does not show it yet; checking again in %v", want.Name, r.opts.PollInterval), r.opts.PollInterval)
		}
		got, err = r.create(ctx, service, want)
		if err != nil || got == nil {
			return nil, err
		}
	}
	return r.converge(ctx, service, got, want)
}

// desired parses the Service, recording an Event for bad input.
func (r *Reconciler) desired(cluster string, svc *v1.Service, nodes []*v1.Node) (*Spec, error) {
	want, err := desired(cluster, svc, nodes, r.schema)
	if err == nil {
		return want, nil
	}
	reason := "InvalidLoadBalancer"
	if errors.Is(err, ErrInvalidAnnotation) {
		reason = "InvalidAnnotation"
	}
	r.event(svc, v1.EventTypeWarning, reason, "%v", err)
	return nil, fmt.Errorf("service %s: %w", ref(svc), err)
}

// create allocates pool addresses and creates the load balancer. It returns
// the load balancer to converge, or (nil, err).
func (r *Reconciler) create(ctx context.Context, svc *v1.Service, want *Spec) (*LoadBalancer, error) {
	if r.opts.Pools != nil {
		if err := r.restore(ctx, want.Key.Cluster); err != nil {
			return nil, err
		}
		addrs, err := r.opts.Pools.Allocate(r.poolRequest(svc, want.Options))
		if err != nil {
			r.event(svc, v1.EventTypeWarning, "AllocationFailed", "Cannot allocate a load balancer address: %v", err)
			return nil, fmt.Errorf("service %s: allocating an address: %w", ref(svc), err)
		}
		r.updatePoolMetrics()
		want.Addresses = addrs
		want.Normalize()
	}
	var got *LoadBalancer
	err := r.opts.Budget.Do(ctx, cloudcall.Write(BlockName, OpCreate), func(ctx context.Context) error {
		var err error
		got, err = r.backend.Create(ctx, want.Clone())
		return err
	})
	var exists *ExistsError
	switch {
	case errors.As(err, &exists) && exists.LoadBalancer != nil:
		return r.adoptExisting(svc, want, exists.LoadBalancer)
	case err != nil:
		// The create may have happened (a crash point, a timeout): note the
		// write so that lagging reads are not trusted.
		r.wrote(svc.UID, "create", nil)
		return nil, r.boundary(err, svc)
	case got == nil:
		return nil, fmt.Errorf("backend Create(%s) returned neither a load balancer nor an error", want.Name)
	}
	r.wrote(svc.UID, "create", got)
	logger(ctx).V(2).Info("Created load balancer", "service", ref(svc), "loadBalancer", want.Name, "id", got.ID)
	return got, nil
}

// adoptExisting decides about a load balancer that holds the Service's name.
func (r *Reconciler) adoptExisting(svc *v1.Service, want *Spec, lb *LoadBalancer) (*LoadBalancer, error) {
	k := lb.Spec.Key
	switch {
	case k == want.Key:
		return lb, nil // ours: a create whose answer was lost, or a lagging Find
	case k.UID == want.Key.UID && !k.IsZero():
		r.event(svc, v1.EventTypeWarning, "ClusterNameChanged",
			"Load balancer %s of this Service is owned by cluster %q, but this manager runs with --cluster-name=%q: not creating a second one. Restore --cluster-name=%s, or re-tag the load balancer.", lb.Spec.Name, k.Cluster, want.Key.Cluster, k.Cluster)
		return nil, fmt.Errorf("service %s: load balancer %s is owned by cluster %q, not %q (was --cluster-name changed?)", ref(svc), lb.Spec.Name, k.Cluster, want.Key.Cluster)
	default:
		r.event(svc, v1.EventTypeWarning, "LoadBalancerNameInUse",
			"The cloud already has a load balancer named %s that this cluster does not own (owner %q): not adopting it.", lb.Spec.Name, k.String())
		return nil, fmt.Errorf("service %s: load balancer name %s is used by one owned by %q", ref(svc), lb.Spec.Name, k.String())
	}
}

// converge brings an existing load balancer to want and returns the status.
func (r *Reconciler) converge(ctx context.Context, svc *v1.Service, got *LoadBalancer, want *Spec) (*v1.LoadBalancerStatus, error) {
	if err := r.schema.CreateOnlyChanges(got.Spec.Options, want.Options); err != nil && !got.Spec.Key.IsZero() {
		r.event(svc, v1.EventTypeWarning, "InvalidAnnotation", "%v", err)
		return nil, fmt.Errorf("service %s: %w", ref(svc), err)
	}
	// Addresses are fixed at creation: the cloud's (or the pool's) choice
	// stands unless the Service asks for other ones.
	if requested, _ := requestedAddrs(svc, want.Options); len(requested) > 0 && !slices.Equal(requested, sortedAddrs(got.Spec.Addresses)) && !got.Spec.Key.IsZero() {
		err := fmt.Errorf("the requested addresses %v differ from the load balancer's %v, and addresses can only be chosen at creation: delete and re-create the Service", requested, got.Spec.Addresses)
		r.event(svc, v1.EventTypeWarning, "InvalidLoadBalancer", "%v", err)
		return nil, fmt.Errorf("service %s: %w", ref(svc), err)
	}
	want.Addresses = slices.Clone(got.Spec.Addresses)
	if got.Spec.Key.IsZero() {
		// A previous CCM's load balancer: keep its create-only options.
		for _, a := range r.schema.list {
			if v, ok := got.Spec.Options[a.Name]; ok && a.CreateOnly {
				want.Options[a.Name] = v
			}
		}
	}
	switch got.Status {
	case StatusPending:
		r.setPending(svc.UID, true)
		return nil, r.pollLater(got)
	case StatusDeleting:
		r.setPending(svc.UID, true)
		return nil, api.NewRetryError(fmt.Sprintf("load balancer %s is being deleted by the cloud; it will be re-created once it is gone, checking again in %v", got.Spec.Name, r.opts.PollInterval), r.opts.PollInterval)
	}
	// Within ReadLag of a write of ours, Find may show the load balancer as
	// it was before: compare with what that write left.
	if base, trusted := r.observedSpec(svc.UID, &got.Spec); got.Status == StatusActive && trusted && base.Equal(want) {
		r.setPending(svc.UID, false)
		return r.status(got, svc), nil
	}
	kind := "update"
	if got.Spec.Key.IsZero() {
		kind = "adopt"
	}
	var next *LoadBalancer
	err := r.opts.Budget.Do(ctx, cloudcall.Write(BlockName, OpUpdate), func(ctx context.Context) error {
		var err error
		next, err = r.backend.Update(ctx, got.Clone(), want.Clone())
		return err
	})
	if err != nil {
		r.wrote(svc.UID, kind, nil)
		return nil, r.boundary(err, svc)
	}
	if next == nil {
		r.wrote(svc.UID, kind, nil)
		return nil, fmt.Errorf("backend Update(%s) returned neither a load balancer nor an error", got.ID)
	}
	r.wrote(svc.UID, kind, next)
	if kind == "adopt" {
		r.event(svc, v1.EventTypeNormal, "AdoptedLoadBalancer", "Adopted load balancer %s (%s) made by the previous cloud controller manager", got.Spec.Name, got.ID)
	}
	if next.Status != StatusActive {
		r.setPending(svc.UID, true)
		return nil, r.pollLater(next)
	}
	r.setPending(svc.UID, false)
	return r.status(next, svc), nil
}

func (r *Reconciler) pollLater(lb *LoadBalancer) error {
	msg := fmt.Sprintf("load balancer %s is still being provisioned by the cloud", lb.Spec.Name)
	if lb.Message != "" {
		msg += " (" + lb.Message + ")"
	}
	return api.NewRetryError(fmt.Sprintf("%s; checking again in %v", msg, r.opts.PollInterval), r.opts.PollInterval)
}

// boundary turns a backend error into what the service controller's Ensure
// path expects: ImplementedElsewhere unwrapped, a throttled call as a
// RetryError after its Retry-After, anything else as is.
func (r *Reconciler) boundary(err error, svc *v1.Service) error {
	if errors.Is(err, cloudprovider.ImplementedElsewhere) {
		return cloudprovider.ImplementedElsewhere
	}
	var te *cloudcall.ThrottledError
	if errors.As(err, &te) {
		after := max(te.RetryAfter, time.Second)
		return api.NewRetryError(fmt.Sprintf("the cloud's load-balancer API is throttling requests; trying %s again in %v", ref(svc), after), after)
	}
	return err
}

// plain returns err with any RetryError flattened into a message: on the
// Update and finalizer paths upstream loses or ignores it.
func plain(err error) error {
	var re *api.RetryError
	if errors.As(err, &re) {
		return errors.New(err.Error())
	}
	return err
}

// UpdateLoadBalancer changes the load balancer's targets to nodes and
// nothing else. It writes nothing when they are unchanged. While the load
// balancer is still provisioning (or not adopted yet) it writes nothing and,
// if the targets differ, returns an error: upstream calls it again only when
// the Nodes change, and escalates a failure to a full sync, whose
// EnsureLoadBalancer sets the targets once the load balancer is ready. It
// uses TargetUpdater when the backend has it. Errors are plain (upstream ignores
// RetryError here and escalates a failure to a full EnsureLoadBalancer);
// cloudprovider.ImplementedElsewhere is returned unwrapped.
func (r *Reconciler) UpdateLoadBalancer(ctx context.Context, clusterName string, service *v1.Service, nodes []*v1.Node) error {
	if err := checkArgs(clusterName, service); err != nil {
		return err
	}
	unlock, err := r.locks.lock(ctx, service.UID)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := r.desired(clusterName, service, nil); err != nil {
		return err
	}
	got, err := r.find(ctx, clusterName, service)
	switch {
	case errors.Is(err, cloudprovider.ImplementedElsewhere):
		return cloudprovider.ImplementedElsewhere
	case err != nil:
		return fmt.Errorf("updating the targets of %s: %w", ref(service), plain(err))
	case got == nil:
		return fmt.Errorf("updating the targets of %s: its load balancer %s does not exist yet", ref(service), Name(service.UID))
	case got.Status == StatusDeleting:
		return nil // the Service is going away
	}
	want := targets(nodes)
	// Within ReadLag of a write of ours, Find may show the load balancer as
	// it was before: compare with (and build on) what that write left.
	base, trusted := r.observedSpec(service.UID, &got.Spec)
	if trusted && targetsEqual(base.Targets, want) {
		return nil
	}
	if got.Status == StatusPending || got.Spec.Key.IsZero() {
		// Not written now, and upstream calls UpdateLoadBalancer again only
		// when the Nodes change: fail, so that the service controller
		// escalates to a full sync, whose EnsureLoadBalancer polls the
		// load balancer (and adopts it) and then sets the targets.
		return fmt.Errorf("updating the targets of %s: its load balancer %s is still provisioning (or not adopted yet); the next EnsureLoadBalancer sets them", ref(service), got.Spec.Name)
	}
	var next *LoadBalancer
	if tu, ok := r.backend.(TargetUpdater); ok {
		err = r.opts.Budget.Do(ctx, cloudcall.Write(BlockName, OpUpdateTargets), func(ctx context.Context) error {
			var err error
			next, err = tu.UpdateTargets(ctx, got.Clone(), slices.Clone(want))
			return err
		})
		r.wrote(service.UID, "update_targets", next)
	} else {
		if !trusted {
			// A whole-spec Update built on a read that may predate our
			// last write would undo it.
			return fmt.Errorf("updating the targets of %s: a recent write to load balancer %s is not visible yet; the next EnsureLoadBalancer sets them", ref(service), got.Spec.Name)
		}
		spec := base.Clone()
		spec.Targets = want
		err = r.opts.Budget.Do(ctx, cloudcall.Write(BlockName, OpUpdate), func(ctx context.Context) error {
			var err error
			next, err = r.backend.Update(ctx, got.Clone(), spec)
			return err
		})
		r.wrote(service.UID, "update", next)
	}
	if errors.Is(err, cloudprovider.ImplementedElsewhere) {
		return cloudprovider.ImplementedElsewhere
	}
	if err != nil {
		return fmt.Errorf("updating the targets of %s: %w", ref(service), plain(err))
	}
	if next != nil {
		r.setPending(service.UID, next.Status != StatusActive)
	}
	return nil
}

// EnsureLoadBalancerDeleted deletes the Service's load balancer, if this
// cluster owns one (found by key, or a previous CCM's through a
// LegacyFinder), and releases its pool addresses once the cloud no longer
// shows it. It is idempotent. A deletion the cloud has accepted but not
// finished is a plain error, so the controller comes back (on the finalizer
// path upstream would lose a RetryError). cloudprovider.ImplementedElsewhere
// is returned unwrapped.
func (r *Reconciler) EnsureLoadBalancerDeleted(ctx context.Context, clusterName string, service *v1.Service) error {
	if err := checkArgs(clusterName, service); err != nil {
		return err
	}
	unlock, err := r.locks.lock(ctx, service.UID)
	if err != nil {
		return err
	}
	defer unlock()
	got, err := r.find(ctx, clusterName, service)
	switch {
	case errors.Is(err, cloudprovider.ImplementedElsewhere):
		return cloudprovider.ImplementedElsewhere
	case err != nil:
		return fmt.Errorf("deleting the load balancer of %s: %w", ref(service), plain(err))
	case got == nil:
		if err := r.absenceConfirmed(service.UID); err != nil {
			return fmt.Errorf("deleting the load balancer of %s: %w", ref(service), err)
		}
		return r.gone(service)
	case got.Status == StatusDeleting:
		r.setPending(service.UID, true)
		return fmt.Errorf("load balancer %s of %s is being deleted by the cloud; waiting for it to finish", got.Spec.Name, ref(service))
	}
	err = r.opts.Budget.Do(ctx, cloudcall.Write(BlockName, OpDelete), func(ctx context.Context) error {
		err := r.backend.Delete(ctx, got.Clone())
		if errors.Is(err, cloudcall.ErrNotFound) {
			return nil
		}
		return err
	})
	r.wrote(service.UID, "delete", nil)
	if errors.Is(err, cloudprovider.ImplementedElsewhere) {
		return cloudprovider.ImplementedElsewhere
	}
	if err != nil {
		return fmt.Errorf("deleting load balancer %s of %s: %w", got.Spec.Name, ref(service), plain(err))
	}
	logger(ctx).V(2).Info("Deleted load balancer", "service", ref(service), "loadBalancer", got.Spec.Name, "id", got.ID)
	// Confirm: the address goes back to the pool only once the cloud no
	// longer holds the load balancer.
	after, err := r.find(ctx, clusterName, service)
	switch {
	case err != nil:
		return fmt.Errorf("confirming the deletion of load balancer %s of %s: %w", got.Spec.Name, ref(service), plain(err))
	case after != nil:
		r.setPending(service.UID, true)
		return fmt.Errorf("load balancer %s of %s is being deleted by the cloud; waiting for it to finish", got.Spec.Name, ref(service))
	}
	return r.gone(service)
}

// gone records that the Service's load balancer no longer exists.
func (r *Reconciler) gone(svc *v1.Service) error {
	r.setPending(svc.UID, false)
	r.mu.Lock()
	delete(r.lastWrite, svc.UID)
	r.mu.Unlock()
	if r.opts.Pools != nil && r.opts.Pools.Ready() {
		if err := r.opts.Pools.Release(ipam.RefOf(svc)); err != nil {
			return fmt.Errorf("releasing the addresses of %s: %w", ref(svc), err)
		}
		r.updatePoolMetrics()
	}
	return nil
}

// status converts lb's ingress into a Service status: IP entries in the
// Service's spec.ipFamilies order, then by address, each with its ipMode
// (VIP when the backend leaves it empty); hostnames last.
func (r *Reconciler) status(lb *LoadBalancer, svc *v1.Service) *v1.LoadBalancerStatus {
	famRank := func(a netip.Addr) int {
		fam := v1.IPv6Protocol
		if a.Is4() {
			fam = v1.IPv4Protocol
		}
		if i := slices.Index(svc.Spec.IPFamilies, fam); i >= 0 {
			return i
		}
		return len(svc.Spec.IPFamilies)
	}
	in := slices.Clone(lb.Ingress)
	slices.SortStableFunc(in, func(a, b Ingress) int {
		switch {
		case a.IP.IsValid() != b.IP.IsValid():
			if a.IP.IsValid() {
				return -1
			}
			return 1
		case !a.IP.IsValid():
			if a.Hostname < b.Hostname {
				return -1
			}
			if a.Hostname > b.Hostname {
				return 1
			}
			return 0
		}
		if c := famRank(a.IP) - famRank(b.IP); c != 0 {
			return c
		}
		return a.IP.Compare(b.IP)
	})
	st := &v1.LoadBalancerStatus{}
	for _, i := range in {
		if !i.IP.IsValid() {
			st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{Hostname: i.Hostname})
			continue
		}
		mode := i.IPMode
		if mode == "" {
			mode = v1.LoadBalancerIPModeVIP
		}
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{IP: i.IP.String(), Hostname: i.Hostname, IPMode: &mode})
	}
	return st
}

func (r *Reconciler) event(svc *v1.Service, typ, reason, format string, args ...any) {
	r.mu.Lock()
	rec := r.recorder
	r.mu.Unlock()
	if rec != nil {
		rec.Eventf(svc, typ, reason, format, args...)
	}
}

func (r *Reconciler) updatePoolMetrics() {
	if r.opts.Pools == nil {
		return
	}
	for _, u := range r.opts.Pools.Usage() {
		r.m.pool.WithLabelValues(u.Pool, string(u.Family), "used").Set(float64(u.Used))
		r.m.pool.WithLabelValues(u.Pool, string(u.Family), "free").Set(float64(u.Size - u.Used))
	}
}

func checkArgs(cluster string, svc *v1.Service) error {
	switch {
	case svc == nil:
		return fmt.Errorf("%w: nil Service", ErrInvalidService)
	case svc.UID == "":
		return fmt.Errorf("%w: %s has no UID", ErrInvalidService, ref(svc))
	case cluster == "":
		return fmt.Errorf("%w: empty cluster name (set --cluster-name)", ErrInvalidService)
	}
	return nil
}

func ref(svc *v1.Service) string { return svc.Namespace + "/" + svc.Name }

func sortedAddrs(a []netip.Addr) []netip.Addr {
	out := slices.Clone(a)
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// keyedMutex serializes work per key; entries are dropped when unused. A
// waiter blocks on a channel, not on a sync.Mutex, so that it gives up when
// its context ends (a hung cloud call of the holder must not hold a worker
// whose manager is shutting down) and, inside a testing/synctest bubble,
// counts as durably blocked: a goroutine waiting for a sync.Mutex does not,
// so the bubble's clock stops while the holder waits on it, and the two never
// wake up.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[types.UID]*keyedEntry
}

type keyedEntry struct {
	sem  chan struct{} // holds a token while the key is locked
	refs int
}

// lock locks key, or returns ctx's error if ctx ends first.
func (k *keyedMutex) lock(ctx context.Context, key types.UID) (unlock func(), err error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[types.UID]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{sem: make(chan struct{}, 1)}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("waiting for another operation on the same load balancer: %w", ctx.Err())
	}
	return func() {
		<-e.sem
		release()
	}, nil
}

// logger returns the context's logger.
func logger(ctx context.Context) klog.Logger { return klog.FromContext(ctx) }
