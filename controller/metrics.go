package controller

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the controller's Prometheus metrics, registered on a registry
// the caller owns (no global registry).
type Metrics struct {
	Reconciles *prometheus.CounterVec
	Duration   prometheus.Histogram
	Leader     prometheus.Gauge
	queue      atomic.Pointer[Queue]
}

// NewMetrics creates and registers the controller metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_controller_reconciles_total",
			Help: "Reconciles by result: success, requeue, error, terminal.",
		}, []string{"result"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "servingapp_controller_reconcile_duration_seconds",
			Help:    "Time spent in one reconcile.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "servingapp_controller_leader",
			Help: "1 while this controller leads: it holds the leader lease, or runs with leader election disabled.",
		}),
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "servingapp_controller_queue_depth",
		Help: "Keys ready to be reconciled.",
	}, func() float64 {
		if q := m.queue.Load(); q != nil {
			return float64(q.Len())
		}
		return 0
	})
	reg.MustRegister(m.Reconciles, m.Duration, m.Leader, depth)
	return m
}
