package lb_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// fleet is the benchmarks' cluster: one initialized Node and n
// LoadBalancer Services, created in batches so the fake clientset's watch
// buffers never overflow.
func createFleet(t *testing.T, h *harness.Harness, n int) {
	t.Helper()
	node := harness.NewNode("node-1", v1.ConditionTrue)
	node.Spec.ProviderID = "fake://node-1"
	node.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.1"}}
	h.CreateNode(t, node)
	synctest.Wait()
	for i := range n {
		h.CreateService(t, harness.NewLoadBalancerService(fmt.Sprintf("svc-%04d", i), 80))
		if i%50 == 49 {
			synctest.Wait()
		}
	}
}

// waitFleet waits until every Service has ingress and returns the simulated
// time it took from start.
func waitFleet(t *testing.T, h *harness.Harness, n int, start time.Time) time.Duration {
	t.Helper()
	h.WaitFor(t, "every Service has ingress", func(ctx context.Context) (bool, error) {
		list, err := h.Client.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		done := 0
		for _, s := range list.Items {
			if len(s.Status.LoadBalancer.Ingress) > 0 {
				done++
			}
		}
		return done == n, nil
	})
	return time.Since(start)
}

// blocking is how most CCMs implement EnsureLoadBalancer: find, create,
// wait (on the clock) until the cloud has provisioned it, find again.
type blocking struct {
	backend   *fakecloud.LBBackend
	provision time.Duration
}

func (p *blocking) find(ctx context.Context, cluster string, svc *v1.Service) (*lb.LoadBalancer, error) {
	return p.backend.Find(ctx, lb.Key{Cluster: cluster, UID: svc.UID})
}

func (p *blocking) status(l *lb.LoadBalancer) *v1.LoadBalancerStatus {
	st := &v1.LoadBalancerStatus{}
	for _, in := range l.Ingress {
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{IP: in.IP.String(), IPMode: ptr.To(v1.LoadBalancerIPModeVIP)})
	}
	return st
}

func (p *blocking) GetLoadBalancer(ctx context.Context, cluster string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	l, err := p.find(ctx, cluster, svc)
	if err != nil {
		return nil, false, nil
	}
	return p.status(l), true, nil
}

func (p *blocking) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	return lb.Name(svc.UID)
}

func (p *blocking) EnsureLoadBalancer(ctx context.Context, cluster string, svc *v1.Service, _ []*v1.Node) (*v1.LoadBalancerStatus, error) {
	if l, err := p.find(ctx, cluster, svc); err == nil && l.Status == lb.StatusActive {
		return p.status(l), nil
	}
	spec := &lb.Spec{Name: lb.Name(svc.UID), Key: lb.Key{Cluster: cluster, UID: svc.UID}, IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
		Listeners: []lb.Listener{{Protocol: v1.ProtocolTCP, Port: 80, NodePort: svc.Spec.Ports[0].NodePort}}}
	if _, err := p.backend.Create(ctx, spec); err != nil {
		return nil, err
	}
	time.Sleep(p.provision) // simulated: the bubble's clock
	l, err := p.find(ctx, cluster, svc)
	if err != nil {
		return nil, err
	}
	return p.status(l), nil
}

func (p *blocking) UpdateLoadBalancer(context.Context, string, *v1.Service, []*v1.Node) error {
	return nil
}

func (p *blocking) EnsureLoadBalancerDeleted(context.Context, string, *v1.Service) error { return nil }

// withLB is a cloud with only a load balancer.
type withLB struct {
	cloudprovider.Interface
	balancer cloudprovider.LoadBalancer
}

func (c withLB) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return c.balancer, true }

// fleetRange holds more addresses than the fake cloud's default /24.
var fleetRange = netip.MustParsePrefix("198.18.0.0/16")

func fleetCloud() *fakecloud.Cloud {
	return fakecloud.New(fakecloud.Options{Latency: 50 * time.Millisecond, LBProvisionTime: 2 * time.Second, LBRangeIPv4: fleetRange})
}

var fleetBudget = cloudcall.BudgetOptions{ReadQPS: 30, ReadBurst: 60, WriteQPS: 20, WriteBurst: 40}

// BenchmarkFleetProvisioning: 1,000 LoadBalancer Services through
// upstream's service controller with one worker (its default), the cloud
// taking 2 s to provision each and 50 ms per call; simulated time until all
// have ingress, ccmkit's RetryError path against a blocking implementation.
func BenchmarkFleetProvisioning(b *testing.B) {
	const n = 1000
	klog.SetOutput(discard{})
	klog.LogToStderr(false)
	defer klog.LogToStderr(true)
	var ccm, blk time.Duration
	for b.Loop() {
		harness.InBubble(b, func(t *testing.T) {
			cloud := fleetCloud()
			p, err := framework.NewBuilder("fake").WithLoadBalancers(cloud.LoadBalancers(), lb.Options{}).WithBudget(fleetBudget).Build()
			if err != nil {
				t.Fatal(err)
			}
			h := harness.Start(t, harness.Options{Provider: p, Controllers: []string{harness.Service}, WaitTimeout: 2 * time.Hour, PollInterval: time.Second})
			start := time.Now()
			createFleet(t, h, n)
			ccm = waitFleet(t, h, n, start)
			h.Stop()
		})
		harness.InBubble(b, func(t *testing.T) {
			cloud := fleetCloud()
			p, err := framework.NewBuilder("fake").Build()
			if err != nil {
				t.Fatal(err)
			}
			prov := withLB{Interface: p, balancer: &blocking{backend: cloud.LoadBalancers(), provision: 2 * time.Second}}
			h := harness.Start(t, harness.Options{Provider: prov, Controllers: []string{harness.Service}, WaitTimeout: 2 * time.Hour, PollInterval: time.Second})
			start := time.Now()
			createFleet(t, h, n)
			blk = waitFleet(t, h, n, start)
			h.Stop()
		})
	}
	b.ReportMetric(ccm.Seconds(), "s-ccmkit")
	b.ReportMetric(blk.Seconds(), "s-blocking")
	b.ReportMetric(blk.Seconds()/ccm.Seconds(), "speedup")
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkIngressOverhead: 1,000 Services to ingress through the real
// service controller, a zero-latency cloud that provisions at once and an
// unlimited budget: ccmkit's Reconciler over the fake cloud against
// upstream's fake cloud; unit ratio is ccmkit's wall-clock time over
// upstream's.
func BenchmarkIngressOverhead(b *testing.B) {
	const n = 1000
	klog.SetOutput(discard{})
	klog.LogToStderr(false)
	defer klog.LogToStderr(true)
	run := func(newProvider func(t *testing.T) cloudprovider.Interface) time.Duration {
		start := time.Now()
		harness.InBubble(b, func(t *testing.T) {
			h := harness.Start(t, harness.Options{Provider: newProvider(t), Controllers: []string{harness.Service}, WaitTimeout: time.Hour, PollInterval: time.Second})
			createFleet(t, h, n)
			waitFleet(t, h, n, time.Now())
			h.Stop()
		})
		return time.Since(start)
	}
	var ccm, up time.Duration
	for b.Loop() {
		ccm += run(func(t *testing.T) cloudprovider.Interface {
			p, err := framework.NewBuilder("fake").
				WithLoadBalancers(fakecloud.New(fakecloud.Options{LBRangeIPv4: fleetRange}).LoadBalancers(), lb.Options{}).
				WithBudget(cloudcall.BudgetOptions{ReadQPS: 1e9, ReadBurst: 1 << 30, WriteQPS: 1e9, WriteBurst: 1 << 30}).
				Build()
			if err != nil {
				t.Fatal(err)
			}
			return p
		})
		up += run(func(*testing.T) cloudprovider.Interface {
			return harness.NewUpstreamFake()
		})
	}
	b.ReportMetric(float64(ccm.Milliseconds())/float64(b.N), "ms-ccmkit")
	b.ReportMetric(float64(up.Milliseconds())/float64(b.N), "ms-upstream")
	b.ReportMetric(ccm.Seconds()/up.Seconds(), "ratio")
}

// counting counts the service controller's EnsureLoadBalancer calls.
type counting struct {
	cloudprovider.LoadBalancer
	ensures atomic.Int64
}

func (c *counting) EnsureLoadBalancer(ctx context.Context, cl string, s *v1.Service, n []*v1.Node) (*v1.LoadBalancerStatus, error) {
	c.ensures.Add(1)
	return c.LoadBalancer.EnsureLoadBalancer(ctx, cl, s, n)
}

// BenchmarkNodeChurnWrites: 1,000 LoadBalancer Services; the cloud writes
// when a Node is added (host updates, and full ensures it caused) and for
// an unchanged re-ensure of all 1,000.
func BenchmarkNodeChurnWrites(b *testing.B) {
	const n = 1000
	klog.SetOutput(discard{})
	klog.LogToStderr(false)
	defer klog.LogToStderr(true)
	var added, ensures, resync int
	for b.Loop() {
		harness.InBubble(b, func(t *testing.T) {
			cloud := fakecloud.New(fakecloud.Options{LBRangeIPv4: fleetRange})
			p, err := framework.NewBuilder("fake").WithLoadBalancers(cloud.LoadBalancers(), lb.Options{}).
				WithBudget(cloudcall.BudgetOptions{ReadQPS: 1e9, ReadBurst: 1 << 30, WriteQPS: 1e9, WriteBurst: 1 << 30}).Build()
			if err != nil {
				t.Fatal(err)
			}
			cnt := &counting{LoadBalancer: p.LoadBalancerReconciler()}
			h := harness.Start(t, harness.Options{Provider: withLB{Interface: p, balancer: cnt}, Controllers: []string{harness.Service}, WaitTimeout: time.Hour, PollInterval: time.Second})
			createFleet(t, h, n)
			waitFleet(t, h, n, time.Now())
			synctest.Wait()
			cloud.ResetCalls()
			cnt.ensures.Store(0)

			node := harness.NewNode("node-2", v1.ConditionTrue)
			node.Spec.ProviderID = "fake://node-2"
			h.CreateNode(t, node)
			h.WaitFor(t, "every load balancer has two targets", func(context.Context) (bool, error) {
				for _, l := range cloud.LoadBalancerList() {
					if len(l.Spec.Targets) != 2 {
						return false, nil
					}
				}
				return true, nil
			})
			synctest.Wait()
			added = writes(cloud)
			ensures = int(cnt.ensures.Load())

			cloud.ResetCalls()
			nodes, err := h.Client.CoreV1().Nodes().List(h.Context(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var ptrs []*v1.Node
			for i := range nodes.Items {
				ptrs = append(ptrs, &nodes.Items[i])
			}
			svcs, err := h.Client.CoreV1().Services("default").List(h.Context(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range svcs.Items {
				if _, err := p.LoadBalancerReconciler().EnsureLoadBalancer(h.Context(), harness.DefaultClusterName, &svcs.Items[i], ptrs); err != nil {
					t.Fatal(err)
				}
			}
			resync = writes(cloud)
			h.Stop()
		})
	}
	b.ReportMetric(float64(added), "writes-node-added")
	b.ReportMetric(float64(ensures), "ensures-node-added")
	b.ReportMetric(float64(resync), "writes-resync")
}

func writes(c *fakecloud.Cloud) int {
	return c.Count(fakecloud.OpCreateLoadBalancer) + c.Count(fakecloud.OpUpdateLoadBalancer) + c.Count(fakecloud.OpUpdateLoadBalancerTargets) + c.Count(fakecloud.OpDeleteLoadBalancer)
}
