package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/natstest"
)

// guard bounds every wait in these tests so a bug fails the test instead of
// hanging it; no test asserts on how long anything takes.
const guard = 20 * time.Second

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testEnv is a Store on its own embedded server, with a fake clock and
// sequential UIDs.
type testEnv struct {
	store *Store
	srv   *natstest.Server
	nc    *nats.Conn
	clock *fakeClock
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	url, srv := natstest.Start(t)
	nc, js := natstest.Connect(t, url)
	clock := &fakeClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	var uids atomic.Int64
	s, err := New(ctxT(t), js, Options{
		Now:    clock.Now,
		NewUID: func() string { return fmt.Sprintf("uid-%d", uids.Add(1)) },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &testEnv{store: s, srv: srv, nc: nc, clock: clock}
}

// ctxT returns a context that ends with the test, bounded by guard.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

// newApp returns a valid ServingApp as an admin would write it (no defaults).
func newApp(ns, name string, labels map[string]string) *v1alpha1.ServingApp {
	return &v1alpha1.ServingApp{
		APIVersion: v1alpha1.APIVersion,
		Kind:       v1alpha1.Kind,
		Metadata:   v1alpha1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: v1alpha1.ServingAppSpec{
			Route:     v1alpha1.Route{Host: name + ".apps.example.com"},
			Allowlist: []string{"203.0.113.0/24"},
			Databricks: v1alpha1.Databricks{
				Host:            "https://dbc-1234abcd.cloud.databricks.com",
				ServingEndpoint: "databricks-claude-sonnet-4",
			},
		},
	}
}

// mustApply applies app and fails the test on error.
func (e *testEnv) mustApply(t testing.TB, app *v1alpha1.ServingApp) (*v1alpha1.ServingApp, Outcome) {
	t.Helper()
	out, outcome, err := e.store.Apply(ctxT(t), app)
	if err != nil {
		t.Fatalf("Apply %s: %v", app.NamespacedName(), err)
	}
	return out, outcome
}

// nextEvent returns the watcher's next event, failing the test if the watch
// ends or nothing arrives within guard.
func nextEvent(t testing.TB, w *Watcher) Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("watch ended: %v", w.Err())
		}
		return ev
	case <-time.After(guard):
		t.Fatalf("no watch event within %s", guard)
	}
	return Event{}
}

// describe renders an event as "Type ns/name" for comparisons.
func describe(ev Event) string {
	if ev.Object == nil {
		return string(ev.Type)
	}
	return string(ev.Type) + " " + ev.Object.NamespacedName()
}
