package harness_test

import (
	"testing"
	"testing/synctest"

	v1 "k8s.io/api/core/v1"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

// A Node joins and is initialized from its server; the server is deleted
// and the Node stops reporting: the upstream lifecycle controller deletes
// the Node. The whole test, in simulated time (compile-only here: it needs
// a *testing.T; TestExampleStart runs it; the package's TestMain calls
// harness.Main).
func ExampleStart() {
	_ = nodeGoesWithItsServer
}

func TestExampleStart(t *testing.T) { nodeGoesWithItsServer(t) }

func nodeGoesWithItsServer(t *testing.T) {
	{
		synctest.Test(t, func(t *testing.T) {
			cloud := fakecloud.New(fakecloud.Options{})
			if err := cloud.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")); err != nil {
				t.Fatal(err)
			}
			p, err := framework.NewBuilder("fake").WithInstances(cloud.Instances(), instances.CacheOptions{}).Build()
			if err != nil {
				t.Fatal(err)
			}
			h := harness.Start(t, harness.Options{
				Provider: p, // cloud-node and cloud-node-lifecycle controllers by default
				Flags:    []string{"--node-monitor-period=5s"},
			})
			h.CreateNode(t, harness.NewNode("node-1", v1.ConditionTrue))
			h.WaitForNode(t, "node-1", "initialized", func(n *v1.Node) bool {
				return !harness.HasTaint(n, cloudproviderapi.TaintExternalCloudProvider)
			})

			cloud.RemoveInstance("i-1")
			h.SetNodeReady(t, "node-1", v1.ConditionUnknown) // the kubelet stopped reporting
			h.WaitForNodeGone(t, "node-1")                   // after the cache TTL plus a monitor period
		})
	}
}
