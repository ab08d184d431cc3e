package instances_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/metrics/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// perKey hides the fake cloud's List so the cache runs in per-key mode.
type perKey struct{ src instances.Source }

func (p perKey) Lookup(ctx context.Context, k instances.Key) (*instances.Instance, error) {
	return p.src.Lookup(ctx, k)
}

func newCloud(t *testing.T, n int) *fakecloud.Cloud {
	t.Helper()
	cloud := fakecloud.New(fakecloud.Options{})
	for i := range n {
		id := string(rune('a' + i))
		require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-"+id, "node-"+id, "10.0.0.1")))
	}
	return cloud
}

func newCache(t *testing.T, src instances.Source, clk *clocktesting.FakeClock) *instances.Cache {
	t.Helper()
	c, err := instances.NewCache(src, instances.CacheOptions{Clock: clk, TTL: time.Minute, NegativeTTL: 10 * time.Second})
	require.NoError(t, err)
	return c
}

func TestCachePerKeyTTL(t *testing.T) {
	cloud := newCloud(t, 2)
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, perKey{cloud.Instances()}, clk)
	ctx := t.Context()

	for range 3 {
		inst, err := c.Get(ctx, instances.Key{ID: "i-a"})
		require.NoError(t, err)
		assert.Equal(t, "node-a", inst.NodeName)
	}
	assert.Equal(t, 1, cloud.Count(fakecloud.OpGetInstance), "served from memory within the TTL")

	clk.Step(time.Minute)
	_, err := c.Get(ctx, instances.Key{ID: "i-a"})
	require.NoError(t, err)
	assert.Equal(t, 2, cloud.Count(fakecloud.OpGetInstance), "refetched after the TTL")
}

func TestCacheNegativeTTL(t *testing.T) {
	cloud := newCloud(t, 1)
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, perKey{cloud.Instances()}, clk)
	ctx := t.Context()
	missing := instances.Key{ID: "i-gone"}

	for range 3 {
		_, err := c.Get(ctx, missing)
		require.ErrorIs(t, err, cloudcall.ErrNotFound)
	}
	assert.Equal(t, 1, cloud.Count(fakecloud.OpGetInstance))

	require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-gone", "node-late", "10.0.0.9")))
	clk.Step(10 * time.Second)
	inst, err := c.Get(ctx, missing)
	require.NoError(t, err, "not found is remembered only for the negative TTL")
	assert.Equal(t, "i-gone", inst.ID)
}

func TestCacheDoesNotCacheErrors(t *testing.T) {
	cloud := newCloud(t, 1)
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, perKey{cloud.Instances()}, clk)
	cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: cloudcall.Permanent(errors.New("500")), Times: 1})

	_, err := c.Get(t.Context(), instances.Key{ID: "i-a"})
	require.ErrorIs(t, err, cloudcall.ErrPermanent)
	_, err = c.Get(t.Context(), instances.Key{ID: "i-a"})
	require.NoError(t, err)
}

func TestCacheSingleflight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := newCloud(t, 1)
		cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Latency: time.Second})
		c, err := instances.NewCache(perKey{cloud.Instances()}, instances.CacheOptions{})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				_, err := c.Get(t.Context(), instances.Key{ID: "i-a"})
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		assert.Equal(t, 1, cloud.Count(fakecloud.OpGetInstance), "concurrent misses share one call")
	})
}

func TestCacheCallerCancelDoesNotFailOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := newCloud(t, 1)
		cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Latency: time.Second})
		c, err := instances.NewCache(perKey{cloud.Instances()}, instances.CacheOptions{})
		require.NoError(t, err)
		short, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			_, err := c.Get(short, instances.Key{ID: "i-a"})
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		})
		synctest.Wait()
		_, err = c.Get(t.Context(), instances.Key{ID: "i-a"})
		require.NoError(t, err)
		wg.Wait()
		assert.Equal(t, 1, cloud.Count(fakecloud.OpGetInstance))
	})
}

func TestCacheListMode(t *testing.T) {
	cloud := newCloud(t, 5)
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, cloud.Instances(), clk)
	ctx := t.Context()

	for _, k := range []instances.Key{{ID: "i-a"}, {NodeName: "node-b"}, {ID: "i-e"}} {
		_, err := c.Get(ctx, k)
		require.NoError(t, err)
	}
	assert.Equal(t, 1, cloud.Count(fakecloud.OpListInstances), "one list serves every key")
	assert.Zero(t, cloud.Count(fakecloud.OpGetInstance))

	// A key the list does not have is looked up alone, then remembered.
	for range 3 {
		_, err := c.Get(ctx, instances.Key{NodeName: "node-unknown"})
		require.ErrorIs(t, err, cloudcall.ErrNotFound)
	}
	assert.Equal(t, 1, cloud.Count(fakecloud.OpGetInstance))
	assert.Equal(t, 1, cloud.Count(fakecloud.OpListInstances))

	// The state change shows after the TTL, through a new list.
	require.NoError(t, cloud.SetInstanceState("i-a", instances.StateStopped))
	clk.Step(time.Minute)
	inst, err := c.Get(ctx, instances.Key{ID: "i-a"})
	require.NoError(t, err)
	assert.Equal(t, instances.StateStopped, inst.State)
	assert.Equal(t, 2, cloud.Count(fakecloud.OpListInstances))

	// An instance gone from the list is not served from an old entry.
	cloud.RemoveInstance("i-b")
	clk.Step(time.Minute)
	_, err = c.Get(ctx, instances.Key{ID: "i-b"})
	require.ErrorIs(t, err, cloudcall.ErrNotFound)
}

func TestCacheListCoalescesConcurrentMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := newCloud(t, 8)
		cloud.Inject(fakecloud.OpListInstances, fakecloud.Fault{Latency: time.Second})
		c, err := instances.NewCache(cloud.Instances(), instances.CacheOptions{})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				_, err := c.Get(t.Context(), instances.Key{NodeName: "node-" + string(rune('a'+i))})
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		assert.Equal(t, 1, cloud.Count(fakecloud.OpListInstances))
		assert.Zero(t, cloud.Count(fakecloud.OpGetInstance))
	})
}

func TestCacheNodeDeletedForgets(t *testing.T) {
	cloud := newCloud(t, 1)
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, perKey{cloud.Instances()}, clk)
	ctx := t.Context()
	_, err := c.Get(ctx, instances.Key{ID: "i-a"})
	require.NoError(t, err)

	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: v1.NodeSpec{ProviderID: "fake://i-a"}}
	onDelete := c.NodeDeleted("fake")
	onDelete(cache.DeletedFinalStateUnknown{Key: "node-a", Obj: node})
	onDelete("not a node") // ignored

	_, err = c.Get(ctx, instances.Key{ID: "i-a"})
	require.NoError(t, err)
	assert.Equal(t, 2, cloud.Count(fakecloud.OpGetInstance), "forgotten on node deletion")
}

func TestCacheRejectsInconsistentSource(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	for name, fn := range map[string]instances.SourceFunc{
		"nil-nil": func(context.Context, instances.Key) (*instances.Instance, error) { return nil, nil },
		"no-id": func(context.Context, instances.Key) (*instances.Instance, error) {
			return &instances.Instance{State: instances.StateRunning}, nil
		},
		"no-state": func(context.Context, instances.Key) (*instances.Instance, error) {
			return &instances.Instance{ID: "i-a"}, nil
		},
		"other-id": func(context.Context, instances.Key) (*instances.Instance, error) {
			return &instances.Instance{ID: "i-b", State: instances.StateRunning}, nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCache(t, fn, clk)
			inst, err := c.Get(t.Context(), instances.Key{ID: "i-a"})
			require.ErrorIs(t, err, instances.ErrInconsistent)
			assert.Nil(t, inst)
		})
	}
	c := newCache(t, instances.SourceFunc(func(context.Context, instances.Key) (*instances.Instance, error) { return nil, nil }), clk)
	_, err := c.Get(t.Context(), instances.Key{})
	require.ErrorIs(t, err, instances.ErrInvalidKey)

	_, err = instances.NewCache(nil, instances.CacheOptions{TTL: -1})
	require.ErrorContains(t, err, "nil Source")
	require.ErrorContains(t, err, "negative TTL")
}

func TestCacheThroughBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := newCloud(t, 1)
		cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: cloudcall.Transient(nil), Times: 2})
		b, err := cloudcall.NewBudget(cloudcall.BudgetOptions{})
		require.NoError(t, err)
		c, err := instances.NewCache(perKey{cloud.Instances()}, instances.CacheOptions{Budget: b})
		require.NoError(t, err)
		_, err = c.Get(t.Context(), instances.Key{ID: "i-a"})
		require.NoError(t, err, "transient errors are retried by the budget")
		assert.Equal(t, 3, cloud.Count(fakecloud.OpGetInstance))
	})
}

func TestCacheMetrics(t *testing.T) {
	cloud := newCloud(t, 1)
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, perKey{cloud.Instances()}, clk)
	_, _ = c.Get(t.Context(), instances.Key{ID: "i-a"})
	_, _ = c.Get(t.Context(), instances.Key{ID: "i-a"})
	_, _ = c.Get(t.Context(), instances.Key{ID: "i-x"})
	_, _ = c.Get(t.Context(), instances.Key{ID: "i-x"})
	want := `
# HELP ccmkit_instances_cache_requests_total [ALPHA] Instance cache lookups by result: hit, negative_hit (known missing), stale (served past expiry while the cloud fails), miss.
# TYPE ccmkit_instances_cache_requests_total counter
ccmkit_instances_cache_requests_total{result="hit"} 1
ccmkit_instances_cache_requests_total{result="miss"} 2
ccmkit_instances_cache_requests_total{result="negative_hit"} 1
ccmkit_instances_cache_requests_total{result="stale"} 0
`
	require.NoError(t, testutil.GatherAndCompare(c.Gatherer(), strings.NewReader(want), "ccmkit_instances_cache_requests_total"))
}
