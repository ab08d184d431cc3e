package fakecloud

import (
	"sort"
	"time"
)

// history is a keyed store that remembers recent versions of each value, so
// that reads can see the state as it was a read lag ago while writes are
// durable at once (eventual consistency). Every resource kind of the cloud
// keeps its state in one. It is not safe for concurrent use: the Cloud's
// mutex guards it.
type history[T any] struct {
	versions map[string][]version[T]
}

type version[T any] struct {
	at time.Time
	v  *T // nil: absent (deleted)
}

func newHistory[T any]() history[T] { return history[T]{versions: map[string][]version[T]{}} }

// put records v (nil deletes) as key's value from now on, and drops the
// versions no read can see any more: those older than the newest one at or
// before now-lag.
func (h history[T]) put(key string, now time.Time, lag time.Duration, v *T) {
	vs := append(h.versions[key], version[T]{at: now, v: v})
	horizon := now.Add(-lag)
	keep := 0
	for i, x := range vs {
		if !x.at.After(horizon) {
			keep = i
		}
	}
	vs = vs[keep:]
	if len(vs) == 1 && vs[0].v == nil {
		delete(h.versions, key)
		return
	}
	h.versions[key] = vs
}

// current returns key's latest value, nil when absent.
func (h history[T]) current(key string) *T {
	vs := h.versions[key]
	if len(vs) == 0 {
		return nil
	}
	return vs[len(vs)-1].v
}

// at returns key's value as a read at t sees it, nil when absent.
func (h history[T]) at(key string, t time.Time) *T {
	var out *T
	for _, x := range h.versions[key] {
		if x.at.After(t) {
			break
		}
		out = x.v
	}
	return out
}

// visible returns every value a read at t sees, sorted by key.
func (h history[T]) visible(t time.Time) []*T {
	keys := make([]string, 0, len(h.versions))
	for k := range h.versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*T, 0, len(keys))
	for _, k := range keys {
		if v := h.at(k, t); v != nil {
			out = append(out, v)
		}
	}
	return out
}
