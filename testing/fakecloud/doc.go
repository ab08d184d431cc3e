// Package fakecloud is an in-memory, deterministic cloud for testing ccmkit
// providers without a cloud account. A [Cloud] holds the state (instances,
// load balancers; routes as that block lands), exposes a backend for each
// ccmkit block ([Cloud.Instances] is an instances.Source and
// instances.Lister; [Cloud.LoadBalancers] is an lb.Backend with every
// optional capability), and records every call.
//
// # The model
//
// Every backend call is an operation, named by an [Op] constant
// ([OpGetInstance], [OpListInstances], ...), and runs through one core:
//
//   - a baseline latency per operation ([Options.Latency],
//     [Cloud.SetLatency]), waited on the injected clock;
//   - faults ([Cloud.Inject]): fail once, N times, forever, or at a seeded
//     random rate; answer 429 with a Retry-After; add latency; hang until the
//     caller's context ends. Several faults on one operation compose (a
//     latency plus a 20% error rate plus a 429 once), as [Fault] describes;
//   - crash points ([Fault.After]): the fault applies after the operation's
//     effect, so the resource exists and the call still fails or times out;
//   - eventual consistency ([Options.ReadLag]): writes are durable at once,
//     reads see them only after the lag, on the injected clock;
//   - a call log ([Cloud.Calls]) with the clock's time of each call, counts
//     per operation ([Cloud.Count]) and the densest second
//     ([Cloud.MaxCallsPerSecond]) for rate assertions.
//
// Decisions use a math/rand/v2 generator seeded from [Options.Seed], so a
// failing test replays exactly (given the same order of calls).
//
// The Cloud is safe for concurrent use. Backends never return pointers into
// the Cloud's state: every result is a copy.
//
// # Load balancers
//
// [LBBackend] models what the lb block relies on ([LBBackend] lists the
// details):
//
//   - names unique in the current state, so a repeated Create returns an
//     *lb.ExistsError carrying the stored ownership key, even while reads
//     lag; the spec, Options included, stored as a deep copy and reported
//     back as given;
//   - asynchronous provisioning, counted in Find polls
//     ([Options.LBProvisionPolls]) or clock time ([Options.LBProvisionTime]),
//     a hold that keeps one Pending ([Cloud.HoldLoadBalancer]), a Failed
//     state ([Cloud.FailLoadBalancer]) and asynchronous deletion
//     ([Options.LBDeleteTime]);
//   - addresses from its own ranges (203.0.113.0/24, 2001:db8::/64), one per
//     IP family, or the requested ones, never one held twice; the ingress
//     IPMode ([Options.LBIPMode]); or, as an AWS ELB does, a hostname
//     instead of addresses ([Options.LBHostnameSuffix]);
//   - quotas ([Options.MaxLoadBalancers], [Options.MaxListeners]) as
//     permanent errors;
//   - Find and FindLegacy with the read lag, List from the current state
//     (a Lister reads its own writes) unless [Cloud.SetListLag];
//   - seeding by the test ([Cloud.AddLoadBalancer]: another cluster's load
//     balancer, a previous CCM's with the zero key) and inspection of the
//     current state ([Cloud.LoadBalancer], [Cloud.LoadBalancerList]).
//
// It does not model: hostname ingress, listener or target validation (any
// protocol, port or providerID is accepted, targets need not be instances
// of the cloud), health checking, traffic, security groups, per-listener
// state, or a load balancer failing on its own (only FailLoadBalancer does
// that). Provisioning progress is per stored version: a lagged Find that
// sees an older version counts down that version's polls.
//
// # What it does not model
//
//   - Routes: they land with the routes block, on this core.
//   - Pagination: List returns everything in one call.
//   - Concurrency limits: any number of calls run at once, each with its own
//     latency; the cloud never queues calls.
//   - Authentication, regions as separate endpoints, API versioning.
//   - Latency is fixed per operation and fault, not a distribution; it waits
//     on the injected clock, so with a fake clock the test must step it, and
//     inside a testing/synctest bubble it passes in simulated time.
//   - Read lag is one cloud-wide delay, the same for every reader: no reader
//     sees a write early, and reads never go back in time.
//   - The state-changing methods (AddInstance, SetInstanceState,
//     RemoveInstance, AddLoadBalancer, FailLoadBalancer, HoldLoadBalancer)
//     are the test's hand on the cloud, not backend operations: they are not
//     logged and faults do not apply to them.
package fakecloud
