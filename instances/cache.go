package instances

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/metrics"
	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// CacheOptions configures a Cache. The zero value means defaults.
type CacheOptions struct {
	// TTL is how long a found instance is served from memory (default 1m).
	// It bounds how late a terminated or stopped instance is noticed.
	TTL time.Duration
	// NegativeTTL is how long "not found" is served from memory (default 10s).
	NegativeTTL time.Duration
	// DisableList makes the cache look keys up one by one even when the
	// Source implements Lister.
	DisableList bool
	// Budget paces the cache's cloud calls (block "instances"); nil means
	// unpaced.
	Budget *cloudcall.Budget
	// Clock is the time source (default the real clock).
	Clock clock.PassiveClock
}

// Cache serves instance lookups from memory in front of a Source. It is safe
// for concurrent use; no lock is held during a cloud call.
type Cache struct {
	src    Source
	lister Lister
	opts   CacheOptions
	clock  clock.PassiveClock
	m      *cacheMetrics

	mu     sync.RWMutex
	byID   map[string]entry
	byName map[string]entry
	// listed is when the last successful List started.
	listed time.Time

	flights singleflight.Group
}

type entry struct {
	inst    *Instance // nil: known not to exist
	expires time.Time
}

// Block is the budget block name of the cache's cloud calls.
const Block = "instances"

// NewCache returns a Cache over src. It returns an error when src is nil or
// a duration is negative.
func NewCache(src Source, opts CacheOptions) (*Cache, error) {
	var errs []error
	if src == nil {
		errs = append(errs, errors.New("instances: nil Source"))
	}
	if opts.TTL < 0 || opts.NegativeTTL < 0 {
		errs = append(errs, fmt.Errorf("instances: negative TTL (%s) or NegativeTTL (%s)", opts.TTL, opts.NegativeTTL))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if opts.TTL == 0 {
		opts.TTL = time.Minute
	}
	if opts.NegativeTTL == 0 {
		opts.NegativeTTL = 10 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	c := &Cache{
		src:    src,
		opts:   opts,
		clock:  opts.Clock,
		m:      newCacheMetrics(),
		byID:   map[string]entry{},
		byName: map[string]entry{},
	}
	if l, ok := src.(Lister); ok && !opts.DisableList {
		c.lister = l
	}
	return c, nil
}

// Get returns the instance for key, from memory when fresh. When the
// instance does not exist it returns an error wrapping cloudcall.ErrNotFound.
// Other errors: ErrInvalidKey, ErrInconsistent (the Source misbehaved),
// the Source's own errors as returned by the budget, or ctx's error. It never
// returns (nil, nil). The returned Instance is shared: do not modify it.
func (c *Cache) Get(ctx context.Context, key Key) (*Instance, error) {
	if key.ID == "" && key.NodeName == "" {
		return nil, ErrInvalidKey
	}
	if inst, err, ok := c.lookup(key); ok {
		return inst, err
	}
	c.m.misses.Inc()
	if c.lister != nil && c.listStale() {
		if err := c.refreshList(ctx); err != nil {
			return nil, err
		}
		if inst, err, ok := c.lookup(key); ok {
			return inst, err
		}
	}
	return c.fetch(ctx, key)
}

// lookup answers from memory; ok is false on a miss.
func (c *Cache) lookup(key Key) (*Instance, error, bool) {
	now := c.clock.Now()
	c.mu.RLock()
	e, found := c.entry(key)
	c.mu.RUnlock()
	if !found || !now.Before(e.expires) {
		return nil, nil, false
	}
	if e.inst == nil {
		c.m.negativeHits.Inc()
		return nil, notFound(key), true
	}
	c.m.hits.Inc()
	return e.inst, nil, true
}

func (c *Cache) entry(key Key) (entry, bool) {
	if key.ID != "" {
		e, ok := c.byID[key.ID]
		return e, ok
	}
	e, ok := c.byName[key.NodeName]
	return e, ok
}

func notFound(key Key) error {
	return cloudcall.NotFoundf("instance %s", key)
}

func (c *Cache) listStale() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.listed.IsZero() || !c.clock.Now().Before(c.listed.Add(c.opts.TTL))
}

// refreshList runs one List shared by every concurrent caller.
func (c *Cache) refreshList(ctx context.Context) error {
	_, err := c.shared(ctx, "\x00list", func(ctx context.Context) (*Instance, error) {
		if !c.listStale() { // another flight just finished
			return nil, nil
		}
		start := c.clock.Now()
		var list []*Instance
		err := c.opts.Budget.Do(ctx, cloudcall.Read(Block, "ListInstances"), func(ctx context.Context) error {
			var err error
			list, err = c.lister.List(ctx)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, inst := range list {
			if err := validate(inst, Key{}); err != nil {
				return nil, fmt.Errorf("list: %w", err)
			}
		}
		c.m.lists.Inc()
		expires := start.Add(c.opts.TTL)
		c.mu.Lock()
		defer c.mu.Unlock()
		// Positive entries come from the list alone; "not found" entries
		// stay until they expire.
		for id, e := range c.byID {
			if e.inst != nil {
				delete(c.byID, id)
			}
		}
		for name, e := range c.byName {
			if e.inst != nil {
				delete(c.byName, name)
			}
		}
		for _, inst := range list {
			c.storeLocked(inst, expires)
		}
		c.listed = start
		return nil, nil
	})
	return err
}

// fetch looks one key up in the cloud, shared by concurrent callers.
func (c *Cache) fetch(ctx context.Context, key Key) (*Instance, error) {
	return c.shared(ctx, key.String(), func(ctx context.Context) (*Instance, error) {
		start := c.clock.Now()
		var inst *Instance
		err := c.opts.Budget.Do(ctx, cloudcall.Read(Block, "GetInstance"), func(ctx context.Context) error {
			var err error
			inst, err = c.src.Lookup(ctx, key)
			return err
		})
		switch {
		case isNotFound(err):
			c.mu.Lock()
			e := entry{expires: start.Add(c.opts.NegativeTTL)}
			if key.ID != "" {
				c.byID[key.ID] = e
			} else {
				c.byName[key.NodeName] = e
			}
			c.mu.Unlock()
			return nil, notFound(key)
		case err != nil:
			return nil, fmt.Errorf("looking up instance %s: %w", key, err)
		}
		if err := validate(inst, key); err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.storeLocked(inst, start.Add(c.opts.TTL))
		c.mu.Unlock()
		return inst, nil
	})
}

func (c *Cache) storeLocked(inst *Instance, expires time.Time) {
	e := entry{inst: inst, expires: expires}
	c.byID[inst.ID] = e
	if inst.NodeName != "" {
		c.byName[inst.NodeName] = e
	}
}

// shared runs fn once for all concurrent callers of key. A caller whose ctx
// ends stops waiting; the call goes on for the others, bounded by the budget.
func (c *Cache) shared(ctx context.Context, key string, fn func(context.Context) (*Instance, error)) (*Instance, error) {
	ch := c.flights.DoChan(key, func() (any, error) {
		return fn(context.WithoutCancel(ctx))
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		inst, _ := r.Val.(*Instance)
		return inst, r.Err
	}
}

// Forget drops what the cache knows about key (its ID and its node name).
func (c *Cache) Forget(key Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[key.ID]; ok && key.ID != "" {
		if e.inst != nil && e.inst.NodeName != "" {
			delete(c.byName, e.inst.NodeName)
		}
		delete(c.byID, key.ID)
	}
	if e, ok := c.byName[key.NodeName]; ok && key.NodeName != "" {
		if e.inst != nil {
			delete(c.byID, e.inst.ID)
		}
		delete(c.byName, key.NodeName)
	}
}

// NodeDeleted is a Node informer DeleteFunc: it forgets the node's instance.
// It accepts a *v1.Node or a cache.DeletedFinalStateUnknown holding one, and
// ignores anything else. provider is the providerID scheme.
func (c *Cache) NodeDeleted(provider string) func(obj any) {
	return func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		node, ok := obj.(*v1.Node)
		if !ok || node == nil {
			return
		}
		key := Key{NodeName: node.Name}
		if id, err := ParseProviderID(provider, node.Spec.ProviderID); err == nil {
			key.ID = id
		}
		c.Forget(key)
	}
}

// Gatherer returns a private registry holding the cache's metrics.
func (c *Cache) Gatherer() metrics.Gatherer { return c.m.registry }

// Collectors returns the cache's metrics, to register with the registry the
// binary serves; the framework's command does this.
func (c *Cache) Collectors() []metrics.Registerable {
	return []metrics.Registerable{c.m.requests, c.m.listsTotal}
}

type cacheMetrics struct {
	registry                   metrics.KubeRegistry
	hits, negativeHits, misses metrics.CounterMetric
	lists                      metrics.CounterMetric
	requests                   *metrics.CounterVec
	listsTotal                 *metrics.Counter
}

func newCacheMetrics() *cacheMetrics {
	m := &cacheMetrics{
		registry: metrics.NewKubeRegistry(),
		requests: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace:      "ccmkit",
			Subsystem:      "instances_cache",
			Name:           "requests_total",
			Help:           "Instance cache lookups by result: hit, negative_hit (known missing), miss.",
			StabilityLevel: metrics.ALPHA,
		}, []string{"result"}),
		listsTotal: metrics.NewCounter(&metrics.CounterOpts{
			Namespace:      "ccmkit",
			Subsystem:      "instances_cache",
			Name:           "lists_total",
			Help:           "List calls that refreshed the whole instance cache.",
			StabilityLevel: metrics.ALPHA,
		}),
	}
	m.registry.MustRegister(m.requests, m.listsTotal)
	m.hits = m.requests.WithLabelValues("hit")
	m.negativeHits = m.requests.WithLabelValues("negative_hit")
	m.misses = m.requests.WithLabelValues("miss")
	m.lists = m.listsTotal
	return m
}
