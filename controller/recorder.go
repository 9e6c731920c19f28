package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
)

// repeatWindow suppresses an identical event for the same app, so a key that
// fails on every backoff step does not flood the stream.
const repeatWindow = 10 * time.Minute

// StreamRecorder publishes reconcile events as CloudEvents on
// SERVINGAPP_EVENTS and logs them. A failed publish is logged, never fatal:
// events explain reconciles, they do not drive them.
type StreamRecorder struct {
	JS           jetstream.JetStream // nil: log only
	Log          *slog.Logger
	Clock        clock.Clock
	ControllerID string

	mu        sync.Mutex
	last      map[string]lastEvent
	lastSweep time.Time
}

type lastEvent struct {
	reason, message string
	at              time.Time
}

// For returns a recorder bound to app.
func (r *StreamRecorder) For(app *v1.ServingApp) model.Recorder {
	return appRecorder{r: r, ev: audit.ReconcileEvent{
		Namespace:  app.Metadata.Namespace,
		Name:       app.Metadata.Name,
		UID:        app.Metadata.UID,
		Generation: app.Metadata.Generation,
		Controller: r.ControllerID,
	}}
}

type appRecorder struct {
	r  *StreamRecorder
	ev audit.ReconcileEvent
}

func (a appRecorder) Event(ctx context.Context, reason, message string) {
	a.r.record(ctx, a.ev, audit.SeverityNormal, reason, message)
}

func (a appRecorder) Warning(ctx context.Context, reason, message string) {
	a.r.record(ctx, a.ev, audit.SeverityWarning, reason, message)
}

func (r *StreamRecorder) record(ctx context.Context, ev audit.ReconcileEvent, severity, reason, message string) {
	now := r.Clock.Now()
	key := ev.Namespace + "/" + ev.Name
	r.mu.Lock()
	if r.last == nil {
		r.last = map[string]lastEvent{}
	}
	// Entries older than the window suppress nothing: drop them once a
	// window, so apps that were deleted (or went quiet) do not stay forever.
	if now.Sub(r.lastSweep) >= repeatWindow {
		for k, e := range r.last {
			if now.Sub(e.at) >= repeatWindow {
				delete(r.last, k)
			}
		}
		r.lastSweep = now
	}
	prev, seen := r.last[key]
	if seen && prev.reason == reason && prev.message == message && now.Sub(prev.at) < repeatWindow {
		r.mu.Unlock()
		return
	}
	r.last[key] = lastEvent{reason: reason, message: message, at: now}
	r.mu.Unlock()

	ev.Severity, ev.Reason, ev.Message = severity, reason, truncate(message)
	level := slog.LevelInfo
	if severity == audit.SeverityWarning {
		level = slog.LevelWarn
	}
	r.Log.Log(ctx, level, "event", "app", key, "generation", ev.Generation, "reason", reason, "message", ev.Message)
	if r.JS == nil {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := audit.PublishReconcileEvent(pctx, r.JS, audit.NewEventID(), now, ev); err != nil {
		r.Log.Warn("publish reconcile event", "app", key, "reason", reason, "error", err)
	}
}
