package lb

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/ipam"
)

// ReaperOptions configures a Reaper. The zero value means defaults, except
// ClusterName, which is required.
type ReaperOptions struct {
	// ClusterName is the manager's --cluster-name: the reaper deletes only
	// load balancers whose ownership key names it. Upstream's default
	// "kubernetes" is refused: two clusters left at the default in one
	// account would reap each other's load balancers.
	ClusterName string
	// GracePeriod is how long a load balancer must stay orphaned (its
	// Service UID absent from a synced informer) before it is deleted
	// (default 10m). It starts only once the Service informer has synced.
	GracePeriod time.Duration
	// Period is the time between passes (default 5m).
	Period time.Duration
	// DryRun reports orphans (Events, logs, metrics) without deleting them.
	DryRun bool
	// Recorder records Events about orphans, on the Service they served.
	// Nil: none.
	Recorder record.EventRecorder
}

// DefaultClusterName is upstream's default --cluster-name, which the reaper
// refuses.
const DefaultClusterName = "kubernetes"

// Reaper deletes the load balancers this cluster owns whose Service no
// longer exists: those left behind when a Service was deleted while the
// manager was down with no finalizer, or by a crash between a cloud create
// and the status write. It runs as a controller (Run blocks); it is safe
// for concurrent use with the Reconciler, whose per-Service lock it takes.
type Reaper struct {
	r        *Reconciler
	opts     ReaperOptions
	services cache.Indexer
	synced   cache.InformerSynced

	// firstSeen is when each orphan was first seen, after the informer
	// synced; reported marks dry-run orphans already reported. Used by Run's
	// goroutine only.
	firstSeen map[types.UID]time.Time
	reported  map[types.UID]bool
}

// NewReaper returns the orphan reaper of r's load balancers, reading
// Services from f. It needs a Backend that implements Lister. Errors wrap
// ErrInvalidOptions.
func (r *Reconciler) NewReaper(f informers.SharedInformerFactory, opts ReaperOptions) (*Reaper, error) {
	var errs []error
	switch opts.ClusterName {
	case "":
		errs = append(errs, errors.New("the reaper needs the cluster name (--cluster-name)"))
	case DefaultClusterName:
		errs = append(errs, fmt.Errorf("the reaper refuses to run with upstream's default --cluster-name=%q: two clusters left at the default in one account would delete each other's load balancers; set a unique --cluster-name", DefaultClusterName))
	}
	if _, ok := r.backend.(Lister); !ok {
		errs = append(errs, fmt.Errorf("the reaper needs a Backend that lists load balancers (lb.Lister); %T does not", r.backend))
	}
	if opts.GracePeriod < 0 || opts.Period < 0 {
		errs = append(errs, errors.New("GracePeriod and Period must not be negative"))
	}
	if f == nil {
		errs = append(errs, errors.New("nil informer factory"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	if opts.GracePeriod == 0 {
		opts.GracePeriod = 10 * time.Minute
	}
	if opts.Period == 0 {
		opts.Period = 5 * time.Minute
	}
	inf := f.Core().V1().Services().Informer()
	return &Reaper{
		r: r, opts: opts,
		services:  inf.GetIndexer(),
		synced:    inf.HasSynced,
		firstSeen: map[types.UID]time.Time{},
		reported:  map[types.UID]bool{},
	}, nil
}

// Run reaps every Period until ctx ends, then returns nil. The first pass
// runs once the Service informer has synced.
func (p *Reaper) Run(ctx context.Context) error {
	log := logger(ctx).WithValues("controller", "load-balancer-reaper", "dryRun", p.opts.DryRun)
	if !cache.WaitForCacheSync(ctx.Done(), p.synced) {
		return nil
	}
	log.Info("Starting the orphaned load balancer reaper", "gracePeriod", p.opts.GracePeriod, "period", p.opts.Period)
	for {
		if err := p.Pass(ctx); err != nil && ctx.Err() == nil {
			log.Error(err, "Reaper pass failed; trying again next period")
		}
		t := p.r.clock.NewTimer(p.opts.Period)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// Pass runs one reaping pass: it lists the cluster's load balancers and
// deletes those orphaned for at least GracePeriod. It returns the joined
// errors of the list and of failed deletions. It must not run concurrently
// with itself (Run calls it from one goroutine).
func (p *Reaper) Pass(ctx context.Context) error {
	if !p.synced() {
		return nil
	}
	lbs, err := p.r.list(ctx, p.opts.ClusterName)
	if err != nil {
		return err
	}
	live := map[types.UID]bool{}
	for _, obj := range p.services.List() {
		if svc, ok := obj.(*v1.Service); ok {
			live[svc.UID] = true
		}
	}
	now := p.r.clock.Now()
	orphans := map[types.UID]bool{}
	var errs []error
	for _, lb := range lbs {
		uid := lb.Spec.Key.UID
		if live[uid] {
			continue
		}
		orphans[uid] = true
		first, seen := p.firstSeen[uid]
		if !seen {
			p.firstSeen[uid] = now
			p.event(lb, v1.EventTypeWarning, "OrphanedLoadBalancer", "Load balancer %s (%s) serves a Service that no longer exists; deleting it after %v unless the Service returns", lb.Spec.Name, lb.ID, p.opts.GracePeriod)
			logger(ctx).Info("Found an orphaned load balancer", "loadBalancer", lb.Spec.Name, "id", lb.ID, "service", lb.Spec.Service.String(), "uid", uid)
			continue
		}
		if now.Sub(first) < p.opts.GracePeriod {
			continue
		}
		if p.opts.DryRun {
			if !p.reported[uid] {
				p.reported[uid] = true
				p.r.m.reaped.WithLabelValues("dry_run").Inc()
				p.event(lb, v1.EventTypeWarning, "OrphanedLoadBalancerDryRun", "Dry run: would delete orphaned load balancer %s (%s)", lb.Spec.Name, lb.ID)
				logger(ctx).Info("Dry run: would delete an orphaned load balancer", "loadBalancer", lb.Spec.Name, "id", lb.ID, "service", lb.Spec.Service.String())
			}
			continue
		}
		if err := p.reap(ctx, lb); err != nil {
			p.r.m.reaped.WithLabelValues("failed").Inc()
			errs = append(errs, err)
			continue
		}
		p.r.m.reaped.WithLabelValues("deleted").Inc()
		delete(orphans, uid)
	}
	for uid := range p.firstSeen {
		if !orphans[uid] {
			delete(p.firstSeen, uid)
			delete(p.reported, uid)
		}
	}
	p.r.m.orphans.Set(float64(len(orphans)))
	return errors.Join(errs...)
}

// reap deletes one orphan under the Service's lock and releases its pool
// addresses.
func (p *Reaper) reap(ctx context.Context, lb *LoadBalancer) error {
	uid := lb.Spec.Key.UID
	unlock, err := p.r.locks.lock(ctx, uid)
	if err != nil {
		return err
	}
	defer unlock()
	if obj, ok, _ := p.services.GetByKey(lb.Spec.Service.String()); ok {
		if svc, _ := obj.(*v1.Service); svc != nil && svc.UID == uid {
			return nil // came back
		}
	}
	err = p.r.opts.Budget.Do(ctx, cloudcall.Write(BlockName, OpDelete), func(ctx context.Context) error {
		err := p.r.backend.Delete(ctx, lb.Clone())
		if errors.Is(err, cloudcall.ErrNotFound) {
			return nil
		}
		return err
	})
	p.r.wrote(uid, "delete", nil)
	if err != nil {
		p.event(lb, v1.EventTypeWarning, "DeleteOrphanedLoadBalancerFailed", "Deleting orphaned load balancer %s (%s) failed: %v", lb.Spec.Name, lb.ID, err)
		return fmt.Errorf("deleting orphaned load balancer %s (%s): %w", lb.Spec.Name, lb.ID, err)
	}
	p.event(lb, v1.EventTypeNormal, "DeletedOrphanedLoadBalancer", "Deleted orphaned load balancer %s (%s)", lb.Spec.Name, lb.ID)
	logger(ctx).Info("Deleted an orphaned load balancer", "loadBalancer", lb.Spec.Name, "id", lb.ID, "service", lb.Spec.Service.String())
	if pools := p.r.opts.Pools; pools != nil && pools.Ready() {
		s := lb.Spec.Service
		if err := pools.Release(ipam.ServiceRef{Namespace: s.Namespace, Name: s.Name, UID: uid}); err != nil {
			return fmt.Errorf("releasing the addresses of orphaned load balancer %s: %w", lb.Spec.Name, err)
		}
		p.r.updatePoolMetrics()
	}
	return nil
}

func (p *Reaper) event(lb *LoadBalancer, typ, reason, format string, args ...any) {
	if p.opts.Recorder == nil {
		return
	}
	s := lb.Spec.Service
	obj := &v1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: s.Namespace, Name: s.Name, UID: lb.Spec.Key.UID}
	p.opts.Recorder.Eventf(obj, typ, reason, format, args...)
}
