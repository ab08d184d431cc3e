package harness

import (
	"context"
	"sync"
	"time"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
)

var installErrorBackoff sync.Once

// bubbleSafeErrorBackoff replaces apimachinery's rudimentary error backoff
// in utilruntime.ErrorHandlers. Upstream's remembers the wall time of the
// last error from package init; inside a synctest bubble the clock starts in
// 2000, the difference is negative, and the next HandleError sleeps for the
// decades in between, wedging the controller worker that called it. This one
// ignores a last error from the future. Installed once per test process;
// the harness is test-only code.
func bubbleSafeErrorBackoff() {
	installErrorBackoff.Do(func() {
		var (
			mu   sync.Mutex
			last time.Time
		)
		const minPeriod = time.Millisecond
		handlers := make([]utilruntime.ErrorHandler, 0, len(utilruntime.ErrorHandlers))
		// Keep the logging handler (the first), drop upstream's backoff.
		if len(utilruntime.ErrorHandlers) > 0 {
			handlers = append(handlers, utilruntime.ErrorHandlers[0])
		}
		handlers = append(handlers, func(context.Context, error, string, ...any) {
			mu.Lock()
			now := time.Now()
			d := now.Sub(last)
			last = now
			mu.Unlock()
			if d >= 0 && d < minPeriod {
				time.Sleep(minPeriod - d)
			}
		})
		utilruntime.ErrorHandlers = handlers
	})
}
