package usage

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/natstest"
)

// fixture is an embedded NATS with the audit stream and the API store, a
// manual clock near the real one (the consumer starts a day back in stream
// time), and fakes for the platform and the recorder.
type fixture struct {
	t       *testing.T
	url     string
	srv     *natstest.Server
	js      jetstream.JetStream
	st      *store.Store
	clk     *clock.Manual
	base    time.Time
	rec     *fakeRecorder
	scaler  *fakeScaler
	blocker *fakeBlocker
	nextID  int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	url, srv := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	ctx := context.Background()
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := store.New(ctx, js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Truncate(time.Minute)
	return &fixture{t: t, url: url, srv: srv, js: js, st: st, clk: clock.NewManual(base), base: base,
		rec: &fakeRecorder{}, scaler: &fakeScaler{}, blocker: &fakeBlocker{}}
}

// apply stores an app; mutate adds autoscaling or lockout.
func (f *fixture) apply(ns, name string, mutate func(*v1.ServingApp)) *v1.ServingApp {
	f.t.Helper()
	a := &v1.ServingApp{
		APIVersion: v1.APIVersion, Kind: v1.Kind,
		Metadata: v1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.ServingAppSpec{
			Allowlist:  []string{"0.0.0.0/0"},
			Databricks: v1.Databricks{Host: "https://dbc-1234abcd.cloud.databricks.com", ServingEndpoint: "endpoint"},
		},
	}
	if mutate != nil {
		mutate(a)
	}
	out, _, err := f.st.Apply(context.Background(), a)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// event is one audit event to publish.
type event struct {
	ns, name string
	typ      audit.EventType
	at       time.Time
	ip       string
	id       string // default: a fresh one
}

func (f *fixture) publish(evs ...event) {
	f.t.Helper()
	f.publishOn(f.js, evs...)
}

func (f *fixture) publishOn(js jetstream.JetStream, evs ...event) {
	f.t.Helper()
	ctx := context.Background()
	for _, e := range evs {
		b, id := f.encode(e)
		if _, err := js.Publish(ctx, audit.AuditSubject(e.ns, e.name, e.typ), b, jetstream.WithMsgID(id)); err != nil {
			f.t.Fatal(err)
		}
	}
}

// publishDuplicate stores an event a second time under another Nats-Msg-Id,
// as a web app retrying after the duplicate window does.
func (f *fixture) publishDuplicate(e event) {
	f.t.Helper()
	b, _ := f.encode(e)
	if _, err := f.js.Publish(context.Background(), audit.AuditSubject(e.ns, e.name, e.typ), b, jetstream.WithMsgID("retry-"+e.id)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) encode(e event) ([]byte, string) {
	id := e.id
	if id == "" {
		f.nextID++
		id = fmt.Sprintf("ev-%06d", f.nextID)
	}
	ev := audit.NewAuditEvent(e.typ, audit.AppRef{Namespace: e.ns, Name: e.name}, e.at)
	if e.ip != "" {
		ev.SrcEndpoint = &audit.NetEndpoint{IP: e.ip}
	}
	b, err := audit.EncodeAuditEvent(id, e.typ, ev)
	if err != nil {
		f.t.Fatal(err)
	}
	return b, id
}

// many returns n events of one type for one app at at.
func many(n int, ns, name string, typ audit.EventType, at time.Time) []event {
	out := make([]event, n)
	for i := range out {
		out[i] = event{ns: ns, name: name, typ: typ, at: at}
	}
	return out
}

func (f *fixture) options(js jetstream.JetStream, reg prometheus.Registerer) Options {
	return Options{
		JetStream: js, Store: f.st, Recorder: f.rec, Scaler: f.scaler, Blocker: f.blocker,
		Clock: f.clk, Registerer: reg, Requeue: f.scaler.requeue,
		Log: slog.New(slog.NewTextHandler(testLog{f.t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// testLog sends log lines to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// start runs an engine until the test ends or stop is called.
func (f *fixture) start(opts Options) (e *Engine, stop func()) {
	f.t.Helper()
	e, err := New(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	f.t.Cleanup(stop)
	return e, stop
}

// lastSeq is the audit stream's last sequence.
func (f *fixture) lastSeq() uint64 {
	f.t.Helper()
	s, err := f.js.Stream(context.Background(), audit.AuditStream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.LastSeq
}

// waitRead waits until e has read everything stored so far.
func (f *fixture) waitRead(e *Engine) {
	f.t.Helper()
	want := f.lastSeq()
	waitFor(f.t, fmt.Sprintf("engine to read up to sequence %d", want), func() bool {
		seq, _ := e.Progress()
		return seq >= want
	})
}

// tick moves the clock by d once the engine waits for its next tick, which
// fires that tick: the engine has exactly one timer while it runs.
func (f *fixture) tick(d time.Duration) {
	f.t.Helper()
	waitFor(f.t, "the engine to wait for its next tick", func() bool { return f.clk.Pending() > 0 })
	f.clk.Advance(d)
}

// waitUsage waits until the app's status.usage is want.
func (f *fixture) waitUsage(ns, name string, want v1.Usage) {
	f.t.Helper()
	var got v1.Usage
	ok := waitUntil(func() bool {
		st, _, err := f.st.GetStatus(context.Background(), ns, name)
		if err != nil {
			f.t.Fatal(err)
		}
		got = st.Usage
		return usageEqual(got, want)
	})
	if !ok {
		f.t.Fatalf("status.usage of %s/%s is %s, want %s", ns, name, fmtUsage(got), fmtUsage(want))
	}
}

// waitFor polls cond; the deadline only bounds a broken test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

func fmtUsage(u v1.Usage) string {
	last := "-"
	if u.LastInvocationTime != nil {
		last = u.LastInvocationTime.Format(time.RFC3339)
	}
	return fmt.Sprintf("{logins %d, failed %d, invocations %d, errors %d, last %s}", u.Logins24h, u.FailedLogins24h, u.Invocations24h, u.Errors24h, last)
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
			if label == "" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func ptrTime(t time.Time) *time.Time { return &t }

// connect opens a second connection, closed when the test ends.
func (f *fixture) connect() (*nats.Conn, jetstream.JetStream) {
	return natstest.Connect(f.t, f.url)
}

// recorded is one event the fake recorder received.
type recorded struct {
	app, severity, reason, message string
}

type fakeRecorder struct {
	mu     sync.Mutex
	events []recorded
}

func (r *fakeRecorder) For(app *v1.ServingApp) model.Recorder {
	return appRec{r: r, app: app.NamespacedName()}
}

func (r *fakeRecorder) reasons(app string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.app == app {
			out = append(out, e.reason)
		}
	}
	return out
}

func (r *fakeRecorder) find(app, reason string) (recorded, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.app == app && e.reason == reason {
			return e, true
		}
	}
	return recorded{}, false
}

type appRec struct {
	r   *fakeRecorder
	app string
}

func (a appRec) Event(_ context.Context, reason, message string) {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	a.r.events = append(a.r.events, recorded{a.app, "Normal", reason, message})
}

func (a appRec) Warning(_ context.Context, reason, message string) {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	a.r.events = append(a.r.events, recorded{a.app, "Warning", reason, message})
}

type fakeScaler struct {
	mu       sync.Mutex
	desired  map[string]int32
	calls    int
	requeued []string
}

func (s *fakeScaler) SetDesiredCount(_ context.Context, app model.Ref, n int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.desired == nil {
		s.desired = map[string]int32{}
	}
	s.desired[app.String()] = n
	s.calls++
	return nil
}

func (s *fakeScaler) get(app string) (int32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.desired[app]
	return n, ok
}

func (s *fakeScaler) requeue(app model.Ref) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requeued = append(s.requeued, app.String())
}

type fakeBlocker struct {
	mu      sync.Mutex
	blocked map[string][]netip.Addr
	calls   int
	fail    error
	// budget, when set, is how many addresses fit: more are answered with
	// a model.ErrLockoutBudget error, the first budget ones blocked.
	budget int
}

func (b *fakeBlocker) SetBlocked(_ context.Context, app model.Ref, addrs []netip.Addr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.fail != nil {
		return b.fail
	}
	if b.blocked == nil {
		b.blocked = map[string][]netip.Addr{}
	}
	if b.budget > 0 && len(addrs) > b.budget {
		b.blocked[app.String()] = slices.Clone(addrs[:b.budget])
		return fmt.Errorf("block addresses for %s: %d address(es) not blocked: %w", app, len(addrs)-b.budget, model.ErrLockoutBudget)
	}
	b.blocked[app.String()] = slices.Clone(addrs)
	return nil
}

func (b *fakeBlocker) callCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func (b *fakeBlocker) get(app string) []netip.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.blocked[app])
}

// countingStore counts status writes per app with the clock time of each,
// and can refuse them.
type countingStore struct {
	Store
	clk    clock.Clock
	mu     sync.Mutex
	writes map[string][]time.Time
	fail   error
}

func (c *countingStore) PatchStatus(ctx context.Context, ns, name string, change func(*v1.ServingAppStatus) error) (*v1.ServingAppStatus, error) {
	c.mu.Lock()
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	st, err := c.Store.PatchStatus(ctx, ns, name, change)
	if err == nil {
		c.mu.Lock()
		if c.writes == nil {
			c.writes = map[string][]time.Time{}
		}
		c.writes[ns+"/"+name] = append(c.writes[ns+"/"+name], c.clk.Now())
		c.mu.Unlock()
	}
	return st, err
}

func (c *countingStore) setFail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = err
}

func (c *countingStore) times(app string) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes[app])
}
