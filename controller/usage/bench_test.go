package usage

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/natstest"
)

// BenchmarkAuditIngest measures the audit pipeline end to end on file
// storage: web app publishers (audit.Publisher: encode, queue, publish with
// Nats-Msg-Id in order, up to 256 in flight, each acknowledged by the
// stream before it leaves the queue) →
// SERVINGAPP_AUDIT → the engine's durable consumer counting every event.
// One op is one event; events/s is the rate from the first Publish until
// the engine has read the last event. Run with a fixed count, e.g.
//
//	go test -run '^$' -bench AuditIngest -benchtime 200000x ./controller/usage/
//
// The async case replaces the web apps' publishers by one bare client that
// pipelines asynchronous publishes (4096 in flight, still with Nats-Msg-Id,
// no queue or outbox): what the stream and the engine sustain on their own.
func BenchmarkAuditIngest(b *testing.B) {
	for _, publishers := range []int{1, 4} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) { benchmarkIngest(b, publishers) })
	}
	b.Run("async", func(b *testing.B) { benchmarkIngest(b, 0) })
}

// benchmarkIngest runs the pipeline with that many audit.Publishers, or
// with one pipelining asynchronous publisher when publishers is 0.
func benchmarkIngest(b *testing.B, publishers int) {
	url, _ := natstest.Start(b)
	_, js := natstest.Connect(b, url)
	ctx := context.Background()
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{}); err != nil {
		b.Fatal(err)
	}
	st, err := store.New(ctx, js, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	const apps = 8
	for i := range apps {
		a := &v1.ServingApp{APIVersion: v1.APIVersion, Kind: v1.Kind, Metadata: v1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("app%d", i)},
			Spec: v1.ServingAppSpec{Allowlist: []string{"0.0.0.0/0"},
				Databricks: v1.Databricks{Host: "https://dbc-1234abcd.cloud.databricks.com", ServingEndpoint: "endpoint"}}}
		if _, _, err := st.Apply(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
	_, ejs := natstest.Connect(b, url)
	e, err := New(Options{JetStream: ejs, Store: st, Clock: clock.Real{}})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(runCtx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	ajs, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	pubs := make([]*audit.Publisher, publishers)
	for i := range pubs {
		_, pjs := natstest.Connect(b, url)
		if pubs[i], err = audit.NewPublisher(audit.PublisherConfig{JetStream: pjs, OutboxDir: b.TempDir(), MemoryQueue: b.N + 1}); err != nil {
			b.Fatal(err)
		}
	}
	types := []audit.EventType{audit.InvocationCompleted, audit.InvocationCompleted, audit.InvocationCompleted, audit.LoginSucceeded, audit.InvocationFailed, audit.LoginFailed}
	// Wait until the engine is consuming, so the clock measures the pipeline.
	waitUntil(func() bool { _, err := js.Consumer(ctx, audit.AuditStream, DefaultConsumer); return err == nil })

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	if publishers == 0 {
		for i := range b.N {
			t := types[i%len(types)]
			app := fmt.Sprintf("app%d", i%apps)
			ev := audit.NewAuditEvent(t, audit.AppRef{Namespace: "bench", Name: app}, time.Now())
			ev.SrcEndpoint = &audit.NetEndpoint{IP: fmt.Sprintf("198.51.100.%d", i%200)}
			id := audit.NewEventID()
			data, err := audit.EncodeAuditEvent(id, t, ev)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ajs.PublishAsync(audit.AuditSubject("bench", app, t), data, jetstream.WithMsgID(id)); err != nil {
				b.Fatal(err)
			}
		}
	}
	for p := range publishers {
		wg.Go(func() {
			for i := p; i < b.N; i += publishers {
				t := types[i%len(types)]
				ev := audit.NewAuditEvent(t, audit.AppRef{Namespace: "bench", Name: fmt.Sprintf("app%d", i%apps)}, time.Now())
				ev.SrcEndpoint = &audit.NetEndpoint{IP: fmt.Sprintf("198.51.100.%d", i%200)}
				if _, err := pubs[p].Publish(t, ev); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for {
		if seq, _ := e.Progress(); seq >= uint64(b.N) {
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	for _, p := range pubs {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		_ = p.Close(cctx)
		ccancel()
	}
}

// BenchmarkAuditAggregation measures the engine alone: the stream already
// holds b.N events (file storage) and the clock runs from the engine's
// start until it has read them all. One op is one event.
func BenchmarkAuditAggregation(b *testing.B) {
	url, _ := natstest.Start(b)
	nc, js := natstest.Connect(b, url)
	ctx := context.Background()
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{}); err != nil {
		b.Fatal(err)
	}
	st, err := store.New(ctx, js, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ajs, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	types := []audit.EventType{audit.InvocationCompleted, audit.InvocationCompleted, audit.LoginSucceeded, audit.InvocationFailed, audit.LoginFailed}
	for i := range b.N {
		t := types[i%len(types)]
		app := fmt.Sprintf("app%d", i%8)
		ev := audit.NewAuditEvent(t, audit.AppRef{Namespace: "bench", Name: app}, time.Now())
		id := audit.NewEventID()
		data, err := audit.EncodeAuditEvent(id, t, ev)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ajs.PublishAsync(audit.AuditSubject("bench", app, t), data, jetstream.WithMsgID(id)); err != nil {
			b.Fatal(err)
		}
	}
	<-ajs.PublishAsyncComplete()
	_, ejs := natstest.Connect(b, url)
	e, err := New(Options{JetStream: ejs, Store: st, Clock: clock.Real{}})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer close(done)
		_ = e.Run(runCtx)
	}()
	for {
		if seq, _ := e.Progress(); seq >= uint64(b.N) {
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	cancel()
	<-done
}
