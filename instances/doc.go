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
//   - entries are forgotten when their Node is deleted ([Cache.NodeDeleted]);
//   - the clock is injected; hit/miss counts are metrics.
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
