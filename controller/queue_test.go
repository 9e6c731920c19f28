package controller

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servingapp/servingapp/internal/clock"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func TestQueueDeduplicatesAndPrefersChanges(t *testing.T) {
	q := NewQueue(clock.NewManual(t0), 0, 0)
	for i := 0; i < 1000; i++ {
		q.Add(fmt.Sprintf("ns.resync-%04d", i), PriorityResync)
	}
	q.Add("ns.resync-0500", PriorityResync) // duplicate: no second entry
	q.Add("ns.applied", PriorityChange)
	q.Add("ns.resync-0999", PriorityChange) // promoted
	if got := q.Len(); got != 1001 {
		t.Fatalf("Len %d, want 1001", got)
	}
	want := []string{"ns.applied", "ns.resync-0999", "ns.resync-0000", "ns.resync-0001"}
	for i, w := range want {
		k, _, ok := q.Get()
		if !ok || k != w {
			t.Fatalf("Get #%d = %q, want %q", i, k, w)
		}
		q.Done(k)
	}
}

func TestQueueHoldsKeyChangedWhileProcessingUntilDone(t *testing.T) {
	q := NewQueue(clock.NewManual(t0), 0, 0)
	q.Add("a", PriorityResync)
	k, _, _ := q.Get()
	q.Add("a", PriorityChange) // changed while in flight
	q.Add("a", PriorityResync)
	if q.Len() != 0 {
		t.Fatal("key handed out again while processing")
	}
	q.Done(k)
	k2, p, ok := q.Get()
	if !ok || k2 != "a" || p != PriorityChange {
		t.Fatalf("after Done: %q %v %v, want a once more at change priority", k2, p, ok)
	}
	q.Done(k2)
	if q.Len() != 0 {
		t.Fatal("key ran more than once more")
	}
}

// TestQueueNeverProcessesOneKeyTwiceAtOnceUnderStorm: 8 workers, 20 keys,
// 20,000 adds. No key is ever in two workers at once, duplicates merge, and
// every key's last change is reconciled by a run that started after it.
func TestQueueNeverProcessesOneKeyTwiceAtOnceUnderStorm(t *testing.T) {
	q := NewQueue(clock.Real{}, 0, 0)
	const keys, workers, adds = 20, 8, 20000
	var (
		inFlight [keys]atomic.Int32
		version  [keys]atomic.Int64 // bumped before each add
		seen     [keys]atomic.Int64 // the version a run started from
		runs     atomic.Int64
		overlap  atomic.Bool
		wg       sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k, _, ok := q.Get()
				if !ok {
					return
				}
				var i int
				fmt.Sscanf(k, "k%d", &i)
				if inFlight[i].Add(1) != 1 {
					overlap.Store(true)
				}
				seen[i].Store(version[i].Load())
				time.Sleep(20 * time.Microsecond) // a reconcile takes time: widen the window for overlaps
				runs.Add(1)
				inFlight[i].Add(-1)
				q.Done(k)
			}
		}()
	}
	for i := 0; i < adds; i++ {
		version[i%keys].Add(1)
		q.Add(fmt.Sprintf("k%d", i%keys), Priority(i%2))
	}
	waitFor(t, func() bool {
		for i := range keys {
			if seen[i].Load() != version[i].Load() {
				return false
			}
		}
		return true
	})
	q.ShutDownAndWait()
	wg.Wait()
	if overlap.Load() {
		t.Fatal("one key was processed by two workers at once")
	}
	if runs.Load() >= adds {
		t.Fatalf("%d runs for %d adds: no deduplication", runs.Load(), adds)
	}
}

func TestQueueBackoffDoublesToMaxAndResets(t *testing.T) {
	clk := clock.NewManual(t0)
	q := NewQueue(clk, 5*time.Millisecond, 5*time.Minute)
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	for i, w := range want {
		if got := q.AddRateLimited("k", PriorityResync); got != w {
			t.Fatalf("failure %d: delay %v, want %v", i+1, got, w)
		}
	}
	for i := 0; i < 30; i++ {
		q.AddRateLimited("k", PriorityResync)
	}
	if got := q.AddRateLimited("k", PriorityResync); got != 5*time.Minute {
		t.Fatalf("delay after many failures %v, want the 5m cap", got)
	}
	q.Forget("k")
	if got := q.AddRateLimited("k", PriorityResync); got != 5*time.Millisecond {
		t.Fatalf("delay after success %v, want reset to 5ms", got)
	}
}

func TestQueueAddAfterWaitsForClock(t *testing.T) {
	clk := clock.NewManual(t0)
	q := NewQueue(clk, 0, 0)
	q.AddAfter("later", time.Minute, PriorityResync)
	q.AddAfter("later", 2*time.Minute, PriorityResync) // later time loses
	clk.Advance(59 * time.Second)
	if q.Len() != 0 {
		t.Fatal("delayed key ready early")
	}
	clk.Advance(time.Second)
	waitFor(t, func() bool { return q.Len() == 1 })
	k, _, _ := q.Get()
	q.Done(k)
	clk.Advance(time.Hour)
	time.Sleep(10 * time.Millisecond)
	if q.Len() != 0 {
		t.Fatal("superseded timer fired too")
	}
}

// TestQueueDelayedAddsKeepTheHigherPriority: whichever delayed add wins on
// time, the key comes out at the higher of the priorities asked for.
func TestQueueDelayedAddsKeepTheHigherPriority(t *testing.T) {
	cases := []struct {
		name   string
		first  time.Duration
		firstP Priority
		second time.Duration
		secP   Priority
	}{
		{"later add is more urgent", time.Minute, PriorityResync, 2 * time.Minute, PriorityChange},
		{"earlier add is more urgent", 2 * time.Minute, PriorityChange, time.Minute, PriorityResync},
		{"earlier add replaces a less urgent later one", 2 * time.Minute, PriorityResync, time.Minute, PriorityChange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewManual(t0)
			q := NewQueue(clk, 0, 0)
			q.AddAfter("k", tc.first, tc.firstP)
			q.AddAfter("k", tc.second, tc.secP)
			clk.Advance(min(tc.first, tc.second))
			waitFor(t, func() bool { return q.Len() == 1 })
			if _, p, _ := q.Get(); p != PriorityChange {
				t.Fatalf("priority %v, want PriorityChange", p)
			}
		})
	}
}

func TestQueueShutDownWaitsForInFlight(t *testing.T) {
	q := NewQueue(clock.Real{}, 0, 0)
	q.Add("a", PriorityChange)
	k, _, _ := q.Get()
	done := make(chan struct{})
	go func() { q.ShutDownAndWait(); close(done) }()
	select {
	case <-done:
		t.Fatal("shutdown returned while a key was in flight")
	case <-time.After(20 * time.Millisecond):
	}
	q.Done(k)
	<-done
	if _, _, ok := q.Get(); ok {
		t.Fatal("Get after shutdown handed out work")
	}
}

// waitFor polls cond; it bounds the wait generously and asserts nothing about time.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
