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
//
// # The budget
//
// A [Budget] owns two token buckets (reads and writes, golang.org/x/time/rate)
// and a Retry-After gate per class. A share of each bucket can be reserved for
// a block (for example 30% of reads for "instances"), so that load-balancer
// work never starves node initialization. [Budget.Do] runs one logical call:
// it waits for a token, respects the gate, retries transient errors with
// exponential backoff and jitter, and gives up once the call's bounded wait
// ([BudgetOptions.MaxWait]) is spent, returning a [*ThrottledError] that the
// lb block turns into api.NewRetryError. No call ever blocks longer than
// MaxWait plus the durations of the cloud calls themselves: the upstream
// controllers call some methods with context.TODO() from a single worker.
//
// Time comes from an injected k8s.io/utils/clock.Clock; tests use the fake
// clock or run inside testing/synctest bubbles.
//
// # Dropping down a level
//
// Authors who want their own retry loop can still use [Classify] and
// [RetryAfter] alone, or call [Budget.Wait] to take a token without the retry
// loop.
package cloudcall
