package ipam

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// A deletion the informer only learns from a relist arrives as a tombstone;
// the Node's CIDRs are released all the same.
func TestNodeControllerReleasesOnTombstone(t *testing.T) {
	client := fake.NewClientset()
	f := informers.NewSharedInformerFactory(client, 0) // never started: the lister is empty
	c, err := NewNodeController(client, f.Core().V1().Nodes(), NodeControllerOptions{
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
	assert.Empty(t, c.records)
	assert.Empty(t, c.owners)
}

func TestSlotsOf(t *testing.T) {
	set, err := NewCIDRSet(netip.MustParsePrefix("fd00::/48"), 64)
	require.NoError(t, err)
	for _, tc := range []struct {
		p    string
		want []string
		ok   bool
	}{
		{"fd00:0:0:5::/64", []string{"fd00:0:0:5::/64"}, true},
		{"fd00:0:0:5::80/121", []string{"fd00:0:0:5::/64"}, true},
		{"fd00:0:0:4::/63", []string{"fd00:0:0:4::/64", "fd00:0:0:5::/64"}, true},
		{"fd00::/48", nil, false}, // 2^16 subnets: too wide to track
	} {
		got, ok := slotsOf(set, netip.MustParsePrefix(tc.p))
		assert.Equal(t, tc.ok, ok, tc.p)
		var strs []string
		for _, s := range got {
			strs = append(strs, s.String())
		}
		assert.Equal(t, tc.want, strs, tc.p)
	}
}

// FuzzNodeControllerAccounting applies random sequences of adoptions (of
// good, overlapping, wide, narrow, foreign and garbage pod CIDRs),
// allocations and deletions, and checks that the sets and the ownership
// records always agree: every used subnet is owned by exactly one live Node
// or lies in the service range, and every Node's slots are owned by it.
func FuzzNodeControllerAccounting(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1, 2, 0, 2, 1, 0, 1, 3, 5, 0, 4, 6, 2, 3, 0})
	f.Add([]byte{1, 0, 0, 1, 1, 0, 1, 2, 0, 1, 3, 0, 2, 0, 0, 1, 3, 0})
	specs := [][]string{
		{"10.244.0.0/24", "fd00::/64"},
		{"10.244.1.0/24"},
		{"10.244.0.0/23"},   // wide: two slots
		{"10.244.2.128/25"}, // narrow
		{"10.244.3.0/24"},   // the service range
		{"192.168.0.0/24"},  // outside
		{"garbage"},         // unparsable
		{"fd00:0:0:1::/64", "10.244.1.0/24"},
		{"fd00::/62"},                      // all IPv6 slots
		{"10.244.2.0/24", "10.244.1.0/24"}, // a family twice
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		client := fake.NewClientset()
		fi := informers.NewSharedInformerFactory(client, 0)
		c, err := NewNodeController(client, fi.Core().V1().Nodes(), NodeControllerOptions{
			ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/22"), netip.MustParsePrefix("fd00::/62")},
			ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24")},
		})
		require.NoError(t, err)
		c.recorder = &record.FakeRecorder{} // discards
		c.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
		defer c.queue.ShutDown()
		gen := map[string]int{}
		for i := 0; i+2 < len(ops); i += 3 {
			name := fmt.Sprintf("node-%d", ops[i+1]%6)
			n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(fmt.Sprintf("%s-%d", name, gen[name]))}}
			switch ops[i] % 4 {
			case 0:
				spec := specs[int(ops[i+2])%len(specs)]
				c.adopt(t.Context(), n, spec)
			case 1:
				_, err := c.reserve(t.Context(), n)
				require.NoError(t, err)
			case 2:
				c.forget(t.Context(), name)
				gen[name]++
			case 3:
				gen[name]++ // the next operation sees a new Node of that name
			}
			checkAccounting(t, c)
		}
	})
}

func checkAccounting(t *testing.T, c *NodeController) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	owned := map[netip.Prefix]string{}
	for name, rec := range c.records {
		for _, s := range rec.slots {
			require.Equal(t, name, c.owners[s], "slot %s of %s", s, name)
			_, dup := owned[s]
			require.False(t, dup, "slot %s listed twice", s)
			owned[s] = name
		}
		for _, s := range rec.wanted {
			owner, ok := c.owners[s]
			require.True(t, ok && owner != name, "%s wants %s, held by %q", name, s, owner)
		}
		_, contested := c.contested[name]
		require.Equal(t, len(rec.wanted) > 0, contested, name)
	}
	require.Equal(t, len(owned), len(c.owners), "every owner is a live record's")
	service := netip.MustParsePrefix("10.244.3.0/24")
	for _, set := range c.sets {
		var want uint64
		for s := range owned {
			if s.Addr().Is4() == set.Cluster().Addr().Is4() {
				want++
				require.True(t, set.Has(s), "owned slot %s is used", s)
			}
		}
		if set.Cluster().Addr().Is4() {
			require.True(t, set.Has(service))
			_, owned := c.owners[service]
			require.False(t, owned, "the service range is nobody's")
			want++
		}
		require.Equal(t, want, set.Allocated(), "%s: used subnets = owned + service", set.Cluster())
	}
}
