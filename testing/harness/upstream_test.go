package harness_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ccmkit/ccmkit/testing/harness"
)

func TestUpstreamServiceControllerProvisionsAndCleansUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := harness.NewUpstreamFake()
		h := harness.Start(t, harness.Options{Provider: cloud, Controllers: []string{harness.Service}})
		h.CreateNode(t, harness.NewNode("node-1", v1.ConditionTrue))
		settleNodes()

		created := h.CreateService(t, harness.NewLoadBalancerService("web", 80))
		require.NotZero(t, created.Spec.Ports[0].NodePort, "the API-server emulation allocated a node port")
		svc := h.WaitForIngress(t, "default", "web")
		assert.Equal(t, "203.0.113.10", svc.Status.LoadBalancer.Ingress[0].IP)
		assert.Equal(t, ptr.To(v1.LoadBalancerIPModeVIP), svc.Status.LoadBalancer.Ingress[0].IPMode)
		assert.Contains(t, svc.Finalizers, "service.kubernetes.io/load-balancer-cleanup")
		h.WaitForEvent(t, "web", "EnsuredLoadBalancer")
		synctest.Wait()
		// The service controller patches the status subresource twice: to
		// add its finalizer (upstream's PatchService always targets
		// "status") and to write the ingress.
		assert.Equal(t, 2, h.StatusPatches(t, "default", "web"), "finalizer and ingress")

		// A second Service's sync does not touch the first one's status.
		h.CreateService(t, harness.NewLoadBalancerService("api", 443))
		h.WaitForIngress(t, "default", "api")
		synctest.Wait()
		assert.Equal(t, 2, h.StatusPatches(t, "default", "web"), "no patch of web for api's sync")

		// Graceful deletion: the Service stays until the controller has
		// deleted the load balancer and removed its finalizer.
		h.DeleteService(t, "default", "web")
		assert.Contains(t, cloud.Calls(), "delete")
		h.WaitForEvent(t, "web", "DeletedLoadBalancer")
	})
}

func TestUpstreamServiceControllerSkipsWithoutLoadBalancers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := harness.NewUpstreamFake()
		cloud.DisableLoadBalancers = true
		h := harness.Start(t, harness.Options{Provider: cloud.Cloud, Controllers: []string{"service"}})
		require.ErrorContains(t, h.Skipped(harness.Service), "not started")
		assert.False(t, h.Running(harness.Service))
	})
}

func TestUpstreamRouteControllerCreatesAndDeletesRoutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := harness.NewUpstreamFake()
		h := harness.Start(t, harness.Options{
			Provider:     cloud,
			Controllers:  []string{"route"},
			ClusterCIDRs: "10.244.0.0/16",
		})
		node := harness.NewNode("node-1", v1.ConditionTrue)
		node.Spec.PodCIDR, node.Spec.PodCIDRs = "10.244.1.0/24", []string{"10.244.1.0/24"}
		h.CreateNode(t, node)

		n := h.WaitForNode(t, "node-1", "NetworkUnavailable=False", func(n *v1.Node) bool {
			for _, c := range n.Status.Conditions {
				if c.Type == v1.NodeNetworkUnavailable {
					return c.Status == v1.ConditionFalse
				}
			}
			return false
		})
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeNetworkUnavailable {
				assert.Equal(t, "RouteCreated", c.Reason)
			}
		}
		routes, err := cloud.ListRoutes(h.Context(), harness.DefaultClusterName)
		require.NoError(t, err)
		require.Len(t, routes, 1)
		assert.Equal(t, "10.244.1.0/24", routes[0].DestinationCIDR)
		assert.Equal(t, "node-1", string(routes[0].TargetNode))

		// The Node goes: its route goes on the next pass (10 s by default).
		require.NoError(t, h.Client.CoreV1().Nodes().Delete(h.Context(), "node-1", metav1.DeleteOptions{}))
		h.WaitFor(t, "route deleted", func(ctx context.Context) (bool, error) {
			routes, err := cloud.ListRoutes(ctx, harness.DefaultClusterName)
			return len(routes) == 0, err
		})
	})
}

func TestUpstreamRouteControllerWithoutClusterCIDRIsAnError(t *testing.T) {
	cloud := harness.NewUpstreamFake()
	_, err := harness.TryStart(t.Context(), harness.Options{Provider: cloud, Controllers: []string{harness.Route}})
	require.Error(t, err)
	assert.ErrorContains(t, err, "--cluster-cidr")
}
