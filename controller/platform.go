package controller

import (
	"context"

	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
)

// Platform runs apps somewhere: ECS and ELBv2 (controller/aws), this machine
// (controller/local), or memory (controller/platformtest). The controller
// builds the desired model; the platform observes, diffs after normalizing
// and changes only the difference.
type Platform interface {
	// Observe reads what exists for app. It never changes anything.
	Observe(ctx context.Context, app *model.App) (*model.Observed, error)
	// Apply makes the world match app, creating in dependency order and
	// changing only what differs from obs. It returns what exists afterwards.
	// Calling it again with nothing changed makes no mutating call.
	Apply(ctx context.Context, app *model.App, obs *model.Observed, rec model.Recorder) (*model.Observed, error)
	// Delete removes what obs found, in reverse dependency order; with retain
	// it leaves the resources in place and removes only our ownership tags.
	Delete(ctx context.Context, app *model.App, obs *model.Observed, retain bool, rec model.Recorder) error
}

// OrphanCollector is implemented by platforms that can find resources tagged
// by this controller whose app no longer exists. The controller calls it after
// each full resync with every app it knows.
type OrphanCollector interface {
	CollectOrphans(ctx context.Context, live []model.Ref, rec model.Recorder) error
}

// Registrar registers apps as OAuth clients of Databricks (internal/databricks).
type Registrar interface {
	// Register makes app a registered OAuth client: it fills app.OAuth
	// (IntegrationID, ClientID, ClientSecretRef) and app.Env/SecretEnv, and
	// reports the OAuthRegistered condition.
	Register(ctx context.Context, app *model.App, rec model.Recorder) (v1.Condition, error)
	// Unregister removes the app's registration (managed: the integration;
	// existing: only our redirect URL), unless retain.
	Unregister(ctx context.Context, app *model.App, retain bool, rec model.Recorder) error
}

// Store is what the controller needs of the API store (api/store.Store).
type Store interface {
	Get(ctx context.Context, namespace, name string) (*v1.ServingApp, error)
	List(ctx context.Context, opts store.ListOptions) ([]*v1.ServingApp, error)
	Watch(ctx context.Context, opts store.ListOptions) (*store.Watcher, error)
	AddFinalizer(ctx context.Context, namespace, name, finalizer string) (*v1.ServingApp, error)
	RemoveFinalizer(ctx context.Context, namespace, name, finalizer string) (*v1.ServingApp, error)
	PatchStatus(ctx context.Context, namespace, name string, change func(*v1.ServingAppStatus) error) (*v1.ServingAppStatus, error)
}
