package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/v1alpha1"
)

// EventType says what happened to an object.
type EventType string

// Event types.
const (
	// Added: the object exists (initial state) or appeared, or now matches the
	// watch's selector.
	Added EventType = "Added"
	// Modified: the stored object changed.
	Modified EventType = "Modified"
	// Deleted: the object is gone, or no longer matches the watch's selector.
	Deleted EventType = "Deleted"
	// Synced marks the end of the initial state: every object that existed
	// when the watch started has been sent as Added.
	Synced EventType = "Synced"
)

// Event is one change seen by a Watcher.
type Event struct {
	Type EventType
	// Object is the object after the change, without status. For a deletion
	// it is the last state the watcher saw, with the resourceVersion of the
	// deletion; for an object that left the selection, its new state. Nil
	// for Synced.
	Object *v1alpha1.ServingApp
}

// Watcher delivers the events of one Watch until stopped.
type Watcher struct {
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// Events returns the channel of events. It is closed when the watch ends:
// after Stop, when the context given to Watch is done, or on a failure that
// Err reports.
func (w *Watcher) Events() <-chan Event { return w.events }

// Stop ends the watch and waits until its goroutine has exited, which
// includes deleting the server-side consumer (bounded at 2s when the server
// is unreachable). It is safe to call more than once and from any goroutine.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
}

// Err returns why the watch ended on its own, once Events is closed; nil
// after Stop or cancellation.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Watch sends the current state of the objects selected by opts as Added
// events, then one Synced event, then every Added, Modified and Deleted in
// the order of the store's revisions. Events carry no status: status writes
// are not spec changes and are not watched.
//
// The watch survives NATS disconnects and server restarts: it resumes after
// the last revision it delivered, so no change is lost. The spec bucket
// keeps Options.SpecHistory revisions per object; an object that changed
// more often than that while the watcher lagged (or was disconnected) is
// delivered from the oldest revision still kept, so its final state always
// arrives. The watcher keeps the last state of every selected object, to
// fill Deleted events.
func (s *Store) Watch(ctx context.Context, opts ListOptions) (*Watcher, error) {
	filter, sel, err := opts.filter()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	oc, err := s.js.OrderedConsumer(ctx, s.specStream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{s.specPrefix + filter},
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("watch: create consumer on %s: %w", s.specStream, err)
	}
	// The ordered consumer re-creates its server-side consumer after a
	// reconnect, a server restart or missed heartbeats, starting after the
	// last stream sequence it delivered, and checks that none is skipped.
	it, err := oc.Messages()
	if err != nil {
		return nil, fmt.Errorf("watch: consume %s: %w", s.specStream, err)
	}
	var initPending uint64
	if info := oc.CachedInfo(); info != nil {
		initPending = info.NumPending
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &Watcher{events: make(chan Event), cancel: cancel, done: make(chan struct{})}
	r := &watchRun{
		store:       s,
		w:           w,
		it:          it,
		oc:          oc,
		sel:         sel,
		known:       map[string]*v1alpha1.ServingApp{},
		initPending: initPending,
	}
	go r.run(wctx)
	return w, nil
}

// watchRun is the state of one watch, owned by its goroutine.
type watchRun struct {
	store       *Store
	w           *Watcher
	it          jetstream.MessagesContext
	oc          jetstream.Consumer
	sel         Selector
	known       map[string]*v1alpha1.ServingApp // last state of each selected object
	initPending uint64
	delivered   uint64
	synced      bool
}

func (r *watchRun) run(ctx context.Context) {
	defer close(r.w.done)
	defer close(r.w.events)
	defer r.cleanup()
	if r.initPending == 0 && !r.sync(ctx) {
		return
	}
	for {
		msg, err := r.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() == nil {
				r.fail(fmt.Errorf("watch %s: %w", r.store.specStream, err))
			}
			return
		}
		md, err := msg.Metadata()
		if err != nil {
			r.fail(fmt.Errorf("watch %s: read message metadata: %w", r.store.specStream, err))
			return
		}
		if ev, ok := r.translate(msg, md.Sequence.Stream); ok && !r.send(ctx, ev) {
			return
		}
		r.delivered++
		if !r.synced && (md.NumPending == 0 || r.delivered >= r.initPending) && !r.sync(ctx) {
			return
		}
	}
}

func (r *watchRun) sync(ctx context.Context) bool {
	r.synced = true
	return r.send(ctx, Event{Type: Synced})
}

func (r *watchRun) send(ctx context.Context, ev Event) bool {
	select {
	case r.w.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *watchRun) fail(err error) {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	r.w.err = err
}

// cleanup stops the iterator and deletes the server-side consumer instead of
// leaving it to expire.
func (r *watchRun) cleanup() {
	r.it.Stop()
	info := r.oc.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.store.js.DeleteConsumer(ctx, r.store.specStream, info.Name)
}

// translate turns a stream message into an event, tracking which objects the
// watch has reported. It reports false for messages that concern no selected
// object.
func (r *watchRun) translate(msg jetstream.Msg, rev uint64) (Event, bool) {
	key := strings.TrimPrefix(msg.Subject(), r.store.specPrefix)
	prev, wasKnown := r.known[key]
	if isDeletion(msg) {
		if !wasKnown {
			return Event{}, false
		}
		delete(r.known, key)
		gone := prev.DeepCopy()
		gone.Metadata.ResourceVersion = strconv.FormatUint(rev, 10)
		return Event{Type: Deleted, Object: gone}, true
	}
	app, err := decodeSpec(msg.Data(), rev)
	if err != nil {
		r.store.log.Error("watch: skipping a stored object that cannot be decoded", "key", key, "revision", rev, "error", err)
		return Event{}, false
	}
	if !r.sel.Matches(app.Metadata.Labels) {
		if !wasKnown {
			return Event{}, false
		}
		delete(r.known, key)
		return Event{Type: Deleted, Object: app}, true
	}
	r.known[key] = app
	if wasKnown {
		return Event{Type: Modified, Object: app.DeepCopy()}, true
	}
	return Event{Type: Added, Object: app.DeepCopy()}, true
}

// KV headers that mark a deletion (see the JetStream KV specification, ADR-8).
const (
	kvOperationHeader = "KV-Operation"
	markerReason      = jetstream.MarkerReasonHeader
)

func isDeletion(msg jetstream.Msg) bool {
	h := msg.Headers()
	if h == nil {
		return false
	}
	switch h.Get(kvOperationHeader) {
	case "DEL", "PURGE":
		return true
	}
	switch h.Get(markerReason) {
	case "MaxAge", "Purge", "Remove":
		return true
	}
	return false
}
