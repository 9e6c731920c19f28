package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/internal/clock"
)

// Leader election defaults: a standby takes over within TTL + RetryEvery of
// the leader's last renewal (17 s), and a leader that cannot renew stops at
// RenewDeadline (10 s), well before its lease can expire for others (15 s).
const (
	DefaultLeaseTTL      = 15 * time.Second
	DefaultRenewEvery    = 5 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryEvery    = 2 * time.Second
	DefaultLeaseBucket   = "servingapp-leases"
	DefaultLeaseKey      = "controller"
)

// ErrLeadershipLost is returned by LeaderElector.Run when the lease could not
// be renewed in time or another controller took it. The process should exit
// and start again as a standby: that is simpler and safer than reusing state.
var ErrLeadershipLost = errors.New("leadership lost")

// Lease is the record stored under the lease key.
type Lease struct {
	Holder     string    `json:"holder"`
	AcquiredAt time.Time `json:"acquiredAt"`
	RenewedAt  time.Time `json:"renewedAt"`
	TTLSeconds float64   `json:"ttlSeconds"`
}

// LeaderElector holds a lease in a JetStream KV bucket. Compare-and-set on the
// key's revision makes acquisition and renewal atomic: two controllers can
// never both believe they renewed the same lease.
type LeaderElector struct {
	KV       jetstream.KeyValue
	Key      string
	Identity string
	Clock    clock.Clock
	Log      *slog.Logger

	LeaseTTL      time.Duration
	RenewEvery    time.Duration
	RenewDeadline time.Duration
	RetryEvery    time.Duration

	// OnChange, when set, is told when this controller starts or stops leading.
	OnChange func(leading bool)
}

func (e *LeaderElector) defaults() {
	if e.Key == "" {
		e.Key = DefaultLeaseKey
	}
	if e.LeaseTTL == 0 {
		e.LeaseTTL = DefaultLeaseTTL
	}
	if e.RenewEvery == 0 {
		e.RenewEvery = DefaultRenewEvery
	}
	if e.RenewDeadline == 0 {
		e.RenewDeadline = DefaultRenewDeadline
	}
	if e.RetryEvery == 0 {
		e.RetryEvery = DefaultRetryEvery
	}
	if e.OnChange == nil {
		e.OnChange = func(bool) {}
	}
}

// Run campaigns until ctx is done. While leading it runs lead with two
// contexts: stop ends when lead should stop taking new work (shutdown or lost
// lease); work ends only when leadership is lost, so in-flight work finishes on
// a graceful shutdown but is cut off when another controller may take over.
// Run returns nil after a graceful shutdown (releasing the lease so a standby
// takes over at once) and ErrLeadershipLost when the lease was lost.
func (e *LeaderElector) Run(ctx context.Context, lead func(stop, work context.Context)) error {
	e.defaults()
	if e.RenewDeadline >= e.LeaseTTL {
		return fmt.Errorf("leader election: renew deadline %s must be shorter than the lease TTL %s", e.RenewDeadline, e.LeaseTTL)
	}
	var rev uint64
	for {
		var err error
		rev, err = e.tryAcquire(ctx)
		if err != nil && ctx.Err() == nil {
			e.Log.Warn("leader election: acquire", "error", err)
		}
		if rev != 0 {
			break
		}
		if !sleep(ctx, e.Clock, e.RetryEvery) {
			return nil
		}
	}
	e.Log.Info("leader election: leading", "identity", e.Identity)
	e.OnChange(true)
	defer e.OnChange(false)

	work, loseLeadership := context.WithCancel(context.WithoutCancel(ctx))
	defer loseLeadership()
	stop, stopIntake := context.WithCancel(work)
	defer stopIntake()
	unhook := context.AfterFunc(ctx, stopIntake)
	defer unhook()

	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(stop, work)
	}()

	lastRenew := e.Clock.Now()
	for {
		select {
		case <-done:
			if ctx.Err() != nil {
				e.release(rev)
				return nil
			}
			if work.Err() != nil {
				return ErrLeadershipLost
			}
			// lead returned by itself: keep the lease until shutdown.
			<-ctx.Done()
			e.release(rev)
			return nil
		case <-afterChan(e.Clock, e.RenewEvery):
		}
		if stop.Err() != nil {
			continue // shutting down: wait for lead to return
		}
		deadline := lastRenew.Add(e.RenewDeadline)
		for {
			rctx, cancel := context.WithTimeout(ctx, max(deadline.Sub(e.Clock.Now()), time.Millisecond))
			newRev, err := e.renew(rctx, rev, lastRenew)
			cancel()
			if err == nil {
				rev, lastRenew = newRev, e.Clock.Now()
				break
			}
			if errors.Is(err, jetstream.ErrKeyExists) {
				e.Log.Error("leader election: another controller holds the lease; stopping", "error", err)
				loseLeadership()
				<-done
				return ErrLeadershipLost
			}
			if !e.Clock.Now().Before(deadline) || ctx.Err() != nil {
				if ctx.Err() != nil {
					break
				}
				e.Log.Error("leader election: could not renew before the deadline; stopping before the lease can expire", "error", err)
				loseLeadership()
				<-done
				return ErrLeadershipLost
			}
			e.Log.Warn("leader election: renew failed, retrying", "error", err)
			sleep(ctx, e.Clock, min(e.RetryEvery, deadline.Sub(e.Clock.Now())))
		}
	}
}

// tryAcquire returns the lease revision when this controller now holds it, or 0.
func (e *LeaderElector) tryAcquire(ctx context.Context) (uint64, error) {
	now := e.Clock.Now()
	rec := Lease{Holder: e.Identity, AcquiredAt: now, RenewedAt: now, TTLSeconds: e.LeaseTTL.Seconds()}
	b, _ := json.Marshal(rec)
	entry, err := e.KV.Get(ctx, e.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := e.KV.Create(ctx, e.Key, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil // somebody else won the race
		}
		return rev, err
	}
	if err != nil {
		return 0, err
	}
	var cur Lease
	if err := json.Unmarshal(entry.Value(), &cur); err != nil {
		e.Log.Warn("leader election: unreadable lease record; taking it over once expired", "error", err)
	}
	ttl := time.Duration(cur.TTLSeconds * float64(time.Second))
	if ttl == 0 {
		ttl = e.LeaseTTL
	}
	if cur.Holder != e.Identity && now.Before(cur.RenewedAt.Add(ttl)) {
		return 0, nil // held and not expired
	}
	rev, err := e.KV.Update(ctx, e.Key, b, entry.Revision())
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil
		}
		return 0, err
	}
	return rev, nil
}

func (e *LeaderElector) renew(ctx context.Context, rev uint64, acquired time.Time) (uint64, error) {
	now := e.Clock.Now()
	b, _ := json.Marshal(Lease{Holder: e.Identity, AcquiredAt: acquired, RenewedAt: now, TTLSeconds: e.LeaseTTL.Seconds()})
	// A revision mismatch (jetstream.ErrKeyExists) means another controller
	// wrote the lease: it is no longer ours.
	return e.KV.Update(ctx, e.Key, b, rev)
}

// release deletes the lease if it is still ours, so a standby need not wait for expiry.
func (e *LeaderElector) release(rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.KV.Delete(ctx, e.Key, jetstream.LastRevision(rev)); err != nil {
		e.Log.Warn("leader election: release lease", "error", err)
		return
	}
	e.Log.Info("leader election: released lease", "identity", e.Identity)
}

// sleep waits d on clk; it returns false if ctx ended first.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-afterChan(clk, d):
		return true
	}
}

func afterChan(clk clock.Clock, d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	clk.AfterFunc(d, func() { close(ch) })
	return ch
}
