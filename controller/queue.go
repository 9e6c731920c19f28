package controller

import (
	"container/list"
	"sync"
	"time"

	"github.com/servingapp/servingapp/internal/clock"
)

// Priority orders queued keys: changes people made are served before resync work.
type Priority int

// Priorities, lowest first.
const (
	PriorityResync Priority = iota // periodic resync and retries of resync work
	PriorityChange                 // a watch event: somebody applied, deleted or edited
)

// Default backoff after failures: 5 ms doubling to 5 min.
const (
	DefaultBaseDelay = 5 * time.Millisecond
	DefaultMaxDelay  = 5 * time.Minute
)

// Queue holds keys waiting to be reconciled. It guarantees:
//   - a key is queued at most once (duplicates merge, keeping the higher priority);
//   - a key is never handed out twice at once: a key added while being
//     processed is held back and queued again when Done is called;
//   - changes (PriorityChange) are served before resync work, FIFO within a priority;
//   - failing keys back off exponentially, per key.
type Queue struct {
	clock     clock.Clock
	baseDelay time.Duration
	maxDelay  time.Duration

	mu         sync.Mutex
	cond       *sync.Cond
	lists      [2]*list.List // by Priority
	queued     map[string]*list.Element
	prio       map[string]Priority
	processing map[string]bool
	dirty      map[string]Priority // added while processing
	delayed    map[string]delayedAdd
	failures   map[string]int
	shutdown   bool
}

type delayedAdd struct {
	at    time.Time
	prio  Priority
	timer clock.Timer
}

// NewQueue returns an empty queue that uses clk for delays and backoff.
// Zero delays mean the defaults.
func NewQueue(clk clock.Clock, baseDelay, maxDelay time.Duration) *Queue {
	if baseDelay <= 0 {
		baseDelay = DefaultBaseDelay
	}
	if maxDelay <= 0 {
		maxDelay = DefaultMaxDelay
	}
	q := &Queue{
		clock:      clk,
		baseDelay:  baseDelay,
		maxDelay:   maxDelay,
		lists:      [2]*list.List{list.New(), list.New()},
		queued:     map[string]*list.Element{},
		prio:       map[string]Priority{},
		processing: map[string]bool{},
		dirty:      map[string]Priority{},
		delayed:    map[string]delayedAdd{},
		failures:   map[string]int{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now at priority p.
func (q *Queue) Add(key string, p Priority) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key, p)
}

func (q *Queue) addLocked(key string, p Priority) {
	if q.shutdown {
		return
	}
	if q.processing[key] {
		if old, ok := q.dirty[key]; !ok || p > old {
			q.dirty[key] = p
		}
		return
	}
	if el, ok := q.queued[key]; ok {
		if p <= q.prio[key] {
			return
		}
		q.lists[q.prio[key]].Remove(el) // promote: a person is waiting for it now
	}
	q.queued[key] = q.lists[p].PushBack(key)
	q.prio[key] = p
	q.cond.Signal()
}

// AddAfter queues key at priority p once d has passed. If the key is already
// due earlier, the earlier time wins, and it keeps the higher of the two
// priorities: a later, more urgent add is never lost to an earlier one.
func (q *Queue) AddAfter(key string, d time.Duration, p Priority) {
	if d <= 0 {
		q.Add(key, p)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := q.clock.Now().Add(d)
	if old, ok := q.delayed[key]; ok {
		if !old.at.After(at) {
			if p > old.prio {
				old.prio = p
				q.delayed[key] = old
			}
			return
		}
		old.timer.Stop()
		p = max(p, old.prio)
	}
	var t clock.Timer
	t = q.clock.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		prio := p
		if cur, ok := q.delayed[key]; ok && cur.timer == t {
			prio = cur.prio
			delete(q.delayed, key)
		}
		q.addLocked(key, prio)
	})
	q.delayed[key] = delayedAdd{at: at, prio: p, timer: t}
}

// AddRateLimited queues key after its backoff delay, which doubles with each
// consecutive failure up to the maximum, and returns that delay.
func (q *Queue) AddRateLimited(key string, p Priority) time.Duration {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	d := q.backoff(n)
	q.AddAfter(key, d, p)
	return d
}

// AddMaxBackoff queues key after the maximum delay: for terminal errors that a
// retry cannot fix, so the key does not hot-loop while an admin fixes the cause.
func (q *Queue) AddMaxBackoff(key string, p Priority) time.Duration {
	q.AddAfter(key, q.maxDelay, p)
	return q.maxDelay
}

func (q *Queue) backoff(failures int) time.Duration {
	d := q.baseDelay
	for i := 0; i < failures; i++ {
		d *= 2
		if d >= q.maxDelay {
			return q.maxDelay
		}
	}
	return d
}

// Forget resets key's backoff after a success.
func (q *Queue) Forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, key)
}

// Failures reports how many consecutive failures key has had.
func (q *Queue) Failures(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failures[key]
}

// Get blocks until a key is available and marks it processing. ok is false once
// the queue is shut down and empty of ready work.
func (q *Queue) Get() (key string, p Priority, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.lists[PriorityChange].Len() == 0 && q.lists[PriorityResync].Len() == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", 0, false
	}
	for _, pr := range []Priority{PriorityChange, PriorityResync} {
		if el := q.lists[pr].Front(); el != nil {
			key = q.lists[pr].Remove(el).(string)
			delete(q.queued, key)
			delete(q.prio, key)
			q.processing[key] = true
			return key, pr, true
		}
	}
	panic("unreachable: a list was non-empty")
}

// Done marks key finished. If it was added while processing, it is queued again.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if p, ok := q.dirty[key]; ok {
		delete(q.dirty, key)
		q.addLocked(key, p)
	}
	q.cond.Broadcast() // wake ShutDownAndWait
}

// Len returns how many keys are ready (not counting delayed or processing ones).
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lists[0].Len() + q.lists[1].Len()
}

// ShutDownAndWait stops handing out keys and waits until every key being
// processed is Done, so in-flight reconciles finish.
func (q *Queue) ShutDownAndWait() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for _, d := range q.delayed {
		d.timer.Stop()
	}
	q.delayed = map[string]delayedAdd{}
	q.cond.Broadcast()
	for len(q.processing) > 0 {
		q.cond.Wait()
	}
}
