package controller_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/natstest"
)

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestControllerReconcilesOnApplyAndDelete(t *testing.T) {
	e := newEnv(t)
	r := e.reconciler()
	r.Clock = clock.Real{}
	r.ProgressPoll = 10 * time.Millisecond
	c := controller.New(e.store, r, controller.Options{Workers: 2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	e.apply(testApp("web"))
	waitUntil(t, "web Ready", func() bool {
		a, err := e.store.Get(context.Background(), "team", "web")
		return err == nil && a.Status.Phase == v1.PhaseReady
	})
	if _, err := e.store.Delete(context.Background(), "team", "web"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "web gone", func() bool {
		_, err := e.store.Get(context.Background(), "team", "web")
		return errors.Is(err, store.ErrNotFound)
	})
	if n := len(e.plat.Resources()); n != 0 {
		t.Fatalf("%d resources left after delete", n)
	}
}

// recordingReconciler notices when two controllers reconcile at the same time.
type recordingReconciler struct {
	mu       sync.Mutex
	active   map[string]int // in-flight reconciles by controller
	overlap  bool
	perOwner map[string]int
}

func (r *recordingReconciler) enter(owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for o, n := range r.active {
		if o != owner && n > 0 {
			r.overlap = true
		}
	}
	r.active[owner]++
	r.perOwner[owner]++
}

func (r *recordingReconciler) leave(owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[owner]--
}

type ownedReconciler struct {
	shared *recordingReconciler
	name   string
}

func (o ownedReconciler) Reconcile(ctx context.Context, key string) (controller.Result, error) {
	o.shared.enter(o.name)
	defer o.shared.leave(o.name)
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Millisecond):
	}
	return controller.Result{}, nil
}

// TestLeaderFailover runs two controllers on one NATS server. The leader's
// connection dies; it must stop before the standby starts, and the standby
// must take over. A shared reconciler proves they never reconcile at once.
func TestLeaderFailover(t *testing.T) {
	url, _ := natstest.Start(t)
	connect := func() (*nats.Conn, jetstream.JetStream, *store.Store, jetstream.KeyValue) {
		nc, js := natstest.Connect(t, url, nats.MaxReconnects(0))
		st, err := store.New(context.Background(), js, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return nc, js, st, leaseBucket(t, js)
	}
	shared := &recordingReconciler{perOwner: map[string]int{}, active: map[string]int{}}
	var (
		mu       sync.Mutex
		timeline []string
		leading  atomic.Int32
		twoAtOne atomic.Bool
	)
	start := func(name string) (*nats.Conn, *store.Store, chan error, context.CancelFunc) {
		nc, _, st, kv := connect()
		el := &controller.LeaderElector{
			KV: kv, Identity: name, Clock: clock.Real{}, Log: slog.New(slog.DiscardHandler),
			LeaseTTL: 900 * time.Millisecond, RenewEvery: 150 * time.Millisecond,
			RenewDeadline: 500 * time.Millisecond, RetryEvery: 100 * time.Millisecond,
			OnChange: func(l bool) {
				mu.Lock()
				defer mu.Unlock()
				if l {
					if leading.Add(1) > 1 {
						twoAtOne.Store(true)
					}
					timeline = append(timeline, name+" leads")
				} else {
					leading.Add(-1)
					timeline = append(timeline, name+" stops")
				}
			},
		}
		c := controller.New(st, ownedReconciler{shared, name}, controller.Options{Workers: 4, Elector: el, Resync: 50 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return nc, st, done, cancel
	}

	ncA, stA, doneA, cancelA := start("a")
	defer cancelA()
	for _, n := range []string{"x1", "x2", "x3"} {
		if _, _, err := stA.Apply(context.Background(), testApp(n)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "a leads and reconciles", func() bool {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		return shared.perOwner["a"] > 3
	})
	_, _, doneB, cancelB := start("b")
	defer cancelB()
	time.Sleep(300 * time.Millisecond) // b campaigns while a holds the lease
	shared.mu.Lock()
	if shared.perOwner["b"] != 0 {
		shared.mu.Unlock()
		t.Fatal("standby reconciled while the leader held the lease")
	}
	shared.mu.Unlock()

	ncA.Close() // the leader can no longer renew: as good as dead
	if err := <-doneA; !errors.Is(err, controller.ErrLeadershipLost) {
		t.Fatalf("leader without NATS returned %v, want ErrLeadershipLost", err)
	}
	waitUntil(t, "b takes over", func() bool {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		return shared.perOwner["b"] > 3
	})
	cancelB()
	if err := <-doneB; err != nil {
		t.Fatalf("graceful stop of b: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if twoAtOne.Load() || shared.overlap {
		t.Fatalf("two leaders at once: %v", timeline)
	}
	want := []string{"a leads", "a stops", "b leads", "b stops"}
	if len(timeline) != 4 {
		t.Fatalf("timeline %v, want %v", timeline, want)
	}
	for i := range want {
		if timeline[i] != want[i] {
			t.Fatalf("timeline %v, want %v", timeline, want)
		}
	}
}

// TestGracefulShutdownReleasesLease: a standby takes over at once after the
// leader stops cleanly, without waiting for the lease to expire.
func TestGracefulShutdownReleasesLease(t *testing.T) {
	url, _ := natstest.Start(t)
	_, kv := leaseKV(t, url)
	mk := func(id string) *controller.LeaderElector {
		return &controller.LeaderElector{KV: kv, Identity: id, Clock: clock.Real{}, Log: slog.New(slog.DiscardHandler),
			LeaseTTL: time.Hour, RenewEvery: 50 * time.Millisecond, RenewDeadline: 30 * time.Minute, RetryEvery: 20 * time.Millisecond}
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	led := make(chan struct{})
	doneA := make(chan error, 1)
	go func() {
		doneA <- mk("a").Run(ctxA, func(stop, work context.Context) { close(led); <-stop.Done() })
	}()
	<-led
	cancelA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	ledB := make(chan struct{})
	go func() { _ = mk("b").Run(ctxB, func(stop, work context.Context) { close(ledB); <-stop.Done() }) }()
	select {
	case <-ledB:
	case <-time.After(20 * time.Second): // the lease TTL is an hour: only a release explains a takeover
		t.Fatal("standby did not take over a released lease")
	}
}

// leaseKV opens the lease bucket on its own connection (without reconnects,
// so closing it kills the elector behind it), closed when the test ends.
func leaseKV(t *testing.T, url string) (*nats.Conn, jetstream.KeyValue) {
	t.Helper()
	nc, js := natstest.Connect(t, url, nats.MaxReconnects(0))
	return nc, leaseBucket(t, js)
}

// leaseBucket creates (or opens) the lease bucket through js.
func leaseBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: controller.DefaultLeaseBucket})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// skewedClock is a real clock that runs ahead by a fixed offset, like a host
// whose time is wrong.
type skewedClock struct {
	clock.Real
	ahead time.Duration
}

func (c skewedClock) Now() time.Time { return time.Now().Add(c.ahead) }

// TestStandbyWithSkewedClockNeverTakesAHeldLease: a standby whose clock runs
// an hour ahead must not think a lease that is being renewed has expired, and
// must still take over once renewals stop.
func TestStandbyWithSkewedClockNeverTakesAHeldLease(t *testing.T) {
	url, _ := natstest.Start(t)
	var leading atomic.Int32
	var twoAtOnce atomic.Bool
	mk := func(kv jetstream.KeyValue, id string, clk clock.Clock) *controller.LeaderElector {
		return &controller.LeaderElector{KV: kv, Identity: id, Clock: clk, Log: slog.New(slog.DiscardHandler),
			LeaseTTL: 900 * time.Millisecond, RenewEvery: 150 * time.Millisecond,
			RenewDeadline: 500 * time.Millisecond, RetryEvery: 50 * time.Millisecond}
	}
	lead := func(led chan<- struct{}) func(stop, work context.Context) {
		return func(stop, work context.Context) {
			if leading.Add(1) > 1 {
				twoAtOnce.Store(true)
			}
			defer leading.Add(-1)
			close(led)
			<-work.Done()
		}
	}
	ncA, kvA := leaseKV(t, url)
	ledA, doneA := make(chan struct{}), make(chan error, 1)
	go func() { doneA <- mk(kvA, "a", clock.Real{}).Run(context.Background(), lead(ledA)) }()
	<-ledA

	_, kvB := leaseKV(t, url)
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	ledB := make(chan struct{})
	go func() { _ = mk(kvB, "b", skewedClock{ahead: time.Hour}).Run(ctxB, lead(ledB)) }()
	select {
	case <-ledB:
		t.Fatal("a standby whose clock is an hour ahead took a lease that was being renewed")
	case <-time.After(2 * time.Second): // more than two TTLs of renewals
	}

	ncA.Close()
	if err := <-doneA; !errors.Is(err, controller.ErrLeadershipLost) {
		t.Fatalf("leader without NATS returned %v, want ErrLeadershipLost", err)
	}
	select {
	case <-ledB:
	case <-time.After(20 * time.Second):
		t.Fatal("standby did not take over once renewals stopped")
	}
	if twoAtOnce.Load() {
		t.Fatal("two leaders at once")
	}
}

// TestStandbyTakesOverWithin20sAtTheDefaults runs two electors with the
// default TTL, renew and retry periods on one simulated clock: after the
// leader dies, the standby leads within 20 simulated seconds, and never
// while the old leader still does.
func TestStandbyTakesOverWithin20sAtTheDefaults(t *testing.T) {
	url, _ := natstest.Start(t)
	clk := clock.NewManual(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	// One view of the shared clock per elector, to tell which of them waits
	// on it: the clock moves only while each running elector does, so its
	// polls happen at the simulated times they are due.
	aClk, bClk := &timerClock{Manual: clk}, &timerClock{Manual: clk}
	var leading atomic.Int32
	var twoAtOnce, aStopped atomic.Bool
	var bLedAt atomic.Pointer[time.Time]
	run := func(kv jetstream.KeyValue, id string, elClk *timerClock, led chan<- struct{}) chan error {
		el := &controller.LeaderElector{KV: kv, Identity: id, Clock: elClk, Log: slog.New(slog.DiscardHandler)}
		done := make(chan error, 1)
		go func() {
			defer func() {
				if id == "a" {
					aStopped.Store(true)
				}
			}()
			done <- el.Run(context.Background(), func(stop, work context.Context) {
				if leading.Add(1) > 1 {
					twoAtOnce.Store(true)
				}
				defer leading.Add(-1)
				if id == "b" {
					now := clk.Now()
					bLedAt.Store(&now)
				}
				close(led)
				<-work.Done()
			})
		}()
		return done
	}
	// step advances the clock by 100ms once each running elector waits.
	step := func() {
		t.Helper()
		waitUntil(t, "electors waiting", func() bool { return bClk.waiting() && (aStopped.Load() || aClk.waiting()) })
		clk.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}

	ncA, kvA := leaseKV(t, url)
	ledA := make(chan struct{})
	doneA := run(kvA, "a", aClk, ledA)
	<-ledA
	_, kvB := leaseKV(t, url)
	ledB := make(chan struct{})
	run(kvB, "b", bClk, ledB)
	for range 300 { // 30 simulated seconds of renewals: b stays a standby
		step()
	}
	select {
	case <-ledB:
		t.Fatal("the standby took a lease that was being renewed")
	default:
	}

	ncA.Close()
	died := clk.Now()
	for i := 0; bLedAt.Load() == nil; i++ {
		if i > 600 {
			t.Fatal("no takeover within 60 simulated seconds")
		}
		step()
	}
	if err := <-doneA; !errors.Is(err, controller.ErrLeadershipLost) {
		t.Fatalf("dead leader returned %v, want ErrLeadershipLost", err)
	}
	if twoAtOnce.Load() {
		t.Fatal("two leaders at once")
	}
	if took := bLedAt.Load().Sub(died); took > 20*time.Second {
		t.Fatalf("standby took over %s after the leader died, want within 20s", took)
	} else {
		t.Logf("standby took over %s (simulated) after the leader died", took)
	}
}

// TestRequeueAfterResetsTheFailureBackoff: a reconcile that succeeds but asks
// to be looked at again (a rollout in progress) ends the run of failures, so
// the next failure backs off from the base delay again and not from where
// the earlier failures left it.
func TestRequeueAfterResetsTheFailureBackoff(t *testing.T) {
	e := newEnv(t)
	clk := clock.NewManual(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	throttled := errors.New("throttled")
	var mu sync.Mutex
	answers := []struct {
		res controller.Result
		err error
	}{{err: throttled}, {err: throttled}, {err: throttled}, {res: controller.Result{RequeueAfter: time.Minute}}, {err: throttled}, {}}
	rec := &scriptedReconciler{answer: func(string) (controller.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		a := answers[0]
		answers = answers[1:]
		return a.res, a.err
	}}
	c := controller.New(e.store, rec, controller.Options{Workers: 1, Clock: clk, Resync: 24 * time.Hour,
		Jitter: func(time.Duration) time.Duration { return 0 }})
	runController(t, c)

	// attempt waits for the nth attempt to have been handled: it ran, and
	// the key waits on the clock again (one timer besides the resync's).
	attempt := func(n int) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("attempt %d handled", n), func() bool { return rec.count("team.web") == n && clk.Pending() == 2 })
	}
	failures := func(want int) {
		t.Helper()
		if got := c.Queue().Failures("team.web"); got != want {
			t.Fatalf("after attempt %d: %d consecutive failures counted, want %d", rec.count("team.web"), got, want)
		}
	}
	e.apply(testApp("web"))
	attempt(1)
	clk.Advance(controller.DefaultBaseDelay)
	attempt(2)
	clk.Advance(2 * controller.DefaultBaseDelay)
	attempt(3)
	failures(3)
	clk.Advance(4 * controller.DefaultBaseDelay) // attempt 4 asks for a requeue in a minute
	attempt(4)
	failures(0)
	clk.Advance(time.Minute) // attempt 5 fails: the base delay again, not 16 times it
	attempt(5)
	failures(1)
	clk.Advance(controller.DefaultBaseDelay)
	waitUntil(t, "attempt 6 after the base delay", func() bool { return rec.count("team.web") == 6 })
}

// blockingReconciler holds its first reconcile until finish is closed, then
// writes status with the context it was given, as a real reconcile would.
type blockingReconciler struct {
	st       controller.Store
	started  chan struct{}
	finish   chan struct{}
	once     sync.Once
	writeErr error
	ctxErr   error
}

func (b *blockingReconciler) Reconcile(ctx context.Context, key string) (controller.Result, error) {
	first := false
	b.once.Do(func() { first = true })
	if !first {
		return controller.Result{}, nil
	}
	close(b.started)
	<-b.finish
	_, b.writeErr = b.st.PatchStatus(ctx, "team", "web", func(s *v1.ServingAppStatus) error {
		s.Message = "finished after shutdown began"
		return nil
	})
	b.ctxErr = ctx.Err()
	return controller.Result{}, b.writeErr
}

// TestGracefulShutdownLetsInFlightReconcileFinish: a shutdown stops intake
// but the reconcile already running finishes with a live context (its
// writes succeed) and counts as a success, not as aborted; with or without
// leader election.
func TestGracefulShutdownLetsInFlightReconcileFinish(t *testing.T) {
	for _, tc := range []struct {
		name    string
		elected bool
	}{
		{"election disabled", false},
		{"elected", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			reg := prometheus.NewRegistry()
			opts := controller.Options{Workers: 1, Resync: 24 * time.Hour, Metrics: controller.NewMetrics(reg)}
			if tc.elected {
				// Hour-long periods: no renewal or expiry can happen during the test.
				opts.Elector = &controller.LeaderElector{KV: leaseBucket(t, e.js), Identity: "a", Clock: clock.Real{}, Log: slog.New(slog.DiscardHandler),
					LeaseTTL: 3 * time.Hour, RenewEvery: time.Hour, RenewDeadline: 2 * time.Hour}
			}
			rec := &blockingReconciler{st: e.store, started: make(chan struct{}), finish: make(chan struct{})}
			c := controller.New(e.store, rec, opts)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()

			e.apply(testApp("web"))
			<-rec.started
			cancel() // contexts derived from ctx end here, synchronously
			close(rec.finish)
			if err := <-done; err != nil {
				t.Fatalf("graceful stop returned %v", err)
			}
			if rec.ctxErr != nil || rec.writeErr != nil {
				t.Fatalf("the in-flight reconcile lost its context on shutdown: ctx %v, status write %v", rec.ctxErr, rec.writeErr)
			}
			if got := e.get("web").Status.Message; got != "finished after shutdown began" {
				t.Fatalf("status message %q: the in-flight reconcile's write is missing", got)
			}
			if got := reconciles(t, reg); got["success"] != 1 || got["aborted"] != 0 {
				t.Fatalf("reconciles by result %v, want the in-flight one counted as a success", got)
			}
		})
	}
}

// reconciles reads servingapp_controller_reconciles_total by result from reg.
func reconciles(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "servingapp_controller_reconciles_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
