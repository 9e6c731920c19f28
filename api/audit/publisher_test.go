package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/natstest"
)

var testApp = audit.AppRef{Namespace: "analytics", Name: "summarizer"}

// event returns the i-th test event, a logout of user i.
func event(i int) (audit.EventType, audit.AuditEvent) {
	ev := audit.NewAuditEvent(audit.Logout, testApp, time.UnixMilli(1_700_000_000_000+int64(i)))
	ev.User = &audit.User{UID: fmt.Sprintf("user-%d", i), EmailAddr: fmt.Sprintf("u%d@example.com", i)}
	return audit.Logout, ev
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newPublisher(t *testing.T, cfg audit.PublisherConfig) *audit.Publisher {
	t.Helper()
	if cfg.OutboxDir == "" {
		cfg.OutboxDir = t.TempDir()
	}
	p, err := audit.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func readAll(t *testing.T, js jetstream.JetStream) []audit.StoredAuditEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := audit.ReadAuditEvents(ctx, js, audit.AuditAppSubjects(testApp.Namespace, testApp.Name), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkNoConsumers(t, js, audit.AuditStream)
	return evs
}

// checkNoConsumers fails when stream has consumers: reading it must leave
// it as it was.
func checkNoConsumers(t *testing.T, js jetstream.JetStream, stream string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("after reading, %d consumers are left on %s", info.State.Consumers, stream)
	}
}

// checkExactlyOnceInOrder asserts the stream holds exactly the users
// 0..n-1, once each, in order, with Nats-Msg-Id equal to the event id.
func checkExactlyOnceInOrder(t *testing.T, evs []audit.StoredAuditEvent, n int) {
	t.Helper()
	if len(evs) != n {
		t.Fatalf("stream holds %d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		if want := fmt.Sprintf("user-%d", i); e.Event.User == nil || e.Event.User.UID != want {
			t.Fatalf("event %d is %+v, want %s (order or duplicates broken)", i, e.Event.User, want)
		}
		if e.MsgID == "" || e.MsgID != e.Envelope.ID || e.Event.Metadata.UID != e.Envelope.ID {
			t.Fatalf("event %d: Nats-Msg-Id %q, CloudEvent id %q, metadata.uid %q", i, e.MsgID, e.Envelope.ID, e.Event.Metadata.UID)
		}
		if want := audit.AuditSubject(testApp.Namespace, testApp.Name, audit.Logout); e.Subject != want {
			t.Fatalf("subject %q, want %q", e.Subject, want)
		}
	}
}

func TestPublisherStoresEventsInOrderAndCreatesTheStream(t *testing.T) {
	url, _ := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	p := newPublisher(t, audit.PublisherConfig{JetStream: js})
	for i := range 300 {
		if _, err := p.Publish(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, readAll(t, js), 300)
	s, err := js.Stream(ctx, audit.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; !cfg.DenyDelete || !cfg.DenyPurge {
		t.Fatalf("stream created without delete/purge protection: %+v", cfg)
	}
}

func TestPublisherReplaysOutboxAfterNATSOutageExactlyOnce(t *testing.T) {
	url, srv := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	reg := prometheus.NewRegistry()
	p := newPublisher(t, audit.PublisherConfig{JetStream: js, Registerer: reg, RetryMax: 100 * time.Millisecond, PublishTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 50 {
		if _, err := p.Publish(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := 50; i < 150; i++ {
		if _, err := p.Publish(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	for {
		if out, _ := p.Depth(); out > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("events never reached the outbox while NATS was down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Restart()
	for i := 150; i < 200; i++ {
		if _, err := p.Publish(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, readAll(t, js), 200)
	if got := (counterValue(t, reg, "servingapp_audit_outbox_writes_total")); got == 0 {
		t.Fatal("outbox writes not counted")
	}
}

func TestPublisherWithoutNATSLeavesEventsForTheNextRun(t *testing.T) {
	dir := t.TempDir()
	p, err := audit.NewPublisher(audit.PublisherConfig{OutboxDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := p.Publish(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	if out, mem := p.Depth(); out != 10 || mem != 0 {
		t.Fatalf("depth = %d on disk, %d in memory; want 10, 0", out, mem)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	url, _ := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	p2 := newPublisher(t, audit.PublisherConfig{JetStream: js, OutboxDir: dir})
	if _, err := p2.Publish(event(10)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, readAll(t, js), 11)
}

func TestPublisherDropsNewEventsWhenTheOutboxIsFull(t *testing.T) {
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	_, ev := event(0)
	one, err := audit.EncodeAuditEvent(audit.NewEventID(), audit.Logout, ev)
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, audit.PublisherConfig{
		OutboxMaxBytes: int64(3*len(one) + 3*200), // three events and some
		Registerer:     reg,
		Logger:         slog.New(slog.NewJSONHandler(logs, nil)),
	})
	var kept, dropped int
	for i := range 10 {
		_, err := p.Publish(event(i))
		switch {
		case err == nil:
			kept++
		case errors.Is(err, audit.ErrOutboxFull):
			dropped++
		default:
			t.Fatal(err)
		}
	}
	if kept != 3 || dropped != 7 {
		t.Fatalf("kept %d, dropped %d; want 3 and 7", kept, dropped)
	}
	if got := (counterValue(t, reg, `servingapp_audit_events_dropped_total{reason="outbox_full"}`)); got != 7 {
		t.Fatalf("dropped counter = %v, want 7", got)
	}
	if !strings.Contains(logs.String(), "audit outbox full") {
		t.Fatalf("drop not logged: %s", logs.String())
	}
}

// counterValue finds a counter by name (and optional {label="value"}) in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, spec string) float64 {
	t.Helper()
	name, label, _ := strings.Cut(spec, "{")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if label == fmt.Sprintf("%s=%q}", lp.GetName(), lp.GetValue()) {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("metric %s not found", spec)
	return 0
}

// BenchmarkPublisher measures audit publishing: Publish (what a request
// pays) and the end-to-end rate until JetStream has stored every event,
// with NATS embedded in the same process; and, without NATS, appending to
// the on-disk outbox.
func BenchmarkPublisher(b *testing.B) {
	b.Run("jetstream", func(b *testing.B) {
		url, _ := natstest.Start(b)
		_, js := natstest.Connect(b, url)
		p, err := audit.NewPublisher(audit.PublisherConfig{JetStream: js, OutboxDir: b.TempDir(), MemoryQueue: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = p.Close(context.Background()) }()
		_, ev := event(0)
		if _, err := p.Publish(audit.Logout, ev); err != nil { // creates the stream
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if _, err := p.Publish(audit.Logout, ev); err != nil {
				b.Fatal(err)
			}
		}
		queued := time.Since(start)
		if err := p.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		stored := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(queued.Nanoseconds())/float64(b.N), "ns/Publish")
		b.ReportMetric(float64(b.N)/stored.Seconds(), "stored-events/s")
	})
	b.Run("outbox-only", func(b *testing.B) {
		p, err := audit.NewPublisher(audit.PublisherConfig{OutboxDir: b.TempDir(), OutboxMaxBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = p.Close(context.Background()) }()
		_, ev := event(0)
		b.ResetTimer()
		for range b.N {
			if _, err := p.Publish(audit.Logout, ev); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

func TestPublisherClosedDuringAnOutageHandsEventsToTheNextRun(t *testing.T) {
	url, srv := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	dir := t.TempDir()
	p, err := audit.NewPublisher(audit.PublisherConfig{JetStream: js, OutboxDir: dir, PublishTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.Publish(event(0)); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := 1; i < 20; i++ {
		if _, err := p.Publish(event(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Close does not wait for NATS to come back (ctx would allow 30s).
	if err := p.Close(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("close during the outage: %v (ctx: %v), want an error naming the events left", err, ctx.Err())
	}
	srv.Restart()
	p2 := newPublisher(t, audit.PublisherConfig{JetStream: js, OutboxDir: dir})
	if err := p2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, readAll(t, js), 20)
}
