package harness

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

// defaultErrorHandlers are apimachinery's handlers as the package
// initialized them, before TestMain installed the bubble-safe backoff.
var defaultErrorHandlers = slices.Clone(utilruntime.ErrorHandlers)

func funcPointers(hs []utilruntime.ErrorHandler) []uintptr {
	ps := make([]uintptr, len(hs))
	for i, h := range hs {
		ps[i] = reflect.ValueOf(h).Pointer()
	}
	return ps
}

func TestUpstreamErrorBackoffIsRecognised(t *testing.T) {
	var recognised []int
	for i, h := range defaultErrorHandlers {
		if isUpstreamBackoff(h) {
			recognised = append(recognised, i)
		}
	}
	// Upstream's defaults are [logError, backoffError(1ms)]: if this
	// fails, upstream changed them and isUpstreamBackoff needs updating.
	if !slices.Equal(recognised, []int{1}) || len(defaultErrorHandlers) != 2 {
		t.Fatalf("recognised upstream backoff at %v of %d default handlers, want [1] of 2", recognised, len(defaultErrorHandlers))
	}
}

func TestInstallErrorBackoffReplacesOnlyUpstreamBackoff(t *testing.T) {
	if !errorBackoffInstalled() {
		t.Fatal("TestMain did not install the error backoff")
	}
	prev := utilruntime.ErrorHandlers
	t.Cleanup(func() { utilruntime.ErrorHandlers = prev })

	mine := func(context.Context, error, string, ...any) {}
	logging, backoff := defaultErrorHandlers[0], defaultErrorHandlers[1]
	utilruntime.ErrorHandlers = []utilruntime.ErrorHandler{mine, backoff, logging}
	before := funcPointers(utilruntime.ErrorHandlers)

	restore := InstallErrorBackoff()
	got := funcPointers(utilruntime.ErrorHandlers)
	if got[0] != before[0] || got[2] != before[2] {
		t.Errorf("handlers it does not recognise changed: %v, want %v at 0 and 2", got, before)
	}
	if isUpstreamBackoff(utilruntime.ErrorHandlers[1]) || got[1] == before[1] {
		t.Errorf("upstream backoff at 1 not replaced")
	}
	restore()
	restore() // idempotent
	if got := funcPointers(utilruntime.ErrorHandlers); !slices.Equal(got, before) {
		t.Errorf("after restore: %v, want %v", got, before)
	}
}

// TestUpstreamErrorBackoffSleepsForDecadesInABubble shows why the
// replacement exists: upstream's backoff, seeded with the wall time, sleeps
// from 2000 (the bubble's clock) to today; the replacement does not.
func TestUpstreamErrorBackoffSleepsForDecadesInABubble(t *testing.T) {
	err := errors.New("boom")
	upstream := defaultErrorHandlers[1]
	safe := newBubbleSafeBackoff(errorBackoffMinPeriod)
	// Outside the bubble both remember the wall time (upstream's, as at
	// package init, or as a previous run of this test left it).
	upstream(t.Context(), err, "outside")
	safe(t.Context(), err, "outside")
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		upstream(t.Context(), err, "inside")
		if slept := time.Since(start); slept < 365*24*time.Hour {
			t.Errorf("upstream backoff slept %v in a bubble; expected years (fixed upstream? then the workaround can go)", slept)
		}
		start = time.Now()
		safe(t.Context(), err, "inside")
		safe(t.Context(), err, "inside again")
		if slept := time.Since(start); slept > errorBackoffMinPeriod {
			t.Errorf("bubble-safe backoff slept %v, want at most %v", slept, errorBackoffMinPeriod)
		}
	})
}
