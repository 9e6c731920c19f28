package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
)

// Store is what the engine needs of the API store (api/store.Store).
type Store interface {
	List(ctx context.Context, opts store.ListOptions) ([]*v1.ServingApp, error)
	PatchStatus(ctx context.Context, namespace, name string, change func(*v1.ServingAppStatus) error) (*v1.ServingAppStatus, error)
}

// EventRecorder records events for one app at a time
// (controller.StreamRecorder).
type EventRecorder interface {
	For(app *v1.ServingApp) model.Recorder
}

// Scaler is a platform that sets an app's desired replica count on behalf
// of the autoscaler (the local platform, the AWS platform). Setting the
// count it already has must be harmless.
type Scaler interface {
	SetDesiredCount(ctx context.Context, app model.Ref, n int32) error
}

// Blocker is a platform that refuses requests from some source addresses of
// an app (lockout). addrs is the complete list: it replaces the previous one,
// and an empty list lifts every block.
type Blocker interface {
	SetBlocked(ctx context.Context, app model.Ref, addrs []netip.Addr) error
}

// Defaults of Options.
const (
	DefaultBucket         = "servingapp-usage"
	DefaultConsumer       = "servingapp-usage"
	DefaultStatusInterval = 10 * time.Second
	DefaultTick           = time.Second
	DefaultSpecRefresh    = 10 * time.Second
	DefaultScaleInterval  = 15 * time.Second
	DefaultAckWait        = 2 * time.Minute
	DefaultMaxAckPending  = 1 << 19
	DefaultBatch          = 2048
	DefaultRecentIDs      = 1024
)

// Options configure an Engine. JetStream and Store are required; zero
// values of the rest take the defaults.
type Options struct {
	JetStream jetstream.JetStream
	Store     Store
	// Recorder records autoscaling and lockout events; nil logs them only.
	Recorder EventRecorder
	// Scaler, when set, enables autoscaling of apps with spec.autoscaling.
	Scaler Scaler
	// Blocker, when set, enables lockout for apps with spec.identity.lockout.
	Blocker Blocker
	// Requeue, when set, is called after the desired count of an app changed,
	// so the controller reconciles it soon (status shows the new count; the
	// local platform starts or stops instances then).
	Requeue func(app model.Ref)
	Clock   clock.Clock
	Log     *slog.Logger
	// Registerer receives the engine's metrics; nil registers none.
	Registerer prometheus.Registerer

	// Bucket is the KV bucket of the per-app records; Consumer the durable
	// consumer's name; Replicas their replicas (default 1).
	Bucket   string
	Consumer string
	Replicas int
	// StatusInterval is the least time between two status writes of one app.
	StatusInterval time.Duration
	// Tick is how often the engine flushes, lifts blocks and evaluates.
	Tick time.Duration
	// SpecRefresh is how often the engine lists the apps for their
	// autoscaling and lockout settings.
	SpecRefresh time.Duration
	// ScaleInterval is how often autoscaled apps are evaluated.
	ScaleInterval time.Duration
	// AckWait and MaxAckPending configure the durable consumer. Messages
	// wait up to StatusInterval for their acknowledgement, so MaxAckPending
	// bounds the sustained rate at about MaxAckPending/StatusInterval.
	AckWait       time.Duration
	MaxAckPending int
	// Batch is how many messages a pull asks for.
	Batch int
	// RecentIDs is how many event ids per app are kept to drop an event the
	// stream stored twice.
	RecentIDs int
}

// filterSubjects are the audit events the engine reads: logins and
// invocations of every app.
var filterSubjects = []string{
	audit.AuditSubjectRoot + ".*.*.login.*",
	audit.AuditSubjectRoot + ".*.*.invocation.*",
}

// Engine is the controller's consumer of SERVINGAPP_AUDIT. It keeps per-app
// usage over a sliding 24 hours in status.usage, autoscales apps through a
// Scaler and locks out source addresses through a Blocker. Run it on the
// leader only (OnLeadership does that).
type Engine struct {
	opts   Options
	m      *metrics
	folded atomic.Uint64
	acks   atomic.Int64
}

// New checks opts and registers the engine's metrics.
func New(opts Options) (*Engine, error) {
	if opts.JetStream == nil || opts.Store == nil {
		return nil, errors.New("usage engine: JetStream and Store are required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	setDefault(&opts.Bucket, DefaultBucket)
	setDefault(&opts.Consumer, DefaultConsumer)
	setDefault(&opts.Replicas, 1)
	setDefault(&opts.StatusInterval, DefaultStatusInterval)
	setDefault(&opts.Tick, DefaultTick)
	setDefault(&opts.SpecRefresh, DefaultSpecRefresh)
	setDefault(&opts.ScaleInterval, DefaultScaleInterval)
	setDefault(&opts.AckWait, DefaultAckWait)
	setDefault(&opts.MaxAckPending, DefaultMaxAckPending)
	setDefault(&opts.Batch, DefaultBatch)
	setDefault(&opts.RecentIDs, DefaultRecentIDs)
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Engine{opts: opts, m: m}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Progress returns the highest stream sequence the engine has read and how
// many messages wait for acknowledgement.
func (e *Engine) Progress() (seq uint64, pendingAcks int64) {
	return e.folded.Load(), e.acks.Load()
}

// Run consumes until ctx ends. After a failure (NATS unreachable, the
// consumer deleted, a record changed by someone else) it starts over from
// the stored records, which is exact, after a backoff. It returns nil when
// ctx ends; it must not run twice at the same time.
func (e *Engine) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		started := e.opts.Clock.Now()
		err := e.runTerm(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if e.opts.Clock.Now().Sub(started) > time.Minute {
			attempt = 0
		}
		d := min(time.Second<<min(attempt, 5), 30*time.Second)
		e.m.failures.WithLabelValues("consume").Inc()
		e.opts.Log.Error("usage consumer stopped; starting again from the stored records", "error", err, "retryIn", d)
		if !sleep(ctx, e.opts.Clock, d) {
			return nil
		}
	}
}

// OnLeadership returns a function for controller.LeaderElector.OnChange:
// it starts Run when this controller starts leading and stops it (waiting
// until its last records are stored) when it stops. Run ends with ctx too.
func (e *Engine) OnLeadership(ctx context.Context) func(leading bool) {
	var (
		mu     sync.Mutex
		cancel context.CancelFunc
		done   chan struct{}
	)
	return func(leading bool) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case leading && cancel == nil:
			var runCtx context.Context
			runCtx, cancel = context.WithCancel(ctx)
			done = make(chan struct{})
			go func() {
				defer close(done)
				_ = e.Run(runCtx)
			}()
		case !leading && cancel != nil:
			cancel()
			<-done
			cancel, done = nil, nil
		}
	}
}

func sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	ch := make(chan struct{})
	t := clk.AfterFunc(d, func() { close(ch) })
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// runTerm is one uninterrupted stretch of consuming: load the records,
// reset the consumer to its ack floor, then consume.
func (e *Engine) runTerm(ctx context.Context) error {
	t, err := e.startTerm(ctx)
	if err != nil {
		return err
	}
	return t.loop(ctx)
}

// term is the state of one stretch of consuming; only its goroutine uses it.
type term struct {
	e      *Engine
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream jetstream.Stream
	cons   jetstream.Consumer
	apps   map[string]*app
	specs  map[string]*v1.ServingApp
	// specsAt is when specs were last listed; triedAt when it was last tried.
	specsAt, triedAt time.Time
	nextScale        time.Time
	fill             int // stream fill level last reported: 0 fine, 1 nearly full, 2 full
	// lastDelivery and lastSeq are the consumer and stream sequences of the
	// latest delivery this term received: a jump in the first means a
	// delivery went elsewhere (see handle).
	lastDelivery, lastSeq uint64
}

func (e *Engine) startTerm(ctx context.Context) (*term, error) {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	js := e.opts.JetStream
	kv, err := js.CreateOrUpdateKeyValue(sctx, jetstream.KeyValueConfig{
		Bucket:      e.opts.Bucket,
		Description: "servingapp usage: per-app aggregation of audit events and the last stream sequence folded in",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    e.opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", e.opts.Bucket, err)
	}
	stream, err := js.Stream(sctx, audit.AuditStream)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", audit.AuditStream, err)
	}
	t := &term{e: e, js: js, kv: kv, stream: stream, apps: map[string]*app{}, specs: map[string]*v1.ServingApp{}}
	if err := t.load(sctx); err != nil {
		return nil, err
	}
	t.refresh(sctx)
	if t.cons, err = t.ensureConsumer(sctx); err != nil {
		return nil, err
	}
	// Deliver again from the ack floor, in order, forgetting what was
	// delivered before: to a previous term of this controller or to one
	// that died. Every message after the floor then comes in stream order,
	// so each app's stored sequence tells exactly what it already counts.
	// A later redelivery (after AckWait) is of a message this term has
	// already folded, which the same sequence recognises.
	if _, err := t.stream.ResetConsumer(sctx, e.opts.Consumer); err != nil {
		return nil, fmt.Errorf("reset consumer %s to its ack floor (the server must support consumer reset, as nats-server v2.15 does): %w", e.opts.Consumer, err)
	}
	return t, nil
}

// load reads every stored record.
func (t *term) load(ctx context.Context) error {
	lister, err := t.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list bucket %s: %w", t.e.opts.Bucket, err)
	}
	defer func() { _ = lister.Stop() }()
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		entry, err := t.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read usage record %s: %w", k, err)
		}
		a, err := decodeApp(entry.Value(), entry.Revision(), t.e.opts.RecentIDs)
		if err != nil {
			return fmt.Errorf("read usage record %s: %w", k, err)
		}
		t.apps[k] = a
	}
	return nil
}

// ensureConsumer creates the durable consumer, starting one usage window
// back, or updates the settings of the existing one (its position stays).
func (t *term) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	o := t.e.opts
	cfg := jetstream.ConsumerConfig{
		Durable:        o.Consumer,
		Description:    "servingapp controller: usage, autoscaling and lockout",
		FilterSubjects: filterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        o.AckWait,
		MaxAckPending:  o.MaxAckPending,
		MaxDeliver:     -1,
	}
	cur, err := t.stream.Consumer(ctx, o.Consumer)
	switch {
	case err == nil:
		old := cur.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartTime, cfg.OptStartSeq = old.DeliverPolicy, old.OptStartTime, old.OptStartSeq
		c, err := t.stream.UpdateConsumer(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("update consumer %s: %w", o.Consumer, err)
		}
		return c, nil
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		start := o.Clock.Now().Add(-Span - time.Hour)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		c, err := t.stream.CreateConsumer(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("create consumer %s: %w", o.Consumer, err)
		}
		return c, nil
	default:
		return nil, fmt.Errorf("look up consumer %s: %w", o.Consumer, err)
	}
}

// loop consumes the durable consumer until ctx ends or something fails.
func (t *term) loop(ctx context.Context) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := t.e.opts
	msgs := make(chan jetstream.Msg, 2*o.Batch)
	fatal := make(chan error, 1)
	cc, err := t.cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-lctx.Done():
		}
	}, jetstream.PullMaxMessages(o.Batch), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			select {
			case fatal <- err:
			default:
			}
			return
		}
		o.Log.Debug("usage consumer", "error", err)
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", audit.AuditStream, err)
	}
	defer cc.Stop()

	ticks := make(chan struct{}, 1)
	schedule := func() clock.Timer {
		return o.Clock.AfterFunc(o.Tick, func() {
			select {
			case ticks <- struct{}{}:
			default:
			}
		})
	}
	timer := schedule() // the first tick waits a Tick, so it sees the backlog's start

	defer func() { timer.Stop() }()
	for {
		select {
		case <-ctx.Done():
			t.shutdown(ctx)
			return ctx.Err()
		case err := <-fatal:
			return fmt.Errorf("consume %s: %w", audit.AuditStream, err)
		case m := <-msgs:
			t.handle(lctx, m)
		drain:
			for range o.Batch {
				select {
				case m := <-msgs:
					t.handle(lctx, m)
				default:
					break drain
				}
			}
		case <-ticks:
			if err := t.tick(lctx); err != nil {
				return err
			}
			timer = schedule()
		}
	}
}

func (t *term) handle(ctx context.Context, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		t.e.m.events.WithLabelValues("invalid").Inc()
		_ = m.Ack()
		return
	}
	delivery, seq := meta.Sequence.Consumer, meta.Sequence.Stream
	// Deliveries are numbered one by one. A number skipped is a message the
	// server handed to somebody else (a pull request of a previous
	// connection, another process bound to this consumer): it comes back only
	// after AckWait, behind later sequences that its app's record already
	// counts, and would be skipped as old. Fetch what lies between now, in
	// order, so every event is counted, and counted before the later ones.
	if t.lastDelivery != 0 && delivery > t.lastDelivery+1 && seq > t.lastSeq+1 {
		t.fillGap(ctx, t.lastSeq+1, seq)
	}
	t.lastDelivery = max(t.lastDelivery, delivery)
	t.fold(ctx, m.Subject(), m.Data(), seq, m.Reply())
	t.lastSeq = max(t.lastSeq, seq)
}

// fillGap folds the engine's messages with stream sequences in [from, to),
// read directly from the stream. They are acknowledged when their own
// delivery comes back, which fold then recognises as already counted.
func (t *term) fillGap(ctx context.Context, from, to uint64) {
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// ahead[i] is the first message of filterSubjects[i] at or after from.
	// The gap is walked in order, so each is read once and kept until it is
	// folded; none left on a subject is kept as a stand-in at to.
	ahead := make([]*jetstream.RawStreamMsg, len(filterSubjects))
	for from < to {
		var next *jetstream.RawStreamMsg
		for i, subj := range filterSubjects {
			if ahead[i] == nil || ahead[i].Sequence < from {
				m, err := t.stream.GetMsg(gctx, from, jetstream.WithGetMsgSubject(subj))
				switch {
				case errors.Is(err, jetstream.ErrMsgNotFound):
					m = &jetstream.RawStreamMsg{Sequence: to}
				case err != nil:
					t.e.opts.Log.Warn("usage: could not read the audit events another consumer was given; they are counted when redelivered unless later events of their app came first",
						"from", from, "to", to, "error", err)
					return
				}
				ahead[i] = m
			}
			if m := ahead[i]; m.Sequence < to && (next == nil || m.Sequence < next.Sequence) {
				next = m
			}
		}
		if next == nil {
			return
		}
		t.e.m.events.WithLabelValues("gap_filled").Inc()
		t.fold(ctx, next.Subject, next.Data, next.Sequence, "")
		from = next.Sequence + 1
	}
}

// wireEvent is the part of an audit CloudEvent the engine reads.
type wireEvent struct {
	ID   string `json:"id"`
	Data struct {
		Time        int64 `json:"time"`
		SrcEndpoint struct {
			IP string `json:"ip"`
		} `json:"src_endpoint"`
	} `json:"data"`
}

// fold counts one message of the stream into its app. reply, when set, is
// acknowledged after the app's next status write.
func (t *term) fold(ctx context.Context, subject string, data []byte, seq uint64, reply string) {
	if seq > t.e.folded.Load() {
		t.e.folded.Store(seq)
		t.e.m.foldedSeq.Set(float64(seq))
	}
	ns, name, typ, ok := parseSubject(subject)
	if !ok {
		t.e.m.events.WithLabelValues("invalid").Inc()
		t.ack(reply)
		return
	}
	a := t.app(ns, name)
	if reply != "" {
		a.pending = append(a.pending, reply)
		t.e.acks.Add(1)
	}
	if seq <= a.rec.Seq {
		t.e.m.events.WithLabelValues("duplicate_sequence").Inc()
		return
	}
	a.rec.Seq, a.dirty = seq, true
	var ev wireEvent
	if err := json.Unmarshal(data, &ev); err != nil || ev.ID == "" {
		t.e.m.events.WithLabelValues("invalid").Inc()
		return
	}
	if a.recent.seen(ev.ID) {
		t.e.m.events.WithLabelValues("duplicate_id").Inc()
		return
	}
	a.recent.add(ev.ID)
	now := t.e.opts.Clock.Now()
	at := time.UnixMilli(ev.Data.Time).UTC()
	if at.After(now) {
		at = now.UTC().Truncate(time.Millisecond)
	}
	if a.rec.Window.Add(now, at, countsOf(typ)) {
		t.e.m.events.WithLabelValues("counted").Inc()
	} else {
		t.e.m.events.WithLabelValues("outside_window").Inc()
	}
	switch typ {
	case audit.InvocationCompleted, audit.InvocationFailed:
		if last := a.rec.LastInvocation; last == nil || at.After(*last) {
			a.rec.LastInvocation = &at
		}
	case audit.LoginFailed:
		t.loginFailed(ctx, a, ev.Data.SrcEndpoint.IP, at, now)
	}
}

func countsOf(t audit.EventType) Counts {
	switch t {
	case audit.LoginSucceeded:
		return Counts{Logins: 1}
	case audit.LoginFailed:
		return Counts{FailedLogins: 1}
	case audit.InvocationCompleted:
		return Counts{Invocations: 1}
	case audit.InvocationFailed:
		return Counts{Invocations: 1, Errors: 1}
	}
	return Counts{}
}

// parseSubject splits servingapp.audit.<ns>.<name>.<type>.
func parseSubject(s string) (ns, name string, t audit.EventType, ok bool) {
	rest, ok := strings.CutPrefix(s, audit.AuditSubjectRoot+".")
	if !ok {
		return "", "", "", false
	}
	ns, rest, ok1 := strings.Cut(rest, ".")
	name, typ, ok2 := strings.Cut(rest, ".")
	t = audit.EventType(typ)
	return ns, name, t, ok1 && ok2 && ns != "" && name != "" && t.Valid()
}

func (t *term) app(ns, name string) *app {
	key := ns + "." + name
	a, ok := t.apps[key]
	if !ok {
		a = newApp(ns, name, t.e.opts.RecentIDs)
		t.apps[key] = a
	}
	return a
}

func (t *term) ack(reply string) {
	if reply == "" {
		return
	}
	if err := t.js.Conn().Publish(reply, ackBody); err != nil {
		t.e.opts.Log.Warn("acknowledge audit message", "error", err)
	}
}

// ackBody acknowledges a JetStream message, as jetstream.Msg.Ack sends it.
// The engine keeps only the reply subjects of messages waiting for their
// acknowledgement, not the messages.
var ackBody = []byte("+ACK")

// spec returns the app's object from the last listing. An app not listed
// yet (created moments ago) makes it list again, at most once a second.
func (t *term) spec(ctx context.Context, a *app) *v1.ServingApp {
	key := a.ref.Key()
	if s, ok := t.specs[key]; ok {
		return s
	}
	if t.e.opts.Clock.Now().Sub(t.triedAt) >= time.Second {
		t.refresh(ctx)
	}
	return t.specs[key]
}

func (t *term) recorder(s *v1.ServingApp) model.Recorder {
	if s == nil || t.e.opts.Recorder == nil {
		return logRecorder{log: t.e.opts.Log}
	}
	return t.e.opts.Recorder.For(s)
}

// refOf is the app's platform reference, with its uid when known.
func refOf(a *app, s *v1.ServingApp) model.Ref {
	r := a.ref
	if s != nil {
		r.UID = s.Metadata.UID
	}
	return r
}

// loginFailed counts a failed login towards lockout and blocks the address
// when it reached the policy's limit.
func (t *term) loginFailed(ctx context.Context, a *app, ip string, at, now time.Time) {
	if t.e.opts.Blocker == nil {
		return
	}
	s := t.spec(ctx, a)
	p, ok := lockoutPolicy(s)
	if !ok {
		return
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return
	}
	until, blocked := a.rec.Lockouts.Failed(p, addr, at, now)
	if !blocked {
		return
	}
	t.e.m.lockout.WithLabelValues("blocked").Inc()
	t.recorder(s).Warning(ctx, "AddressBlocked", fmt.Sprintf("blocked %s until %s after %d failed logins within %s",
		addr.Unmap(), until.Format(time.RFC3339), p.Failures, v1.Duration{Duration: p.Window}))
	a.blocksApplied = false
	t.applyBlocks(ctx, a, s)
}

// applyBlocks gives the platform the app's blocked addresses.
func (t *term) applyBlocks(ctx context.Context, a *app, s *v1.ServingApp) {
	if t.e.opts.Blocker == nil || s == nil {
		a.blocksApplied = true // no platform to tell, or the app is gone
		return
	}
	err := t.e.opts.Blocker.SetBlocked(ctx, refOf(a, s), a.rec.Lockouts.BlockedAddrs())
	if errors.Is(err, model.ErrLockoutBudget) {
		// Some addresses are blocked and the rest do not fit: asking again
		// with the same list gets the same answer, so say it once (until
		// the list changes) instead of retrying every tick.
		t.e.m.failures.WithLabelValues("set_blocked_budget").Inc()
		t.recorder(s).Warning(ctx, "LockoutIncomplete", err.Error())
		a.blocksApplied = true
		return
	}
	if err != nil {
		t.e.m.failures.WithLabelValues("set_blocked").Inc()
		t.e.opts.Log.Warn("set blocked addresses; retrying", "app", a.ref.String(), "error", err)
		a.blocksApplied = false
		return
	}
	a.blocksApplied = true
}

// tick does the periodic work: list apps, lift blocks, autoscale, and
// flush the apps whose status is due.
func (t *term) tick(ctx context.Context) error {
	o := t.e.opts
	now := o.Clock.Now()
	if now.Sub(t.specsAt) >= o.SpecRefresh && now.Sub(t.triedAt) >= time.Second {
		t.refresh(ctx)
	}
	for key, a := range t.apps {
		a.rec.Window.Advance(now)
		s := t.specs[key]
		var p *LockoutPolicy
		if lp, ok := lockoutPolicy(s); ok && o.Blocker != nil {
			p = &lp
		}
		if lifted := a.rec.Lockouts.Expire(p, now); len(lifted) > 0 {
			a.dirty, a.blocksApplied = true, false
			for _, addr := range lifted {
				t.e.m.lockout.WithLabelValues("unblocked").Inc()
				t.recorder(s).Event(ctx, "AddressUnblocked", fmt.Sprintf("unblocked %s: its lockout ended", addr))
			}
		}
		if !a.blocksApplied {
			t.applyBlocks(ctx, a, s)
		}
	}
	if !now.Before(t.nextScale) {
		t.nextScale = now.Add(o.ScaleInterval)
		for _, s := range t.specs {
			t.autoscale(ctx, s, now)
		}
	}
	var pending int64
	for _, a := range t.apps {
		if err := t.maybeFlush(ctx, a, now); err != nil {
			return err
		}
		pending += int64(len(a.pending))
	}
	t.e.acks.Store(pending)
	t.e.m.pendingAcks.Set(float64(pending))
	return nil
}

// autoscale evaluates one app with spec.autoscaling and, when the desired
// count changes, sets it through the platform and records the decision.
func (t *term) autoscale(ctx context.Context, s *v1.ServingApp, now time.Time) {
	o := t.e.opts
	p, ok := scalePolicy(s)
	if !ok || o.Scaler == nil || s.Metadata.DeletionTimestamp != nil {
		return
	}
	a := t.app(s.Metadata.Namespace, s.Metadata.Name)
	if a.rec.Scale == nil {
		start := s.Status.Replicas.Desired
		if start == 0 {
			start = p.Min
		}
		a.rec.Scale, a.dirty = &ScaleState{Desired: start}, true
	}
	d := Decide(p, *a.rec.Scale, a.rec.Window.InvocationsPerMinute(now), now)
	rec := t.recorder(s)
	ref := refOf(a, s)
	if d.To != d.From || !a.scaleAsserted {
		if err := o.Scaler.SetDesiredCount(ctx, ref, d.To); err != nil {
			t.e.m.failures.WithLabelValues("set_desired_count").Inc()
			if !a.scaleFailing { // one event per failing streak; the log has every attempt
				rec.Warning(ctx, "ScaleFailed", fmt.Sprintf("setting the desired count to %d failed (retrying every %s): %v; %s", d.To, o.ScaleInterval, err, d.Message()))
			}
			o.Log.Warn("set desired count; retrying", "app", ref.String(), "desired", d.To, "error", err)
			a.scaleFailing = true
			return
		}
		a.scaleAsserted, a.scaleFailing = true, false
		if o.Requeue != nil {
			o.Requeue(ref)
		}
	}
	if d.Next != *a.rec.Scale {
		a.rec.Scale, a.dirty = &d.Next, true
	}
	if d.Action != "" {
		t.e.m.scale.WithLabelValues(d.Action).Inc()
		rec.Event(ctx, d.Action, d.Message())
	}
}

// maybeFlush flushes a when it has something to store, write or
// acknowledge and its last status write is StatusInterval ago.
func (t *term) maybeFlush(ctx context.Context, a *app, now time.Time) error {
	due := a.dirty || len(a.pending) > 0 || !a.wroteOnce || !usageEqual(a.usage(), a.written)
	if !due || now.Sub(a.lastWrite) < t.e.opts.StatusInterval {
		return nil
	}
	return t.flush(ctx, a, now)
}

// flush stores the app's record, writes its status.usage, and then
// acknowledges the messages folded into them. A failed write leaves the
// messages unacknowledged for the next tick; a record changed by someone
// else ends the term.
func (t *term) flush(ctx context.Context, a *app, now time.Time) error {
	if err := t.store(ctx, a); err != nil {
		if errors.Is(err, errRecordConflict) {
			return err
		}
		t.e.m.failures.WithLabelValues("store_state").Inc()
		t.e.opts.Log.Warn("store usage record; retrying", "app", a.ref.String(), "error", err)
		return nil
	}
	u := a.usage()
	if !a.wroteOnce || !usageEqual(u, a.written) {
		_, err := t.e.opts.Store.PatchStatus(ctx, a.ref.Namespace, a.ref.Name, func(s *v1.ServingAppStatus) error {
			s.Usage = u
			return nil
		})
		switch {
		case err == nil:
			t.e.m.statusWrites.Inc()
		case errors.Is(err, store.ErrNotFound):
			// The app is gone (or not created yet): nothing to write.
		default:
			t.e.m.failures.WithLabelValues("write_status").Inc()
			t.e.opts.Log.Warn("write status.usage; retrying", "app", a.ref.String(), "error", err)
			return nil
		}
		a.written, a.wroteOnce = u, true
	}
	a.lastWrite = now
	for _, r := range a.pending {
		t.ack(r)
	}
	t.e.acks.Add(-int64(len(a.pending)))
	if cap(a.pending) > 1<<16 {
		a.pending = nil
	} else {
		a.pending = a.pending[:0]
	}
	return nil
}

// errRecordConflict: another writer changed a usage record, so this term's
// view of it is stale.
var errRecordConflict = errors.New("usage record changed by another writer")

// store writes the app's record if it changed, with compare-and-set.
func (t *term) store(ctx context.Context, a *app) error {
	if !a.dirty {
		return nil
	}
	b, err := a.encode()
	if err != nil {
		return err
	}
	key := a.ref.Key()
	var rev uint64
	if a.rev == 0 {
		rev, err = t.kv.Create(ctx, key, b)
	} else {
		rev, err = t.kv.Update(ctx, key, b, a.rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("store usage record of %s: %w", a.ref, errRecordConflict)
	}
	if err != nil {
		return fmt.Errorf("store usage record of %s: %w", a.ref, err)
	}
	a.rev, a.dirty = rev, false
	return nil
}

// refresh lists the apps, ties each listed app's record to its incarnation
// (adopt), forgets the records of apps that are gone and idle, and reports
// how full the audit stream is.
func (t *term) refresh(ctx context.Context) {
	now := t.e.opts.Clock.Now()
	t.triedAt = now
	apps, err := t.e.opts.Store.List(ctx, store.ListOptions{})
	if err != nil {
		t.e.m.failures.WithLabelValues("list_apps").Inc()
		t.e.opts.Log.Warn("list apps for usage; keeping the last list", "error", err)
		return
	}
	specs := make(map[string]*v1.ServingApp, len(apps))
	for _, s := range apps {
		specs[s.Key()] = s
	}
	t.specs, t.specsAt = specs, now
	for key, a := range t.apps {
		if s, ok := specs[key]; ok {
			a.adopt(s)
			continue
		}
		if !a.idle() {
			continue
		}
		if a.rev != 0 {
			if err := t.kv.Purge(ctx, key, jetstream.LastRevision(a.rev)); err != nil {
				continue // changed meanwhile, or unreachable: try again next time
			}
		}
		delete(t.apps, key)
	}
	t.reportStreamFill(ctx)
}

// reportStreamFill sets the stream size gauges and logs when the audit
// stream nears or reaches MaxBytes, where it refuses new events.
func (t *term) reportStreamFill(ctx context.Context) {
	info, err := t.stream.Info(ctx)
	if err != nil {
		return
	}
	used, limit := info.State.Bytes, info.Config.MaxBytes
	t.e.m.streamBytes.Set(float64(used))
	t.e.m.streamMaxBytes.Set(float64(limit))
	level := 0
	if limit > 0 && info.State.Msgs > 0 {
		// Full: an event of twice the average size would not fit any more.
		avg := used / info.State.Msgs
		switch {
		case used+2*avg > uint64(limit):
			level = 2
		case float64(used) >= 0.9*float64(limit):
			level = 1
		}
	}
	if level == t.fill {
		return
	}
	log := t.e.opts.Log
	switch level {
	case 2:
		log.Error("audit stream is full: it refuses new audit events (web apps keep them in their outboxes); raise streams.auditMaxBytes",
			"stream", audit.AuditStream, "bytes", used, "maxBytes", limit)
	case 1:
		log.Warn("audit stream is over 90% of its MaxBytes; at MaxBytes it refuses new audit events",
			"stream", audit.AuditStream, "bytes", used, "maxBytes", limit)
	default:
		log.Info("audit stream has room again", "stream", audit.AuditStream, "bytes", used, "maxBytes", limit)
	}
	t.fill = level
}

// shutdown stores what changed, without writing status or acknowledging:
// the next term resumes from the records.
func (t *term) shutdown(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, a := range t.apps {
		if err := t.store(sctx, a); err != nil {
			t.e.opts.Log.Warn("store usage record at shutdown", "app", a.ref.String(), "error", err)
		}
	}
}

// logRecorder logs events of apps the engine has no object for.
type logRecorder struct{ log *slog.Logger }

func (l logRecorder) Event(ctx context.Context, reason, message string) {
	l.log.InfoContext(ctx, "event", "reason", reason, "message", message)
}

func (l logRecorder) Warning(ctx context.Context, reason, message string) {
	l.log.WarnContext(ctx, "event", "reason", reason, "message", message)
}
