package instances_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"
	cloudnode "k8s.io/cloud-provider/controllers/node"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
	"k8s.io/klog/v2"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

// bubble runs a function in a testing/synctest bubble.
type bubble func(f func(t *testing.T))

// benchBubble runs f in a testing/synctest bubble from a benchmark
// (harness.InBubble).
func benchBubble(b *testing.B) bubble {
	return func(f func(t *testing.T)) { harness.InBubble(b, f) }
}

// v2Provider is the smallest cloudprovider.Interface with InstancesV2.
type v2Provider struct{ v2 cloudprovider.InstancesV2 }

func (p v2Provider) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}
func (p v2Provider) LoadBalancer() (cloudprovider.LoadBalancer, bool)                  { return nil, false }
func (p v2Provider) Instances() (cloudprovider.Instances, bool)                        { return nil, false }
func (p v2Provider) InstancesV2() (cloudprovider.InstancesV2, bool)                    { return p.v2, true }
func (p v2Provider) Zones() (cloudprovider.Zones, bool)                                { return nil, false }
func (p v2Provider) Clusters() (cloudprovider.Clusters, bool)                          { return nil, false }
func (p v2Provider) Routes() (cloudprovider.Routes, bool)                              { return nil, false }
func (p v2Provider) ProviderName() string                                              { return "fake" }
func (p v2Provider) HasClusterID() bool                                                { return true }

// joinResult is one run of the join burst.
type joinResult struct {
	init, pass time.Duration // simulated
	initCalls  int           // cloud calls until every Node was initialized
	passCalls  int           // cloud calls of the status pass
}

// joinBurst creates n Nodes with the uninitialized taint for n existing
// instances, runs upstream's cloud-node controller with one worker against
// them in a synctest bubble, the fake cloud answering every call after
// 100ms, and measures the simulated time until every Node is initialized,
// then of one node-status pass five minutes later.
func joinBurst(in bubble, n int, cached bool) joinResult {
	var r joinResult
	in(func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{Latency: 100 * time.Millisecond})
		for i := range n {
			id, name := fmt.Sprintf("i-%05d", i), fmt.Sprintf("node-%05d", i)
			if err := cloud.AddInstance(fakecloud.NewInstance(id, name, fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))); err != nil {
				t.Fatal(err)
			}
		}
		var v2 cloudprovider.InstancesV2 = direct{cloud.Instances(), "fake"}
		if cached {
			budget, err := cloudcall.NewBudget(cloudcall.BudgetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			c, err := instances.NewCache(cloud.Instances(), instances.CacheOptions{Budget: budget})
			if err != nil {
				t.Fatal(err)
			}
			v2 = instances.NewInstancesV2(c, "fake")
		}

		// NewClientset's field-managed tracker builds a REST mapper on every
		// write (about 6ms of CPU per Node update, most of a run); the
		// simple tracker keeps the benchmark's real time to seconds.
		client := fake.NewSimpleClientset()
		factory := informers.NewSharedInformerFactory(client, 0)
		nodes := factory.Core().V1().Nodes()
		// One worker, as upstream's default --concurrent-node-syncs=1; one
		// status worker; the periodic pass is run by hand below.
		cnc, err := cloudnode.NewCloudNodeController(nodes, client, v2Provider{v2}, 24*time.Hour, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		var initialized atomic.Int64
		allDone := make(chan time.Time, 1)
		if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(oldObj, newObj any) {
				if tainted(oldObj.(*v1.Node)) && !tainted(newObj.(*v1.Node)) && initialized.Add(1) == int64(n) {
					allDone <- time.Now()
				}
			},
		}); err != nil {
			t.Fatal(err)
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
		wg.Go(func() { cnc.RunWithContext(ctx, controllersmetrics.NewControllerManagerMetrics("bench")) })
		// The reflector has listed; wait until it also watches, or the
		// fake clientset drops Nodes created in between.
		synctest.Wait()

		start := time.Now()
		// The fake clientset's watch buffers hold watch.DefaultChanSize
		// events and panic when full: create in batches and let the
		// informer drain each one.
		const batch = 50
		for i := 0; i < n; i += batch {
			for j := i; j < min(i+batch, n); j++ {
				node := &v1.Node{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%05d", j)},
					Spec:       v1.NodeSpec{Taints: []v1.Taint{{Key: cloudproviderapi.TaintExternalCloudProvider, Value: "true", Effect: v1.TaintEffectNoSchedule}}},
				}
				if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			synctest.Wait()
		}
		r.init = (<-allDone).Sub(start)
		r.initCalls = cloud.TotalCalls()

		// The next periodic pass, five minutes later: the cache's entries
		// have expired by then.
		time.Sleep(5 * time.Minute) // simulated time: synctest bubble
		cloud.ResetCalls()
		passStart := time.Now()
		if err := cnc.UpdateNodeStatus(ctx); err != nil {
			t.Fatal(err)
		}
		r.pass = time.Since(passStart)
		r.passCalls = cloud.TotalCalls()
	})
	return r
}

func tainted(n *v1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == cloudproviderapi.TaintExternalCloudProvider {
			return true
		}
	}
	return false
}

// quietKlog silences klog's global output for the benchmark (the upstream
// controller logs every node it initializes) and restores it afterwards.
func quietKlog(b *testing.B) {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	b.Cleanup(func() { klog.LogToStderr(true) })
}

// BenchmarkNodeJoinBurst: 5,000 Nodes join at once for instances that
// exist; upstream's cloud-node controller with one worker initializes them
// through the cache in list mode, then straight to the backend, every cloud
// call taking 100ms. Reported per run, in simulated time (cloud latency
// only): s-cached, s-direct, speedup (direct/cached), calls-cached (cloud
// calls until every Node was initialized through the cache), and one
// node-status pass five minutes later: s-pass-cached, s-pass-direct.
func BenchmarkNodeJoinBurst(b *testing.B) {
	const n = 5000
	quietKlog(b)
	// Size the fake clientset's watch buffers for the controller's own
	// updates too (one per Node, at memory speed through the cache).
	saved := watch.DefaultChanSize
	watch.DefaultChanSize = 2 * n
	b.Cleanup(func() { watch.DefaultChanSize = saved })

	var cached, straight joinResult
	for b.Loop() {
		c, d := joinBurst(benchBubble(b), n, true), joinBurst(benchBubble(b), n, false)
		cached.init += c.init
		cached.pass += c.pass
		cached.initCalls += c.initCalls
		straight.init += d.init
		straight.pass += d.pass
	}
	per := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) }
	b.ReportMetric(per(cached.init), "s-cached")
	b.ReportMetric(per(straight.init), "s-direct")
	b.ReportMetric(straight.init.Seconds()/cached.init.Seconds(), "speedup")
	b.ReportMetric(float64(cached.initCalls)/float64(b.N), "calls-cached")
	b.ReportMetric(per(cached.pass), "s-pass-cached")
	b.ReportMetric(per(straight.pass), "s-pass-direct")
}

// TestNodeJoinBurst holds the benchmark's goals on a smaller cluster: one
// List initializes every Node, at least 100 times faster than a lookup per
// Node, and the status pass costs one List too.
func TestNodeJoinBurst(t *testing.T) {
	const n = 300
	// As in the benchmark: the controller's own updates (one per Node, at
	// memory speed through the cache) overflow the fake clientset's default
	// watch buffer of 100 when the informer is slow to drain (a loaded
	// machine), which panics with "channel full".
	saved := watch.DefaultChanSize
	watch.DefaultChanSize = 2 * n
	t.Cleanup(func() { watch.DefaultChanSize = saved })
	in := func(f func(t *testing.T)) { synctest.Test(t, f) }
	c, d := joinBurst(in, n, true), joinBurst(in, n, false)
	if c.initCalls > 5 || c.passCalls > 5 {
		t.Errorf("cached: %d cloud calls to initialize %d Nodes and %d for the status pass, want at most 5 each", c.initCalls, n, c.passCalls)
	}
	if d.initCalls < n {
		t.Errorf("direct: %d cloud calls for %d Nodes, want one per Node at least", d.initCalls, n)
	}
	if speedup := d.init.Seconds() / c.init.Seconds(); speedup < 100 {
		t.Errorf("initialized in %s cached, %s direct: speedup %.0f, want at least 100", c.init, d.init, speedup)
	}
	if c.pass >= d.pass {
		t.Errorf("status pass took %s cached, %s direct", c.pass, d.pass)
	}
}
