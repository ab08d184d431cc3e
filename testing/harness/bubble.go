package harness

import (
	"testing"
	"testing/synctest"
)

// InBubble runs f in a testing/synctest bubble from a benchmark, so that
// benchmarks can drive the upstream controllers in simulated time as tests
// do. synctest.Test takes a *testing.T only, so f runs as a one-off test
// through testing.RunTests (the function behind "go test"); a failure in f
// fails b. The wall-clock time InBubble takes is the real cost of the run.
func InBubble(b *testing.B, f func(t *testing.T)) {
	b.Helper()
	always := func(string, string) (bool, error) { return true, nil }
	ok := testing.RunTests(always, []testing.InternalTest{{
		Name: b.Name() + "/bubble",
		F:    func(t *testing.T) { synctest.Test(t, f) },
	}})
	if !ok {
		b.Fatal("the benchmark's synctest bubble failed")
	}
}
