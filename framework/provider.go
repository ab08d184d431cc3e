package framework

import (
	"sync"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/component-base/metrics"
	"k8s.io/klog/v2"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/lb"
)

// Provider is a cloudprovider.Interface composed of ccmkit blocks. Methods
// of blocks that were not configured report false. It is safe for concurrent
// use.
type Provider struct {
	name        string
	budget      *cloudcall.Budget
	cache       *instances.Cache
	instances   *instances.InstancesV2
	routes      cloudprovider.Routes
	routesBlock *routesBlock // WithRoutes (routes.go)
	lb          *lb.Reconciler
	collectors  []metrics.Registerable

	mu            sync.Mutex
	clientBuilder cloudprovider.ControllerClientBuilder
	initialized   int
	informersSet  bool
}

var (
	_ cloudprovider.Interface    = (*Provider)(nil)
	_ cloudprovider.InformerUser = (*Provider)(nil)
)

// Initialize records the client builder. The upstream manager calls it once
// per lock it takes (twice with leader migration); calls after the first
// change nothing.
func (p *Provider) Initialize(clientBuilder cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.initialized++
	if p.clientBuilder != nil {
		klog.V(2).InfoS("Provider already initialized; ignoring repeated Initialize", "provider", p.name, "calls", p.initialized)
		return
	}
	p.clientBuilder = clientBuilder
	p.initializeLoadBalancers(clientBuilder, stop)
}

// SetInformers hooks the blocks to the shared informers: the instance cache
// forgets a Node's instance when the Node is deleted. Repeated calls change
// nothing.
func (p *Provider) SetInformers(f informers.SharedInformerFactory) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.informersSet || f == nil {
		return
	}
	p.informersSet = true
	if p.lb != nil {
		p.lb.SetInformers(f)
	}
	if p.cache != nil {
		_, err := f.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: p.cache.NodeDeleted(p.name),
		})
		if err != nil {
			klog.ErrorS(err, "Cannot watch node deletions; instance cache entries will expire by TTL only")
		}
	}
}

// ProviderName returns the provider's name.
func (p *Provider) ProviderName() string { return p.name }

// HasClusterID reports true: ccmkit blocks tag what they create with the
// cluster name.
func (p *Provider) HasClusterID() bool { return true }

// LoadBalancer returns the lb block's Reconciler, if configured.
func (p *Provider) LoadBalancer() (cloudprovider.LoadBalancer, bool) {
	if p.lb == nil {
		return nil, false
	}
	return p.lb, true
}

// LoadBalancerReconciler returns the lb block's Reconciler, or nil.
func (p *Provider) LoadBalancerReconciler() *lb.Reconciler { return p.lb }

// Instances reports false: ccmkit implements InstancesV2 only.
func (p *Provider) Instances() (cloudprovider.Instances, bool) { return nil, false }

// InstancesV2 returns the instances block's adapter, if configured.
func (p *Provider) InstancesV2() (cloudprovider.InstancesV2, bool) {
	if p.instances == nil {
		return nil, false
	}
	return p.instances, true
}

// Zones reports false: zone and region come from InstancesV2 metadata.
func (p *Provider) Zones() (cloudprovider.Zones, bool) { return nil, false }

// Clusters reports false.
func (p *Provider) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// Routes returns the routes implementation, if configured.
func (p *Provider) Routes() (cloudprovider.Routes, bool) {
	if p.routes == nil {
		return nil, false
	}
	return p.routes, true
}

// Budget returns the cloud API budget shared by the blocks.
func (p *Provider) Budget() *cloudcall.Budget { return p.budget }

// InstanceCache returns the instances block's cache, or nil.
func (p *Provider) InstanceCache() *instances.Cache { return p.cache }

// Collectors returns every block's metrics, for the binary's registry.
func (p *Provider) Collectors() []metrics.Registerable { return p.collectors }

// InitializeCount returns how many times Initialize was called.
func (p *Provider) InitializeCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.initialized
}
