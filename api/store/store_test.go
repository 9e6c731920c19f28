package store

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/v1alpha1"
)

func TestApplyCreateSetsServerOwnedMetadata(t *testing.T) {
	e := newTestEnv(t)
	in := newApp("analytics", "summarizer", map[string]string{"team": "analytics"})
	// Server-owned fields in the input are ignored.
	in.Metadata.UID = "from-the-user"
	in.Metadata.Generation = 42
	in.Metadata.Finalizers = []string{"someone/else"}
	in.Status.Phase = v1alpha1.PhaseReady

	out, outcome := e.mustApply(t, in)
	if outcome != Created {
		t.Fatalf("outcome = %q, want %q", outcome, Created)
	}
	m := out.Metadata
	if m.UID != "uid-1" || m.Generation != 1 || m.ResourceVersion == "" || len(m.Finalizers) != 0 {
		t.Errorf("metadata = %+v, want uid-1, generation 1, a resourceVersion, no finalizers", m)
	}
	if m.CreationTimestamp == nil || !m.CreationTimestamp.Equal(e.clock.Now()) {
		t.Errorf("creationTimestamp = %v, want %v", m.CreationTimestamp, e.clock.Now())
	}
	if out.Spec.Replicas == nil || *out.Spec.Replicas != v1alpha1.DefaultReplicas {
		t.Errorf("spec was not defaulted: replicas = %v", out.Spec.Replicas)
	}
	if in.Metadata.UID != "from-the-user" || in.Spec.Replicas != nil {
		t.Error("Apply modified its argument")
	}

	got, err := e.store.Get(ctxT(t), "analytics", "summarizer")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Metadata.ResourceVersion != m.ResourceVersion || got.Metadata.UID != m.UID || got.Status.Phase != "" {
		t.Errorf("Get = %+v (status %+v), want the created object with empty status", got.Metadata, got.Status)
	}
}

// TestGenerationCountsSpecLabelAndAnnotationChangesOnly applies a sequence of
// edits to one object and checks outcome, generation and resourceVersion
// after each.
func TestGenerationCountsSpecLabelAndAnnotationChangesOnly(t *testing.T) {
	e := newTestEnv(t)
	base, _ := e.mustApply(t, newApp("analytics", "summarizer", map[string]string{"team": "analytics"}))

	steps := []struct {
		name        string
		edit        func(a *v1alpha1.ServingApp)
		wantOutcome Outcome
		wantGenUp   bool
	}{
		{"identical re-apply", func(*v1alpha1.ServingApp) {}, Unchanged, false},
		{"defaults written out", func(a *v1alpha1.ServingApp) {
			r := v1alpha1.DefaultReplicas
			a.Spec.Replicas = &r
			a.Spec.DeletionPolicy = v1alpha1.DeletionDelete
		}, Unchanged, false},
		{"server-owned fields and status", func(a *v1alpha1.ServingApp) {
			a.Metadata.UID = "other"
			a.Metadata.Generation = 99
			a.Metadata.Finalizers = []string{"x/y"}
			a.Status.Phase = v1alpha1.PhaseDegraded
		}, Unchanged, false},
		{"label added", func(a *v1alpha1.ServingApp) { a.Metadata.Labels["tier"] = "gold" }, Configured, true},
		{"same labels again", func(a *v1alpha1.ServingApp) { a.Metadata.Labels["tier"] = "gold" }, Unchanged, false},
		{"annotation added", func(a *v1alpha1.ServingApp) {
			a.Metadata.Labels["tier"] = "gold"
			a.Metadata.Annotations = map[string]string{"owner": "data-team"}
		}, Configured, true},
		{"spec changed", func(a *v1alpha1.ServingApp) {
			a.Metadata.Labels["tier"] = "gold"
			a.Metadata.Annotations = map[string]string{"owner": "data-team"}
			a.Spec.Env = map[string]string{"SUMMARY_LANGUAGE": "ja"}
		}, Configured, true},
		{"label removed", func(a *v1alpha1.ServingApp) {
			a.Metadata.Annotations = map[string]string{"owner": "data-team"}
			a.Spec.Env = map[string]string{"SUMMARY_LANGUAGE": "ja"}
		}, Configured, true},
	}
	prev := base
	for _, st := range steps {
		in := newApp("analytics", "summarizer", map[string]string{"team": "analytics"})
		st.edit(in)
		out, outcome := e.mustApply(t, in)
		if outcome != st.wantOutcome {
			t.Errorf("%s: outcome = %q, want %q", st.name, outcome, st.wantOutcome)
		}
		wantGen := prev.Metadata.Generation
		if st.wantGenUp {
			wantGen++
		}
		if out.Metadata.Generation != wantGen {
			t.Errorf("%s: generation = %d, want %d", st.name, out.Metadata.Generation, wantGen)
		}
		rvChanged := out.Metadata.ResourceVersion != prev.Metadata.ResourceVersion
		if rvChanged != st.wantGenUp {
			t.Errorf("%s: resourceVersion %s -> %s, want changed=%v", st.name, prev.Metadata.ResourceVersion, out.Metadata.ResourceVersion, st.wantGenUp)
		}
		if out.Metadata.UID != base.Metadata.UID || !out.Metadata.CreationTimestamp.Equal(*base.Metadata.CreationTimestamp) {
			t.Errorf("%s: uid/creationTimestamp changed: %+v", st.name, out.Metadata)
		}
		got, err := e.store.Get(ctxT(t), "analytics", "summarizer")
		if err != nil {
			t.Fatalf("%s: Get: %v", st.name, err)
		}
		if got.Metadata.Generation != out.Metadata.Generation || got.Metadata.ResourceVersion != out.Metadata.ResourceVersion {
			t.Errorf("%s: Get has generation %d rv %s, Apply returned %d %s", st.name,
				got.Metadata.Generation, got.Metadata.ResourceVersion, out.Metadata.Generation, out.Metadata.ResourceVersion)
		}
		prev = out
	}
}

func TestStatusWritesLeaveGenerationAndResourceVersionAlone(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	created, _ := e.mustApply(t, newApp("analytics", "summarizer", nil))

	rev, err := e.store.UpdateStatus(ctx, "analytics", "summarizer", &v1alpha1.ServingAppStatus{
		ObservedGeneration: 1, Phase: v1alpha1.PhaseProgressing,
	}, 0)
	if err != nil {
		t.Fatalf("UpdateStatus: %v", err)
	}
	if _, err := e.store.PatchStatus(ctx, "analytics", "summarizer", func(st *v1alpha1.ServingAppStatus) error {
		st.Phase = v1alpha1.PhaseReady
		return nil
	}); err != nil {
		t.Fatalf("PatchStatus: %v", err)
	}
	got, err := e.store.Get(ctx, "analytics", "summarizer")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Metadata.Generation != created.Metadata.Generation || got.Metadata.ResourceVersion != created.Metadata.ResourceVersion {
		t.Errorf("after status writes: generation %d rv %s, want %d %s", got.Metadata.Generation,
			got.Metadata.ResourceVersion, created.Metadata.Generation, created.Metadata.ResourceVersion)
	}
	if got.Status.Phase != v1alpha1.PhaseReady || got.Status.ObservedGeneration != 1 {
		t.Errorf("status = %+v, want Ready at observedGeneration 1", got.Status)
	}
	if _, outcome := e.mustApply(t, newApp("analytics", "summarizer", nil)); outcome != Unchanged {
		t.Errorf("re-apply after status writes: outcome %q, want unchanged", outcome)
	}
	st, rev2, err := e.store.GetStatus(ctx, "analytics", "summarizer")
	if err != nil || rev2 <= rev || st.Phase != v1alpha1.PhaseReady {
		t.Errorf("GetStatus = %+v, %d, %v; want Ready at a revision after %d", st, rev2, err, rev)
	}
}

func TestUpdateStatusIsCompareAndSet(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	e.mustApply(t, newApp("analytics", "summarizer", nil))
	st := &v1alpha1.ServingAppStatus{Phase: v1alpha1.PhasePending}

	rev1, err := e.store.UpdateStatus(ctx, "analytics", "summarizer", st, 0)
	if err != nil {
		t.Fatalf("first status write: %v", err)
	}
	cases := []struct {
		name     string
		ns, app  string
		expected uint64
		want     error
	}{
		{"revision 0 when a status exists", "analytics", "summarizer", 0, ErrConflict},
		{"stale revision", "analytics", "summarizer", rev1 + 100, ErrConflict},
		{"object does not exist", "analytics", "missing", 0, ErrNotFound},
		{"name that cannot exist", "analytics", "Bad.Name", 0, ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.store.UpdateStatus(ctx, c.ns, c.app, st, c.expected)
			if !errors.Is(err, c.want) {
				t.Errorf("UpdateStatus = %v, want %v", err, c.want)
			}
		})
	}
	if _, err := e.store.UpdateStatus(ctx, "analytics", "summarizer", st, rev1); err != nil {
		t.Errorf("write at the current revision: %v", err)
	}
	if _, err := e.store.PatchStatus(ctx, "analytics", "missing", func(*v1alpha1.ServingAppStatus) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("PatchStatus on a missing object = %v, want ErrNotFound", err)
	}
	boom := errors.New("boom")
	if _, err := e.store.PatchStatus(ctx, "analytics", "summarizer", func(*v1alpha1.ServingAppStatus) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("PatchStatus with a failing change = %v, want it wrapped", err)
	}
}

func TestPatchStatusRetriesConcurrentWriters(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	e.mustApply(t, newApp("analytics", "summarizer", nil))
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				_, err := e.store.PatchStatus(ctx, "analytics", "summarizer", func(st *v1alpha1.ServingAppStatus) error {
					st.Usage.Invocations24h++
					return nil
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	var failed int64
	for err := range errs {
		// A writer may lose maxAttempts races in a row; that is a Conflict, never lost data.
		if !errors.Is(err, ErrConflict) {
			t.Errorf("PatchStatus: %v", err)
		}
		failed++
	}
	got, err := e.store.Get(ctx, "analytics", "summarizer")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Status.Usage.Invocations24h+failed != writers*each {
		t.Errorf("invocations = %d with %d failed patches, want %d in all", got.Status.Usage.Invocations24h, failed, writers*each)
	}
}

// TestConcurrentWritersWithSameResourceVersion races two writers that read
// the same resourceVersion: exactly one wins, the other gets ErrConflict.
func TestConcurrentWritersWithSameResourceVersion(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	cur, _ := e.mustApply(t, newApp("analytics", "summarizer", nil))
	for round := range 20 {
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  [2]error
			outs  [2]*v1alpha1.ServingApp
		)
		for i := range 2 {
			in := newApp("analytics", "summarizer", nil)
			in.Metadata.ResourceVersion = cur.Metadata.ResourceVersion
			in.Spec.Env = map[string]string{"WRITER": string(rune('a' + i)), "ROUND": strings.Repeat("x", round+1)}
			wg.Go(func() {
				<-start
				outs[i], _, errs[i] = e.store.Apply(ctx, in)
			})
		}
		close(start)
		wg.Wait()
		conflicts := 0
		for i, err := range errs {
			switch {
			case errors.Is(err, ErrConflict):
				conflicts++
			case err != nil:
				t.Fatalf("round %d writer %d: %v", round, i, err)
			default:
				cur = outs[i]
			}
		}
		if conflicts != 1 {
			t.Fatalf("round %d: %d conflicts (%v), want exactly 1", round, conflicts, errs)
		}
	}
	if cur.Metadata.Generation != 21 {
		t.Errorf("generation = %d after 20 winning writes, want 21", cur.Metadata.Generation)
	}
}

func TestApplyWithoutResourceVersionRetriesLostRaces(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	e.mustApply(t, newApp("analytics", "summarizer", nil))
	const writers = 4
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		in := newApp("analytics", "summarizer", nil)
		in.Spec.Env = map[string]string{"WRITER": string(rune('a' + i))}
		wg.Go(func() { _, _, errs[i] = e.store.Apply(ctx, in) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	got, err := e.store.Get(ctx, "analytics", "summarizer")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Metadata.Generation != 1+writers {
		t.Errorf("generation = %d, want %d (each writer changed the spec once)", got.Metadata.Generation, 1+writers)
	}
}

func TestApplyRejections(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	cur, _ := e.mustApply(t, newApp("analytics", "summarizer", nil))
	e.mustApply(t, func() *v1alpha1.ServingApp {
		a := newApp("analytics", "summarizer", nil)
		a.Spec.Env = map[string]string{"SUMMARY_LANGUAGE": "ja"}
		return a
	}())
	doomed, _ := e.mustApply(t, newApp("analytics", "doomed", nil))
	if _, err := e.store.AddFinalizer(ctx, "analytics", "doomed", v1alpha1.FinalizerCleanup); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Delete(ctx, "analytics", "doomed"); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		app  func() *v1alpha1.ServingApp
		want []error
		text string
	}{
		{"invalid spec", func() *v1alpha1.ServingApp {
			a := newApp("analytics", "summarizer", nil)
			a.Spec.Allowlist = []string{"10.0.0.5/8"}
			a.Spec.Databricks.Host = "http://x"
			return a
		}, []error{ErrInvalid}, "spec.allowlist[0]"},
		{"stale resourceVersion", func() *v1alpha1.ServingApp {
			a := newApp("analytics", "summarizer", nil)
			a.Metadata.ResourceVersion = cur.Metadata.ResourceVersion
			return a
		}, []error{ErrConflict}, "apply analytics/summarizer: conflict"},
		{"resourceVersion of a missing object", func() *v1alpha1.ServingApp {
			a := newApp("analytics", "nobody", nil)
			a.Metadata.ResourceVersion = "3"
			return a
		}, []error{ErrNotFound}, "apply analytics/nobody"},
		{"resourceVersion not a revision", func() *v1alpha1.ServingApp {
			a := newApp("analytics", "summarizer", nil)
			a.Metadata.ResourceVersion = "abc"
			return a
		}, []error{ErrInvalid}, "metadata.resourceVersion"},
		{"object being deleted", func() *v1alpha1.ServingApp {
			a := newApp("analytics", "doomed", nil)
			a.Spec.Env = map[string]string{"SUMMARY_LANGUAGE": "ja"}
			return a
		}, []error{ErrBeingDeleted}, "apply analytics/doomed: being deleted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := e.store.Apply(ctx, c.app())
			for _, want := range c.want {
				if !errors.Is(err, want) {
					t.Errorf("Apply = %v, want errors.Is %v", err, want)
				}
			}
			if err == nil || !strings.Contains(err.Error(), c.text) {
				t.Errorf("Apply error %q does not mention %q", err, c.text)
			}
		})
	}

	_, _, err := e.store.Apply(ctx, func() *v1alpha1.ServingApp {
		a := newApp("analytics", "summarizer", nil)
		a.Spec.Allowlist = []string{"10.0.0.5/8"}
		a.Spec.Databricks.Host = "http://x"
		return a
	}())
	var fe v1alpha1.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 2 {
		t.Errorf("invalid apply: errors.As FieldErrors = %v (%d errors), want both problems", fe, len(fe))
	}
	got, err := e.store.Get(ctx, "analytics", "doomed")
	if err != nil || got.Metadata.Generation != doomed.Metadata.Generation+1 {
		t.Errorf("rejected apply changed the object being deleted: %+v, %v", got, err)
	}
}

// TestConcurrentCreateConflicts makes two creations of one object meet in
// the KV: the second gets ErrConflict and ErrAlreadyExists.
func TestConcurrentCreateConflicts(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	a := newApp("analytics", "summarizer", nil)
	v1alpha1.SetDefaults(a)
	if _, err := e.store.create(ctx, a); err != nil {
		t.Fatalf("first create: %v", err)
	}
	_, err := e.store.create(ctx, a)
	if !errors.Is(err, ErrConflict) || !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("second create = %v, want ErrConflict and ErrAlreadyExists", err)
	}
}

func TestDelete(t *testing.T) {
	cases := []struct {
		name       string
		finalizers []string
		wantGone   bool
	}{
		{"without finalizers removes the object and its status", nil, true},
		{"with a finalizer only marks it", []string{v1alpha1.FinalizerCleanup}, false},
		{"with two finalizers only marks it", []string{v1alpha1.FinalizerCleanup, "example.com/audit"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEnv(t)
			ctx := ctxT(t)
			created, _ := e.mustApply(t, newApp("analytics", "summarizer", nil))
			for _, f := range c.finalizers {
				if _, err := e.store.AddFinalizer(ctx, "analytics", "summarizer", f); err != nil {
					t.Fatalf("AddFinalizer: %v", err)
				}
			}
			if _, err := e.store.UpdateStatus(ctx, "analytics", "summarizer", &v1alpha1.ServingAppStatus{Phase: v1alpha1.PhaseReady}, 0); err != nil {
				t.Fatalf("UpdateStatus: %v", err)
			}
			e.clock.Advance(time.Minute)
			deletedAt := e.clock.Now()

			out, err := e.store.Delete(ctx, "analytics", "summarizer")
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
			got, getErr := e.store.Get(ctx, "analytics", "summarizer")
			if c.wantGone {
				if !errors.Is(getErr, ErrNotFound) {
					t.Fatalf("Get after delete = %v, want ErrNotFound", getErr)
				}
				if _, _, err := e.store.GetStatus(ctx, "analytics", "summarizer"); !errors.Is(err, ErrNotFound) {
					t.Errorf("GetStatus after delete = %v, want ErrNotFound", err)
				}
				if out.Metadata.DeletionTimestamp != nil {
					t.Errorf("deleted object was marked: %+v", out.Metadata)
				}
				// A new object of the same name starts afresh.
				again, outcome := e.mustApply(t, newApp("analytics", "summarizer", nil))
				if outcome != Created || again.Metadata.Generation != 1 || again.Metadata.UID == created.Metadata.UID {
					t.Errorf("re-create: %q %+v", outcome, again.Metadata)
				}
				if g, err := e.store.Get(ctx, "analytics", "summarizer"); err != nil || g.Status.Phase != "" {
					t.Errorf("re-created object shows status %+v (%v), want empty", g.Status, err)
				}
				return
			}
			if getErr != nil {
				t.Fatalf("Get after delete: %v", getErr)
			}
			m := got.Metadata
			if m.DeletionTimestamp == nil || !m.DeletionTimestamp.Equal(deletedAt) || m.Generation != created.Metadata.Generation+1 {
				t.Errorf("after delete: %+v, want deletionTimestamp %v and generation %d", m, deletedAt, created.Metadata.Generation+1)
			}
			if got.Status.Phase != v1alpha1.PhaseReady {
				t.Errorf("status lost while deleting: %+v", got.Status)
			}
			// Deleting again keeps the first timestamp and writes nothing.
			e.clock.Advance(time.Minute)
			again, err := e.store.Delete(ctx, "analytics", "summarizer")
			if err != nil {
				t.Fatalf("second Delete: %v", err)
			}
			if !again.Metadata.DeletionTimestamp.Equal(deletedAt) || again.Metadata.ResourceVersion != m.ResourceVersion {
				t.Errorf("second Delete changed the object: %+v", again.Metadata)
			}
			if _, err := e.store.AddFinalizer(ctx, "analytics", "summarizer", "late/finalizer"); !errors.Is(err, ErrBeingDeleted) {
				t.Errorf("AddFinalizer while deleting = %v, want ErrBeingDeleted", err)
			}
			// Each removal but the last leaves the object; the last deletes it.
			for i, f := range c.finalizers {
				out, err := e.store.RemoveFinalizer(ctx, "analytics", "summarizer", f)
				if err != nil {
					t.Fatalf("RemoveFinalizer %s: %v", f, err)
				}
				_, err = e.store.Get(ctx, "analytics", "summarizer")
				last := i == len(c.finalizers)-1
				if last && !errors.Is(err, ErrNotFound) {
					t.Errorf("after removing the last finalizer Get = %v, want ErrNotFound", err)
				}
				if !last && (err != nil || len(out.Metadata.Finalizers) != len(c.finalizers)-i-1) {
					t.Errorf("after removing %s: %+v, %v", f, out.Metadata, err)
				}
			}
			if _, _, err := e.store.GetStatus(ctx, "analytics", "summarizer"); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetStatus after the last finalizer = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestFinalizersWithoutDeletion(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	created, _ := e.mustApply(t, newApp("analytics", "summarizer", nil))
	added, err := e.store.AddFinalizer(ctx, "analytics", "summarizer", v1alpha1.FinalizerCleanup)
	if err != nil {
		t.Fatalf("AddFinalizer: %v", err)
	}
	if added.Metadata.Generation != created.Metadata.Generation || added.Metadata.ResourceVersion == created.Metadata.ResourceVersion {
		t.Errorf("AddFinalizer: %+v; want same generation, new resourceVersion", added.Metadata)
	}
	twice, err := e.store.AddFinalizer(ctx, "analytics", "summarizer", v1alpha1.FinalizerCleanup)
	if err != nil || len(twice.Metadata.Finalizers) != 1 || twice.Metadata.ResourceVersion != added.Metadata.ResourceVersion {
		t.Errorf("adding the same finalizer again: %+v, %v; want no write", twice.Metadata, err)
	}
	// Apply keeps finalizers it was not given.
	applied, outcome := e.mustApply(t, func() *v1alpha1.ServingApp {
		a := newApp("analytics", "summarizer", nil)
		a.Spec.Env = map[string]string{"SUMMARY_LANGUAGE": "ja"}
		return a
	}())
	if outcome != Configured || len(applied.Metadata.Finalizers) != 1 {
		t.Errorf("apply dropped the finalizer: %q %+v", outcome, applied.Metadata)
	}
	removed, err := e.store.RemoveFinalizer(ctx, "analytics", "summarizer", v1alpha1.FinalizerCleanup)
	if err != nil || len(removed.Metadata.Finalizers) != 0 {
		t.Fatalf("RemoveFinalizer: %+v, %v", removed, err)
	}
	if _, err := e.store.Get(ctx, "analytics", "summarizer"); err != nil {
		t.Errorf("removing the last finalizer of a live object deleted it: %v", err)
	}
	if _, err := e.store.RemoveFinalizer(ctx, "analytics", "missing", v1alpha1.FinalizerCleanup); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveFinalizer on a missing object = %v, want ErrNotFound", err)
	}
}

func TestGetMissing(t *testing.T) {
	e := newTestEnv(t)
	for _, nn := range [][2]string{{"analytics", "missing"}, {"", "summarizer"}, {"analytics", "a.b"}, {"analytics", "*"}} {
		if _, err := e.store.Get(ctxT(t), nn[0], nn[1]); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q, %q) = %v, want ErrNotFound", nn[0], nn[1], err)
		}
	}
	if _, err := e.store.Delete(ctxT(t), "analytics", "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of a missing object = %v, want ErrNotFound", err)
	}
}

func TestNewIsIdempotent(t *testing.T) {
	e := newTestEnv(t)
	e.mustApply(t, newApp("analytics", "summarizer", nil))
	s2, err := New(ctxT(t), e.store.js, Options{})
	if err != nil {
		t.Fatalf("second New on existing buckets: %v", err)
	}
	if _, err := s2.Get(ctxT(t), "analytics", "summarizer"); err != nil {
		t.Errorf("object not visible through the second store: %v", err)
	}
}

func TestList(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	for _, a := range []*v1alpha1.ServingApp{
		newApp("analytics", "summarizer", map[string]string{"team": "analytics", "tier": "gold"}),
		newApp("analytics", "chat", map[string]string{"team": "analytics"}),
		newApp("support", "triage", map[string]string{"team": "support", "tier": "silver"}),
		newApp("default", "hello", nil),
		newApp("support", "gone", map[string]string{"team": "support"}),
	} {
		e.mustApply(t, a)
	}
	if _, err := e.store.Delete(ctx, "support", "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateStatus(ctx, "analytics", "chat", &v1alpha1.ServingAppStatus{Phase: v1alpha1.PhaseReady}, 0); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		opts ListOptions
		want string
	}{
		{ListOptions{}, "analytics/chat analytics/summarizer default/hello support/triage"},
		{ListOptions{Namespace: "analytics"}, "analytics/chat analytics/summarizer"},
		{ListOptions{Namespace: "nobody"}, ""},
		{ListOptions{Selector: "team=analytics"}, "analytics/chat analytics/summarizer"},
		{ListOptions{Selector: "team==support"}, "support/triage"},
		{ListOptions{Selector: "team!=analytics"}, "default/hello support/triage"},
		{ListOptions{Selector: "tier"}, "analytics/summarizer support/triage"},
		{ListOptions{Selector: "!tier"}, "analytics/chat default/hello"},
		{ListOptions{Selector: "tier in (gold, bronze)"}, "analytics/summarizer"},
		{ListOptions{Selector: "tier notin (gold)"}, "analytics/chat default/hello support/triage"},
		{ListOptions{Selector: "team=analytics,tier"}, "analytics/summarizer"},
		{ListOptions{Namespace: "support", Selector: "team=analytics"}, ""},
	}
	for _, c := range cases {
		got, err := e.store.List(ctx, c.opts)
		if err != nil {
			t.Errorf("List(%+v): %v", c.opts, err)
			continue
		}
		names := make([]string, len(got))
		for i, a := range got {
			names[i] = a.NamespacedName()
		}
		if s := strings.Join(names, " "); s != c.want {
			t.Errorf("List(%+v) = %q, want %q", c.opts, s, c.want)
		}
		for _, a := range got {
			if a.NamespacedName() == "analytics/chat" && a.Status.Phase != v1alpha1.PhaseReady {
				t.Errorf("List(%+v): analytics/chat without its status", c.opts)
			}
			if a.Metadata.ResourceVersion == "" || a.Metadata.UID == "" {
				t.Errorf("List(%+v): %s lacks metadata: %+v", c.opts, a.NamespacedName(), a.Metadata)
			}
		}
	}
	for _, bad := range []ListOptions{{Selector: "team in analytics"}, {Namespace: "Not_A_Label"}} {
		if _, err := e.store.List(ctx, bad); err == nil {
			t.Errorf("List(%+v) succeeded, want an error", bad)
		}
	}
	if _, err := e.store.List(ctx, ListOptions{Selector: "a=b,"}); !errors.Is(err, ErrInvalidSelector) {
		t.Errorf("List with a bad selector = %v, want ErrInvalidSelector", err)
	}
}
