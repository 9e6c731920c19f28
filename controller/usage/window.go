package usage

import (
	"cmp"
	"slices"
	"time"
)

// Span is the length of the sliding usage window.
const Span = 24 * time.Hour

// Counts are the audit events of one app over some span of time.
type Counts struct {
	// Logins are login.succeeded events.
	Logins int64 `json:"l,omitempty"`
	// FailedLogins are login.failed events.
	FailedLogins int64 `json:"f,omitempty"`
	// Invocations are invocation.completed and invocation.failed events.
	Invocations int64 `json:"i,omitempty"`
	// Errors are invocation.failed events.
	Errors int64 `json:"e,omitempty"`
}

func (c *Counts) add(d Counts) {
	c.Logins += d.Logins
	c.FailedLogins += d.FailedLogins
	c.Invocations += d.Invocations
	c.Errors += d.Errors
}

func (c *Counts) sub(d Counts) {
	c.Logins -= d.Logins
	c.FailedLogins -= d.FailedLogins
	c.Invocations -= d.Invocations
	c.Errors -= d.Errors
}

// Bucket is the counts of one minute.
type Bucket struct {
	// Minute is the start of the minute in minutes since the Unix epoch.
	Minute int64 `json:"m"`
	Counts
}

// end is when the bucket's minute ends.
func (b Bucket) end() time.Time { return time.Unix((b.Minute+1)*60, 0) }

// unixMinute is the minute of t, in minutes since the Unix epoch (floored).
func unixMinute(t time.Time) int64 {
	s := t.Unix()
	m := s / 60
	if s%60 < 0 {
		m--
	}
	return m
}

// Window counts events in minute buckets over a sliding Span, by event
// time. A minute counts until its end is Span or more ago, so the window
// reaches back between Span and Span plus one minute: counts never drop an
// event younger than Span. The zero value is an empty window.
type Window struct {
	// Buckets are sorted by Minute, without empty or expired ones once Advance ran.
	Buckets []Bucket `json:"buckets,omitempty"`
	total   Counts
	totaled bool
}

func (w *Window) ensureTotal() {
	if w.totaled {
		return
	}
	w.total = Counts{}
	for _, b := range w.Buckets {
		w.total.add(b.Counts)
	}
	w.totaled = true
}

// Add counts c in the minute of t as seen at now. An event from the future
// (a clock ahead of ours) counts in now's minute; an event whose minute has
// left the window does not count, and Add reports false.
func (w *Window) Add(now, t time.Time, c Counts) bool {
	w.ensureTotal()
	if t.After(now) {
		t = now
	}
	m := unixMinute(t)
	if !(Bucket{Minute: m}).end().After(now.Add(-Span)) {
		return false
	}
	n := len(w.Buckets)
	switch {
	case n > 0 && w.Buckets[n-1].Minute == m:
		w.Buckets[n-1].add(c)
	case n == 0 || w.Buckets[n-1].Minute < m:
		w.Buckets = append(w.Buckets, Bucket{Minute: m, Counts: c})
	default: // a late event: find its minute
		i, found := slices.BinarySearchFunc(w.Buckets, m, func(b Bucket, m int64) int { return cmp.Compare(b.Minute, m) })
		if found {
			w.Buckets[i].add(c)
		} else {
			w.Buckets = slices.Insert(w.Buckets, i, Bucket{Minute: m, Counts: c})
		}
	}
	w.total.add(c)
	return true
}

// Advance drops the minutes that ended Span or more before now and reports
// whether the totals changed.
func (w *Window) Advance(now time.Time) bool { return w.DropBefore(now.Add(-Span)) }

// DropBefore drops the minutes that ended at or before t and reports whether
// the totals changed; the minute t falls in is kept.
func (w *Window) DropBefore(t time.Time) bool {
	w.ensureTotal()
	i := 0
	for i < len(w.Buckets) && !w.Buckets[i].end().After(t) {
		w.total.sub(w.Buckets[i].Counts)
		i++
	}
	if i == 0 {
		return false
	}
	w.Buckets = slices.Delete(w.Buckets, 0, i)
	return true
}

// Total returns the counts of the whole window as of the last Add or Advance.
func (w *Window) Total() Counts {
	w.ensureTotal()
	return w.total
}

// Minute returns the counts of t's minute.
func (w *Window) Minute(t time.Time) Counts {
	m := unixMinute(t)
	for i := len(w.Buckets) - 1; i >= 0; i-- {
		switch b := w.Buckets[i]; {
		case b.Minute == m:
			return b.Counts
		case b.Minute < m:
			return Counts{}
		}
	}
	return Counts{}
}

// InvocationsPerMinute is the demand the autoscaler acts on: the larger of
// the last complete minute and the current one, so a burst scales up before
// its minute ends and a quiet start of a minute does not hide the last one.
func (w *Window) InvocationsPerMinute(now time.Time) int64 {
	return max(w.Minute(now.Add(-time.Minute)).Invocations, w.Minute(now).Invocations)
}
