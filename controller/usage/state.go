package usage

import (
	"encoding/json"
	"fmt"
	"time"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
)

// record is what the usage bucket stores for one app, under the store key
// "<namespace>.<name>". It is written before the app's status and before
// any message folded into it is acknowledged, so a restarted controller
// resumes from it exactly.
type record struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// UID is the app incarnation the counts belong to: an app deleted and
	// created again under its name is another app and starts from zero.
	UID string `json:"uid,omitempty"`
	// Seq is the highest stream sequence folded into the record. Messages
	// of the app at or below it are already counted.
	Seq    uint64 `json:"seq"`
	Window Window `json:"window"`
	// LastInvocation is the event time of the app's latest invocation.
	LastInvocation *time.Time `json:"lastInvocation,omitempty"`
	// Recent holds the ids of the app's last events, oldest first, to
	// recognise an event the stream stored twice under two sequences.
	Recent   []string    `json:"recent,omitempty"`
	Lockouts Lockouts    `json:"lockouts,omitzero"`
	Scale    *ScaleState `json:"scale,omitempty"`
}

// app is the engine's working state of one app.
type app struct {
	ref    model.Ref
	rec    record
	rev    uint64 // KV revision of the stored record; 0: never stored
	recent recentIDs
	// pending are the reply subjects of messages folded (or skipped) since
	// the last flush: acknowledged after the next status write.
	pending []string
	// dirty: rec changed since it was last stored.
	dirty bool
	// written is the usage last written to status in this term.
	written   v1.Usage
	wroteOnce bool
	lastWrite time.Time
	// blocksApplied: the platform has the current blocked addresses.
	blocksApplied bool
	// scaleAsserted: the platform was given the desired count in this term.
	scaleAsserted bool
	// scaleFailing: the last SetDesiredCount failed (its event is recorded).
	scaleFailing bool
}

func newApp(ns, name string, recentSize int) *app {
	a := &app{ref: model.Ref{Namespace: ns, Name: name}, rec: record{Namespace: ns, Name: name}}
	a.recent = newRecentIDs(recentSize, nil)
	a.blocksApplied = true // nothing blocked yet
	return a
}

func decodeApp(data []byte, rev uint64, recentSize int) (*app, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode usage record at revision %d: %w", rev, err)
	}
	a := &app{ref: model.Ref{Namespace: r.Namespace, Name: r.Name}, rec: r, rev: rev}
	a.recent = newRecentIDs(recentSize, r.Recent)
	a.rec.Recent = nil
	a.blocksApplied = len(r.Lockouts.Blocked) == 0
	return a, nil
}

func (a *app) encode() ([]byte, error) {
	r := a.rec
	r.Recent = a.recent.list()
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode usage record of %s: %w", a.ref, err)
	}
	return b, nil
}

// usage is the app's status.usage now (after Window.Advance).
func (a *app) usage() v1.Usage {
	c := a.rec.Window.Total()
	u := v1.Usage{Logins24h: c.Logins, FailedLogins24h: c.FailedLogins, Invocations24h: c.Invocations, Errors24h: c.Errors}
	if t := a.rec.LastInvocation; t != nil {
		tt := t.UTC()
		u.LastInvocationTime = &tt
	}
	return u
}

func usageEqual(a, b v1.Usage) bool {
	ta, tb := a.LastInvocationTime, b.LastInvocationTime
	a.LastInvocationTime, b.LastInvocationTime = nil, nil
	return a == b && (ta == nil) == (tb == nil) && (ta == nil || ta.Equal(*tb))
}

// adopt ties the record to the app incarnation s. A record left by an
// earlier incarnation (the app was deleted and created again under its name)
// keeps its stream position, so no event is counted twice, and forgets what
// happened before s was created: usage, last invocation, lockouts, scaling.
// A record without a UID (written before records had one, or started by
// events before the app was listed) is simply claimed.
func (a *app) adopt(s *v1.ServingApp) {
	uid := s.Metadata.UID
	switch {
	case uid == "" || a.rec.UID == uid:
		return
	case a.rec.UID == "":
		a.rec.UID, a.dirty = uid, true
		return
	}
	a.rec.UID = uid
	if created := s.Metadata.CreationTimestamp; created != nil {
		a.rec.Window.DropBefore(*created)
		if last := a.rec.LastInvocation; last != nil && last.Before(*created) {
			a.rec.LastInvocation = nil
		}
	} else {
		a.rec.Window, a.rec.LastInvocation = Window{}, nil
	}
	a.rec.Lockouts, a.rec.Scale = Lockouts{}, nil
	a.dirty, a.wroteOnce, a.blocksApplied, a.scaleAsserted, a.scaleFailing = true, false, false, false, false
}

// idle reports whether the app has nothing left to remember or do.
func (a *app) idle() bool {
	return len(a.pending) == 0 && !a.dirty && a.rec.Window.Total() == (Counts{}) && a.rec.Lockouts.empty()
}

// recentIDs remembers the last ids seen, in a ring.
type recentIDs struct {
	ring []string
	next int
	full bool
	set  map[string]struct{}
}

func newRecentIDs(size int, ids []string) recentIDs {
	r := recentIDs{ring: make([]string, max(size, 1)), set: make(map[string]struct{}, size)}
	for _, id := range ids {
		r.add(id)
	}
	return r
}

func (r *recentIDs) seen(id string) bool {
	_, ok := r.set[id]
	return ok
}

func (r *recentIDs) add(id string) {
	if r.full {
		delete(r.set, r.ring[r.next])
	}
	r.ring[r.next] = id
	r.set[id] = struct{}{}
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
}

// list returns the ids, oldest first.
func (r *recentIDs) list() []string {
	if !r.full {
		return append([]string(nil), r.ring[:r.next]...)
	}
	out := make([]string, 0, len(r.ring))
	out = append(out, r.ring[r.next:]...)
	return append(out, r.ring[:r.next]...)
}
