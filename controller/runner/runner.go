// Package runner assembles a running controller from its config and a
// platform: streams, store, lease, recorder, reconciler, health and metrics
// endpoints. The servingapp-controller binary (AWS) and servingctl dev (local
// platform) both use it, so production and dev mode run the same code.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller"
	"github.com/servingapp/servingapp/controller/config"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/controller/usage"
	"github.com/servingapp/servingapp/internal/clock"
)

// Deps are what the caller builds for the runner.
type Deps struct {
	NC        *nats.Conn
	Platform  controller.Platform
	Registrar controller.Registrar // nil: no OAuth registration
	Log       *slog.Logger
	Registry  *prometheus.Registry
	Clock     clock.Clock
	// ModelConfig overrides what the runner derives from the config (dev mode sets
	// the scheme, port and Databricks host of the emulator).
	ModelConfig *model.Config
	// Listener, when set, serves health and metrics instead of listening on cfg.Listen.
	Listener net.Listener
}

// ModelConfig derives the model configuration from the controller config.
func ModelConfig(cfg *config.Config) model.Config {
	return model.Config{
		ControllerID:   cfg.ControllerID,
		DefaultImage:   cfg.DefaultImage,
		AppDomain:      cfg.AppDomain,
		Scheme:         "https",
		AppNATSURL:     cfg.NATS.AppURL,
		AppNATSCA:      cfg.NATS.AppCA,
		TrustedProxies: cfg.TrustedProxies,
		ExtraTags:      cfg.AWS.ExtraTags,
	}
}

// Run runs the controller until ctx is done. It returns
// controller.ErrLeadershipLost (possibly wrapped) when the lease was lost: the
// process must then exit, since a reconcile that ignored its cancellation may
// still be running (see controller.LeaderElector.Run), and be restarted as a
// standby.
func Run(ctx context.Context, cfg *config.Config, d Deps) error {
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
		d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	js, err := jetstream.New(d.NC)
	if err != nil {
		return fmt.Errorf("open JetStream: %w", err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := audit.EnsureStreams(setupCtx, js, audit.StreamOptions{
		Replicas:      cfg.Streams.Replicas,
		AuditMaxAge:   cfg.Streams.AuditMaxAge.Duration,
		AuditMaxBytes: cfg.Streams.AuditMaxBytes,
		EventsMaxAge:  cfg.Streams.EventsMaxAge.Duration,
	}); err != nil {
		return err
	}
	st, err := store.New(setupCtx, js, store.Options{Replicas: cfg.Streams.Replicas})
	if err != nil {
		return fmt.Errorf("open the API store: %w", err)
	}
	metrics := controller.NewMetrics(d.Registry)
	rec := &controller.StreamRecorder{JS: js, Log: d.Log, Clock: d.Clock, ControllerID: cfg.ControllerID}
	mc := ModelConfig(cfg)
	if d.ModelConfig != nil {
		mc = *d.ModelConfig
	}
	reconciler := &controller.Reconciler{
		Store: st, Platform: d.Platform, Registrar: d.Registrar, Recorder: rec, Config: mc, Clock: d.Clock,
	}
	opts := controller.Options{
		Workers: cfg.Workers,
		Resync:  cfg.Resync.Duration,
		Clock:   d.Clock,
		Log:     d.Log,
		Metrics: metrics,
	}
	if oc, ok := d.Platform.(controller.OrphanCollector); ok {
		opts.Orphans = oc
		opts.Recorder = gcRecorder{rec}
	}
	// The audit consumer (status.usage; autoscaling and lockout when the
	// platform can) runs while this controller leads; see controller/usage.
	var ctrl *controller.Controller
	scaler, canScale := d.Platform.(usage.Scaler)
	blocker, canBlock := d.Platform.(usage.Blocker)
	if !canScale || !canBlock {
		d.Log.Warn("the platform cannot scale apps or block addresses: spec.autoscaling or spec.identity.lockout has no effect", "autoscaling", canScale, "lockout", canBlock)
	}
	usageEngine, err := usage.New(usage.Options{
		JetStream: js, Store: st, Recorder: rec, Scaler: scaler, Blocker: blocker,
		Requeue: func(app model.Ref) { // reconcile soon after a scale
			if q := ctrl.Queue(); q != nil {
				q.Add(app.Key(), controller.PriorityChange)
			}
		},
		Clock: d.Clock, Log: d.Log, Registerer: d.Registry, Replicas: cfg.Streams.Replicas,
	})
	if err != nil {
		return err
	}
	runUsage := usageEngine.OnLeadership(ctx)
	defer runUsage(false)

	var leading atomic.Bool
	if !cfg.LeaderElection.Disabled {
		kv, err := js.CreateOrUpdateKeyValue(setupCtx, jetstream.KeyValueConfig{
			Bucket: controller.DefaultLeaseBucket, Description: "servingapp controller leases",
			Storage: jetstream.FileStorage, Replicas: cfg.Streams.Replicas, History: 1,
		})
		if err != nil {
			return fmt.Errorf("open the lease bucket: %w", err)
		}
		host, _ := os.Hostname()
		opts.Elector = &controller.LeaderElector{
			KV: kv, Identity: fmt.Sprintf("%s/%s/%s", cfg.ControllerID, host, audit.NewEventID()[:8]),
			Clock: d.Clock, Log: d.Log,
			LeaseTTL: cfg.LeaderElection.LeaseTTL.Duration, RenewEvery: cfg.LeaderElection.RenewEvery.Duration,
			RenewDeadline: cfg.LeaderElection.RenewDeadline.Duration,
			OnChange:      func(l bool) { leading.Store(l); runUsage(l) },
		}
	} else {
		leading.Store(true)
	}
	ctrl = controller.New(st, reconciler, opts)
	if cfg.LeaderElection.Disabled {
		runUsage(true)
	}

	srv := &http.Server{Handler: healthMux(d, &leading), ReadHeaderTimeout: 5 * time.Second}
	ln := d.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen for health and metrics on %s: %w", cfg.Listen, err)
		}
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.Log.Error("health and metrics server", "error", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	d.Log.Info("controller started", "controllerId", cfg.ControllerID, "platform", cfg.Platform, "workers", cfg.Workers, "leaderElection", !cfg.LeaderElection.Disabled)
	return ctrl.Run(ctx)
}

// healthMux serves /healthz (the process runs), /readyz (NATS is connected;
// a standby is ready too: it is healthy and waiting) and /metrics.
func healthMux(d Deps, leading *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.NC.IsConnected() {
			http.Error(w, "not connected to NATS", http.StatusServiceUnavailable)
			return
		}
		role := "standby"
		if leading.Load() {
			role = "leader"
		}
		fmt.Fprintln(w, "ok", role)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry}))
	return mux
}

// gcRecorder records orphan collection as events of the controller itself
// (subject servingapp.events.servingapp-system.controller): the apps whose
// resources it collects no longer exist.
type gcRecorder struct{ r *controller.StreamRecorder }

func (g gcRecorder) owner() *v1.ServingApp {
	return &v1.ServingApp{Metadata: v1.ObjectMeta{Namespace: "servingapp-system", Name: "controller"}}
}

func (g gcRecorder) Event(ctx context.Context, reason, message string) {
	g.r.For(g.owner()).Event(ctx, reason, message)
}

func (g gcRecorder) Warning(ctx context.Context, reason, message string) {
	g.r.For(g.owner()).Warning(ctx, reason, message)
}
