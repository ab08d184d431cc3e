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
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/cloud-provider/app/config"
	cpconfig "k8s.io/cloud-provider/config"

	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

// ipamSetup is the framework's node IPAM controller and the manager
// configuration of --allocate-node-cidrs=true, --cluster-cidr and
// --cidr-allocator-type it starts with.
type ipamSetup struct {
	controller framework.Controller
	config     *config.CompletedConfig
}

func nodeIPAM(clusterCIDR, allocatorType string, opts framework.NodeIPAMOptions) ipamSetup {
	var cc cpconfig.CloudControllerManagerConfiguration
	cc.KubeCloudShared.AllocateNodeCIDRs = true
	cc.KubeCloudShared.ClusterCIDR = clusterCIDR
	cc.KubeCloudShared.CIDRAllocatorType = allocatorType
	return ipamSetup{framework.NodeIPAMController(&opts), (&config.Config{ComponentConfig: cc}).Complete()}
}

const dualStackCIDRs = "10.244.0.0/16,fd00:10:244::/56"

var dualStackMasks = framework.NodeIPAMOptions{NodeCIDRMaskSizeIPv4: 24, NodeCIDRMaskSizeIPv6: 64}

func startIPAM(t *testing.T, client kubernetes.Interface, p *framework.Provider, setup ipamSetup) *harness.Harness {
	t.Helper()
	if p == nil {
		var err error
		p, err = framework.NewBuilder("fake").Build()
		require.NoError(t, err)
	}
	return harness.Start(t, harness.Options{Provider: p, Client: client, Controllers: []string{}, Extra: []framework.Controller{setup.controller}, Config: setup.config})
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
		h := startIPAM(t, nil, nil, nodeIPAM(dualStackCIDRs, framework.RangeAllocator, dualStackMasks))
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
		client := fake.NewClientset()
		h := startIPAM(t, client, nil, nodeIPAM(dualStackCIDRs, "", dualStackMasks))
		createAssigned(t, h, "node-1", "node-2")
		h.Stop()
		synctest.Wait() // the first controller has returned

		h = startIPAM(t, client, nil, nodeIPAM(dualStackCIDRs, "", dualStackMasks))
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
		h := startIPAM(t, nil, nil, nodeIPAM(dualStackCIDRs, "", dualStackMasks))
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
		h := startIPAM(t, nil, nil, nodeIPAM("fd00:10:244::/56,10.244.0.0/24", "", dualStackMasks))
		createAssigned(t, h, "node-1")
		h.CreateNode(t, harness.NewNode("node-2", v1.ConditionTrue))
		e := h.WaitForEvent(t, "node-2", ipam.ReasonCIDRNotAvailable)
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

		h := startIPAM(t, nil, p, nodeIPAM(dualStackCIDRs, framework.CloudAllocator, framework.NodeIPAMOptions{}))
		createAssigned(t, h, "node-1", "node-2")
		want := map[string][]string{
			"node-1": {"10.244.7.0/24", "fd00:10:244:7::/64"}, // in --cluster-cidr's family order
			"node-2": {"10.244.9.0/26"},
		}
		assertPodCIDRs(t, h, want)
	})
}
