package instances_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

var outage = cloudcall.Transient(errors.New("503 service unavailable"))

func TestCacheRemembersAFailedListAndServesStale(t *testing.T) {
	cloud := newCloud(t, 3)
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, cloud.Instances(), clk)
	ctx := t.Context()
	get := func(id string) (*instances.Instance, error) {
		t.Helper()
		return c.Get(ctx, instances.Key{ID: id})
	}
	_, err := get("i-a")
	require.NoError(t, err)
	require.Equal(t, 1, cloud.Count(fakecloud.OpListInstances))

	// The whole cloud goes down.
	stopList := cloud.Inject(fakecloud.OpListInstances, fakecloud.Fault{Err: outage})
	stopGet := cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: outage})
	clk.Step(time.Minute) // every entry has expired
	for _, id := range []string{"i-a", "i-b", "i-c", "i-a"} {
		inst, err := get(id)
		require.NoError(t, err, "an entry cached before the outage keeps answering")
		assert.Equal(t, id, inst.ID)
	}
	assert.Equal(t, 2, cloud.Count(fakecloud.OpListInstances), "one List attempt, remembered")
	assert.Zero(t, cloud.Count(fakecloud.OpGetInstance), "no per-key call for a stale entry")

	_, err = get("i-new")
	require.ErrorIs(t, err, cloudcall.ErrTransient, "an unknown key is looked up alone, and the outage is an error")
	assert.NotErrorIs(t, err, cloudcall.ErrNotFound, "never 'gone' because the cloud is down")
	assert.Equal(t, 1, cloud.Count(fakecloud.OpGetInstance))

	clk.Step(5 * time.Second)
	_, err = get("i-a")
	require.NoError(t, err)
	assert.Equal(t, 2, cloud.Count(fakecloud.OpListInstances), "within the negative TTL of the failure")
	clk.Step(5 * time.Second)
	_, err = get("i-a")
	require.NoError(t, err)
	assert.Equal(t, 3, cloud.Count(fakecloud.OpListInstances), "one attempt per negative TTL")

	// Past MaxStale (10m from expiry) the error comes back.
	clk.Step(10 * time.Minute)
	_, err = get("i-b")
	require.ErrorIs(t, err, cloudcall.ErrTransient)
	assert.NotErrorIs(t, err, cloudcall.ErrNotFound)

	stopList()
	stopGet()
	clk.Step(10 * time.Second)
	inst, err := get("i-b")
	require.NoError(t, err, "recovers with the next List")
	assert.Equal(t, "node-b", inst.NodeName)
}

func TestCacheListIsNotRetriedInCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := newCloud(t, 2)
		cloud.Inject(fakecloud.OpListInstances, fakecloud.Fault{Err: outage, Times: 1})
		b, err := cloudcall.NewBudget(cloudcall.BudgetOptions{})
		require.NoError(t, err)
		c, err := instances.NewCache(cloud.Instances(), instances.CacheOptions{Budget: b})
		require.NoError(t, err)
		inst, err := c.Get(t.Context(), instances.Key{NodeName: "node-b"})
		require.NoError(t, err, "the failed List falls back to a lookup of the key")
		assert.Equal(t, "i-b", inst.ID)
		assert.Equal(t, 1, cloud.Count(fakecloud.OpListInstances), "no in-call retry of the List")
		assert.Equal(t, 1, cloud.Count(fakecloud.OpGetInstance))
	})
}

func TestCachePerKeyServesStaleWhileRefreshFails(t *testing.T) {
	cloud := newCloud(t, 1)
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, perKey{cloud.Instances()}, clk)
	ctx := t.Context()
	_, err := c.Get(ctx, instances.Key{ID: "i-a"})
	require.NoError(t, err)
	_, err = c.Get(ctx, instances.Key{ID: "i-gone"})
	require.ErrorIs(t, err, cloudcall.ErrNotFound)

	cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: outage})
	clk.Step(time.Minute)
	for range 3 {
		inst, err := c.Get(ctx, instances.Key{ID: "i-a"})
		require.NoError(t, err)
		assert.Equal(t, "i-a", inst.ID)
	}
	assert.Equal(t, 3, cloud.Count(fakecloud.OpGetInstance), "one failed refresh, then stale without calling")

	_, err = c.Get(ctx, instances.Key{ID: "i-gone"})
	require.ErrorIs(t, err, cloudcall.ErrTransient, "an expired 'not found' is not served stale")
	assert.NotErrorIs(t, err, cloudcall.ErrNotFound)

	clk.Step(10 * time.Second)
	_, err = c.Get(ctx, instances.Key{ID: "i-a"})
	require.NoError(t, err)
	assert.Equal(t, 5, cloud.Count(fakecloud.OpGetInstance), "retried after the negative TTL")

	clk.Step(10 * time.Minute)
	_, err = c.Get(ctx, instances.Key{ID: "i-a"})
	require.ErrorIs(t, err, cloudcall.ErrTransient, "past MaxStale the error comes back")

	noStale, err := instances.NewCache(perKey{cloud.Instances()}, instances.CacheOptions{Clock: clk, MaxStale: -1})
	require.NoError(t, err)
	_, err = noStale.Get(ctx, instances.Key{ID: "i-a"})
	require.ErrorIs(t, err, cloudcall.ErrTransient)
}

// listSource is a Source and Lister over a fixed list, with lookups that
// search it; it records its calls.
type listSource struct {
	mu            sync.Mutex
	list          []*instances.Instance
	names         map[string]string // node name -> ID, for instances that do not report it
	lists, lookup int
}

func (s *listSource) List(context.Context) ([]*instances.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	return slices.Clone(s.list), nil
}

func (s *listSource) Lookup(_ context.Context, key instances.Key) (*instances.Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookup++
	if id, ok := s.names[key.NodeName]; ok && key.ID == "" {
		key.ID = id
	}
	for _, inst := range s.list {
		if inst != nil && (inst.ID == key.ID || key.ID == "" && inst.NodeName == key.NodeName) {
			return inst, nil
		}
	}
	return nil, cloudcall.NotFoundf("instance %s", key)
}

func running(id, name string) *instances.Instance {
	return &instances.Instance{ID: id, NodeName: name, State: instances.StateRunning}
}

func TestCacheListSkipsAnInvalidInstance(t *testing.T) {
	src := &listSource{list: []*instances.Instance{
		running("i-a", "node-a"),
		{ID: "i-bad", NodeName: "node-bad"}, // no state: the SDK met a status it does not know
		nil,
		running("i-b", "node-b"),
	}}
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, src, clk)
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx := klog.NewContext(t.Context(), logger)

	for range 2 {
		for _, name := range []string{"node-a", "node-b"} {
			_, err := c.Get(ctx, instances.Key{NodeName: name})
			require.NoError(t, err, "one invalid instance does not fail the others")
		}
		_, err := c.Get(ctx, instances.Key{ID: "i-bad"})
		require.ErrorIs(t, err, instances.ErrInconsistent, "the invalid instance is looked up on its own")
		clk.Step(time.Minute)
	}
	assert.Equal(t, 2, src.lists)
	assert.Equal(t, 2, src.lookup, "only the invalid instance is looked up alone")

	var skipped []string
	for _, l := range logger.GetSink().(ktesting.Underlier).GetBuffer().Data() {
		if l.Type == ktesting.LogError {
			skipped = append(skipped, l.Err.Error())
		}
	}
	assert.Len(t, skipped, 2, "each invalid instance is logged once, not on every List: %v", skipped)
}

func TestCacheKeepsAnInstanceFoundByName(t *testing.T) {
	// The cloud does not report node names: lookups by name find the
	// instance by another attribute.
	var calls int
	src := instances.SourceFunc(func(_ context.Context, key instances.Key) (*instances.Instance, error) {
		calls++
		return &instances.Instance{ID: "i-1", State: instances.StateRunning}, nil
	})
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := newCache(t, src, clk)
	for range 3 {
		inst, err := c.Get(t.Context(), instances.Key{NodeName: "node-1"})
		require.NoError(t, err)
		assert.Equal(t, "i-1", inst.ID)
	}
	assert.Equal(t, 1, calls, "cached under the name it was found by")

	// In list mode the name stays attached across Lists.
	ls := &listSource{list: []*instances.Instance{running("i-1", "")}, names: map[string]string{"node-1": "i-1"}}
	lc := newCache(t, ls, clk)
	_, err := lc.Get(t.Context(), instances.Key{NodeName: "node-1"})
	require.NoError(t, err)
	clk.Step(time.Minute)
	_, err = lc.Get(t.Context(), instances.Key{NodeName: "node-1"})
	require.NoError(t, err)
	assert.Equal(t, 2, ls.lists)
	assert.Equal(t, 1, ls.lookup, "the second List re-attached the name")
}

func TestCacheListWithSharedNodeNames(t *testing.T) {
	old := &instances.Instance{ID: "i-old", NodeName: "node-x", State: instances.StateTerminated}
	src := &listSource{list: []*instances.Instance{
		running("i-new", "node-x"), old, // a machine replaced under the same name
		running("i-y1", "node-y"), running("i-y2", "node-y"), // ambiguous
	}}
	c := newCache(t, src, clocktesting.NewFakeClock(time.Unix(1000, 0)))
	inst, err := c.Get(t.Context(), instances.Key{NodeName: "node-x"})
	require.NoError(t, err)
	assert.Equal(t, "i-new", inst.ID, "the instance that is not terminated owns the name")
	_, err = c.Get(t.Context(), instances.Key{NodeName: "node-y"})
	require.NoError(t, err)
	assert.Equal(t, 1, src.lookup, "an ambiguous name is left to the Source")
}

func TestCacheNodeDeletedDuringLookupIsNotRecached(t *testing.T) {
	for _, mode := range []string{"per-key", "list"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cloud := newCloud(t, 1)
				var src instances.Source = cloud.Instances()
				op := fakecloud.OpListInstances
				if mode == "per-key" {
					src, op = perKey{src}, fakecloud.OpGetInstance
				}
				cloud.Inject(op, fakecloud.Fault{Latency: time.Second, Times: 1})
				c, err := instances.NewCache(src, instances.CacheOptions{})
				require.NoError(t, err)
				node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: v1.NodeSpec{ProviderID: "fake://i-a"}}
				key, err := instances.KeyForNode("fake", node)
				require.NoError(t, err)

				done := make(chan error)
				go func() {
					_, err := c.Get(t.Context(), key)
					done <- err
				}()
				synctest.Wait() // the lookup is in flight
				c.NodeDeleted("fake")(node)
				require.NoError(t, <-done, "the caller still gets its answer")

				before := cloud.TotalCalls()
				_, err = c.Get(t.Context(), key)
				require.NoError(t, err)
				assert.Equal(t, before+1, cloud.TotalCalls(), "the deleted node's instance was not re-cached")
			})
		})
	}
}

func TestCacheSharedLookupEndsAtTheAttemptDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := newCloud(t, 1)
		cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Hang: true, Times: 1})
		c, err := instances.NewCache(perKey{cloud.Instances()}, instances.CacheOptions{})
		require.NoError(t, err)
		start := time.Now()
		_, err = c.Get(context.TODO(), instances.Key{ID: "i-a"})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, cloudcall.DefaultAttemptTimeout, time.Since(start), "unpaced: cloudcall's default attempt timeout")

		b, err := cloudcall.NewBudget(cloudcall.BudgetOptions{AttemptTimeout: 5 * time.Second})
		require.NoError(t, err)
		cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Hang: true, Times: 1})
		c, err = instances.NewCache(perKey{cloud.Instances()}, instances.CacheOptions{Budget: b})
		require.NoError(t, err)
		start = time.Now()
		inst, err := c.Get(context.TODO(), instances.Key{ID: "i-a"})
		require.NoError(t, err, "the hung attempt timed out and the retry answered")
		assert.Equal(t, "i-a", inst.ID)
		assert.Less(t, time.Since(start), 6*time.Second)
	})
}
