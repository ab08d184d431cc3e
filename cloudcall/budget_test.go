package cloudcall_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/component-base/metrics/testutil"
	clocktesting "k8s.io/utils/clock/testing"

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
		require.NoError(t, b2.HoldUntil(cloudcall.Write("lb", "Delete"), time.Now().Add(4*time.Second)))
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
			WriteQPS: 1, WriteBurst: 1, MaxWait: 2 * time.Second, Reserved: map[string]float64{"instances": 0},
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

// hang is a cloud call that never answers: it returns only when its context
// ends.
func hang(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestAttemptTimeoutBoundsAHungCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{AttemptTimeout: 10 * time.Second, MaxAttempts: 2})
		start := time.Now()
		var deadlines []time.Duration
		// The upstream controllers pass context.TODO() on several paths.
		err := b.Do(context.TODO(), cloudcall.Read("instances", "Get"), func(ctx context.Context) error {
			d, ok := ctx.Deadline()
			require.True(t, ok, "every attempt has a deadline")
			deadlines = append(deadlines, d.Sub(start))
			return hang(ctx)
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, cloudcall.ClassTransient, cloudcall.Classify(err), "a timed-out attempt is transient")
		assert.Contains(t, err.Error(), "2 attempts")
		// 10s, 250ms of backoff, 10s.
		assert.Equal(t, []time.Duration{10 * time.Second, 10250*time.Millisecond + 10*time.Second}, deadlines)
		assert.Equal(t, 20250*time.Millisecond, time.Since(start))
	})
}

func TestAttemptTimeoutKeepsAnEarlierCallerDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		want, _ := ctx.Deadline()
		err := b.Do(ctx, cloudcall.Read("instances", "Get"), func(actx context.Context) error {
			got, ok := actx.Deadline()
			assert.True(t, ok)
			assert.Equal(t, want, got)
			return hang(actx)
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(want.Add(-time.Second)))
	})
}

func TestAttemptTimeoutOnFakeClock(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	b, err := cloudcall.NewBudget(cloudcall.BudgetOptions{Clock: clk, AttemptTimeout: time.Minute, MaxAttempts: 1})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- b.Do(context.Background(), cloudcall.Read("lb", "Get"), hang)
	}()
	for !clk.HasWaiters() {
		runtime.Gosched()
	}
	clk.Step(time.Minute)
	require.ErrorIs(t, <-done, context.DeadlineExceeded, "the attempt's deadline runs on the injected clock")
}

func TestNilBudgetBoundsTheCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *cloudcall.Budget
		start := time.Now()
		err := b.Do(context.TODO(), cloudcall.Read("x", "y"), hang)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, cloudcall.DefaultAttemptTimeout, time.Since(start))
		assert.Equal(t, cloudcall.DefaultAttemptTimeout, b.AttemptTimeout())
	})
}

func TestMaxWaitDoesNotCountTimeInCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{MaxWait: time.Second})
		calls := 0
		err := b.Do(t.Context(), cloudcall.Read("lb", "Get"), func(ctx context.Context) error {
			calls++
			time.Sleep(5 * time.Second) // a slow cloud call (simulated time: synctest bubble)
			if calls < 3 {
				return cloudcall.Transient(errors.New("503"))
			}
			return nil
		})
		require.NoError(t, err, "15s in calls and 750ms of backoff fit a 1s wait budget")
		assert.Equal(t, 3, calls)
	})
}

func TestBackoffOverrunIsThrottledAndKeepsTheCloudError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{MaxWait: 600 * time.Millisecond, MaxAttempts: 10})
		cause := errors.New("503 service unavailable")
		calls := 0
		start := time.Now()
		err := b.Do(t.Context(), cloudcall.Read("lb", "Get"), func(context.Context) error {
			calls++
			return cloudcall.Transient(cause)
		})
		// Attempt 1, 250ms backoff (350ms left), attempt 2, then 500ms > 350ms.
		assert.Equal(t, 2, calls)
		assert.Equal(t, 250*time.Millisecond, time.Since(start), "fails fast instead of overrunning")
		var te *cloudcall.ThrottledError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, 500*time.Millisecond, te.RetryAfter, "come back after the backoff it did not wait")
		assert.ErrorIs(t, err, cloudcall.ErrBudgetExhausted)
		assert.ErrorIs(t, err, cause, "the chain keeps the last cloud error")
		assert.ErrorIs(t, err, cloudcall.ErrTransient)
		assert.Equal(t, cloudcall.ClassThrottled, cloudcall.Classify(err))
		assert.Contains(t, err.Error(), "after 2 attempts")
	})
}

func TestOutOfAttemptsIsNotThrottled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{})
		err := b.Do(t.Context(), cloudcall.Read("lb", "Get"), func(context.Context) error {
			return cloudcall.Transient(errors.New("500"))
		})
		require.ErrorIs(t, err, cloudcall.ErrTransient)
		assert.NotErrorIs(t, err, cloudcall.ErrThrottled, "an outage is not throttling: the caller keeps its own backoff")
		assert.NotErrorIs(t, err, cloudcall.ErrBudgetExhausted)
	})
}

func TestRetryAfterBeyondMaxWaitKeepsTheCloudError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{MaxWait: 5 * time.Second})
		cause := errors.New("429 too many requests")
		calls := 0
		err := b.Do(t.Context(), cloudcall.Write("lb", "Create"), func(context.Context) error {
			calls++
			return cloudcall.Throttled(time.Minute, cause)
		})
		assert.Equal(t, 1, calls)
		var te *cloudcall.ThrottledError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, time.Minute, te.RetryAfter)
		assert.ErrorIs(t, err, cause)
		assert.ErrorIs(t, err, cloudcall.ErrBudgetExhausted)
		assert.Contains(t, err.Error(), "after 1 attempts")
	})
}

func TestGateIsReReadAfterEveryWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{MaxWait: 10 * time.Second})
		c := cloudcall.Read("lb", "Get")
		start := time.Now()
		require.NoError(t, b.HoldUntil(c, start.Add(2*time.Second)))
		go func() {
			time.Sleep(time.Second) // simulated time: synctest bubble
			// Another worker's call got a 429 meanwhile.
			assert.NoError(t, b.HoldUntil(c, start.Add(5*time.Second)))
		}()
		var calledAt time.Duration
		require.NoError(t, b.Do(t.Context(), c, func(context.Context) error {
			calledAt = time.Since(start)
			return nil
		}))
		assert.Equal(t, 5*time.Second, calledAt, "held until the extended gate, not the one first read")

		// A Retry-After within the wait budget replaces the backoff, and the
		// next attempt starts when the gate opens.
		calls := 0
		start = time.Now()
		require.NoError(t, b.Do(t.Context(), c, func(context.Context) error {
			if calls++; calls == 1 {
				return cloudcall.Throttled(3*time.Second, nil)
			}
			return nil
		}))
		assert.Equal(t, 3*time.Second, time.Since(start))
	})
}

func TestRetryAfterGatesArePerFamily(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{MaxWait: time.Second})
		ctx := t.Context()
		ok := func(context.Context) error { return nil }
		err := b.Do(ctx, cloudcall.Read("lb", "GetLoadBalancer"), func(context.Context) error {
			return cloudcall.Throttled(time.Minute, errors.New("429 from the load-balancer API"))
		})
		require.ErrorIs(t, err, cloudcall.ErrThrottled)

		start := time.Now()
		require.NoError(t, b.Do(ctx, cloudcall.Read("instances", "GetInstance"), ok), "node initialization reads another family")
		require.NoError(t, b.Do(ctx, cloudcall.Write("lb", "CreateLoadBalancer"), ok), "writes have their own gate")
		assert.Zero(t, time.Since(start))
		err = b.Do(ctx, cloudcall.Read("routes", "ListRoutes").InFamily("lb"), ok)
		require.ErrorIs(t, err, cloudcall.ErrThrottled, "a call naming the family shares its gate")
		err = b.Do(ctx, cloudcall.Read("lb", "GetLoadBalancer"), ok)
		require.ErrorIs(t, err, cloudcall.ErrThrottled)
		assert.InDelta(t, time.Minute, func() time.Duration { d, _ := cloudcall.RetryAfter(err); return d }(), float64(time.Second))
		assert.Zero(t, time.Since(start), "fails fast")
	})
}

func TestCallMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(t, cloudcall.BudgetOptions{})
		calls := 0
		c := cloudcall.Read("instances", "ListInstances")
		c.MaxAttempts = 1
		err := b.Do(t.Context(), c, func(context.Context) error {
			calls++
			return cloudcall.Transient(nil)
		})
		require.ErrorIs(t, err, cloudcall.ErrTransient)
		assert.Equal(t, 1, calls, "no in-call retry")
	})
}

func TestInvalidCallIsAnError(t *testing.T) {
	b := newBudget(t, cloudcall.BudgetOptions{})
	var nilBudget *cloudcall.Budget
	called := false
	fn := func(context.Context) error { called = true; return nil }
	bad := cloudcall.Call{Block: "lb", Op: "Get", Kind: cloudcall.Kind(7)}
	negative := cloudcall.Read("lb", "Get")
	negative.MaxAttempts = -1
	for _, budget := range []*cloudcall.Budget{b, nilBudget} {
		require.ErrorIs(t, budget.Do(t.Context(), bad, fn), cloudcall.ErrInvalidCall)
		require.ErrorIs(t, budget.Do(t.Context(), negative, fn), cloudcall.ErrInvalidCall)
		require.ErrorIs(t, budget.Do(t.Context(), cloudcall.Read("lb", "Get"), nil), cloudcall.ErrInvalidCall)
		require.ErrorIs(t, budget.Wait(t.Context(), bad), cloudcall.ErrInvalidCall)
		require.ErrorIs(t, budget.HoldUntil(bad, time.Now()), cloudcall.ErrInvalidCall)
	}
	assert.False(t, called)
	assert.Equal(t, "Kind(7)", bad.Kind.String())
}

func TestInstancesReservationStays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		free := func(b *cloudcall.Budget, block string) int {
			n := 0
			for start := time.Now(); ; n++ {
				require.NoError(t, b.Wait(ctx, cloudcall.Read(block, "Get")))
				if time.Since(start) > 0 {
					return n
				}
			}
		}
		// An author's map without "instances" keeps its 30%.
		b := newBudget(t, cloudcall.BudgetOptions{ReadQPS: 10, ReadBurst: 10, MaxWait: time.Second, Reserved: map[string]float64{"lb": 0.2}})
		assert.Equal(t, 5, free(b, "routes"), "the shared half: 1 - 0.2 - 0.3")
		assert.Equal(t, 3, free(b, "instances"), "the instances share survives")

		// Setting it explicitly to 0 removes it.
		b = newBudget(t, cloudcall.BudgetOptions{ReadQPS: 10, ReadBurst: 10, MaxWait: time.Second, Reserved: map[string]float64{"instances": 0}})
		assert.Equal(t, 10, free(b, "routes"))

		_, err := cloudcall.NewBudget(cloudcall.BudgetOptions{Reserved: map[string]float64{"lb": 0.8}})
		require.ErrorIs(t, err, cloudcall.ErrInvalidOptions, "0.8 plus the default 0.3 for instances is too much")
		assert.Contains(t, err.Error(), `"instances"`)
	})
}
