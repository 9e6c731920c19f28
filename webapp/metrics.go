package webapp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the app's Prometheus metrics, registered on the app's own
// registry so many apps can run in one process.
type metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	logins          *prometheus.CounterVec
	invocations     *prometheus.CounterVec
	invokeLatency   *prometheus.HistogramVec
	refreshes       *prometheus.CounterVec
	expired         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_webapp_http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "servingapp_webapp_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"route"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_webapp_logins_total",
			Help: "Completed sign-ins by outcome: succeeded, or the login.failed reason.",
		}, []string{"outcome"}),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_webapp_invocations_total",
			Help: "Serving endpoint invocations by outcome (completed, failed) and HTTP status returned.",
		}, []string{"outcome", "code"}),
		invokeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "servingapp_webapp_invocation_duration_seconds",
			Help:    "Serving endpoint invocation latency as the app saw it, by outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_webapp_token_refreshes_total",
			Help: "Access token refreshes by outcome: refreshed, rejected (session ended), failed (temporary), shared (another request or replica refreshed).",
		}, []string{"outcome"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_webapp_sessions_expired_total",
			Help: "Sessions ended without logout, by reason.",
		}, []string{"reason"}),
	}
	// Series that exist from the start, so dashboards and alerts see zeros.
	for _, o := range []string{"refreshed", "rejected", "failed", "shared"} {
		m.refreshes.WithLabelValues(o)
	}
	for _, o := range []string{"completed", "failed"} {
		m.invokeLatency.WithLabelValues(o)
	}
	m.logins.WithLabelValues("succeeded")
	for _, c := range []prometheus.Collector{m.requests, m.requestDuration, m.logins, m.invocations, m.invokeLatency, m.refreshes, m.expired} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register web app metrics: %w", err)
		}
	}
	return m, nil
}
