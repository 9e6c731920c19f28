package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/controller"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/natstest"
)

// timerClock is a manual clock that knows when each of its timers is due,
// so a test can tell that the code under test is waiting on a future timer
// (and on nothing else) and move time straight to that moment. Several may
// share one clock.Manual, one per elector, to tell which of them waits.
type timerClock struct {
	*clock.Manual
	mu     sync.Mutex
	timers []*dueTimer
}

type dueTimer struct {
	at   time.Time
	over bool // fired or stopped
}

type stoppableTimer struct {
	clock.Timer
	c *timerClock
	t *dueTimer
}

func (s stoppableTimer) Stop() bool {
	s.c.mu.Lock()
	s.t.over = true
	s.c.mu.Unlock()
	return s.Timer.Stop()
}

func (c *timerClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	t := &dueTimer{at: c.Now().Add(d)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	inner := c.Manual.AfterFunc(d, func() {
		c.mu.Lock()
		t.over = true
		c.mu.Unlock()
		f()
	})
	return stoppableTimer{Timer: inner, c: c, t: t}
}

// next returns the earliest pending timer that is due after now.
func (c *timerClock) next() (time.Time, bool) {
	now := c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var at time.Time
	for _, t := range c.timers {
		if !t.over && t.at.After(now) && (at.IsZero() || t.at.Before(at)) {
			at = t.at
		}
	}
	return at, !at.IsZero()
}

// waiting reports whether a timer of this clock is due in the future: the
// elector using it waits on its clock (or will, once it gets there).
func (c *timerClock) waiting() bool {
	_, ok := c.next()
	return ok
}

// settle waits until the elector waits on a future timer or has returned.
func (c *timerClock) settle(t *testing.T, returned func() bool) {
	t.Helper()
	// An elector blocked on anything but its clock (its work, say) never does.
	waitUntil(t, "the elector to wait on its clock or return", func() bool {
		return c.waiting() || returned()
	})
}

// step moves the clock to the elector's next timer and waits until the
// elector has done what that timer started: it waits on its clock again or
// has returned. It reports whether the elector is still running.
func (c *timerClock) step(t *testing.T, returned func() bool) bool {
	t.Helper()
	c.settle(t, returned)
	if returned() {
		return false
	}
	at, _ := c.next()
	c.Advance(at.Sub(c.Now()))
	c.settle(t, returned)
	return !returned()
}

// TestLeaderThatCannotRenewStopsBeforeItsLeaseCanExpire: a leader whose work
// ignores its context must not keep running it after a standby could take
// the lease over. Run has to return ErrLeadershipLost before the lease's
// expiry (last successful renewal + TTL) on the elector's clock, with the
// work cancelled but still running, so the process can exit.
func TestLeaderThatCannotRenewStopsBeforeItsLeaseCanExpire(t *testing.T) {
	for _, tc := range []struct {
		name     string
		renewals int // successful renewals before NATS goes away
	}{
		{"never renewed", 0},
		{"renewed twice", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := natstest.Start(t)
			nc, kv := leaseKV(t, url)
			t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			clk := &timerClock{Manual: clock.NewManual(t0)}
			el := &controller.LeaderElector{KV: kv, Identity: "a", Clock: clk, Log: slog.New(slog.DiscardHandler)}

			led := make(chan context.Context, 1)
			leadReturned := make(chan struct{})
			unblock := make(chan struct{})
			t.Cleanup(func() { close(unblock); <-leadReturned })
			done := make(chan error, 1)
			go func() {
				done <- el.Run(context.Background(), func(stop, work context.Context) {
					defer close(leadReturned)
					led <- work
					<-unblock // a reconcile that never looks at its context
				})
			}()
			work := <-led
			returned := func() bool { return len(done) > 0 }

			for range tc.renewals {
				clk.step(t, returned)
			}
			lastRenew := t0.Add(time.Duration(tc.renewals) * controller.DefaultRenewEvery)
			if lease := readLease(t, kv); !lease.RenewedAt.Equal(lastRenew) {
				t.Fatalf("lease renewed at %v, want %v", lease.RenewedAt, lastRenew)
			}
			nc.Close() // from here every renewal fails
			expiry := lastRenew.Add(controller.DefaultLeaseTTL)
			for clk.step(t, returned) {
				if !clk.Now().Before(expiry) {
					t.Fatalf("Run still waiting on its work at %v, the lease's expiry for a standby", clk.Now())
				}
			}
			stoppedAt := clk.Now()
			if err := <-done; !errors.Is(err, controller.ErrLeadershipLost) {
				t.Fatalf("Run returned %v, want ErrLeadershipLost", err)
			}
			if !stoppedAt.Before(expiry) {
				t.Fatalf("Run returned at %v, not before the lease's expiry %v", stoppedAt, expiry)
			}
			if work.Err() == nil {
				t.Fatal("the work's context was not cancelled when leadership was lost")
			}
			select {
			case <-leadReturned:
				t.Fatal("the work returned by itself; the test needs work that ignores its context")
			default:
			}
			t.Logf("Run returned %s after the last renewal (lease TTL %s)", stoppedAt.Sub(lastRenew), controller.DefaultLeaseTTL)
		})
	}
}

// TestLeaderKeepsRenewingWhileInFlightWorkFinishes: on a graceful shutdown
// in-flight work runs on with a live context, so the lease must stay renewed
// until it returns; otherwise a standby would take over after the TTL while
// the old leader still reconciles. Once the work returns, the lease is released.
func TestLeaderKeepsRenewingWhileInFlightWorkFinishes(t *testing.T) {
	url, _ := natstest.Start(t)
	_, kv := leaseKV(t, url)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clk := &timerClock{Manual: clock.NewManual(t0)}
	el := &controller.LeaderElector{KV: kv, Identity: "a", Clock: clk, Log: slog.New(slog.DiscardHandler)}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopping := make(chan struct{})
	finish := make(chan struct{})
	var workErr error
	done := make(chan error, 1)
	go func() {
		done <- el.Run(ctx, func(stop, work context.Context) {
			<-stop.Done()
			close(stopping)
			<-finish // an in-flight reconcile that takes a while to finish
			workErr = work.Err()
		})
	}()
	clk.settle(t, func() bool { return false }) // leading, waiting to renew
	cancel()
	<-stopping
	returned := func() bool { return len(done) > 0 }
	// Two lease TTLs of shutdown: every renewal must still happen.
	for clk.Now().Before(t0.Add(2 * controller.DefaultLeaseTTL)) {
		if !clk.step(t, returned) {
			t.Fatalf("Run returned (%v) while its work was still running", <-done)
		}
		if lease := readLease(t, kv); lease.Holder != "a" || !lease.RenewedAt.Equal(clk.Now()) {
			t.Fatalf("at %v, %s into the shutdown, the lease was last renewed at %v by %q", clk.Now(), clk.Now().Sub(t0), lease.RenewedAt, lease.Holder)
		}
	}
	close(finish)
	if err := <-done; err != nil {
		t.Fatalf("graceful stop returned %v", err)
	}
	if workErr != nil {
		t.Fatalf("the in-flight work's context ended during a graceful shutdown: %v", workErr)
	}
	if _, err := kv.Get(context.Background(), controller.DefaultLeaseKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease not released after the work finished: %v", err)
	}
}

func readLease(t *testing.T, kv jetstream.KeyValue) controller.Lease {
	t.Helper()
	e, err := kv.Get(context.Background(), controller.DefaultLeaseKey)
	if err != nil {
		t.Fatal(err)
	}
	var l controller.Lease
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		t.Fatal(err)
	}
	return l
}
