package harness_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	cloudproviderapi "k8s.io/cloud-provider/api"
	nodelifecycle "k8s.io/cloud-provider/controllers/nodelifecycle"

	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

const uninitialized = cloudproviderapi.TaintExternalCloudProvider

func provider(t *testing.T, cloud *fakecloud.Cloud) *framework.Provider {
	t.Helper()
	p, err := framework.NewBuilder("fake").WithInstances(cloud.Instances(), instances.CacheOptions{}).Build()
	require.NoError(t, err)
	return p
}

func TestNodeIsInitialized(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		inst := fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")
		inst.Type, inst.Zone, inst.Region = "fake.large", "zone-b", "region-2"
		require.NoError(t, cloud.AddInstance(inst))
		h := harness.Start(t, harness.Options{Provider: provider(t, cloud)})

		h.CreateNode(t, harness.NewNode("node-1", v1.ConditionTrue))
		n := h.WaitForNode(t, "node-1", "initialized", func(n *v1.Node) bool { return !harness.HasTaint(n, uninitialized) })

		assert.Equal(t, "fake://i-1", n.Spec.ProviderID)
		assert.Equal(t, "fake.large", n.Labels[v1.LabelInstanceTypeStable])
		assert.Equal(t, "zone-b", n.Labels[v1.LabelTopologyZone])
		assert.Equal(t, "region-2", n.Labels[v1.LabelTopologyRegion])
		n = h.WaitForNode(t, "node-1", "addresses", func(n *v1.Node) bool { return len(n.Status.Addresses) > 0 })
		assert.Contains(t, n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: "10.0.0.1"})
		h.WaitForEvent(t, "node-1", "Synced")
	})
}

func TestTerminatedNotReadyNodeIsDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")))
		h := harness.Start(t, harness.Options{Provider: provider(t, cloud)})
		h.CreateNode(t, harness.NewNode("node-1", v1.ConditionFalse))
		h.WaitForNode(t, "node-1", "initialized", func(n *v1.Node) bool { return !harness.HasTaint(n, uninitialized) })

		require.NoError(t, cloud.SetInstanceState("i-1", instances.StateTerminated))
		start := time.Now()
		h.WaitForNodeGone(t, "node-1")
		// Noticed within one cache TTL (1m) plus one 5s monitor pass.
		assert.LessOrEqual(t, time.Since(start), time.Minute+5*time.Second)
		h.WaitForEvent(t, "node-1", "DeletingNode")
	})
}

func TestNodeWithoutReadyConditionAndNoInstanceIsDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		h := harness.Start(t, harness.Options{Provider: provider(t, cloud), Controllers: []string{harness.NodeLifecycle}})
		start := time.Now()
		h.CreateNode(t, harness.NewNode("node-ghost", ""))
		h.WaitForNodeGone(t, "node-ghost")
		assert.LessOrEqual(t, time.Since(start), 5*time.Second+time.Second, "within one 5s pass")
	})
}

func TestStoppedNodeGetsShutdownTaintOnlyWhenNotReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		for _, name := range []string{"ready", "notready"} {
			inst := fakecloud.NewInstance("i-"+name, name, "10.0.0.1")
			inst.State = instances.StateStopped
			require.NoError(t, cloud.AddInstance(inst))
		}
		h := harness.Start(t, harness.Options{Provider: provider(t, cloud)})
		h.CreateNode(t, harness.NewNode("ready", v1.ConditionTrue))
		h.CreateNode(t, harness.NewNode("notready", v1.ConditionFalse))

		h.WaitForNode(t, "notready", "shutdown taint", func(n *v1.Node) bool { return harness.HasTaint(n, nodelifecycle.ShutdownTaint.Key) })
		// Both nodes went through that monitor pass; let one more 5 s pass
		// run (simulated time), then check the Ready one.
		tainted := time.Now()
		h.WaitFor(t, "another monitor pass", func(context.Context) (bool, error) {
			return time.Since(tainted) > 5*time.Second, nil
		})
		assert.False(t, harness.HasTaint(h.Node(t, "ready"), nodelifecycle.ShutdownTaint.Key), "the lifecycle controller skips Ready nodes")
	})
}

func TestReadyNodeWithMissingInstanceStaysTaintedAndIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		h := harness.Start(t, harness.Options{Provider: provider(t, cloud)})
		h.CreateNode(t, harness.NewNode("node-late", v1.ConditionTrue))

		h.WaitFor(t, "the node controller to retry the lookup", func(context.Context) (bool, error) {
			return cloud.Count(fakecloud.OpGetInstance) >= 3, nil
		})
		n := h.Node(t, "node-late")
		assert.True(t, harness.HasTaint(n, uninitialized), "not initialized without an instance")
		assert.Empty(t, n.Spec.ProviderID)

		require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-late", "node-late", "10.0.0.7")))
		n = h.WaitForNode(t, "node-late", "initialized once the instance exists", func(n *v1.Node) bool { return !harness.HasTaint(n, uninitialized) })
		assert.Equal(t, "fake://i-late", n.Spec.ProviderID)
	})
}

func TestBadProviderIDIsAnErrorNotAPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")))
		h := harness.Start(t, harness.Options{Provider: provider(t, cloud)})
		n := harness.NewNode("node-1", v1.ConditionFalse)
		n.Spec.ProviderID = "otherprovider://i-1"
		start := time.Now()
		h.CreateNode(t, n)
		// Six monitor passes and many init retries later (simulated time) the
		// node is still there, still tainted, and the cloud was never asked.
		h.WaitFor(t, "thirty simulated seconds", func(context.Context) (bool, error) {
			return time.Since(start) >= 30*time.Second, nil
		})
		got := h.Node(t, "node-1")
		assert.True(t, harness.HasTaint(got, uninitialized))
		assert.Zero(t, cloud.TotalCalls())
	})
}
