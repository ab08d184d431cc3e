package harness_test

import (
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/ipam/nodeipam"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

const dualStackCIDRs = "10.244.0.0/16,fd00:10:244::/56"

var dualStackMasks = []string{"--node-cidr-mask-size-ipv4=24", "--node-cidr-mask-size-ipv6=64"}

// startIPAM runs the node IPAM controller alone with --allocate-node-cidrs,
// --cluster-cidr=clusterCIDRs and the other flags.
func startIPAM(t *testing.T, client kubernetes.Interface, p *framework.Provider, clusterCIDRs string, flags ...string) *harness.Harness {
	t.Helper()
	if p == nil {
		var err error
		p, err = framework.NewBuilder("fake").Build()
		require.NoError(t, err)
	}
	return harness.Start(t, harness.Options{
		Provider: p, Client: client, Controllers: []string{harness.NodeIPAM},
		ClusterCIDRs: clusterCIDRs, Flags: append([]string{"--allocate-node-cidrs"}, flags...),
	})
}

func hasPodCIDRs(n *v1.Node) bool { return len(n.Spec.PodCIDRs) > 0 }

// podCIDRs returns every Node's spec.podCIDRs.
func podCIDRs(t *testing.T, h *harness.Harness) map[string][]string {
	t.Helper()
	list, err := h.Client.CoreV1().Nodes().List(h.Context(), metav1.ListOptions{})
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

// assertPodCIDRs compares every Node's spec.podCIDRs with want.
func assertPodCIDRs(t *testing.T, h *harness.Harness, want map[string][]string) {
	t.Helper()
	if diff := cmp.Diff(want, podCIDRs(t, h)); diff != "" {
		t.Errorf("pod CIDRs (-want +got):\n%s", diff)
	}
}

// createAssigned creates each Node in turn and waits for its pod CIDRs.
func createAssigned(t *testing.T, h *harness.Harness, names ...string) {
	t.Helper()
	for _, name := range names {
		h.CreateNode(t, harness.NewNode(name, v1.ConditionTrue))
		h.WaitForNode(t, name, "pod CIDRs", hasPodCIDRs)
	}
}

func TestNodeIPAMAssignsDualStackPodCIDRs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startIPAM(t, nil, nil, dualStackCIDRs, append(dualStackMasks, "--cidr-allocator-type=RangeAllocator")...)
		createAssigned(t, h, "node-1", "node-2")
		want := map[string][]string{
			"node-1": {"10.244.0.0/24", "fd00:10:244::/64"},
			"node-2": {"10.244.1.0/24", "fd00:10:244:1::/64"},
		}
		assertPodCIDRs(t, h, want)
	})
}

func TestNodeIPAMRestartAllocatesNoCIDRTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := harness.NewFakeClientset(harness.FakeOptions{})
		h := startIPAM(t, client, nil, dualStackCIDRs, dualStackMasks...)
		createAssigned(t, h, "node-1", "node-2")
		h.Stop()
		synctest.Wait() // the first controller has returned

		h = startIPAM(t, client, nil, dualStackCIDRs, dualStackMasks...)
		createAssigned(t, h, "node-3")
		want := map[string][]string{
			"node-1": {"10.244.0.0/24", "fd00:10:244::/64"},
			"node-2": {"10.244.1.0/24", "fd00:10:244:1::/64"},
			"node-3": {"10.244.2.0/24", "fd00:10:244:2::/64"},
		}
		assertPodCIDRs(t, h, want)
	})
}

func TestNodeIPAMReusesDeletedNodesCIDRs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startIPAM(t, nil, nil, dualStackCIDRs, dualStackMasks...)
		createAssigned(t, h, "node-1", "node-2")
		require.NoError(t, h.Client.CoreV1().Nodes().Delete(h.Context(), "node-1", metav1.DeleteOptions{}))
		h.WaitForNodeGone(t, "node-1")
		synctest.Wait() // the deletion is processed
		createAssigned(t, h, "node-3")
		want := map[string][]string{
			"node-2": {"10.244.1.0/24", "fd00:10:244:1::/64"},
			"node-3": {"10.244.0.0/24", "fd00:10:244::/64"},
		}
		assertPodCIDRs(t, h, want)
	})
}

func TestNodeIPAMExhaustedRangeGivesEventAndNoPartialAllocation(t *testing.T) {
	// IPv6 is the primary family, so it is allocated first and must be
	// released when IPv4 (room for one /24) turns out to be full.
	synctest.Test(t, func(t *testing.T) {
		h := startIPAM(t, nil, nil, "fd00:10:244::/56,10.244.0.0/24", dualStackMasks...)
		createAssigned(t, h, "node-1")
		h.CreateNode(t, harness.NewNode("node-2", v1.ConditionTrue))
		e := h.WaitForEvent(t, "node-2", nodeipam.ReasonCIDRNotAvailable)
		assert.Equal(t, v1.EventTypeWarning, e.Type)
		assert.Equal(t, "Node", e.InvolvedObject.Kind)
		assert.Contains(t, e.Message, "10.244.0.0/24")
		assert.Empty(t, h.Node(t, "node-2").Spec.PodCIDRs, "no partial allocation")

		require.NoError(t, h.Client.CoreV1().Nodes().Delete(h.Context(), "node-1", metav1.DeleteOptions{}))
		n := h.WaitForNode(t, "node-2", "pod CIDRs once node-1 is gone", hasPodCIDRs)
		assert.Equal(t, []string{"fd00:10:244::/64", "10.244.0.0/24"}, n.Spec.PodCIDRs)
	})
}

func TestNodeIPAMCloudAllocatorCopiesInstanceCIDRs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		inst := fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")
		inst.PodCIDRs = []string{"fd00:10:244:7::/64", "10.244.7.0/24"}
		require.NoError(t, cloud.AddInstance(inst))
		inst = fakecloud.NewInstance("i-2", "node-2", "10.0.0.2")
		inst.PodCIDRs = []string{"10.244.9.0/26"}
		require.NoError(t, cloud.AddInstance(inst))
		p, err := framework.NewBuilder("fake").WithInstances(cloud.Instances(), instances.CacheOptions{}).Build()
		require.NoError(t, err)

		h := startIPAM(t, nil, p, dualStackCIDRs, "--cidr-allocator-type=CloudAllocator")
		createAssigned(t, h, "node-1", "node-2")
		want := map[string][]string{
			"node-1": {"10.244.7.0/24", "fd00:10:244:7::/64"}, // in --cluster-cidr's family order
			"node-2": {"10.244.9.0/26"},
		}
		assertPodCIDRs(t, h, want)
	})
}
