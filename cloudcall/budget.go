package cloudcall

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/component-base/metrics"
	"k8s.io/utils/clock"
)

// Kind is the class of a cloud call for pacing: reads and writes have their
// own token bucket and their own Retry-After gates.
type Kind int

// The kinds of call.
const (
	KindRead Kind = iota
	KindWrite
)

func (k Kind) String() string {
	switch k {
	case KindRead:
		return "read"
	case KindWrite:
		return "write"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Call names one logical cloud call for pacing and metrics.
type Call struct {
	// Block is the ccmkit block or author component making the call
	// ("instances", "lb", "routes", ...). It selects a reserved share.
	Block string
	// Op is the cloud operation ("GetInstance", "CreateLoadBalancer", ...).
	Op string
	// Kind selects the token bucket and, with Family, the Retry-After gate.
	Kind Kind
	// Family is the cloud API family the call belongs to (default Block).
	// Clouds throttle per API family: a Retry-After from one family closes
	// that family's gate of the call's kind only, so a 429 from the
	// load-balancer API does not hold node initialization's reads.
	Family string
	// MaxAttempts caps this call's attempts (default the budget's
	// MaxAttempts); 1 disables in-call retries.
	MaxAttempts int
}

// Read returns a read Call.
func Read(block, op string) Call { return Call{Block: block, Op: op, Kind: KindRead} }

// Write returns a write Call.
func Write(block, op string) Call { return Call{Block: block, Op: op, Kind: KindWrite} }

// InFamily returns c with its API family set to family.
func (c Call) InFamily(family string) Call {
	c.Family = family
	return c
}

func (c Call) family() string {
	if c.Family != "" {
		return c.Family
	}
	return c.Block
}

func (c Call) validate() error {
	var errs []error
	if c.Kind != KindRead && c.Kind != KindWrite {
		errs = append(errs, fmt.Errorf("kind %v is neither KindRead nor KindWrite", c.Kind))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("MaxAttempts must not be negative, got %d", c.MaxAttempts))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %s %s: %w", ErrInvalidCall, c.Block, c.Op, errors.Join(errs...))
	}
	return nil
}

// DefaultAttemptTimeout is the default of BudgetOptions.AttemptTimeout, and
// the timeout a nil *Budget gives each call.
const DefaultAttemptTimeout = 30 * time.Second

// BudgetOptions configures a Budget. The zero value means defaults.
type BudgetOptions struct {
	// ReadQPS and ReadBurst size the read bucket (defaults 20 and 40).
	ReadQPS   float64
	ReadBurst int
	// WriteQPS and WriteBurst size the write bucket (defaults 5 and 10).
	WriteQPS   float64
	WriteBurst int
	// Reserved maps a block name to the share (0 <= share < 1) of each
	// bucket kept for that block alone; the shares must add up to less than
	// 1. The rest is shared by every block, reserved ones included. The
	// "instances" block keeps a 0.3 share, so node initialization is never
	// starved by load-balancer work, unless the map sets "instances"
	// explicitly (0 removes the reservation).
	Reserved map[string]float64
	// MaxWait bounds how long one Do call may wait in total for tokens, the
	// Retry-After gate and backoff between attempts (default 10s); the time
	// spent in the cloud calls themselves is not counted (AttemptTimeout
	// bounds it). When a wait would overrun it, Do fails fast with a
	// *ThrottledError.
	MaxWait time.Duration
	// AttemptTimeout bounds each attempt: fn gets a context whose deadline
	// is at most AttemptTimeout away, on Clock (default
	// DefaultAttemptTimeout, 30s). The upstream controllers call some
	// methods with context.TODO(); this keeps a hung cloud call from holding
	// a controller worker forever.
	AttemptTimeout time.Duration
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
// A nil *Budget runs each call once, with no pacing and no retry, under
// DefaultAttemptTimeout on the real clock.
type Budget struct {
	opts    BudgetOptions
	clock   clock.Clock
	buckets [2]*bucket
	metrics *callMetrics
	randMu  sync.Mutex

	gateMu sync.Mutex
	gates  map[gateKey]time.Time
}

type bucket struct {
	shared   *rate.Limiter
	reserved map[string]*rate.Limiter
}

// gateKey scopes a Retry-After gate: one per API family and kind.
type gateKey struct {
	family string
	kind   Kind
}

// Errors returned by the budget.
var (
	// ErrInvalidOptions is wrapped by NewBudget's errors.
	ErrInvalidOptions = errors.New("invalid budget options")
	// ErrInvalidCall is wrapped by the errors of Do, Wait and HoldUntil for
	// a Call they cannot run (an unknown Kind, a negative MaxAttempts, a
	// nil fn).
	ErrInvalidCall = errors.New("invalid cloud call")
	// ErrBudgetExhausted is wrapped (inside a *ThrottledError) when a call
	// gave up because waiting for a token, a Retry-After gate or the next
	// attempt's backoff would overrun MaxWait: the refusal came from the
	// client-side budget, not from the cloud.
	ErrBudgetExhausted = errors.New("cloud API wait budget exhausted")
)

// NewBudget returns a Budget. It returns an error wrapping ErrInvalidOptions,
// naming every problem, when the options are inconsistent.
func NewBudget(opts BudgetOptions) (*Budget, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Budget{opts: o, clock: o.Clock, metrics: newCallMetrics(), gates: map[gateKey]time.Time{}}
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
	defDur(&o.AttemptTimeout, DefaultAttemptTimeout, "AttemptTimeout")
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
	reserved := map[string]float64{"instances": 0.3}
	for block, share := range o.Reserved {
		reserved[block] = share
	}
	sum := 0.0
	for block, share := range reserved {
		if block == "" || share < 0 || share >= 1 {
			errs = append(errs, fmt.Errorf("reserved share of %q must be in [0,1), got %v", block, share))
		}
		if share <= 0 {
			delete(reserved, block)
			continue
		}
		sum += share
	}
	if sum >= 1 {
		_, explicit := o.Reserved["instances"]
		note := ""
		if !explicit {
			note = " (with the default 0.3 for \"instances\"; set it explicitly to change it)"
		}
		errs = append(errs, fmt.Errorf("reserved shares add up to %v%s, must be below 1", sum, note))
	}
	o.Reserved = reserved
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
		bk.reserved[block] = rate.NewLimiter(rate.Limit(qps*share), shareOf(burst, share))
	}
	bk.shared = rate.NewLimiter(rate.Limit(qps*rest), shareOf(burst, rest))
	return bk
}

// shareOf returns share of burst, rounded down but at least 1; the epsilon
// keeps 10 * (1 - 0.2 - 0.3) at 5, not 4.
func shareOf(burst int, share float64) int {
	return max(1, int(math.Floor(float64(burst)*share+1e-9)))
}

// Do runs fn as the call c: it takes a token of c's kind (from c.Block's
// reserved share first, else the shared one), waits out the Retry-After gate
// of c's family and kind (re-reading it after every wait), runs fn with a
// context bounded by AttemptTimeout, and retries transient and throttled
// errors with exponential backoff and jitter (a cloud's Retry-After replaces
// the backoff) up to MaxAttempts (or c.MaxAttempts). The time spent waiting
// never exceeds MaxWait; the time in fn is bounded by AttemptTimeout per
// attempt.
//
// Errors:
//   - fn's error unchanged when it is nil, not found, permanent or
//     unclassified (so upstream sentinels survive);
//   - when the attempts run out on transient or throttled errors, the last
//     error wrapped with the attempt count ("giving up after N attempts");
//   - when a wait for a token, a gate or the next attempt would overrun
//     MaxWait, a *ThrottledError (matching ErrThrottled and
//     ErrBudgetExhausted) whose RetryAfter tells when to come back and whose
//     chain keeps the last cloud error, if an attempt was made;
//   - when ctx ends, ctx's error (or the attempt's error wrapping it);
//   - an error wrapping ErrInvalidCall for an invalid c or a nil fn, without
//     calling anything.
func (b *Budget) Do(ctx context.Context, c Call, fn func(context.Context) error) error {
	if err := c.validate(); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("%w %s %s: nil function", ErrInvalidCall, c.Block, c.Op)
	}
	if b == nil {
		actx, cancel := withAttemptTimeout(ctx, clock.RealClock{}, DefaultAttemptTimeout)
		defer cancel()
		return fn(actx)
	}
	attempts := b.opts.MaxAttempts
	if c.MaxAttempts > 0 {
		attempts = c.MaxAttempts
	}
	w := &waiter{b: b, c: c, left: b.opts.MaxWait}
	for attempt := 1; ; attempt++ {
		if err := w.admit(ctx); err != nil {
			b.metrics.rejected(c)
			return err
		}
		err := b.attempt(ctx, c, fn)
		class := Classify(err)
		switch class {
		case ClassOK, ClassNotFound, ClassPermanent:
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		w.last, w.attempts = err, attempt
		ra, hasRA := RetryAfter(err)
		if hasRA {
			b.holdGate(c, b.clock.Now().Add(ra))
		}
		if attempt >= attempts {
			return fmt.Errorf("%s %s: giving up after %d attempts: %w", c.Block, c.Op, attempt, err)
		}
		if hasRA {
			continue // the gate holds the next attempt for the cloud's Retry-After
		}
		if err := w.sleep(ctx, b.backoff(attempt), "backing off"); err != nil {
			b.metrics.rejected(c)
			return err
		}
	}
}

// attempt runs fn once under AttemptTimeout and records it.
func (b *Budget) attempt(ctx context.Context, c Call, fn func(context.Context) error) error {
	actx, cancel := withAttemptTimeout(ctx, b.clock, b.opts.AttemptTimeout)
	defer cancel()
	start := b.clock.Now()
	err := fn(actx)
	b.metrics.observe(c, Classify(err), b.clock.Since(start))
	return err
}

// Wait takes one token for c without running anything, honouring c's
// Retry-After gate, for authors with their own retry loop. It returns nil,
// a *ThrottledError (matching ErrBudgetExhausted) when the wait would exceed
// MaxWait, ctx's error, or an error wrapping ErrInvalidCall.
func (b *Budget) Wait(ctx context.Context, c Call) error {
	if err := c.validate(); err != nil {
		return err
	}
	if b == nil {
		return ctx.Err()
	}
	w := &waiter{b: b, c: c, left: b.opts.MaxWait}
	if err := w.admit(ctx); err != nil {
		b.metrics.rejected(c)
		return err
	}
	return nil
}

// HoldUntil closes the Retry-After gate of c's family and kind until t, as
// if the cloud had answered c with that Retry-After. Calls of that family
// and kind wait (within MaxWait) or fail fast with a *ThrottledError until
// then. It returns an error wrapping ErrInvalidCall for an invalid c.
func (b *Budget) HoldUntil(c Call, t time.Time) error {
	if err := c.validate(); err != nil {
		return err
	}
	if b != nil {
		b.holdGate(c, t)
	}
	return nil
}

// AttemptTimeout returns the bound of each attempt's context.
func (b *Budget) AttemptTimeout() time.Duration {
	if b == nil {
		return DefaultAttemptTimeout
	}
	return b.opts.AttemptTimeout
}

func (b *Budget) holdGate(c Call, until time.Time) {
	k := gateKey{c.family(), c.Kind}
	b.gateMu.Lock()
	defer b.gateMu.Unlock()
	if until.After(b.gates[k]) {
		b.gates[k] = until
	}
}

func (b *Budget) gate(c Call) time.Time {
	b.gateMu.Lock()
	defer b.gateMu.Unlock()
	return b.gates[gateKey{c.family(), c.Kind}]
}

// waiter is one Do or Wait call's wait budget and what it last saw.
type waiter struct {
	b        *Budget
	c        Call
	left     time.Duration // of MaxWait
	last     error         // the last attempt's error
	attempts int           // attempts made
}

// exhausted returns the *ThrottledError of a wait that would overrun MaxWait.
func (w *waiter) exhausted(retryAfter time.Duration, waitingFor string) error {
	retryAfter = max(retryAfter, w.b.gate(w.c).Sub(w.b.clock.Now()))
	var cause error
	if w.last == nil {
		cause = fmt.Errorf("%s %s: %w (%s, %s left of %s)", w.c.Block, w.c.Op, ErrBudgetExhausted, waitingFor, w.left, w.b.opts.MaxWait)
	} else {
		cause = fmt.Errorf("%s %s: %w (%s, %s left of %s) after %d attempts: %w", w.c.Block, w.c.Op, ErrBudgetExhausted, waitingFor, w.left, w.b.opts.MaxWait, w.attempts, w.last)
	}
	return &ThrottledError{RetryAfter: retryAfter, Err: cause}
}

// sleep waits d out of the wait budget, or fails fast when d overruns it.
func (w *waiter) sleep(ctx context.Context, d time.Duration, waitingFor string) error {
	if d > w.left {
		return w.exhausted(d, waitingFor)
	}
	start := w.b.clock.Now()
	err := w.b.sleep(ctx, d)
	w.left -= w.b.clock.Since(start)
	return err
}

// waitGate waits until the call's gate is open, re-reading it after each
// wait (a 429 meanwhile may have extended it).
func (w *waiter) waitGate(ctx context.Context) error {
	for {
		now := w.b.clock.Now()
		gate := w.b.gate(w.c)
		if !now.Before(gate) {
			return nil
		}
		what := fmt.Sprintf("%s calls of family %q held by the cloud's Retry-After", w.c.Kind, w.c.family())
		if err := w.sleep(ctx, gate.Sub(now), what); err != nil {
			return err
		}
	}
}

// admit waits for the gate and a token, or fails fast past the wait budget.
func (w *waiter) admit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.waitGate(ctx); err != nil {
		return err
	}
	b, c := w.b, w.c
	bk := b.buckets[c.Kind]
	now := b.clock.Now()
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
	if delay == 0 {
		return nil
	}
	if delay > w.left {
		r.CancelAt(now)
		return w.exhausted(delay, "waiting for a "+c.Kind.String()+" token")
	}
	if err := w.sleep(ctx, delay, "waiting for a token"); err != nil {
		r.CancelAt(b.clock.Now())
		return err
	}
	return w.waitGate(ctx)
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
