package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
)

// auditQuery says which audit events to read and how far.
type auditQuery struct {
	// subjects are the subject filters; the server reads only those.
	subjects []string
	// since selects events stored at or after it (zero: from the first);
	// the server seeks to it by time, without reading what lies before.
	since time.Time
	// until ends the read at the first event stored at or after it (zero: none).
	until time.Time
	// user keeps events whose principal has this email (any case) or subject.
	user string
	// follow keeps reading new events after the replay until ctx ends.
	follow bool
	// envelopeOnly skips decoding the data (json and ocsf output without
	// --user need only the envelope), which nearly doubles export speed.
	envelopeOnly bool
}

// auditRecord is one audit event read back from the stream.
type auditRecord struct {
	raw   []byte // the CloudEvent as stored
	env   audit.CloudEvent
	typ   audit.EventType
	event audit.AuditEvent
}

// readBatch is how many messages the ordered consumer keeps in flight.
const readBatch = 1024

// readAudit reads the events q selects in stream order and hands each to
// emit, with more set when further messages are already waiting (so a
// writer can batch its output and flush at the tail). It uses an ephemeral
// ordered consumer (no acks, memory storage, deleted when it ends), so the
// stream is left as it was. Without follow it ends at the last event stored
// when it started; with follow it runs until ctx ends, which is not an error.
// It returns how many events it emitted.
func readAudit(ctx context.Context, js jetstream.JetStream, q auditQuery, emit func(r auditRecord, more bool) error) (int, error) {
	s, err := js.Stream(ctx, audit.AuditStream)
	if err != nil {
		return 0, fmt.Errorf("open stream %s: %w", audit.AuditStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", audit.AuditStream, err)
	}
	last := info.State.LastSeq
	if last == 0 && !q.follow {
		return 0, nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: q.subjects, InactiveThreshold: 30 * time.Second}
	if !q.since.IsZero() {
		start := q.since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", audit.AuditStream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(readBatch))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", audit.AuditStream, err)
	}
	defer func() {
		it.Stop()
		// The server would forget the consumer after InactiveThreshold;
		// delete it now so the stream is left exactly as it was.
		if ci := cons.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = s.DeleteConsumer(dctx, ci.Name)
			cancel()
		}
	}()
	if ci := cons.CachedInfo(); !q.follow && ci != nil && ci.NumPending == 0 {
		return 0, nil
	}
	n := 0
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return n, nil
			}
			return n, fmt.Errorf("read %s: %w", audit.AuditStream, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return n, fmt.Errorf("read %s: %w", audit.AuditStream, err)
		}
		if !q.until.IsZero() && !meta.Timestamp.Before(q.until) {
			return n, nil
		}
		done := !q.follow && (meta.NumPending == 0 || meta.Sequence.Stream >= last)
		r, err := q.decode(m.Data())
		if err == nil && q.matchUser(r.event) {
			if err := emit(r, meta.NumPending > 0 && !done); err != nil {
				return n, err
			}
			n++
		}
		if done {
			return n, nil
		}
	}
}

// decode reads a message of the stream; messages that are not audit
// events give an error.
func (q auditQuery) decode(data []byte) (auditRecord, error) {
	if !q.envelopeOnly || q.user != "" {
		env, typ, ev, err := audit.DecodeAuditEvent(data)
		return auditRecord{raw: data, env: env, typ: typ, event: ev}, err
	}
	var env audit.CloudEvent
	if err := json.Unmarshal(data, &env); err != nil {
		return auditRecord{}, err
	}
	short, ok := strings.CutPrefix(env.Type, audit.AuditEventTypePrefix)
	if typ := audit.EventType(short); ok && typ.Valid() {
		return auditRecord{raw: data, env: env, typ: typ}, nil
	}
	return auditRecord{}, audit.ErrNotAuditEvent
}

func (q auditQuery) matchUser(ev audit.AuditEvent) bool {
	if q.user == "" {
		return true
	}
	u := ev.Principal()
	return u != nil && (strings.EqualFold(u.EmailAddr, q.user) || u.UID == q.user)
}
