package instances_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// outageResult is one run of the List outage.
type outageResult struct {
	lists      int // List calls the cloud received while the outage lasted
	nodeErrors int // calls answered with an error during the outage
	afterErrs  int // calls answered with an error after the recovery
}

// listOutage replays upstream's call pattern for n nodes in list mode
// (InstanceMetadata for every node every 5 minutes; InstanceExists and
// InstanceShutdown every 5 seconds per NotReady node, 1%) for 15 simulated
// minutes, every List answering 503 from minute 5 to minute 10. Every node's
// entry is cached before the outage. The cache runs behind a default budget;
// the clock is a fake one, stepped 5 seconds at a time.
func listOutage(ctx context.Context, tb testing.TB, n int) outageResult {
	cloud, nodes := cluster(tb, n)
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	budget, err := cloudcall.NewBudget(cloudcall.BudgetOptions{Clock: clk})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := instances.NewCache(cloud.Instances(), instances.CacheOptions{Clock: clk, Budget: budget})
	if err != nil {
		tb.Fatal(err)
	}
	v2 := instances.NewInstancesV2(c, "fake")
	notReady := nodes[:len(nodes)/100]

	const (
		outageStart = 5 * time.Minute
		outageEnd   = 10 * time.Minute
		runFor      = 15 * time.Minute
	)
	var (
		r          outageResult
		stop       func()
		listsStart int
	)
	check := func(tick time.Duration, err error) {
		switch {
		case err == nil:
		case tick >= outageStart && tick < outageEnd:
			r.nodeErrors++
		default:
			r.afterErrs++
		}
	}
	for tick := time.Duration(0); tick < runFor; tick += 5 * time.Second {
		switch tick {
		case outageStart:
			listsStart = cloud.Count(fakecloud.OpListInstances)
			stop = cloud.Inject(fakecloud.OpListInstances, fakecloud.Fault{Err: cloudcall.Transient(errors.New("503 service unavailable"))})
		case outageEnd:
			stop()
			r.lists = cloud.Count(fakecloud.OpListInstances) - listsStart
		}
		if tick%(5*time.Minute) == 0 {
			for _, n := range nodes {
				_, err := v2.InstanceMetadata(ctx, n)
				check(tick, err)
			}
		}
		for _, n := range notReady {
			_, err := v2.InstanceExists(ctx, n)
			check(tick, err)
			_, err = v2.InstanceShutdown(ctx, n)
			check(tick, err)
		}
		clk.Step(5 * time.Second)
	}
	return r
}

func TestListOutage(t *testing.T) {
	r := listOutage(t.Context(), t, 500)
	if r.lists > 31 {
		t.Errorf("%d List calls during a 5-minute outage, want at most 31 (one per 10s negative TTL)", r.lists)
	}
	if r.lists < 29 {
		t.Errorf("%d List calls during a 5-minute outage: the cache stopped trying to recover", r.lists)
	}
	if r.nodeErrors != 0 || r.afterErrs != 0 {
		t.Errorf("%d errors during the outage and %d after, want 0: entries cached before it answer for 10 minutes", r.nodeErrors, r.afterErrs)
	}
}

// BenchmarkListOutage reports, per run, the List calls the fake cloud
// receives during a 5-minute List outage of a 5,000-node cluster in list
// mode (lists-during-outage, attempts included) and the calls answered with
// an error during it though every entry had been cached before it
// (node-errors-during-outage).
func BenchmarkListOutage(b *testing.B) {
	var lists, nodeErrors int
	for b.Loop() {
		r := listOutage(b.Context(), b, 5000)
		if r.afterErrs != 0 {
			b.Fatalf("%d errors after the outage", r.afterErrs)
		}
		lists += r.lists
		nodeErrors += r.nodeErrors
	}
	b.ReportMetric(float64(lists)/float64(b.N), "lists-during-outage")
	b.ReportMetric(float64(nodeErrors)/float64(b.N), "node-errors-during-outage")
}
