package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
)

// Result tells the worker what to do with a key after a successful reconcile.
type Result struct {
	// RequeueAfter, when positive, reconciles the key again after this long
	// (for example while a rollout is in progress).
	RequeueAfter time.Duration
}

// DefaultProgressPoll is how often an app whose rollout is in progress is looked at again.
const DefaultProgressPoll = 5 * time.Second

// Reconciler converges one app: spec → model → observe → diff → apply →
// status. It never learns why it runs; it reads the world each time.
type Reconciler struct {
	Store     Store
	Platform  Platform
	Registrar Registrar // optional: nil skips OAuth registration
	Recorder  EventRecorder
	Config    model.Config
	Clock     clock.Clock
	// ProgressPoll is how soon an app that is not yet available is looked at again.
	ProgressPoll time.Duration
}

// EventRecorder records events for one app at a time.
type EventRecorder interface {
	For(app *v1.ServingApp) model.Recorder
}

// Reconcile converges the app stored under key ("<namespace>.<name>").
func (r *Reconciler) Reconcile(ctx context.Context, key string) (Result, error) {
	ns, name, ok := strings.Cut(key, ".")
	if !ok {
		return Result{}, model.Terminal("InvalidKey", fmt.Errorf("key %q is not <namespace>.<name>", key))
	}
	app, err := r.Store.Get(ctx, ns, name)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, nil // gone: its finalizer already ran, or it never had resources
	}
	if err != nil {
		return Result{}, fmt.Errorf("read %s/%s: %w", ns, name, err)
	}
	rec := r.Recorder.For(app)
	if app.Metadata.DeletionTimestamp != nil {
		return Result{}, r.finalize(ctx, app, rec)
	}
	return r.sync(ctx, app, rec)
}

func (r *Reconciler) sync(ctx context.Context, app *v1.ServingApp, rec model.Recorder) (Result, error) {
	gen := app.Metadata.Generation
	o := outcome{generation: gen}
	m, err := model.Build(app, r.Config)
	if err != nil {
		o.err = model.Terminal("InvalidSpec", err)
		return Result{}, r.finish(ctx, app, rec, o)
	}
	o.url = m.URL
	// The finalizer goes on before anything external exists, so a deletion can
	// never leave resources behind.
	if !slices.Contains(app.Metadata.Finalizers, v1.FinalizerCleanup) {
		if _, err := r.Store.AddFinalizer(ctx, app.Metadata.Namespace, app.Metadata.Name, v1.FinalizerCleanup); err != nil {
			return Result{}, fmt.Errorf("add finalizer to %s: %w", app.NamespacedName(), err)
		}
	}
	if r.Registrar != nil {
		cond, err := r.Registrar.Register(ctx, m, rec)
		cond.Type = v1.ConditionOAuthRegistered
		o.oauth = &cond
		if err != nil {
			o.err = fmt.Errorf("register OAuth client: %w", err)
			return Result{}, r.finish(ctx, app, rec, o)
		}
	}
	obs, err := r.Platform.Observe(ctx, m)
	if err != nil {
		o.err = fmt.Errorf("observe: %w", err)
		return Result{}, r.finish(ctx, app, rec, o)
	}
	obs, err = r.Platform.Apply(ctx, m, obs, rec)
	o.obs = obs
	if err != nil {
		o.err = err
		return Result{}, r.finish(ctx, app, rec, o)
	}
	o.oauthIntegrationID = m.OAuth.IntegrationID
	if err := r.finish(ctx, app, rec, o); err != nil {
		return Result{}, err
	}
	if !obs.Available || (o.oauth != nil && o.oauth.Status != v1.ConditionTrue) {
		return Result{RequeueAfter: r.progressPoll()}, nil
	}
	return Result{}, nil
}

func (r *Reconciler) progressPoll() time.Duration {
	if r.ProgressPoll > 0 {
		return r.ProgressPoll
	}
	return DefaultProgressPoll
}

// finalize tears the app down in reverse dependency order, then removes the
// finalizer so the store deletes the object.
func (r *Reconciler) finalize(ctx context.Context, app *v1.ServingApp, rec model.Recorder) error {
	if !slices.Contains(app.Metadata.Finalizers, v1.FinalizerCleanup) {
		return nil // not ours to clean up (or already done)
	}
	ref := app.NamespacedName()
	if _, err := r.Store.PatchStatus(ctx, app.Metadata.Namespace, app.Metadata.Name, func(s *v1.ServingAppStatus) error {
		s.Phase = v1.PhaseDeleting
		s.Message = "Removing the app's resources; the object disappears when they are gone."
		return nil
	}); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("report deletion of %s: %w", ref, err)
	}
	retain := app.Spec.DeletionPolicy == v1.DeletionRetain
	m, err := model.Build(app, r.Config)
	if err != nil {
		// The spec cannot build a model (for example the default image was
		// removed from the config); deletion still needs the identity and tags.
		m = minimalModel(app, r.Config)
	}
	obs, err := r.Platform.Observe(ctx, m)
	if err != nil {
		return r.deletionFailed(ctx, app, rec, fmt.Errorf("observe for deletion: %w", err))
	}
	if err := r.Platform.Delete(ctx, m, obs, retain, rec); err != nil {
		return r.deletionFailed(ctx, app, rec, fmt.Errorf("delete resources: %w", err))
	}
	if r.Registrar != nil {
		if err := r.Registrar.Unregister(ctx, m, retain, rec); err != nil {
			return r.deletionFailed(ctx, app, rec, fmt.Errorf("unregister OAuth client: %w", err))
		}
	}
	if retain {
		rec.Event(ctx, "ResourcesRetained", "deletionPolicy is Retain: resources were left in place and untagged")
	} else {
		rec.Event(ctx, "ResourcesDeleted", "every resource of the app was removed")
	}
	if _, err := r.Store.RemoveFinalizer(ctx, app.Metadata.Namespace, app.Metadata.Name, v1.FinalizerCleanup); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("remove finalizer from %s: %w", ref, err)
	}
	return nil
}

func (r *Reconciler) deletionFailed(ctx context.Context, app *v1.ServingApp, rec model.Recorder, err error) error {
	rec.Warning(ctx, "DeletionFailed", err.Error())
	_, _ = r.Store.PatchStatus(ctx, app.Metadata.Namespace, app.Metadata.Name, func(s *v1.ServingAppStatus) error {
		s.Phase = v1.PhaseDeleting
		s.Message = "Deletion is blocked, retrying: " + err.Error()
		return nil
	})
	return err
}

func minimalModel(app *v1.ServingApp, cfg model.Config) *model.App {
	ref := model.Ref{Namespace: app.Metadata.Namespace, Name: app.Metadata.Name, UID: app.Metadata.UID}
	return &model.App{
		Ref:            ref,
		Generation:     app.Metadata.Generation,
		DeletionPolicy: app.Spec.DeletionPolicy,
		OAuth: model.OAuth{
			Mode:          app.Spec.Databricks.OAuth.Integration,
			IntegrationID: app.Spec.Databricks.OAuth.IntegrationID,
		},
		Tags: map[string]string{model.TagManagedBy: cfg.ControllerID, model.TagApp: ref.String(), model.TagUID: ref.UID},
	}
}

// finish writes status for o and records a warning on failure. It returns o.err
// (so the worker backs off) or the status write's error.
func (r *Reconciler) finish(ctx context.Context, app *v1.ServingApp, rec model.Recorder, o outcome) error {
	now := r.Clock.Now()
	if o.err != nil {
		rec.Warning(ctx, "ReconcileFailed", o.err.Error())
	}
	_, err := r.Store.PatchStatus(ctx, app.Metadata.Namespace, app.Metadata.Name, func(s *v1.ServingAppStatus) error {
		o.apply(s, now)
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		if o.err != nil {
			return fmt.Errorf("%w (and writing status failed: %v)", o.err, err)
		}
		return fmt.Errorf("write status of %s: %w", app.NamespacedName(), err)
	}
	return o.err
}
