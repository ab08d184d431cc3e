package fakecloud_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	assert.Equal(t, fakecloud.Call{Op: fakecloud.OpGetInstance, Arg: "node:node-1"}, calls[0])
	assert.ErrorIs(t, calls[2].Err, cloudcall.ErrNotFound)
	c.ResetCalls()
	assert.Zero(t, c.TotalCalls())
}
