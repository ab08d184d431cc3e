package harness

import (
	"context"
	"net"
	"sync"

	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	fakecloudprovider "k8s.io/cloud-provider/fake"
	"k8s.io/utils/ptr"
)

// UpstreamFake is k8s.io/cloud-provider/fake's Cloud, the baseline ccmkit's
// tests and benchmarks compare with, with its load-balancer calls
// serialized: its EnsureLoadBalancer writes a map without a lock, and the
// service controller calls UpdateLoadBalancer from its node worker
// concurrently with the service worker. Its methods are safe for concurrent
// use; read its fields only through Calls.
type UpstreamFake struct {
	*fakecloudprovider.Cloud
	mu sync.Mutex
}

// NewUpstreamFake returns an UpstreamFake whose instances exist, whose load
// balancers get 203.0.113.10 with ipMode VIP, and whose route table is
// empty.
func NewUpstreamFake() *UpstreamFake {
	return &UpstreamFake{Cloud: &fakecloudprovider.Cloud{
		Exists:         true,
		ExternalIP:     net.ParseIP("203.0.113.10"),
		BalancerIPMode: ptr.To(v1.LoadBalancerIPModeVIP),
		RouteMap:       map[string]*fakecloudprovider.Route{},
	}}
}

// LoadBalancer returns f itself, serialized.
func (f *UpstreamFake) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return f, true }

// EnsureLoadBalancer calls the fake's, serialized.
func (f *UpstreamFake) EnsureLoadBalancer(ctx context.Context, cluster string, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Cloud.EnsureLoadBalancer(ctx, cluster, svc, nodes)
}

// UpdateLoadBalancer calls the fake's, serialized.
func (f *UpstreamFake) UpdateLoadBalancer(ctx context.Context, cluster string, svc *v1.Service, nodes []*v1.Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Cloud.UpdateLoadBalancer(ctx, cluster, svc, nodes)
}

// EnsureLoadBalancerDeleted calls the fake's, serialized.
func (f *UpstreamFake) EnsureLoadBalancerDeleted(ctx context.Context, cluster string, svc *v1.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Cloud.EnsureLoadBalancerDeleted(ctx, cluster, svc)
}

// Calls returns the names of the load-balancer calls made so far.
func (f *UpstreamFake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.Cloud.Calls...)
}
