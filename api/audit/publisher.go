package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors Publish returns when it could not keep an event.
var (
	// ErrOutboxFull: NATS is unreachable (or slower than the event rate) and
	// the outbox reached its bound; the event was dropped.
	ErrOutboxFull = errors.New("audit outbox is full: event dropped")
	// ErrPublisherClosed: Publish was called after Close.
	ErrPublisherClosed = errors.New("audit publisher is closed: event dropped")
)

// Defaults of PublisherConfig.
const (
	DefaultOutboxMaxBytes = 64 << 20
	DefaultMemoryQueue    = 1024
	DefaultPublishTimeout = 2 * time.Second
	DefaultRetryMin       = 50 * time.Millisecond
	DefaultRetryMax       = 2 * time.Second
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// JetStream publishes the events. Nil keeps every event in the outbox,
	// where a later publisher with a connection and the same OutboxDir finds
	// and sends them.
	JetStream jetstream.JetStream
	// OutboxDir is the outbox directory, required and exclusive to this
	// publisher (it is locked while the publisher runs).
	OutboxDir string
	// OutboxMaxBytes bounds the outbox on disk; zero means
	// DefaultOutboxMaxBytes. At about 1 KiB an event, the default holds some
	// 60,000 events.
	OutboxMaxBytes int64
	// SegmentBytes is the size of one outbox file; zero means 4 MiB.
	SegmentBytes int64
	// MemoryQueue is how many events wait in memory while NATS keeps up;
	// zero means DefaultMemoryQueue. Beyond it events go to the outbox.
	MemoryQueue int
	// PublishTimeout bounds one publish attempt; zero means DefaultPublishTimeout.
	PublishTimeout time.Duration
	// RetryMin and RetryMax bound the exponential wait between attempts while
	// NATS is unreachable; zero means DefaultRetryMin and DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// Stream is created, if missing, before the first publish and after
	// failures; nil means AuditStreamConfig(StreamOptions{}).
	Stream *jetstream.StreamConfig
	// Logger receives drops and outages; nil discards them. Events and their
	// contents are never logged, only their ids and types.
	Logger *slog.Logger
	// Registerer receives the publisher's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Publisher publishes audit events to JetStream in the order they were
// given, with Nats-Msg-Id set to the event id, without ever making its
// caller wait on the network.
//
// Publish puts the event in a queue and returns; one goroutine sends the
// queue's head in order (up to 256 events in flight on one connection, each
// acknowledged by the stream before it leaves the queue), so the stream
// stores events in order.
// While NATS keeps up, the queue lives in memory (MemoryQueue events). When
// a publish fails or the connection is down, the whole queue moves to the
// on-disk outbox and new events are appended there until it has been
// replayed, so events survive a NATS outage and a restart of the process. A
// retried event that NATS had in fact stored is dropped by JetStream's
// duplicate window (2 minutes on SERVINGAPP_AUDIT).
//
// When the outbox is full, new events are dropped and the older ones kept:
// the trail keeps its order and loses its end rather than holes in the
// middle, and requests are never refused because of audit. Every drop is
// counted in servingapp_audit_events_dropped_total{reason="outbox_full"} and
// logged at error level (the first drop at once, then at most every 10
// seconds with a count).
type Publisher struct {
	js        jetstream.JetStream
	stream    jetstream.StreamConfig
	memMax    int
	timeout   time.Duration
	retryMin  time.Duration
	retryMax  time.Duration
	log       *slog.Logger
	metrics   publisherMetrics
	runCtx    context.Context
	cancelRun context.CancelFunc
	wake      chan struct{}
	done      chan struct{}

	mu       sync.Mutex
	ob       *outbox
	mem      []message
	memHead  int
	healthy  bool
	closed   bool
	idle     chan struct{} // closed while nothing is pending
	dropLog  time.Time
	dropSeen int
}

type publisherMetrics struct {
	published prometheus.Counter
	failures  prometheus.Counter
	spilled   prometheus.Counter
	dropped   *prometheus.CounterVec
}

// NewPublisher opens the outbox (sending what an earlier run left there
// first) and starts the sending goroutine. Close it to stop.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.OutboxDir == "" {
		return nil, errors.New("start audit publisher: an outbox directory is required")
	}
	if cfg.OutboxMaxBytes <= 0 {
		cfg.OutboxMaxBytes = DefaultOutboxMaxBytes
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = defaultSegBytes
	}
	if cfg.MemoryQueue <= 0 {
		cfg.MemoryQueue = DefaultMemoryQueue
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(DefaultRetryMax, cfg.RetryMin)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stream := AuditStreamConfig(StreamOptions{})
	if cfg.Stream != nil {
		stream = *cfg.Stream
	}
	ob, err := openOutbox(cfg.OutboxDir, cfg.OutboxMaxBytes, cfg.SegmentBytes, log)
	if err != nil {
		return nil, fmt.Errorf("start audit publisher: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p := &Publisher{
		js:        cfg.JetStream,
		stream:    stream,
		memMax:    cfg.MemoryQueue,
		timeout:   cfg.PublishTimeout,
		retryMin:  cfg.RetryMin,
		retryMax:  cfg.RetryMax,
		log:       log,
		runCtx:    runCtx,
		cancelRun: cancel,
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		ob:        ob,
		healthy:   cfg.JetStream != nil,
		idle:      make(chan struct{}),
	}
	if ob.count == 0 {
		close(p.idle)
	}
	if err := p.registerMetrics(cfg.Registerer); err != nil {
		cancel()
		ob.close()
		return nil, fmt.Errorf("start audit publisher: %w", err)
	}
	go p.run()
	return p, nil
}

func (p *Publisher) registerMetrics(reg prometheus.Registerer) error {
	p.metrics = publisherMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "servingapp_audit_events_published_total",
			Help: "Audit events stored by JetStream.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "servingapp_audit_publish_failures_total",
			Help: "Failed attempts to publish an audit event (it is retried).",
		}),
		spilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "servingapp_audit_outbox_writes_total",
			Help: "Audit events written to the on-disk outbox because NATS was unreachable or behind.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_audit_events_dropped_total",
			Help: "Audit events lost, by reason: outbox_full, closed, write_error.",
		}, []string{"reason"}),
	}
	if reg == nil {
		return nil
	}
	for _, r := range []string{"outbox_full", "closed", "write_error"} {
		p.metrics.dropped.WithLabelValues(r)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	for _, c := range []prometheus.Collector{
		p.metrics.published, p.metrics.failures, p.metrics.spilled, p.metrics.dropped,
		gauge("servingapp_audit_outbox_events", "Audit events waiting in the on-disk outbox.", func() float64 {
			d, _ := p.Depth()
			return float64(d)
		}),
		gauge("servingapp_audit_outbox_bytes", "Bytes of audit events waiting in the on-disk outbox.", func() float64 {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.ob == nil {
				return 0
			}
			return float64(p.ob.bytes)
		}),
		gauge("servingapp_audit_queue_events", "Audit events waiting in memory.", func() float64 {
			_, m := p.Depth()
			return float64(m)
		}),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register audit metrics: %w", err)
		}
	}
	return nil
}

// Publish queues ev as an event of type t and returns its id at once. The id
// is ev.Metadata.UID when set, otherwise a new random one. It returns an
// error only when the event was dropped (ErrOutboxFull, ErrPublisherClosed)
// or could not be encoded; the publisher has logged and counted it already.
func (p *Publisher) Publish(t EventType, ev AuditEvent) (string, error) {
	id := ev.Metadata.UID
	if id == "" {
		id = NewEventID()
	}
	data, err := EncodeAuditEvent(id, t, ev)
	if err != nil {
		return id, err
	}
	app := ev.App()
	m := message{subject: AuditSubject(app.Namespace, app.Name, t), id: id, data: data}

	p.mu.Lock()
	err = p.enqueueLocked(m, t)
	p.mu.Unlock()
	if err == nil {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return id, err
}

// enqueueLocked appends m to the queue: in memory when NATS is keeping up and
// the outbox is empty, otherwise in the outbox (after moving the memory part
// there, so order holds).
func (p *Publisher) enqueueLocked(m message, t EventType) error {
	if p.closed {
		p.metrics.dropped.WithLabelValues("closed").Inc()
		p.log.Error("audit event dropped: publisher closed", "event_id", m.id, "event_type", string(t))
		return ErrPublisherClosed
	}
	wasIdle := p.pendingLocked() == 0
	if p.healthy && p.ob.count == 0 && len(p.mem)-p.memHead < p.memMax {
		p.mem = append(p.mem, m)
	} else {
		p.spillLocked()
		switch {
		case len(p.mem) > p.memHead && len(p.mem)-p.memHead < p.memMax:
			// The outbox is full and the memory part could not move; the
			// memory queue takes the overflow while it has room.
			p.mem = append(p.mem, m)
		case len(p.mem) > p.memHead:
			return p.dropLocked(m, t, ErrOutboxFull)
		default:
			if err := p.ob.append(m); err != nil {
				if errors.Is(err, errOutboxFull) {
					return p.dropLocked(m, t, ErrOutboxFull)
				}
				p.metrics.dropped.WithLabelValues("write_error").Inc()
				p.log.Error("audit event dropped: outbox write failed", "event_id", m.id, "event_type", string(t), "err", err)
				return fmt.Errorf("queue audit event %s: %w", m.id, err)
			}
			p.metrics.spilled.Inc()
		}
	}
	if wasIdle {
		p.idle = make(chan struct{})
	}
	return nil
}

// dropLocked counts and logs a dropped event, the first at once and then at
// most every 10 seconds.
func (p *Publisher) dropLocked(m message, t EventType, err error) error {
	p.metrics.dropped.WithLabelValues("outbox_full").Inc()
	p.dropSeen++
	if now := time.Now(); p.dropLog.IsZero() || now.Sub(p.dropLog) >= 10*time.Second {
		p.log.Error("audit outbox full: dropping new audit events until NATS takes the backlog",
			"dropped_since_last_report", p.dropSeen, "last_event_id", m.id, "last_event_type", string(t),
			"outbox_events", p.ob.count, "outbox_bytes", p.ob.bytes)
		p.dropLog, p.dropSeen = now, 0
	}
	return err
}

// spillLocked moves the memory queue to the end of the outbox, as much as fits.
func (p *Publisher) spillLocked() {
	for p.memHead < len(p.mem) {
		if err := p.ob.append(p.mem[p.memHead]); err != nil {
			if !errors.Is(err, errOutboxFull) {
				p.log.Error("audit outbox write failed; events stay in memory", "err", err)
			}
			break
		}
		p.metrics.spilled.Inc()
		p.mem[p.memHead] = message{}
		p.memHead++
	}
	p.compactLocked()
}

func (p *Publisher) compactLocked() {
	if p.memHead == len(p.mem) {
		p.mem, p.memHead = p.mem[:0], 0
	} else if p.memHead > 64 && p.memHead > len(p.mem)/2 {
		n := copy(p.mem, p.mem[p.memHead:])
		clear(p.mem[n:])
		p.mem, p.memHead = p.mem[:n], 0
	}
}

func (p *Publisher) pendingLocked() int { return p.ob.count + len(p.mem) - p.memHead }

// popLocked removes the head after it was published.
func (p *Publisher) popLocked(id string) {
	if p.ob.count > 0 {
		if m, ok, _ := p.ob.peek(); ok && m.id == id {
			if err := p.ob.pop(); err != nil {
				p.log.Error("advance audit outbox", "err", err)
			}
		}
	} else if p.memHead < len(p.mem) && p.mem[p.memHead].id == id {
		p.mem[p.memHead] = message{}
		p.memHead++
		p.compactLocked()
	}
	if p.pendingLocked() == 0 {
		select {
		case <-p.idle:
		default:
			close(p.idle)
		}
	}
}

// connectionCheck is how often a publish awaiting acks looks at the
// connection's status.
const connectionCheck = 20 * time.Millisecond

// maxBatch bounds how many events from the memory queue are in flight at
// once: enough to keep the stream busy, well under the JetStream context's
// limit of pending asynchronous publishes (4000 by default).
const maxBatch = 256

// batchLocked returns the oldest pending messages, in order: the outbox's
// head alone (the outbox is read one event at a time), or up to maxBatch
// from the memory queue.
func (p *Publisher) batchLocked() ([]message, error) {
	if p.ob.count > 0 {
		m, ok, err := p.ob.peek()
		if err != nil || !ok {
			return nil, err
		}
		return []message{m}, nil
	}
	n := min(len(p.mem)-p.memHead, maxBatch)
	return slices.Clone(p.mem[p.memHead : p.memHead+n]), nil
}

// run is the sending goroutine.
func (p *Publisher) run() {
	defer close(p.done)
	ensured := false
	failures := 0
	for {
		p.mu.Lock()
		batch, err := p.batchLocked()
		if err != nil {
			p.discardUnreadableLocked(err)
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
		if len(batch) == 0 || p.js == nil {
			select {
			case <-p.wake:
				continue
			case <-p.runCtx.Done():
				return
			}
		}
		if !ensured {
			ensured = p.ensureStream() == nil
		}
		stored, err := p.publish(batch)
		p.mu.Lock()
		for _, m := range batch[:stored] {
			p.popLocked(m.id)
		}
		if err == nil {
			p.healthy = true
		} else {
			p.healthy = false
			p.spillLocked()
		}
		p.mu.Unlock()
		p.metrics.published.Add(float64(stored))
		if err == nil {
			if failures > 0 {
				p.log.Info("audit events flow to NATS again", "failed_attempts", failures)
			}
			failures = 0
			continue
		}
		if p.runCtx.Err() != nil {
			return
		}
		p.metrics.failures.Inc()
		failures++
		ensured = false
		if failures == 1 {
			p.log.Warn("cannot publish audit events; keeping them in the outbox until NATS is back", "event_id", batch[stored].id, "err", err)
		}
		wait := p.retryMin << min(failures-1, 16)
		if wait > p.retryMax || wait <= 0 {
			wait = p.retryMax
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.runCtx.Done():
			t.Stop()
			return
		}
	}
}

// discardUnreadableLocked drops an outbox that cannot be read back (its files
// were damaged while the process ran), so the publisher does not wedge.
func (p *Publisher) discardUnreadableLocked(err error) {
	n := p.ob.count
	p.metrics.dropped.WithLabelValues("write_error").Add(float64(n))
	p.log.Error("audit outbox unreadable; discarding it", "events", n, "err", err)
	if rerr := p.ob.reset(); rerr != nil {
		p.log.Error("reset audit outbox", "err", rerr)
	}
}

func (p *Publisher) ensureStream() error {
	ctx, cancel := context.WithTimeout(p.runCtx, p.timeout)
	defer cancel()
	if err := EnsureStream(ctx, p.js, p.stream); err != nil {
		return err
	}
	return nil
}

// publish sends batch in order and returns how many of its first events the
// stream stored, with the error that stopped it. The events go out as
// asynchronous publishes on one connection, which the server stores in the
// order sent, so the trail keeps its order; the acks are awaited in that
// order too, and only the stored prefix leaves the queue. Events after a
// failure may have been stored as well: they are sent again and the stream's
// duplicate window (Nats-Msg-Id) keeps one copy. So the order holds except
// around a failure, where the failed event can land after ones sent behind
// it; nothing is lost or stored twice.
func (p *Publisher) publish(batch []message) (int, error) {
	nc := p.js.Conn()
	if nc != nil && nc.Status() != nats.CONNECTED {
		return 0, fmt.Errorf("publish audit event %s: NATS connection is %s", batch[0].id, nc.Status())
	}
	ctx, cancel := context.WithTimeout(p.runCtx, p.timeout)
	defer cancel()
	acks := make([]jetstream.PubAckFuture, 0, len(batch))
	var sendErr error
	for _, m := range batch {
		f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: m.subject, Data: m.data}, jetstream.WithMsgID(m.id))
		if err != nil {
			sendErr = fmt.Errorf("publish audit event %s: %w", m.id, err)
			break
		}
		acks = append(acks, f)
	}
	// A connection lost while acks are awaited leaves them pending until the
	// timeout; checking its status now and then moves the queue to the
	// outbox within a tick of the outage instead.
	tick := time.NewTicker(connectionCheck)
	defer tick.Stop()
	for i, f := range acks {
		for waiting := true; waiting; {
			select {
			case <-f.Ok():
				waiting = false
			case err := <-f.Err():
				return i, fmt.Errorf("publish audit event %s: %w", batch[i].id, err)
			case <-ctx.Done():
				return i, fmt.Errorf("publish audit event %s: %w", batch[i].id, ctx.Err())
			case <-tick.C:
				if nc != nil && nc.Status() != nats.CONNECTED {
					return i, fmt.Errorf("publish audit event %s: NATS connection is %s", batch[i].id, nc.Status())
				}
			}
		}
	}
	return len(acks), sendErr
}

// Depth returns how many events wait in the outbox on disk and in memory.
func (p *Publisher) Depth() (outbox, memory int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ob == nil {
		return 0, 0
	}
	return p.ob.count, len(p.mem) - p.memHead
}

// Flush waits until every queued event has been published, or ctx ends.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		out, mem := p.Depth()
		return fmt.Errorf("flush audit events (%d in the outbox, %d in memory): %w", out, mem, ctx.Err())
	}
}

// Close stops accepting events, keeps publishing while NATS takes them
// until the queue is empty or ctx ends, then writes what is left in memory
// to the outbox (for the next run) and releases it. While NATS is
// unreachable it does not wait: the events are in the outbox already.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	var flushErr error
	if p.js != nil {
		flushErr = p.drain(ctx)
	}
	p.cancelRun()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spillLocked()
	lost := len(p.mem) - p.memHead
	left := p.ob.count
	p.ob.close()
	if lost > 0 {
		p.metrics.dropped.WithLabelValues("outbox_full").Add(float64(lost))
		p.log.Error("audit events lost at shutdown: the outbox is full", "events", lost)
		return fmt.Errorf("close audit publisher: %d events lost, the outbox is full", lost)
	}
	if left > 0 {
		p.log.Warn("audit events left in the outbox for the next start", "events", left)
	}
	if flushErr != nil {
		return fmt.Errorf("close audit publisher: %d events left in the outbox: %w", left, flushErr)
	}
	return nil
}

// drain waits until the queue is empty, NATS turns out unreachable, or ctx ends.
func (p *Publisher) drain(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		p.mu.Lock()
		idle, healthy := p.idle, p.healthy
		p.mu.Unlock()
		if !healthy {
			return errors.New("NATS is unreachable")
		}
		select {
		case <-idle:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
