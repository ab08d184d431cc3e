package provider_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
	"github.com/ccmkit/ccmkit/examples/localcloud/provider"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/routes"
	"github.com/ccmkit/ccmkit/testing/conformance"
)

const cluster = "conformance"

// faulty is the cloud's handler behind an SDK-like hook: failNext makes the
// next request answer as the real API does when it fails.
type faulty struct {
	h    http.Handler
	mu   sync.Mutex
	next *conformance.SDKFailure
}

func (f *faulty) failNext(fl conformance.SDKFailure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next = &fl
}

func (f *faulty) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	fl := f.next
	f.next = nil
	f.mu.Unlock()
	if fl == nil {
		f.h.ServeHTTP(w, r)
		return
	}
	if fl.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(fl.RetryAfter/time.Second)))
	}
	code := cloud.CodeInternal
	switch {
	case fl.StatusCode == http.StatusNotFound:
		code = cloud.CodeNotFound
	case fl.StatusCode == http.StatusTooManyRequests:
		code = cloud.CodeThrottled
	case fl.StatusCode < 500:
		code = cloud.CodeInvalid
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(fl.StatusCode)
	fmt.Fprintf(w, `{"code":%q,"message":"injected"}`, code)
}

// localCloud is a local cloud served in-process on loopback, with a fake
// clock for provisioning (Settle steps it) and no data plane: the suites
// check the API contract; the e2e tests check traffic.
type localCloud struct {
	cloud  *cloud.Cloud
	client *cloud.Client
	url    string
	clock  *clocktesting.FakeClock
	faults *faulty
}

func newLocalCloud(t *testing.T, opts cloud.Options) *localCloud {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	opts.Clock = clk
	opts.Token = "token"
	opts.DisableDataPlane = true
	if opts.ProvisionDelay == 0 {
		opts.ProvisionDelay = 3 * time.Second
	}
	c, err := cloud.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &faulty{h: c.Handler()}
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		srv.Close()
		c.Close()
	})
	return &localCloud{cloud: c, client: cloud.NewClient(srv.URL, cloud.ClientOptions{Token: "token"}), url: srv.URL, clock: clk, faults: f}
}

func (lc *localCloud) settle(context.Context) error {
	lc.clock.Step(time.Second)
	return nil
}

func TestInstancesConformance(t *testing.T) {
	conformance.RunInstances(t, func(t *testing.T) conformance.InstancesFixture {
		lc := newLocalCloud(t, cloud.Options{})
		f := conformance.InstancesFixture{
			Source:          &provider.Instances{Client: lc.client},
			MissingID:       "i-404",
			MissingNodeName: "node-404",
			FailNext:        lc.faults.failNext,
		}
		for i, state := range []string{cloud.InstanceRunning, cloud.InstanceStopped, cloud.InstancePending} {
			in := provider.InstanceOf(fmt.Sprintf("i-%d", i+1), fmt.Sprintf("node-%d", i+1), fmt.Sprintf("127.0.1.%d", i+1))
			in.State = state
			in.Labels = map[string]string{"example.com/rack": "r1"}
			in.PodCIDRs = []string{fmt.Sprintf("10.244.%d.0/24", i+1)}
			if err := lc.client.PutInstance(t.Context(), in); err != nil {
				t.Fatal(err)
			}
			got, err := (&provider.Instances{Client: lc.client}).Lookup(t.Context(), instancesKey(in.ID))
			if err != nil {
				t.Fatal(err)
			}
			f.Known = append(f.Known, *got)
		}
		return f
	})
}

func TestLoadBalancersConformance(t *testing.T) {
	foreign := lb.Key{Cluster: "another-cluster", UID: "0b5c3a7e-1111-4222-8333-444455556666"}
	conformance.RunLoadBalancers(t, func(t *testing.T) conformance.LoadBalancersFixture {
		lc := newLocalCloud(t, cloud.Options{})
		backend := &provider.LoadBalancers{Client: lc.client}
		spec := &lb.Spec{
			Name:      lb.Name(foreign.UID),
			Key:       foreign,
			Service:   lb.ServiceRef{Namespace: "other", Name: "svc", UID: foreign.UID},
			Listeners: []lb.Listener{{Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30000}},
		}
		if _, err := backend.Create(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
		return conformance.LoadBalancersFixture{
			Backend:    backend,
			Cluster:    cluster,
			ForeignKey: foreign,
			Settle:     lc.settle,
			FailNext:   lc.faults.failNext,
		}
	})
}

func TestRoutesConformance(t *testing.T) {
	conformance.RunRoutes(t, func(t *testing.T) conformance.RoutesFixture {
		lc := newLocalCloud(t, cloud.Options{MaxRoutes: 64})
		foreign := []*cloud.Route{
			{Name: "hand-made", Destination: "192.168.0.0/16", Target: "gateway"},
			{Name: routes.Name("other", "uid-1", mustPrefix("10.250.0.0/30")), Cluster: "other", Destination: "10.250.0.0/30", Target: "conformance-node-0"},
		}
		f := conformance.RoutesFixture{
			Backend:  &provider.Routes{Client: lc.client},
			Cluster:  cluster,
			Limit:    64,
			FailNext: lc.faults.failNext,
		}
		for _, r := range foreign {
			if err := lc.client.PutRoute(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			f.Foreign = append(f.Foreign, routes.Route{Name: r.Name, TargetNode: types.NodeName(r.Target), Destination: mustPrefix(r.Destination)})
		}
		return f
	})
}

func TestProviderConformance(t *testing.T) {
	conformance.RunProvider(t, func(t *testing.T) conformance.ProviderFixture {
		lc := newLocalCloud(t, cloud.Options{})
		f := conformance.ProviderFixture{ClusterName: cluster, Settle: lc.settle}
		for i := 1; i <= 3; i++ {
			name, ip := fmt.Sprintf("node-%d", i), fmt.Sprintf("127.0.1.%d", i)
			if err := lc.client.PutInstance(t.Context(), provider.InstanceOf(fmt.Sprintf("i-%d", i), name, ip)); err != nil {
				t.Fatal(err)
			}
			f.Nodes = append(f.Nodes, &v1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(fmt.Sprintf("uid-%d", i))},
				Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}}},
			})
		}
		f.MissingNode = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-404", UID: "uid-404"}}
		cfg, err := provider.ParseConfig(fmt.Appendf(nil, `{"endpoint": %q, "token": "token"}`, lc.url))
		if err != nil {
			t.Fatal(err)
		}
		p, err := provider.Build(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		f.Provider = p
		return f
	})
}

func TestBuildChecksTheToken(t *testing.T) {
	lc := newLocalCloud(t, cloud.Options{})
	cfg, err := provider.ParseConfig(fmt.Appendf(nil, `{"endpoint": %q, "token": "wrong"}`, lc.url))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.Build(t.Context(), cfg); err == nil {
		t.Fatal("Build with a wrong token succeeded")
	}
}
