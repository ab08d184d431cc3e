package lb

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cloud-provider/api"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/ipam"
)

// OwnedAddresses returns an ipam.OwnedAddresses over the backend's Lister:
// the addresses of every load balancer cluster owns. It returns an error
// (never a partial list) when listing fails or the backend has no Lister.
func (r *Reconciler) OwnedAddresses(cluster string) ipam.OwnedAddresses {
	return ipam.OwnedAddressesFunc(func(ctx context.Context) ([]ipam.OwnedAddress, error) {
		lbs, err := r.list(ctx, cluster)
		if err != nil {
			return nil, err
		}
		out := make([]ipam.OwnedAddress, 0, len(lbs))
		for _, lb := range lbs {
			addrs := slices.Clone(lb.Spec.Addresses)
			for _, in := range lb.Ingress {
				if in.IP.IsValid() && !slices.Contains(addrs, in.IP) {
					addrs = append(addrs, in.IP)
				}
			}
			slices.SortFunc(addrs, netip.Addr.Compare)
			s := lb.Spec.Service
			out = append(out, ipam.OwnedAddress{
				Service: ipam.ServiceRef{Namespace: s.Namespace, Name: s.Name, UID: lb.Spec.Key.UID},
				Addrs:   addrs,
			})
		}
		return out, nil
	})
}

// list returns the load balancers cluster owns, through the budget.
func (r *Reconciler) list(ctx context.Context, cluster string) ([]*LoadBalancer, error) {
	l, ok := r.backend.(Lister)
	if !ok {
		return nil, fmt.Errorf("the load-balancer backend %T cannot list load balancers (lb.Lister)", r.backend)
	}
	var lbs []*LoadBalancer
	err := r.opts.Budget.Do(ctx, cloudcall.Read(BlockName, OpList), func(ctx context.Context) error {
		var err error
		lbs, err = l.List(ctx, cluster)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the load balancers of cluster %q: %w", cluster, err)
	}
	for _, lb := range lbs {
		if lb == nil || lb.Spec.Key.Cluster != cluster {
			return nil, fmt.Errorf("backend List(%q) returned a load balancer of another cluster or nil", cluster)
		}
	}
	return lbs, nil
}

// restore makes the pools ready, once: after the Service informer has
// synced, from every LoadBalancer Service and the cloud's load balancers.
// Until then it returns a RetryError.
func (r *Reconciler) restore(ctx context.Context, cluster string) error {
	pools := r.opts.Pools
	if pools.Ready() {
		return nil
	}
	r.mu.Lock()
	services, synced := r.services, r.synced
	r.mu.Unlock()
	if services == nil || !synced() {
		return api.NewRetryError("waiting for the Service informer to sync before allocating a load balancer address", r.opts.PollInterval)
	}
	all, err := services.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing Services to restore address pools: %w", err)
	}
	var reqs []ipam.Request
	for _, svc := range all {
		if svc.Spec.Type != v1.ServiceTypeLoadBalancer && len(svc.Status.LoadBalancer.Ingress) == 0 {
			continue
		}
		opts, _ := r.schema.Parse(svc) // a bad annotation requests nothing
		reqs = append(reqs, r.poolRequest(svc, opts))
	}
	// One restore at a time; a second caller waits and then sees Ready.
	select {
	case r.restoring <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for another restore of the address pools: %w", ctx.Err())
	}
	defer func() { <-r.restoring }()
	if pools.Ready() {
		return nil
	}
	if err := pools.Restore(ctx, reqs, r.OwnedAddresses(cluster)); err != nil {
		return fmt.Errorf("restoring the address pools: %w", err)
	}
	logger(ctx).Info("Restored load balancer address pools", "services", len(reqs))
	r.updatePoolMetrics()
	return nil
}

// poolRequest builds svc's allocation request from its parsed options.
func (r *Reconciler) poolRequest(svc *v1.Service, opts map[string]string) ipam.Request {
	req := ipam.Request{Service: svc, Pool: opts[AnnotationPool]}
	if v := opts[AnnotationIPs]; v != "" {
		req.RequestedIPs, _ = parseAddrs(v)
	}
	return req
}
