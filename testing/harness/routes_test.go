package harness_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/controller-manager/pkg/features"

	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/routes"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
	"github.com/ccmkit/ccmkit/testing/harness"
)

// routeMode is one way to run the routes block.
type routeMode struct {
	name     string
	upstream bool // upstream's route controller over the adapter
	watch    bool // with the CloudControllerManagerWatchBasedRoutesReconciliation gate
	batch    bool // a batch (whole-table) backend
	resync   time.Duration
}

var routeModes = []routeMode{
	{name: "upstream-batched", upstream: true, batch: true},
	{name: "upstream-per-route", upstream: true},
	{name: "ccmkit-batched", batch: true},
	{name: "ccmkit-per-route"},
}

const routeCluster = harness.DefaultClusterName

// setWatchGate turns upstream's watch-based route reconciliation on for the
// test (outside the bubble), restored on cleanup.
func setWatchGate(t *testing.T, on bool) {
	t.Helper()
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.CloudControllerManagerWatchBasedRoutesReconciliation, on)
}

// startRoutes runs the route controller of mode over table.
func startRoutes(t *testing.T, mode routeMode, table *fakecloud.RouteTable, clusterCIDRs string) *harness.Harness {
	t.Helper()
	var backend routes.Backend = table.PerRoute()
	if mode.batch {
		backend = table.Batch()
	}
	p, err := framework.NewBuilder("fake").WithRoutes(backend, routes.Options{UpstreamController: mode.upstream}).Build()
	require.NoError(t, err)
	return harness.Start(t, harness.Options{Provider: p, Controllers: []string{"route"}, ClusterCIDRs: clusterCIDRs, Resync: mode.resync})
}

func podNode(name, ip string, cidrs ...string) *v1.Node {
	n := harness.NewNode(name, v1.ConditionTrue)
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}, {Type: v1.NodeHostName, Address: name}}
	return n
}

// owned returns cluster's routes in the table as "name dst->node", sorted.
func owned(table *fakecloud.RouteTable, cluster string) []string {
	var out []string
	for _, r := range table.Routes() {
		if r.Owner == cluster {
			out = append(out, fmt.Sprintf("%s %s->%s", r.Route.Name, r.Route.Destination, r.Route.TargetNode))
		}
	}
	return out
}

func waitRoutes(t *testing.T, h *harness.Harness, table *fakecloud.RouteTable, what string, cond func([]fakecloud.TableRoute) bool) {
	t.Helper()
	h.WaitFor(t, what, func(context.Context) (bool, error) { return cond(table.Routes()), nil })
}

func networkCondition(n *v1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeNetworkUnavailable {
			return string(c.Status) + "/" + c.Reason
		}
	}
	return ""
}

func routeTo(node, dst string) func(fakecloud.TableRoute) bool {
	return func(r fakecloud.TableRoute) bool {
		return r.Owner == routeCluster && string(r.Route.TargetNode) == node && r.Route.Destination.String() == dst && !r.Route.Blackhole
	}
}

func TestRoutesLifecycle(t *testing.T) {
	for _, mode := range routeModes {
		t.Run(mode.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				table := fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{StoreAddresses: true})
				foreign := routes.Route{Name: "hand-made", TargetNode: "vpn", Destination: netip.MustParsePrefix("10.244.250.0/24")}
				other := routes.Route{Name: "other--x-v4", TargetNode: "x", Destination: netip.MustParsePrefix("10.244.251.0/24")}
				gone := routes.Route{Name: routes.Name(routeCluster, "uid-gone", netip.MustParsePrefix("10.244.9.0/24")), TargetNode: "gone",
					Destination: netip.MustParsePrefix("10.244.9.0/24"), Blackhole: true}
				require.NoError(t, table.AddForeign(foreign))
				require.NoError(t, table.Add("other", other))
				require.NoError(t, table.Add(routeCluster, gone))
				h := startRoutes(t, mode, table, "10.244.0.0/16")

				h.CreateNode(t, podNode("node-1", "10.0.0.1", "10.244.1.0/24"))
				h.CreateNode(t, podNode("node-2", "10.0.0.2", "10.244.2.0/24"))
				h.CreateNode(t, podNode("no-cidr", "10.0.0.3"))
				for _, n := range []string{"node-1", "node-2"} {
					n := h.WaitForNode(t, n, "NetworkUnavailable=False", func(n *v1.Node) bool { return networkCondition(n) == "False/RouteCreated" })
					require.Equal(t, "False/RouteCreated", networkCondition(n))
				}
				waitRoutes(t, h, table, "the blackhole cleaned and two routes", func(rs []fakecloud.TableRoute) bool {
					return slices.ContainsFunc(rs, routeTo("node-1", "10.244.1.0/24")) && slices.ContainsFunc(rs, routeTo("node-2", "10.244.2.0/24")) &&
						!slices.ContainsFunc(rs, func(r fakecloud.TableRoute) bool { return r.Route.Name == gone.Name })
				})
				require.Equal(t, "", networkCondition(h.Node(t, "no-cidr")), "a Node without pod CIDRs is left alone")

				// A removed Node's route goes.
				require.NoError(t, h.Client.CoreV1().Nodes().Delete(h.Context(), "node-2", metav1.DeleteOptions{}))
				waitRoutes(t, h, table, "node-2's route deleted", func(rs []fakecloud.TableRoute) bool {
					return !slices.ContainsFunc(rs, routeTo("node-2", "10.244.2.0/24"))
				})

				// An address change replaces the route (stored addresses).
				n := h.Node(t, "node-1").DeepCopy()
				n.Status.Addresses[0].Address = "10.0.0.101"
				_, err := h.Client.CoreV1().Nodes().UpdateStatus(h.Context(), n, metav1.UpdateOptions{})
				require.NoError(t, err)
				waitRoutes(t, h, table, "node-1's route replaced", func(rs []fakecloud.TableRoute) bool {
					i := slices.IndexFunc(rs, routeTo("node-1", "10.244.1.0/24"))
					return i >= 0 && rs[i].Route.NodeAddresses[0].Address == "10.0.0.101"
				})

				// Foreign and other clusters' routes are untouched, even
				// inside the cluster CIDR.
				all := table.Routes()
				require.True(t, slices.ContainsFunc(all, func(r fakecloud.TableRoute) bool { return r.Route.Name == foreign.Name }), "foreign route kept")
				require.True(t, slices.ContainsFunc(all, func(r fakecloud.TableRoute) bool { return r.Route.Name == other.Name }), "other cluster's route kept")
				h.Stop()
			})
		})
	}
}

func TestRoutesDualStack(t *testing.T) {
	for _, mode := range routeModes {
		t.Run(mode.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				table := fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{})
				h := startRoutes(t, mode, table, "10.244.0.0/16,fd00:10::/56")
				h.CreateNode(t, podNode("ds", "10.0.0.1", "10.244.1.0/24", "fd00:10:0:1::/64"))
				n := h.WaitForNode(t, "ds", "NetworkUnavailable=False", func(n *v1.Node) bool { return networkCondition(n) == "False/RouteCreated" })
				uid := string(n.UID) // the name hint of both routes
				want := []string{
					routes.Name(routeCluster, uid, netip.MustParsePrefix("10.244.1.0/24")) + " 10.244.1.0/24->ds",
					routes.Name(routeCluster, uid, netip.MustParsePrefix("fd00:10:0:1::/64")) + " fd00:10:0:1::/64->ds",
				}
				if d := cmp.Diff(want, owned(table, routeCluster)); d != "" {
					t.Errorf("routes (-want +got):\n%s", d)
				}
				h.Stop()
			})
		})
	}
}

// TestRoutesNextHopChange: a table that stores no addresses lists the next
// hop; ccmkit's controller replaces the route when it changes (upstream's
// cannot see it: EnableNodeAddresses is false).
func TestRoutesNextHopChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		table := fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{})
		h := startRoutes(t, routeMode{batch: true}, table, "10.244.0.0/16")
		h.CreateNode(t, podNode("n", "10.0.0.1", "10.244.1.0/24"))
		waitRoutes(t, h, table, "route", func(rs []fakecloud.TableRoute) bool { return slices.ContainsFunc(rs, routeTo("n", "10.244.1.0/24")) })
		n := h.Node(t, "n").DeepCopy()
		n.Status.Addresses[0].Address = "10.0.0.9"
		_, err := h.Client.CoreV1().Nodes().UpdateStatus(h.Context(), n, metav1.UpdateOptions{})
		require.NoError(t, err)
		waitRoutes(t, h, table, "next hop replaced", func(rs []fakecloud.TableRoute) bool {
			i := slices.IndexFunc(rs, routeTo("n", "10.244.1.0/24"))
			return i >= 0 && rs[i].Route.NextHop == netip.MustParseAddr("10.0.0.9")
		})
		h.Stop()
	})
}

// TestRoutesTableFull: ccmkit's controller emits one Warning naming the
// limit, and while the table is full makes one list per reconcile and no
// create; a removed Node's route is still deleted, and the room it makes is
// used.
func TestRoutesTableFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		table := cloud.NewRouteTable(fakecloud.RouteTableOptions{Limit: 3, MaxBatchSize: 10})
		require.NoError(t, table.AddForeign(routes.Route{Name: "vpn", TargetNode: "gw", Destination: netip.MustParsePrefix("192.168.0.0/16")}))
		h := startRoutes(t, routeMode{batch: true}, table, "10.244.0.0/16")
		for i := range 4 {
			h.CreateNode(t, podNode(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d", i+1), fmt.Sprintf("10.244.%d.0/24", i+1)))
		}
		ev := h.WaitForEvent(t, "n0", routes.EventRouteTableFull)
		require.Contains(t, ev.Message, "limit 3 routes")
		time.Sleep(time.Minute) // simulated time: synctest bubble
		synctest.Wait()
		require.Len(t, owned(table, routeCluster), 2)

		cloud.ResetCalls()
		time.Sleep(time.Minute) // simulated time: six periods
		synctest.Wait()
		applies, lists := cloud.Count(fakecloud.OpApplyRoutes), cloud.Count(fakecloud.OpListRoutes)
		require.Zero(t, applies, "no create writes while full")
		require.LessOrEqual(t, lists, 7, "one list per reconcile")
		events, err := h.Client.CoreV1().Events("").List(h.Context(), metav1.ListOptions{})
		require.NoError(t, err)
		full := 0
		for _, e := range events.Items {
			if e.Reason == routes.EventRouteTableFull {
				full++
			}
		}
		require.Equal(t, 1, full, "one Warning for the full table")

		// Two Nodes with routes go: their routes are deleted, and the
		// waiting Nodes get theirs.
		var waiting []string
		for i := range 4 {
			name := fmt.Sprintf("n%d", i)
			if networkCondition(h.Node(t, name)) == "False/RouteCreated" {
				require.NoError(t, h.Client.CoreV1().Nodes().Delete(h.Context(), name, metav1.DeleteOptions{}))
			} else {
				waiting = append(waiting, name)
			}
		}
		require.Len(t, waiting, 2)
		for _, name := range waiting {
			h.WaitForNode(t, name, "route created", func(n *v1.Node) bool { return networkCondition(n) == "False/RouteCreated" })
		}
		h.Stop()
	})
}

// TestRoutesEquivalence drives upstream's route controller (watch-based
// gate off and on) and ccmkit's over the same fake cloud and Node sequence,
// and compares the final route tables and Node conditions.
func TestRoutesEquivalence(t *testing.T) {
	type outcome struct {
		Routes     []string
		Conditions map[string]string
	}
	run := func(t *testing.T, mode routeMode) outcome {
		setWatchGate(t, mode.watch)
		// The watch-based reconciliation sees cloud-side changes (a
		// blackhole) only on the informers' resync.
		mode.resync = 30 * time.Second
		var out outcome
		synctest.Test(t, func(t *testing.T) {
			table := fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{StoreAddresses: true, MaxBatchSize: 4})
			stale := netip.MustParsePrefix("10.244.99.0/24")
			require.NoError(t, table.Add(routeCluster, routes.Route{Name: routes.Name(routeCluster, "uid-old", stale), TargetNode: "old", Destination: stale}))
			require.NoError(t, table.AddForeign(routes.Route{Name: "vpn", TargetNode: "gw", Destination: netip.MustParsePrefix("10.244.250.0/24")}))
			h := startRoutes(t, mode, table, "10.244.0.0/16,fd00:10::/56")
			settle := func() {
				time.Sleep(45 * time.Second) // simulated time: several passes
				synctest.Wait()
			}
			for i := range 6 {
				cidrs := []string{fmt.Sprintf("10.244.%d.0/24", i+1)}
				if i%2 == 0 {
					cidrs = append(cidrs, fmt.Sprintf("fd00:10:0:%x::/64", i+1))
				}
				h.CreateNode(t, podNode(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d", i+1), cidrs...))
			}
			h.CreateNode(t, podNode("no-cidr", "10.0.0.50"))
			settle()
			all := table.Routes()
			i := slices.IndexFunc(all, routeTo("n1", "10.244.2.0/24"))
			require.GreaterOrEqual(t, i, 0, "n1's route: %v", all)
			require.NoError(t, table.SetBlackhole(all[i].Route.Name))
			require.NoError(t, h.Client.CoreV1().Nodes().Delete(h.Context(), "n3", metav1.DeleteOptions{}))
			n := h.Node(t, "n4").DeepCopy()
			n.Status.Addresses[0].Address = "10.0.1.4"
			_, err := h.Client.CoreV1().Nodes().UpdateStatus(h.Context(), n, metav1.UpdateOptions{})
			require.NoError(t, err)
			h.CreateNode(t, podNode("late", "10.0.0.60", "10.244.60.0/24"))
			settle()
			settle()
			for _, r := range table.Routes() {
				var addrs []string
				for _, a := range r.Route.NodeAddresses {
					addrs = append(addrs, string(a.Type)+"="+a.Address)
				}
				out.Routes = append(out.Routes, fmt.Sprintf("%s %s %s->%s [%s] blackhole=%v", r.Owner, r.Route.Name, r.Route.Destination, r.Route.TargetNode, strings.Join(addrs, ","), r.Route.Blackhole))
			}
			nodes, err := h.Client.CoreV1().Nodes().List(h.Context(), metav1.ListOptions{})
			require.NoError(t, err)
			out.Conditions = map[string]string{}
			for _, n := range nodes.Items {
				out.Conditions[n.Name] = networkCondition(&n)
			}
			h.Stop()
		})
		return out
	}
	var base outcome
	for i, mode := range []routeMode{
		{name: "ccmkit", batch: true},
		{name: "upstream", upstream: true, batch: true},
		{name: "upstream-watch", upstream: true, watch: true, batch: true},
		{name: "upstream-per-route", upstream: true},
		{name: "ccmkit-per-route"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			got := run(t, mode)
			if i == 0 {
				base = got
				require.Len(t, got.Routes, 10, "9 owned routes and the foreign one: %v", got.Routes)
				return
			}
			if d := cmp.Diff(base, got); d != "" {
				t.Errorf("%s differs from ccmkit's controller (-ccmkit +%s):\n%s", mode.name, mode.name, d)
			}
		})
	}
}

// TestRoutesGuards: ccmkit's controller keeps upstream's guards: it needs
// --cluster-cidr and does not start with --configure-cloud-routes=false.
func TestRoutesGuards(t *testing.T) {
	table := fakecloud.New(fakecloud.Options{}).NewRouteTable(fakecloud.RouteTableOptions{})
	p, err := framework.NewBuilder("fake").WithRoutes(table.Batch(), routes.Options{}).Build()
	require.NoError(t, err)
	_, err = harness.TryStart(t.Context(), harness.Options{Provider: p, Controllers: []string{harness.Route}})
	require.ErrorContains(t, err, "--cluster-cidr")

	synctest.Test(t, func(t *testing.T) {
		h := harness.Start(t, harness.Options{Provider: p, Controllers: []string{harness.Route}, ClusterCIDRs: "10.244.0.0/16",
			Flags: []string{"--configure-cloud-routes=false"}})
		require.ErrorContains(t, h.Skipped(harness.Route), "--configure-cloud-routes")
		h.Stop()
	})
}
