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

// Leader election defaults: a standby sees each renewal within RetryEvery
// and takes over once the lease has not changed for the TTL, so within
// RetryEvery + TTL + RetryEvery of the leader's last renewal (19 s); a leader
// that cannot renew cancels its work at RenewDeadline (10 s) and gives up
// waiting for it halfway to the lease's expiry (12.5 s), well before its
// lease can expire for others (15 s).
const (
	DefaultLeaseTTL      = 15 * time.Second
	DefaultRenewEvery    = 5 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryEvery    = 2 * time.Second
	DefaultLeaseBucket   = "servingapp-leases"
	DefaultLeaseKey      = "controller"
)

// ErrLeadershipLost is returned (possibly wrapped) by LeaderElector.Run when
// the lease could not be renewed in time or another controller took it. The
// process must exit and start again as a standby: the leading work may still
// be running (see Run), and only the process's end stops it for sure.
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
// a graceful shutdown (the lease is renewed until it has) but is cut off when
// another controller may take over.
// Run returns nil after a graceful shutdown (releasing the lease so a standby
// takes over at once) and ErrLeadershipLost when the lease was lost.
//
// Once the lease is lost, Run waits for lead to return only until halfway
// between the renew deadline and the lease's expiry (see stopBy). Work that
// ignores its context would otherwise go on reconciling next to the standby
// that takes the lease over, so Run then returns ErrLeadershipLost with lead
// still running, and the caller must end the process (as client-go's leader
// election users do with os.Exit in OnStoppedLeading): a goroutine cannot be
// stopped from outside, a process can.
func (e *LeaderElector) Run(ctx context.Context, lead func(stop, work context.Context)) error {
	e.defaults()
	if e.RenewDeadline >= e.LeaseTTL {
		return fmt.Errorf("leader election: renew deadline %s must be shorter than the lease TTL %s", e.RenewDeadline, e.LeaseTTL)
	}
	var (
		rev      uint64
		acquired time.Time
		seen     leaseSighting
	)
	for {
		var err error
		rev, acquired, err = e.tryAcquire(ctx, &seen)
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

	// lastRenew is the time taken just before the last successful write of
	// the lease: no standby can have seen that write earlier, so a standby's
	// expiry (counted from when it saw the write) cannot come before
	// lastRenew+LeaseTTL, and stopping at lastRenew+RenewDeadline is safe.
	lastRenew := acquired
	// Renewals go on through a graceful shutdown: in-flight work still runs
	// then, with a live context, and the lease must stay ours until it has
	// returned, or a standby could take over while it runs.
	leaseCtx := context.WithoutCancel(ctx)
	for {
		select {
		case <-done:
			// lead returned on shutdown, or by itself: then the lease is
			// released only at shutdown. (Not because work ended: only
			// abandon ends it, and abandon returns.)
			<-ctx.Done()
			e.release(rev)
			return nil
		case <-afterChan(e.Clock, e.RenewEvery):
		}
		deadline := lastRenew.Add(e.RenewDeadline)
		for {
			rctx, cancel := context.WithTimeout(leaseCtx, max(deadline.Sub(e.Clock.Now()), time.Millisecond))
			start := e.Clock.Now()
			newRev, err := e.renew(rctx, rev, acquired, start)
			cancel()
			if err == nil {
				rev, lastRenew = newRev, start
				break
			}
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				e.Log.Error("leader election: another controller holds the lease; stopping", "error", err)
				return e.abandon(done, loseLeadership, lastRenew)
			}
			if !e.Clock.Now().Before(deadline) {
				e.Log.Error("leader election: could not renew before the deadline; stopping before the lease can expire", "error", err)
				return e.abandon(done, loseLeadership, lastRenew)
			}
			if ctx.Err() != nil && isClosed(done) {
				// Shut down and nothing runs any more: the lease has nothing
				// left to protect. Release it if NATS lets us; if not, a
				// standby takes over at expiry.
				e.release(rev)
				return nil
			}
			e.Log.Warn("leader election: renew failed, retrying", "error", err)
			sleep(leaseCtx, e.Clock, min(e.RetryEvery, deadline.Sub(e.Clock.Now())))
		}
	}
}

// stopBy is the latest time a leader whose last successful renewal started
// at lastRenew may still be running its work: halfway between the renew
// deadline, when the work is told to stop, and the earliest time a standby
// can take the lease over (lastRenew+LeaseTTL). The first half is the work's
// to wind down; the second is the margin for the process to exit and for the
// hosts' clocks running at slightly different rates.
func (e *LeaderElector) stopBy(lastRenew time.Time) time.Time {
	return lastRenew.Add(e.RenewDeadline + (e.LeaseTTL-e.RenewDeadline)/2)
}

// abandon ends a term whose lease is lost: it cancels the work and waits for
// lead to return, but not past stopBy. It always returns ErrLeadershipLost;
// wrapped, when lead was still running, so the log says why the exit matters.
func (e *LeaderElector) abandon(done <-chan struct{}, loseLeadership context.CancelFunc, lastRenew time.Time) error {
	loseLeadership()
	by := e.stopBy(lastRenew)
	select {
	case <-done:
		return ErrLeadershipLost
	case <-afterChan(e.Clock, by.Sub(e.Clock.Now())):
		e.Log.Error("leader election: the leading work ignored its cancellation; returning so the process exits before a standby can take the lease over", "stopBy", by)
		return fmt.Errorf("%w: the leading work was still running at %s, shortly before the lease can expire for a standby; the process must exit to stop it", ErrLeadershipLost, by.Format(time.RFC3339Nano))
	}
}

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// leaseSighting is what a standby last saw of the lease: its revision and
// when, by the standby's own clock, it first saw that revision.
type leaseSighting struct {
	rev uint64
	at  time.Time
}

// tryAcquire returns the lease revision and the time taken just before the
// write when this controller now holds the lease, or 0.
//
// Expiry is judged the way client-go's leader election judges it: a lease
// is expired when its revision has not changed for its TTL as measured on
// this controller's clock since this controller first saw that revision.
// Comparing the holder's RenewedAt with our own clock would let clock skew
// between two hosts eat into the margin between the holder's renew deadline
// and the TTL; the holder's timestamps are kept for people reading the lease.
func (e *LeaderElector) tryAcquire(ctx context.Context, seen *leaseSighting) (uint64, time.Time, error) {
	now := e.Clock.Now()
	rec := Lease{Holder: e.Identity, AcquiredAt: now, RenewedAt: now, TTLSeconds: e.LeaseTTL.Seconds()}
	b, _ := json.Marshal(rec)
	entry, err := e.KV.Get(ctx, e.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := e.KV.Create(ctx, e.Key, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, time.Time{}, nil // somebody else won the race
		}
		if err != nil {
			return 0, time.Time{}, err
		}
		return rev, now, nil
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	var cur Lease
	if err := json.Unmarshal(entry.Value(), &cur); err != nil {
		e.Log.Warn("leader election: unreadable lease record; taking it over once expired", "error", err)
	}
	ttl := time.Duration(cur.TTLSeconds * float64(time.Second))
	if ttl == 0 {
		ttl = e.LeaseTTL
	}
	if cur.Holder != e.Identity {
		if entry.Revision() != seen.rev {
			*seen = leaseSighting{rev: entry.Revision(), at: now}
			return 0, time.Time{}, nil // renewed (or new) since we last looked
		}
		if now.Before(seen.at.Add(ttl)) {
			return 0, time.Time{}, nil // held and not expired
		}
	}
	rev, err := e.KV.Update(ctx, e.Key, b, entry.Revision())
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, time.Time{}, nil
		}
		return 0, time.Time{}, err
	}
	return rev, now, nil
}

func (e *LeaderElector) renew(ctx context.Context, rev uint64, acquired, now time.Time) (uint64, error) {
	b, _ := json.Marshal(Lease{Holder: e.Identity, AcquiredAt: acquired, RenewedAt: now, TTLSeconds: e.LeaseTTL.Seconds()})
	// A revision conflict (jetstream.ErrKeyRevisionMismatch) means another
	// controller wrote the lease: it is no longer ours. nats.go reports every
	// failed compare-and-set of Update so, on R1 and replicated buckets alike;
	// ErrKeyExists would miss the conflicts of production's R3 lease bucket
	// (code 10164, not 10071).
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
