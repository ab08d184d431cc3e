// Package conformance holds suites that any ccmkit backend runs to show it
// keeps the contracts the blocks rely on, in the shape of Go's
// testing/slogtest: RunX(t, newFixture) runs every case as a subtest with a
// fresh fixture, and TestX(fixture) returns every violation joined, for
// callers outside "go test". Each case has a name and states the rule it
// checks, so a failure says what to fix.
//
// The suites:
//
//   - [RunInstances], [TestInstances]: an instances.Source (and
//     instances.Lister) over an [InstancesFixture] of known instances.
//   - [RunLoadBalancers], [TestLoadBalancers]: an lb.Backend (and its
//     optional lb.TargetUpdater, lb.Lister) over a [LoadBalancersFixture].
//     The suite creates load balancers with fresh Service UIDs under the
//     fixture's cluster and deletes them when each case ends, so it can run
//     against a real cloud account. It checks what the lb block relies on:
//     Find by ownership key, never (nil, nil); Create idempotent on the
//     name (*lb.ExistsError with the stored key, one load balancer even for
//     concurrent creates); the spec and its Options round-tripping through
//     Create, Update and UpdateTargets; idempotent Delete; ownership (another
//     cluster's key, [LoadBalancersFixture.ForeignKey]); List returning this
//     cluster's load balancers and reading its own writes; Pending becoming
//     Active. Asynchronous or eventually consistent backends are polled:
//     [LoadBalancersFixture.Settle] lets time pass between reads, up to
//     [LoadBalancersFixture.PollLimit] reads.
//   - [RunProvider], [TestProvider]: a whole *framework.Provider over a
//     [ProviderFixture] (Nodes whose instances the cloud holds): its blocks
//     together, called the way upstream's controllers call them
//     (InstancesV2 metadata, existence and shutdown for known and missing
//     Nodes; a Service load balancer's Get, Ensure polled through
//     RetryErrors, a re-Ensure with an equal status, Update and Delete;
//     routes created, listed and deleted through Provider.Routes). The suite
//     initializes the Provider with a fake clientset and synced informers,
//     as the manager does, so address pools restore.
//
// The instance and load-balancer suites classify the cloud's errors when the fixture has a FailNext
// hook ([SDKFailure]): 404 is not found, 429 or 503 with Retry-After is a
// *cloudcall.ThrottledError with it, other 5xx are transient, and (for load
// balancers) 400 is permanent.
package conformance
