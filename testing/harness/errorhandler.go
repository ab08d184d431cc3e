package harness

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

// upstreamBackoffFunc is the name the Go runtime gives the closure that
// apimachinery's default ErrorHandlers hold as their rate limiter
// (backoffError(1ms) in k8s.io/apimachinery/pkg/util/runtime). A test pins
// that the default handlers still carry it, so an upstream rename fails a
// test instead of silently leaving the wedging handler installed.
const upstreamBackoffFunc = "k8s.io/apimachinery/pkg/util/runtime.backoffError.func1"

// errorBackoffMinPeriod is upstream's global rate limit between two
// HandleError calls.
const errorBackoffMinPeriod = time.Millisecond

var errorBackoffState struct {
	mu        sync.Mutex
	installed int // InstallErrorBackoff calls not yet restored
}

// InstallErrorBackoff makes apimachinery's error handlers safe inside
// testing/synctest bubbles and returns a function restoring the handlers it
// found.
//
// Why: k8s.io/apimachinery/pkg/util/runtime.ErrorHandlers holds, by
// default, a rudimentary backoff that sleeps so that HandleError runs at
// most once a millisecond. It remembers the wall time of the previous error,
// initially the time the package was initialized. Inside a synctest bubble
// the clock starts at midnight UTC on 2000-01-01, the difference is negative,
// and that handler sleeps for minPeriod minus it: for the decades between
// 2000 and today. The controller worker that reported the error (any
// HandleError call, for instance a failed cloud call in the service
// controller) then never returns, and the test hangs until its bubble
// deadlocks.
//
// InstallErrorBackoff replaces only handlers it recognises as upstream's
// backoff (by the function the closure was compiled from) with one that
// keeps upstream's 1ms rate limit but ignores a previous error from the
// future, so it never sleeps longer than 1ms of the caller's clock. Every
// other handler, including upstream's logging one and any a test
// installed, stays as it is, in the same order.
//
// ErrorHandlers is a package-level slice that upstream reads without a lock:
// call InstallErrorBackoff before any goroutine may report an error, which
// in practice means from TestMain (see [Main]), and call restore after every
// such goroutine has ended. It is test-only global state; nothing outside
// tests should call it.
func InstallErrorBackoff() (restore func()) {
	errorBackoffState.mu.Lock()
	defer errorBackoffState.mu.Unlock()
	saved := utilruntime.ErrorHandlers
	handlers := slices.Clone(saved)
	for i, h := range handlers {
		if isUpstreamBackoff(h) {
			handlers[i] = newBubbleSafeBackoff(errorBackoffMinPeriod)
		}
	}
	utilruntime.ErrorHandlers = handlers
	errorBackoffState.installed++
	var once sync.Once
	return func() {
		once.Do(func() {
			errorBackoffState.mu.Lock()
			defer errorBackoffState.mu.Unlock()
			utilruntime.ErrorHandlers = saved
			errorBackoffState.installed--
		})
	}
}

// Main is a TestMain for packages that use the harness: it installs the
// bubble-safe error backoff ([InstallErrorBackoff]), runs the tests, and
// restores the original handlers. Use it as
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
// or, with a TestMain of your own, call InstallErrorBackoff before m.Run
// and its restore function after. The test binary exits with m.Run's code
// when Main returns.
func Main(m *testing.M) {
	restore := InstallErrorBackoff()
	defer restore()
	m.Run()
}

// errorBackoffInstalled reports whether InstallErrorBackoff is in effect.
func errorBackoffInstalled() bool {
	errorBackoffState.mu.Lock()
	defer errorBackoffState.mu.Unlock()
	return errorBackoffState.installed > 0
}

// errNoErrorBackoff is Start's error when the test binary did not install
// the error backoff.
var errNoErrorBackoff = errors.New("the bubble-safe error backoff is not installed: add func TestMain(m *testing.M) { harness.Main(m) } to the test package (or call harness.InstallErrorBackoff from your TestMain)")

// isUpstreamBackoff reports whether h is a closure created by upstream's
// backoffError.
func isUpstreamBackoff(h utilruntime.ErrorHandler) bool {
	if h == nil {
		return false
	}
	f := runtime.FuncForPC(reflect.ValueOf(h).Pointer())
	return f != nil && f.Name() == upstreamBackoffFunc
}

// newBubbleSafeBackoff returns an ErrorHandler that, like upstream's,
// delays a caller so that errors are handled at most once per minPeriod,
// but measures the interval with the caller's clock and ignores a previous
// error from the future (another bubble's clock, or the wall clock seen from
// inside a bubble), so it never sleeps longer than minPeriod.
func newBubbleSafeBackoff(minPeriod time.Duration) utilruntime.ErrorHandler {
	var (
		mu   sync.Mutex
		last time.Time
	)
	return func(context.Context, error, string, ...any) {
		now := time.Now()
		mu.Lock()
		d := now.Sub(last)
		last = now
		mu.Unlock()
		if d >= 0 && d < minPeriod {
			time.Sleep(minPeriod - d)
		}
	}
}
