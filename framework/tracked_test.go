package framework_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/component-base/metrics/legacyregistry"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
	"k8s.io/component-base/metrics/testutil"

	"github.com/ccmkit/ccmkit/framework"
)

func TestStartTracksAControllerUntilItStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		controllersmetrics.Register()
		m := controllersmetrics.NewControllerManagerMetrics("tracked-test")
		c := framework.Controller{Name: "fake-tracked-controller"}
		failed := errors.New("lost the cloud")
		stop := make(chan error)
		tr := framework.Start(t.Context(), c, framework.RunFunc(func(ctx context.Context) error { return <-stop }), m)
		synctest.Wait()

		assert.Equal(t, "fake-tracked-controller", tr.Name())
		assert.NoError(t, tr.HealthChecker().Check(nil), "healthy while it runs")
		assert.Equal(t, 1.0, running(t, "tracked-test", "fake-tracked-controller"), "counted in running_managed_controllers")

		stop <- failed
		<-tr.Done()
		assert.True(t, tr.Stopped())
		err := tr.HealthChecker().Check(nil)
		require.ErrorIs(t, err, failed, "the health check fails once it stopped, with why")
		assert.Equal(t, 0.0, running(t, "tracked-test", "fake-tracked-controller"))
	})
}

// running reads running_managed_controllers{manager, name} from the legacy
// registry that /metrics serves.
func running(t *testing.T, manager, name string) float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "running_managed_controllers" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["manager"] == manager && labels["name"] == name {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func TestCommandRegistersManagerMetrics(t *testing.T) {
	// Importing framework registers upstream main's client-go and version
	// metrics (leader_election_master_status, rest_client_*,
	// kubernetes_build_info), as upstream's main does by import.
	err := testutil.GatherAndCompare(legacyregistry.DefaultGatherer, strings.NewReader(""), "kubernetes_build_info")
	require.Error(t, err, "kubernetes_build_info is registered, so an empty expectation differs")
	assert.Contains(t, err.Error(), "kubernetes_build_info")
}
