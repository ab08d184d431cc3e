package fakecloud

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// Fault describes how an operation misbehaves. The zero Fault does nothing.
type Fault struct {
	// Err is returned by matching calls. Classify it with the cloudcall
	// helpers (cloudcall.Transient(...)) to have it retried.
	Err error
	// RetryAfter, when positive, makes matching calls fail with a 429:
	// cloudcall.Throttled(RetryAfter, Err).
	RetryAfter time.Duration
	// Latency delays matching calls on the cloud's clock.
	Latency time.Duration
	// Times is how many calls the fault applies to; 0 means every call.
	Times int
	// Rate, when in (0,1), applies the fault to that fraction of calls,
	// decided by the seeded generator. 0 means every call.
	Rate float64
}

// Call is one recorded backend call.
type Call struct {
	Op  string
	Arg string
	// Err is what the call returned.
	Err error
}

type injected struct {
	Fault
	left int // remaining applications when Times > 0
}

// faults is the fault-injection and call-log core shared by every backend.
type faults struct {
	clock clock.Clock

	mu     sync.Mutex
	rng    *rand.Rand
	byOp   map[string][]*injected
	log    []Call
	counts map[string]int
}

func newFaults(clk clock.Clock, seed uint64) *faults {
	return &faults{
		clock:  clk,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		byOp:   map[string][]*injected{},
		counts: map[string]int{},
	}
}

func (f *faults) inject(op string, flt Fault) func() {
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

// before runs at the start of every backend call: it counts the call, picks
// the first applicable fault, waits its latency and returns its error.
func (f *faults) before(ctx context.Context, op, arg string) error {
	if err := ctx.Err(); err != nil {
		f.record(op, arg, err)
		return err
	}
	f.mu.Lock()
	var hit *Fault
	for _, in := range f.byOp[op] {
		if in.Times > 0 && in.left == 0 {
			continue
		}
		if in.Rate > 0 && in.Rate < 1 && f.rng.Float64() >= in.Rate {
			continue
		}
		if in.Times > 0 {
			in.left--
		}
		flt := in.Fault
		hit = &flt
		break
	}
	f.mu.Unlock()
	if hit == nil {
		return nil
	}
	if hit.Latency > 0 {
		t := f.clock.NewTimer(hit.Latency)
		select {
		case <-ctx.Done():
			t.Stop()
			f.record(op, arg, ctx.Err())
			return ctx.Err()
		case <-t.C():
		}
	}
	var err error
	switch {
	case hit.RetryAfter > 0:
		err = cloudcall.Throttled(hit.RetryAfter, hit.Err)
	case hit.Err != nil:
		err = hit.Err
	}
	if err != nil {
		err = fmt.Errorf("fakecloud %s: %w", op, err)
		f.record(op, arg, err)
	}
	return err
}

// record logs a finished call. Backends call it once per call: before does
// for calls it fails, the backend for the rest.
func (f *faults) record(op, arg string, err error) {
	f.mu.Lock()
	f.log = append(f.log, Call{Op: op, Arg: arg, Err: err})
	f.counts[op]++
	f.mu.Unlock()
}
