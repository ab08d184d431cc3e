package instances_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cloudprovider "k8s.io/cloud-provider"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// steadyState replays one simulated hour of what the upstream controllers
// ask of InstancesV2 for a cluster of n nodes: InstanceMetadata for every
// node every 5 minutes (node controller address refresh) and InstanceExists
// plus InstanceShutdown every 5 seconds for each NotReady node (1%, node
// lifecycle controller).
func steadyState(ctx context.Context, tb testing.TB, v2 cloudprovider.InstancesV2, nodes []*v1.Node, clk *clocktesting.FakeClock) {
	notReady := nodes[:len(nodes)/100]
	for tick := time.Duration(0); tick < time.Hour; tick += 5 * time.Second {
		if tick%(5*time.Minute) == 0 {
			for _, n := range nodes {
				if _, err := v2.InstanceMetadata(ctx, n); err != nil {
					tb.Fatal(err)
				}
			}
		}
		for _, n := range notReady {
			if _, err := v2.InstanceExists(ctx, n); err != nil {
				tb.Fatal(err)
			}
			if _, err := v2.InstanceShutdown(ctx, n); err != nil {
				tb.Fatal(err)
			}
		}
		clk.Step(5 * time.Second)
	}
}

// direct is InstancesV2 without a cache: every question is a cloud call.
type direct struct {
	src      instances.Source
	provider string
}

func (d direct) get(ctx context.Context, n *v1.Node) (*instances.Instance, error) {
	key, err := instances.KeyForNode(d.provider, n)
	if err != nil {
		return nil, err
	}
	return d.src.Lookup(ctx, key)
}

func (d direct) InstanceExists(ctx context.Context, n *v1.Node) (bool, error) {
	inst, err := d.get(ctx, n)
	return err == nil && inst.State != instances.StateTerminated, err
}

func (d direct) InstanceShutdown(ctx context.Context, n *v1.Node) (bool, error) {
	inst, err := d.get(ctx, n)
	return err == nil && inst.State == instances.StateStopped, err
}

func (d direct) InstanceMetadata(ctx context.Context, n *v1.Node) (*cloudprovider.InstanceMetadata, error) {
	inst, err := d.get(ctx, n)
	if err != nil {
		return nil, err
	}
	return &cloudprovider.InstanceMetadata{ProviderID: instances.FormatProviderID(d.provider, inst.ID), NodeAddresses: inst.Addresses}, nil
}

func cluster(tb testing.TB, n int) (*fakecloud.Cloud, []*v1.Node) {
	cloud := fakecloud.New(fakecloud.Options{})
	nodes := make([]*v1.Node, n)
	for i := range n {
		id, name := fmt.Sprintf("i-%05d", i), fmt.Sprintf("node-%05d", i)
		if err := cloud.AddInstance(fakecloud.NewInstance(id, name, fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))); err != nil {
			tb.Fatal(err)
		}
		nodes[i] = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{ProviderID: "fake://" + id}}
	}
	return cloud, nodes
}

// BenchmarkSteadyStateInstanceCalls reports the cloud calls per hour of a
// 5,000-node cluster, through the cache (list mode, default TTLs) and
// straight to the backend.
func BenchmarkSteadyStateInstanceCalls(b *testing.B) {
	const n = 5000
	ctx := b.Context()
	var cached, straight int
	for b.Loop() {
		cloud, nodes := cluster(b, n)
		clk := clocktesting.NewFakeClock(time.Unix(0, 0))
		c, err := instances.NewCache(cloud.Instances(), instances.CacheOptions{Clock: clk})
		if err != nil {
			b.Fatal(err)
		}
		steadyState(ctx, b, instances.NewInstancesV2(c, "fake"), nodes, clk)
		cached += cloud.TotalCalls()

		cloud.ResetCalls()
		steadyState(ctx, b, direct{cloud.Instances(), "fake"}, nodes, clk)
		straight += cloud.TotalCalls()
	}
	b.ReportMetric(float64(cached)/float64(b.N), "calls/h-cached")
	b.ReportMetric(float64(straight)/float64(b.N), "calls/h-direct")
	b.ReportMetric(float64(straight)/float64(cached), "x-fewer")
}

// warmV2 returns an InstancesV2 over a cache in list mode, warmed by one
// List, for n nodes, and the fake cloud behind it.
func warmV2(tb testing.TB, n int) (*instances.InstancesV2, []*v1.Node, *fakecloud.Cloud) {
	tb.Helper()
	cloud, nodes := cluster(tb, n)
	c, err := instances.NewCache(cloud.Instances(), instances.CacheOptions{Clock: clocktesting.NewFakeClock(time.Unix(0, 0))})
	if err != nil {
		tb.Fatal(err)
	}
	v2 := instances.NewInstancesV2(c, "fake")
	if _, err := v2.InstanceExists(tb.Context(), nodes[0]); err != nil {
		tb.Fatal(err)
	}
	return v2, nodes, cloud
}

// benchHit measures one hit-path method over every node in turn, and checks
// that it made no cloud call beyond the warm-up List.
func benchHit(b *testing.B, call func(ctx context.Context, v2 *instances.InstancesV2, n *v1.Node) error) {
	v2, nodes, cloud := warmV2(b, 1000)
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := call(ctx, v2, nodes[i%len(nodes)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if cloud.TotalCalls() != 1 {
		b.Fatalf("hit path made %d cloud calls, want the 1 warm-up list", cloud.TotalCalls())
	}
}

// BenchmarkInstanceMetadataCached measures the hit path of InstanceMetadata.
func BenchmarkInstanceMetadataCached(b *testing.B) {
	benchHit(b, func(ctx context.Context, v2 *instances.InstancesV2, n *v1.Node) error {
		_, err := v2.InstanceMetadata(ctx, n)
		return err
	})
}

// BenchmarkInstanceExistsCached measures the hit path of InstanceExists.
func BenchmarkInstanceExistsCached(b *testing.B) {
	benchHit(b, func(ctx context.Context, v2 *instances.InstancesV2, n *v1.Node) error {
		_, err := v2.InstanceExists(ctx, n)
		return err
	})
}

// TestCachedHitPathAllocations pins the hit path's allocations: none for
// InstanceExists, three for InstanceMetadata (the result, its address copy,
// the providerID string), which the caller owns.
func TestCachedHitPathAllocations(t *testing.T) {
	v2, nodes, _ := warmV2(t, 10)
	ctx := t.Context()
	if got := testing.AllocsPerRun(100, func() { _, _ = v2.InstanceExists(ctx, nodes[1]) }); got != 0 {
		t.Errorf("InstanceExists hit: %v allocs, want 0", got)
	}
	if got := testing.AllocsPerRun(100, func() { _, _ = v2.InstanceMetadata(ctx, nodes[1]) }); got > 3 {
		t.Errorf("InstanceMetadata hit: %v allocs, want at most 3", got)
	}
}
