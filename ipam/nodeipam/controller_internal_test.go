package nodeipam

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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/ccmkit/ccmkit/ipam"
)

// A deletion the informer only learns from a relist arrives as a tombstone;
// the Node's CIDRs are released all the same.
func TestControllerReleasesOnTombstone(t *testing.T) {
	client := fake.NewClientset()
	f := informers.NewSharedInformerFactory(client, 0) // never started: the lister is empty
	c, err := New(client, f.Core().V1().Nodes(), Options{
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
	})
	require.NoError(t, err)
	c.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer c.queue.ShutDown()

	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: "u1"}, Spec: v1.NodeSpec{PodCIDRs: []string{"10.244.3.0/24"}}}
	c.adopt(t.Context(), n, n.Spec.PodCIDRs)
	require.Equal(t, uint64(1), c.Usage()[0].Used)

	c.enqueue(cache.DeletedFinalStateUnknown{Key: "node-1", Obj: n})
	key, _ := c.queue.Get()
	assert.Equal(t, "node-1", key)
	require.NoError(t, c.sync(t.Context(), key))
	assert.Equal(t, uint64(0), c.Usage()[0].Used)
	_, _, known := c.ledger.CIDRs("node-1")
	assert.False(t, known)
	assert.Empty(t, c.ledger.owners)
}

func TestSlotsOf(t *testing.T) {
	set, err := ipam.NewCIDRSet(netip.MustParsePrefix("fd00::/48"), 64)
	require.NoError(t, err)
	v4, err := ipam.NewCIDRSet(netip.MustParsePrefix("10.0.0.0/16"), 24)
	require.NoError(t, err)
	for _, tc := range []struct {
		set  *ipam.CIDRSet
		p    string
		want []string
		ok   bool
	}{
		{set, "fd00:0:0:5::/64", []string{"fd00:0:0:5::/64"}, true},
		{set, "fd00:0:0:5::80/121", []string{"fd00:0:0:5::/64"}, true},
		{set, "fd00:0:0:4::/63", []string{"fd00:0:0:4::/64", "fd00:0:0:5::/64"}, true},
		{set, "fd00::/48", nil, false}, // 2^16 subnets: too wide to track
		{v4, "10.0.254.0/23", []string{"10.0.254.0/24", "10.0.255.0/24"}, true},
		{v4, "10.0.4.0/22", []string{"10.0.4.0/24", "10.0.5.0/24", "10.0.6.0/24", "10.0.7.0/24"}, true},
		{v4, "10.0.9.7/32", []string{"10.0.9.0/24"}, true},
	} {
		got, ok := slotsOf(tc.set, netip.MustParsePrefix(tc.p))
		assert.Equal(t, tc.ok, ok, tc.p)
		var strs []string
		for _, s := range got {
			strs = append(strs, s.String())
		}
		assert.Equal(t, tc.want, strs, tc.p)
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{
		"10.0.0.0/8":     "10.255.255.255",
		"10.1.2.3/32":    "10.1.2.3",
		"0.0.0.0/0":      "255.255.255.255",
		"fd00::/64":      "fd00::ffff:ffff:ffff:ffff",
		"fd00::/127":     "fd00::1",
		"::/0":           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"192.168.4.0/22": "192.168.7.255",
	} {
		assert.Equal(t, want, lastAddr(netip.MustParsePrefix(p)).String(), p)
	}
}

// A starved Node is retried on its own, without a wake: here the deletion
// that frees the subnet wakes nobody (as if the wake were lost), and the
// Node still gets the subnet within one maximum backoff period.
func TestControllerStarvedNodeRetriedWithoutWake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fake.NewClientset()
		f := informers.NewSharedInformerFactory(client, 0)
		c, err := New(client, f.Core().V1().Nodes(), Options{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/24")}})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			assert.NoError(t, c.Run(ctx))
		}()
		defer func() { cancel(); <-done; f.Shutdown() }()
		f.Start(ctx.Done())
		synctest.Wait()

		nodes := client.CoreV1().Nodes()
		for _, name := range []string{"node-1", "node-2"} {
			_, err := nodes.Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}}, metav1.CreateOptions{})
			require.NoError(t, err)
			synctest.Wait()
		}
		<-time.After(time.Hour) // node-2's backoff reaches its cap
		synctest.Wait()
		require.True(t, c.ledger.Waiting("node-2"))

		c.ledger.mu.Lock()
		delete(c.ledger.starved, "node-2") // the deletion below wakes nobody
		c.ledger.mu.Unlock()
		require.NoError(t, nodes.Delete(ctx, "node-1", metav1.DeleteOptions{}))
		synctest.Wait()
		n, err := nodes.Get(ctx, "node-2", metav1.GetOptions{})
		require.NoError(t, err)
		require.Empty(t, n.Spec.PodCIDRs, "not woken")

		<-time.After(DefaultMaxRetryDelay)
		synctest.Wait()
		n, err = nodes.Get(ctx, "node-2", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, []string{"10.244.0.0/24"}, n.Spec.PodCIDRs, "retried within DefaultMaxRetryDelay")
	})
}
