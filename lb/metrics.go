package lb

import (
	"k8s.io/component-base/metrics"
)

type lbMetrics struct {
	registry metrics.KubeRegistry
	pending  *metrics.Gauge
	writes   *metrics.CounterVec
	pool     *metrics.GaugeVec
	reaped   *metrics.CounterVec
	orphans  *metrics.Gauge
}

func newLBMetrics() *lbMetrics {
	m := &lbMetrics{
		registry: metrics.NewKubeRegistry(),
		pending: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace: "ccmkit", Subsystem: "lb", Name: "pending",
			Help:           "Load balancers the cloud is still provisioning, as last observed.",
			StabilityLevel: metrics.ALPHA,
		}),
		writes: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "ccmkit", Subsystem: "lb", Name: "writes_total",
			Help:           "Cloud writes by kind (create, update, update_targets, delete, adopt).",
			StabilityLevel: metrics.ALPHA,
		}, []string{"kind"}),
		pool: metrics.NewGaugeVec(&metrics.GaugeOpts{
			Namespace: "ccmkit", Subsystem: "lb", Name: "pool_addresses",
			Help:           "Addresses of each pool and IP family, by state (used, free).",
			StabilityLevel: metrics.ALPHA,
		}, []string{"pool", "family", "state"}),
		reaped: metrics.NewCounterVec(&metrics.CounterOpts{
			Namespace: "ccmkit", Subsystem: "lb", Name: "orphans_reaped_total",
			Help:           "Orphaned load balancers the reaper deleted (result deleted, failed, dry_run).",
			StabilityLevel: metrics.ALPHA,
		}, []string{"result"}),
		orphans: metrics.NewGauge(&metrics.GaugeOpts{
			Namespace: "ccmkit", Subsystem: "lb", Name: "orphans",
			Help:           "Load balancers owned by this cluster whose Service is gone, as of the reaper's last pass.",
			StabilityLevel: metrics.ALPHA,
		}),
	}
	m.registry.MustRegister(m.pending, m.writes, m.pool, m.reaped, m.orphans)
	return m
}
