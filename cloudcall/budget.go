package cloudcall

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/component-base/metrics"
	"k8s.io/utils/clock"
)

// Kind is the class of a cloud call for pacing: reads and writes have their
// own token bucket and their own Retry-After gate.
type Kind int

// The kinds of call.
const (
	KindRead Kind = iota
	KindWrite
)

func (k Kind) String() string {
	if k == KindWrite {
		return "write"
	}
	return "read"
}

// Call names one logical cloud call for pacing and metrics.
type Call struct {
	// Block is the ccmkit block or author component making the call
	// ("instances", "lb", "routes", ...). It selects a reserved share.
	Block string
	// Op is the cloud operation ("GetInstance", "CreateLoadBalancer", ...).
	Op string
	// Kind selects the token bucket and Retry-After gate.
	Kind Kind
}

// Read returns a read Call.
func Read(block, op string) Call { return Call{Block: block, Op: op, Kind: KindRead} }

// Write returns a write Call.
func Write(block, op string) Call { return Call{Block: block, Op: op, Kind: KindWrite} }

// BudgetOptions configures a Budget. The zero value means defaults.
type BudgetOptions struct {
	// ReadQPS and ReadBurst size the read bucket (defaults 20 and 40).
	ReadQPS   float64
	ReadBurst int
	// WriteQPS and WriteBurst size the write bucket (defaults 5 and 10).
	WriteQPS   float64
	WriteBurst int
	// Reserved maps a block name to the share (0 < share < 1) of each bucket
	// kept for that block alone; the shares must add up to less than 1. The
	// rest is shared by every block, reserved ones included. Default:
	// {"instances": 0.3}, so node initialization is never starved by
	// load-balancer work.
	Reserved map[string]float64
	// MaxWait bounds how long one Do call may wait in total for tokens, the
	// Retry-After gate and backoff (default 10s). Past it Do fails fast.
	MaxWait time.Duration
	// MaxAttempts bounds the attempts of one Do call (default 4).
	MaxAttempts int
	// InitialBackoff and MaxBackoff shape the exponential backoff between
	// attempts (defaults 250ms and 5s).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Jitter is the fraction of each backoff added at random (default 0.2;
	// negative disables jitter).
	Jitter float64
	// Clock is the time source (default the real clock).
	Clock clock.Clock
	// Rand returns a float in [0,1) for jitter (default math/rand/v2).
	Rand func() float64
}

// Budget paces, gates and retries cloud calls. It is safe for concurrent use.
// A nil *Budget runs each call once, with no pacing and no retry.
type Budget struct {
	opts    BudgetOptions
	clock   clock.Clock
	buckets [2]*bucket
	metrics *callMetrics
	randMu  sync.Mutex
}

type bucket struct {
	shared   *rate.Limiter
	reserved map[string]*rate.Limiter

	mu        sync.Mutex
	gateUntil time.Time
}

// Errors returned by NewBudget for invalid options.
var ErrInvalidOptions = errors.New("invalid budget options")

// errBudgetExhausted is the cause of a ThrottledError produced by the
// budget itself rather than by the cloud.
var errBudgetExhausted = errors.New("client-side cloud API budget exhausted")

// NewBudget returns a Budget. It returns an error wrapping ErrInvalidOptions,
// naming every problem, when the options are inconsistent.
func NewBudget(opts BudgetOptions) (*Budget, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Budget{opts: o, clock: o.Clock, metrics: newCallMetrics()}
	b.buckets[KindRead] = newBucket(o.ReadQPS, o.ReadBurst, o.Reserved)
	b.buckets[KindWrite] = newBucket(o.WriteQPS, o.WriteBurst, o.Reserved)
	return b, nil
}

func (o BudgetOptions) withDefaults() (BudgetOptions, error) {
	var errs []error
	def := func(v *float64, d float64, name string) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, *v))
		}
	}
	defInt := func(v *int, d int, name string) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", name, *v))
		}
	}
	defDur := func(v *time.Duration, d time.Duration, name string) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, *v))
		}
	}
	def(&o.ReadQPS, 20, "ReadQPS")
	defInt(&o.ReadBurst, 40, "ReadBurst")
	def(&o.WriteQPS, 5, "WriteQPS")
	defInt(&o.WriteBurst, 10, "WriteBurst")
	defDur(&o.MaxWait, 10*time.Second, "MaxWait")
	defInt(&o.MaxAttempts, 4, "MaxAttempts")
	defDur(&o.InitialBackoff, 250*time.Millisecond, "InitialBackoff")
	defDur(&o.MaxBackoff, 5*time.Second, "MaxBackoff")
	if o.MaxBackoff < o.InitialBackoff {
		errs = append(errs, fmt.Errorf("MaxBackoff %s is shorter than InitialBackoff %s", o.MaxBackoff, o.InitialBackoff))
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = 0.2
	case o.Jitter < 0:
		o.Jitter = 0
	case o.Jitter > 1:
		errs = append(errs, fmt.Errorf("jitter must be at most 1, got %v", o.Jitter))
	}
	if o.Reserved == nil {
		o.Reserved = map[string]float64{"instances": 0.3}
	}
	sum := 0.0
	for block, share := range o.Reserved {
		if block == "" || share <= 0 || share >= 1 {
			errs = append(errs, fmt.Errorf("reserved share of %q must be in (0,1), got %v", block, share))
		}
		sum += share
	}
	if sum >= 1 {
		errs = append(errs, fmt.Errorf("reserved shares add up to %v, must be below 1", sum))
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return o, nil
}

func newBucket(qps float64, burst int, reserved map[string]float64) *bucket {
	bk := &bucket{reserved: map[string]*rate.Limiter{}}
	rest := 1.0
	for block, share := range reserved {
		rest -= share
		bk.reserved[block] = rate.NewLimiter(rate.Limit(qps*share), max(1, int(float64(burst)*share)))
	}
	bk.shared = rate.NewLimiter(rate.Limit(qps*rest), max(1, int(float64(burst)*rest)))
	return bk
}

// Do runs fn as the call c: it takes a token of c's kind (from c.Block's
// reserved share first, else the shared one), waits out the kind's
// Retry-After gate, runs fn, and retries transient and throttled errors with
// exponential backoff and jitter up to MaxAttempts. The total time spent
// waiting never exceeds MaxWait.
//
// Do returns fn's error unchanged when it is nil, not found, permanent or
// unclassified (so upstream sentinels survive); otherwise the last error
// wrapped with the attempt count. When waiting would exceed MaxWait it
// returns a *ThrottledError (matching ErrThrottled) whose RetryAfter tells
// when to come back; when ctx ends it returns ctx's error.
func (b *Budget) Do(ctx context.Context, c Call, fn func(context.Context) error) error {
	if b == nil {
		return fn(ctx)
	}
	deadline := b.clock.Now().Add(b.opts.MaxWait)
	for attempt := 1; ; attempt++ {
		if err := b.admit(ctx, c, deadline); err != nil {
			b.metrics.rejected(c)
			return err
		}
		start := b.clock.Now()
		err := fn(ctx)
		class := Classify(err)
		b.metrics.observe(c, class, b.clock.Since(start))
		switch class {
		case ClassOK, ClassNotFound, ClassPermanent:
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		if ra, ok := RetryAfter(err); ok {
			b.holdGate(c.Kind, b.clock.Now().Add(ra))
		}
		if attempt >= b.opts.MaxAttempts {
			return fmt.Errorf("%s %s: giving up after %d attempts: %w", c.Block, c.Op, attempt, err)
		}
		delay := b.backoff(attempt)
		if b.clock.Now().Add(delay).After(deadline) {
			return fmt.Errorf("%s %s: wait budget of %s spent after %d attempts: %w", c.Block, c.Op, b.opts.MaxWait, attempt, err)
		}
		if err := b.sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// Wait takes one token for c without running anything, honouring the
// Retry-After gate, for authors with their own retry loop. It returns nil,
// a *ThrottledError when the wait would exceed MaxWait, or ctx's error.
func (b *Budget) Wait(ctx context.Context, c Call) error {
	if b == nil {
		return nil
	}
	return b.admit(ctx, c, b.clock.Now().Add(b.opts.MaxWait))
}

// HoldUntil closes the gate of kind k until t, as if the cloud had answered
// with that Retry-After. Calls of that kind wait (within MaxWait) or fail
// fast with a *ThrottledError until then.
func (b *Budget) HoldUntil(k Kind, t time.Time) {
	if b != nil {
		b.holdGate(k, t)
	}
}

func (b *Budget) holdGate(k Kind, until time.Time) {
	bk := b.buckets[k]
	bk.mu.Lock()
	if until.After(bk.gateUntil) {
		bk.gateUntil = until
	}
	bk.mu.Unlock()
}

// admit waits for the gate and a token, or fails fast past deadline.
func (b *Budget) admit(ctx context.Context, c Call, deadline time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	bk := b.buckets[c.Kind]
	now := b.clock.Now()
	bk.mu.Lock()
	gate := bk.gateUntil
	bk.mu.Unlock()
	if now.Before(gate) {
		if gate.After(deadline) {
			return &ThrottledError{RetryAfter: gate.Sub(now), Err: fmt.Errorf("%s %s: %s calls held by the cloud's Retry-After", c.Block, c.Op, c.Kind)}
		}
		if err := b.sleep(ctx, gate.Sub(now)); err != nil {
			return err
		}
		now = b.clock.Now()
	}
	reserved := bk.reserved[c.Block]
	if reserved != nil && reserved.AllowN(now, 1) {
		return nil
	}
	r := bk.shared.ReserveN(now, 1)
	if reserved != nil {
		if rr := reserved.ReserveN(now, 1); rr.DelayFrom(now) < r.DelayFrom(now) {
			r.CancelAt(now)
			r = rr
		} else {
			rr.CancelAt(now)
		}
	}
	delay := r.DelayFrom(now)
	if now.Add(delay).After(deadline) {
		r.CancelAt(now)
		return &ThrottledError{RetryAfter: delay, Err: fmt.Errorf("%s %s: %w", c.Block, c.Op, errBudgetExhausted)}
	}
	if delay == 0 {
		return nil
	}
	if err := b.sleep(ctx, delay); err != nil {
		r.CancelAt(b.clock.Now())
		return err
	}
	return nil
}

func (b *Budget) backoff(attempt int) time.Duration {
	d := b.opts.InitialBackoff << min(attempt-1, 30)
	if d <= 0 || d > b.opts.MaxBackoff {
		d = b.opts.MaxBackoff
	}
	if b.opts.Jitter > 0 {
		b.randMu.Lock()
		f := b.opts.Rand()
		b.randMu.Unlock()
		d += time.Duration(float64(d) * b.opts.Jitter * f)
	}
	return d
}

func (b *Budget) sleep(ctx context.Context, d time.Duration) error {
	t := b.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// Gatherer returns a private registry holding the budget's metrics, for
// tests and for callers that serve them themselves.
func (b *Budget) Gatherer() metrics.Gatherer { return b.metrics.registry }

// Collectors returns the budget's metrics, to register with the registry the
// binary serves (legacyregistry.MustRegister(b.Collectors()...)); the
// framework's command does this.
func (b *Budget) Collectors() []metrics.Registerable {
	return []metrics.Registerable{b.metrics.calls, b.metrics.latency, b.metrics.rejects}
}
