package controller

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/clock"
)

// TestRecorderForgetsAppsOutsideTheRepeatWindow: the repeat suppression keeps
// one entry per app only while it can still suppress something.
func TestRecorderForgetsAppsOutsideTheRepeatWindow(t *testing.T) {
	clk := clock.NewManual(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	r := &StreamRecorder{Log: slog.New(slog.DiscardHandler), Clock: clk}
	ctx := context.Background()
	for i := range 500 {
		app := &v1.ServingApp{Metadata: v1.ObjectMeta{Namespace: "team", Name: fmt.Sprintf("app%d", i)}}
		r.For(app).Event(ctx, "ServiceCreated", "created")
	}
	if n := len(r.last); n != 500 {
		t.Fatalf("%d entries after 500 apps' events, want 500", n)
	}
	clk.Advance(repeatWindow)
	r.For(&v1.ServingApp{Metadata: v1.ObjectMeta{Namespace: "team", Name: "app0"}}).Event(ctx, "ServiceCreated", "created")
	if n := len(r.last); n != 1 {
		t.Fatalf("%d entries a window later, want only the app that just had an event", n)
	}
}
