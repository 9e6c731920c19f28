package controller_test

import (
	"context"
	"encoding/json"
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

// process is one run of the controller binary: its own view of the platform
// and its own recorder (whose repeat suppression is process memory), over
// the store and the platform's resources, which outlive it.
type process struct {
	plat *platformtest.Platform
	r    *controller.Reconciler
}

// start starts a new controller process.
func (e *env) start() *process {
	plat := e.plat.Restart()
	r := e.reconciler()
	r.Platform = plat
	r.Recorder = &controller.StreamRecorder{JS: e.js, Log: slog.New(slog.DiscardHandler), Clock: e.clock, ControllerID: "test"}
	return &process{plat: plat, r: r}
}

// runUntilCrash reconciles key as a worker would (again while it asks for a
// requeue or fails) until the platform crashes the process at the call chosen
// with CrashAt. It fails the test if the key converges first: the crash point
// was never reached.
func (p *process) runUntilCrash(t *testing.T, key string, k int) {
	t.Helper()
	for range 10 {
		var (
			res controller.Result
			err error
		)
		if platformtest.Crashed(func() { res, err = p.r.Reconcile(context.Background(), key) }) {
			return
		}
		if p.plat.Crashes() > 0 {
			t.Fatalf("crash at call %d: the reconcile returned (%v) instead of dying: something recovered the crash", k, err)
		}
		if err == nil && res.RequeueAfter == 0 {
			t.Fatalf("crash at call %d: %s converged before the crash", k, key)
		}
	}
	t.Fatalf("crash at call %d: never reached in 10 reconciles of %s", k, key)
}

// persisted is what outlives a process for one app: the stored object (or
// its absence), its status, and how many events it has on the stream.
func (e *env) persisted(name string) string {
	e.t.Helper()
	a, err := e.store.Get(context.Background(), "team", name)
	obj := "gone"
	switch {
	case err == nil:
		st, _ := json.Marshal(a.Status)
		obj = fmt.Sprintf("rv=%s finalizers=%v status=%s", a.Metadata.ResourceVersion, a.Metadata.Finalizers, st)
	case !errors.Is(err, store.ErrNotFound):
		e.t.Fatal(err)
	}
	_, evs, err := audit.LastReconcileEvents(context.Background(), e.js, "team", name, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return fmt.Sprintf("%s events=%d", obj, len(evs))
}

// crashThenRestart runs a process that crashes at its kth platform call
// from now, checks that it died there (once, with nothing written after the
// crash point), then converges key with a new process.
func (e *env) crashThenRestart(t *testing.T, name string, k int) {
	t.Helper()
	key := "team." + name
	crashing := e.start()
	crashing.plat.CrashAt(k)
	var atCrash string
	crashing.plat.OnCrash = func(platformtest.Call) { atCrash = e.persisted(name) }
	crashing.runUntilCrash(t, key, k)
	if n := crashing.plat.Crashes(); n != 1 {
		t.Fatalf("crash at call %d: %d crashes, want exactly 1", k, n)
	}
	// A dead process writes no status, records no ReconcileFailed event and
	// removes no finalizer.
	if after := e.persisted(name); after != atCrash {
		t.Fatalf("crash at call %d: the process wrote after it died:\n at crash: %s\n after:    %s", k, atCrash, after)
	}
	restarted := e.start()
	if platformtest.Crashed(func() { converge(t, restarted.r, key, 6) }) {
		t.Fatalf("crash at call %d: the restarted process crashed too", k)
	}
	if n := restarted.plat.Crashes(); n != 0 {
		t.Fatalf("crash at call %d: the restarted process crashed %d times", k, n)
	}
}

// owned counts the resources of each owner; released (untagged) ones count under "".
func owned(rs []platformtest.Resource) map[string]map[string]int {
	m := map[string]map[string]int{}
	for _, r := range rs {
		if m[r.App] == nil {
			m[r.App] = map[string]int{}
		}
		m[r.App][r.Kind]++
	}
	return m
}

// TestCrashAtEveryCallConverges kills the controller process right after
// its Kth platform call, for every K of a cold create and of a spec change,
// then starts a new process over the same store and resources: the app
// converges to Ready at its latest generation with exactly one of each
// resource, and nothing is left over anywhere.
func TestCrashAtEveryCallConverges(t *testing.T) {
	changed := func(a *v1.ServingApp) *v1.ServingApp {
		three := int32(3)
		a.Spec.Replicas = &three                                       // a service update and a rollout
		a.Spec.Allowlist = append(a.Spec.Allowlist, "198.51.100.7/32") // one rule replaced (create, then delete)
		return a
	}
	cases := []struct {
		name string
		// ready is the state before the crashing process starts (nil: nothing exists yet).
		ready func(name string) *v1.ServingApp
		// next is what the crashing process is given to converge.
		next     func(name string) *v1.ServingApp
		replicas int32
	}{
		{name: "create", next: testApp, replicas: 2},
		{name: "update", ready: testApp, next: func(n string) *v1.ServingApp { return changed(testApp(n)) }, replicas: 3},
	}
	want := map[string]int{platformtest.KindSecret: 1, platformtest.KindTaskDefinition: 1, platformtest.KindTargetGroup: 1, platformtest.KindService: 1, platformtest.KindRule: 2}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			setUp := func(name string) {
				if tc.ready != nil {
					e.apply(tc.ready(name))
					converge(t, e.start().r, "team."+name, 5)
				}
				e.apply(tc.next(name))
			}
			// Count the calls a clean run makes.
			setUp("probe")
			mark := len(e.plat.Calls())
			converge(t, e.start().r, "team.probe", 5)
			total := len(e.plat.Calls()) - mark
			if total < 6 {
				t.Fatalf("only %d calls in a clean %s", total, tc.name)
			}
			t.Logf("crashing at each of the %d calls of a clean %s", total, tc.name)
			live := map[string]map[string]int{"team/probe": want}
			for k := 1; k <= total; k++ {
				name := fmt.Sprintf("crash%d", k)
				setUp(name)
				e.crashThenRestart(t, name, k)

				live["team/"+name] = want
				if got := owned(e.plat.Resources()); fmt.Sprint(got) != fmt.Sprint(live) {
					t.Fatalf("crash at call %d of %d: resources by owner %v, want %v", k, total, got, live)
				}
				a := e.get(name)
				gen := a.Metadata.Generation
				st := a.Status
				if st.Phase != v1.PhaseReady || st.ObservedGeneration != gen || st.Replicas.Running != tc.replicas {
					t.Fatalf("crash at call %d of %d: phase %s observedGeneration %d of %d, replicas %+v", k, total, st.Phase, st.ObservedGeneration, gen, st.Replicas)
				}
				for _, ct := range []string{v1.ConditionSynced, v1.ConditionAvailable, v1.ConditionReady} {
					if c := st.FindCondition(ct); c == nil || c.Status != v1.ConditionTrue || c.ObservedGeneration != gen {
						t.Fatalf("crash at call %d of %d: condition %s %+v at generation %d", k, total, ct, c, gen)
					}
				}
			}
		})
	}
}

// TestCrashAtEveryCallOfADeletionConverges kills the controller process right
// after its Kth platform call of a deletion, for every K, then starts a new
// process: the app's resources are gone (Delete) or all left in place and
// untagged (Retain), the finalizer is removed and the object is gone.
func TestCrashAtEveryCallOfADeletionConverges(t *testing.T) {
	for _, policy := range []v1.DeletionPolicy{v1.DeletionDelete, v1.DeletionRetain} {
		t.Run(string(policy), func(t *testing.T) {
			e := newEnv(t)
			// setUp makes the app ready, then asks for its deletion; it
			// returns the ids of the app's resources.
			setUp := func(name string) []string {
				a := testApp(name)
				a.Spec.DeletionPolicy = policy
				e.apply(a)
				converge(t, e.start().r, "team."+name, 5)
				var ids []string
				for _, r := range e.plat.Resources() {
					if r.App == "team/"+name {
						ids = append(ids, r.ID)
					}
				}
				if len(ids) != 6 {
					t.Fatalf("%s has %d resources before deletion, want 6", name, len(ids))
				}
				if _, err := e.store.Delete(context.Background(), "team", name); err != nil {
					t.Fatal(err)
				}
				return ids
			}
			setUp("probe")
			mark := len(e.plat.Calls())
			converge(t, e.start().r, "team.probe", 2)
			total := len(e.plat.Calls()) - mark
			if total < 7 {
				t.Fatalf("only %d calls in a clean deletion", total)
			}
			t.Logf("crashing at each of the %d calls of a clean deletion", total)
			for k := 1; k <= total; k++ {
				name := fmt.Sprintf("crash%d", k)
				ids := setUp(name)
				e.crashThenRestart(t, name, k)

				if _, err := e.store.Get(context.Background(), "team", name); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("crash at call %d of %d: object still stored (finalizer not removed?): %v", k, total, err)
				}
				left := map[string]platformtest.Resource{}
				for _, r := range e.plat.Resources() {
					left[r.ID] = r
				}
				for _, id := range ids {
					r, ok := left[id]
					switch {
					case policy == v1.DeletionDelete && ok:
						t.Fatalf("crash at call %d of %d: %s %s left behind", k, total, r.Kind, id)
					case policy == v1.DeletionRetain && !ok:
						t.Fatalf("crash at call %d of %d: Retain deleted %s", k, total, id)
					case policy == v1.DeletionRetain && r.App != "":
						t.Fatalf("crash at call %d of %d: retained %s %s still tagged for %s", k, total, r.Kind, id, r.App)
					}
				}
				if policy == v1.DeletionDelete && len(left) != 0 {
					t.Fatalf("crash at call %d of %d: %d resources left in the cloud: %v", k, total, len(left), owned(e.plat.Resources()))
				}
			}
		})
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

// TestRepeatedFailureRecordsOneEventPerWindow: a key failing the same way on
// every backoff step records one ReconcileFailed warning per repeat window,
// not one per attempt, and records it again once the window has passed.
//
// Secrets are not checked here because the controller never holds one: the
// model carries only references (Secrets Manager ARNs, the client secret's
// reference), and platforms and the registrar keep secret values out of
// their errors, which the reconciler passes on verbatim.
func TestRepeatedFailureRecordsOneEventPerWindow(t *testing.T) {
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
	e.clock.Advance(10 * time.Minute)
	_, _ = r.Reconcile(context.Background(), "team.web")
	if _, evs, err = audit.LastReconcileEvents(context.Background(), e.js, "team", "web", 10); err != nil || len(evs) != 2 || evs[1].Reason != "ReconcileFailed" {
		t.Fatalf("a window later: want the warning recorded again, got %+v (%v)", evs, err)
	}
}

// TestReconcileEventsOnTheDocumentedSubjectAndStream reads reconcile events
// the way an operator's tooling would, by the names the documentation gives
// (subject servingapp.events.<ns>.<name>, stream SERVINGAPP_EVENTS, CloudEvents
// in structured JSON), written out rather than taken from package constants,
// so renaming either breaks this test and not only its readers.
func TestReconcileEventsOnTheDocumentedSubjectAndStream(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const subject = "servingapp.events.team.web"
	sub, err := e.js.Conn().SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	e.apply(testApp("web"))
	converge(t, e.reconciler(), "team.web", 4)
	want := []string{"SecretCreated", "TaskDefinitionCreated", "TargetGroupCreated", "ServiceCreated", "RuleCreated", "RuleCreated"}

	type envelope struct {
		SpecVersion string `json:"specversion"`
		Type        string `json:"type"`
		Subject     string `json:"subject"`
		Data        struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
			Severity  string `json:"severity"`
			Reason    string `json:"reason"`
		} `json:"data"`
	}
	decode := func(from string, b []byte) string {
		t.Helper()
		var ev envelope
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("%s: not JSON: %v: %s", from, err, b)
		}
		if ev.SpecVersion != "1.0" || ev.Type != "io.servingapp.controller.reconcile" || ev.Subject != "team/web" ||
			ev.Data.Namespace != "team" || ev.Data.Name != "web" || ev.Data.Severity != "Normal" {
			t.Fatalf("%s: unexpected CloudEvent %s", from, b)
		}
		return ev.Data.Reason
	}

	stream, err := e.js.Stream(ctx, "SERVINGAPP_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[subject]; n != uint64(len(want)) {
		t.Fatalf("stream SERVINGAPP_EVENTS holds %d events on %s, want %d", n, subject, len(want))
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(len(want))
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for m := range batch.Messages() {
		stored = append(stored, decode("stream", m.Data()))
	}
	if !slices.Equal(stored, want) {
		t.Fatalf("stream SERVINGAPP_EVENTS: reasons %v, want %v", stored, want)
	}

	var live []string
	for range want {
		m, err := sub.NextMsg(10 * time.Second) // published and acknowledged already: only delivery is left
		if err != nil {
			t.Fatalf("subscriber on %s got %v after %v", subject, err, live)
		}
		live = append(live, decode("subscription", m.Data))
	}
	if !slices.Equal(live, want) {
		t.Fatalf("subscriber on %s: reasons %v, want %v", subject, live, want)
	}
}
