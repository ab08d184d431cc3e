package harness_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/util/retry"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"
	servicecontroller "k8s.io/cloud-provider/controllers/service"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/routes"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

var (
	chaosSeed  = flag.Uint64("chaos.seed", 0, "run TestChaos with this seed only (0: seeds 1..-chaos.seeds)")
	chaosSeeds = flag.Int("chaos.seeds", 3, "how many seeds TestChaos runs when -chaos.seed is not set")
	chaosOps   = flag.Int("chaos.ops", 500, "operations per TestChaos run")
	chaosStats = flag.Bool("chaos.stats", false, "log TestChaos's figures (calls by operation, faults, budget windows) even when it passes")
)

// The chaos run's configuration.
const (
	chaosCluster      = harness.DefaultClusterName
	chaosClusterCIDR  = "10.244.0.0/16"
	chaosReadLag      = 3 * time.Second
	chaosConvergence  = 15 * time.Minute
	chaosRestarts     = 4
	chaosMaxServices  = 30
	chaosMaxInternal  = 10
	chaosMaxNodes     = 12
	chaosArmedTimeout = 10 * time.Minute
	// chaosReadySettle is how long a Node stays Ready before the driver
	// terminates its instance: upstream's lifecycle controller acts on the
	// Node list of its pass, and a pass that began while the Node was
	// NotReady (slow, with faults) would delete it once the instance is
	// gone although it is Ready by then (see vanished).
	chaosReadySettle = time.Minute
	internalPool     = "internal"
	poolAnnotation   = "lb.ccmkit.io/pool"
	excludeLabel     = v1.LabelNodeExcludeBalancers
)

var chaosBudget = cloudcall.BudgetOptions{ReadQPS: 10, ReadBurst: 20, WriteQPS: 5, WriteBurst: 10}

var (
	publicRange   = ipam.Range{First: netip.MustParseAddr("198.51.100.1"), Last: netip.MustParseAddr("198.51.100.100")}
	internalRange = ipam.Range{First: netip.MustParseAddr("10.200.0.1"), Last: netip.MustParseAddr("10.200.0.20")}
)

// Injected errors, distinct so that the figures can count them.
var (
	errInjected = errors.New("injected: connection reset by peer")
	errCrash    = errors.New("injected crash point: the operation took effect, the answer was lost")
)

// TestChaos drives every block at once (instances, load balancers with
// address pools and the orphan reaper, node IPAM, ccmkit's route controller)
// under the real upstream cloud-node, node-lifecycle and service controllers,
// with the harness's API-server emulation and the fake cloud, in a
// testing/synctest bubble. A seeded random sequence of operations (Services
// created, updated, flipped and deleted; Nodes added, removed, made NotReady,
// excluded from load balancers; instances stopped, started and terminated)
// runs while the cloud fails, throttles, hangs and lags, crash points fire,
// and the whole provider is restarted from fresh in-memory state. Then the
// faults stop, and within 15 simulated minutes the system must reach exactly
// the state the invariants (chaos.violations) describe. A failure prints the
// seed and the operation log; -chaos.seed=S reruns one seed,
// -chaos.seeds=N runs seeds 1..N, -chaos.ops the length of a run.
//
// The upstream data race. k8s.io/cloud-provider v0.37.2's service controller
// writes cachedService.state in its service workers without the cache lock
// (processServiceCreateOrUpdate), while its node worker reads every entry
// under the lock (serviceCache.allServices, at the start of each node sync).
// -race reports it whenever a node sync starts while a service sync that
// began after the last happens-before edge between the two is in progress.
// Inside a bubble only synctest.Wait creates such edges (time advancing does
// not), so the test arranges that a node sync never starts while a service
// sync is in flight, and changes nothing else about upstream's controller:
//
//   - Node syncs start on a Node added or deleted, and on a change of a
//     Node's providerID or exclusion label. The driver makes every such
//     change itself (chaos.nodeOp): it closes a gate in front of the service
//     workers (serviceGate: the service controller is upstream's, built as
//     the framework builds it, but with a Service lister whose Get waits at
//     the gate, so a held sync is one that has not started), waits until no
//     call into the provider's cloudprovider.LoadBalancer is in flight (a
//     counting wrapper; after synctest.Wait a service sync is either in such
//     a call or not running), makes the change, waits (synctest.Wait) until
//     the node sync has read the cache, and opens the gate again. Node
//     syncs and service syncs still overlap afterwards: UpdateLoadBalancer
//     runs concurrently with EnsureLoadBalancer, as in production.
//   - The node controller sets a providerID when it initializes a Node, at a
//     time the driver does not choose (after retries of failed cloud
//     calls): Nodes register with their providerID already set, as a
//     kubelet started with --provider-id does, so initialization never
//     changes it.
//   - The node-lifecycle controller deletes a Node on its own 5 s timer,
//     once the Node is NotReady and its instance is gone: whichever of the
//     two the driver does second arms the deletion, so both go through
//     nodeOp, and nodeOp keeps the gate closed until every armed Node is
//     deleted (a stopped instance does not arm it: the Node gets the
//     shutdown taint instead).
//   - A restart starts a new service controller whose node worker syncs
//     once per existing Node while its service workers process every
//     existing Service: the new controller starts with its gate closed, and
//     the driver opens it once the node worker is idle.
//
// Every other concurrency is left as it is: the node, lifecycle, route,
// IPAM and reaper controllers run freely, and ccmkit's code races against
// itself as in production, so a data race of ccmkit's still fails the test.
func TestChaos(t *testing.T) {
	seeds := []uint64{*chaosSeed}
	if *chaosSeed == 0 {
		seeds = nil
		for s := 1; s <= *chaosSeeds; s++ {
			seeds = append(seeds, uint64(s))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runChaos(t, seed, *chaosOps) })
		})
	}
}

// serviceGate holds upstream's service workers before a sync starts, and
// counts the calls in flight into the provider's load balancer.
type serviceGate struct {
	mu       sync.Mutex
	open     chan struct{} // closed while the gate is open
	stop     chan struct{} // closed when the controller is stopped
	stopOnce sync.Once
	inflight atomic.Int64
}

var errGateStopped = errors.New("chaos: the service controller is stopped")

// newServiceGate returns a closed gate; make it inside the bubble.
func newServiceGate() *serviceGate {
	return &serviceGate{open: make(chan struct{}), stop: make(chan struct{})}
}

func (g *serviceGate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *serviceGate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

// Shutdown releases every held sync, for good, with errGateStopped: the
// sync fails before it reads or writes anything.
func (g *serviceGate) Shutdown() { g.stopOnce.Do(func() { close(g.stop) }) }

func (g *serviceGate) wait() error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-g.stop:
		return errGateStopped
	default:
	}
	select {
	case <-open:
		return nil
	case <-g.stop:
		return errGateStopped
	}
}

// gatedServiceController is upstream's service controller, built as the
// framework builds it, with the gate in front of its Service lister's Get
// (the first thing a service sync does) and the counting wrapper around the
// provider's load balancer.
func gatedServiceController(g *serviceGate) framework.Controller {
	return framework.Controller{
		Name:     harness.Service,
		Replaces: true,
		New: func(_ context.Context, cc framework.ControllerContext) (framework.Runnable, error) {
			inner, ok := cc.Cloud.LoadBalancer()
			if !ok {
				return nil, framework.NotStarted("the cloud has no load balancers")
			}
			cloud := countingCloud{Interface: cc.Cloud, lb: countingLB{LoadBalancer: inner, n: &g.inflight}}
			services := gatedServices{ServiceInformer: cc.Informers.Core().V1().Services(), g: g}
			c, err := servicecontroller.New(cloud, cc.Client, services, cc.Informers.Core().V1().Nodes(), cc.Config.ClusterName, utilfeature.DefaultFeatureGate)
			if err != nil {
				return nil, err
			}
			workers := int(cc.Config.Upstream.ComponentConfig.ServiceController.ConcurrentServiceSyncs)
			return framework.RunFunc(func(ctx context.Context) error { c.Run(ctx, workers, cc.Metrics); return nil }), nil
		},
	}
}

type gatedServices struct {
	coreinformers.ServiceInformer
	g *serviceGate
}

func (s gatedServices) Lister() corelisters.ServiceLister {
	return gatedLister{ServiceLister: s.ServiceInformer.Lister(), g: s.g}
}

type gatedLister struct {
	corelisters.ServiceLister
	g *serviceGate
}

func (l gatedLister) Services(ns string) corelisters.ServiceNamespaceLister {
	return gatedNamespaceLister{ServiceNamespaceLister: l.ServiceLister.Services(ns), g: l.g}
}

type gatedNamespaceLister struct {
	corelisters.ServiceNamespaceLister
	g *serviceGate
}

func (l gatedNamespaceLister) Get(name string) (*v1.Service, error) {
	if err := l.g.wait(); err != nil {
		return nil, err
	}
	return l.ServiceNamespaceLister.Get(name)
}

// countingCloud hands the service controller a counting load balancer.
type countingCloud struct {
	cloudprovider.Interface
	lb countingLB
}

func (c countingCloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return c.lb, true }

// countingLB counts the calls in flight; errors pass unchanged (upstream
// compares sentinels with ==).
type countingLB struct {
	cloudprovider.LoadBalancer
	n *atomic.Int64
}

func (l countingLB) GetLoadBalancer(ctx context.Context, cluster string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	l.n.Add(1)
	defer l.n.Add(-1)
	return l.LoadBalancer.GetLoadBalancer(ctx, cluster, svc)
}

func (l countingLB) EnsureLoadBalancer(ctx context.Context, cluster string, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	l.n.Add(1)
	defer l.n.Add(-1)
	return l.LoadBalancer.EnsureLoadBalancer(ctx, cluster, svc, nodes)
}

func (l countingLB) UpdateLoadBalancer(ctx context.Context, cluster string, svc *v1.Service, nodes []*v1.Node) error {
	l.n.Add(1)
	defer l.n.Add(-1)
	return l.LoadBalancer.UpdateLoadBalancer(ctx, cluster, svc, nodes)
}

func (l countingLB) EnsureLoadBalancerDeleted(ctx context.Context, cluster string, svc *v1.Service) error {
	l.n.Add(1)
	defer l.n.Add(-1)
	return l.LoadBalancer.EnsureLoadBalancerDeleted(ctx, cluster, svc)
}

// instState is the driver's model of a Node's instance.
type instState int

const (
	instNone instState = iota // never created (a Node whose instance is gone from the start)
	instRunning
	instStopped
	instTerminated
	instRemoved // terminated and forgotten by the cloud
)

func (s instState) gone() bool { return s == instNone || s == instTerminated || s == instRemoved }

type chaosNode struct {
	name, id   string
	added      time.Time
	readySince time.Time // when the driver last made it Ready
	inst       instState
	ready      bool
	excluded   bool
}

type chaosService struct {
	name     string
	lb       bool
	internal bool
	bad      bool // carries an invalid annotation value
}

// chaos is one run: the world, the driver's model of it, and the log.
type chaos struct {
	t      *testing.T
	seed   uint64
	rng    *rand.Rand
	ctx    context.Context
	start  time.Time
	cloud  *fakecloud.Cloud
	table  *fakecloud.RouteTable
	client kubernetes.Interface

	h    *harness.Harness
	gate *serviceGate
	// lagAware (odd seeds) gives the instances cache the cloud's read lag
	// (instances.CacheOptions.ReadLag), so the driver may mark a Node
	// NotReady at any age; even seeds run the default and keep out of the
	// lag after a Node's creation (see nodeNotReady).
	lagAware bool

	nodes     map[string]*chaosNode
	services  map[string]*chaosService
	next      int
	faultsOff []func()
	restarts  int
	ops       map[string]int
	log       []string

	foreignLBs    []*lb.LoadBalancer
	foreignRoutes []fakecloud.TableRoute
}

func runChaos(t *testing.T, seed uint64, n int) {
	c := &chaos{
		t:        t,
		seed:     seed,
		rng:      rand.New(rand.NewPCG(seed, 0x5eed)),
		ctx:      t.Context(),
		start:    time.Now(),
		cloud:    fakecloud.New(fakecloud.Options{Seed: seed, ReadLag: chaosReadLag, LBProvisionTime: 3 * time.Second}),
		client:   harness.NewFakeClientset(harness.FakeOptions{}),
		nodes:    map[string]*chaosNode{},
		services: map[string]*chaosService{},
		ops:      map[string]int{},
		lagAware: seed%2 == 1,
	}
	c.table = c.cloud.NewRouteTable(fakecloud.RouteTableOptions{StoreAddresses: true})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chaos seed %d failed (rerun: go test -race -run 'TestChaos/seed=%d$' ./testing/harness/ -chaos.seed=%d -chaos.ops=%d); operation log:\n%s",
				seed, seed, seed, n, strings.Join(c.log, "\n"))
		}
	})
	c.addForeign()
	c.startProvider()
	t.Cleanup(c.stopProvider)
	for range 3 {
		c.addNode()
	}
	c.injectFaults()

	restartAt := map[int]bool{}
	for i := 1; i <= chaosRestarts; i++ {
		restartAt[i*n/(chaosRestarts+1)+c.rng.IntN(10)] = true
	}
	for i := range n {
		if restartAt[i] {
			c.restart()
		}
		c.step()
		time.Sleep(time.Duration(c.rng.IntN(3000)) * time.Millisecond) // simulated time: synctest bubble
	}
	chaosCalls := c.cloud.Calls()

	c.logf("faults off")
	for _, off := range c.faultsOff {
		off()
	}
	converge := time.Now()
	for _, s := range c.sortedServices() {
		if s.bad {
			c.setSize(s, "small")
		}
	}
	for _, nd := range c.sortedNodes() {
		if nd.inst.gone() && nd.ready {
			c.nodeOp("mark NotReady "+nd.name+" (its instance is gone)", func() { c.setReady(nd, false) })
		}
	}
	var violations []string
	for {
		time.Sleep(10 * time.Second) // simulated time: synctest bubble
		violations = c.violations()
		if len(violations) == 0 || time.Since(converge) > chaosConvergence {
			break
		}
	}
	took := time.Since(converge)
	c.logf("converged: %v (%s after faults off)", len(violations) == 0, took)
	for _, v := range violations {
		t.Errorf("seed %d: after %s without faults: %s", seed, took.Round(time.Second), v)
	}

	calls := c.cloud.Calls()
	reads, writes := callWindows(calls)
	if limit := chaosBudget.ReadBurst + int(chaosBudget.ReadQPS); reads > limit {
		t.Errorf("seed %d: %d reads in one second, budget Burst+QPS = %d", seed, reads, limit)
	}
	if limit := chaosBudget.WriteBurst + int(chaosBudget.WriteQPS); writes > limit {
		t.Errorf("seed %d: %d writes in one second, budget Burst+QPS = %d", seed, writes, limit)
	}
	faults, failed := faultFigures(chaosCalls)
	if frac := float64(failed) / float64(len(chaosCalls)); frac < 0.2 {
		t.Errorf("seed %d: only %.1f%% of the %d cloud calls during the chaos failed by injection; want at least 20%%", seed, 100*frac, len(chaosCalls))
	}
	if t.Failed() || *chaosStats || testing.Verbose() {
		t.Logf("seed %d: %d operations %v; %d restarts; converged in %s; simulated run %s",
			seed, n, c.ops, c.restarts, took.Round(time.Second), time.Since(c.start).Round(time.Second))
		t.Logf("seed %d: %d cloud calls during the chaos, %d (%.1f%%) failed by injection: %v", seed, len(chaosCalls), failed, 100*float64(failed)/float64(len(chaosCalls)), faults)
		t.Logf("seed %d: calls by operation (whole run): %v", seed, callsByOp(calls))
		t.Logf("seed %d: worst one-second window: %d reads (budget %d+%v), %d writes (budget %d+%v); leaks and duplicates: %d",
			seed, reads, chaosBudget.ReadBurst, chaosBudget.ReadQPS, writes, chaosBudget.WriteBurst, chaosBudget.WriteQPS, len(violations))
	}
}

func (c *chaos) logf(format string, args ...any) {
	c.log = append(c.log, fmt.Sprintf("%9s  %s", time.Since(c.start).Round(time.Millisecond), fmt.Sprintf(format, args...)))
}

func (c *chaos) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("seed %d: %s", c.seed, fmt.Sprintf(format, args...))
}

// addForeign seeds what the cluster must never touch: another cluster's load
// balancer and routes, and a hand-made route.
func (c *chaos) addForeign() {
	other := lb.Key{Cluster: "other-cluster", UID: "uid-other"}
	must(c.t, c.cloud.AddLoadBalancer(lb.LoadBalancer{ID: "lb-foreign", Spec: lb.Spec{Name: lb.Name(other.UID), Key: other,
		Service: lb.ServiceRef{Namespace: "default", Name: "other", UID: other.UID}}}))
	must(c.t, c.table.AddForeign(routes.Route{Name: "vpn", TargetNode: "vpn-gw", Destination: netip.MustParsePrefix("10.244.250.0/24")}))
	must(c.t, c.table.Add("other-cluster", routes.Route{Name: "other-cluster--x-v4", TargetNode: "x", Destination: netip.MustParsePrefix("10.250.0.0/24")}))
	c.foreignLBs = c.cloud.LoadBalancerList()
	c.foreignRoutes = c.table.Routes()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// startProvider builds a new provider from fresh in-memory state (instance
// cache, load-balancer reconciler and address pools, routes block, budget)
// over the same cloud and API, and starts every controller with it.
// cacheOptions are the instances cache's options: the cloud's read lag
// when the run is lagAware.
func (c *chaos) cacheOptions() instances.CacheOptions {
	if c.lagAware {
		return instances.CacheOptions{ReadLag: chaosReadLag}
	}
	return instances.CacheOptions{}
}

func (c *chaos) startProvider() {
	pools, err := ipam.NewLBAllocator(
		ipam.Pool{Name: "public", Ranges: []ipam.Range{publicRange}},
		ipam.Pool{Name: internalPool, Ranges: []ipam.Range{internalRange}},
	)
	must(c.t, err)
	budget := chaosBudget
	jitter := rand.New(rand.NewPCG(c.seed, uint64(c.restarts)))
	budget.Rand = jitter.Float64 // the budget serializes calls to Rand
	p, err := framework.NewBuilder("fake").
		WithInstances(c.cloud.Instances(), c.cacheOptions()).
		WithLoadBalancers(c.cloud.LoadBalancers(), lb.Options{Annotations: providerAnnotations, Pools: pools, ReadLag: chaosReadLag}).
		WithRoutes(c.table.Batch(), routes.Options{}).
		WithBudget(budget).
		Build()
	must(c.t, err)
	c.gate = newServiceGate()
	h, err := harness.TryStart(c.ctx, harness.Options{
		Provider: p,
		Client:   c.client,
		Controllers: []string{harness.CloudNode, harness.NodeLifecycle, harness.Service, harness.Route,
			harness.NodeIPAM, harness.LoadBalancerReaper},
		Extra:        []framework.Controller{gatedServiceController(c.gate)},
		ClusterCIDRs: chaosClusterCIDR,
		Flags: []string{"--allocate-node-cidrs", "--concurrent-service-syncs=5",
			"--lb-reaper-grace-period=2m", "--lb-reaper-period=1m"},
	})
	if err != nil {
		c.gate.Shutdown()
		c.fatalf("starting the provider: %v", err)
	}
	c.h = h
	for _, name := range []string{harness.CloudNode, harness.NodeLifecycle, harness.Service, harness.Route, harness.NodeIPAM, harness.LoadBalancerReaper} {
		if !h.Running(name) {
			c.fatalf("controller %s is not running: %v", name, h.Skipped(name))
		}
	}
	// The new service controller's node worker syncs once per Node with an
	// empty service cache while the gate holds the service workers.
	time.Sleep(2 * time.Second) // simulated time: synctest bubble
	synctest.Wait()
	c.gate.Open()
}

// stopProvider stops every controller and waits until the old provider has
// no call left in the cloud (UpdateLoadBalancer runs with context.TODO:
// only the budget's attempt timeout ends it) and the cloud has seen no call
// for two seconds. It is idempotent.
func (c *chaos) stopProvider() {
	if c.h == nil {
		return
	}
	c.h.Stop()
	c.gate.Shutdown()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		n := c.cloud.TotalCalls()
		time.Sleep(2 * time.Second) // simulated time: synctest bubble
		synctest.Wait()
		if c.gate.inflight.Load() == 0 && c.cloud.TotalCalls() == n {
			break
		}
		if time.Now().After(deadline) {
			c.h = nil
			c.fatalf("the stopped provider still calls the cloud after 10 minutes")
		}
	}
	c.h = nil
}

func (c *chaos) restart() {
	c.restarts++
	c.logf("restart %d: stop the provider", c.restarts)
	c.quiesce()
	c.stopProvider()
	time.Sleep(time.Second) // simulated time: synctest bubble
	c.startProvider()
	c.logf("restart %d: new provider running", c.restarts)
}

// quiesce closes the gate and waits until no call into the load balancer is
// in flight: no service sync and no node sync is running.
func (c *chaos) quiesce() {
	c.gate.Close()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		synctest.Wait()
		if c.gate.inflight.Load() == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.fatalf("load-balancer calls still in flight after 10 minutes")
		}
		time.Sleep(time.Second) // simulated time: synctest bubble
	}
}

// nodeOp runs fn, a change that starts a node sync of the service
// controller or arms a Node's deletion, with no service sync in flight (see
// TestChaos), and waits until every armed Node is deleted.
func (c *chaos) nodeOp(what string, fn func()) {
	c.logf("%s", what)
	c.quiesce()
	fn()
	synctest.Wait()
	for _, nd := range c.sortedNodes() {
		if nd.ready || !nd.inst.gone() {
			continue
		}
		deadline := time.Now().Add(chaosArmedTimeout)
		for !c.nodeGone(nd.name) {
			if time.Now().After(deadline) {
				c.fatalf("node %s (NotReady, instance gone) not deleted after %s", nd.name, chaosArmedTimeout)
			}
			time.Sleep(time.Second) // simulated time: synctest bubble
		}
		synctest.Wait()
		c.logf("  node %s deleted by the lifecycle controller", nd.name)
		delete(c.nodes, nd.name)
	}
	c.gate.Open()
}

func (c *chaos) nodeGone(name string) bool {
	_, err := c.client.CoreV1().Nodes().Get(c.ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		c.fatalf("getting node %s: %v", name, err)
	}
	return apierrors.IsNotFound(err)
}

// injectFaults makes at least a fifth of every operation's calls fail
// (errors, 429 with Retry-After, hangs until the attempt timeout), and slows
// a tenth down; the cloud's reads lag its writes throughout.
func (c *chaos) injectFaults() {
	ops := []fakecloud.Op{
		fakecloud.OpGetInstance, fakecloud.OpListInstances,
		fakecloud.OpFindLoadBalancer, fakecloud.OpCreateLoadBalancer, fakecloud.OpUpdateLoadBalancer,
		fakecloud.OpUpdateLoadBalancerTargets, fakecloud.OpDeleteLoadBalancer, fakecloud.OpListLoadBalancers,
		fakecloud.OpListRoutes, fakecloud.OpApplyRoutes,
	}
	for _, op := range ops {
		for _, f := range []fakecloud.Fault{
			{Err: cloudcall.Transient(errInjected), Rate: 0.14},
			{RetryAfter: 2 * time.Second, Err: errInjected, Rate: 0.08},
			{Hang: true, Rate: 0.02},
			{Latency: 2 * time.Second, Rate: 0.1},
		} {
			c.faultsOff = append(c.faultsOff, c.cloud.Inject(op, f))
		}
	}
	c.logf("faults on: 14%% errors, 8%% 429 (Retry-After 2s), 2%% hangs, 10%% +2s latency on every operation; read lag %s (instances cache told: %v)", chaosReadLag, c.lagAware)
}

// step runs one random operation.
func (c *chaos) step() {
	type op struct {
		name   string
		weight int
		run    func() bool // false: not applicable now
	}
	ops := []op{
		{"create-service", 14, c.createService},
		{"delete-service", 6, c.deleteService},
		{"change-ports", 8, c.changePorts},
		{"change-annotation", 8, c.changeAnnotation},
		{"bad-annotation", 2, c.badAnnotation},
		{"fix-annotation", 3, c.fixAnnotation},
		{"flip-type", 6, c.flipType},
		{"add-node", 7, c.addNodeOp},
		{"remove-node", 4, c.removeNode},
		{"node-not-ready", 5, c.nodeNotReady},
		{"node-ready", 3, c.nodeReady},
		{"stop-instance", 4, c.stopInstance},
		{"start-instance", 3, c.startInstance},
		{"terminate-instance", 4, c.terminateInstance},
		{"toggle-exclusion", 3, c.toggleExclusion},
		{"crash-point", 5, c.crashPoint},
		{"sleep", 6, c.sleep},
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	for {
		r := c.rng.IntN(total)
		for _, o := range ops {
			if r -= o.weight; r < 0 {
				if o.run() {
					c.ops[o.name]++
					return
				}
				break
			}
		}
	}
}

func (c *chaos) sortedServices() []*chaosService {
	return slices.SortedFunc(maps.Values(c.services), func(a, b *chaosService) int { return strings.Compare(a.name, b.name) })
}

func (c *chaos) sortedNodes() []*chaosNode {
	return slices.SortedFunc(maps.Values(c.nodes), func(a, b *chaosNode) int { return strings.Compare(a.name, b.name) })
}

func pick[T any](c *chaos, from []T, ok func(T) bool) (T, bool) {
	var cand []T
	for _, x := range from {
		if ok(x) {
			cand = append(cand, x)
		}
	}
	if len(cand) == 0 {
		var zero T
		return zero, false
	}
	return cand[c.rng.IntN(len(cand))], true
}

func (c *chaos) countServices(ok func(*chaosService) bool) int {
	n := 0
	for _, s := range c.services {
		if ok(s) {
			n++
		}
	}
	return n
}

var chaosPorts = []int32{80, 443, 8080, 8443, 9000, 53}

func (c *chaos) randomPorts() []int32 {
	perm := c.rng.Perm(len(chaosPorts))
	out := make([]int32, 1+c.rng.IntN(3))
	for i := range out {
		out[i] = chaosPorts[perm[i]]
	}
	return out
}

func (c *chaos) createService() bool {
	if len(c.services) >= chaosMaxServices {
		return false
	}
	c.next++
	s := &chaosService{name: fmt.Sprintf("svc-%03d", c.next), lb: true}
	svc := harness.NewLoadBalancerService(s.name, c.randomPorts()...)
	svc.Annotations = map[string]string{sizeAnnotation: []string{"small", "large"}[c.rng.IntN(2)]}
	if c.rng.IntN(4) == 0 && c.countServices(func(s *chaosService) bool { return s.internal }) < chaosMaxInternal {
		s.internal = true
		svc.Annotations[poolAnnotation] = internalPool
	}
	c.logf("create service %s ports %v annotations %v", s.name, portsOf(svc), svc.Annotations)
	if _, err := c.client.CoreV1().Services("default").Create(c.ctx, svc, metav1.CreateOptions{}); err != nil {
		c.fatalf("creating service %s: %v", s.name, err)
	}
	c.services[s.name] = s
	return true
}

func portsOf(svc *v1.Service) []int32 {
	var out []int32
	for _, p := range svc.Spec.Ports {
		out = append(out, p.Port)
	}
	return out
}

func (c *chaos) deleteService() bool {
	s, ok := pick(c, c.sortedServices(), func(*chaosService) bool { return true })
	if !ok {
		return false
	}
	c.logf("delete service %s", s.name)
	if err := c.client.CoreV1().Services("default").Delete(c.ctx, s.name, metav1.DeleteOptions{}); err != nil {
		c.fatalf("deleting service %s: %v", s.name, err)
	}
	delete(c.services, s.name)
	return true
}

// updateService applies change to the Service as stored, retrying on
// conflicts with the controllers' writes.
func (c *chaos) updateService(s *chaosService, change func(*v1.Service)) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := c.client.CoreV1().Services("default").Get(c.ctx, s.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(svc)
		_, err = c.client.CoreV1().Services("default").Update(c.ctx, svc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		c.fatalf("updating service %s: %v", s.name, err)
	}
}

func (c *chaos) changePorts() bool {
	s, ok := pick(c, c.sortedServices(), func(s *chaosService) bool { return s.lb })
	if !ok {
		return false
	}
	ports := c.randomPorts()
	c.logf("service %s: ports -> %v", s.name, ports)
	c.updateService(s, func(svc *v1.Service) {
		old := map[int32]v1.ServicePort{}
		for _, p := range svc.Spec.Ports {
			old[p.Port] = p
		}
		svc.Spec.Ports = nil
		for _, port := range ports {
			p, ok := old[port]
			if !ok {
				p = v1.ServicePort{Name: fmt.Sprintf("p%d", port), Port: port, Protocol: v1.ProtocolTCP}
			}
			svc.Spec.Ports = append(svc.Spec.Ports, p)
		}
	})
	return true
}

func (c *chaos) setSize(s *chaosService, size string) {
	c.logf("service %s: %s=%s", s.name, sizeAnnotation, size)
	c.updateService(s, func(svc *v1.Service) {
		if svc.Annotations == nil {
			svc.Annotations = map[string]string{}
		}
		svc.Annotations[sizeAnnotation] = size
	})
	s.bad = size != "small" && size != "large"
}

func (c *chaos) changeAnnotation() bool {
	s, ok := pick(c, c.sortedServices(), func(s *chaosService) bool { return s.lb && !s.bad })
	if !ok {
		return false
	}
	if c.rng.IntN(3) == 0 {
		ranges := []string{"", "10.0.0.0/8", "192.0.2.0/24,198.51.100.0/24"}[c.rng.IntN(3)]
		c.logf("service %s: source ranges %q", s.name, ranges)
		c.updateService(s, func(svc *v1.Service) {
			if ranges == "" {
				delete(svc.Annotations, v1.AnnotationLoadBalancerSourceRangesKey)
			} else {
				svc.Annotations[v1.AnnotationLoadBalancerSourceRangesKey] = ranges
			}
		})
		return true
	}
	c.setSize(s, []string{"small", "large"}[c.rng.IntN(2)])
	return true
}

func (c *chaos) badAnnotation() bool {
	s, ok := pick(c, c.sortedServices(), func(s *chaosService) bool { return !s.bad })
	if !ok {
		return false
	}
	c.setSize(s, "huge")
	return true
}

func (c *chaos) fixAnnotation() bool {
	s, ok := pick(c, c.sortedServices(), func(s *chaosService) bool { return s.bad })
	if !ok {
		return false
	}
	c.setSize(s, "large")
	return true
}

func (c *chaos) flipType() bool {
	s, ok := pick(c, c.sortedServices(), func(*chaosService) bool { return true })
	if !ok {
		return false
	}
	s.lb = !s.lb
	c.logf("service %s: type -> LoadBalancer=%v", s.name, s.lb)
	c.updateService(s, func(svc *v1.Service) {
		if s.lb {
			svc.Spec.Type = v1.ServiceTypeLoadBalancer
			return
		}
		svc.Spec.Type = v1.ServiceTypeClusterIP
		svc.Spec.ExternalTrafficPolicy = ""
		svc.Spec.HealthCheckNodePort = 0
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = 0
		}
	})
	return true
}

// addNode adds an instance (usually) and its Node, registered with its
// providerID and Ready, as a kubelet started with --provider-id does.
func (c *chaos) addNode() {
	c.next++
	nd := &chaosNode{name: fmt.Sprintf("node-%03d", c.next), id: fmt.Sprintf("i-%03d", c.next), inst: instRunning, ready: true}
	if c.rng.IntN(10) == 0 {
		nd.inst = instNone
	}
	c.nodeOp(fmt.Sprintf("add node %s (instance %s: %v)", nd.name, nd.id, nd.inst != instNone), func() {
		// When the instance is made, not when the operation began: nodeOp
		// first waits for in-flight load-balancer calls (up to a hung
		// call's attempt timeout), and nodeNotReady keeps out of the read
		// lag that follows this moment.
		nd.added = time.Now()
		nd.readySince = nd.added
		if nd.inst != instNone {
			ip := fmt.Sprintf("10.0.%d.%d", c.next/250, c.next%250+1)
			must(c.t, c.cloud.AddInstance(fakecloud.NewInstance(nd.id, nd.name, ip)))
		}
		n := harness.NewNode(nd.name, v1.ConditionTrue)
		n.UID = "" // the API-server emulation assigns one
		n.Spec.ProviderID = instances.FormatProviderID("fake", nd.id)
		if _, err := c.client.CoreV1().Nodes().Create(c.ctx, n, metav1.CreateOptions{}); err != nil {
			c.fatalf("creating node %s: %v", nd.name, err)
		}
		c.nodes[nd.name] = nd
	})
	if c.lagAware && nd.inst != instNone && c.rng.IntN(4) == 0 {
		// A kubelet that dies at once, within the cloud's read lag of its
		// instance's creation: the cache's ReadLag keeps the Node.
		c.logf("node %s NotReady at once (within the read lag)", nd.name)
		c.setReady(nd, false)
	}
}

func (c *chaos) addNodeOp() bool {
	if len(c.nodes) >= chaosMaxNodes {
		return false
	}
	c.addNode()
	return true
}

// removeNode scales a Node down: its instance terminated, its Node deleted.
func (c *chaos) removeNode() bool {
	if len(c.nodes) <= 2 {
		return false
	}
	nd, ok := pick(c, c.sortedNodes(), func(*chaosNode) bool { return true })
	if !ok {
		return false
	}
	c.nodeOp("remove node "+nd.name, func() {
		if !nd.inst.gone() {
			must(c.t, c.cloud.SetInstanceState(nd.id, instances.StateTerminated))
		}
		if err := c.client.CoreV1().Nodes().Delete(c.ctx, nd.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			c.fatalf("deleting node %s: %v", nd.name, err)
		}
		delete(c.nodes, nd.name)
	})
	return true
}

func (c *chaos) setReady(nd *chaosNode, ready bool) {
	status := v1.ConditionFalse
	if ready {
		status = v1.ConditionTrue
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.client.CoreV1().Nodes().Get(c.ctx, nd.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cond := v1.NodeCondition{Type: v1.NodeReady, Status: status}
		if i := slices.IndexFunc(n.Status.Conditions, func(c v1.NodeCondition) bool { return c.Type == v1.NodeReady }); i >= 0 {
			n.Status.Conditions[i] = cond
		} else {
			n.Status.Conditions = append(n.Status.Conditions, cond)
		}
		_, err = c.client.CoreV1().Nodes().UpdateStatus(c.ctx, n, metav1.UpdateOptions{})
		return err
	})
	if c.vanished(nd, err) {
		return
	}
	if err != nil {
		c.fatalf("setting node %s Ready=%v: %v", nd.name, ready, err)
	}
	nd.ready = ready
	if ready {
		nd.readySince = time.Now()
	}
}

// vanished reports whether err says that nd's Node is gone although the
// driver did not delete it, and forgets the Node then. That is legitimate
// only when its instance is gone: upstream's lifecycle controller deletes
// the Node of a missing instance from the Node list of its pass, which may
// predate the driver marking the Node Ready (chaosReadySettle makes it
// rare). Any other disappearance is left to the caller's fatal error.
func (c *chaos) vanished(nd *chaosNode, err error) bool {
	if !apierrors.IsNotFound(err) || !nd.inst.gone() {
		return false
	}
	c.logf("  node %s deleted by the lifecycle controller (its instance is gone; a pass that saw it NotReady)", nd.name)
	delete(c.nodes, nd.name)
	return true
}

// nodeNotReady marks a Node NotReady, as a kubelet that stopped reporting.
// Unless the run is lagAware, not within the cloud's read lag of the Node's
// creation: an instance that reads do not show yet is "missing" to every
// lookup, and the lifecycle controller would delete the Node (a limit of
// eventually consistent clouds that instances.CacheOptions.ReadLag lifts).
func (c *chaos) nodeNotReady() bool {
	nd, ok := pick(c, c.sortedNodes(), func(n *chaosNode) bool {
		return n.ready && (c.lagAware || time.Since(n.added) > 2*chaosReadLag)
	})
	if !ok {
		return false
	}
	if nd.inst.gone() {
		c.nodeOp("node "+nd.name+" NotReady (instance gone: arms its deletion)", func() { c.setReady(nd, false) })
		return true
	}
	c.logf("node %s NotReady", nd.name)
	c.setReady(nd, false)
	return true
}

func (c *chaos) nodeReady() bool {
	nd, ok := pick(c, c.sortedNodes(), func(n *chaosNode) bool { return !n.ready })
	if !ok {
		return false
	}
	c.logf("node %s Ready", nd.name)
	c.setReady(nd, true)
	return true
}

func (c *chaos) stopInstance() bool {
	return c.moveInstance("stop", instRunning, instStopped, instances.StateStopped)
}

func (c *chaos) startInstance() bool {
	return c.moveInstance("start", instStopped, instRunning, instances.StateRunning)
}

// moveInstance moves the instance of a Node whose instance is in state from
// to state to (the cloud's state cloud).
func (c *chaos) moveInstance(verb string, from, to instState, cloud instances.State) bool {
	nd, ok := pick(c, c.sortedNodes(), func(n *chaosNode) bool { return n.inst == from })
	if !ok {
		return false
	}
	c.logf("%s instance %s of %s", verb, nd.id, nd.name)
	must(c.t, c.cloud.SetInstanceState(nd.id, cloud))
	nd.inst = to
	return true
}

func (c *chaos) terminateInstance() bool {
	nd, ok := pick(c, c.sortedNodes(), func(n *chaosNode) bool {
		return (n.inst == instRunning || n.inst == instStopped) && (!n.ready || time.Since(n.readySince) > chaosReadySettle)
	})
	if !ok {
		return false
	}
	remove := c.rng.IntN(2) == 0
	terminate := func() {
		must(c.t, c.cloud.SetInstanceState(nd.id, instances.StateTerminated))
		nd.inst = instTerminated
		if remove {
			c.cloud.RemoveInstance(nd.id)
			nd.inst = instRemoved
		}
	}
	what := fmt.Sprintf("terminate instance %s of %s (removed: %v)", nd.id, nd.name, remove)
	if !nd.ready {
		c.nodeOp(what+"; the Node is NotReady: arms its deletion", terminate)
		return true
	}
	c.logf("%s", what)
	terminate()
	return true
}

func (c *chaos) toggleExclusion() bool {
	nd, ok := pick(c, c.sortedNodes(), func(*chaosNode) bool { return true })
	if !ok {
		return false
	}
	c.nodeOp(fmt.Sprintf("node %s: excluded from load balancers -> %v", nd.name, !nd.excluded), func() {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := c.client.CoreV1().Nodes().Get(c.ctx, nd.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if nd.excluded {
				delete(n.Labels, excludeLabel)
			} else {
				if n.Labels == nil {
					n.Labels = map[string]string{}
				}
				n.Labels[excludeLabel] = "true"
			}
			_, err = c.client.CoreV1().Nodes().Update(c.ctx, n, metav1.UpdateOptions{})
			return err
		})
		if c.vanished(nd, err) {
			return
		}
		if err != nil {
			c.fatalf("labelling node %s: %v", nd.name, err)
		}
		nd.excluded = !nd.excluded
	})
	return true
}

// crashPoint makes the next create or delete take effect and fail anyway.
func (c *chaos) crashPoint() bool {
	op := []fakecloud.Op{fakecloud.OpCreateLoadBalancer, fakecloud.OpDeleteLoadBalancer, fakecloud.OpApplyRoutes}[c.rng.IntN(3)]
	f := fakecloud.Fault{Err: cloudcall.Transient(errCrash), After: true, Times: 1}
	if c.rng.IntN(3) == 0 {
		f = fakecloud.Fault{Hang: true, After: true, Times: 1}
	}
	c.logf("crash point on the next %s (hang: %v)", op, f.Hang)
	c.faultsOff = append(c.faultsOff, c.cloud.Inject(op, f))
	return true
}

func (c *chaos) sleep() bool {
	d := time.Duration(5+c.rng.IntN(56)) * time.Second
	c.logf("sleep %s", d)
	time.Sleep(d) // simulated time: synctest bubble
	return true
}

// violations checks the converged state exactly.
func (c *chaos) violations() []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	svcList, err := c.client.CoreV1().Services("").List(c.ctx, metav1.ListOptions{})
	if err != nil {
		return []string{"listing services: " + err.Error()}
	}
	nodeList, err := c.client.CoreV1().Nodes().List(c.ctx, metav1.ListOptions{})
	if err != nil {
		return []string{"listing nodes: " + err.Error()}
	}

	// Services: the model's, with the model's types; none terminating.
	want := map[types.UID]*v1.Service{}
	seen := map[string]bool{}
	for i := range svcList.Items {
		svc := &svcList.Items[i]
		seen[svc.Name] = true
		s, ok := c.services[svc.Name]
		switch {
		case svc.DeletionTimestamp != nil:
			bad("service %s is still terminating (finalizers %v)", svc.Name, svc.Finalizers)
		case !ok:
			bad("service %s exists but was deleted", svc.Name)
		case s.lb != (svc.Spec.Type == v1.ServiceTypeLoadBalancer):
			bad("service %s has type %s", svc.Name, svc.Spec.Type)
		}
		if svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.DeletionTimestamp == nil {
			want[svc.UID] = svc
		} else if len(svc.Status.LoadBalancer.Ingress) > 0 {
			bad("service %s (type %s) still has ingress %v", svc.Name, svc.Spec.Type, svc.Status.LoadBalancer.Ingress)
		}
	}
	for name := range c.services {
		if !seen[name] {
			bad("service %s is missing", name)
		}
	}

	// Eligible Nodes for load-balancer targets: not excluded.
	var eligible []string
	for _, n := range nodeList.Items {
		if n.Labels[excludeLabel] != "true" {
			eligible = append(eligible, n.Spec.ProviderID)
		}
	}
	sort.Strings(eligible)

	// Load balancers: one per LoadBalancer Service, none else owned; no
	// address twice; foreign ones untouched.
	owned := map[types.UID][]*lb.LoadBalancer{}
	addrs := map[netip.Addr]string{}
	var foreign []*lb.LoadBalancer
	for _, l := range c.cloud.LoadBalancerList() {
		for _, in := range l.Ingress {
			if other, dup := addrs[in.IP]; dup {
				bad("address %s is held by load balancers %s and %s", in.IP, other, l.Spec.Name)
			}
			addrs[in.IP] = l.Spec.Name
		}
		if l.Spec.Key.Cluster != chaosCluster {
			foreign = append(foreign, l)
			continue
		}
		owned[l.Spec.Key.UID] = append(owned[l.Spec.Key.UID], l)
	}
	if diff := cmp.Diff(c.foreignLBs, foreign, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		bad("foreign load balancers changed (-before +after):\n%s", diff)
	}
	ingressIPs := map[string]string{}
	for uid, svc := range want {
		got := owned[uid]
		if len(got) != 1 {
			bad("service %s has %d load balancers", svc.Name, len(got))
			continue
		}
		l := got[0]
		if l.Status != lb.StatusActive {
			bad("service %s: load balancer %s is %v", svc.Name, l.Spec.Name, l.Status)
		}
		var lbIPs, svcIPs []string
		for _, in := range l.Ingress {
			lbIPs = append(lbIPs, in.IP.String())
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			svcIPs = append(svcIPs, in.IP)
			if other, dup := ingressIPs[in.IP]; dup {
				bad("address %s is in the status of services %s and %s", in.IP, other, svc.Name)
			}
			ingressIPs[in.IP] = svc.Name
			rng := publicRange
			if svc.Annotations[poolAnnotation] == internalPool {
				rng = internalRange
			}
			if a, err := netip.ParseAddr(in.IP); err != nil || a.Less(rng.First) || rng.Last.Less(a) {
				bad("service %s: address %s is outside its pool %v", svc.Name, in.IP, rng)
			}
		}
		if len(svcIPs) == 0 || !slices.Equal(lbIPs, svcIPs) {
			bad("service %s: status ingress %v, load balancer %s has %v", svc.Name, svcIPs, l.Spec.Name, lbIPs)
		}
		var targets []string
		for _, tg := range l.Spec.Targets {
			targets = append(targets, tg.ProviderID)
		}
		sort.Strings(targets)
		if !slices.Equal(eligible, targets) {
			bad("service %s: load balancer targets %v, eligible nodes %v", svc.Name, targets, eligible)
		}
		var ports []int32
		for _, ls := range l.Spec.Listeners {
			ports = append(ports, ls.Port)
		}
		want := portsOf(svc)
		slices.Sort(ports)
		slices.Sort(want)
		if !slices.Equal(ports, want) {
			bad("service %s: load balancer listens on %v, service ports %v", svc.Name, ports, want)
		}
		if size := svc.Annotations[sizeAnnotation]; l.Spec.Options[sizeAnnotation] != size {
			bad("service %s: load balancer size %q, annotation %q", svc.Name, l.Spec.Options[sizeAnnotation], size)
		}
	}
	for uid, ls := range owned {
		if _, ok := want[uid]; !ok {
			for _, l := range ls {
				bad("load balancer %s (service %s/%s) is owned by the cluster but has no LoadBalancer Service", l.Spec.Name, l.Spec.Service.Namespace, l.Spec.Service.Name)
			}
		}
	}

	// Nodes: the model's; initialized; pod CIDRs once each; routes.
	cidrs := map[string]string{}
	wantRoutes := map[string]string{}
	present := map[string]bool{}
	for i := range nodeList.Items {
		n := &nodeList.Items[i]
		present[n.Name] = true
		nd, ok := c.nodes[n.Name]
		if !ok {
			bad("node %s exists but was removed", n.Name)
			continue
		}
		if nd.inst.gone() {
			bad("node %s exists but its instance is gone and it is NotReady=%v", n.Name, !nd.ready)
		}
		if harness.HasTaint(n, cloudproviderapi.TaintExternalCloudProvider) {
			bad("node %s is not initialized", n.Name)
		}
		if len(n.Spec.PodCIDRs) == 0 {
			bad("node %s has no pod CIDR", n.Name)
		}
		for _, p := range n.Spec.PodCIDRs {
			if other, dup := cidrs[p]; dup {
				bad("pod CIDR %s is assigned to nodes %s and %s", p, other, n.Name)
			}
			cidrs[p] = n.Name
			wantRoutes[routes.Name(chaosCluster, string(n.UID), netip.MustParsePrefix(p))] = p + "->" + n.Name
		}
		if got := networkCondition(n); len(n.Spec.PodCIDRs) > 0 && got != "False/RouteCreated" {
			bad("node %s: NetworkUnavailable %q", n.Name, got)
		}
	}
	for name, nd := range c.nodes {
		if !present[name] {
			bad("node %s is missing (instance gone: %v, ready: %v)", name, nd.inst.gone(), nd.ready)
		}
	}
	gotRoutes := map[string]string{}
	var foreignRoutes []fakecloud.TableRoute
	for _, r := range c.table.Routes() {
		if r.Owner != chaosCluster {
			foreignRoutes = append(foreignRoutes, r)
			continue
		}
		gotRoutes[r.Route.Name] = fmt.Sprintf("%s->%s", r.Route.Destination, r.Route.TargetNode)
		if r.Route.Blackhole {
			gotRoutes[r.Route.Name] += " (blackhole)"
		}
	}
	if diff := cmp.Diff(wantRoutes, gotRoutes); diff != "" {
		bad("routes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(c.foreignRoutes, foreignRoutes, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		bad("foreign routes changed (-before +after):\n%s", diff)
	}
	return out
}

func isWrite(op fakecloud.Op) bool {
	switch op {
	case fakecloud.OpCreateLoadBalancer, fakecloud.OpUpdateLoadBalancer, fakecloud.OpUpdateLoadBalancerTargets,
		fakecloud.OpDeleteLoadBalancer, fakecloud.OpCreateRoute, fakecloud.OpDeleteRoute, fakecloud.OpApplyRoutes:
		return true
	}
	return false
}

// callWindows returns the most reads and writes that arrived in any
// one-second window.
func callWindows(calls []fakecloud.Call) (reads, writes int) {
	var r, w []time.Time
	for _, c := range calls {
		if isWrite(c.Op) {
			w = append(w, c.At)
		} else {
			r = append(r, c.At)
		}
	}
	return maxWindow(r), maxWindow(w)
}

func callsByOp(calls []fakecloud.Call) map[fakecloud.Op]int {
	out := map[fakecloud.Op]int{}
	for _, c := range calls {
		out[c.Op]++
	}
	return out
}

// faultFigures counts the calls that failed by injection, by kind.
func faultFigures(calls []fakecloud.Call) (map[string]int, int) {
	out := map[string]int{}
	n := 0
	for _, c := range calls {
		var kind string
		_, throttled := cloudcall.RetryAfter(c.Err)
		switch {
		case c.Err == nil:
			continue
		case errors.Is(c.Err, errCrash):
			kind = "crash point"
		case throttled:
			kind = "429"
		case errors.Is(c.Err, errInjected):
			kind = "error"
		case errors.Is(c.Err, context.DeadlineExceeded):
			kind = "hang (attempt timeout)"
		case errors.Is(c.Err, context.Canceled):
			out["cancelled"]++
			continue
		default:
			out["other (not found, exists...)"]++
			continue
		}
		out[kind]++
		n++
	}
	return out, n
}
