package controller

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/api/store"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
)

// Defaults of Options.
const (
	DefaultWorkers = 4
	DefaultResync  = 10 * time.Minute
)

// KeyReconciler converges one key. Reconciler implements it; tests use small fakes.
type KeyReconciler interface {
	Reconcile(ctx context.Context, key string) (Result, error)
}

// Options configure a Controller. Zero values take the defaults.
type Options struct {
	Workers int
	// Resync is the period of full resyncs, jittered by ±10%.
	Resync time.Duration
	// Jitter returns a random duration in [-d, d]; tests make it deterministic.
	Jitter    func(d time.Duration) time.Duration
	BaseDelay time.Duration
	MaxDelay  time.Duration
	Clock     clock.Clock
	Log       *slog.Logger
	Metrics   *Metrics
	// Elector, when set, makes the controller reconcile only while it leads.
	Elector *LeaderElector
	// Orphans, when set, collects resources of deleted apps after each resync.
	Orphans  OrphanCollector
	Recorder model.Recorder // for orphan collection events
}

// Controller runs the event path: sources (store watch, periodic resync) →
// queue → workers → reconciler.
type Controller struct {
	store Store
	rec   KeyReconciler
	opts  Options

	mu    sync.Mutex
	queue *Queue
}

// New returns a controller that reconciles the objects of st with rec.
func New(st Store, rec KeyReconciler, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Jitter == nil {
		opts.Jitter = func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return time.Duration(rand.Int64N(int64(2*d)+1)) - d
		}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Controller{store: st, rec: rec, opts: opts}
}

// Queue returns the queue of the current leadership term, or nil when not leading.
func (c *Controller) Queue() *Queue {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queue
}

// Run reconciles until ctx is done, then stops taking work and lets in-flight
// reconciles finish. With an Elector it reconciles only while leading and
// returns ErrLeadershipLost (possibly wrapped) if the lease is lost; the
// process must then exit, as reconciles may still be running.
func (c *Controller) Run(ctx context.Context) error {
	if c.opts.Elector == nil {
		// Without election this controller is the only one: it leads for as
		// long as it runs, and the gauge says so, as /readyz does.
		c.opts.Metrics.Leader.Set(1)
		defer c.opts.Metrics.Leader.Set(0)
		c.run(ctx, context.WithoutCancel(ctx))
		return nil
	}
	e := c.opts.Elector
	prev := e.OnChange
	e.OnChange = func(leading bool) {
		if leading {
			c.opts.Metrics.Leader.Set(1)
		} else {
			c.opts.Metrics.Leader.Set(0)
		}
		if prev != nil {
			prev(leading)
		}
	}
	return e.Run(ctx, c.run)
}

// run serves one term: stop ends intake, work bounds the reconciles themselves.
func (c *Controller) run(stop, work context.Context) {
	q := NewQueue(c.opts.Clock, c.opts.BaseDelay, c.opts.MaxDelay)
	c.mu.Lock()
	c.queue = q
	c.mu.Unlock()
	c.opts.Metrics.queue.Store(q)
	defer func() {
		c.mu.Lock()
		c.queue = nil
		c.mu.Unlock()
		c.opts.Metrics.queue.Store(nil)
	}()

	var wg sync.WaitGroup
	wg.Go(func() { c.watch(stop, q) })
	wg.Go(func() { c.resync(stop, q) })
	var workers sync.WaitGroup
	for range c.opts.Workers {
		workers.Go(func() { c.work(work, q) })
	}
	<-stop.Done()
	wg.Wait()
	q.ShutDownAndWait()
	workers.Wait()
}

// watch turns store events into keys. The initial state (before Synced) is
// resync work; changes after it are people's changes and jump the queue.
func (c *Controller) watch(ctx context.Context, q *Queue) {
	for attempt := 0; ; attempt++ {
		w, err := c.store.Watch(ctx, store.ListOptions{})
		if err == nil {
			attempt = 0
			synced := false
			seen := map[string]changeMark{}
			for ev := range w.Events() {
				switch ev.Type {
				case store.Synced:
					synced = true
				case store.Added, store.Modified, store.Deleted:
					key := ev.Object.Key()
					mark := markOf(ev)
					p := PriorityResync
					if synced && (ev.Type != store.Modified || mark != seen[key]) {
						p = PriorityChange
					}
					if ev.Type == store.Deleted {
						delete(seen, key)
					} else {
						seen[key] = mark
					}
					q.Add(key, p)
				}
			}
			err = w.Err()
		}
		if ctx.Err() != nil {
			return
		}
		d := min(time.Second<<min(attempt, 5), 30*time.Second)
		c.opts.Log.Warn("store watch ended; starting again", "error", err, "retryIn", d)
		if !sleep(ctx, c.opts.Clock, d) {
			return
		}
	}
}

// changeMark is what a person's change moves: the generation (spec, labels,
// annotations) and whether deletion was asked. A modification that moves
// neither is the controller's own write (a finalizer added or removed), and
// is queued as resync work so that, on a cold start with many apps, the
// controller's echoes do not queue ahead of an admin's apply.
type changeMark struct {
	generation int64
	deleting   bool
}

func markOf(ev store.Event) changeMark {
	return changeMark{generation: ev.Object.Metadata.Generation, deleting: ev.Object.Metadata.DeletionTimestamp != nil}
}

// resync queues every object at low priority every Resync ±10%, then collects orphans.
func (c *Controller) resync(ctx context.Context, q *Queue) {
	for {
		period := c.opts.Resync + c.opts.Jitter(c.opts.Resync/10)
		if !sleep(ctx, c.opts.Clock, period) {
			return
		}
		apps, err := c.store.List(ctx, store.ListOptions{})
		if err != nil {
			c.opts.Log.Warn("resync: list", "error", err)
			continue
		}
		live := make([]model.Ref, 0, len(apps))
		for _, a := range apps {
			q.Add(a.Key(), PriorityResync)
			live = append(live, model.Ref{Namespace: a.Metadata.Namespace, Name: a.Metadata.Name, UID: a.Metadata.UID})
		}
		if c.opts.Orphans != nil && c.opts.Recorder != nil {
			if err := c.opts.Orphans.CollectOrphans(ctx, live, c.opts.Recorder); err != nil {
				c.opts.Log.Warn("resync: collect orphans", "error", err)
			}
		}
	}
}

func (c *Controller) work(ctx context.Context, q *Queue) {
	for {
		key, prio, ok := q.Get()
		if !ok {
			return
		}
		c.reconcileOne(ctx, q, key, prio)
	}
}

func (c *Controller) reconcileOne(ctx context.Context, q *Queue, key string, prio Priority) {
	defer q.Done(key)
	start := c.opts.Clock.Now()
	res, err := c.rec.Reconcile(ctx, key)
	c.opts.Metrics.Duration.Observe(c.opts.Clock.Now().Sub(start).Seconds())
	var terminal *model.TerminalError
	switch {
	case ctx.Err() != nil:
		// Leadership lost mid-reconcile: the next leader converges the key.
		c.opts.Metrics.Reconciles.WithLabelValues("aborted").Inc()
	case errors.As(err, &terminal):
		c.opts.Metrics.Reconciles.WithLabelValues("terminal").Inc()
		d := q.AddMaxBackoff(key, prio)
		c.opts.Log.Warn("reconcile failed; not retrying soon", "key", key, "reason", terminal.Reason, "error", err, "retryIn", d)
	case err != nil:
		c.opts.Metrics.Reconciles.WithLabelValues("error").Inc()
		d := q.AddRateLimited(key, prio)
		c.opts.Log.Warn("reconcile failed; retrying", "key", key, "error", err, "retryIn", d)
	case res.RequeueAfter > 0:
		c.opts.Metrics.Reconciles.WithLabelValues("requeue").Inc()
		q.Forget(key)
		q.AddAfter(key, res.RequeueAfter, PriorityResync)
	default:
		c.opts.Metrics.Reconciles.WithLabelValues("success").Inc()
		q.Forget(key)
	}
}
