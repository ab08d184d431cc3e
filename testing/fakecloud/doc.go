// Package fakecloud is an in-memory, deterministic cloud for testing ccmkit
// providers without a cloud account. A [Cloud] holds the state (instances
// today; load balancers and routes as those blocks land), exposes a backend
// for each ccmkit block ([Cloud.Instances] is an instances.Source and
// instances.Lister), and records every call.
//
// Fault injection ([Cloud.Inject]) is per operation: fail once, N times,
// forever, or at a seeded random rate; answer 429 with a Retry-After; add
// latency measured on the injected clock. Decisions use a math/rand/v2
// generator seeded from [Options.Seed], so a failing test replays exactly.
//
// The Cloud is safe for concurrent use. Backends never return pointers into
// the Cloud's state: every result is a copy.
//
// # What it does not model
//
//   - Eventual consistency, asynchronous operations, quotas and named crash
//     points are not modelled yet; they land with the lb block.
//   - Pagination: List returns everything in one call.
//   - Authentication, regions as separate endpoints, API versioning.
//   - Latency is fixed per fault, not a distribution; it waits on the
//     injected clock, so with a fake clock the test must step it, and inside
//     a testing/synctest bubble it passes in simulated time.
package fakecloud
