package controller_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servingapp/servingapp/controller"
)

// noopReconciler counts reconciles and can stand still for a while per key, to
// make a queued resync take real time.
type noopReconciler struct {
	work    time.Duration
	count   atomic.Int64
	mu      sync.Mutex
	started map[string]time.Time
}

func (n *noopReconciler) Reconcile(ctx context.Context, key string) (controller.Result, error) {
	n.mu.Lock()
	if _, ok := n.started[key]; !ok {
		n.started[key] = time.Now()
	}
	n.mu.Unlock()
	if n.work > 0 {
		time.Sleep(n.work)
	}
	n.count.Add(1)
	return controller.Result{}, nil
}

func (n *noopReconciler) startedAt(key string) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.started[key]
	return t, ok
}

// BenchmarkRuntimeThroughput1000 measures objects reconciled per second by the
// runtime alone (store watch → queue → 4 workers → no-op reconcile) for a cold
// start over 1,000 stored objects.
func BenchmarkRuntimeThroughput1000(b *testing.B) {
	e := newEnvB(b)
	for i := 0; i < 1000; i++ {
		if _, _, err := e.store.Apply(context.Background(), testApp(fmt.Sprintf("app-%04d", i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		rec := &noopReconciler{started: map[string]time.Time{}}
		c := controller.New(e.store, rec, controller.Options{Workers: 4, Resync: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		done := make(chan struct{})
		go func() { _ = c.Run(ctx); close(done) }()
		for rec.count.Load() < 1000 {
			time.Sleep(100 * time.Microsecond)
		}
		total += time.Since(start)
		cancel()
		<-done
	}
	b.ReportMetric(float64(1000*b.N)/total.Seconds(), "objects/s")
}

// BenchmarkApplyLatencyBehindResync measures the time from apply to the start
// of its reconcile while a full resync of 1,000 objects is queued ahead of it
// (each reconcile takes 1 ms, so draining the resync takes ~250 ms).
func BenchmarkApplyLatencyBehindResync(b *testing.B) {
	e := newEnvB(b)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("team.bulk-%04d", i)
	}
	rec := &noopReconciler{work: time.Millisecond, started: map[string]time.Time{}}
	c := controller.New(e.store, rec, controller.Options{Workers: 4, Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for c.Queue() == nil {
		time.Sleep(time.Millisecond)
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := c.Queue()
		for _, k := range keys {
			q.Add(k, controller.PriorityResync)
		}
		name := fmt.Sprintf("new-%06d", i)
		start := time.Now()
		if _, _, err := e.store.Apply(context.Background(), testApp(name)); err != nil {
			b.Fatal(err)
		}
		for {
			if t, ok := rec.startedAt("team." + name); ok {
				lat = append(lat, t.Sub(start))
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		for q.Len() > 0 { // let the resync drain before the next sample
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}
