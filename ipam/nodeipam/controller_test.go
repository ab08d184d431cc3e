package nodeipam_test

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/workqueue"

	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/ipam/nodeipam"
)

var (
	v4Cluster = netip.MustParsePrefix("10.244.0.0/16")
	v6Cluster = netip.MustParsePrefix("fd00:10:244::/56")
	dualStack = nodeipam.Options{ClusterCIDRs: []netip.Prefix{v4Cluster, v6Cluster}, MaskSizeIPv4: 24, MaskSizeIPv6: 64}
)

// running is a Controller started on a fake clientset.
type running struct {
	client *fake.Clientset
	ctrl   *nodeipam.Controller
	stop   func()
}

// startNodeController starts a Controller and its informers on client
// and waits until it is idle. Stop (also run by t.Cleanup) cancels it and
// waits for Run to return.
func startNodeController(t *testing.T, client *fake.Clientset, opts nodeipam.Options) *running {
	t.Helper()
	f := informers.NewSharedInformerFactory(client, 0)
	c, err := nodeipam.New(client, f.Core().V1().Nodes(), opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, c.Run(ctx))
	}()
	f.Start(ctx.Done())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			f.Shutdown()
		})
	}
	t.Cleanup(stop)
	synctest.Wait()
	return &running{client: client, ctrl: c, stop: stop}
}

func node(name string, podCIDRs ...string) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = podCIDRs[0], podCIDRs
	}
	return n
}

func (r *running) create(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		_, err := r.client.CoreV1().Nodes().Create(t.Context(), node(name), metav1.CreateOptions{})
		require.NoError(t, err)
		synctest.Wait() // processed, in creation order
	}
}

func (r *running) delete(t *testing.T, name string) {
	t.Helper()
	require.NoError(t, r.client.CoreV1().Nodes().Delete(t.Context(), name, metav1.DeleteOptions{}))
	synctest.Wait()
}

// podCIDRs returns each Node's spec.podCIDRs, checking that spec.podCIDR
// is the first of them.
func (r *running) podCIDRs(t *testing.T) map[string][]string {
	t.Helper()
	list, err := r.client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	out := map[string][]string{}
	for _, n := range list.Items {
		out[n.Name] = n.Spec.PodCIDRs
		if len(n.Spec.PodCIDRs) > 0 {
			assert.Equal(t, n.Spec.PodCIDRs[0], n.Spec.PodCIDR, "node %s: spec.podCIDR is podCIDRs[0]", n.Name)
		}
	}
	return out
}

// events returns the reasons of the Warning Events about each Node.
func (r *running) events(t *testing.T) map[string][]string {
	t.Helper()
	list, err := r.client.CoreV1().Events(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	out := map[string][]string{}
	for _, e := range list.Items {
		assert.Equal(t, "Node", e.InvolvedObject.Kind)
		assert.Equal(t, v1.EventTypeWarning, e.Type)
		out[e.InvolvedObject.Name] = append(out[e.InvolvedObject.Name], e.Reason)
	}
	return out
}

// waitFor polls cond in simulated time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Minute, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	require.NoError(t, err, "waiting for %s", what)
}

func TestControllerOptionsErrors(t *testing.T) {
	p := netip.MustParsePrefix
	for name, tc := range map[string]struct {
		opts nodeipam.Options
		want string
	}{
		"no cluster CIDR in range mode": {nodeipam.Options{}, "needs a cluster CIDR"},
		"two IPv4 cluster CIDRs":        {nodeipam.Options{ClusterCIDRs: []netip.Prefix{p("10.0.0.0/16"), p("10.1.0.0/16")}}, "at most one per family"},
		"overlapping cluster CIDRs":     {nodeipam.Options{ClusterCIDRs: []netip.Prefix{p("10.0.0.0/8"), p("10.1.0.0/16")}}, "at most one per family"},
		"three cluster CIDRs":           {nodeipam.Options{ClusterCIDRs: []netip.Prefix{v4Cluster, v6Cluster, p("fd00:1::/56")}}, "at most one per family"},
		"host bits":                     {nodeipam.Options{ClusterCIDRs: []netip.Prefix{p("10.0.0.1/16")}}, "host bits"},
		"mask shorter than cluster":     {nodeipam.Options{ClusterCIDRs: []netip.Prefix{v4Cluster}, MaskSizeIPv4: 12}, "shorter than cluster CIDR"},
		"mask longer than address":      {nodeipam.Options{ClusterCIDRs: []netip.Prefix{v6Cluster}, MaskSizeIPv6: 129}, "longer than an IPv6 address"},
		"mask without family":           {nodeipam.Options{ClusterCIDRs: []netip.Prefix{v4Cluster}, MaskSizeIPv6: 64}, "no IPv6 cluster CIDR"},
		"negative mask":                 {nodeipam.Options{ClusterCIDRs: []netip.Prefix{v4Cluster}, MaskSizeIPv4: -1}, "negative"},
		"too many subnets":              {nodeipam.Options{ClusterCIDRs: []netip.Prefix{p("fd00::/8")}}, "limit of 2^48"},
		"two IPv4 service CIDRs":        {nodeipam.Options{ClusterCIDRs: []netip.Prefix{v4Cluster}, ServiceCIDRs: []netip.Prefix{p("10.96.0.0/12"), p("10.200.0.0/16")}}, "service CIDRs"},
		"negative workers":              {nodeipam.Options{ClusterCIDRs: []netip.Prefix{v4Cluster}, Workers: -1}, "Workers"},
		"cloud allocator without func":  {nodeipam.Options{Allocator: nodeipam.CloudAllocator}, "needs CloudCIDRs"},
		"unknown allocator":             {nodeipam.Options{ClusterCIDRs: []netip.Prefix{v4Cluster}, Allocator: "Bogus"}, `unknown Allocator "Bogus"`},
	} {
		t.Run(name, func(t *testing.T) {
			client := fake.NewClientset()
			f := informers.NewSharedInformerFactory(client, 0)
			_, err := nodeipam.New(client, f.Core().V1().Nodes(), tc.opts)
			require.ErrorIs(t, err, ipam.ErrInvalid)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	_, err := nodeipam.New(nil, nil, dualStack)
	require.ErrorIs(t, err, ipam.ErrInvalid)
	assert.ErrorContains(t, err, "nil client")
	assert.ErrorContains(t, err, "nil Node informer")

	client := fake.NewClientset()
	f := informers.NewSharedInformerFactory(client, 0)
	_, err = nodeipam.New(client, f.Core().V1().Nodes(), nodeipam.Options{
		CloudCIDRs: func(context.Context, *v1.Node) ([]netip.Prefix, error) { return nil, nil },
	})
	assert.NoError(t, err, "cloud mode needs no cluster CIDR")
}

func TestControllerAssignsBothFamilies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startNodeController(t, fake.NewClientset(), dualStack)
		r.create(t, "node-1", "node-2", "node-3")
		want := map[string][]string{
			"node-1": {"10.244.0.0/24", "fd00:10:244::/64"},
			"node-2": {"10.244.1.0/24", "fd00:10:244:1::/64"},
			"node-3": {"10.244.2.0/24", "fd00:10:244:2::/64"},
		}
		if diff := cmp.Diff(want, r.podCIDRs(t)); diff != "" {
			t.Errorf("pod CIDRs (-want +got):\n%s", diff)
		}
		assert.Equal(t, []nodeipam.CIDRUsage{
			{ClusterCIDR: v4Cluster, MaskSize: 24, Used: 3, Size: 256},
			{ClusterCIDR: v6Cluster, MaskSize: 64, Used: 3, Size: 256},
		}, r.ctrl.Usage())
		assert.Empty(t, r.events(t))
	})
}

func TestControllerFollowsClusterCIDROrderAndMaskDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startNodeController(t, fake.NewClientset(), nodeipam.Options{
			ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:1::/48"), netip.MustParsePrefix("10.0.0.0/8")},
		})
		r.create(t, "node-1", "node-2")
		want := map[string][]string{
			"node-1": {"fd00:1::/64", "10.0.0.0/24"},
			"node-2": {"fd00:1:0:1::/64", "10.0.1.0/24"},
		}
		if diff := cmp.Diff(want, r.podCIDRs(t)); diff != "" {
			t.Errorf("pod CIDRs (-want +got):\n%s", diff)
		}
	})
}

func TestControllerSkipsServiceRanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startNodeController(t, fake.NewClientset(), nodeipam.Options{
			ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/22"), netip.MustParsePrefix("fd00::/120")},
			MaskSizeIPv6: 122,
			ServiceCIDRs: []netip.Prefix{
				netip.MustParsePrefix("10.0.1.128/25"), // inside the second /24
				netip.MustParsePrefix("fd00::/121"),    // the first two /122
			},
		})
		r.create(t, "node-1", "node-2")
		want := map[string][]string{
			"node-1": {"10.0.0.0/24", "fd00::80/122"},
			"node-2": {"10.0.2.0/24", "fd00::c0/122"},
		}
		if diff := cmp.Diff(want, r.podCIDRs(t)); diff != "" {
			t.Errorf("pod CIDRs (-want +got):\n%s", diff)
		}
	})
}

func TestControllerRestartAllocatesNoCIDRTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fake.NewClientset()
		r := startNodeController(t, client, dualStack)
		r.create(t, "node-1", "node-2")
		r.stop()
		synctest.Wait()

		// While no controller runs, a Node registers with pod CIDRs of its own.
		_, err := client.CoreV1().Nodes().Create(t.Context(), node("node-manual", "10.244.2.0/24", "fd00:10:244:2::/64"), metav1.CreateOptions{})
		require.NoError(t, err)
		r = startNodeController(t, client, dualStack)
		assert.Equal(t, uint64(3), r.ctrl.Usage()[0].Used, "existing Nodes occupied before anything is allocated")
		r.create(t, "node-3", "node-4")
		want := map[string][]string{
			"node-1":      {"10.244.0.0/24", "fd00:10:244::/64"},
			"node-2":      {"10.244.1.0/24", "fd00:10:244:1::/64"},
			"node-manual": {"10.244.2.0/24", "fd00:10:244:2::/64"},
			"node-3":      {"10.244.3.0/24", "fd00:10:244:3::/64"},
			"node-4":      {"10.244.4.0/24", "fd00:10:244:4::/64"},
		}
		if diff := cmp.Diff(want, r.podCIDRs(t)); diff != "" {
			t.Errorf("pod CIDRs (-want +got):\n%s", diff)
		}
		assert.Empty(t, r.events(t))
	})
}

func TestControllerReusesDeletedNodesCIDRs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startNodeController(t, fake.NewClientset(), dualStack)
		r.create(t, "node-1", "node-2")
		r.delete(t, "node-1")
		assert.Equal(t, uint64(1), r.ctrl.Usage()[1].Used)
		r.create(t, "node-3")
		want := map[string][]string{
			"node-2": {"10.244.1.0/24", "fd00:10:244:1::/64"},
			"node-3": {"10.244.0.0/24", "fd00:10:244::/64"},
		}
		if diff := cmp.Diff(want, r.podCIDRs(t)); diff != "" {
			t.Errorf("pod CIDRs (-want +got):\n%s", diff)
		}
	})
}

func TestControllerExhaustedRangeAllocatesNothing(t *testing.T) {
	small := netip.MustParsePrefix("10.244.0.0/24") // room for one /24
	for name, clusters := range map[string][]netip.Prefix{
		"IPv4 first": {small, v6Cluster},
		"IPv6 first": {v6Cluster, small}, // IPv6 is allocated, then released
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := startNodeController(t, fake.NewClientset(), nodeipam.Options{ClusterCIDRs: clusters})
				r.create(t, "node-1", "node-2")
				got := r.podCIDRs(t)
				assert.Len(t, got["node-1"], 2)
				assert.Empty(t, got["node-2"], "no partial allocation")
				assert.Equal(t, map[string][]string{"node-2": {nodeipam.ReasonCIDRNotAvailable}}, r.events(t))
				for _, u := range r.ctrl.Usage() {
					assert.Equal(t, uint64(1), u.Used, "%s: only node-1's subnet is in use", u.ClusterCIDR)
				}

				r.delete(t, "node-1")
				got = r.podCIDRs(t)
				assert.ElementsMatch(t, []string{"10.244.0.0/24", "fd00:10:244::/64"}, got["node-2"], "node-2 gets both once node-1 is gone")
				for _, u := range r.ctrl.Usage() {
					assert.Equal(t, uint64(1), u.Used, "%s", u.ClusterCIDR)
				}
			})
		})
	}
}

func TestControllerLeavesExistingCIDRsAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fake.NewClientset(
			node("a-holder", "10.244.1.0/24", "fd00:10:244:1::/64"),
			node("b-twin", "10.244.1.0/24", "fd00:10:244:1::/64"), // same CIDRs as a-holder
			node("c-outside", "192.168.0.0/24"),
			node("d-garbage", "not-a-cidr"),
			node("e-narrow", "10.244.2.128/25"), // occupies its whole /24
		)
		r := startNodeController(t, client, dualStack)
		want := map[string][]string{
			"b-twin":    {nodeipam.ReasonPodCIDRConflict},
			"c-outside": {nodeipam.ReasonInvalidPodCIDR},
			"d-garbage": {nodeipam.ReasonInvalidPodCIDR},
		}
		if diff := cmp.Diff(want, r.events(t)); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		r.create(t, "f-new")
		r.delete(t, "a-holder") // its subnets pass to b-twin, which still uses them
		r.create(t, "g-new")
		want = map[string][]string{
			"b-twin":    {"10.244.1.0/24", "fd00:10:244:1::/64"},
			"c-outside": {"192.168.0.0/24"},
			"d-garbage": {"not-a-cidr"},
			"e-narrow":  {"10.244.2.128/25"},
			"f-new":     {"10.244.0.0/24", "fd00:10:244::/64"},
			"g-new":     {"10.244.3.0/24", "fd00:10:244:2::/64"},
		}
		if diff := cmp.Diff(want, r.podCIDRs(t)); diff != "" {
			t.Errorf("pod CIDRs (-want +got):\n%s", diff)
		}
		r.delete(t, "b-twin") // now the subnets are free
		r.create(t, "h-new")
		assert.Equal(t, []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, r.podCIDRs(t)["h-new"])
	})
}

func TestControllerRetriesConflicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fake.NewClientset()
		var patches atomic.Int32
		client.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
			if patches.Add(1) == 1 {
				return true, nil, apierrors.NewConflict(v1.Resource("nodes"), "node-1", errors.New("stale resourceVersion"))
			}
			return false, nil, nil
		})
		r := startNodeController(t, client, dualStack)
		r.create(t, "node-1")
		waitFor(t, "the write to be retried", func() bool { return len(r.podCIDRs(t)["node-1"]) > 0 })
		assert.Equal(t, []string{"10.244.0.0/24", "fd00:10:244::/64"}, r.podCIDRs(t)["node-1"])
		assert.Equal(t, int32(2), patches.Load())
		assert.Empty(t, r.events(t))
	})
}

func TestControllerKeepsReservationWhenWriteFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fake.NewClientset()
		var failing atomic.Bool
		failing.Store(true)
		client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if failing.Load() && a.(k8stesting.PatchAction).GetName() == "node-1" {
				return true, nil, apierrors.NewInternalError(errors.New("etcd is sad"))
			}
			return false, nil, nil
		})
		r := startNodeController(t, client, dualStack)
		r.create(t, "node-1", "node-2")
		assert.Equal(t, map[string][]string{"node-1": {nodeipam.ReasonCIDRAssignmentFailed}}, r.events(t))
		assert.Equal(t, []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, r.podCIDRs(t)["node-2"], "node-1's CIDRs stay reserved")

		failing.Store(false)
		waitFor(t, "node-1 to get its reserved CIDRs", func() bool { return len(r.podCIDRs(t)["node-1"]) > 0 })
		assert.Equal(t, []string{"10.244.0.0/24", "fd00:10:244::/64"}, r.podCIDRs(t)["node-1"])
	})
}

func TestControllerNodeCreatedWithCIDRsWhileReserved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fake.NewClientset()
		// The first write finds that someone else set the pod CIDRs.
		var once sync.Once
		client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
			var err error
			once.Do(func() {
				n, _ := client.Tracker().Get(v1.SchemeGroupVersion.WithResource("nodes"), "", "node-1")
				n = n.DeepCopyObject()
				n.(*v1.Node).Spec.PodCIDR, n.(*v1.Node).Spec.PodCIDRs = "10.244.7.0/24", []string{"10.244.7.0/24"}
				assert.NoError(t, client.Tracker().Update(v1.SchemeGroupVersion.WithResource("nodes"), n, ""))
				err = apierrors.NewConflict(v1.Resource("nodes"), "node-1", errors.New("changed"))
			})
			return err != nil, nil, err
		})
		r := startNodeController(t, client, dualStack)
		r.create(t, "node-1")
		waitFor(t, "the reservation to be dropped", func() bool { return r.ctrl.Usage()[1].Used == 0 })
		r.create(t, "node-2")
		want := map[string][]string{
			"node-1": {"10.244.7.0/24"},
			"node-2": {"10.244.0.0/24", "fd00:10:244::/64"}, // node-1's reservation was released
		}
		if diff := cmp.Diff(want, r.podCIDRs(t)); diff != "" {
			t.Errorf("pod CIDRs (-want +got):\n%s", diff)
		}
	})
}

func TestControllerCloudMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		cloud := map[string][]netip.Prefix{
			// The cloud's order is not the cluster's: the IPv4 CIDR goes first.
			"node-1":    {netip.MustParsePrefix("fd00:10:244:a::/64"), netip.MustParsePrefix("10.244.10.0/24")},
			"node-twin": {netip.MustParsePrefix("10.244.10.0/24")},
			"node-far":  {netip.MustParsePrefix("192.168.0.0/24")},
		}
		var calls atomic.Int32
		r := startNodeController(t, fake.NewClientset(), nodeipam.Options{
			ClusterCIDRs: dualStack.ClusterCIDRs,
			CloudCIDRs: func(_ context.Context, n *v1.Node) ([]netip.Prefix, error) {
				calls.Add(1)
				mu.Lock()
				defer mu.Unlock()
				return cloud[n.Name], nil
			},
		})
		r.create(t, "node-1", "node-twin", "node-far", "node-late")
		want := map[string][]string{
			"node-twin": {nodeipam.ReasonCIDRAssignmentFailed},
			"node-far":  {nodeipam.ReasonCIDRAssignmentFailed},
			"node-late": {nodeipam.ReasonCIDRNotAvailable},
		}
		if diff := cmp.Diff(want, r.events(t)); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}

		mu.Lock()
		cloud["node-late"] = []netip.Prefix{netip.MustParsePrefix("10.244.11.0/24"), netip.MustParsePrefix("fd00:10:244:b::/64")}
		mu.Unlock()
		waitFor(t, "node-late to get the cloud's CIDRs", func() bool { return len(r.podCIDRs(t)["node-late"]) > 0 })
		got := r.podCIDRs(t)
		assert.Equal(t, []string{"10.244.10.0/24", "fd00:10:244:a::/64"}, got["node-1"])
		assert.Equal(t, []string{"10.244.11.0/24", "fd00:10:244:b::/64"}, got["node-late"])
		assert.Empty(t, got["node-twin"])
		assert.Empty(t, got["node-far"])
	})
}

func TestControllerCloudModeWithoutClusterCIDRs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startNodeController(t, fake.NewClientset(), nodeipam.Options{
			CloudCIDRs: func(_ context.Context, n *v1.Node) ([]netip.Prefix, error) {
				return []netip.Prefix{netip.MustParsePrefix("172.16.3.0/26")}, nil
			},
		})
		r.create(t, "node-1")
		assert.Equal(t, []string{"172.16.3.0/26"}, r.podCIDRs(t)["node-1"])
		assert.Empty(t, r.ctrl.Usage())
	})
}

// countingLimiter counts the retries the controller asks for.
type countingLimiter struct {
	workqueue.TypedRateLimiter[string]
	mu    sync.Mutex
	calls map[string]int
}

func newCountingLimiter() *countingLimiter {
	return &countingLimiter{TypedRateLimiter: nodeipam.DefaultRateLimiter(), calls: map[string]int{}}
}

func (l *countingLimiter) When(item string) time.Duration {
	l.mu.Lock()
	l.calls[item]++
	l.mu.Unlock()
	return l.TypedRateLimiter.When(item)
}

func (l *countingLimiter) retries(item string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[item]
}

// elapse lets d pass in the synctest bubble's simulated clock.
func elapse(d time.Duration) {
	<-time.After(d)
	synctest.Wait()
}

// eventsOf returns the Events about Node name.
func (r *running) eventsOf(t *testing.T, name string) []v1.Event {
	t.Helper()
	list, err := r.client.CoreV1().Events(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	var out []v1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// touch updates Node name n times without changing anything the
// controller reads, as heartbeats and label changes do.
func (r *running) touch(t *testing.T, name string, n int) {
	t.Helper()
	for i := range n {
		node, err := r.client.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		require.NoError(t, err)
		node = node.DeepCopy()
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		node.Labels["touched"] = strconv.Itoa(i)
		_, err = r.client.CoreV1().Nodes().Update(t.Context(), node, metav1.UpdateOptions{})
		require.NoError(t, err)
		synctest.Wait()
	}
}

// Fix: in cloud mode a Node whose instance has no pod CIDRs yet was synced
// (one cloud lookup and one Event) on every Node update. It is now retried
// only with the rate limiter's backoff, and the Event is not repeated.
func TestControllerCloudPendingNodeIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var cloudCIDRs []netip.Prefix
		var lookups atomic.Int32
		limiter := newCountingLimiter()
		r := startNodeController(t, fake.NewClientset(), nodeipam.Options{
			ClusterCIDRs: []netip.Prefix{v4Cluster},
			CloudCIDRs: func(context.Context, *v1.Node) ([]netip.Prefix, error) {
				lookups.Add(1)
				mu.Lock()
				defer mu.Unlock()
				return cloudCIDRs, nil
			},
			RateLimiter: limiter,
		})
		r.create(t, "node-1")
		require.Equal(t, int32(1), lookups.Load())

		r.touch(t, "node-1", 50)
		assert.Equal(t, int32(1), lookups.Load(), "updates that change nothing the controller reads do not sync a Node being retried")

		elapse(time.Hour)
		// 5 ms doubling to 5 min takes 17 retries (about 11 min), then one
		// per 5 min: about 27 in an hour, instead of one per update.
		got := int(lookups.Load())
		assert.GreaterOrEqual(t, got, 20, "the Node is retried with backoff")
		assert.LessOrEqual(t, got, 35, "the Node is retried with backoff, not in a loop")
		assert.Equal(t, got, limiter.retries("node-1"), "every lookup that finds nothing schedules one rate-limited retry")
		events := r.eventsOf(t, "node-1")
		require.Len(t, events, 1)
		assert.Equal(t, nodeipam.ReasonCIDRNotAvailable, events[0].Reason)
		assert.Equal(t, int32(1), events[0].Count, "the Event is recorded once, not once per retry")

		// A providerID change is read: the Node is synced at once.
		mu.Lock()
		cloudCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.9.0/24")}
		mu.Unlock()
		n, err := r.client.CoreV1().Nodes().Get(t.Context(), "node-1", metav1.GetOptions{})
		require.NoError(t, err)
		n = n.DeepCopy()
		n.Spec.ProviderID = "fake://i-1"
		_, err = r.client.CoreV1().Nodes().Update(t.Context(), n, metav1.UpdateOptions{})
		require.NoError(t, err)
		synctest.Wait()
		assert.Equal(t, []string{"10.244.9.0/24"}, r.podCIDRs(t)["node-1"])
	})
}

// Fix: a Node starved by an exhausted range was retried only when a
// deletion freed a subnet. It is now also retried with backoff, without an
// Event per retry; and a deletion still wakes it at once.
func TestControllerStarvedNodeIsRetriedWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limiter := newCountingLimiter()
		r := startNodeController(t, fake.NewClientset(), nodeipam.Options{
			ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/24")}, // one /24
			RateLimiter:  limiter,
		})
		r.create(t, "node-1", "node-2")
		r.touch(t, "node-2", 20)
		assert.Equal(t, 1, limiter.retries("node-2"), "updates do not sync a waiting Node")
		elapse(time.Hour)
		retries := limiter.retries("node-2")
		assert.GreaterOrEqual(t, retries, 20, "the waiting Node is retried periodically")
		assert.LessOrEqual(t, retries, 35, "with backoff")
		events := r.eventsOf(t, "node-2")
		require.Len(t, events, 1)
		assert.Equal(t, nodeipam.ReasonCIDRNotAvailable, events[0].Reason)
		assert.Equal(t, int32(1), events[0].Count, "the Event is recorded once, not once per retry")

		r.delete(t, "node-1") // no time passes: the deletion wakes node-2
		assert.Equal(t, []string{"10.244.0.0/24"}, r.podCIDRs(t)["node-2"])
	})
}

// Fix: cloud mode on a dual-stack cluster silently left a Node
// single-stack when the cloud reported one family.
func TestControllerCloudSingleFamilyOnDualStackGivesEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := map[string][]netip.Prefix{
			"node-v4":   {netip.MustParsePrefix("10.244.3.0/24")},
			"node-v6":   {netip.MustParsePrefix("fd00:10:244:3::/64")},
			"node-dual": {netip.MustParsePrefix("10.244.4.0/24"), netip.MustParsePrefix("fd00:10:244:4::/64")},
		}
		r := startNodeController(t, fake.NewClientset(), nodeipam.Options{
			ClusterCIDRs: dualStack.ClusterCIDRs,
			CloudCIDRs: func(_ context.Context, n *v1.Node) ([]netip.Prefix, error) {
				return cloud[n.Name], nil
			},
		})
		r.create(t, "node-v4", "node-v6", "node-dual")
		want := map[string][]string{
			"node-v4":   {"10.244.3.0/24"},
			"node-v6":   {"fd00:10:244:3::/64"},
			"node-dual": {"10.244.4.0/24", "fd00:10:244:4::/64"},
		}
		if diff := cmp.Diff(want, r.podCIDRs(t)); diff != "" {
			t.Errorf("pod CIDRs (-want +got):\n%s", diff)
		}
		assert.Equal(t, map[string][]string{
			"node-v4": {nodeipam.ReasonPodCIDRFamilyMissing},
			"node-v6": {nodeipam.ReasonPodCIDRFamilyMissing},
		}, r.events(t))
		assert.Contains(t, r.eventsOf(t, "node-v4")[0].Message, "no IPv6 pod CIDR")
		assert.Contains(t, r.eventsOf(t, "node-v6")[0].Message, "no IPv4 pod CIDR")
	})
}

func TestControllerRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fake.NewClientset()
		f := informers.NewSharedInformerFactory(client, 0)
		c, err := nodeipam.New(client, f.Core().V1().Nodes(), dualStack)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		f.Start(ctx.Done())
		synctest.Wait()
		require.ErrorContains(t, c.Run(ctx), "called twice")
		select {
		case err := <-done:
			t.Fatalf("Run returned before its context ended: %v", err)
		default:
		}
		cancel()
		assert.NoError(t, <-done, "Run returns nil when its context ends")
		f.Shutdown()
	})
}
