// Package instances is ccmkit's instance block: the provider author writes a
// [Source] that looks an instance up in the cloud (and, optionally, a
// [Lister] that lists them all); the block turns it into a cached, correct
// cloudprovider.InstancesV2.
//
// The upstream controllers ask a lot: InstanceMetadata for every node every
// 5 minutes, InstanceExists and InstanceShutdown for every NotReady node every
// 5 seconds. [Cache] answers those from memory:
//
//   - entries live for a TTL, "not found" for a shorter NegativeTTL;
//   - concurrent misses on one key share one cloud call (singleflight);
//   - in list mode (the Source also implements [Lister]) one List call
//     refreshes every entry, and all concurrent misses share it;
//   - entries are forgotten when their Node is deleted ([Cache.NodeDeleted]),
//     and a lookup in flight at that moment does not re-cache them;
//   - an instance found by node name is cached under that name, even when
//     the cloud does not report node names;
//   - the clock is injected; hit, miss and stale counts are metrics.
//
// # When the cloud fails
//
//   - A failed List is remembered for NegativeTTL: during an outage at most
//     one List attempt reaches the cloud per NegativeTTL (the List is never
//     retried inside a call), and misses meanwhile fall back to the entries
//     below or to a lookup of their own key.
//   - An entry cached before the outage keeps answering for
//     [CacheOptions.MaxStale] (default 10 minutes) past its expiry, then the
//     cloud's error is returned: never "not found" because the cloud is down.
//     An expired "not found" is never served stale.
//   - An invalid instance in a List (no ID, a state the Source could not map)
//     is skipped and logged once; it is looked up on its own, so only its
//     Node sees the error. A node name shared by several instances that are
//     not terminated is left to the Source.
//   - Every cloud call, shared ones included, ends at the budget's per-attempt
//     deadline (cloudcall.BudgetOptions.AttemptTimeout), whatever the
//     callers' contexts: the upstream controllers pass context.TODO().
//
// See "Mapping your SDK" in package cloudcall for how a Source should map
// its cloud's errors and statuses.
//
// [InstancesV2] adapts a Cache to cloudprovider.InstancesV2 with upstream's
// semantics: a terminated or missing instance makes InstanceExists return
// (false, nil), a stopped one is shut down, InstanceMetadata never returns
// (nil, nil) and returns cloudprovider.InstanceNotFound unwrapped.
//
// [ParseProviderID] and [FormatProviderID] convert between node
// spec.providerID ("<provider>://<id>") and instance IDs.
//
// Dropping down a level: use Cache.Get directly for your own lookups, or
// skip the cache and call your Source; cloudcall classifies its errors.
package instances
