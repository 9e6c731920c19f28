package controller_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/controller/platformtest"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/natstest"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

type env struct {
	t     testing.TB
	js    jetstream.JetStream
	store *store.Store
	plat  *platformtest.Platform
	clock *clock.Manual
	rec   *controller.StreamRecorder
}

func newEnv(t *testing.T) *env { return newEnvB(t) }

func newEnvB(t testing.TB) *env {
	t.Helper()
	url, _ := natstest.Start(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.New(ctx, js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewManual(t0)
	return &env{t: t, js: js, store: st, plat: platformtest.New(), clock: clk,
		rec: &controller.StreamRecorder{JS: js, Log: slog.New(slog.DiscardHandler), Clock: clk, ControllerID: "test"}}
}

func (e *env) reconciler() *controller.Reconciler {
	return &controller.Reconciler{
		Store:    e.store,
		Platform: e.plat,
		Recorder: e.rec,
		Clock:    e.clock,
		Config:   model.Config{ControllerID: "test", DefaultImage: "webapp:1", AppDomain: "apps.example.com"},
	}
}

func testApp(name string) *v1.ServingApp {
	r := int32(2)
	return &v1.ServingApp{
		APIVersion: v1.APIVersion, Kind: v1.Kind,
		Metadata: v1.ObjectMeta{Name: name, Namespace: "team"},
		Spec: v1.ServingAppSpec{
			Replicas:  &r,
			Route:     v1.Route{Host: name + ".apps.example.com"},
			Allowlist: []string{"10.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"},
			Databricks: v1.Databricks{
				Host: "https://dbc-1.cloud.databricks.com", ServingEndpoint: "chat",
			},
		},
	}
}

func (e *env) apply(a *v1.ServingApp) *v1.ServingApp {
	e.t.Helper()
	out, _, err := e.store.Apply(context.Background(), a)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) get(name string) *v1.ServingApp {
	e.t.Helper()
	a, err := e.store.Get(context.Background(), "team", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// converge reconciles key until it reports no error and no requeue, at most n times.
func converge(t testing.TB, r *controller.Reconciler, key string, n int) {
	t.Helper()
	var last error
	for i := 0; i < n; i++ {
		res, err := r.Reconcile(context.Background(), key)
		if err == nil && res.RequeueAfter == 0 {
			return
		}
		last = err
	}
	t.Fatalf("%s did not converge in %d reconciles: %v", key, n, last)
}

func countByKind(rs []platformtest.Resource) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		if r.App != "" {
			m[r.Kind]++
		}
	}
	return m
}

func TestReconcileCreatesEverythingAndReportsReady(t *testing.T) {
	e := newEnv(t)
	e.apply(testApp("web"))
	var createsWithoutFinalizer []platformtest.Call
	creates := 0
	e.plat.BeforeCall = func(c platformtest.Call) {
		if c.Op != "Create" {
			return
		}
		creates++
		// The finalizer must be stored before anything exists outside, or a
		// delete racing the first reconcile would leave orphans behind.
		if a, err := e.store.Get(context.Background(), "team", "web"); err != nil || !slices.Contains(a.Metadata.Finalizers, v1.FinalizerCleanup) {
			createsWithoutFinalizer = append(createsWithoutFinalizer, c)
		}
	}
	r := e.reconciler()
	res, err := r.Reconcile(context.Background(), "team.web")
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter == 0 {
		t.Fatal("rollout in progress but no requeue")
	}
	a := e.get("web")
	if a.Status.Phase != v1.PhaseProgressing || a.Status.FindCondition(v1.ConditionAvailable).Reason != "RolloutInProgress" {
		t.Fatalf("after first reconcile: phase %s, conditions %+v", a.Status.Phase, a.Status.Conditions)
	}
	if !strings.Contains(strings.Join(a.Metadata.Finalizers, ","), v1.FinalizerCleanup) {
		t.Fatal("finalizer not added")
	}
	if creates == 0 || len(createsWithoutFinalizer) > 0 {
		t.Fatalf("created before the finalizer was stored: %+v", createsWithoutFinalizer)
	}
	converge(t, r, "team.web", 3)
	a = e.get("web")
	if a.Status.Phase != v1.PhaseReady || a.Status.ObservedGeneration != 1 {
		t.Fatalf("phase %s observedGeneration %d", a.Status.Phase, a.Status.ObservedGeneration)
	}
	for _, c := range []string{v1.ConditionSynced, v1.ConditionAvailable, v1.ConditionReady} {
		if cond := a.Status.FindCondition(c); cond == nil || cond.Status != v1.ConditionTrue || cond.ObservedGeneration != 1 {
			t.Errorf("condition %s: %+v", c, cond)
		}
	}
	if a.Status.URL != "https://web.apps.example.com/" || a.Status.Replicas.Running != 2 {
		t.Fatalf("url %q replicas %+v", a.Status.URL, a.Status.Replicas)
	}
	want := map[string]int{platformtest.KindSecret: 1, platformtest.KindTaskDefinition: 1, platformtest.KindTargetGroup: 1, platformtest.KindService: 1, platformtest.KindRule: 2}
	if got := countByKind(e.plat.Resources()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resources %v, want %v", got, want)
	}
	// A further reconcile changes nothing.
	before := len(e.plat.Calls())
	converge(t, r, "team.web", 1)
	for _, c := range e.plat.Calls()[before:] {
		if c.Op != "Observe" {
			t.Fatalf("steady-state reconcile made a mutating call: %+v", c)
		}
	}
}

func TestConditionsFollowGenerationsAndKeepTransitionTimes(t *testing.T) {
	e := newEnv(t)
	a := testApp("web")
	e.apply(a)
	r := e.reconciler()
	converge(t, r, "team.web", 4)
	readyAt := e.get("web").Status.FindCondition(v1.ConditionReady).LastTransitionTime

	e.clock.Advance(time.Hour)
	three := int32(3)
	a.Spec.Replicas = &three
	if gen := e.apply(a).Metadata.Generation; gen != 2 {
		t.Fatalf("generation %d", gen)
	}
	if _, err := r.Reconcile(context.Background(), "team.web"); err != nil {
		t.Fatal(err)
	}
	got := e.get("web").Status
	if got.ObservedGeneration != 2 || got.Phase != v1.PhaseProgressing {
		t.Fatalf("after scale: observed %d phase %s", got.ObservedGeneration, got.Phase)
	}
	if c := got.FindCondition(v1.ConditionSynced); !c.LastTransitionTime.Equal(t0) || c.ObservedGeneration != 2 {
		t.Fatalf("Synced stayed True but its transition time moved or generation lags: %+v", c)
	}
	if c := got.FindCondition(v1.ConditionReady); c.Status != v1.ConditionFalse || !c.LastTransitionTime.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Ready should flip to False at the new time: %+v (was ready at %v)", c, readyAt)
	}
	converge(t, r, "team.web", 3)
	if got := e.get("web").Status; got.Phase != v1.PhaseReady || got.Replicas.Running != 3 {
		t.Fatalf("after rollout: %s %+v", got.Phase, got.Replicas)
	}
}

func TestTerminalAndTransientErrorsInStatus(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		reason string
		phase  v1.Phase
		msg    string
	}{
		{"access denied is terminal", model.Terminal("AccessDenied", errors.New("not authorized to perform ecs:CreateService")), "AccessDenied", v1.PhaseDegraded, "Fix the cause"},
		{"quota is terminal", model.Terminal("QuotaExceeded", errors.New("listener has 100 rules")), "QuotaExceeded", v1.PhaseDegraded, "Fix the cause"},
		{"throttling is transient", errors.New("ThrottlingException: rate exceeded"), "ReconcileError", v1.PhaseDegraded, "retried with backoff"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.apply(testApp("web"))
			e.plat.FailAll(tc.err)
			_, err := e.reconciler().Reconcile(context.Background(), "team.web")
			if !errors.Is(err, tc.err) && err.Error() != tc.err.Error() && !strings.Contains(err.Error(), tc.err.Error()) {
				t.Fatalf("error %v", err)
			}
			st := e.get("web").Status
			c := st.FindCondition(v1.ConditionSynced)
			if c.Status != v1.ConditionFalse || c.Reason != tc.reason || st.Phase != tc.phase || !strings.Contains(st.Message, tc.msg) {
				t.Fatalf("status %s %q, Synced %+v", st.Phase, st.Message, c)
			}
		})
	}
}

func TestInvalidModelIsTerminal(t *testing.T) {
	e := newEnv(t)
	a := testApp("web")
	a.Spec.Route.Host = ""
	e.apply(a)
	r := e.reconciler()
	r.Config.AppDomain = ""
	_, err := r.Reconcile(context.Background(), "team.web")
	var term *model.TerminalError
	if !errors.As(err, &term) || term.Reason != "InvalidSpec" {
		t.Fatalf("want terminal InvalidSpec, got %v", err)
	}
	if len(e.plat.Calls()) != 0 {
		t.Fatal("platform called for an invalid spec")
	}
}

// TestCrashAtEveryCallConverges crashes the controller after the Kth platform
// call of a cold create, for every K, then runs a fresh reconciler: the app
// converges with exactly one of each resource.
func TestCrashAtEveryCallConverges(t *testing.T) {
	e := newEnv(t)
	// Count the calls a clean create makes.
	e.apply(testApp("probe"))
	converge(t, e.reconciler(), "team.probe", 5)
	total := len(e.plat.Calls())
	if total < 6 {
		t.Fatalf("only %d calls in a create", total)
	}
	for k := 1; k <= total; k++ {
		name := fmt.Sprintf("crash%d", k)
		e.apply(testApp(name))
		e.plat.CrashAt(k)
		_, err := e.reconciler().Reconcile(context.Background(), "team."+name)
		if k <= total/2 && !errors.Is(err, platformtest.ErrCrash) {
			// the first calls all belong to the first reconcile
			t.Fatalf("k=%d: crash not hit: %v", k, err)
		}
		converge(t, e.reconciler(), "team."+name, 6) // "restarted" controller
		counts := map[string]int{}
		for _, r := range e.plat.Resources() {
			if r.App == "team/"+name {
				counts[r.Kind]++
			}
		}
		want := map[string]int{platformtest.KindSecret: 1, platformtest.KindTaskDefinition: 1, platformtest.KindTargetGroup: 1, platformtest.KindService: 1, platformtest.KindRule: 2}
		if fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Fatalf("crash at call %d: resources %v, want %v", k, counts, want)
		}
		if st := e.get(name).Status; st.Phase != v1.PhaseReady {
			t.Fatalf("crash at call %d: phase %s", k, st.Phase)
		}
	}
}

func TestDeletionTearsDownInReverseOrderAndRemovesFinalizer(t *testing.T) {
	for _, policy := range []v1.DeletionPolicy{v1.DeletionDelete, v1.DeletionRetain} {
		t.Run(string(policy), func(t *testing.T) {
			e := newEnv(t)
			a := testApp("web")
			a.Spec.DeletionPolicy = policy
			e.apply(a)
			r := e.reconciler()
			converge(t, r, "team.web", 4)
			n := len(e.plat.Resources())
			mark := len(e.plat.Calls())
			if _, err := e.store.Delete(context.Background(), "team", "web"); err != nil {
				t.Fatal(err)
			}
			if a := e.get("web"); a.Metadata.DeletionTimestamp == nil {
				t.Fatal("object vanished before the finalizer ran")
			}
			converge(t, r, "team.web", 2)
			if _, err := e.store.Get(context.Background(), "team", "web"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("object still there after finalize: %v", err)
			}
			var kinds []string
			for _, c := range e.plat.Calls()[mark:] {
				if c.Op != "Observe" {
					kinds = append(kinds, c.Op+" "+c.Kind)
				}
			}
			op := "Delete"
			if policy == v1.DeletionRetain {
				op = "Untag"
			}
			want := []string{op + " Rule", op + " Rule", op + " Service", op + " TargetGroup", op + " TaskDefinition", op + " Secret"}
			if strings.Join(kinds, ",") != strings.Join(want, ",") {
				t.Fatalf("teardown order %v, want %v", kinds, want)
			}
			left := e.plat.Resources()
			if policy == v1.DeletionRetain && len(left) != n {
				t.Fatalf("Retain removed resources: %d of %d left", len(left), n)
			}
			if policy == v1.DeletionDelete && len(left) != 0 {
				t.Fatalf("Delete left %d resources", len(left))
			}
			_, evs, err := audit.LastReconcileEvents(context.Background(), e.js, "team", "web", 10)
			if err != nil || len(evs) == 0 {
				t.Fatalf("events: %v %d", err, len(evs))
			}
			if last := evs[len(evs)-1].Reason; last != map[v1.DeletionPolicy]string{v1.DeletionDelete: "ResourcesDeleted", v1.DeletionRetain: "ResourcesRetained"}[policy] {
				t.Fatalf("last event %s", last)
			}
		})
	}
}

func TestEventsNeverRepeatWithinWindowAndCarryNoSecrets(t *testing.T) {
	e := newEnv(t)
	e.apply(testApp("web"))
	e.plat.FailAll(errors.New("ThrottlingException"))
	r := e.reconciler()
	for i := 0; i < 5; i++ {
		_, _ = r.Reconcile(context.Background(), "team.web")
	}
	_, evs, err := audit.LastReconcileEvents(context.Background(), e.js, "team", "web", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Reason != "ReconcileFailed" || evs[0].Severity != audit.SeverityWarning {
		t.Fatalf("want one ReconcileFailed warning, got %+v", evs)
	}
}
