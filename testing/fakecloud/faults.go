package fakecloud

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// Op names a backend operation, for Inject, SetLatency, Count and the call
// log. Each backend declares its operations as Op constants.
type Op string

// Fault describes how an operation misbehaves. The zero Fault does nothing.
//
// Several faults on one operation compose: on each call every fault is
// consulted in the order it was injected; the latencies of all that apply
// add up (on top of the operation's baseline latency, see
// [Cloud.SetLatency]); the first one that applies and fails the call (Err,
// RetryAfter or Hang) decides the call's error, and the failing faults after
// it are not consulted for that call (their Times are not used up).
type Fault struct {
	// Err is returned by matching calls. Classify it with the cloudcall
	// helpers (cloudcall.Transient(...)) to have it retried.
	Err error
	// RetryAfter, when positive, makes matching calls fail with a 429:
	// cloudcall.Throttled(RetryAfter, Err).
	RetryAfter time.Duration
	// Latency delays matching calls on the cloud's clock. A call whose
	// context ends while it waits returns the context's error.
	Latency time.Duration
	// Hang makes matching calls never answer: they block until their
	// context ends and return its error, as a cloud that accepted the
	// connection and went silent.
	Hang bool
	// After makes this a crash point: the fault applies after the
	// operation's effect, so the resource is created, changed or deleted
	// and the call still fails (Err, RetryAfter) or never answers (Hang);
	// Latency is then added after the effect. Without After a failing fault
	// applies before the effect, and nothing changes in the cloud.
	After bool
	// Times is how many calls the fault applies to; 0 means every call.
	Times int
	// Rate, when in (0,1), applies the fault to that fraction of calls,
	// decided by the seeded generator. 0 means every call.
	Rate float64
}

func (f *Fault) fails() bool { return f.Err != nil || f.RetryAfter > 0 || f.Hang }

// Call is one recorded backend call.
type Call struct {
	Op  Op
	Arg string
	// At is the cloud clock's time when the call arrived.
	At time.Time
	// Err is what the call returned.
	Err error
}

type injected struct {
	Fault
	left int // remaining applications when Times > 0
}

// faults is the fault-injection, latency and call-log core shared by every
// backend. A backend runs each of its operations through call.
type faults struct {
	clock clock.Clock

	mu       sync.Mutex
	rng      *rand.Rand
	byOp     map[Op][]*injected
	baseline time.Duration
	latency  map[Op]time.Duration
	log      []Call
	counts   map[Op]int
}

func newFaults(clk clock.Clock, seed uint64, baseline time.Duration) *faults {
	return &faults{
		clock:    clk,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		byOp:     map[Op][]*injected{},
		baseline: baseline,
		latency:  map[Op]time.Duration{},
		counts:   map[Op]int{},
	}
}

func (f *faults) inject(op Op, flt Fault) func() {
	in := &injected{Fault: flt, left: flt.Times}
	f.mu.Lock()
	f.byOp[op] = append(f.byOp[op], in)
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		list := f.byOp[op]
		for i, x := range list {
			if x == in {
				f.byOp[op] = append(list[:i:i], list[i+1:]...)
				return
			}
		}
	}
}

func (f *faults) setLatency(op Op, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency[op] = d
}

// plan is what the faults decided for one call.
type plan struct {
	before, after time.Duration // latency around the effect
	fail          *Fault        // the failing fault, if any
}

func (f *faults) decide(op Op) plan {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := plan{before: f.baseline}
	if d, ok := f.latency[op]; ok {
		p.before = d
	}
	for _, in := range f.byOp[op] {
		if in.Times > 0 && in.left == 0 {
			continue
		}
		if p.fail != nil && in.fails() {
			continue // the first failing fault decides; later ones wait their turn
		}
		if in.Rate > 0 && in.Rate < 1 && f.rng.Float64() >= in.Rate {
			continue
		}
		if in.Times > 0 {
			in.left--
		}
		if in.After {
			p.after += in.Latency
		} else {
			p.before += in.Latency
		}
		if in.fails() {
			flt := in.Fault
			p.fail = &flt
		}
	}
	return p
}

// call runs one backend operation: it logs the call, waits the baseline and
// fault latencies, runs effect (the operation's read or write against the
// state) unless a fault fails the call first, applies crash-point faults
// after it, and returns the call's error. arg is what the log shows.
func (f *faults) call(ctx context.Context, op Op, arg string, effect func() error) (err error) {
	at := f.clock.Now()
	defer func() { f.record(op, arg, at, err) }()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fakecloud %s: %w", op, err)
	}
	p := f.decide(op)
	if err := f.wait(ctx, op, p.before); err != nil {
		return err
	}
	if p.fail != nil && !p.fail.After {
		return f.failWith(ctx, op, p.fail)
	}
	effErr := effect()
	if err := f.wait(ctx, op, p.after); err != nil {
		return err
	}
	if p.fail != nil {
		return f.failWith(ctx, op, p.fail)
	}
	return effErr
}

func (f *faults) wait(ctx context.Context, op Op, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := f.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("fakecloud %s: %w", op, ctx.Err())
	case <-t.C():
		return nil
	}
}

func (f *faults) failWith(ctx context.Context, op Op, flt *Fault) error {
	var err error
	switch {
	case flt.Hang:
		<-ctx.Done()
		err = ctx.Err()
	case flt.RetryAfter > 0:
		err = cloudcall.Throttled(flt.RetryAfter, flt.Err)
	default:
		err = flt.Err
	}
	return fmt.Errorf("fakecloud %s: %w", op, err)
}

func (f *faults) record(op Op, arg string, at time.Time, err error) {
	f.mu.Lock()
	f.log = append(f.log, Call{Op: op, Arg: arg, At: at, Err: err})
	f.counts[op]++
	f.mu.Unlock()
}

// maxInWindow returns the most calls of op that arrived within any window of
// length w (a half-open interval [t, t+w)).
func (f *faults) maxInWindow(op Op, w time.Duration) int {
	f.mu.Lock()
	var at []time.Time
	for _, c := range f.log {
		if c.Op == op {
			at = append(at, c.At)
		}
	}
	f.mu.Unlock()
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	most, lo := 0, 0
	for hi := range at {
		for !at[hi].Before(at[lo].Add(w)) {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}
