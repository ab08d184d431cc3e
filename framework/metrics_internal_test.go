package framework

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/component-base/metrics/legacyregistry"
)

func TestRegisterMetricsServesBuildInfoAndBlocks(t *testing.T) {
	p, err := NewBuilder("fake").Build()
	require.NoError(t, err)
	registerMetrics(p, "v7.0.0")
	registerMetrics(p, "v7.0.0") // a second command in one process changes nothing

	families, err := legacyregistry.DefaultGatherer.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		if f.GetName() != "ccmkit_build_info" {
			continue
		}
		labels := map[string]string{}
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		assert.NotEmpty(t, labels["ccmkit_version"], "from the build information ((devel) in ccmkit's own tests)")
		delete(labels, "ccmkit_version")
		assert.Equal(t, map[string]string{"provider": "fake", "provider_version": "v7.0.0", "kubernetes_version": "v1.37.2"}, labels)
	}
	for _, want := range []string{"ccmkit_build_info", "kubernetes_build_info"} {
		assert.True(t, names[want], "/metrics serves %s", want)
	}
}

func TestUnstampedWarning(t *testing.T) {
	if msg := unstampedWarning("v0.0.0-master+$Format:%H$"); !strings.Contains(msg, "k8s.io/component-base/version.gitVersion") {
		t.Errorf("an unstamped binary: %q, want the -ldflags to set", msg)
	}
	if msg := unstampedWarning("v1.37.2"); msg != "" {
		t.Errorf("a stamped binary: %q, want no warning", msg)
	}
}
