package cloudcall

import (
	"time"

	"k8s.io/component-base/metrics"
)

type callMetrics struct {
	registry metrics.KubeRegistry
	calls    *metrics.CounterVec
	latency  *metrics.HistogramVec
	rejects  *metrics.CounterVec
}

func newCallMetrics() *callMetrics {
	m := &callMetrics{
		registry: metrics.NewKubeRegistry(),
		calls: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace:      "ccmkit",
			Subsystem:      "cloud",
			Name:           "calls_total",
			Help:           "Cloud API calls by block, operation and result (ok, not_found, transient, throttled, permanent).",
			StabilityLevel: metrics.ALPHA,
		}, []string{"block", "op", "result"}),
		latency: metrics.NewHistogramVec(&metrics.HistogramOpts{
			Namespace:      "ccmkit",
			Subsystem:      "cloud",
			Name:           "call_duration_seconds",
			Help:           "Latency of cloud API calls by block and operation.",
			Buckets:        metrics.ExponentialBuckets(0.005, 2, 14),
			StabilityLevel: metrics.ALPHA,
		}, []string{"block", "op"}),
		rejects: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace:      "ccmkit",
			Subsystem:      "cloud",
			Name:           "budget_rejections_total",
			Help:           "Calls refused before reaching the cloud because the wait budget was spent or the context ended.",
			StabilityLevel: metrics.ALPHA,
		}, []string{"block", "kind"}),
	}
	m.registry.MustRegister(m.calls, m.latency, m.rejects)
	return m
}

func (m *callMetrics) observe(c Call, class Class, d time.Duration) {
	m.calls.WithLabelValues(c.Block, c.Op, class.String()).Inc()
	m.latency.WithLabelValues(c.Block, c.Op).Observe(d.Seconds())
}

func (m *callMetrics) rejected(c Call) {
	m.rejects.WithLabelValues(c.Block, c.Kind.String()).Inc()
}
