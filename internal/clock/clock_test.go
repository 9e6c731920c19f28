package clock

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestManualFiresDueTimersInOrderAndOnlyOnce(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewManual(t0)
	var fired atomic.Int32
	done := make(chan int, 3)
	c.AfterFunc(2*time.Second, func() { fired.Add(1); done <- 2 })
	c.AfterFunc(time.Second, func() { fired.Add(1); done <- 1 })
	stopped := c.AfterFunc(time.Second, func() { fired.Add(100) })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should report true once, then false")
	}
	if c.Pending() != 2 {
		t.Fatalf("pending %d, want 2", c.Pending())
	}
	c.Advance(999 * time.Millisecond)
	if c.Pending() != 2 || fired.Load() != 0 {
		t.Fatal("timer fired early")
	}
	c.Advance(5 * time.Second)
	got := map[int]bool{<-done: true, <-done: true}
	if !got[1] || !got[2] || c.Pending() != 0 {
		t.Fatalf("fired %v, pending %d", got, c.Pending())
	}
	if !c.Now().Equal(t0.Add(5999 * time.Millisecond)) {
		t.Fatalf("now %v", c.Now())
	}
	c.Advance(time.Hour)
	time.Sleep(5 * time.Millisecond)
	if fired.Load() != 2 {
		t.Fatalf("fired %d times, want 2 (the stopped timer must never run)", fired.Load())
	}
}

func TestManualZeroDelayRunsAtOnce(t *testing.T) {
	c := NewManual(time.Now())
	done := make(chan struct{})
	c.AfterFunc(0, func() { close(done) })
	<-done
}
