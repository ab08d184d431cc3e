package instances_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cloudprovider "k8s.io/cloud-provider"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

func node(name, providerID string) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{ProviderID: providerID}}
}

func newV2(t *testing.T) (*instances.InstancesV2, *fakecloud.Cloud) {
	t.Helper()
	cloud := fakecloud.New(fakecloud.Options{})
	for _, st := range []struct {
		id    string
		state instances.State
	}{{"run", instances.StateRunning}, {"pend", instances.StatePending}, {"stop", instances.StateStopped}, {"term", instances.StateTerminated}} {
		inst := fakecloud.NewInstance("i-"+st.id, "node-"+st.id, "10.0.0.1")
		inst.State = st.state
		inst.Labels = map[string]string{"example.com/pool": "a"}
		require.NoError(t, cloud.AddInstance(inst))
	}
	c := newCache(t, cloud.Instances(), clocktesting.NewFakeClock(time.Unix(0, 0)))
	return instances.NewInstancesV2(c, "fake"), cloud
}

func TestInstancesV2Semantics(t *testing.T) {
	v2, _ := newV2(t)
	ctx := t.Context()
	for _, tc := range []struct {
		node             *v1.Node
		exists, shutdown bool
		notFound         bool
	}{
		{node("node-run", "fake://i-run"), true, false, false},
		{node("node-run", ""), true, false, false},
		{node("node-pend", "fake://i-pend"), true, false, false},
		{node("node-stop", "fake://i-stop"), true, true, false},
		{node("node-term", "fake://i-term"), false, false, true},
		{node("node-gone", "fake://i-gone"), false, false, true},
		{node("node-gone", ""), false, false, true},
	} {
		name := tc.node.Name + "/" + tc.node.Spec.ProviderID
		exists, err := v2.InstanceExists(ctx, tc.node)
		require.NoError(t, err, name)
		assert.Equal(t, tc.exists, exists, "InstanceExists %s", name)

		shutdown, err := v2.InstanceShutdown(ctx, tc.node)
		require.NoError(t, err, name)
		assert.Equal(t, tc.shutdown, shutdown, "InstanceShutdown %s", name)

		md, err := v2.InstanceMetadata(ctx, tc.node)
		if tc.notFound {
			assert.True(t, err == cloudprovider.InstanceNotFound, "want InstanceNotFound unwrapped, got %v", err)
			assert.Nil(t, md)
			continue
		}
		require.NoError(t, err, name)
		require.NotNil(t, md)
	}
}

func TestInstancesV2Metadata(t *testing.T) {
	v2, _ := newV2(t)
	md, err := v2.InstanceMetadata(t.Context(), node("node-run", ""))
	require.NoError(t, err)
	want := &cloudprovider.InstanceMetadata{
		ProviderID:   "fake://i-run",
		InstanceType: "fake.small",
		NodeAddresses: []v1.NodeAddress{
			{Type: v1.NodeInternalIP, Address: "10.0.0.1"},
			{Type: v1.NodeHostName, Address: "node-run"},
		},
		Zone:             "zone-a",
		Region:           "region-1",
		AdditionalLabels: map[string]string{"example.com/pool": "a"},
	}
	if d := cmp.Diff(want, md); d != "" {
		t.Errorf("metadata (-want +got):\n%s", d)
	}
	// The caller may modify what it gets without corrupting the cache.
	md.NodeAddresses[0].Address = "mutated"
	again, err := v2.InstanceMetadata(t.Context(), node("node-run", ""))
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.1", again.NodeAddresses[0].Address)
}

func TestInstancesV2BadInput(t *testing.T) {
	v2, _ := newV2(t)
	ctx := t.Context()
	for name, tc := range map[string]struct {
		node *v1.Node
		want error
	}{
		"nil node":         {nil, instances.ErrInvalidNode},
		"nameless":         {node("", ""), instances.ErrInvalidNode},
		"other provider":   {node("n", "aws://i-run"), instances.ErrInvalidProviderID},
		"empty id":         {node("n", "fake://"), instances.ErrInvalidProviderID},
		"no scheme":        {node("n", "i-run"), instances.ErrInvalidProviderID},
		"space in id":      {node("n", "fake://i run"), instances.ErrInvalidProviderID},
		"control in id":    {node("n", "fake://i\x00"), instances.ErrInvalidProviderID},
		"invalid utf8":     {node("n", "fake://i\xff"), instances.ErrInvalidProviderID},
		"slashes only id":  {node("n", "fake:///"), instances.ErrInvalidProviderID},
		"nameless+invalid": {node("", "fake//x"), instances.ErrInvalidProviderID},
	} {
		_, err := v2.InstanceExists(ctx, tc.node)
		assert.ErrorIs(t, err, tc.want, "InstanceExists %s", name)
		_, err = v2.InstanceShutdown(ctx, tc.node)
		assert.ErrorIs(t, err, tc.want, "InstanceShutdown %s", name)
		md, err := v2.InstanceMetadata(ctx, tc.node)
		assert.ErrorIs(t, err, tc.want, "InstanceMetadata %s", name)
		assert.Nil(t, md)
	}
}

func TestInstancesV2CloudErrorIsNotAbsence(t *testing.T) {
	v2, cloud := newV2(t)
	cloud.Inject(fakecloud.OpListInstances, fakecloud.Fault{Err: errors.New("500")})
	cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: errors.New("500")})
	exists, err := v2.InstanceExists(t.Context(), node("node-run", "fake://i-run"))
	require.Error(t, err, "an outage must not look like a deleted instance")
	assert.False(t, exists)
}

// A "missing" answer deletes the Node: InstanceExists never takes it from the
// cache's negative entry, which a lookup during the cloud's read lag after
// the instance's creation leaves behind.
func TestInstanceExistsConfirmsAMissingInstance(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Unix(0, 0))
	cloud := fakecloud.New(fakecloud.Options{Clock: clock, ReadLag: 3 * time.Second})
	c, err := instances.NewCache(cloud.Instances(), instances.CacheOptions{Clock: clock, NegativeTTL: 10 * time.Second})
	require.NoError(t, err)
	v2 := instances.NewInstancesV2(c, "fake")
	require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-new", "node-new", "10.0.0.9")))
	n := node("node-new", "fake://i-new")

	_, err = v2.InstanceMetadata(t.Context(), n) // within the read lag: not found, cached
	require.True(t, err == cloudprovider.InstanceNotFound, "got %v", err)
	clock.Step(5 * time.Second) // visible now; the negative entry has 5s left
	exists, err := v2.InstanceExists(t.Context(), n)
	require.NoError(t, err)
	assert.True(t, exists, "looked up again, not answered from the negative entry")

	exists, err = v2.InstanceExists(t.Context(), node("node-gone", "fake://i-gone"))
	require.NoError(t, err)
	assert.False(t, exists, "a missing instance is still reported missing")
}

// With CacheOptions.ReadLag, the instance of a Node younger than the lag is
// not reported missing: the cloud's reads may not show it yet, and a
// "missing" answer makes the lifecycle controller delete the Node.
func TestInstanceExistsWaitsOutTheReadLagForNewNodes(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Unix(1000, 0))
	cloud := fakecloud.New(fakecloud.Options{Clock: clock, ReadLag: 3 * time.Second})
	c, err := instances.NewCache(cloud.Instances(), instances.CacheOptions{Clock: clock, ReadLag: 3 * time.Second})
	require.NoError(t, err)
	v2 := instances.NewInstancesV2(c, "fake")
	require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-new", "node-new", "10.0.0.9")))
	n := node("node-new", "fake://i-new")
	n.CreationTimestamp = metav1.NewTime(clock.Now())

	clock.Step(time.Second)
	exists, err := v2.InstanceExists(t.Context(), n)
	require.ErrorContains(t, err, "not reporting it gone yet", "within the read lag of the Node's creation")
	assert.False(t, exists)

	clock.Step(3 * time.Second) // the instance is visible now
	exists, err = v2.InstanceExists(t.Context(), n)
	require.NoError(t, err)
	assert.True(t, exists)

	// The API server truncates creationTimestamp to the second: a Node
	// created at 1009.9 s says 1009 s, and at 1012.5 s (2.6 s old, within
	// the 3 s lag) it must not be reported gone although its timestamp is
	// 3.5 s old.
	clock.SetTime(time.Unix(1009, 900_000_000))
	require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-young", "node-young", "10.0.0.10")))
	young := node("node-young", "fake://i-young")
	young.CreationTimestamp = metav1.NewTime(clock.Now()).Rfc3339Copy()
	clock.SetTime(time.Unix(1012, 500_000_000))
	exists, err = v2.InstanceExists(t.Context(), young)
	require.ErrorContains(t, err, "not reporting it gone yet", "a truncated timestamp makes the Node look older than it is")
	assert.False(t, exists)

	old := node("node-gone", "fake://i-gone")
	old.CreationTimestamp = metav1.NewTime(clock.Now().Add(-time.Hour))
	exists, err = v2.InstanceExists(t.Context(), old)
	require.NoError(t, err)
	assert.False(t, exists, "an old Node's missing instance is reported missing")
}
