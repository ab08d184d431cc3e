package lb_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

const cluster = "prod"

type fixture struct {
	clock  *clocktesting.FakeClock
	cloud  *fakecloud.Cloud
	events *record.FakeRecorder
	r      *lb.Reconciler
}

func newFixture(t *testing.T, cloudOpts fakecloud.Options, opts lb.Options) *fixture {
	t.Helper()
	f := &fixture{clock: clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), events: record.NewFakeRecorder(100)}
	cloudOpts.Clock = f.clock
	f.cloud = fakecloud.New(cloudOpts)
	f.r = f.restart(t, opts)
	return f
}

// restart returns a new Reconciler over the same cloud: a manager restart.
func (f *fixture) restart(t *testing.T, opts lb.Options) *lb.Reconciler {
	t.Helper()
	opts.Clock = f.clock
	if opts.Recorder == nil {
		opts.Recorder = f.events
	}
	r, err := lb.NewReconciler(f.cloud.LoadBalancers(), opts)
	require.NoError(t, err)
	return r
}

func (f *fixture) writes() int {
	n := 0
	for _, c := range f.cloud.Calls() {
		switch c.Op {
		case fakecloud.OpCreateLoadBalancer, fakecloud.OpUpdateLoadBalancer, fakecloud.OpUpdateLoadBalancerTargets, fakecloud.OpDeleteLoadBalancer:
			n++
		}
	}
	return n
}

func (f *fixture) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func lbService(name string, uid types.UID) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: uid},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeLoadBalancer,
			IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
			Ports:      []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30080}},
		},
	}
}

func node(name string) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.NodeSpec{ProviderID: "fake://" + name},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0." + name[len(name)-1:]}}},
	}
}

func retryAfter(t *testing.T, err error) time.Duration {
	t.Helper()
	var re *api.RetryError
	require.True(t, errors.As(err, &re), "want an *api.RetryError, got %v", err)
	return re.RetryAfter()
}

func TestEnsureCreatesPollsAndThenWritesNothing(t *testing.T) {
	f := newFixture(t, fakecloud.Options{LBProvisionPolls: 2, LBIPMode: v1.LoadBalancerIPModeProxy}, lb.Options{PollInterval: 3 * time.Second})
	ctx := context.Background()
	svc := lbService("web", "uid-1")
	nodes := []*v1.Node{node("n1"), node("n2")}

	_, err := f.r.EnsureLoadBalancer(ctx, cluster, svc, nodes)
	assert.Equal(t, 3*time.Second, retryAfter(t, err), "a pending create polls after PollInterval")
	assert.Contains(t, err.Error(), "still being provisioned")
	var st *v1.LoadBalancerStatus
	polls := 0
	for ; polls < 5; polls++ {
		if st, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, nodes); !isRetry(err) {
			break
		}
	}
	require.NoError(t, err)
	assert.Equal(t, 2, polls, "the cloud provisions for two polls")
	assert.Equal(t, 1, f.writes(), "polling a pending load balancer writes nothing")
	require.Len(t, st.Ingress, 1)
	assert.Equal(t, "203.0.113.1", st.Ingress[0].IP)
	require.NotNil(t, st.Ingress[0].IPMode)
	assert.Equal(t, v1.LoadBalancerIPModeProxy, *st.Ingress[0].IPMode, "ipMode is the backend's")

	f.cloud.ResetCalls()
	again, err := f.r.EnsureLoadBalancer(ctx, cluster, svc, nodes)
	require.NoError(t, err)
	assert.Equal(t, st, again, "an unchanged load balancer gives the same status")
	assert.Equal(t, 0, f.writes(), "an unchanged re-ensure makes no cloud write")
	assert.Equal(t, 1, f.cloud.TotalCalls(), "just one find")

	got, ok := f.cloud.LoadBalancer(lb.Name(svc.UID))
	require.True(t, ok)
	assert.Equal(t, lb.Key{Cluster: cluster, UID: svc.UID}, got.Spec.Key, "the ownership key is stored at creation")
	assert.Len(t, got.Spec.Targets, 2)
}

func TestEnsureAppliesChangesAndCreateOnlyIsRefused(t *testing.T) {
	schema := lb.MustSchema(
		lb.Annotation{Name: "example.com/size", Type: lb.Enum("small", "large"), Default: "small", CreateOnly: true},
		lb.Annotation{Name: "example.com/timeout", Type: lb.Duration(time.Second, time.Hour), Default: "60s"},
	)
	f := newFixture(t, fakecloud.Options{}, lb.Options{Annotations: schema})
	ctx := context.Background()
	svc := lbService("web", "uid-1")
	_, err := f.r.EnsureLoadBalancer(ctx, cluster, svc, nil)
	require.NoError(t, err)

	svc.Annotations = map[string]string{"example.com/timeout": "5m"}
	_, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, nil)
	require.NoError(t, err)
	got, _ := f.cloud.LoadBalancer(lb.Name(svc.UID))
	assert.Equal(t, "5m0s", got.Spec.Options["example.com/timeout"], "a mutable annotation change updates the load balancer")
	assert.Equal(t, 2, f.writes())

	svc.Annotations["example.com/size"] = "large"
	_, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, nil)
	var co *lb.CreateOnlyError
	require.ErrorAs(t, err, &co)
	assert.Equal(t, "example.com/size", co.Name)
	assert.Equal(t, 2, f.writes(), "a create-only change writes nothing")
	assert.True(t, hasEvent(f.drainEvents(), "InvalidAnnotation", "example.com/size"))
}

func hasEvent(events []string, reason, text string) bool {
	for _, e := range events {
		if strings.Contains(e, " "+reason+" ") && strings.Contains(e, text) {
			return true
		}
	}
	return false
}

func TestBadAnnotationIsAnEventAndNoCloudCall(t *testing.T) {
	f := newFixture(t, fakecloud.Options{}, lb.Options{})
	svc := lbService("web", "uid-1")
	svc.Annotations = map[string]string{lb.AnnotationSourceRanges: "10.0.0.1/8"}
	_, err := f.r.EnsureLoadBalancer(context.Background(), cluster, svc, nil)
	require.ErrorIs(t, err, lb.ErrInvalidAnnotation)
	assert.False(t, isRetry(err), "a bad annotation backs off; it is not polled")
	assert.Equal(t, 0, f.cloud.TotalCalls(), "no cloud call for a bad annotation")
	assert.True(t, hasEvent(f.drainEvents(), "InvalidAnnotation", lb.AnnotationSourceRanges), "a Warning Event names the annotation")
	require.Error(t, f.r.UpdateLoadBalancer(context.Background(), cluster, svc, nil))
	assert.Equal(t, 0, f.cloud.TotalCalls(), "nor on Update")

	// Get and Delete work whatever the annotations say.
	_, exists, err := f.r.GetLoadBalancer(context.Background(), cluster, svc)
	require.NoError(t, err)
	assert.False(t, exists)
	require.NoError(t, f.r.EnsureLoadBalancerDeleted(context.Background(), cluster, svc))
}

func isRetry(err error) bool {
	var re *api.RetryError
	return errors.As(err, &re)
}

// lostCreate returns a fixture whose cloud (reads lagging 10 s, and the
// Reconciler told so) created the Service's load balancer in an
// EnsureLoadBalancer that failed: the create's answer was lost.
func lostCreate(t *testing.T) (*fixture, *v1.Service) {
	t.Helper()
	f := newFixture(t, fakecloud.Options{ReadLag: 10 * time.Second}, lb.Options{ReadLag: 10 * time.Second})
	svc := lbService("web", "uid-1")
	f.cloud.Inject(fakecloud.OpCreateLoadBalancer, fakecloud.Fault{Err: cloudcall.Transient(errors.New("connection reset")), After: true, Times: 1})
	_, err := f.r.EnsureLoadBalancer(context.Background(), cluster, svc, nil)
	require.Error(t, err)
	return f, svc
}

// TestCrashAfterCreateWithReadLagMakesOneLB: the cloud creates the load
// balancer and the answer is lost; its reads lag. A retry, and a restarted
// manager with no memory, still end with one load balancer.
func TestCrashAfterCreateWithReadLagMakesOneLB(t *testing.T) {
	f, svc := lostCreate(t)
	ctx := context.Background()
	// Within the read lag the Reconciler does not trust "not found".
	_, err := f.r.EnsureLoadBalancer(ctx, cluster, svc, nil)
	retryAfter(t, err)
	_, _, err = f.r.GetLoadBalancer(ctx, cluster, svc)
	require.Error(t, err, "Get cannot confirm absence within the read lag")

	// A restarted manager does not know it wrote: the name collision adopts.
	fresh := f.restart(t, lb.Options{ReadLag: 10 * time.Second})
	_, err = fresh.EnsureLoadBalancer(ctx, cluster, svc, nil)
	require.NoError(t, err)
	assert.Len(t, f.cloud.LoadBalancerList(), 1, "one load balancer for one Service")
	assert.Equal(t, 2, f.cloud.Count(fakecloud.OpCreateLoadBalancer), "the second create found the first by name")
}

// TestDeleteAfterACrashWithReadLag: the manager crashes after the cloud
// created the load balancer (the answer lost) and the Service is deleted
// before the restarted manager's reads show it. The restarted Reconciler
// has no memory of the write; within ReadLag of its start it does not
// report the load balancer gone (which would drop the finalizer and leak
// it), and once reads catch up it deletes it.
func TestDeleteAfterACrashWithReadLag(t *testing.T) {
	f, svc := lostCreate(t)
	ctx := context.Background()
	require.Len(t, f.cloud.LoadBalancerList(), 1, "the cloud made it")

	f.clock.Step(2 * time.Second)
	fresh := f.restart(t, lb.Options{ReadLag: 10 * time.Second})
	_, exists, err := fresh.GetLoadBalancer(ctx, cluster, svc)
	require.ErrorContains(t, err, "a previous manager may have written it", "Get cannot confirm absence within the read lag of the start")
	assert.False(t, exists)
	err = fresh.EnsureLoadBalancerDeleted(ctx, cluster, svc)
	require.ErrorContains(t, err, "cannot confirm that the load balancer is gone", "the finalizer stays")
	assert.False(t, isRetry(err), "a plain error: upstream drops a RetryError on the deletion path")
	assert.Len(t, f.cloud.LoadBalancerList(), 1)

	f.clock.Step(10 * time.Second) // reads catch up; the lag since the start is over
	err = fresh.EnsureLoadBalancerDeleted(ctx, cluster, svc)
	require.ErrorContains(t, err, "being deleted", "deleted; lagging reads still show it")
	assert.Empty(t, f.cloud.LoadBalancerList(), "the load balancer is deleted, not leaked")
	f.clock.Step(10 * time.Second)
	require.NoError(t, fresh.EnsureLoadBalancerDeleted(ctx, cluster, svc), "confirmed gone")

	// A Service that never had a load balancer is confirmed gone once the
	// start is ReadLag behind.
	require.NoError(t, fresh.EnsureLoadBalancerDeleted(ctx, cluster, lbService("other", "uid-2")))
}

// TestWritesWithinTheReadLagAreNotUndone: a write and, within the cloud's
// read lag, a second call whose Find still shows the load balancer as it
// was before the write. Comparing with that stale view would skip the
// second write (the desired spec equals the old one), and the first one's
// targets would stay for good (found by the chaos test: a deleted Node
// stayed a target).
func TestWritesWithinTheReadLagAreNotUndone(t *testing.T) {
	f := newFixture(t, fakecloud.Options{ReadLag: 10 * time.Second}, lb.Options{ReadLag: 10 * time.Second})
	ctx := context.Background()
	svc := lbService("web", "uid-1")
	two := []*v1.Node{node("n1"), node("n2")}
	three := append(slices.Clone(two), node("n3"))
	targets := func() int {
		got, ok := f.cloud.LoadBalancer(lb.Name(svc.UID))
		require.True(t, ok)
		return len(got.Spec.Targets)
	}
	_, err := f.r.EnsureLoadBalancer(ctx, cluster, svc, two)
	require.NoError(t, err)
	f.clock.Step(20 * time.Second)

	// Ensure adds n3; Update, within the lag, removes it again.
	_, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, three)
	require.NoError(t, err)
	require.Equal(t, 3, targets())
	require.NoError(t, f.r.UpdateLoadBalancer(ctx, cluster, svc, two))
	assert.Equal(t, 2, targets(), "Update compares with what the Ensure wrote, not with the lagging read")
	f.clock.Step(20 * time.Second)

	// Update adds n3; Ensure, within the lag, removes it again.
	require.NoError(t, f.r.UpdateLoadBalancer(ctx, cluster, svc, three))
	require.Equal(t, 3, targets())
	_, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, two)
	require.NoError(t, err)
	assert.Equal(t, 2, targets(), "Ensure compares with what the Update wrote, not with the lagging read")

	// And an unchanged call within the lag still writes nothing.
	f.cloud.ResetCalls()
	_, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, two)
	require.NoError(t, err)
	require.NoError(t, f.r.UpdateLoadBalancer(ctx, cluster, svc, two))
	assert.Equal(t, 0, f.writes(), "what the last write left is what is wanted: no write")
}

func TestForeignNameAndChangedClusterName(t *testing.T) {
	f := newFixture(t, fakecloud.Options{}, lb.Options{})
	ctx := context.Background()
	svc := lbService("web", "uid-1")
	_, err := f.r.EnsureLoadBalancer(ctx, "old-name", svc, nil)
	require.NoError(t, err)

	_, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, nil)
	require.ErrorContains(t, err, "was --cluster-name changed?")
	assert.True(t, hasEvent(f.drainEvents(), "ClusterNameChanged", `"old-name"`))
	assert.Len(t, f.cloud.LoadBalancerList(), 1, "never a second load balancer")

	other := lbService("other", "uid-2")
	require.NoError(t, f.cloud.AddLoadBalancer(lb.LoadBalancer{ID: "lb-foreign", Spec: lb.Spec{Name: lb.Name(other.UID), Key: lb.Key{Cluster: "someone-else", UID: "uid-9"}}}))
	_, err = f.r.EnsureLoadBalancer(ctx, cluster, other, nil)
	require.ErrorContains(t, err, "someone-else")
	assert.True(t, hasEvent(f.drainEvents(), "LoadBalancerNameInUse", lb.Name(other.UID)))
	// And deleting the Service leaves the foreign load balancer alone.
	require.NoError(t, f.r.EnsureLoadBalancerDeleted(ctx, cluster, other))
	_, ok := f.cloud.LoadBalancer(lb.Name(other.UID))
	assert.True(t, ok, "a load balancer this cluster does not own is never deleted")
}

func TestThrottlingBecomesRetryAfter(t *testing.T) {
	f := newFixture(t, fakecloud.Options{}, lb.Options{})
	f.cloud.Inject(fakecloud.OpFindLoadBalancer, fakecloud.Fault{RetryAfter: 7 * time.Second, Times: 1})
	_, err := f.r.EnsureLoadBalancer(context.Background(), cluster, lbService("web", "uid-1"), nil)
	assert.Equal(t, 7*time.Second, retryAfter(t, err))
	assert.Contains(t, err.Error(), "throttling")
}

// elsewhere says every load balancer is handled by another component.
type elsewhere struct{ *fakecloud.LBBackend }

func (elsewhere) Find(context.Context, lb.Key) (*lb.LoadBalancer, error) {
	return nil, fmt.Errorf("wrapped: %w", cloudprovider.ImplementedElsewhere)
}

func TestImplementedElsewhereIsUnwrapped(t *testing.T) {
	r, err := lb.NewReconciler(elsewhere{fakecloud.New(fakecloud.Options{}).LoadBalancers()}, lb.Options{})
	require.NoError(t, err)
	ctx, svc := context.Background(), lbService("web", "uid-1")
	_, err = r.EnsureLoadBalancer(ctx, cluster, svc, nil)
	assert.True(t, err == cloudprovider.ImplementedElsewhere, "Ensure: %v", err)
	assert.True(t, r.UpdateLoadBalancer(ctx, cluster, svc, nil) == cloudprovider.ImplementedElsewhere)
	assert.True(t, r.EnsureLoadBalancerDeleted(ctx, cluster, svc) == cloudprovider.ImplementedElsewhere)
	_, _, err = r.GetLoadBalancer(ctx, cluster, svc)
	assert.Error(t, err)
	assert.NotErrorIs(t, err, cloudprovider.ImplementedElsewhere, "never from Get")
}

func TestUpdateChangesTargetsOnly(t *testing.T) {
	f := newFixture(t, fakecloud.Options{}, lb.Options{})
	ctx, svc := context.Background(), lbService("web", "uid-1")
	_, err := f.r.EnsureLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n1")})
	require.NoError(t, err)
	f.cloud.ResetCalls()

	require.NoError(t, f.r.UpdateLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n1")}))
	assert.Equal(t, 0, f.writes(), "unchanged targets: no write")
	require.NoError(t, f.r.UpdateLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n1"), node("n2"), {ObjectMeta: metav1.ObjectMeta{Name: "uninitialized"}}}))
	assert.Equal(t, 1, f.cloud.Count(fakecloud.OpUpdateLoadBalancerTargets), "one host update")
	assert.Equal(t, 0, f.cloud.Count(fakecloud.OpUpdateLoadBalancer), "no full update")
	got, _ := f.cloud.LoadBalancer(lb.Name(svc.UID))
	assert.Len(t, got.Spec.Targets, 2, "nodes without a providerID are skipped")

	// While the cloud provisions, Update writes nothing; it fails when the
	// targets differ, because upstream calls it again only when the Nodes
	// change: the failure makes the service controller run a full sync,
	// whose Ensure sets them once the load balancer is ready.
	f.cloud.SetLBProvisioning(5, 0)
	require.NoError(t, f.r.UpdateLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n3")}))
	_, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n3")})
	retryAfter(t, err)
	f.cloud.ResetCalls()
	require.NoError(t, f.r.UpdateLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n3")}), "unchanged targets")
	err = f.r.UpdateLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n4")})
	require.ErrorContains(t, err, "still provisioning")
	assert.False(t, isRetry(err), "plain: upstream ignores RetryError here")
	assert.Equal(t, 0, f.writes(), "no write on a provisioning load balancer")
	for range 20 {
		if _, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n4")}); err == nil {
			break
		}
		retryAfter(t, err)
	}
	require.NoError(t, err, "the escalated Ensure polls, then sets the targets")
	got, _ = f.cloud.LoadBalancer(lb.Name(svc.UID))
	assert.Equal(t, []lb.Target{{ProviderID: "fake://n4", NodeName: "n4", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.4")}}}, got.Spec.Targets)
	f.cloud.SetLBProvisioning(0, 0)

	// Errors are plain: upstream ignores RetryError on this path.
	f.cloud.Inject(fakecloud.OpFindLoadBalancer, fakecloud.Fault{RetryAfter: time.Second, Times: 1})
	err = f.r.UpdateLoadBalancer(ctx, cluster, svc, nil)
	require.Error(t, err)
	assert.False(t, isRetry(err))
}

func TestDeleteIsIdempotentAndConfirmed(t *testing.T) {
	f := newFixture(t, fakecloud.Options{LBDeleteTime: 20 * time.Second}, lb.Options{})
	ctx, svc := context.Background(), lbService("web", "uid-1")
	_, err := f.r.EnsureLoadBalancer(ctx, cluster, svc, nil)
	require.NoError(t, err)

	err = f.r.EnsureLoadBalancerDeleted(ctx, cluster, svc)
	require.ErrorContains(t, err, "being deleted")
	assert.False(t, isRetry(err), "a pending deletion is a plain error (the finalizer path loses RetryErrors)")
	_, exists, err := f.r.GetLoadBalancer(ctx, cluster, svc)
	require.NoError(t, err)
	assert.True(t, exists, "Get reports it until it is really gone")
	err = f.r.EnsureLoadBalancerDeleted(ctx, cluster, svc)
	require.Error(t, err)
	assert.Equal(t, 1, f.cloud.Count(fakecloud.OpDeleteLoadBalancer), "one delete call")

	f.clock.Step(21 * time.Second)
	require.NoError(t, f.r.EnsureLoadBalancerDeleted(ctx, cluster, svc))
	require.NoError(t, f.r.EnsureLoadBalancerDeleted(ctx, cluster, svc), "idempotent")
	_, exists, err = f.r.GetLoadBalancer(ctx, cluster, svc)
	require.NoError(t, err)
	assert.False(t, exists)
}

func TestLegacyLoadBalancerIsAdoptedOnce(t *testing.T) {
	f := newFixture(t, fakecloud.Options{}, lb.Options{})
	ctx, svc := context.Background(), lbService("web", "0b9c6a2e-5f1d-4c1e-9f3a-7d2b8e4c6a10")
	legacy := cloudprovider.DefaultLoadBalancerName(svc)
	require.NoError(t, f.cloud.AddLoadBalancer(lb.LoadBalancer{ID: "lb-old", Spec: lb.Spec{Name: legacy, IPFamilies: []v1.IPFamily{v1.IPv4Protocol}}}))

	_, exists, err := f.r.GetLoadBalancer(ctx, cluster, svc)
	require.NoError(t, err)
	assert.True(t, exists, "the previous CCM's load balancer counts as the Service's")

	st, err := f.r.EnsureLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n1")})
	require.NoError(t, err)
	require.Len(t, st.Ingress, 1)
	assert.Equal(t, 0, f.cloud.Count(fakecloud.OpCreateLoadBalancer), "adopted, not created")
	got, _ := f.cloud.LoadBalancer(legacy)
	assert.Equal(t, lb.Key{Cluster: cluster, UID: svc.UID}, got.Spec.Key, "adoption writes the ownership key")
	assert.Len(t, f.cloud.LoadBalancerList(), 1)
	assert.True(t, hasEvent(f.drainEvents(), "AdoptedLoadBalancer", legacy))

	f.cloud.ResetCalls()
	_, err = f.r.EnsureLoadBalancer(ctx, cluster, svc, []*v1.Node{node("n1")})
	require.NoError(t, err)
	assert.Equal(t, 0, f.writes(), "adopted once")
	assert.Equal(t, 0, f.cloud.Count(fakecloud.OpFindLegacyLoadBalancer), "found by key from now on")
}

func TestStatusOrderFollowsIPFamilies(t *testing.T) {
	f := newFixture(t, fakecloud.Options{}, lb.Options{})
	svc := lbService("web", "uid-1")
	svc.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol}
	svc.Spec.IPFamilyPolicy = ptrTo(v1.IPFamilyPolicyRequireDualStack)
	st, err := f.r.EnsureLoadBalancer(context.Background(), cluster, svc, nil)
	require.NoError(t, err)
	require.Len(t, st.Ingress, 2)
	assert.True(t, netip.MustParseAddr(st.Ingress[0].IP).Is6(), "IPv6 first, as spec.ipFamilies says: %v", st.Ingress)
	for _, in := range st.Ingress {
		require.NotNil(t, in.IPMode)
		assert.Equal(t, v1.LoadBalancerIPModeVIP, *in.IPMode)
	}
}

func ptrTo[T any](v T) *T { return &v }

// Calls for one Service are serialized; a call waiting for another one's
// turn ends with its context, and waits durably: inside a testing/synctest
// bubble the clock keeps running while it waits (a sync.Mutex stopped it, so
// a waiter and a holder waiting on the clock hung the bubble for good).
func TestCallsForOneServiceWaitWithTheirContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		cloud.SetLatency(fakecloud.OpFindLoadBalancer, 20*time.Second)
		r, err := lb.NewReconciler(cloud.LoadBalancers(), lb.Options{Recorder: record.NewFakeRecorder(100)})
		require.NoError(t, err)
		svc := lbService("web", "uid-web")
		nodes := []*v1.Node{node("node-1")}
		done := make(chan error, 1)
		go func() {
			_, err := r.EnsureLoadBalancer(t.Context(), cluster, svc, nodes) // holds the Service's turn for 20s
			done <- err
		}()
		synctest.Wait()

		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		err = r.UpdateLoadBalancer(ctx, cluster, svc, nodes)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 5*time.Second, time.Since(start), "gave up with its context")
		select {
		case err := <-done:
			t.Fatalf("the holder returned early: %v", err)
		default:
		}

		// The holder finishes; the next caller gets its turn.
		require.NoError(t, <-done)
		_, _, err = r.GetLoadBalancer(t.Context(), cluster, svc)
		require.NoError(t, err)
	})
}
