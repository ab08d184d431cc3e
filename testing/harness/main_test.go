package harness_test

import (
	"testing"

	"github.com/ccmkit/ccmkit/testing/harness"
)

// TestMain installs the bubble-safe error backoff for every test in the
// package, before any controller goroutine runs.
func TestMain(m *testing.M) { harness.Main(m) }
