package usage

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/api/audit"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// TestDeliveryTakenByAnotherConsumerIsStillCounted: another process bound to
// the engine's durable consumer takes one delivery and never acknowledges
// it. Its redelivery would come an AckWait later, behind events of the same
// app the engine already counted; the engine reads it from the stream at
// once instead, so the count is exact without waiting.
func TestDeliveryTakenByAnotherConsumerIsStillCounted(t *testing.T) {
	f := newFixture(t)
	f.apply("analytics", "summarizer", nil)
	reg := prometheus.NewRegistry()
	opts := f.options(f.js, reg)
	opts.AckWait = time.Hour // no redelivery during the test
	opts.Batch = 10
	e, _ := f.start(opts)
	at := f.base.Add(-time.Minute)
	f.publish(many(5, "analytics", "summarizer", audit.InvocationCompleted, at)...)
	f.waitRead(e)

	// The thief asks for one message and waits; the engine's own pull
	// requests are in the queue too, so publish until the thief is served.
	_, js2 := f.connect()
	s, err := js2.Stream(context.Background(), audit.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	thief, err := s.Consumer(context.Background(), DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	stolen := make(chan jetstream.Msg, 1)
	go func() {
		batch, err := thief.Fetch(1, jetstream.FetchMaxWait(20*time.Second))
		if err != nil {
			return
		}
		for m := range batch.Messages() {
			stolen <- m
		}
	}()
	published := 5
	var took jetstream.Msg
	for took == nil && published < 5000 {
		f.publish(many(10, "analytics", "summarizer", audit.InvocationCompleted, at)...)
		published += 10
		select {
		case took = <-stolen:
		case <-time.After(5 * time.Millisecond):
		}
	}
	if took == nil {
		t.Fatal("the second consumer was never given a message")
	}
	f.publish(many(10, "analytics", "summarizer", audit.InvocationCompleted, at)...)
	published += 10
	f.waitRead(e)
	f.tick(10 * time.Second)
	f.waitUsage("analytics", "summarizer", v1.Usage{Invocations24h: int64(published), LastInvocationTime: ptrTime(at)})
	if n := counterValue(t, reg, "servingapp_usage_events_total", "result", "gap_filled"); n < 1 {
		t.Fatalf("gap_filled = %v, want the taken event read from the stream", n)
	}
}
