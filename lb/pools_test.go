package lb_test

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

func newPools(t *testing.T) *ipam.LBAllocator {
	t.Helper()
	a, err := ipam.NewLBAllocator(ipam.Pool{Name: "local", Ranges: []ipam.Range{ipam.PrefixRange(netip.MustParsePrefix("127.0.100.0/30"))}})
	require.NoError(t, err)
	return a
}

// startInformers runs a Service informer over objs and hands it to r.
func startInformers(t *testing.T, r *lb.Reconciler, objs ...*v1.Service) informers.SharedInformerFactory {
	t.Helper()
	client := fake.NewClientset()
	for _, s := range objs {
		_, err := client.CoreV1().Services(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	f := informers.NewSharedInformerFactory(client, 0)
	r.SetInformers(f)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); f.Shutdown() })
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return f
}

func TestPoolAddressSurvivesRestart(t *testing.T) {
	f := newFixture(t, fakecloud.Options{}, lb.Options{})
	ctx := context.Background()
	a, b := lbService("a", "uid-a"), lbService("b", "uid-b")

	r1 := f.restart(t, lb.Options{Pools: newPools(t)})
	_, err := r1.EnsureLoadBalancer(ctx, cluster, a, nil)
	retryAfter(t, err) // the Service informer has not synced: no allocation yet
	assert.Equal(t, 0, f.cloud.Count(fakecloud.OpCreateLoadBalancer))
	startInformers(t, r1, a, b)
	st, err := r1.EnsureLoadBalancer(ctx, cluster, a, nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.100.0", st.Ingress[0].IP, "the pool's lowest address, passed to the cloud")

	// Restart with fresh allocator state: a's address comes back from the
	// cloud's list (its status was never written), so b gets another one.
	pools := newPools(t)
	r2 := f.restart(t, lb.Options{Pools: pools})
	startInformers(t, r2, a, b)
	stb, err := r2.EnsureLoadBalancer(ctx, cluster, b, nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.100.1", stb.Ingress[0].IP, "never the same address twice after a restart")
	sta, err := r2.EnsureLoadBalancer(ctx, cluster, a, nil)
	require.NoError(t, err)
	assert.Equal(t, st.Ingress, sta.Ingress, "a keeps its address")

	// Deletion releases the address once the load balancer is gone.
	require.NoError(t, r2.EnsureLoadBalancerDeleted(ctx, cluster, a))
	assert.Empty(t, pools.Addrs(ipam.RefOf(a)))
	c := lbService("c", "uid-c")
	stc, err := r2.EnsureLoadBalancer(ctx, cluster, c, nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.100.0", stc.Ingress[0].IP, "the freed address is reused")
}

func TestReaper(t *testing.T) {
	f := newFixture(t, fakecloud.Options{}, lb.Options{})
	ctx := context.Background()
	live, gone := lbService("live", "uid-live"), lbService("gone", "uid-gone")
	for _, s := range []*v1.Service{live, gone} {
		_, err := f.r.EnsureLoadBalancer(ctx, cluster, s, nil)
		require.NoError(t, err)
	}
	require.NoError(t, f.cloud.AddLoadBalancer(lb.LoadBalancer{ID: "foreign", Spec: lb.Spec{Name: "foreign", Key: lb.Key{Cluster: "other", UID: "uid-x"}}}))
	inf := startInformers(t, f.r, live)

	_, err := f.r.NewReaper(inf, lb.ReaperOptions{ClusterName: lb.DefaultClusterName})
	require.ErrorIs(t, err, lb.ErrInvalidOptions, "upstream's default cluster name is refused")

	dry, err := f.r.NewReaper(inf, lb.ReaperOptions{ClusterName: cluster, GracePeriod: time.Minute, DryRun: true, Recorder: f.events})
	require.NoError(t, err)
	require.NoError(t, dry.Pass(ctx))
	f.clock.Step(2 * time.Minute)
	require.NoError(t, dry.Pass(ctx))
	assert.True(t, hasEvent(f.drainEvents(), "OrphanedLoadBalancerDryRun", lb.Name(gone.UID)))
	assert.Len(t, f.cloud.LoadBalancerList(), 3, "a dry run deletes nothing")

	reaper, err := f.r.NewReaper(inf, lb.ReaperOptions{ClusterName: cluster, GracePeriod: time.Minute, Recorder: f.events})
	require.NoError(t, err)
	require.NoError(t, reaper.Pass(ctx))
	assert.Len(t, f.cloud.LoadBalancerList(), 3, "the grace period starts when the orphan is first seen")
	f.clock.Step(30 * time.Second)
	require.NoError(t, reaper.Pass(ctx))
	assert.Len(t, f.cloud.LoadBalancerList(), 3)
	f.clock.Step(31 * time.Second)
	require.NoError(t, reaper.Pass(ctx))
	var names []string
	for _, l := range f.cloud.LoadBalancerList() {
		names = append(names, l.Spec.Name)
	}
	assert.ElementsMatch(t, []string{lb.Name(live.UID), "foreign"}, names, "only the orphan is deleted; the foreign one is untouched")
	assert.True(t, hasEvent(f.drainEvents(), "DeletedOrphanedLoadBalancer", lb.Name(gone.UID)))
}

// One pool restore at a time: a second caller waits for the first one's
// cloud list, durably (inside a testing/synctest bubble the clock keeps
// running) and only as long as its context lasts.
func TestPoolRestoreWaitsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		cloud.SetLatency(fakecloud.OpListLoadBalancers, 20*time.Second)
		r, err := lb.NewReconciler(cloud.LoadBalancers(), lb.Options{Pools: newPools(t), Recorder: record.NewFakeRecorder(100)})
		require.NoError(t, err)
		a, b := lbService("a", "uid-a"), lbService("b", "uid-b")
		startInformers(t, r, a, b)
		done := make(chan error, 1)
		go func() {
			_, err := r.EnsureLoadBalancer(t.Context(), cluster, a, nil) // restores: lists for 20s
			done <- err
		}()
		synctest.Wait()

		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err = r.EnsureLoadBalancer(ctx, cluster, b, nil)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 5*time.Second, time.Since(start), "gave up with its context")
		require.NoError(t, <-done)
		_, err = r.EnsureLoadBalancer(t.Context(), cluster, b, nil)
		require.NoError(t, err, "the pools are ready")
	})
}
