package cloudcall

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors a backend's errors are classified with. Test with errors.Is.
var (
	// ErrNotFound: the object does not exist in the cloud. Never retried.
	ErrNotFound = errors.New("not found in cloud")
	// ErrTransient: a failure that may succeed if the same call is repeated
	// (timeouts, 5xx, connection resets). Retried with backoff.
	ErrTransient = errors.New("transient cloud error")
	// ErrThrottled: the cloud refused the call for rate limiting. Retried
	// after the Retry-After delay, if any, when it fits the call's wait budget.
	ErrThrottled = errors.New("throttled by cloud")
	// ErrPermanent: the call will fail the same way until something changes
	// (bad request, quota, permission). Never retried.
	ErrPermanent = errors.New("permanent cloud error")
)

// Class is the classification of an error returned by a cloud call.
type Class int

// The classes, from [Classify].
const (
	ClassOK Class = iota
	ClassNotFound
	ClassTransient
	ClassThrottled
	ClassPermanent
)

// String returns the class name used as the "result" metric label.
func (c Class) String() string {
	switch c {
	case ClassOK:
		return "ok"
	case ClassNotFound:
		return "not_found"
	case ClassTransient:
		return "transient"
	case ClassThrottled:
		return "throttled"
	default:
		return "permanent"
	}
}

// Classify returns the class of err. A nil error is ClassOK. An error wrapping
// none of the sentinels is ClassPermanent, except context.Canceled and
// context.DeadlineExceeded which are ClassTransient (the next sync may
// succeed). Classify is safe for concurrent use.
func Classify(err error) Class {
	switch {
	case err == nil:
		return ClassOK
	case errors.Is(err, ErrThrottled):
		return ClassThrottled
	case errors.Is(err, ErrNotFound):
		return ClassNotFound
	case errors.Is(err, ErrTransient),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ClassTransient
	default:
		return ClassPermanent
	}
}

type classified struct {
	class error
	err   error
}

func (e *classified) Error() string {
	if e.err == nil {
		return e.class.Error()
	}
	return e.class.Error() + ": " + e.err.Error()
}

// Unwrap returns both the class sentinel and the cause.
func (e *classified) Unwrap() []error {
	if e.err == nil {
		return []error{e.class}
	}
	return []error{e.class, e.err}
}

// NotFound classifies err as ErrNotFound. err may be nil.
func NotFound(err error) error { return &classified{ErrNotFound, err} }

// Transient classifies err as ErrTransient. err may be nil.
func Transient(err error) error { return &classified{ErrTransient, err} }

// Permanent classifies err as ErrPermanent. err may be nil.
func Permanent(err error) error { return &classified{ErrPermanent, err} }

// NotFoundf is NotFound(fmt.Errorf(format, args...)).
func NotFoundf(format string, args ...any) error { return NotFound(fmt.Errorf(format, args...)) }

// ThrottledError reports that the cloud, or the budget on its behalf, refused
// a call for rate limiting. It matches ErrThrottled with errors.Is.
type ThrottledError struct {
	// RetryAfter is how long the caller should wait before the next attempt;
	// zero when the cloud gave no hint.
	RetryAfter time.Duration
	// Err is the cause, if any.
	Err error
}

// Throttled returns a *ThrottledError with the given Retry-After (zero when
// the cloud gave none) and cause (may be nil).
func Throttled(retryAfter time.Duration, err error) error {
	return &ThrottledError{RetryAfter: retryAfter, Err: err}
}

func (e *ThrottledError) Error() string {
	msg := ErrThrottled.Error()
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns ErrThrottled and the cause.
func (e *ThrottledError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrThrottled}
	}
	return []error{ErrThrottled, e.Err}
}

// RetryAfter returns the Retry-After of the first *ThrottledError in err's
// chain, and whether there was one with a positive delay.
func RetryAfter(err error) (time.Duration, bool) {
	var t *ThrottledError
	if errors.As(err, &t) && t.RetryAfter > 0 {
		return t.RetryAfter, true
	}
	return 0, false
}
