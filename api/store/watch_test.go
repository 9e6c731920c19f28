package store

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/servingapp/servingapp/api/v1alpha1"
)

// expectEvents reads len(want) events and compares them as "Type ns/name",
// checking that resourceVersions rise from one event to the next.
func expectEvents(t *testing.T, w *Watcher, want ...string) []Event {
	t.Helper()
	var (
		got     []Event
		lastRev uint64
	)
	for i, wantEv := range want {
		ev := nextEvent(t, w)
		got = append(got, ev)
		if d := describe(ev); d != wantEv {
			t.Fatalf("event %d = %q, want %q", i, d, wantEv)
		}
		if ev.Object == nil {
			continue
		}
		rev, err := strconv.ParseUint(ev.Object.Metadata.ResourceVersion, 10, 64)
		if err != nil || rev <= lastRev {
			t.Fatalf("event %d (%s) has resourceVersion %q after %d", i, describe(ev), ev.Object.Metadata.ResourceVersion, lastRev)
		}
		lastRev = rev
	}
	return got
}

func withEnv(a *v1alpha1.ServingApp, k, v string) *v1alpha1.ServingApp {
	a.Spec.Env = map[string]string{k: v}
	return a
}

func TestWatchSendsInitialStateThenChangesInOrder(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	e.mustApply(t, newApp("analytics", "summarizer", nil))
	e.mustApply(t, newApp("analytics", "chat", nil))
	e.mustApply(t, newApp("support", "triage", nil))
	e.mustApply(t, newApp("support", "short-lived", nil))
	if _, err := e.store.Delete(ctx, "support", "short-lived"); err != nil {
		t.Fatal(err)
	}
	e.mustApply(t, withEnv(newApp("analytics", "summarizer", nil), "SUMMARY_LANGUAGE", "ja"))

	w, err := e.store.Watch(ctx, ListOptions{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Stop()
	// Initial state in revision order, deleted objects left out, each once.
	initial := expectEvents(t, w, "Added analytics/chat", "Added support/triage", "Added analytics/summarizer", "Synced")
	if initial[2].Object.Spec.Env["SUMMARY_LANGUAGE"] != "ja" || initial[2].Object.Metadata.Generation != 2 {
		t.Errorf("initial state is not the latest: %+v", initial[2].Object)
	}

	// A status write is not a spec change: the next event is the apply after it.
	if _, err := e.store.UpdateStatus(ctx, "analytics", "chat", &v1alpha1.ServingAppStatus{Phase: v1alpha1.PhaseReady}, 0); err != nil {
		t.Fatal(err)
	}
	e.mustApply(t, newApp("default", "hello", nil))
	e.mustApply(t, withEnv(newApp("analytics", "chat", nil), "SUMMARY_LANGUAGE", "en"))
	if _, err := e.store.AddFinalizer(ctx, "support", "triage", v1alpha1.FinalizerCleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Delete(ctx, "support", "triage"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.RemoveFinalizer(ctx, "support", "triage", v1alpha1.FinalizerCleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Delete(ctx, "analytics", "summarizer"); err != nil {
		t.Fatal(err)
	}
	evs := expectEvents(t, w,
		"Added default/hello",
		"Modified analytics/chat",
		"Modified support/triage", // finalizer added
		"Modified support/triage", // deletionTimestamp set
		"Deleted support/triage",  // last finalizer removed
		"Deleted analytics/summarizer",
	)
	if evs[1].Object.Status.Phase != "" {
		t.Errorf("watch event carries status: %+v", evs[1].Object.Status)
	}
	if evs[3].Object.Metadata.DeletionTimestamp == nil {
		t.Errorf("deletion not visible in the watch: %+v", evs[3].Object.Metadata)
	}
	gone := evs[5].Object
	if gone.Metadata.UID == "" || gone.Spec.Env["SUMMARY_LANGUAGE"] != "ja" || gone.Metadata.Generation != 2 {
		t.Errorf("Deleted does not carry the last known object: %+v", gone)
	}
}

func TestWatchFiltersByNamespaceAndSelector(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	gold := map[string]string{"tier": "gold"}
	e.mustApply(t, newApp("analytics", "summarizer", gold))
	e.mustApply(t, newApp("analytics", "chat", nil))
	e.mustApply(t, newApp("support", "triage", gold))

	w, err := e.store.Watch(ctx, ListOptions{Namespace: "analytics", Selector: "tier=gold"})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Stop()
	expectEvents(t, w, "Added analytics/summarizer", "Synced")

	e.mustApply(t, withEnv(newApp("support", "triage", gold), "SUMMARY_LANGUAGE", "ja")) // other namespace
	e.mustApply(t, withEnv(newApp("analytics", "chat", nil), "SUMMARY_LANGUAGE", "ja"))  // not selected
	e.mustApply(t, newApp("analytics", "chat", gold))                                    // moves into the selection
	e.mustApply(t, newApp("analytics", "summarizer", nil))                               // moves out of it
	if _, err := e.store.Delete(ctx, "analytics", "summarizer"); err != nil {            // no longer reported
		t.Fatal(err)
	}
	if _, err := e.store.Delete(ctx, "analytics", "chat"); err != nil {
		t.Fatal(err)
	}
	evs := expectEvents(t, w, "Added analytics/chat", "Deleted analytics/summarizer", "Deleted analytics/chat")
	if evs[1].Object.Metadata.Labels["tier"] == "gold" {
		t.Errorf("Deleted for leaving the selection should carry the new labels: %+v", evs[1].Object.Metadata)
	}
	if _, err := e.store.Watch(ctx, ListOptions{Selector: "tier in gold"}); err == nil {
		t.Error("Watch with a bad selector succeeded")
	}
}

func TestWatchOnEmptyStoreSyncsAtOnce(t *testing.T) {
	e := newTestEnv(t)
	w, err := e.store.Watch(ctxT(t), ListOptions{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Stop()
	expectEvents(t, w, "Synced")
	e.mustApply(t, newApp("analytics", "summarizer", nil))
	expectEvents(t, w, "Added analytics/summarizer")
}

func TestWatchEndsOnStopAndOnCancel(t *testing.T) {
	e := newTestEnv(t)
	e.mustApply(t, newApp("analytics", "summarizer", nil))

	w, err := e.store.Watch(ctxT(t), ListOptions{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	// Stop works while events are pending and nobody reads them.
	w.Stop()
	w.Stop()
	drain(t, w)

	ctx, cancel := context.WithCancel(ctxT(t))
	w, err = e.store.Watch(ctx, ListOptions{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	expectEvents(t, w, "Added analytics/summarizer", "Synced")
	cancel()
	drain(t, w)
	w.Stop()
}

// drain reads until the watch closes its channel, which must end without error.
func drain(t *testing.T, w *Watcher) {
	t.Helper()
	timeout := time.After(guard)
	for {
		select {
		case _, ok := <-w.Events():
			if !ok {
				if err := w.Err(); err != nil {
					t.Errorf("watch ended with %v, want nil", err)
				}
				return
			}
		case <-timeout:
			t.Fatalf("watch did not end within %s", guard)
		}
	}
}

// waitStatus waits for the connection status ch was registered for.
func waitStatus(t *testing.T, nc *nats.Conn, ch chan nats.Status) {
	t.Helper()
	defer nc.RemoveStatusListener(ch)
	select {
	case <-ch:
	case <-time.After(guard):
		t.Fatalf("connection status did not change within %s", guard)
	}
}

// applyUntilDone applies app until a call succeeds, as servingctl would: a
// request caught in a disconnect fails with its context, and Apply is
// idempotent, so trying again is safe.
func applyUntilDone(ctx context.Context, s *Store, app *v1alpha1.ServingApp) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, _, err := s.Apply(actx, app)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
}

// TestWatchResumesAcrossServerRestart stops the server under a running watch,
// writes while it is down (the write completes once it is back), and after
// the restart: the watch delivers every change once, in order.
func TestWatchResumesAcrossServerRestart(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	e.mustApply(t, newApp("analytics", "summarizer", nil))
	e.mustApply(t, newApp("analytics", "chat", nil))

	w, err := e.store.Watch(ctx, ListOptions{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Stop()
	expectEvents(t, w, "Added analytics/summarizer", "Added analytics/chat", "Synced")
	e.mustApply(t, withEnv(newApp("analytics", "summarizer", nil), "STEP", "before-stop"))
	expectEvents(t, w, "Modified analytics/summarizer")

	reconnecting := e.nc.StatusChanged(nats.RECONNECTING)
	reconnected := e.nc.StatusChanged(nats.CONNECTED)
	e.srv.Stop()
	waitStatus(t, e.nc, reconnecting) // the client knows the server is gone and buffers what it sends
	written := make(chan error, 1)
	go func() { written <- applyUntilDone(ctx, e.store, newApp("support", "during-outage", nil)) }()
	// Give the apply time to be sent into the outage; the test holds wherever
	// it lands, this only makes the outage case the likely one.
	time.Sleep(100 * time.Millisecond)
	e.srv.Restart()
	waitStatus(t, e.nc, reconnected)
	if err := <-written; err != nil {
		t.Fatalf("apply across the outage: %v", err)
	}
	e.mustApply(t, withEnv(newApp("analytics", "summarizer", nil), "STEP", "after-restart"))
	e.mustApply(t, withEnv(newApp("analytics", "chat", nil), "STEP", "after-restart"))
	e.mustApply(t, withEnv(newApp("analytics", "summarizer", nil), "STEP", "after-restart-2"))
	if _, err := e.store.Delete(ctx, "analytics", "chat"); err != nil {
		t.Fatal(err)
	}
	evs := expectEvents(t, w,
		"Added support/during-outage",
		"Modified analytics/summarizer",
		"Modified analytics/chat",
		"Modified analytics/summarizer",
		"Deleted analytics/chat",
	)
	if got := evs[3].Object.Spec.Env["STEP"]; got != "after-restart-2" {
		t.Errorf("last summarizer event has STEP=%q", got)
	}

	// A second restart with nothing written meanwhile: still one event per change.
	reconnected = e.nc.StatusChanged(nats.CONNECTED)
	e.srv.Restart()
	waitStatus(t, e.nc, reconnected)
	if err := applyUntilDone(ctx, e.store, withEnv(newApp("analytics", "summarizer", nil), "STEP", "after-second-restart")); err != nil {
		t.Fatalf("apply after the second restart: %v", err)
	}
	expectEvents(t, w, "Modified analytics/summarizer")
}

func TestWatchEndsWithErrorWhenConnectionCloses(t *testing.T) {
	e := newTestEnv(t)
	w, err := e.store.Watch(ctxT(t), ListOptions{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Stop()
	expectEvents(t, w, "Synced")
	e.nc.Close()
	timeout := time.After(guard)
	for {
		select {
		case _, ok := <-w.Events():
			if ok {
				continue
			}
			if w.Err() == nil {
				t.Error("watch ended without an error after the connection closed")
			}
			return
		case <-timeout:
			t.Fatalf("watch still open %s after the connection closed", guard)
		}
	}
}
