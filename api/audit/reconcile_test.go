package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/natstest"
)

// TestLastReconcileEventsReadsTheNewestOfOneAppAmongMany: the newest events
// of one app, oldest first, whether they sit at the end of a long stream
// shared with other apps or far back at its start, and no consumer is left.
func TestLastReconcileEventsReadsTheNewestOfOneAppAmongMany(t *testing.T) {
	url, _ := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	ctx := context.Background()
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	publish := func(name string, i int) {
		ev := audit.ReconcileEvent{Namespace: "team", Name: name, Severity: audit.SeverityNormal, Reason: "RulesChanged", Message: fmt.Sprintf("%s %d", name, i)}
		if err := audit.PublishReconcileEvent(ctx, js, audit.NewEventID(), at, ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		publish("early", i) // only at the start of the stream
	}
	for i := range 4000 {
		publish("busy", i)
		if i%4 == 0 {
			publish("sparse", i/4)
		}
	}
	cases := []struct {
		app   string
		n     int
		first string // message of the oldest event returned
		count int
	}{
		{"busy", 10, "busy 3990", 10},
		{"sparse", 10, "sparse 990", 10},
		{"early", 10, "early 0", 5},
		{"none", 10, "", 0},
	}
	for _, tc := range cases {
		_, evs, err := audit.LastReconcileEvents(ctx, js, "team", tc.app, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != tc.count || tc.count > 0 && (evs[0].Message != tc.first || evs[len(evs)-1].Name != tc.app) {
			t.Fatalf("%s: got %d events %+v, want %d from %q", tc.app, len(evs), evs, tc.count, tc.first)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Message <= evs[i-1].Message && len(evs[i].Message) == len(evs[i-1].Message) {
				t.Fatalf("%s: not oldest first: %q then %q", tc.app, evs[i-1].Message, evs[i].Message)
			}
		}
	}
	checkNoConsumers(t, js, audit.EventsStream)
}
