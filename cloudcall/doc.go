// Package cloudcall is the cloud-call policy shared by every ccmkit block and
// by provider authors: how a cloud API error is classified, and how calls are
// paced, gated and retried so that a cloud-controller-manager never hammers
// its cloud nor blocks a controller worker indefinitely.
//
// # Classifying errors
//
// A backend wraps its cloud SDK's errors with [NotFound], [Transient],
// [Throttled] or [Permanent]. The blocks then decide with [errors.Is] on
// [ErrNotFound], [ErrTransient], [ErrThrottled] and [ErrPermanent], and read
// Retry-After with [RetryAfter]. An unclassified error is treated as permanent
// (never retried), so that a bug in a backend cannot turn into a retry storm.
// context.Canceled and context.DeadlineExceeded are transient.
//
// # The budget
//
// A [Budget] owns two token buckets (reads and writes, golang.org/x/time/rate)
// and Retry-After gates. A share of each bucket can be reserved for a block
// (the "instances" block keeps 30% unless [BudgetOptions.Reserved] says
// otherwise), so that load-balancer work never starves node initialization.
// The gates are scoped by API family ([Call.Family], default the block) and
// kind: a 429 from the load-balancer API holds load-balancer reads, not the
// instance reads of node initialization.
//
// [Budget.Do] runs one logical call: it waits for a token and for the gate
// (re-reading it after every wait), runs each attempt under
// [BudgetOptions.AttemptTimeout] (default 30s, on the budget's clock), and
// retries transient and throttled errors with exponential backoff and jitter,
// or after the cloud's Retry-After. Its outcomes:
//
//   - the time waiting for tokens, gates and backoff would exceed
//     [BudgetOptions.MaxWait] (default 10s; time in calls is not counted):
//     a [*ThrottledError] whose RetryAfter says when to come back, wrapping
//     [ErrBudgetExhausted] and the last cloud error. The lb block turns only
//     this into api.NewRetryError;
//   - the attempts run out on transient errors: the last error wrapped with
//     the attempt count, so an outage goes back to the controller's own
//     backoff (upstream's 5 s to 300 s) instead of a fixed-interval loop;
//   - not found, permanent or unclassified: the error unchanged;
//   - an invalid [Call]: an error wrapping [ErrInvalidCall], never a panic.
//
// No call ever blocks longer than MaxWait plus MaxAttempts times
// AttemptTimeout, even under context.TODO(), which the upstream controllers
// pass on several paths.
//
// Time comes from an injected k8s.io/utils/clock.Clock; tests use the fake
// clock or run inside testing/synctest bubbles.
//
// # Mapping your SDK
//
// The blocks act on the classification alone, so map each answer of your
// cloud's SDK deliberately:
//
//   - 404, "no such instance" and the like: [NotFound]. Only for the object
//     asked about: a 404 for a missing region or API endpoint is [Permanent].
//   - 429: [Throttled] with the Retry-After the cloud sent (zero when it sent
//     none; the budget then backs off). Name the API family in [Call.Family]
//     when the cloud throttles per family rather than per block.
//   - 503 (or any 5xx) with a Retry-After: [Throttled] with that delay, not
//     [Transient]: the cloud said when to come back, and the budget closes the
//     family's gate instead of retrying sooner.
//   - 5xx without Retry-After, connection resets, DNS failures, the SDK's own
//     timeouts: [Transient].
//   - Context errors: return them wrapped with %w (fmt.Errorf("get server:
//     %w", err)); they are already transient. Do not wrap them with
//     [Permanent]: a controller that is shutting down, or an attempt that hit
//     its AttemptTimeout, says nothing about the object.
//   - 400, 401, 403, 409, 422 and quota errors: [Permanent], or leave them
//     unclassified; retrying does not help.
//
// Cloud instance statuses map to the instances block's states; a wrong
// StateTerminated deletes the Node, so be conservative:
//
//   - only a status that means the machine is gone for good ("terminated",
//     "deleted") is StateTerminated; "shutting-down" or "deleting" still
//     exists: StateRunning until the cloud says it is gone;
//   - only a machine that is really off ("stopped") is StateStopped;
//     "stopping" is StateRunning;
//   - "provisioning", "starting", "rebooting", "migrating": StatePending;
//   - an unknown status (your SDK is older than the cloud): StatePending, and
//     log it. It keeps the Node and its addresses, where an error would fail
//     every lookup of that node and StateTerminated would delete it. In list
//     mode the cache skips an instance it cannot accept and looks it up on
//     its own, so one odd instance never fails the other nodes.
//
// A node name that matches several instances (a machine replaced under the
// same name, or a name that is not unique in your cloud): prefer the one that
// is not terminated; if more than one is not terminated, return an error
// (Permanent) naming the candidates, never one at random, since the chosen
// instance's providerID is written to the Node for good. Lookups by ID are
// authoritative and unaffected.
//
// testing/conformance's instances suite checks this mapping when its fixture
// can make the SDK fail (InstancesFixture.FailNext).
//
// # Dropping down a level
//
// Authors who want their own retry loop can still use [Classify] and
// [RetryAfter] alone, or call [Budget.Wait] to take a token without the retry
// loop, and [Budget.HoldUntil] to close a gate themselves.
package cloudcall
