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
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// CacheOptions configures a Cache. The zero value means defaults.
type CacheOptions struct {
	// TTL is how long a found instance is served from memory (default 1m).
	// It bounds how late a terminated or stopped instance is noticed.
	TTL time.Duration
	// NegativeTTL is how long "not found" is served from memory, and how
	// long a failed List is remembered before the next List attempt
	// (default 10s).
	NegativeTTL time.Duration
	// MaxStale is how long past its expiry a found instance keeps answering
	// while the cloud fails to refresh it (default 10m; negative disables).
	// Past it the cache returns the cloud's error: never "not found" because
	// the cloud is down.
	MaxStale time.Duration
	// ReadLag is how long the cloud's reads may lag its writes (default 0).
	// InstancesV2.InstanceExists does not report the instance of a Node
	// created less than ReadLag ago as missing: it returns an error, which
	// makes the node-lifecycle controller keep the Node, since a lookup made
	// that soon after the instance's creation may not see it yet. The
	// Node's age counts from its creationTimestamp, which the API server
	// truncates to the second, so the window is ReadLag plus one second.
	ReadLag time.Duration
	// DisableList makes the cache look keys up one by one even when the
	// Source implements Lister.
	DisableList bool
	// Budget paces the cache's cloud calls (block "instances") and bounds
	// each attempt (cloudcall.BudgetOptions.AttemptTimeout); nil means
	// unpaced, each call bounded by cloudcall.DefaultAttemptTimeout.
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
	byID   map[string]*entry
	byName map[string]*entry
	// listed is when the last successful List started.
	listed time.Time
	// listRetryAt is when a List may be tried again after listErr.
	listRetryAt time.Time
	listErr     error
	// invalid holds the invalid instances of the last List, so that each
	// is logged once.
	invalid map[string]struct{}
	// epoch counts Forget calls; tombs maps a forgotten "id:"/"node:" key to
	// the epoch of its Forget, while lookups are in flight (inflight > 0),
	// so a lookup that started before a Forget does not re-cache its key.
	epoch    uint64
	tombs    map[string]uint64
	inflight int

	flights singleflight.Group
}

type entry struct {
	inst    *Instance // nil: known not to exist
	expires time.Time
	// retryAt is set when refreshing this expired entry failed: it is served
	// stale, without asking the cloud, until then.
	retryAt time.Time
}

// Block is the budget block name of the cache's cloud calls.
const Block = "instances"

// NewCache returns a Cache over src. It returns an error when src is nil or
// a TTL is negative.
func NewCache(src Source, opts CacheOptions) (*Cache, error) {
	var errs []error
	if src == nil {
		errs = append(errs, errors.New("instances: nil Source"))
	}
	if opts.TTL < 0 || opts.NegativeTTL < 0 || opts.ReadLag < 0 {
		errs = append(errs, fmt.Errorf("instances: negative TTL (%s), NegativeTTL (%s) or ReadLag (%s)", opts.TTL, opts.NegativeTTL, opts.ReadLag))
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
	switch {
	case opts.MaxStale == 0:
		opts.MaxStale = 10 * time.Minute
	case opts.MaxStale < 0:
		opts.MaxStale = 0
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	c := &Cache{
		src:    src,
		opts:   opts,
		clock:  opts.Clock,
		m:      newCacheMetrics(),
		byID:   map[string]*entry{},
		byName: map[string]*entry{},
		tombs:  map[string]uint64{},
	}
	if l, ok := src.(Lister); ok && !opts.DisableList {
		c.lister = l
	}
	return c, nil
}

// Get returns the instance for key, from memory when fresh.
//
// A miss in list mode refreshes every entry with one List, shared by
// concurrent callers and tried at most once per NegativeTTL while it fails
// (no in-call retries); a key the List lacks is looked up on its own. While
// the cloud fails to refresh an expired entry, the entry keeps answering for
// MaxStale past its expiry.
//
// When the instance does not exist Get returns an error wrapping
// cloudcall.ErrNotFound. Other errors: ErrInvalidKey, ErrInconsistent (the
// Source misbehaved), the Source's own errors as returned by the budget (a
// shared lookup ends at the budget's per-attempt deadline whatever the
// callers' contexts), or ctx's error. It never returns (nil, nil). The
// returned Instance is shared: do not modify it.
func (c *Cache) Get(ctx context.Context, key Key) (*Instance, error) {
	if key.ID == "" && key.NodeName == "" {
		return nil, ErrInvalidKey
	}
	if inst, err, ok := c.lookup(key); ok {
		return inst, err
	}
	c.m.misses.Inc()
	epoch := c.begin()
	defer c.end()
	listFailing := false
	if c.lister != nil {
		err := c.refreshList(ctx, epoch)
		switch {
		case err == nil:
			if inst, err, ok := c.lookup(key); ok {
				return inst, err
			}
		case ctx.Err() != nil:
			return nil, err
		default:
			listFailing = true
		}
	}
	if inst, ok := c.stale(key, listFailing); ok {
		return inst, nil
	}
	return c.fetch(ctx, key, epoch)
}

// lookup answers from memory; ok is false on a miss.
func (c *Cache) lookup(key Key) (*Instance, error, bool) {
	now := c.clock.Now()
	c.mu.RLock()
	e := c.entry(key)
	c.mu.RUnlock()
	if e == nil || !now.Before(e.expires) {
		return nil, nil, false
	}
	if e.inst == nil {
		c.m.negativeHits.Inc()
		return nil, notFound(key), true
	}
	c.m.hits.Inc()
	return e.inst, nil, true
}

// stale answers with an expired found entry within MaxStale, when the cloud
// is known to be failing: the List failed (listFailing), or refreshing this
// entry did.
func (c *Cache) stale(key Key, listFailing bool) (*Instance, bool) {
	now := c.clock.Now()
	c.mu.RLock()
	e := c.entry(key)
	c.mu.RUnlock()
	if e == nil || e.inst == nil || !now.Before(e.expires.Add(c.opts.MaxStale)) {
		return nil, false
	}
	if !listFailing && !now.Before(e.retryAt) {
		return nil, false
	}
	c.m.staleHits.Inc()
	return e.inst, true
}

func (c *Cache) entry(key Key) *entry {
	if key.ID != "" {
		return c.byID[key.ID]
	}
	return c.byName[key.NodeName]
}

func notFound(key Key) error {
	return cloudcall.NotFoundf("instance %s", key)
}

// listState reports whether the last List is fresh, and the remembered
// error while a failed List may not be retried.
func (c *Cache) listState() (fresh bool, failed error) {
	now := c.clock.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.listed.IsZero() && now.Before(c.listed.Add(c.opts.TTL)) {
		return true, nil
	}
	if c.listErr != nil && now.Before(c.listRetryAt) {
		return false, c.listErr
	}
	return false, nil
}

// refreshList makes sure the list is fresh: it runs one List shared by every
// concurrent caller, unless a List is fresh or failed within NegativeTTL
// (then it returns that failure). epoch is the Forget epoch the caller's Get
// started in.
func (c *Cache) refreshList(ctx context.Context, epoch uint64) error {
	if fresh, failed := c.listState(); fresh || failed != nil {
		return failed
	}
	_, err := c.shared(ctx, "\x00list", func(ctx context.Context) (*Instance, error) {
		if fresh, failed := c.listState(); fresh || failed != nil { // another flight just finished
			return nil, failed
		}
		c.begin()
		defer c.end()
		start := c.clock.Now()
		var list []*Instance
		call := cloudcall.Read(Block, "ListInstances")
		call.MaxAttempts = 1 // a failing List is remembered instead
		err := c.opts.Budget.Do(ctx, call, func(ctx context.Context) error {
			var err error
			list, err = c.lister.List(ctx)
			return err
		})
		if err != nil {
			err = fmt.Errorf("listing instances: %w", err)
			c.m.listFailures.Inc()
			c.mu.Lock()
			c.listErr, c.listRetryAt = err, c.clock.Now().Add(c.opts.NegativeTTL)
			c.mu.Unlock()
			return nil, err
		}
		c.m.lists.Inc()
		c.storeList(ctx, list, start, epoch)
		return nil, nil
	})
	return err
}

// storeList replaces the positive entries with the valid instances of list.
func (c *Cache) storeList(ctx context.Context, list []*Instance, start time.Time, epoch uint64) {
	logger := klog.FromContext(ctx)
	valid := make([]*Instance, 0, len(list))
	invalid := map[string]struct{}{}
	c.mu.RLock()
	seen := c.invalid
	c.mu.RUnlock()
	for i, inst := range list {
		if err := validate(inst, Key{}); err != nil {
			id := invalidKey(i, inst)
			invalid[id] = struct{}{}
			if _, logged := seen[id]; !logged {
				logger.Error(err, "Skipping an invalid instance in the cloud's list; it is looked up on its own", "index", i)
			}
			continue
		}
		valid = append(valid, inst)
	}
	// A node name shared by several instances is indexed only when exactly
	// one of them is not terminated, or all are; otherwise lookups by that
	// name go to the Source, which must decide.
	byName := map[string]*Instance{}
	ambiguous := map[string]bool{}
	for _, inst := range valid {
		if inst.NodeName == "" {
			continue
		}
		prev, dup := byName[inst.NodeName]
		switch {
		case !dup:
			byName[inst.NodeName] = inst
		case prev.State == StateTerminated && inst.State != StateTerminated:
			byName[inst.NodeName] = inst
		case prev.State != StateTerminated && inst.State != StateTerminated:
			ambiguous[inst.NodeName] = true
		}
	}

	expires := start.Add(c.opts.TTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.invalid = invalid
	// Names an instance was found by though it does not report them.
	aliases := map[string]string{}
	for name, e := range c.byName {
		if e.inst != nil && e.inst.NodeName != name {
			aliases[name] = e.inst.ID
		}
	}
	// Positive entries come from the list alone; "not found" entries stay
	// until they expire.
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
	for _, inst := range valid {
		if c.forgottenLocked(epoch, Key{ID: inst.ID, NodeName: inst.NodeName}) {
			continue
		}
		e := &entry{inst: inst, expires: expires}
		c.byID[inst.ID] = e
		if inst.NodeName != "" && byName[inst.NodeName] == inst && !ambiguous[inst.NodeName] {
			c.byName[inst.NodeName] = e
		}
	}
	for name, id := range aliases {
		if e := c.byID[id]; e != nil && c.byName[name] == nil && !c.forgottenLocked(epoch, Key{NodeName: name}) {
			c.byName[name] = e
		}
	}
	c.listed = start
	c.listErr = nil
}

// invalidKey identifies an invalid list item for logging it once.
func invalidKey(i int, inst *Instance) string {
	if inst == nil {
		return fmt.Sprintf("nil@%d", i)
	}
	return fmt.Sprintf("%s/%s/%d", inst.ID, inst.NodeName, inst.State)
}

// fetch looks one key up in the cloud, shared by concurrent callers. epoch
// is the Forget epoch the caller's Get started in.
func (c *Cache) fetch(ctx context.Context, key Key, epoch uint64) (*Instance, error) {
	return c.shared(ctx, key.String(), func(ctx context.Context) (*Instance, error) {
		c.begin()
		defer c.end()
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
			if !c.forgottenLocked(epoch, key) {
				e := &entry{expires: start.Add(c.opts.NegativeTTL)}
				if key.ID != "" {
					c.byID[key.ID] = e
				} else {
					c.byName[key.NodeName] = e
				}
			}
			c.mu.Unlock()
			return nil, notFound(key)
		case err != nil:
			if stale := c.failedRefresh(key); stale != nil {
				return stale, nil
			}
			return nil, fmt.Errorf("looking up instance %s: %w", key, err)
		}
		if err := validate(inst, key); err != nil {
			return nil, err
		}
		c.mu.Lock()
		if !c.forgottenLocked(epoch, Key{ID: inst.ID, NodeName: key.NodeName}) && !c.forgottenLocked(epoch, Key{NodeName: inst.NodeName}) {
			e := &entry{inst: inst, expires: start.Add(c.opts.TTL)}
			c.byID[inst.ID] = e
			if inst.NodeName != "" {
				c.byName[inst.NodeName] = e
			}
			if key.ID == "" {
				c.byName[key.NodeName] = e // found by this name
			}
		}
		c.mu.Unlock()
		return inst, nil
	})
}

// failedRefresh marks key's expired entry as failing to refresh and returns
// its instance when it may still be served stale.
func (c *Cache) failedRefresh(key Key) *Instance {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(key)
	if e == nil || e.inst == nil || !now.Before(e.expires.Add(c.opts.MaxStale)) {
		return nil
	}
	e.retryAt = now.Add(c.opts.NegativeTTL)
	c.m.staleHits.Inc()
	return e.inst
}

// begin registers a miss or a cloud lookup in flight, which keeps Forget's
// tombstones, and returns the current Forget epoch.
func (c *Cache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight++
	return c.epoch
}

func (c *Cache) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight--; c.inflight == 0 {
		clear(c.tombs)
	}
}

// forgottenLocked reports whether key's ID or node name was forgotten after
// epoch. c.mu must be held.
func (c *Cache) forgottenLocked(epoch uint64, key Key) bool {
	if key.ID != "" && c.tombs["id:"+key.ID] > epoch {
		return true
	}
	return key.NodeName != "" && c.tombs["node:"+key.NodeName] > epoch
}

// shared runs fn once for all concurrent callers of key. A caller whose ctx
// ends stops waiting; the call goes on for the others, without the caller's
// cancellation but bounded by the budget's per-attempt deadline.
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
// A lookup of that instance already in flight does not re-cache it.
func (c *Cache) Forget(key Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	tomb := func(k string) {
		if c.inflight > 0 {
			c.tombs[k] = c.epoch
		}
	}
	drop := func(e *entry) {
		if e == nil || e.inst == nil {
			return
		}
		delete(c.byID, e.inst.ID)
		tomb("id:" + e.inst.ID)
		if e.inst.NodeName != "" {
			delete(c.byName, e.inst.NodeName)
			tomb("node:" + e.inst.NodeName)
		}
	}
	if key.ID != "" {
		drop(c.byID[key.ID])
		delete(c.byID, key.ID)
		tomb("id:" + key.ID)
	}
	if key.NodeName != "" {
		drop(c.byName[key.NodeName])
		delete(c.byName, key.NodeName)
		tomb("node:" + key.NodeName)
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
	return []metrics.Registerable{c.m.requests, c.m.listsTotal, c.m.listFailuresTotal}
}

type cacheMetrics struct {
	registry                              metrics.KubeRegistry
	hits, negativeHits, staleHits, misses metrics.CounterMetric
	lists, listFailures                   metrics.CounterMetric
	requests                              *metrics.CounterVec
	listsTotal, listFailuresTotal         *metrics.Counter
}

func newCacheMetrics() *cacheMetrics {
	m := &cacheMetrics{
		registry: metrics.NewKubeRegistry(),
		requests: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace:      "ccmkit",
			Subsystem:      "instances_cache",
			Name:           "requests_total",
			Help:           "Instance cache lookups by result: hit, negative_hit (known missing), stale (served past expiry while the cloud fails), miss.",
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
	m.listFailuresTotal = metrics.NewCounter(&metrics.CounterOpts{
		Namespace:      "ccmkit",
		Subsystem:      "instances_cache",
		Name:           "list_failures_total",
		Help:           "List calls that failed; each is remembered for the negative TTL.",
		StabilityLevel: metrics.ALPHA,
	})
	m.registry.MustRegister(m.requests, m.listsTotal, m.listFailuresTotal)
	m.hits = m.requests.WithLabelValues("hit")
	m.negativeHits = m.requests.WithLabelValues("negative_hit")
	m.misses = m.requests.WithLabelValues("miss")
	m.staleHits = m.requests.WithLabelValues("stale")
	m.lists = m.listsTotal
	m.listFailures = m.listFailuresTotal
	return m
}
