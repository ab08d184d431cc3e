package conformance_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/conformance"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

const lbCluster = "conformance-test"

var foreignKey = lb.Key{Cluster: "another-cluster", UID: "0b5c3a7e-1111-4222-8333-444455556666"}

// armedLBs is the fake cloud's backend with an SDK-like hook: FailNext fails
// the next call, whichever operation it is.
type armedLBs struct {
	*fakecloud.LBBackend
	cloud *fakecloud.Cloud

	mu   sync.Mutex
	next *fakecloud.Fault
}

func (a *armedLBs) arm(op fakecloud.Op) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next != nil {
		a.cloud.Inject(op, *a.next)
		a.next = nil
	}
}

func (a *armedLBs) failNext(f conformance.SDKFailure) {
	cause := fmt.Errorf("HTTP %d", f.StatusCode)
	fault := fakecloud.Fault{Times: 1}
	switch {
	case f.StatusCode == 404:
		fault.Err = cloudcall.NotFound(cause)
	case f.RetryAfter > 0 && (f.StatusCode == 429 || f.StatusCode >= 500):
		fault.Err, fault.RetryAfter = cause, f.RetryAfter
	case f.StatusCode == 429:
		fault.Err = cloudcall.Throttled(0, cause)
	case f.StatusCode >= 500:
		fault.Err = cloudcall.Transient(cause)
	default:
		fault.Err = cloudcall.Permanent(cause)
	}
	a.mu.Lock()
	a.next = &fault
	a.mu.Unlock()
}

func (a *armedLBs) Find(ctx context.Context, key lb.Key) (*lb.LoadBalancer, error) {
	a.arm(fakecloud.OpFindLoadBalancer)
	return a.LBBackend.Find(ctx, key)
}

func (a *armedLBs) Create(ctx context.Context, spec *lb.Spec) (*lb.LoadBalancer, error) {
	a.arm(fakecloud.OpCreateLoadBalancer)
	return a.LBBackend.Create(ctx, spec)
}

func (a *armedLBs) Update(ctx context.Context, cur *lb.LoadBalancer, spec *lb.Spec) (*lb.LoadBalancer, error) {
	a.arm(fakecloud.OpUpdateLoadBalancer)
	return a.LBBackend.Update(ctx, cur, spec)
}

func (a *armedLBs) UpdateTargets(ctx context.Context, cur *lb.LoadBalancer, targets []lb.Target) (*lb.LoadBalancer, error) {
	a.arm(fakecloud.OpUpdateLoadBalancerTargets)
	return a.LBBackend.UpdateTargets(ctx, cur, targets)
}

func (a *armedLBs) Delete(ctx context.Context, cur *lb.LoadBalancer) error {
	a.arm(fakecloud.OpDeleteLoadBalancer)
	return a.LBBackend.Delete(ctx, cur)
}

func (a *armedLBs) List(ctx context.Context, cluster string) ([]*lb.LoadBalancer, error) {
	a.arm(fakecloud.OpListLoadBalancers)
	return a.LBBackend.List(ctx, cluster)
}

// lbFixture returns a fixture over a fake cloud with opts, holding a
// foreign load balancer. With a fake clock, Settle steps it by a second.
func lbFixture(t *testing.T, opts fakecloud.Options) (conformance.LoadBalancersFixture, *fakecloud.Cloud) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	opts.Clock = clk
	cloud := fakecloud.New(opts)
	foreign := lb.LoadBalancer{Spec: lb.Spec{Name: lb.Name(foreignKey.UID), Key: foreignKey}, Status: lb.StatusActive}
	require.NoError(t, cloud.AddLoadBalancer(foreign))
	clk.Step(opts.ReadLag) // the foreign load balancer is visible to reads
	armed := &armedLBs{LBBackend: cloud.LoadBalancers(), cloud: cloud}
	return conformance.LoadBalancersFixture{
		Backend:    armed,
		Cluster:    lbCluster,
		ForeignKey: foreignKey,
		Settle: func(context.Context) error {
			clk.Step(time.Second)
			return nil
		},
		FailNext: armed.failNext,
	}, cloud
}

func TestFakeCloudLoadBalancers(t *testing.T) {
	t.Run("synchronous", func(t *testing.T) {
		conformance.RunLoadBalancers(t, func(t *testing.T) conformance.LoadBalancersFixture {
			f, cloud := lbFixture(t, fakecloud.Options{})
			t.Cleanup(func() {
				// The suite deletes what it made; the foreign one stays.
				require.Len(t, cloud.LoadBalancerList(), 1)
			})
			return f
		})
	})
	t.Run("asynchronous-lagging", func(t *testing.T) {
		conformance.RunLoadBalancers(t, func(t *testing.T) conformance.LoadBalancersFixture {
			f, _ := lbFixture(t, fakecloud.Options{
				ReadLag:          2 * time.Second,
				LBProvisionPolls: 2,
				LBProvisionTime:  3 * time.Second,
				LBDeleteTime:     2 * time.Second,
			})
			return f
		})
	})
	t.Run("hostnames", func(t *testing.T) {
		// An AWS-style cloud: ingress is a DNS name, no address.
		conformance.RunLoadBalancers(t, func(t *testing.T) conformance.LoadBalancersFixture {
			f, _ := lbFixture(t, fakecloud.Options{LBHostnameSuffix: "elb.fake.example", LBProvisionPolls: 1})
			return f
		})
	})
	t.Run("backend-only", func(t *testing.T) {
		// Without the optional capabilities, the foreign load balancer or
		// the hook, their cases are skipped and the rest pass.
		conformance.RunLoadBalancers(t, func(t *testing.T) conformance.LoadBalancersFixture {
			f, _ := lbFixture(t, fakecloud.Options{LBProvisionPolls: 1})
			f.Backend = struct{ lb.Backend }{f.Backend}
			f.ForeignKey, f.FailNext, f.Settle = lb.Key{}, nil, nil
			return f
		})
	})
}

// brokenLBs overrides some of the fake backend's methods.
type brokenLBs struct {
	*armedLBs
	find   func(ctx context.Context, key lb.Key) (*lb.LoadBalancer, error)
	create func(ctx context.Context, spec *lb.Spec) (*lb.LoadBalancer, error)
}

func (b *brokenLBs) Find(ctx context.Context, key lb.Key) (*lb.LoadBalancer, error) {
	if b.find != nil {
		return b.find(ctx, key)
	}
	return b.armedLBs.Find(ctx, key)
}

func (b *brokenLBs) Create(ctx context.Context, spec *lb.Spec) (*lb.LoadBalancer, error) {
	if b.create != nil {
		return b.create(ctx, spec)
	}
	return b.armedLBs.Create(ctx, spec)
}

func brokenFixture(t *testing.T, opts fakecloud.Options, override func(good *armedLBs, b *brokenLBs)) conformance.LoadBalancersFixture {
	t.Helper()
	f, _ := lbFixture(t, opts)
	good := f.Backend.(*armedLBs)
	b := &brokenLBs{armedLBs: good}
	override(good, b)
	f.Backend = b
	return f
}

// A backend that answers (nil, nil) for a missing load balancer breaks the
// contract; the suite says so.
func TestLoadBalancersReportsNilNilFind(t *testing.T) {
	f := brokenFixture(t, fakecloud.Options{}, func(good *armedLBs, b *brokenLBs) {
		b.find = func(ctx context.Context, key lb.Key) (*lb.LoadBalancer, error) {
			got, err := good.Find(ctx, key)
			if errors.Is(err, cloudcall.ErrNotFound) {
				return nil, nil
			}
			return got, err
		}
	})
	err := conformance.TestLoadBalancers(t.Context(), f)
	require.ErrorContains(t, err, "find-missing")
	require.ErrorContains(t, err, "delete-idempotent")
	require.ErrorContains(t, err, "(nil, nil)")
	require.NotContains(t, err.Error(), "create-then-find")
}

// A backend that creates a second load balancer when the name is taken
// (as one that looks up by a lagging read before creating would) is
// reported by the idempotency cases.
func TestLoadBalancersReportsSecondCreate(t *testing.T) {
	f := brokenFixture(t, fakecloud.Options{}, func(good *armedLBs, b *brokenLBs) {
		b.create = func(ctx context.Context, spec *lb.Spec) (*lb.LoadBalancer, error) {
			got, err := good.Create(ctx, spec)
			if errors.Is(err, lb.ErrExists) {
				again := spec.Clone()
				again.Name += "-2"
				return good.Create(ctx, again)
			}
			return got, err
		}
	})
	err := conformance.TestLoadBalancers(t.Context(), f)
	require.ErrorContains(t, err, "create-idempotent")
	require.ErrorContains(t, err, "concurrent-create-once")
	require.ErrorContains(t, err, "foreign-name-exists")
	require.ErrorContains(t, err, "want 1")
	require.NotContains(t, err.Error(), "create-then-find")
}

// A backend whose Find ignores the cluster, one that drops the options, and
// one that passes its SDK's throttling through unclassified are reported
// case by case.
func TestLoadBalancersReportsOwnershipOptionsAndClassification(t *testing.T) {
	f := brokenFixture(t, fakecloud.Options{}, func(good *armedLBs, b *brokenLBs) {
		b.find = func(ctx context.Context, key lb.Key) (*lb.LoadBalancer, error) {
			got, err := good.Find(ctx, key)
			if errors.Is(err, cloudcall.ErrNotFound) {
				for _, l := range good.cloud.LoadBalancerList() {
					if l.Spec.Key.UID == key.UID {
						return l, nil
					}
				}
			}
			var te *cloudcall.ThrottledError
			if errors.As(err, &te) {
				return nil, errors.New("unclassified: " + err.Error())
			}
			if got != nil {
				got.Spec.Options = nil
			}
			return got, err
		}
	})
	err := conformance.TestLoadBalancers(t.Context(), f)
	require.ErrorContains(t, err, "ownership")
	require.ErrorContains(t, err, "create-then-find")
	require.ErrorContains(t, err, "Options")
	require.ErrorContains(t, err, "sdk-429-is-throttled")
	require.ErrorContains(t, err, "sdk-503-with-retry-after-is-throttled")
	require.NotContains(t, err.Error(), "sdk-5xx-is-transient")
	require.NotContains(t, err.Error(), "sdk-400-is-permanent")
	require.NotContains(t, err.Error(), "list-owned-only")

	// Without the hook the classification cases do not run.
	f = brokenFixture(t, fakecloud.Options{}, func(good *armedLBs, b *brokenLBs) {})
	f.FailNext = nil
	require.NoError(t, conformance.TestLoadBalancers(t.Context(), f))
}

// A load balancer that never leaves Pending is reported once the poll limit
// is reached, and so is a fixture that cannot run.
func TestLoadBalancersReportsStuckPending(t *testing.T) {
	f, cloud := lbFixture(t, fakecloud.Options{})
	release := cloud.HoldLoadBalancer("")
	defer release()
	f.PollLimit = 5
	err := conformance.TestLoadBalancers(t.Context(), f)
	require.ErrorContains(t, err, "pending-becomes-active")
	require.ErrorContains(t, err, "not done after 5 polls")
	require.ErrorContains(t, err, "held by the test")

	f.Cluster = ""
	require.ErrorContains(t, conformance.TestLoadBalancers(t.Context(), f), "no Cluster")
	f.Cluster, f.ForeignKey.Cluster = lbCluster, lbCluster
	require.ErrorContains(t, conformance.TestLoadBalancers(t.Context(), f), "ForeignKey")
}

// A backend that reports an Active load balancer without usable ingress
// (none, an entry with neither IP nor hostname, a bad hostname) is reported
// by the ingress case only.
func TestLoadBalancersReportsBadIngress(t *testing.T) {
	for name, ingress := range map[string][]lb.Ingress{
		"has no ingress":                   nil,
		"has neither an IP nor a hostname": {{IPMode: v1.LoadBalancerIPModeVIP}},
		`hostname "LB_1.example"`:          {{Hostname: "LB_1.example"}},
	} {
		t.Run(name, func(t *testing.T) {
			f := brokenFixture(t, fakecloud.Options{}, func(good *armedLBs, b *brokenLBs) {
				b.find = func(ctx context.Context, key lb.Key) (*lb.LoadBalancer, error) {
					got, err := good.Find(ctx, key)
					if got != nil {
						got.Ingress = ingress
					}
					return got, err
				}
			})
			err := conformance.TestLoadBalancers(t.Context(), f)
			require.ErrorContains(t, err, "active-has-ingress")
			require.ErrorContains(t, err, name)
			require.NotContains(t, err.Error(), "create-then-find")
		})
	}
}
