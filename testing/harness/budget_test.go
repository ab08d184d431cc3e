package harness_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

// throttledLB is the fake cloud's load-balancer backend behind a cloud-side
// rate limit on writes: past perSecond writes a second it answers 429 with
// Retry-After, as a cloud's API gateway does. It logs every write that
// arrives, rejected ones included.
type throttledLB struct {
	*fakecloud.LBBackend
	limit      *rate.Limiter
	retryAfter time.Duration

	mu       sync.Mutex
	arrivals []time.Time
	rejected int
}

func newThrottledLB(b *fakecloud.LBBackend, perSecond int, retryAfter time.Duration) *throttledLB {
	return &throttledLB{LBBackend: b, limit: rate.NewLimiter(rate.Limit(perSecond), perSecond), retryAfter: retryAfter}
}

var errTooManyRequests = errors.New("429 Too Many Requests")

func (b *throttledLB) admit() error {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.arrivals = append(b.arrivals, now)
	if b.limit.AllowN(now, 1) {
		return nil
	}
	b.rejected++
	return cloudcall.Throttled(b.retryAfter, errTooManyRequests)
}

func (b *throttledLB) Create(ctx context.Context, spec *lb.Spec) (*lb.LoadBalancer, error) {
	if err := b.admit(); err != nil {
		return nil, err
	}
	return b.LBBackend.Create(ctx, spec)
}

func (b *throttledLB) Update(ctx context.Context, cur *lb.LoadBalancer, spec *lb.Spec) (*lb.LoadBalancer, error) {
	if err := b.admit(); err != nil {
		return nil, err
	}
	return b.LBBackend.Update(ctx, cur, spec)
}

func (b *throttledLB) UpdateTargets(ctx context.Context, cur *lb.LoadBalancer, targets []lb.Target) (*lb.LoadBalancer, error) {
	if err := b.admit(); err != nil {
		return nil, err
	}
	return b.LBBackend.UpdateTargets(ctx, cur, targets)
}

func (b *throttledLB) Delete(ctx context.Context, cur *lb.LoadBalancer) error {
	if err := b.admit(); err != nil {
		return err
	}
	return b.LBBackend.Delete(ctx, cur)
}

func (b *throttledLB) writeArrivals() ([]time.Time, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.arrivals...), b.rejected
}

// TestBudgetUnderThrottling holds the cloud API budget while 1,000
// LoadBalancer Services reconcile against a cloud that pushes back: the
// calls that arrive in any one-second window never exceed Burst+QPS of their
// kind, and a Node that joins meanwhile is initialized within 10 simulated
// seconds, in two cases:
//
//   - writes-throttled: the cloud accepts 5 writes a second and answers 429
//     with Retry-After beyond (the budget would send 10): the load-balancer
//     write gate closes, instance reads go on;
//   - lb-reads-429: the load-balancer API answers half its reads with 429
//     and a 5 s Retry-After: the "lb" family's read gate is closed most of
//     the time, and must not hold the "instances" family's reads.
//
// The Services are reconciled by ten workers calling the provider's
// EnsureLoadBalancer as the service controller's workers do (a RetryError
// requeues after its delay, another error after 5 s), not by upstream's
// service controller: a Node joining while its service workers sync
// triggers the upstream data race TestChaos describes, and the gate that
// avoids it would hold the very syncs this test needs in flight.
func TestBudgetUnderThrottling(t *testing.T) {
	budget := cloudcall.BudgetOptions{ReadQPS: 20, ReadBurst: 40, WriteQPS: 10, WriteBurst: 10}
	for _, tc := range []struct {
		name  string
		setup func(cloud *fakecloud.Cloud)
		rate  int // cloud-side writes a second, 0: none
	}{
		{name: "writes-throttled", rate: 5},
		{name: "lb-reads-429", setup: func(cloud *fakecloud.Cloud) {
			cloud.Inject(fakecloud.OpFindLoadBalancer, fakecloud.Fault{RetryAfter: 5 * time.Second, Err: errTooManyRequests, Rate: 0.5})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cloud := fakecloud.New(fakecloud.Options{Seed: 11, LBRangeIPv4: netip.MustParsePrefix("100.64.0.0/20")})
				if tc.setup != nil {
					tc.setup(cloud)
				}
				throttled := newThrottledLB(cloud.LoadBalancers(), 1<<20, time.Second) // logs writes only
				if tc.rate > 0 {
					throttled = newThrottledLB(cloud.LoadBalancers(), tc.rate, time.Second)
				}
				p, err := framework.NewBuilder("fake").
					WithInstances(cloud.Instances(), instances.CacheOptions{}).
					WithLoadBalancers(throttled, lb.Options{Annotations: providerAnnotations}).
					WithBudget(budget).
					Build()
				require.NoError(t, err)
				h := harness.Start(t, harness.Options{Provider: p, Controllers: []string{harness.CloudNode, harness.NodeLifecycle}})
				var nodes []*v1.Node
				for i := range 3 {
					name := fmt.Sprintf("node-%d", i)
					require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-"+name, name, fmt.Sprintf("10.0.0.%d", i+1))))
					n := initializedNode(name, fmt.Sprintf("10.0.0.%d", i+1))
					n.Spec.ProviderID = "fake://i-" + name
					nodes = append(nodes, n)
				}

				const services = 1000
				reconciler, _ := p.LoadBalancer()
				queue := make(chan *v1.Service, services)
				var mu sync.Mutex
				done, attempts := 0, 0
				for i := range services {
					svc := harness.NewLoadBalancerService(fmt.Sprintf("svc-%04d", i), 80)
					svc.UID = types.UID(fmt.Sprintf("uid-%04d", i))
					svc.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol}
					svc.Spec.Ports[0].NodePort = int32(30000 + i)
					queue <- svc
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				for range 10 {
					go func() {
						for {
							var svc *v1.Service
							select {
							case svc = <-queue:
							case <-ctx.Done():
								return
							}
							_, err := reconciler.EnsureLoadBalancer(ctx, harness.DefaultClusterName, svc, nodes)
							mu.Lock()
							attempts++
							mu.Unlock()
							if err == nil {
								mu.Lock()
								done++
								mu.Unlock()
								continue
							}
							delay := 5 * time.Second
							var re *cloudproviderapi.RetryError
							if errors.As(err, &re) {
								delay = re.RetryAfter()
							}
							time.AfterFunc(delay, func() {
								select {
								case queue <- svc:
								case <-ctx.Done():
								}
							})
						}
					}()
				}

				// A Node joins while the Services reconcile.
				time.Sleep(5 * time.Second) // simulated time: synctest bubble
				require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-late", "node-late", "10.0.0.99")))
				joined := time.Now()
				h.CreateNode(t, harness.NewNode("node-late", v1.ConditionTrue))
				h.WaitForNode(t, "node-late", "initialized", func(n *v1.Node) bool {
					return !harness.HasTaint(n, cloudproviderapi.TaintExternalCloudProvider)
				})
				initialized := time.Since(joined)
				mu.Lock()
				doneThen := done
				mu.Unlock()
				assert.LessOrEqual(t, initialized, 10*time.Second, "the new Node is initialized within 10 s")
				assert.Less(t, doneThen, services, "the Node joined while Services were still reconciling")

				// A minute more of reconciling under the push-back, then stop.
				time.Sleep(time.Minute) // simulated time: synctest bubble
				cancel()
				synctest.Wait()
				mu.Lock()
				doneEnd, attemptsEnd := done, attempts
				mu.Unlock()
				assert.Len(t, cloud.LoadBalancerList(), doneEnd, "one load balancer per reconciled Service")

				var reads, writes []time.Time
				for _, c := range cloud.Calls() {
					if !isWrite(c.Op) {
						reads = append(reads, c.At)
					}
				}
				writes, rejected := throttled.writeArrivals()
				maxReads, maxWrites := maxWindow(reads), maxWindow(writes)
				assert.LessOrEqual(t, maxReads, budget.ReadBurst+int(budget.ReadQPS), "reads in any one-second window")
				assert.LessOrEqual(t, maxWrites, budget.WriteBurst+int(budget.WriteQPS), "writes in any one-second window")
				_, err = h.Client.CoreV1().Nodes().Get(t.Context(), "node-late", metav1.GetOptions{})
				require.NoError(t, err)
				t.Logf("%s: node initialized in %s with %d/%d Services reconciled; %d reconciled after %s, %d Ensure calls; cloud calls %v; writes rejected by the cloud %d; worst one-second window: %d reads (budget %d+%v), %d writes (budget %d+%v)",
					tc.name, initialized, doneThen, services, doneEnd, time.Since(joined)+5*time.Second, attemptsEnd, callsByOp(cloud.Calls()), rejected,
					maxReads, budget.ReadBurst, budget.ReadQPS, maxWrites, budget.WriteBurst, budget.WriteQPS)
			})
		})
	}
}
