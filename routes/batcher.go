package routes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// DefaultBatchWindow is the default of BatcherOptions.Window.
const DefaultBatchWindow = 50 * time.Millisecond

// BatcherOptions configures a Batcher. The zero value means defaults.
type BatcherOptions struct {
	// Window is how long a batch collects changes after its first one
	// before it is written (default DefaultBatchWindow). A batch that
	// reaches the Applier's MaxBatchSize is written at once; while a write
	// runs, the next batch keeps collecting.
	Window time.Duration
	// Budget paces the writes (block "routes", op ApplyRoutes); nil runs
	// each write once, unpaced.
	Budget *cloudcall.Budget
	// Metrics records the writes; nil records nothing.
	Metrics *Metrics
	// Clock is the time source (default the real clock).
	Clock clock.Clock
}

// Batcher coalesces concurrent route changes into Applier writes: callers
// that arrive within one window share one Apply of up to MaxBatchSize
// changes, and each caller gets its own result. When a batch fails for a
// reason that is not transient (a permanent error, a full table), the
// Batcher splits it in halves and writes them again, down to single
// changes, so that one bad route fails only its own caller and a full
// table still takes the changes that fit (deletes are ordered first).
// Transient and throttled failures fail the whole batch (the budget already
// retried them). At most one Apply runs at a time: tables written whole do
// not take concurrent writes. It is safe for concurrent use.
type Batcher struct {
	applier Applier
	max     int
	window  time.Duration
	budget  *cloudcall.Budget
	metrics *Metrics
	clock   clock.Clock

	write chan struct{} // one Apply at a time

	mu      sync.Mutex
	pending map[string]*batch // cluster -> collecting batch
}

type change struct {
	delete bool
	route  Route
}

type batch struct {
	cluster string
	ctx     context.Context
	changes []change
	results []chan error
	sealed  bool
}

// NewBatcher returns a Batcher writing through a. It returns an error for a
// nil Applier, a MaxBatchSize below 1 or a negative Window.
func NewBatcher(a Applier, opts BatcherOptions) (*Batcher, error) {
	var errs []error
	if a == nil {
		errs = append(errs, errors.New("nil Applier"))
	} else if a.MaxBatchSize() < 1 {
		errs = append(errs, fmt.Errorf("the Applier's MaxBatchSize() is %d, want at least 1", a.MaxBatchSize()))
	}
	if opts.Window < 0 {
		errs = append(errs, fmt.Errorf("option Window must not be negative, got %s", opts.Window))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("routes: Batcher: %w", errors.Join(errs...))
	}
	if opts.Window == 0 {
		opts.Window = DefaultBatchWindow
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Batcher{
		applier: a, max: a.MaxBatchSize(), window: opts.Window, budget: opts.Budget, metrics: opts.Metrics, clock: opts.Clock,
		write: make(chan struct{}, 1), pending: map[string]*batch{},
	}, nil
}

// Create adds r to the next batch for cluster and waits for its result. A
// caller whose ctx ends stops waiting (with ctx's error); its change may
// still be written.
func (b *Batcher) Create(ctx context.Context, cluster string, r Route) error {
	return b.submit(ctx, cluster, change{route: r})
}

// Delete adds the deletion of r to the next batch for cluster and waits for
// its result, as Create.
func (b *Batcher) Delete(ctx context.Context, cluster string, r Route) error {
	return b.submit(ctx, cluster, change{delete: true, route: r})
}

func (b *Batcher) submit(ctx context.Context, cluster string, c change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	res := make(chan error, 1)
	b.mu.Lock()
	bt := b.pending[cluster]
	if bt == nil {
		// The batch outlives any one caller: its writes are not cancelled
		// when the first caller gives up.
		bt = &batch{cluster: cluster, ctx: context.WithoutCancel(ctx)}
		b.pending[cluster] = bt
		go b.flushAfterWindow(bt)
	}
	bt.changes = append(bt.changes, c)
	bt.results = append(bt.results, res)
	full := len(bt.changes) >= b.max
	if full {
		b.seal(bt)
	}
	b.mu.Unlock()
	if full {
		go b.flush(bt)
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// seal stops bt from collecting; b.mu is held.
func (b *Batcher) seal(bt *batch) {
	bt.sealed = true
	if b.pending[bt.cluster] == bt {
		delete(b.pending, bt.cluster)
	}
}

// flushAfterWindow writes bt once its window has passed and no other write
// runs; it keeps collecting until then.
func (b *Batcher) flushAfterWindow(bt *batch) {
	<-b.clock.After(b.window)
	b.write <- struct{}{}
	b.mu.Lock()
	if bt.sealed { // full: flushed on its own
		b.mu.Unlock()
		<-b.write
		return
	}
	b.seal(bt)
	b.mu.Unlock()
	b.run(bt)
	<-b.write
}

func (b *Batcher) flush(bt *batch) {
	b.write <- struct{}{}
	b.run(bt)
	<-b.write
}

func (b *Batcher) run(bt *batch) {
	// Deletes first, so that a full table takes them and they make room.
	order := make([]int, 0, len(bt.changes))
	for i, c := range bt.changes {
		if c.delete {
			order = append(order, i)
		}
	}
	for i, c := range bt.changes {
		if !c.delete {
			order = append(order, i)
		}
	}
	changes := make([]change, len(order))
	for j, i := range order {
		changes[j] = bt.changes[i]
	}
	errs := applyChanges(bt.ctx, b.applier, b.budget, b.metrics, bt.cluster, changes)
	for j, i := range order {
		bt.results[i] <- errs[j]
	}
}

// applyChanges writes changes (deletes before creates) in Apply calls of
// at most a.MaxBatchSize changes and returns each change's error. A batch
// that fails for a non-transient reason is split in halves, down to single
// changes.
func applyChanges(ctx context.Context, a Applier, budget *cloudcall.Budget, m *Metrics, cluster string, changes []change) []error {
	errs := make([]error, len(changes))
	limit := max(a.MaxBatchSize(), 1)
	for start := 0; start < len(changes); start += limit {
		end := min(start+limit, len(changes))
		applySplit(ctx, a, budget, m, cluster, changes[start:end], errs[start:end])
	}
	return errs
}

func applySplit(ctx context.Context, a Applier, budget *cloudcall.Budget, m *Metrics, cluster string, changes []change, errs []error) {
	var bt Batch
	for _, c := range changes {
		if c.delete {
			bt.Delete = append(bt.Delete, c.route)
		} else {
			bt.Create = append(bt.Create, c.route)
		}
	}
	err := budget.Do(ctx, cloudcall.Write(BlockName, OpApply), func(ctx context.Context) error {
		return a.Apply(ctx, cluster, bt)
	})
	m.wrote("batch", err)
	if err == nil || len(changes) == 1 || splitless(err) || ctx.Err() != nil {
		for i := range errs {
			errs[i] = err
		}
		return
	}
	half := len(changes) / 2
	applySplit(ctx, a, budget, m, cluster, changes[:half], errs[:half])
	if errors.Is(err, ErrTableFull) && !changes[half].delete {
		// The table had no room for the first half's creates: it has none
		// for the second half's either. Deletes come first, so the
		// second half is creates only.
		for _, e := range errs[:half] {
			if errors.Is(e, ErrTableFull) {
				for i := half; i < len(errs); i++ {
					errs[i] = e
				}
				return
			}
		}
	}
	applySplit(ctx, a, budget, m, cluster, changes[half:], errs[half:])
}

// splitless reports whether a failed batch fails the same way whatever its
// contents: a transient or throttled error.
func splitless(err error) bool {
	switch cloudcall.Classify(err) {
	case cloudcall.ClassTransient, cloudcall.ClassThrottled:
		return true
	}
	return false
}
