package framework_test

import (
	"os"
	"testing"

	logsapi "k8s.io/component-base/logs/api/v1"
)

// TestMain lets every command a test runs apply its (default) logging
// configuration: upstream refuses a second application in one process
// unless it is unchanged and this is set.
func TestMain(m *testing.M) {
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	os.Exit(m.Run())
}
