package usage

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/api/audit"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

func TestStatusUsageFollowsTheSlidingWindow(t *testing.T) {
	f := newFixture(t)
	f.apply("analytics", "summarizer", nil)
	b := f.base
	var evs []event
	evs = append(evs, many(3, "analytics", "summarizer", audit.LoginSucceeded, b.Add(-10*time.Minute))...)
	evs = append(evs, many(2, "analytics", "summarizer", audit.LoginFailed, b.Add(-10*time.Minute))...)
	evs = append(evs, many(4, "analytics", "summarizer", audit.InvocationCompleted, b.Add(-5*time.Minute))...)
	evs = append(evs, many(1, "analytics", "summarizer", audit.InvocationFailed, b.Add(-2*time.Minute))...)
	evs = append(evs, many(2, "analytics", "summarizer", audit.InvocationCompleted, b.Add(-23*time.Hour-30*time.Minute))...)
	evs = append(evs, many(3, "analytics", "summarizer", audit.Logout, b)...)                                 // not counted
	evs = append(evs, many(1, "analytics", "summarizer", audit.InvocationCompleted, b.Add(-25*time.Hour))...) // too old
	f.publish(evs...)
	e, _ := f.start(f.options(f.js, nil))
	f.waitRead(e)
	last := ptrTime(b.Add(-2 * time.Minute))

	f.tick(time.Second)
	f.waitUsage("analytics", "summarizer", v1.Usage{Logins24h: 3, FailedLogins24h: 2, Invocations24h: 7, Errors24h: 1, LastInvocationTime: last})
	// At +30m the minute of the events 23h30m old ends exactly 24h ago... not
	// yet: it ends at -23h29m, so they still count.
	f.tick(30*time.Minute - time.Second)
	f.waitUsage("analytics", "summarizer", v1.Usage{Logins24h: 3, FailedLogins24h: 2, Invocations24h: 7, Errors24h: 1, LastInvocationTime: last})
	f.tick(time.Minute)
	f.waitUsage("analytics", "summarizer", v1.Usage{Logins24h: 3, FailedLogins24h: 2, Invocations24h: 5, Errors24h: 1, LastInvocationTime: last})
	// A day later the window is empty; the last invocation stays.
	f.tick(24 * time.Hour)
	f.waitUsage("analytics", "summarizer", v1.Usage{LastInvocationTime: last})
}

func TestStatusIsWrittenAtMostEvery10sAndMessagesAckedOnlyAfterIt(t *testing.T) {
	f := newFixture(t)
	f.apply("analytics", "summarizer", nil)
	cs := &countingStore{Store: f.st, clk: f.clk}
	opts := f.options(f.js, nil)
	opts.Store = cs
	e, _ := f.start(opts)

	// One invocation a second for 35 seconds.
	for range 35 {
		f.publish(event{ns: "analytics", name: "summarizer", typ: audit.InvocationCompleted, at: f.clk.Now()})
		f.waitRead(e)
		f.tick(time.Second)
	}
	f.tick(10 * time.Second)
	f.waitUsage("analytics", "summarizer", v1.Usage{Invocations24h: 35, LastInvocationTime: ptrTime(f.base.Add(34 * time.Second))})
	writes := cs.times("analytics/summarizer")
	if len(writes) < 3 || len(writes) > 5 {
		t.Fatalf("%d status writes in 45s: %v", len(writes), writes)
	}
	for i := 1; i < len(writes); i++ {
		if gap := writes[i].Sub(writes[i-1]); gap < 10*time.Second {
			t.Fatalf("status writes %d and %d only %s apart", i-1, i, gap)
		}
	}

	// While status cannot be written, nothing is acknowledged.
	ctx := context.Background()
	cons, err := f.js.Consumer(ctx, audit.AuditStream, DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every message acknowledged", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0
	})
	cs.setFail(errors.New("store unreachable"))
	f.publish(many(5, "analytics", "summarizer", audit.LoginSucceeded, f.clk.Now())...)
	f.waitRead(e)
	f.tick(10 * time.Second)
	f.tick(10 * time.Second) // two failed flushes
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, pending := e.Progress(); info.NumAckPending != 5 || pending != 5 {
		t.Fatalf("with status failing: %d pending on the server, %d in the engine; want 5", info.NumAckPending, pending)
	}
	cs.setFail(nil)
	f.tick(time.Second)
	f.waitUsage("analytics", "summarizer", v1.Usage{Logins24h: 5, Invocations24h: 35, LastInvocationTime: ptrTime(f.base.Add(34 * time.Second))})
	waitFor(t, "the 5 messages acknowledged after the status write", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.AckFloor.Stream == f.lastSeq()
	})
}

// interleave merges lists round-robin, so apps and types alternate in the stream.
func interleave(lists ...[]event) []event {
	var out []event
	for i := 0; ; i++ {
		added := false
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}

// TestRestartMidStreamCountsEveryEventExactlyOnce kills a controller with
// events in every state: counted and acknowledged (batch 1), stored in the
// usage record but not acknowledged because status could not be written
// (batch 2), read but not stored (batch 3), and not read at all (batch 4,
// with two events the stream stored twice). The next controller must count
// each event once.
func TestRestartMidStreamCountsEveryEventExactlyOnce(t *testing.T) {
	f := newFixture(t)
	f.apply("analytics", "summarizer", nil)
	f.apply("platform", "chat", nil)
	batch := func(n int) []event {
		at := f.base.Add(time.Duration(n-5) * time.Minute)
		evs := interleave(
			many(40, "analytics", "summarizer", audit.LoginSucceeded, at),
			many(100, "analytics", "summarizer", audit.InvocationCompleted, at),
			many(10, "platform", "chat", audit.LoginFailed, at),
			many(50, "platform", "chat", audit.InvocationFailed, at),
		)
		for i := range evs {
			evs[i].id = fmt.Sprintf("b%d-%03d", n, i)
		}
		return evs
	}
	b1, b2, b3, b4 := batch(1), batch(2), batch(3), batch(4)

	nc1, js1 := f.connect()
	cs := &countingStore{Store: f.st, clk: f.clk}
	opts1 := f.options(js1, nil)
	opts1.Store = cs
	f.publish(b1...)
	e1, stop1 := f.start(opts1)
	f.waitRead(e1)
	f.tick(time.Second)
	f.waitUsage("analytics", "summarizer", v1.Usage{Logins24h: 40, Invocations24h: 100, LastInvocationTime: ptrTime(f.base.Add(-4 * time.Minute))})
	f.waitUsage("platform", "chat", v1.Usage{FailedLogins24h: 10, Invocations24h: 50, Errors24h: 50, LastInvocationTime: ptrTime(f.base.Add(-4 * time.Minute))})

	cs.setFail(errors.New("store unreachable"))
	b1End := f.lastSeq()
	f.publish(b2...)
	f.waitRead(e1)
	f.tick(10 * time.Second)
	kv, err := f.js.KeyValue(context.Background(), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"analytics.summarizer", "platform.chat"} {
		waitFor(t, "batch 2 stored in the record of "+key, func() bool {
			e, err := kv.Get(context.Background(), key)
			if err != nil {
				return false
			}
			a, err := decodeApp(e.Value(), e.Revision(), 8)
			return err == nil && a.rec.Seq > b1End
		})
	}

	f.publish(b3...)
	f.waitRead(e1)
	nc1.Close() // the controller dies: nothing more reaches the server
	stop1()

	f.publish(b4...)
	f.publishDuplicate(b1[7])
	f.publishDuplicate(b3[11])

	reg := prometheus.NewRegistry()
	e2, _ := f.start(f.options(f.js, reg))
	f.waitRead(e2)
	f.tick(10 * time.Second)
	last := ptrTime(f.base.Add(-time.Minute))
	summarizer := v1.Usage{Logins24h: 160, Invocations24h: 400, LastInvocationTime: last}
	chat := v1.Usage{FailedLogins24h: 40, Invocations24h: 200, Errors24h: 200, LastInvocationTime: last}
	f.waitUsage("analytics", "summarizer", summarizer)
	f.waitUsage("platform", "chat", chat)
	if got := counterValue(t, reg, "servingapp_usage_events_total", "result", "duplicate_sequence"); got != float64(len(b2)) {
		t.Errorf("%v events recognised as already counted, want batch 2's %d", got, len(b2))
	}
	if got := counterValue(t, reg, "servingapp_usage_events_total", "result", "duplicate_id"); got != 2 {
		t.Errorf("%v duplicates recognised by id, want 2", got)
	}
	if got := counterValue(t, reg, "servingapp_usage_events_total", "result", "counted"); got != float64(len(b3)+len(b4)) {
		t.Errorf("%v events counted by the second controller, want %d", got, len(b3)+len(b4))
	}
	ctx := context.Background()
	cons, err := f.js.Consumer(ctx, audit.AuditStream, DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "everything acknowledged", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream == f.lastSeq()
	})
}

func TestLockoutBlocksAnAddressAndLiftsItAfterTheDuration(t *testing.T) {
	f := newFixture(t)
	f.apply("platform", "chat", func(a *v1.ServingApp) {
		a.Spec.Identity = &v1.Identity{Lockout: &v1.Lockout{Failures: 3, Window: v1.Duration{Duration: 10 * time.Minute}, Duration: v1.Duration{Duration: 30 * time.Minute}}}
	})
	f.apply("analytics", "summarizer", nil) // no lockout policy: never blocks
	b := f.base
	attacker, neighbor := "198.51.100.23", "198.51.100.24"
	fail := func(app, ip string, at time.Time) event {
		ns, name, _ := strings.Cut(app, "/")
		return event{ns: ns, name: name, typ: audit.LoginFailed, at: at, ip: ip}
	}
	e, stop := f.start(f.options(f.js, nil))
	f.publish(fail("platform/chat", attacker, b.Add(-3*time.Minute)), fail("platform/chat", attacker, b.Add(-2*time.Minute)),
		fail("platform/chat", neighbor, b.Add(-2*time.Minute)),
		fail("analytics/summarizer", attacker, b.Add(-2*time.Minute)), fail("analytics/summarizer", attacker, b.Add(-2*time.Minute)),
		fail("analytics/summarizer", attacker, b.Add(-time.Minute)))
	f.waitRead(e)
	if got := f.blocker.get("platform/chat"); len(got) != 0 {
		t.Fatalf("blocked after 2 failures: %v", got)
	}
	f.publish(fail("platform/chat", attacker, b.Add(-time.Minute)))
	want := []netip.Addr{netip.MustParseAddr(attacker)}
	waitFor(t, "the attacker blocked", func() bool { return slices.Equal(f.blocker.get("platform/chat"), want) })
	ev, ok := f.rec.find("platform/chat", "AddressBlocked")
	until := b.Add(29 * time.Minute)
	if !ok || ev.severity != "Warning" || ev.message != fmt.Sprintf("blocked %s until %s after 3 failed logins within 10m", attacker, until.Format(time.RFC3339)) {
		t.Fatalf("recorded %+v", ev)
	}
	if got := f.blocker.get("analytics/summarizer"); len(got) != 0 {
		t.Fatalf("app without lockout blocked %v", got)
	}

	// The block survives a restart of the controller: the new one tells the
	// platform again and lifts it on time.
	f.tick(10 * time.Second)
	f.waitUsage("platform", "chat", v1.Usage{FailedLogins24h: 4})
	stop()
	second := &fakeBlocker{}
	opts := f.options(f.js, nil)
	opts.Blocker = second
	f.start(opts)
	f.tick(time.Second)
	waitFor(t, "the block re-applied after the restart", func() bool { return slices.Equal(second.get("platform/chat"), want) })
	f.tick(until.Sub(f.clk.Now()) - time.Second)
	if got := second.get("platform/chat"); !slices.Equal(got, want) {
		t.Fatalf("lifted a second early: %v", got)
	}
	f.tick(time.Second)
	waitFor(t, "the block lifted", func() bool { return len(second.get("platform/chat")) == 0 && second.calls >= 2 })
	if ev, ok := f.rec.find("platform/chat", "AddressUnblocked"); !ok || ev.message != "unblocked "+attacker+": its lockout ended" {
		t.Fatalf("recorded %+v", ev)
	}
}

func TestAutoscalerScalesThroughThePlatformAndRecordsEachDecision(t *testing.T) {
	f := newFixture(t)
	f.apply("analytics", "summarizer", func(a *v1.ServingApp) {
		a.Spec.Autoscaling = &v1.Autoscaling{MinReplicas: 1, MaxReplicas: 10, TargetInvocationsPerReplicaPerMinute: 60}
	})
	f.apply("platform", "chat", nil) // not autoscaled: never touched
	e, _ := f.start(f.options(f.js, nil))
	f.tick(time.Second)
	waitFor(t, "the desired count asserted at start", func() bool { n, ok := f.scaler.get("analytics/summarizer"); return ok && n == 1 })

	f.publish(many(300, "analytics", "summarizer", audit.InvocationCompleted, f.clk.Now())...)
	f.waitRead(e)
	f.tick(15 * time.Second)
	waitFor(t, "scaled up to 5", func() bool { n, _ := f.scaler.get("analytics/summarizer"); return n == 5 })
	ev, ok := f.rec.find("analytics/summarizer", ActionScaledUp)
	if !ok || ev.message != "scaled up from 1 to 5 replicas: 300 invocations/min at a target of 60 per replica recommends 5 (min 1, max 10)" {
		t.Fatalf("recorded %+v", ev)
	}
	f.tick(2 * time.Minute)
	waitFor(t, "the scale-down deferred", func() bool { _, ok := f.rec.find("analytics/summarizer", ActionScaleDownDeferred); return ok })
	if n, _ := f.scaler.get("analytics/summarizer"); n != 5 {
		t.Fatalf("scaled down at once to %d", n)
	}
	f.tick(Stabilization)
	waitFor(t, "scaled down to 1 after 5m", func() bool { n, _ := f.scaler.get("analytics/summarizer"); return n == 1 })
	if got := f.rec.reasons("analytics/summarizer"); !slices.Equal(got, []string{ActionScaledUp, ActionScaleDownDeferred, ActionScaledDown}) {
		t.Fatalf("recorded %v", got)
	}
	if _, ok := f.scaler.get("platform/chat"); ok {
		t.Fatal("an app without autoscaling was scaled")
	}
	f.scaler.mu.Lock()
	requeued := slices.Clone(f.scaler.requeued)
	f.scaler.mu.Unlock()
	if !slices.Contains(requeued, "analytics/summarizer") {
		t.Fatalf("no reconcile asked after scaling: %v", requeued)
	}
}

func TestEngineLeavesAppsWithoutObjectsAlone(t *testing.T) {
	f := newFixture(t)
	f.publish(many(3, "gone", "app", audit.InvocationCompleted, f.base)...)
	e, _ := f.start(f.options(f.js, nil))
	f.waitRead(e)
	f.tick(time.Second)
	ctx := context.Background()
	cons, err := f.js.Consumer(ctx, audit.AuditStream, DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the events of an unknown app acknowledged", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.AckFloor.Stream == 3
	})
	if _, _, err := f.st.GetStatus(ctx, "gone", "app"); err == nil {
		t.Fatal("a status appeared for an app that does not exist")
	}
	var _ jetstream.Consumer = cons
}
