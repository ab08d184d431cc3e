package cloudcall

import (
	"context"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// attemptCtx is a context whose deadline is measured on an injected clock,
// so that fake clocks and testing/synctest bubbles drive attempt timeouts
// like every other wait of the budget.
type attemptCtx struct {
	context.Context // a cancelable child of the caller's context
	deadline        time.Time
	timedOut        atomic.Bool
}

// withAttemptTimeout returns a child of parent that ends with
// context.DeadlineExceeded after d on clk, or earlier with parent.
func withAttemptTimeout(parent context.Context, clk clock.Clock, d time.Duration) (context.Context, context.CancelFunc) {
	inner, cancel := context.WithCancelCause(parent)
	ctx := &attemptCtx{Context: inner, deadline: clk.Now().Add(d)}
	t := clk.NewTimer(d)
	go func() {
		defer t.Stop()
		select {
		case <-t.C():
			if inner.Err() == nil {
				ctx.timedOut.Store(true)
				cancel(context.DeadlineExceeded)
			}
		case <-inner.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// Deadline returns the earlier of the parent's deadline and the attempt's.
func (c *attemptCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Err returns context.DeadlineExceeded once the attempt timed out, else the
// parent's error.
func (c *attemptCtx) Err() error {
	err := c.Context.Err()
	if err != nil && c.timedOut.Load() && context.Cause(c.Context) == context.DeadlineExceeded {
		return context.DeadlineExceeded
	}
	return err
}
