package routes_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ccmkit/ccmkit/routes"
)

// FuzzDiff builds desired and actual tables from fuzzed text (one route per
// line: "node cidr [ip] [b]") and checks Diff's invariants: applying the
// plan (deletes, then creates) to the actual table yields exactly one route
// per accepted desired route inside the cluster, routes outside the cluster
// CIDRs are never deleted, and diffing the result again is empty.
func FuzzDiff(f *testing.F) {
	f.Add("10.244.0.0/16", "a 10.244.1.0/24 10.0.0.1\nb 10.244.2.0/24 10.0.0.2", "a 10.244.1.0/24 10.0.0.1\nc 10.244.3.0/24 10.0.0.3 b")
	f.Add("10.244.0.0/16,fd00::/48", "a fd00:0:0:1::/64 fd00::1\na 10.244.1.0/24", "a fd00:0:0:1::/64 fd00::9\nx 192.168.0.0/24")
	f.Add("10.0.0.0/8", "", "gw 10.0.0.0/8\n 10.1.0.0/16")
	f.Add("::/0", "n ::/0 ::1", "n ::/0 ::2 b\nn ::/0")
	f.Fuzz(func(t *testing.T, clusterText, desiredText, actualText string) {
		var cluster []netip.Prefix
		for _, s := range strings.Split(clusterText, ",") {
			if p, err := routes.ParseCIDR(s); err == nil {
				cluster = append(cluster, p)
			}
		}
		desired := parseTable(desiredText, false)
		actual := parseTable(actualText, true)
		plan := routes.Diff(desired, actual, cluster)

		deleted := map[string]bool{}
		for _, r := range plan.Delete {
			if !routes.InCluster(r.Destination, cluster) {
				t.Fatalf("plan deletes %v, outside the cluster CIDRs %v", r, cluster)
			}
			deleted[r.Name] = true
		}
		var after []routes.Route
		for _, r := range actual {
			if !deleted[r.Name] {
				after = append(after, r)
			}
		}
		for _, r := range plan.Create {
			r.AddressesStored = true
			after = append(after, r)
		}
		again := routes.Diff(desired, after, cluster)
		if !again.Empty() {
			t.Fatalf("plan does not converge: second plan %+v", again)
		}
		if got, want := again.Keep+len(again.Rejected), countAccepted(desired, cluster)+len(plan.Rejected); got != want {
			t.Fatalf("after the plan: %d kept+rejected, want %d", got, want)
		}
	})
}

// parseTable parses "node cidr [ip] [b]" lines; listed routes get unique
// names and store their addresses.
func parseTable(text string, listed bool) []routes.Route {
	var out []routes.Route
	for i, line := range strings.Split(text, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		p, err := routes.ParseCIDR(fields[1])
		if err != nil {
			continue
		}
		r := routes.Route{Name: strconv.Itoa(i) + "/" + fields[0], TargetNode: types.NodeName(fields[0]), Destination: p}
		if len(fields) > 2 {
			r.NodeAddresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: fields[2]}}
			r.NextHop = routes.NextHop(r.NodeAddresses, p)
		}
		if listed {
			r.AddressesStored = true
			r.Blackhole = len(fields) > 3 && fields[3] == "b"
		}
		out = append(out, r)
	}
	return out
}

// countAccepted counts distinct (node, destination) desired routes Diff
// accepts.
func countAccepted(desired []routes.Route, cluster []netip.Prefix) int {
	type key struct {
		n types.NodeName
		p netip.Prefix
	}
	seen := map[key]bool{}
	for _, r := range desired {
		if r.TargetNode != "" && routes.InCluster(r.Destination, cluster) {
			seen[key{r.TargetNode, r.Destination}] = true
		}
	}
	return len(seen)
}
