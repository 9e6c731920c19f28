package store

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkApply measures applies per second against an embedded server on
// loopback, file storage:
//
//	go test -run '^$' -bench Apply ./api/store/
func BenchmarkApply(b *testing.B) {
	b.Run("configure", func(b *testing.B) {
		e := newTestEnv(b)
		e.mustApply(b, newApp("analytics", "summarizer", nil))
		n := 0
		for b.Loop() {
			n++
			if _, outcome, err := e.store.Apply(b.Context(), withEnv(newApp("analytics", "summarizer", nil), "N", strconv.Itoa(n))); err != nil || outcome != Configured {
				b.Fatalf("apply %d: %q %v", n, outcome, err)
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "applies/s")
	})
	b.Run("unchanged", func(b *testing.B) {
		e := newTestEnv(b)
		e.mustApply(b, newApp("analytics", "summarizer", nil))
		n := 0
		for b.Loop() {
			n++
			if _, outcome, err := e.store.Apply(b.Context(), newApp("analytics", "summarizer", nil)); err != nil || outcome != Unchanged {
				b.Fatalf("apply %d: %q %v", n, outcome, err)
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "applies/s")
	})
	b.Run("create", func(b *testing.B) {
		e := newTestEnv(b)
		n := 0
		for b.Loop() {
			n++
			if _, outcome, err := e.store.Apply(b.Context(), newApp("analytics", fmt.Sprintf("app-%d", n), nil)); err != nil || outcome != Created {
				b.Fatalf("apply %d: %q %v", n, outcome, err)
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "applies/s")
	})
	// Several writers on distinct objects, as servingctl apply -f DIR and the
	// controller's finalizer writes would be.
	b.Run("configure-parallel", func(b *testing.B) {
		e := newTestEnv(b)
		var (
			writer atomic.Int64
			total  atomic.Int64
		)
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			name := fmt.Sprintf("app-%d", writer.Add(1))
			for n := 0; pb.Next(); n++ {
				if _, _, err := e.store.Apply(b.Context(), withEnv(newApp("analytics", name, nil), "N", strconv.Itoa(n))); err != nil {
					b.Errorf("apply %s: %v", name, err)
					return
				}
				total.Add(1)
			}
		})
		b.ReportMetric(float64(total.Load())/b.Elapsed().Seconds(), "applies/s")
	})
}

// BenchmarkWatchDelivery measures the time from Apply returning to a watcher
// receiving the event, over b.N applies (file storage):
//
//	go test -run '^$' -bench WatchDelivery -benchtime 2000x ./api/store/
//
// "paced" applies to one object and waits for each event before the next
// apply: pure delivery latency. "back-to-back" applies round-robin to 50
// objects as fast as it can, so events queue behind each other. An event
// that arrives before Apply has returned counts as 0. "superseded" counts
// revisions the watcher never saw because the same object had changed more
// than SpecHistory times while the watcher lagged (it then sees the newest).
func BenchmarkWatchDelivery(b *testing.B) {
	for _, paced := range []bool{true, false} {
		name := "back-to-back"
		if paced {
			name = "paced"
		}
		b.Run(name, func(b *testing.B) { benchmarkWatchDelivery(b, paced) })
	}
}

func benchmarkWatchDelivery(b *testing.B, paced bool) {
	e := newTestEnv(b)
	objects := 50
	if paced {
		objects = 1
	}
	for i := range objects {
		e.mustApply(b, newApp("analytics", fmt.Sprintf("app-%d", i), nil))
	}
	w, err := e.store.Watch(b.Context(), ListOptions{})
	if err != nil {
		b.Fatalf("Watch: %v", err)
	}
	defer w.Stop()
	for ev := nextEvent(b, w); ev.Type != Synced; ev = nextEvent(b, w) {
	}

	var (
		mu       sync.Mutex
		received = map[string]time.Time{} // resourceVersion -> arrival
		arrived  = make(chan string, 1)
	)
	go func() {
		for ev := range w.Events() {
			now := time.Now()
			mu.Lock()
			received[ev.Object.Metadata.ResourceVersion] = now
			mu.Unlock()
			if paced {
				arrived <- ev.Object.Metadata.ResourceVersion
			}
		}
	}()

	type sample struct {
		rv               string
		called, returned time.Time
	}
	samples := make([]sample, 0, b.N)
	n := 0
	for b.Loop() {
		n++
		called := time.Now()
		app := withEnv(newApp("analytics", fmt.Sprintf("app-%d", n%objects), nil), "N", strconv.Itoa(n))
		out, _, err := e.store.Apply(b.Context(), app)
		if err != nil {
			b.Fatalf("apply %d: %v", n, err)
		}
		samples = append(samples, sample{out.Metadata.ResourceVersion, called, time.Now()})
		if paced {
			select {
			case <-arrived:
			case <-time.After(guard):
				b.Fatalf("event %d not delivered within %s", n, guard)
			}
		}
	}
	b.StopTimer()
	// Wait until the newest revision has arrived; every earlier one has then
	// arrived or been superseded.
	last := samples[len(samples)-1].rv
	deadline := time.Now().Add(guard)
	for {
		mu.Lock()
		_, ok := received[last]
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("event for resourceVersion %s never arrived", last)
		}
		time.Sleep(time.Millisecond)
	}
	var (
		fromReturn, fromCall []time.Duration
		superseded           int
	)
	mu.Lock()
	for _, s := range samples {
		at, ok := received[s.rv]
		if !ok {
			superseded++
			continue
		}
		fromReturn = append(fromReturn, max(0, at.Sub(s.returned)))
		fromCall = append(fromCall, at.Sub(s.called))
	}
	mu.Unlock()
	b.ReportMetric(ms(percentile(fromReturn, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(fromReturn, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(fromCall, 50)), "p50-from-call-ms")
	b.ReportMetric(ms(percentile(fromCall, 99)), "p99-from-call-ms")
	b.ReportMetric(float64(len(samples)), "applies")
	b.ReportMetric(float64(superseded), "superseded")
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
