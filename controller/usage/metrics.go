package usage

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus metrics.
type metrics struct {
	events         *prometheus.CounterVec
	statusWrites   prometheus.Counter
	failures       *prometheus.CounterVec
	pendingAcks    prometheus.Gauge
	foldedSeq      prometheus.Gauge
	streamBytes    prometheus.Gauge
	streamMaxBytes prometheus.Gauge
	scale          *prometheus.CounterVec
	lockout        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_usage_events_total",
			Help: "Audit events the usage consumer read, by result: counted, duplicate_sequence (already counted before a restart or redelivery), duplicate_id (stored twice by the stream), outside_window, invalid; gap_filled also counts, under its own label, each event read straight from the stream because its delivery went to another consumer.",
		}, []string{"result"}),
		statusWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "servingapp_usage_status_writes_total",
			Help: "Writes of status.usage.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_usage_failures_total",
			Help: "Failed operations of the usage consumer, by operation: store_state, write_status, set_desired_count, set_blocked, set_blocked_budget (the platform blocked only what fits its lockout budget; recorded as a LockoutIncomplete event, not retried until the list changes), list_apps, consume.",
		}, []string{"op"}),
		pendingAcks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "servingapp_usage_pending_acks",
			Help: "Audit messages read and waiting for their app's status write before they are acknowledged.",
		}),
		foldedSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "servingapp_usage_last_sequence",
			Help: "The last SERVINGAPP_AUDIT sequence the usage consumer has read.",
		}),
		streamBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "servingapp_audit_stream_bytes",
			Help: "Bytes stored in SERVINGAPP_AUDIT.",
		}),
		streamMaxBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "servingapp_audit_stream_max_bytes",
			Help: "MaxBytes of SERVINGAPP_AUDIT (-1: unlimited); at it, the stream refuses new events.",
		}),
		scale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_autoscaler_decisions_total",
			Help: "Autoscaler decisions that changed something, by action: ScaledUp, ScaledDown, ScaleDownDeferred.",
		}, []string{"action"}),
		lockout: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_lockout_actions_total",
			Help: "Source addresses blocked and unblocked after failed logins, by action: blocked, unblocked.",
		}, []string{"action"}),
	}
	for _, r := range []string{"counted", "duplicate_sequence", "duplicate_id", "outside_window", "invalid", "gap_filled"} {
		m.events.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.statusWrites, m.failures, m.pendingAcks, m.foldedSeq, m.streamBytes, m.streamMaxBytes, m.scale, m.lockout} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register usage metrics: %w", err)
		}
	}
	return m, nil
}
