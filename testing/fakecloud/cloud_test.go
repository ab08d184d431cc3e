package fakecloud_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

func cloudWith(t *testing.T, opts fakecloud.Options) (*fakecloud.Cloud, *fakecloud.InstanceBackend) {
	t.Helper()
	c := fakecloud.New(opts)
	require.NoError(t, c.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")))
	return c, c.Instances()
}

func lookup(t *testing.T, b *fakecloud.InstanceBackend) error {
	t.Helper()
	_, err := b.Lookup(t.Context(), instances.Key{ID: "i-1"})
	return err
}

func TestFaultTimes(t *testing.T) {
	c, b := cloudWith(t, fakecloud.Options{})
	boom := cloudcall.Transient(errors.New("boom"))
	c.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: boom, Times: 2})
	require.ErrorIs(t, lookup(t, b), boom)
	require.ErrorIs(t, lookup(t, b), boom)
	require.NoError(t, lookup(t, b))
	assert.Equal(t, 3, c.Count(fakecloud.OpGetInstance), "failed calls are counted too")
}

func TestFaultForeverAndRemove(t *testing.T) {
	c, b := cloudWith(t, fakecloud.Options{})
	remove := c.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: cloudcall.Permanent(nil)})
	for range 5 {
		require.ErrorIs(t, lookup(t, b), cloudcall.ErrPermanent)
	}
	remove()
	require.NoError(t, lookup(t, b))
	// Faults apply per operation only.
	c.Inject(fakecloud.OpListInstances, fakecloud.Fault{Err: cloudcall.Permanent(nil)})
	require.NoError(t, lookup(t, b))
	_, err := b.List(t.Context())
	require.ErrorIs(t, err, cloudcall.ErrPermanent)
}

func TestFaultRateIsSeeded(t *testing.T) {
	run := func(seed uint64) []bool {
		c, b := cloudWith(t, fakecloud.Options{Seed: seed})
		c.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: cloudcall.Transient(nil), Rate: 0.3})
		var failed []bool
		for range 200 {
			failed = append(failed, lookup(t, b) != nil)
		}
		return failed
	}
	a, again, other := run(7), run(7), run(8)
	assert.Equal(t, a, again, "the same seed replays the same failures")
	assert.NotEqual(t, a, other)
	n := 0
	for _, f := range a {
		if f {
			n++
		}
	}
	assert.InDelta(t, 60, n, 25, "about 30%% of 200 calls fail")
}

func TestFaultRetryAfter(t *testing.T) {
	c, b := cloudWith(t, fakecloud.Options{})
	c.Inject(fakecloud.OpGetInstance, fakecloud.Fault{RetryAfter: 7 * time.Second, Times: 1})
	err := lookup(t, b)
	require.ErrorIs(t, err, cloudcall.ErrThrottled)
	ra, ok := cloudcall.RetryAfter(err)
	require.True(t, ok)
	assert.Equal(t, 7*time.Second, ra)
}

func TestFaultLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, b := cloudWith(t, fakecloud.Options{})
		c.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Latency: 3 * time.Second})
		start := time.Now()
		require.NoError(t, lookup(t, b))
		assert.Equal(t, 3*time.Second, time.Since(start))

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := b.Lookup(ctx, instances.Key{ID: "i-1"})
		require.ErrorIs(t, err, context.DeadlineExceeded, "latency honours the caller's context")
	})
}

func TestBaselineLatencyComposesWithFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, b := cloudWith(t, fakecloud.Options{Latency: time.Second, Seed: 3})
		c.SetLatency(fakecloud.OpGetInstance, 100*time.Millisecond)
		c.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Latency: 50 * time.Millisecond})
		c.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: cloudcall.Transient(errors.New("500")), Rate: 0.2})
		c.Inject(fakecloud.OpGetInstance, fakecloud.Fault{RetryAfter: 5 * time.Second, Times: 1})
		var transient, throttled, ok int
		for range 200 {
			start := time.Now()
			err := lookup(t, b)
			require.Equal(t, 150*time.Millisecond, time.Since(start), "baseline plus the latency fault, on every call")
			switch cloudcall.Classify(err) {
			case cloudcall.ClassOK:
				ok++
			case cloudcall.ClassTransient:
				transient++
			case cloudcall.ClassThrottled:
				throttled++
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		assert.Equal(t, 1, throttled, "the 429 fires once, on the first call the error rate spares")
		assert.InDelta(t, 40, transient, 15, "about 20%% of 200 calls fail")
		assert.Equal(t, 200, ok+transient+throttled)

		// Other operations keep the cloud-wide baseline.
		start := time.Now()
		_, err := b.List(t.Context())
		require.NoError(t, err)
		assert.Equal(t, time.Second, time.Since(start))
	})
}

func TestHangUntilContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, b := cloudWith(t, fakecloud.Options{})
		c.Inject(fakecloud.OpListInstances, fakecloud.Fault{Hang: true, Times: 1})
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		start := time.Now()
		_, err := b.List(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 30*time.Second, time.Since(start), "a hung call answers only when its context ends")
		list, err := b.List(t.Context())
		require.NoError(t, err)
		assert.Len(t, list, 1)
	})
}

func TestCrashPointAfterRead(t *testing.T) {
	c, b := cloudWith(t, fakecloud.Options{})
	boom := cloudcall.Transient(errors.New("connection reset after the response was computed"))
	c.Inject(fakecloud.OpGetInstance, fakecloud.Fault{Err: boom, After: true, Times: 1})
	inst, err := b.Lookup(t.Context(), instances.Key{ID: "i-1"})
	require.ErrorIs(t, err, boom)
	assert.Nil(t, inst, "a failed call returns no result, even after its effect")
	require.NoError(t, lookup(t, b))
}

func TestReadLag(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := fakecloud.New(fakecloud.Options{Clock: clk, ReadLag: 2 * time.Second})
	b := c.Instances()
	ctx := t.Context()
	list := func() []string {
		t.Helper()
		l, err := b.List(ctx)
		require.NoError(t, err)
		var ids []string
		for _, inst := range l {
			ids = append(ids, inst.ID+"/"+inst.State.String())
		}
		return ids
	}

	require.NoError(t, c.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")))
	require.Error(t, c.AddInstance(fakecloud.NewInstance("i-1", "node-x", "10.0.0.1")), "the write is durable at once")
	_, err := b.Lookup(ctx, instances.Key{ID: "i-1"})
	require.ErrorIs(t, err, cloudcall.ErrNotFound, "reads lag the write")
	_, err = b.Lookup(ctx, instances.Key{NodeName: "node-1"})
	require.ErrorIs(t, err, cloudcall.ErrNotFound)
	assert.Empty(t, list())

	clk.Step(2 * time.Second)
	inst, err := b.Lookup(ctx, instances.Key{NodeName: "node-1"})
	require.NoError(t, err)
	assert.Equal(t, "i-1", inst.ID)

	require.NoError(t, c.SetInstanceState("i-1", instances.StateStopped))
	clk.Step(time.Second)
	require.NoError(t, c.SetInstanceState("i-1", instances.StateTerminated))
	assert.Equal(t, []string{"i-1/running"}, list())
	clk.Step(time.Second)
	assert.Equal(t, []string{"i-1/stopped"}, list(), "each version shows once its lag has passed")
	clk.Step(time.Second)
	assert.Equal(t, []string{"i-1/terminated"}, list())

	c.RemoveInstance("i-1")
	clk.Step(time.Second)
	inst, err = b.Lookup(ctx, instances.Key{ID: "i-1"})
	require.NoError(t, err, "a removed instance is still read until the lag passes")
	assert.Equal(t, instances.StateTerminated, inst.State)
	clk.Step(time.Second)
	_, err = b.Lookup(ctx, instances.Key{ID: "i-1"})
	require.ErrorIs(t, err, cloudcall.ErrNotFound)
	require.NoError(t, c.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")), "the ID is free again")

	c.SetReadLag(0)
	require.NoError(t, c.SetInstanceState("i-1", instances.StateStopped))
	assert.Equal(t, []string{"i-1/stopped"}, list(), "without lag reads see every write")
}

func TestCallLogTimesAndRate(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := fakecloud.New(fakecloud.Options{Clock: clk})
	require.NoError(t, c.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")))
	b := c.Instances()
	start := clk.Now()
	// Calls at 0, 0.5, 0.9, 1.2, 1.3, 1.4 and 3.0 s: the densest second is
	// [0.5, 1.5) with five calls.
	for _, at := range []time.Duration{0, 500, 900, 1200, 1300, 1400, 3000} {
		clk.SetTime(start.Add(at * time.Millisecond))
		_, err := b.Lookup(t.Context(), instances.Key{ID: "i-1"})
		require.NoError(t, err)
	}
	_, err := b.List(t.Context())
	require.NoError(t, err)
	calls := c.Calls()
	require.Len(t, calls, 8)
	assert.Equal(t, start, calls[0].At)
	assert.Equal(t, start.Add(1200*time.Millisecond), calls[3].At, "each call records the clock's time")
	assert.Equal(t, 5, c.MaxCallsPerSecond(fakecloud.OpGetInstance))
	assert.Equal(t, 1, c.MaxCallsPerSecond(fakecloud.OpListInstances))
	assert.Zero(t, c.MaxCallsPerSecond("NoSuchOp"))
}

func TestCallLogAndState(t *testing.T) {
	c, b := cloudWith(t, fakecloud.Options{})
	require.Error(t, c.AddInstance(fakecloud.NewInstance("i-1", "other", "10.0.0.2")), "duplicate ID")
	require.Error(t, c.AddInstance(fakecloud.NewInstance("i-2", "node-1", "10.0.0.2")), "duplicate node name")
	require.Error(t, c.AddInstance(instances.Instance{ID: "i-3"}), "no state")
	require.ErrorIs(t, c.SetInstanceState("i-9", instances.StateStopped), cloudcall.ErrNotFound)

	got, err := b.Lookup(t.Context(), instances.Key{NodeName: "node-1"})
	require.NoError(t, err)
	got.Addresses[0].Address = "mutated"
	again, err := b.Lookup(t.Context(), instances.Key{ID: "i-1"})
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.1", again.Addresses[0].Address, "results are copies")

	c.RemoveInstance("i-1")
	_, err = b.Lookup(t.Context(), instances.Key{ID: "i-1"})
	require.ErrorIs(t, err, cloudcall.ErrNotFound)

	calls := c.Calls()
	require.Len(t, calls, 3)
	assert.Equal(t, fakecloud.OpGetInstance, calls[0].Op)
	assert.Equal(t, "node:node-1", calls[0].Arg)
	assert.NoError(t, calls[0].Err)
	assert.ErrorIs(t, calls[2].Err, cloudcall.ErrNotFound)
	c.ResetCalls()
	assert.Zero(t, c.TotalCalls())
}
