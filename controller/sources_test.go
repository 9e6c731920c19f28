package controller_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
)

// scriptedReconciler records the keys it reconciles, in order, and answers
// with what answer returns for the key.
type scriptedReconciler struct {
	mu     sync.Mutex
	keys   []string
	answer func(key string) (controller.Result, error)
}

func (r *scriptedReconciler) Reconcile(ctx context.Context, key string) (controller.Result, error) {
	r.mu.Lock()
	r.keys = append(r.keys, key)
	answer := r.answer
	r.mu.Unlock()
	if answer == nil {
		return controller.Result{}, nil
	}
	return answer(key)
}

func (r *scriptedReconciler) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.keys)
}

func (r *scriptedReconciler) count(key string) int {
	n := 0
	for _, k := range r.seen() {
		if k == key {
			n++
		}
	}
	return n
}

func runController(t *testing.T, c *controller.Controller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestOwnWritesQueueBehindPeoplesChanges: a finalizer written by the
// controller comes back through the watch; it must not be served before a
// spec change an admin made later.
func TestOwnWritesQueueBehindPeoplesChanges(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	rec := &scriptedReconciler{}
	rec.answer = func(key string) (controller.Result, error) {
		if key == "team.blocker" {
			<-release
		}
		return controller.Result{}, nil
	}
	c := controller.New(e.store, rec, controller.Options{Workers: 1})
	runController(t, c)

	e.apply(testApp("echo"))
	e.apply(testApp("admin"))
	waitUntil(t, "first reconciles", func() bool { return rec.count("team.echo") == 1 && rec.count("team.admin") == 1 })

	e.apply(testApp("blocker")) // holds the only worker
	waitUntil(t, "blocker in flight", func() bool { return rec.count("team.blocker") == 1 })
	if _, err := e.store.AddFinalizer(context.Background(), "team", "echo", "servingapp.io/cleanup"); err != nil {
		t.Fatal(err)
	}
	changed := testApp("admin")
	changed.Spec.Env = map[string]string{"GREETING": "hello"}
	e.apply(changed)
	waitUntil(t, "both queued", func() bool { return c.Queue().Len() == 2 })
	close(release)
	waitUntil(t, "both reconciled", func() bool { return rec.count("team.echo") == 2 && rec.count("team.admin") == 2 })

	keys := rec.seen()
	after := keys[slices.Index(keys, "team.blocker")+1:]
	if !slices.Equal(after, []string{"team.admin", "team.echo"}) {
		t.Fatalf("after the blocker the controller reconciled %v, want the admin's change before its own finalizer write", after)
	}
}

// TestStatusWritesDoNotTriggerReconciles: status lives in its own bucket, so
// the controller's status writes never come back as work.
func TestStatusWritesDoNotTriggerReconciles(t *testing.T) {
	e := newEnv(t)
	rec := &scriptedReconciler{}
	runController(t, controller.New(e.store, rec, controller.Options{Workers: 2}))

	e.apply(testApp("web"))
	waitUntil(t, "first reconcile", func() bool { return rec.count("team.web") == 1 })
	for i := range 5 {
		if _, err := e.store.PatchStatus(context.Background(), "team", "web", func(s *v1.ServingAppStatus) error {
			s.Message = "write " + string(rune('a'+i))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A spec change after the status writes: once it has been reconciled, any
	// reconcile the status writes caused would have been queued before it.
	changed := testApp("web")
	changed.Spec.Env = map[string]string{"GREETING": "hello"}
	e.apply(changed)
	waitUntil(t, "the spec change reconciled", func() bool { return rec.count("team.web") >= 2 })
	time.Sleep(100 * time.Millisecond)
	if n := rec.count("team.web"); n != 2 {
		t.Fatalf("web reconciled %d times for one apply, five status writes and one change; want 2", n)
	}
}

// TestResyncQueuesEveryObjectWithinItsJitter: every object is reconciled
// again after the resync period, jittered by at most ±10%.
func TestResyncQueuesEveryObjectWithinItsJitter(t *testing.T) {
	e := newEnv(t)
	clk := clock.NewManual(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	rec := &scriptedReconciler{}
	var jitterAsked []time.Duration
	var mu sync.Mutex
	c := controller.New(e.store, rec, controller.Options{
		Workers: 2, Clock: clk, Resync: time.Minute,
		Jitter: func(d time.Duration) time.Duration {
			mu.Lock()
			defer mu.Unlock()
			jitterAsked = append(jitterAsked, d)
			return d // the latest a resync may come
		},
	})
	for _, n := range []string{"a", "b", "c"} {
		e.apply(testApp(n))
	}
	runController(t, c)
	waitUntil(t, "initial reconciles", func() bool { return len(rec.seen()) == 3 })
	waitUntil(t, "resync timer set", func() bool { return clk.Pending() > 0 })

	clk.Advance(time.Minute + 5*time.Second)
	time.Sleep(50 * time.Millisecond)
	if n := len(rec.seen()); n != 3 {
		t.Fatalf("%d reconciles before the jittered period was over, want 3", n)
	}
	clk.Advance(time.Second)
	waitUntil(t, "every object reconciled again", func() bool {
		return rec.count("team.a") == 2 && rec.count("team.b") == 2 && rec.count("team.c") == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if len(jitterAsked) == 0 || jitterAsked[0] != 6*time.Second {
		t.Fatalf("jitter asked for %v, want ±6s (10%% of the period)", jitterAsked)
	}
}

// TestFailuresBackOffThroughTheController: transient errors retry after
// 5ms, 10ms, 20ms, …; a success resets the backoff; a terminal error waits
// the maximum instead of hot-looping.
func TestFailuresBackOffThroughTheController(t *testing.T) {
	e := newEnv(t)
	clk := clock.NewManual(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	answers := []error{errors.New("throttled"), errors.New("throttled"), errors.New("throttled"), nil,
		errors.New("throttled"), model.Terminal("AccessDenied", errors.New("not allowed")), nil}
	rec := &scriptedReconciler{answer: func(string) (controller.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		err := answers[0]
		if len(answers) > 1 {
			answers = answers[1:]
		}
		return controller.Result{}, err
	}}
	c := controller.New(e.store, rec, controller.Options{Workers: 1, Clock: clk, Resync: 24 * time.Hour,
		Jitter: func(time.Duration) time.Duration { return 0 }})
	runController(t, c)
	e.apply(testApp("web"))
	waitUntil(t, "first attempt", func() bool { return rec.count("team.web") == 1 })

	// step advances the clock by d and checks the attempt count: d-1ns must
	// not be enough for the next attempt, d must.
	step := func(d time.Duration, want int) {
		t.Helper()
		// The attempt counts when it starts; its backoff timer is set after
		// it returns. Moving the clock before that would push the retry out.
		waitUntil(t, "the backoff timer set", func() bool { return clk.Pending() == 2 }) // and the resync's
		clk.Advance(d - time.Nanosecond)
		time.Sleep(20 * time.Millisecond)
		if n := rec.count("team.web"); n != want-1 {
			t.Fatalf("attempt %d came before its backoff of %s (%d attempts)", want, d, n)
		}
		clk.Advance(time.Nanosecond)
		waitUntil(t, "next attempt", func() bool { return rec.count("team.web") == want })
	}
	step(5*time.Millisecond, 2)
	step(10*time.Millisecond, 3)
	step(20*time.Millisecond, 4) // succeeds: backoff reset
	changed := testApp("web")
	changed.Spec.Env = map[string]string{"A": "1"}
	e.apply(changed) // attempt 5 fails transiently
	waitUntil(t, "attempt after the change", func() bool { return rec.count("team.web") == 5 })
	step(5*time.Millisecond, 6) // the reset backoff starts again at 5ms; this one is terminal
	step(controller.DefaultMaxDelay, 7)
}
