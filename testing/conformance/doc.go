// Package conformance holds suites that any ccmkit backend runs to show it
// keeps the contracts the blocks rely on, in the shape of Go's
// testing/slogtest: RunX(t, newFixture) runs every case as a subtest with a
// fresh fixture, and TestX(fixture) returns every violation joined, for
// callers outside "go test". Each case has a name and states the rule it
// checks, so a failure says what to fix.
package conformance
