package usage

import (
	"context"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// TestAppCreatedAgainUnderItsNameStartsFromZero: deleting an app and
// creating it again makes another app; the usage of the first must not show
// in the status of the second, and the second's own events still count.
func TestAppCreatedAgainUnderItsNameStartsFromZero(t *testing.T) {
	f := newFixture(t)
	f.apply("analytics", "summarizer", nil)
	e, _ := f.start(f.options(f.js, nil))
	before := f.base.Add(-10 * time.Minute)
	f.publish(many(7, "analytics", "summarizer", audit.InvocationCompleted, before)...)
	f.waitRead(e)
	f.tick(10 * time.Second)
	f.waitUsage("analytics", "summarizer", v1.Usage{Invocations24h: 7, LastInvocationTime: ptrTime(before)})

	ctx := context.Background()
	if _, err := f.st.Delete(ctx, "analytics", "summarizer"); err != nil {
		t.Fatal(err)
	}
	again := f.apply("analytics", "summarizer", nil)
	if again.Metadata.CreationTimestamp == nil || !again.Metadata.CreationTimestamp.After(before) {
		t.Fatalf("the new app's creation time %v is not after the old events", again.Metadata.CreationTimestamp)
	}
	f.tick(3 * time.Minute) // past the engine's spec refresh; the events below are not from its future
	after := f.base.Add(2 * time.Minute)
	f.publish(many(3, "analytics", "summarizer", audit.InvocationCompleted, after)...)
	f.waitRead(e)
	f.tick(10 * time.Second)
	f.waitUsage("analytics", "summarizer", v1.Usage{Invocations24h: 3, LastInvocationTime: ptrTime(after)})
}
