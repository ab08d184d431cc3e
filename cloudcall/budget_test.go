package cloudcall_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/component-base/metrics/testutil"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// newBudget returns a budget with deterministic backoff (no jitter).
func newBudget(t *testing.T, o cloudcall.BudgetOptions) *cloudcall.Budget {
	t.Helper()
	o.Jitter = -1
	b, err := cloudcall.NewBudget(o)
	require.NoError(t, err)
	return b
}

func TestClassify(t *testing.T) {
	cause := errors.New("boom")
	for _, tc := range []struct {
		err  error
		want cloudcall.Class
	}{
		{nil, cloudcall.ClassOK},
		{cloudcall.NotFound(cause), cloudcall.ClassNotFound},
		{cloudcall.Transient(cause), cloudcall.ClassTransient},
		{cloudcall.Throttled(time.Second, cause), cloudcall.ClassThrottled},
		{cloudcall.Permanent(cause), cloudcall.ClassPermanent},
		{cause, cloudcall.ClassPermanent},
		{context.DeadlineExceeded, cloudcall.ClassTransient},
		{errors.Join(cause, cloudcall.Transient(nil)), cloudcall.ClassTransient},
	} {
		assert.Equal(t, tc.want, cloudcall.Classify(tc.err), "%v", tc.err)
	}
	assert.ErrorIs(t, cloudcall.NotFound(cause), cause, "the cause stays reachable")
	ra, ok := cloudcall.RetryAfter(errors.Join(errors.New("x"), cloudcall.Throttled(3*time.Second, nil)))
	assert.True(t, ok)
	assert.Equal(t, 3*time.Second, ra)
	_, ok = cloudcall.RetryAfter(cloudcall.Throttled(0, nil))
	assert.False(t, ok, "no Retry-After hint")
}

func TestDoRetriesTransientWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{MaxAttempts: 4})
		start := time.Now()
		calls := 0
		err := b.Do(t.Context(), cloudcall.Read("lb", "Get"), func(context.Context) error {
			calls++
			return cloudcall.Transient(errors.New("503"))
		})
		require.ErrorIs(t, err, cloudcall.ErrTransient)
		assert.Contains(t, err.Error(), "4 attempts")
		assert.Equal(t, 4, calls)
		// 250ms + 500ms + 1s of backoff between the four attempts.
		assert.Equal(t, 1750*time.Millisecond, time.Since(start))
	})
}

func TestDoSucceedsAfterTransient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{})
		calls := 0
		err := b.Do(t.Context(), cloudcall.Write("lb", "Create"), func(context.Context) error {
			calls++
			if calls < 3 {
				return cloudcall.Transient(nil)
			}
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, 3, calls)
	})
}

func TestDoReturnsTerminalErrorsUnchanged(t *testing.T) {
	b := newBudget(t, cloudcall.BudgetOptions{})
	for _, want := range []error{
		cloudprovider.InstanceNotFound,
		cloudprovider.ImplementedElsewhere,
		cloudcall.NotFound(errors.New("gone")),
		cloudcall.Permanent(errors.New("quota")),
		errors.New("unclassified"),
	} {
		calls := 0
		got := b.Do(t.Context(), cloudcall.Read("instances", "Get"), func(context.Context) error {
			calls++
			return want
		})
		assert.True(t, got == want, "want %v unchanged (upstream compares with ==), got %v", want, got)
		assert.Equal(t, 1, calls, "%v must not be retried", want)
	}
}

func TestRetryAfterWithinBudgetWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{MaxWait: 10 * time.Second})
		start := time.Now()
		calls := 0
		err := b.Do(t.Context(), cloudcall.Read("lb", "List"), func(context.Context) error {
			calls++
			if calls == 1 {
				return cloudcall.Throttled(3*time.Second, errors.New("429"))
			}
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, 2, calls)
		assert.Equal(t, 3*time.Second, time.Since(start), "held until the cloud's Retry-After")
	})
}

func TestRetryAfterBeyondBudgetFailsFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{MaxWait: 5 * time.Second})
		ctx := t.Context()
		err := b.Do(ctx, cloudcall.Write("lb", "Create"), func(context.Context) error {
			return cloudcall.Throttled(time.Minute, errors.New("429"))
		})
		require.ErrorIs(t, err, cloudcall.ErrThrottled)

		// The gate now holds every write for a minute: fail at once, no call.
		start := time.Now()
		called := false
		err = b.Do(ctx, cloudcall.Write("lb", "Delete"), func(context.Context) error {
			called = true
			return nil
		})
		var te *cloudcall.ThrottledError
		require.ErrorAs(t, err, &te)
		assert.False(t, called)
		assert.Zero(t, time.Since(start), "must not block")
		assert.InDelta(t, time.Minute, te.RetryAfter, float64(time.Second))

		// Reads have their own gate.
		require.NoError(t, b.Do(ctx, cloudcall.Read("lb", "Get"), func(context.Context) error { return nil }))

		// Once the deadline is within the wait budget, a write waits for it
		// (simulated time) and then passes.
		start = time.Now()
		b2 := newBudget(t, cloudcall.BudgetOptions{MaxWait: 5 * time.Second})
		b2.HoldUntil(cloudcall.KindWrite, time.Now().Add(4*time.Second))
		require.NoError(t, b2.Do(ctx, cloudcall.Write("lb", "Delete"), func(context.Context) error { return nil }))
		assert.Equal(t, 4*time.Second, time.Since(start), "held exactly until the gate opened")
	})
}

func TestReservedShareIsNotStarved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{
			ReadQPS: 10, ReadBurst: 10, MaxWait: time.Second,
			Reserved: map[string]float64{"instances": 0.5},
		})
		ctx := t.Context()
		// The lb block drains the shared bucket until it has to wait.
		lbFree := 0
		for start := time.Now(); ; lbFree++ {
			require.NoError(t, b.Wait(ctx, cloudcall.Read("lb", "Get")))
			if time.Since(start) > 0 {
				break
			}
		}
		assert.Equal(t, 5, lbFree, "lb gets only the shared half of the burst")
		// Node initialization still gets its reserved tokens at once.
		start := time.Now()
		for range 5 {
			require.NoError(t, b.Wait(ctx, cloudcall.Read("instances", "Get")))
		}
		assert.Zero(t, time.Since(start))
	})
}

func TestWaitIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{
			WriteQPS: 1, WriteBurst: 1, MaxWait: 2 * time.Second, Reserved: map[string]float64{},
		})
		var (
			mu        sync.Mutex
			ok, fails int
			wg        sync.WaitGroup
		)
		start := time.Now()
		for range 6 {
			wg.Go(func() {
				err := b.Wait(t.Context(), cloudcall.Write("lb", "Update"))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					assert.ErrorIs(t, err, cloudcall.ErrThrottled)
					fails++
					return
				}
				ok++
			})
		}
		wg.Wait()
		assert.Equal(t, 3, ok, "one token now, then one a second within the 2s wait")
		assert.Equal(t, 3, fails)
		assert.LessOrEqual(t, time.Since(start), 2*time.Second)
	})
}

func TestContextCancelStopsWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		err := b.Do(ctx, cloudcall.Read("lb", "Get"), func(ctx context.Context) error {
			return cloudcall.Transient(nil)
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestInvalidOptionsReportsEveryProblem(t *testing.T) {
	_, err := cloudcall.NewBudget(cloudcall.BudgetOptions{
		ReadQPS:  -1,
		Reserved: map[string]float64{"a": 0.6, "b": 0.6},
		Jitter:   2,
	})
	require.ErrorIs(t, err, cloudcall.ErrInvalidOptions)
	for _, want := range []string{"ReadQPS", "add up to", "jitter"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestNilBudgetRunsOnce(t *testing.T) {
	var b *cloudcall.Budget
	calls := 0
	err := b.Do(t.Context(), cloudcall.Read("x", "y"), func(context.Context) error {
		calls++
		return cloudcall.Transient(nil)
	})
	require.ErrorIs(t, err, cloudcall.ErrTransient)
	assert.Equal(t, 1, calls)
	require.NoError(t, b.Wait(t.Context(), cloudcall.Read("x", "y")))
}

func TestMetrics(t *testing.T) {
	b := newBudget(t, cloudcall.BudgetOptions{})
	ctx := t.Context()
	_ = b.Do(ctx, cloudcall.Read("instances", "Get"), func(context.Context) error { return nil })
	_ = b.Do(ctx, cloudcall.Read("instances", "Get"), func(context.Context) error { return cloudcall.NotFound(nil) })
	want := `
# HELP ccmkit_cloud_calls_total [ALPHA] Cloud API calls by block, operation and result (ok, not_found, transient, throttled, permanent).
# TYPE ccmkit_cloud_calls_total counter
ccmkit_cloud_calls_total{block="instances",op="Get",result="not_found"} 1
ccmkit_cloud_calls_total{block="instances",op="Get",result="ok"} 1
`
	require.NoError(t, testutil.GatherAndCompare(b.Gatherer(), strings.NewReader(want), "ccmkit_cloud_calls_total"))
}
