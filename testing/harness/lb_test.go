package harness_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/utils/ptr"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

// sizeAnnotation is a provider annotation of the tests' provider.
const sizeAnnotation = "example.com/load-balancer-size"

var providerAnnotations = lb.MustSchema(lb.Annotation{
	Name: sizeAnnotation, Type: lb.Enum("small", "large"), Default: "small",
	Doc: "The load balancer's size.",
})

// lbProvider builds a provider with the lb block over cloud.
func lbProvider(t *testing.T, cloud *fakecloud.Cloud, opts lb.Options, budget cloudcall.BudgetOptions) *framework.Provider {
	t.Helper()
	if opts.Annotations == nil {
		opts.Annotations = providerAnnotations
	}
	p, err := framework.NewBuilder("fake").WithLoadBalancers(cloud.LoadBalancers(), opts).WithBudget(budget).Build()
	require.NoError(t, err)
	return p
}

func initializedNode(name, ip string) *v1.Node {
	n := harness.NewNode(name, v1.ConditionTrue)
	n.Spec.ProviderID = "fake://" + name
	n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}}
	return n
}

// settleNodes waits until the controllers are idle after Node changes,
// before Services change: upstream's service controller writes a service
// cache entry without its lock (service worker) while its node worker reads
// it, a data race inside k8s.io/cloud-provider v0.37.2
// (processServiceCreateOrUpdate vs serviceCache.allServices) that -race
// reports when a node sync and a service sync overlap.
func settleNodes() { synctest.Wait() }

func lbWrites(cloud *fakecloud.Cloud) map[fakecloud.Op]int {
	out := map[fakecloud.Op]int{}
	for _, op := range []fakecloud.Op{fakecloud.OpCreateLoadBalancer, fakecloud.OpUpdateLoadBalancer, fakecloud.OpUpdateLoadBalancerTargets, fakecloud.OpDeleteLoadBalancer} {
		if n := cloud.Count(op); n > 0 {
			out[op] = n
		}
	}
	return out
}

func TestServiceControllerWithLoadBalancers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{LBIPMode: v1.LoadBalancerIPModeProxy})
		p := lbProvider(t, cloud, lb.Options{}, cloudcall.BudgetOptions{})
		h := harness.Start(t, harness.Options{Provider: p, Controllers: []string{harness.Service}})
		h.CreateNode(t, initializedNode("node-1", "10.0.0.1"))
		h.CreateNode(t, initializedNode("node-2", "10.0.0.2"))
		settleNodes()

		h.CreateService(t, harness.NewLoadBalancerService("web", 80))
		svc := h.WaitForIngress(t, "default", "web")
		require.Len(t, svc.Status.LoadBalancer.Ingress, 1)
		assert.Equal(t, ptr.To(v1.LoadBalancerIPModeProxy), svc.Status.LoadBalancer.Ingress[0].IPMode, "the backend's ipMode")
		synctest.Wait()
		assert.Equal(t, 2, h.StatusPatches(t, "default", "web"), "finalizer and ingress")
		got, ok := cloud.LoadBalancer(lb.Name(svc.UID))
		require.True(t, ok)
		assert.Len(t, got.Spec.Targets, 2)

		// An unrelated change re-syncs the Service: no cloud write, no
		// status patch.
		cloud.ResetCalls()
		svc.Annotations = map[string]string{"unrelated": "x"}
		_, err := h.Client.CoreV1().Services("default").Update(h.Context(), svc, metav1.UpdateOptions{})
		require.NoError(t, err)
		h.WaitForEvent(t, "web", "EnsuredLoadBalancer")
		synctest.Wait()
		assert.Empty(t, lbWrites(cloud), "an unchanged re-sync writes nothing")
		assert.Equal(t, 2, h.StatusPatches(t, "default", "web"), "and patches no status")

		// A Node added, and one removed: host updates only.
		cloud.ResetCalls()
		h.CreateNode(t, initializedNode("node-3", "10.0.0.3"))
		h.WaitFor(t, "three targets", func(context.Context) (bool, error) {
			got, _ := cloud.LoadBalancer(lb.Name(svc.UID))
			return len(got.Spec.Targets) == 3, nil
		})
		require.NoError(t, h.Client.CoreV1().Nodes().Delete(h.Context(), "node-1", metav1.DeleteOptions{}))
		h.WaitFor(t, "two targets", func(context.Context) (bool, error) {
			got, _ := cloud.LoadBalancer(lb.Name(svc.UID))
			return len(got.Spec.Targets) == 2, nil
		})
		synctest.Wait()
		assert.Equal(t, map[fakecloud.Op]int{fakecloud.OpUpdateLoadBalancerTargets: 2}, lbWrites(cloud), "node churn makes host updates only")

		// A provider annotation change updates the load balancer.
		cloud.ResetCalls()
		svc = h.Service(t, "default", "web")
		svc.Annotations[sizeAnnotation] = "large"
		_, err = h.Client.CoreV1().Services("default").Update(h.Context(), svc, metav1.UpdateOptions{})
		require.NoError(t, err)
		h.WaitFor(t, "size large", func(context.Context) (bool, error) {
			got, _ := cloud.LoadBalancer(lb.Name(svc.UID))
			return got.Spec.Options[sizeAnnotation] == "large", nil
		})
		synctest.Wait()
		assert.Equal(t, map[fakecloud.Op]int{fakecloud.OpUpdateLoadBalancer: 1}, lbWrites(cloud))

		// Type changed away from LoadBalancer: the load balancer and the
		// finalizer go.
		svc = h.Service(t, "default", "web")
		svc.Spec.Type = v1.ServiceTypeClusterIP
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = 0
		}
		_, err = h.Client.CoreV1().Services("default").Update(h.Context(), svc, metav1.UpdateOptions{})
		require.NoError(t, err)
		h.WaitForService(t, "default", "web", "no finalizer", func(s *v1.Service) bool { return len(s.Finalizers) == 0 })
		assert.Empty(t, cloud.LoadBalancerList(), "the load balancer is deleted")

		// Service deletion removes the load balancer, then the Service.
		h.CreateService(t, harness.NewLoadBalancerService("api", 443))
		h.WaitForIngress(t, "default", "api")
		require.Len(t, cloud.LoadBalancerList(), 1)
		h.DeleteService(t, "default", "api")
		assert.Empty(t, cloud.LoadBalancerList())
	})
}

// A cloud that answers with DNS names (an AWS ELB) gives the Service a
// hostname-only ingress, without an ipMode (the API refuses one without an
// IP); a Service that requests an address there gets the cloud's error.
func TestServiceControllerHostnameIngress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{LBHostnameSuffix: "elb.fake.example"})
		p := lbProvider(t, cloud, lb.Options{}, cloudcall.BudgetOptions{})
		h := harness.Start(t, harness.Options{Provider: p, Controllers: []string{harness.Service}})
		h.CreateNode(t, initializedNode("node-1", "10.0.0.1"))
		settleNodes()

		h.CreateService(t, harness.NewLoadBalancerService("web", 80))
		svc := h.WaitForIngress(t, "default", "web")
		assert.Equal(t, []v1.LoadBalancerIngress{{Hostname: lb.Name(svc.UID) + ".elb.fake.example"}}, svc.Status.LoadBalancer.Ingress)

		asks := harness.NewLoadBalancerService("fixed", 80)
		asks.Annotations = map[string]string{lb.AnnotationIPs: "203.0.113.7"}
		h.CreateService(t, asks)
		e := h.WaitForEvent(t, "fixed", "SyncLoadBalancerFailed")
		assert.Contains(t, e.Message, "assigns hostnames, not addresses")
		synctest.Wait()
		assert.Empty(t, h.Service(t, "default", "fixed").Status.LoadBalancer.Ingress)
		assert.Len(t, cloud.LoadBalancerList(), 1, "no load balancer for the Service the cloud refused")
	})
}

func TestServiceControllerPollsAPendingLoadBalancer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{LBProvisionTime: 20 * time.Second})
		p := lbProvider(t, cloud, lb.Options{PollInterval: 5 * time.Second}, cloudcall.BudgetOptions{})
		h := harness.Start(t, harness.Options{Provider: p, Controllers: []string{harness.Service}})
		h.CreateNode(t, initializedNode("node-1", "10.0.0.1"))
		settleNodes()
		start := time.Now()
		h.CreateService(t, harness.NewLoadBalancerService("web", 80))
		e := h.WaitForEvent(t, "web", "SyncLoadBalancerFailed")
		assert.Contains(t, e.Message, "still being provisioned", "the RetryError's message, for kubectl describe")
		h.WaitForIngress(t, "default", "web")
		elapsed := time.Since(start)
		assert.Less(t, elapsed, 30*time.Second, "polled every 5s, not backed off exponentially")
		assert.Equal(t, 1, cloud.Count(fakecloud.OpCreateLoadBalancer))
		assert.LessOrEqual(t, cloud.Count(fakecloud.OpFindLoadBalancer), 7, "one find per poll")
	})
}

func TestServiceControllerCrashAfterCreateWithReadLag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{ReadLag: 15 * time.Second})
		cloud.Inject(fakecloud.OpCreateLoadBalancer, fakecloud.Fault{Err: cloudcall.Transient(errors.New("connection reset")), After: true, Times: 1})
		client := harness.NewFakeClientset(harness.FakeOptions{})
		p1 := lbProvider(t, cloud, lb.Options{ReadLag: 15 * time.Second}, cloudcall.BudgetOptions{MaxAttempts: 1})
		h1 := harness.Start(t, harness.Options{Provider: p1, Client: client, Controllers: []string{harness.Service}})
		// No Node: on a restart the node sync and the service sync
		// overlap, the upstream data race settleNodes describes.
		h1.CreateService(t, harness.NewLoadBalancerService("web", 80))
		h1.WaitFor(t, "the cloud created it", func(context.Context) (bool, error) { return len(cloud.LoadBalancerList()) == 1, nil })
		// The manager dies before it learns of the create.
		h1.Stop()

		p2 := lbProvider(t, cloud, lb.Options{ReadLag: 15 * time.Second}, cloudcall.BudgetOptions{MaxAttempts: 1})
		h2 := harness.Start(t, harness.Options{Provider: p2, Client: client, Controllers: []string{harness.Service}})
		h2.WaitForIngress(t, "default", "web")
		assert.Len(t, cloud.LoadBalancerList(), 1, "one load balancer after a crash and lagging reads")
	})
}

func TestServiceControllerBadAnnotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		p := lbProvider(t, cloud, lb.Options{}, cloudcall.BudgetOptions{})
		h := harness.Start(t, harness.Options{Provider: p, Controllers: []string{harness.Service}})
		h.CreateNode(t, initializedNode("node-1", "10.0.0.1"))
		settleNodes()
		svc := harness.NewLoadBalancerService("web", 80)
		svc.Annotations = map[string]string{sizeAnnotation: "huge"}
		h.CreateService(t, svc)
		e := h.WaitForEvent(t, "web", "InvalidAnnotation")
		assert.Equal(t, v1.EventTypeWarning, e.Type)
		assert.Contains(t, e.Message, sizeAnnotation)
		assert.Contains(t, e.Message, `one of "small", "large"`, "the Event says what is allowed")
		synctest.Wait()
		assert.Equal(t, 0, cloud.TotalCalls(), "no cloud call")
	})
}

// TestStopWaitsForAWorkerInTheErrorBackoff pins the cause of a CI
// failure of TestServiceControllerBadAnnotation: upstream's controllers
// leave their workers running when Run returns, and a worker that reported
// an error as its controller stopped sleeps out the error handlers' 1ms rate
// limit. Time stops in a bubble once its main goroutine exits, so unless
// Stop lets that millisecond pass, the worker never wakes and the bubble
// deadlocks. The goroutine below is such a worker: its second error comes
// at the same instant as its first, so it sleeps. The check is synctest's
// own: without the wait in Stop, synctest.Test fails with "main bubble
// goroutine has exited but blocked goroutines remain". (Waiting for the
// worker here instead would hide the bug: a blocked main goroutine lets
// the bubble's clock move.)
func TestStopWaitsForAWorkerInTheErrorBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		h := harness.Start(t, harness.Options{Provider: lbProvider(t, cloud, lb.Options{}, cloudcall.BudgetOptions{}), Controllers: []string{harness.Service}})
		go func() {
			<-h.Context().Done()
			for range 2 {
				utilruntime.HandleError(errors.New("a worker's error as its controller stops"))
			}
		}()
	})
}

// kindWindows returns the most calls of each kind (read, write) the cloud
// received in any one-second window.
func kindWindows(cloud *fakecloud.Cloud) (reads, writes int) {
	var r, w []time.Time
	for _, c := range cloud.Calls() {
		switch c.Op {
		case fakecloud.OpCreateLoadBalancer, fakecloud.OpUpdateLoadBalancer, fakecloud.OpUpdateLoadBalancerTargets, fakecloud.OpDeleteLoadBalancer:
			w = append(w, c.At)
		default:
			r = append(r, c.At)
		}
	}
	return maxWindow(r), maxWindow(w)
}

func maxWindow(at []time.Time) int {
	most, lo := 0, 0
	// Calls() is in finishing order; arrival times are nearly sorted.
	sorted := append([]time.Time(nil), at...)
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && sorted[j].Before(sorted[j-1]); j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	for hi := range sorted {
		for !sorted[hi].Before(sorted[lo].Add(time.Second)) {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

func TestServiceControllerThrottlingStormConverges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{Seed: 7})
		for _, op := range []fakecloud.Op{fakecloud.OpFindLoadBalancer, fakecloud.OpCreateLoadBalancer} {
			cloud.Inject(op, fakecloud.Fault{RetryAfter: 3 * time.Second, Rate: 0.5})
		}
		budget := cloudcall.BudgetOptions{ReadQPS: 5, ReadBurst: 5, WriteQPS: 2, WriteBurst: 2}
		p := lbProvider(t, cloud, lb.Options{}, budget)
		h := harness.Start(t, harness.Options{Provider: p, Controllers: []string{harness.Service}, Flags: []string{"--concurrent-service-syncs=5"}})
		h.CreateNode(t, initializedNode("node-1", "10.0.0.1"))
		settleNodes()
		const n = 20
		for i := range n {
			h.CreateService(t, harness.NewLoadBalancerService("svc-"+string(rune('a'+i)), 80))
		}
		for i := range n {
			h.WaitForIngress(t, "default", "svc-"+string(rune('a'+i)))
		}
		assert.Len(t, cloud.LoadBalancerList(), n, "one load balancer each")
		reads, writes := kindWindows(cloud)
		assert.LessOrEqual(t, reads, budget.ReadBurst+int(budget.ReadQPS), "reads in any one-second window")
		assert.LessOrEqual(t, writes, budget.WriteBurst+int(budget.WriteQPS), "writes in any one-second window")
		t.Logf("calls %d, worst second: %d reads, %d writes", cloud.TotalCalls(), reads, writes)
	})
}

func TestPoolServiceKeepsItsAddressAcrossRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		client := harness.NewFakeClientset(harness.FakeOptions{})
		start := func() (*harness.Harness, *ipam.LBAllocator) {
			pools, err := ipam.NewLBAllocator(ipam.Pool{Name: "local", Ranges: []ipam.Range{{First: mustAddr("127.0.200.1"), Last: mustAddr("127.0.200.9")}}})
			require.NoError(t, err)
			p := lbProvider(t, cloud, lb.Options{Pools: pools}, cloudcall.BudgetOptions{})
			return harness.Start(t, harness.Options{Provider: p, Client: client, Controllers: []string{harness.Service}}), pools
		}
		h, _ := start()
		// No Node, as in the crash test (see settleNodes).
		h.CreateService(t, harness.NewLoadBalancerService("a", 80))
		a := h.WaitForIngress(t, "default", "a")
		assert.Equal(t, "127.0.200.1", a.Status.LoadBalancer.Ingress[0].IP)
		h.Stop()

		h2, pools := start()
		h2.CreateService(t, harness.NewLoadBalancerService("b", 80))
		b := h2.WaitForIngress(t, "default", "b")
		assert.Equal(t, "127.0.200.2", b.Status.LoadBalancer.Ingress[0].IP, "a's address is not handed out again")
		assert.Equal(t, a.Status.LoadBalancer.Ingress, h2.Service(t, "default", "a").Status.LoadBalancer.Ingress, "a keeps its address")
		h2.DeleteService(t, "default", "a")
		assert.Empty(t, pools.Addrs(ipam.RefOf(a)), "released with the load balancer")
	})
}

func TestReaperDeletesOrphansAfterGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		p := lbProvider(t, cloud, lb.Options{}, cloudcall.BudgetOptions{})
		orphan := lb.Key{Cluster: harness.DefaultClusterName, UID: "uid-gone"}
		require.NoError(t, cloud.AddLoadBalancer(lb.LoadBalancer{ID: "lb-1", Spec: lb.Spec{Name: lb.Name(orphan.UID), Key: orphan, Service: lb.ServiceRef{Namespace: "default", Name: "gone", UID: orphan.UID}}}))
		require.NoError(t, cloud.AddLoadBalancer(lb.LoadBalancer{ID: "lb-2", Spec: lb.Spec{Name: "foreign", Key: lb.Key{Cluster: "other", UID: "uid-x"}}}))
		h := harness.Start(t, harness.Options{Provider: p, Controllers: []string{harness.Service, harness.LoadBalancerReaper},
			Flags: []string{"--lb-reaper-grace-period=2m", "--lb-reaper-period=1m"}, WaitTimeout: 10 * time.Minute})
		start := time.Now()
		h.WaitFor(t, "orphan reaped", func(context.Context) (bool, error) {
			_, ok := cloud.LoadBalancer(lb.Name(orphan.UID))
			return !ok, nil
		})
		assert.GreaterOrEqual(t, time.Since(start), 2*time.Minute, "not before the grace period")
		_, ok := cloud.LoadBalancer("foreign")
		assert.True(t, ok, "another cluster's load balancer is untouched")
		h.WaitForEvent(t, "gone", "DeletedOrphanedLoadBalancer")
	})
}

func TestReaperRefusesTheDefaultClusterName(t *testing.T) {
	cloud := fakecloud.New(fakecloud.Options{})
	p := lbProvider(t, cloud, lb.Options{}, cloudcall.BudgetOptions{})
	_, err := harness.TryStart(t.Context(), harness.Options{Provider: p, ClusterName: "kubernetes", Controllers: []string{harness.LoadBalancerReaper}})
	require.ErrorContains(t, err, "refusing to run")
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
