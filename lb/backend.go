package lb

import (
	"context"
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"
)

// Backend is what a provider author implements for the load-balancer
// block: the cloud's load-balancer API, in four calls. The Reconciler calls
// it through the provider's cloudcall.Budget (block "lb"), so its errors
// must be classified with the cloudcall helpers (NotFound, Transient,
// Throttled, Permanent); an unclassified error is not retried in the call
// (the service controller's backoff retries it).
//
// Optional capabilities, found by type assertion: TargetUpdater (cheap host
// updates), Lister (owned load balancers: needed by the orphan reaper and by
// address pools), LegacyFinder (adopting load balancers made by a previous
// CCM). A Backend must be safe for concurrent use: the Reconciler serializes
// the calls for one Service only.
type Backend interface {
	// Find returns the load balancer whose stored ownership key is key, or
	// an error wrapping cloudcall.ErrNotFound when there is none. Its reads
	// may lag its writes (Options.ReadLag tells the Reconciler by how much).
	Find(ctx context.Context, key Key) (*LoadBalancer, error)
	// Create creates a load balancer for spec, storing spec.Key, Service and
	// Options with it, and returns it (typically Pending). Creation must be
	// idempotent on spec.Name, which the cloud keeps unique: when a load
	// balancer of that name already exists, Create makes nothing and
	// returns an *ExistsError holding it (as the cloud stores it, ownership
	// key included); the Reconciler then adopts it if the key is this
	// cluster's, and refuses otherwise. A client token derived from
	// spec.Name works as well, for clouds without unique names.
	Create(ctx context.Context, spec *Spec) (*LoadBalancer, error)
	// Update changes lb to spec (listeners, targets, health check, source
	// ranges, options, the ownership key for an adopted one) and returns
	// the result. It is not called for create-only changes.
	Update(ctx context.Context, lb *LoadBalancer, spec *Spec) (*LoadBalancer, error)
	// Delete deletes lb. A load balancer already gone is not an error
	// (return nil or an error wrapping cloudcall.ErrNotFound). When the
	// cloud deletes asynchronously, return nil once the deletion is
	// accepted; the Reconciler then waits for Find to stop finding it.
	Delete(ctx context.Context, lb *LoadBalancer) error
}

// TargetUpdater is an optional Backend capability: a cheaper call that
// replaces only the target nodes (the service controller's
// UpdateLoadBalancer, on every Node set change). Without it the Reconciler
// calls Update with the observed spec and the new targets.
type TargetUpdater interface {
	UpdateTargets(ctx context.Context, lb *LoadBalancer, targets []Target) (*LoadBalancer, error)
}

// Lister is an optional Backend capability: every load balancer whose
// ownership key names cluster, and no other. It must read its own writes or
// fail: a partial or stale list would let the orphan reaper miss a load
// balancer and an address pool hand an address out twice. The orphan reaper
// and address pools require it (a pool without it is a Build error).
type Lister interface {
	List(ctx context.Context, cluster string) ([]*LoadBalancer, error)
}

// LegacyFinder is an optional Backend capability for providers that switch
// an existing cluster from their previous CCM to ccmkit: it finds the load
// balancer that CCM made for svc (by upstream's default name legacyName, "a"
// and the UID without dashes, or by the old CCM's tags), or returns an error
// wrapping cloudcall.ErrNotFound. The Reconciler asks only about Services
// that have status ingress or were created before it started (a Service
// created since cannot have been served by the previous CCM), and adopts
// what it finds once,
// by writing its ownership key with Update, instead of creating a second
// load balancer. A load balancer it returns that already carries another
// ownership key is not adopted.
type LegacyFinder interface {
	FindLegacy(ctx context.Context, svc *v1.Service, legacyName string) (*LoadBalancer, error)
}

// ErrExists is wrapped by *ExistsError.
var ErrExists = errors.New("load balancer name already in use")

// ExistsError is returned by Backend.Create when a load balancer with the
// spec's name exists. It carries that load balancer.
type ExistsError struct {
	LoadBalancer *LoadBalancer
}

func (e *ExistsError) Error() string {
	if e.LoadBalancer == nil {
		return ErrExists.Error()
	}
	return fmt.Sprintf("%v: %s (id %s, owner %q)", ErrExists, e.LoadBalancer.Spec.Name, e.LoadBalancer.ID, e.LoadBalancer.Spec.Key.String())
}

// Unwrap returns ErrExists.
func (e *ExistsError) Unwrap() error { return ErrExists }

// Operation names of the block, used as cloudcall.Call.Op (metrics, the
// budget's log) for each Backend method.
const (
	OpFind          = "FindLoadBalancer"
	OpCreate        = "CreateLoadBalancer"
	OpUpdate        = "UpdateLoadBalancer"
	OpUpdateTargets = "UpdateLoadBalancerTargets"
	OpDelete        = "DeleteLoadBalancer"
	OpList          = "ListLoadBalancers"
	OpFindLegacy    = "FindLegacyLoadBalancer"
)

// BlockName is the block's name in cloudcall calls and metrics.
const BlockName = "lb"
