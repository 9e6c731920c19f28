package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ReconcileEventType is the CloudEvents type of controller events.
const ReconcileEventType = "io.servingapp.controller.reconcile"

// Severities of reconcile events, as in Kubernetes events.
const (
	SeverityNormal  = "Normal"
	SeverityWarning = "Warning"
)

// ReconcileEvent is what the controller did or found for one app. Messages
// never carry secrets or tokens.
type ReconcileEvent struct {
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
	Generation int64  `json:"generation,omitempty"`
	Severity   string `json:"severity"`
	// Reason is CamelCase: TaskDefinitionRegistered, RulesChanged, ReconcileFailed, ...
	Reason     string `json:"reason"`
	Message    string `json:"message"`
	Controller string `json:"controller,omitempty"`
}

// EventSubject is the subject of an app's reconcile events:
// servingapp.events.<namespace>.<name>.
func EventSubject(namespace, name string) string {
	return EventsSubjectRoot + "." + subjectToken(namespace) + "." + subjectToken(name)
}

// NewEventID returns a random event id (128 bits, hex).
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// EncodeReconcileEvent wraps ev in a CloudEvent.
func EncodeReconcileEvent(id string, at time.Time, ev ReconcileEvent) ([]byte, error) {
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	return json.Marshal(CloudEvent{
		SpecVersion:     SpecVersion,
		ID:              id,
		Source:          "/servingapp/controller/" + ev.Controller,
		Type:            ReconcileEventType,
		Subject:         ev.Namespace + "/" + ev.Name,
		Time:            at.UTC(),
		DataContentType: "application/json",
		Data:            data,
	})
}

// PublishReconcileEvent publishes ev on its subject with Nats-Msg-Id set to
// the event id, so a retried publish is stored once.
func PublishReconcileEvent(ctx context.Context, js jetstream.JetStream, id string, at time.Time, ev ReconcileEvent) error {
	b, err := EncodeReconcileEvent(id, at, ev)
	if err != nil {
		return fmt.Errorf("encode event %s for %s/%s: %w", ev.Reason, ev.Namespace, ev.Name, err)
	}
	if _, err := js.Publish(ctx, EventSubject(ev.Namespace, ev.Name), b, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("publish event %s for %s/%s: %w", ev.Reason, ev.Namespace, ev.Name, err)
	}
	return nil
}

// LastReconcileEvents returns up to n of the newest events of one app, oldest
// first, reading with ephemeral consumers that leave the stream as it is.
//
// JetStream reads a subject forwards only, and an app may have tens of
// thousands of events in the 30 days the stream keeps, so it does not read
// them all: it looks back from the end of the stream in growing windows of
// stream sequences until a window holds n events of the app (the server
// counts them, as the consumer's pending messages), then reads that window.
// An app with no more than n events is read from the start at once.
func LastReconcileEvents(ctx context.Context, js jetstream.JetStream, namespace, name string, n int) ([]CloudEvent, []ReconcileEvent, error) {
	s, err := js.Stream(ctx, EventsStream)
	if err != nil {
		return nil, nil, fmt.Errorf("open stream %s: %w", EventsStream, err)
	}
	subj := EventSubject(namespace, name)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil, nil, fmt.Errorf("read stream %s: %w", EventsStream, err)
	}
	total := info.State.Subjects[subj]
	if total == 0 || n <= 0 {
		return nil, nil, nil
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	window := uint64(64 * n)
	if total <= uint64(n) {
		window = last // all of them are wanted, so no smaller window will do
	}
	for ; ; window *= 8 {
		start := first
		if last > window && last-window > first {
			start = last - window
		}
		cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
			FilterSubject:     subj,
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       start,
			AckPolicy:         jetstream.AckNonePolicy,
			InactiveThreshold: time.Minute, // gone by itself if this process dies
			MemoryStorage:     true,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("read events of %s/%s: %w", namespace, name, err)
		}
		pending := cons.CachedInfo().NumPending
		if pending < uint64(n) && start > first {
			_ = s.DeleteConsumer(ctx, cons.CachedInfo().Name)
			continue // too few in this window: look further back
		}
		envs, evs, err := readLast(cons, pending, n)
		_ = s.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name)
		if err != nil {
			return nil, nil, fmt.Errorf("read events of %s/%s: %w", namespace, name, err)
		}
		return envs, evs, nil
	}
}

// readLast reads total messages from cons and keeps the last n events.
func readLast(cons jetstream.Consumer, total uint64, n int) ([]CloudEvent, []ReconcileEvent, error) {
	var (
		envs []CloudEvent
		evs  []ReconcileEvent
	)
	err := fetch(cons, total, func(m jetstream.Msg) {
		var ce CloudEvent
		var ev ReconcileEvent
		if json.Unmarshal(m.Data(), &ce) == nil && json.Unmarshal(ce.Data, &ev) == nil {
			envs = append(envs, ce)
			evs = append(evs, ev)
			if len(envs) > n {
				envs, evs = envs[1:], evs[1:]
			}
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return envs, evs, nil
}
