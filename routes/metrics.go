package routes

import (
	"k8s.io/component-base/metrics"
)

// Metrics are the block's metrics: cloud writes by kind, and the route
// table's size against its limit. One Metrics may be shared by an Adapter,
// its Batcher and a Controller of one provider. Its methods are safe for
// concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	writes *metrics.CounterVec
	size   *metrics.Gauge
	limit  *metrics.Gauge
}

// NewMetrics returns unregistered metrics; register Collectors with the
// binary's registry (framework does).
func NewMetrics() *Metrics {
	return &Metrics{
		writes: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace:      "ccmkit",
			Subsystem:      "routes",
			Name:           "writes_total",
			Help:           "Route-table writes sent to the cloud by kind (create, delete: one route; batch: one Apply of many changes) and result (ok, error).",
			StabilityLevel: metrics.ALPHA,
		}, []string{"kind", "result"}),
		size: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace:      "ccmkit",
			Subsystem:      "routes",
			Name:           "table_routes",
			Help:           "Routes this cluster owns in the cloud's route table, as last listed.",
			StabilityLevel: metrics.ALPHA,
		}),
		limit: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace:      "ccmkit",
			Subsystem:      "routes",
			Name:           "table_limit",
			Help:           "The route table's capacity in routes (configured, or learned from the cloud's table-full error); 0 when unknown.",
			StabilityLevel: metrics.ALPHA,
		}),
	}
}

// Collectors returns the metrics, for a registry.
func (m *Metrics) Collectors() []metrics.Registerable {
	if m == nil {
		return nil
	}
	return []metrics.Registerable{m.writes, m.size, m.limit}
}

func (m *Metrics) wrote(kind string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.writes.WithLabelValues(kind, result).Inc()
}

func (m *Metrics) listed(n int) {
	if m != nil {
		m.size.Set(float64(n))
	}
}

func (m *Metrics) setLimit(n int) {
	if m != nil {
		m.limit.Set(float64(n))
	}
}
