package routes_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	_ "unsafe" // go:linkname to upstream's reconcile

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	cloudprovider "k8s.io/cloud-provider"
	routecontroller "k8s.io/cloud-provider/controllers/route"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
	_ "k8s.io/controller-manager/pkg/features/register" // the route controller reads its feature gate
	"k8s.io/klog/v2"

	"github.com/ccmkit/ccmkit/routes"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// upstreamReconcile is upstream's unexported whole-cluster reconcile (one
// ListRoutes, the diff, the writes and the Node condition updates).
//
//go:linkname upstreamReconcile k8s.io/cloud-provider/controllers/route.(*RouteController).reconcileNodeRoutes
func upstreamReconcile(rc *routecontroller.RouteController, ctx context.Context) (bool, error)

const benchCluster = "bench"

var benchCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

// benchNode returns node i: pod CIDR 10.x.y.0/24, InternalIP 172.16.x.y,
// a UID, and NetworkUnavailable False/RouteCreated when ready.
func benchNode(i int, ready bool) *v1.Node {
	name := fmt.Sprintf("node-%05d", i)
	cidr := fmt.Sprintf("10.%d.%d.0/24", i>>8, i&255)
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(fmt.Sprintf("uid-%05d", i))},
		Spec:       v1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{
			{Type: v1.NodeInternalIP, Address: fmt.Sprintf("172.16.%d.%d", i>>8, i&255)},
			{Type: v1.NodeHostName, Address: name},
		}},
	}
	if ready {
		n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeNetworkUnavailable, Status: v1.ConditionFalse, Reason: routes.ReasonRouteCreated}}
	}
	return n
}

func benchNodes(n int, ready bool) []*v1.Node {
	out := make([]*v1.Node, n)
	for i := range out {
		out[i] = benchNode(i, ready)
	}
	return out
}

// asListed returns routes as a backend storing addresses lists them.
func asListed(rs []routes.Route) []routes.Route {
	out := make([]routes.Route, len(rs))
	for i, r := range rs {
		r.AddressesStored = true
		out[i] = r
	}
	return out
}

// BenchmarkDiff: 5,000 nodes, steady state and one node's address changed.
// Goal: at most 1 ms per Diff.
func BenchmarkDiff(b *testing.B) {
	nodes := benchNodes(5000, false)
	desired, _ := routes.Desired(benchCluster, nodes)
	actual := asListed(desired)
	b.Run("steady", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if p := routes.Diff(desired, actual, benchCIDRs); !p.Empty() {
				b.Fatal("steady state plans writes")
			}
		}
	})
	b.Run("one-changed", func(b *testing.B) {
		changed := append([]routes.Route(nil), desired...)
		changed[2500].NodeAddresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "172.31.0.1"}}
		b.ReportAllocs()
		for b.Loop() {
			if p := routes.Diff(changed, actual, benchCIDRs); len(p.Create) != 1 || len(p.Delete) != 1 {
				b.Fatalf("one change: plan %d creates, %d deletes", len(p.Create), len(p.Delete))
			}
		}
	})
}

// benchBubble runs f in a testing/synctest bubble from a benchmark (see
// instances/joinburst_test.go).
func benchBubble(b *testing.B, f func(t *testing.T)) {
	b.Helper()
	always := func(string, string) (bool, error) { return true, nil }
	if !testing.RunTests(always, []testing.InternalTest{{Name: b.Name() + "/bubble", F: func(t *testing.T) { synctest.Test(t, f) }}}) {
		b.Fatal("the benchmark's synctest bubble failed")
	}
}

func quietKlog(b *testing.B) {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	b.Cleanup(func() { klog.LogToStderr(true) })
}

type fromEmpty int

const (
	viaUpstreamBatched fromEmpty = iota // upstream's controller, adapter with a Batcher
	viaController                       // ccmkit's controller
	viaUpstreamDirect                   // upstream's controller, per-route calls
)

// writesFromEmpty starts the controller of way over an empty table with n
// Nodes in the informer, waits until every route exists, and returns the
// table writes it took.
func writesFromEmpty(t *testing.T, n int, way fromEmpty) int {
	cloud := fakecloud.New(fakecloud.Options{Latency: 10 * time.Millisecond})
	table := cloud.NewRouteTable(fakecloud.RouteTableOptions{StoreAddresses: true, MaxBatchSize: 1000, Limit: 2 * n})
	objs := make([]k8sruntime.Object, n)
	for i, node := range benchNodes(n, false) {
		objs[i] = node
	}
	client := fake.NewSimpleClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes()
	var run func(ctx context.Context)
	switch way {
	case viaController:
		c, err := routes.NewController(table.Batch(), client, nodes, routes.ControllerConfig{ClusterName: benchCluster, ClusterCIDRs: benchCIDRs}, routes.Options{})
		if err != nil {
			t.Fatal(err)
		}
		run = func(ctx context.Context) { _ = c.Run(ctx) }
	default:
		var backend routes.Backend = table.Batch()
		if way == viaUpstreamDirect {
			backend = table.PerRoute()
		}
		a, err := routes.NewAdapter(backend, routes.Options{})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := routecontroller.New(a, client, nodes, benchCluster, []*net.IPNet{{IP: net.IPv4(10, 0, 0, 0), Mask: net.CIDRMask(8, 32)}})
		if err != nil {
			t.Fatal(err)
		}
		run = func(ctx context.Context) {
			rc.Run(ctx, 10*time.Second, controllersmetrics.NewControllerManagerMetrics("bench"))
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		factory.Shutdown()
	}()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	wg.Go(func() { run(ctx) })
	for deadline := time.Now().Add(time.Hour); table.Len() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d routes after an hour", table.Len(), n)
		}
		time.Sleep(time.Second) // simulated time: synctest bubble
	}
	if way == viaUpstreamDirect {
		return cloud.Count(fakecloud.OpCreateRoute) + cloud.Count(fakecloud.OpDeleteRoute)
	}
	return cloud.Count(fakecloud.OpApplyRoutes)
}

// BenchmarkRouteWritesFromEmpty: 5,000 Nodes with pod CIDRs, all in the
// informer before the controllers start; a batch cloud (one write applies
// up to 1,000 changes). Route-table writes per run until every route
// exists: upstream's controller through the Batcher (writes-batched, goal
// at most 30), ccmkit's controller (writes-controller, goal at most 5), and
// upstream's controller with per-route calls (writes-direct, 5,000).
func BenchmarkRouteWritesFromEmpty(b *testing.B) {
	const n = 5000
	quietKlog(b)
	bigWatch(b, n)
	var batched, controller, direct int
	for b.Loop() {
		benchBubble(b, func(t *testing.T) { batched += writesFromEmpty(t, n, viaUpstreamBatched) })
		benchBubble(b, func(t *testing.T) { controller += writesFromEmpty(t, n, viaController) })
		benchBubble(b, func(t *testing.T) { direct += writesFromEmpty(t, n, viaUpstreamDirect) })
	}
	per := func(x int) float64 { return float64(x) / float64(b.N) }
	b.ReportMetric(per(batched), "writes-batched")
	b.ReportMetric(per(controller), "writes-controller")
	b.ReportMetric(per(direct), "writes-direct")
}

// bigWatch sizes the fake clientset's watch buffers for the controllers'
// status patches of n Nodes (they panic when full), restored on cleanup.
func bigWatch(tb testing.TB, n int) {
	saved := watch.DefaultChanSize
	watch.DefaultChanSize = int32(4 * n)
	tb.Cleanup(func() { watch.DefaultChanSize = saved })
}

// TestRouteWritesFromEmpty holds the benchmark's goals on 600 Nodes
// (batches of 1,000: one write for ccmkit's controller, upstream's 200
// calls in flight: at least 3 through the Batcher).
func TestRouteWritesFromEmpty(t *testing.T) {
	const n = 600
	bigWatch(t, n)
	var batched, controller, direct int
	synctest.Test(t, func(t *testing.T) { batched = writesFromEmpty(t, n, viaUpstreamBatched) })
	synctest.Test(t, func(t *testing.T) { controller = writesFromEmpty(t, n, viaController) })
	synctest.Test(t, func(t *testing.T) { direct = writesFromEmpty(t, n, viaUpstreamDirect) })
	if controller != 1 {
		t.Errorf("ccmkit's controller: %d writes for %d routes, want 1", controller, n)
	}
	if batched > 6 {
		t.Errorf("upstream's controller with the Batcher: %d writes for %d routes, want at most 6", batched, n)
	}
	if direct != n {
		t.Errorf("upstream's controller without the Batcher: %d writes, want %d", direct, n)
	}
}

// steadyFixture is a converged cluster: n Nodes with their conditions set,
// the table holding every route, a synced informer (not running any
// controller).
type steadyFixture struct {
	ccmkit   *routes.Controller
	upstream *routecontroller.RouteController
	stop     func()
}

func newSteadyFixture(tb testing.TB, n int) steadyFixture {
	tb.Helper()
	table := fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{StoreAddresses: true})
	nodes := benchNodes(n, true)
	desired, _ := routes.Desired(benchCluster, nodes)
	for _, r := range desired {
		if err := table.Add(benchCluster, r); err != nil {
			tb.Fatal(err)
		}
	}
	objs := make([]k8sruntime.Object, n)
	for i, node := range nodes {
		objs[i] = node
	}
	client := fake.NewSimpleClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Core().V1().Nodes()
	c, err := routes.NewController(table.Batch(), client, inf, routes.ControllerConfig{ClusterName: benchCluster, ClusterCIDRs: benchCIDRs}, routes.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	a, err := routes.NewAdapter(table.Batch(), routes.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	var up cloudprovider.Routes = a
	rc, err := routecontroller.New(up, client, inf, benchCluster, []*net.IPNet{{IP: net.IPv4(10, 0, 0, 0), Mask: net.CIDRMask(8, 32)}})
	if err != nil {
		tb.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	return steadyFixture{ccmkit: c, upstream: rc, stop: func() { close(stop); factory.Shutdown() }}
}

// BenchmarkSteadyReconcile: one steady-state reconcile at 5,000 Nodes (one
// list, nothing to write), ccmkit's controller versus upstream's
// reconcile, over the same fake cloud, klog discarded for both. Reported:
// ms-ccmkit, ms-upstream per reconcile and ratio (upstream/ccmkit, goal at
// least 5).
func BenchmarkSteadyReconcile(b *testing.B) {
	quietKlog(b)
	f := newSteadyFixture(b, 5000)
	defer f.stop()
	ctx := context.Background()
	var ours, theirs time.Duration
	for b.Loop() {
		runtime.GC() // neither pays for the other's garbage
		start := time.Now()
		res, err := f.ccmkit.Reconcile(ctx)
		ours += time.Since(start)
		if err != nil || res.Created+res.Deleted+res.NodesUpdated > 0 {
			b.Fatalf("ccmkit's steady reconcile wrote: %+v, %v", res, err)
		}
		runtime.GC()
		start = time.Now()
		changed, err := upstreamReconcile(f.upstream, ctx)
		theirs += time.Since(start)
		if err != nil || changed {
			b.Fatalf("upstream's steady reconcile changed routes: %v, %v", changed, err)
		}
	}
	b.ReportMetric(float64(ours.Microseconds())/1000/float64(b.N), "ms-ccmkit")
	b.ReportMetric(float64(theirs.Microseconds())/1000/float64(b.N), "ms-upstream")
	b.ReportMetric(float64(theirs)/float64(ours), "ratio")
}
