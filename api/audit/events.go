package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// EventType is the short type of a web app audit event, e.g. login.succeeded.
// It is the last part of the subject and, after AuditEventTypePrefix, the
// CloudEvents type.
type EventType string

// The audit event types the web apps publish.
const (
	// LoginSucceeded: a user signed in and a new session was created.
	LoginSucceeded EventType = "login.succeeded"
	// LoginFailed: a sign-in was refused; StatusDetail holds the Reason*.
	LoginFailed EventType = "login.failed"
	// Logout: a user signed out and the session was deleted.
	Logout EventType = "logout"
	// SessionRefreshed: the session's access token was refreshed.
	SessionRefreshed EventType = "session.refreshed"
	// SessionExpired: a session ended without logout; StatusDetail holds the
	// Expiry* reason.
	SessionExpired EventType = "session.expired"
	// InvocationCompleted: a serving endpoint answered an invocation.
	InvocationCompleted EventType = "invocation.completed"
	// InvocationFailed: an invocation failed; StatusCode holds the error code.
	InvocationFailed EventType = "invocation.failed"
)

// EventTypes lists every audit event type.
var EventTypes = []EventType{LoginSucceeded, LoginFailed, Logout, SessionRefreshed, SessionExpired, InvocationCompleted, InvocationFailed}

// AuditEventTypePrefix starts the CloudEvents type of every audit event:
// io.servingapp.audit.login.succeeded and so on.
const AuditEventTypePrefix = "io.servingapp.audit."

// CloudEventType returns the CloudEvents type of t.
func (t EventType) CloudEventType() string { return AuditEventTypePrefix + string(t) }

// Valid reports whether t is one of EventTypes.
func (t EventType) Valid() bool {
	for _, v := range EventTypes {
		if v == t {
			return true
		}
	}
	return false
}

// Reasons of login.failed events, in StatusDetail.
const (
	// ReasonStateMismatch: the callback's state is missing, unknown or already used.
	ReasonStateMismatch = "state_mismatch"
	// ReasonNonceMismatch: the ID token's nonce is not the one the login sent.
	ReasonNonceMismatch = "nonce_mismatch"
	// ReasonInvalidIDToken: the ID token is missing or fails verification
	// (signature, algorithm, iss, aud, exp, iat, at_hash).
	ReasonInvalidIDToken = "invalid_id_token"
	// ReasonAccessDenied: the identity provider answered error=access_denied
	// (the user or the provider said no).
	ReasonAccessDenied = "access_denied"
	// ReasonPolicyDenied: the identity policy (allowed email domains) refused the user.
	ReasonPolicyDenied = "policy_denied"
	// ReasonExchangeFailed: the code exchange or the identity lookup failed,
	// the signing keys could not be fetched (StatusCode keys_unavailable), or
	// the provider answered with another error= (StatusCode holds its code).
	ReasonExchangeFailed = "exchange_failed"
)

// Reasons of session.expired events, in StatusDetail.
const (
	// ExpiryIdle: the session was unused for longer than the idle timeout.
	ExpiryIdle = "idle_timeout"
	// ExpiryAbsolute: the session reached its absolute lifetime.
	ExpiryAbsolute = "absolute_timeout"
	// ExpiryRefreshRejected: the identity provider refused the refresh token
	// (invalid_grant), or there was none and the access token expired.
	ExpiryRefreshRejected = "refresh_rejected"
)

// AuditSubject is the subject of an app's audit events of type t:
// servingapp.audit.<namespace>.<name>.<type>. Types contain dots, so
// servingapp.audit.<ns>.<name>.login.> selects both login types and
// servingapp.audit.*.*.invocation.> every app's invocations.
func AuditSubject(namespace, name string, t EventType) string {
	return AuditSubjectRoot + "." + subjectToken(namespace) + "." + subjectToken(name) + "." + string(t)
}

// AuditAppSubjects is the subject filter of every audit event of one app.
func AuditAppSubjects(namespace, name string) string {
	return AuditSubjectRoot + "." + subjectToken(namespace) + "." + subjectToken(name) + ".>"
}

// AuditSource is the CloudEvents source of an app's audit events.
func AuditSource(namespace, name string) string {
	return "/servingapp/apps/" + namespace + "/" + name
}

// EncodeAuditEvent wraps ev in a CloudEvent of type t with the given id. The
// envelope's time is ev.Time; its subject is <namespace>/<name>.
func EncodeAuditEvent(id string, t EventType, ev AuditEvent) ([]byte, error) {
	if !t.Valid() {
		return nil, fmt.Errorf("encode audit event: unknown type %q", t)
	}
	app := ev.App()
	if app.Namespace == "" || app.Name == "" {
		return nil, fmt.Errorf("encode audit event %s: the event names no app", t)
	}
	ev.Metadata.UID = id
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode audit event %s: %w", t, err)
	}
	b, err := json.Marshal(CloudEvent{
		SpecVersion:     SpecVersion,
		ID:              id,
		Source:          AuditSource(app.Namespace, app.Name),
		Type:            t.CloudEventType(),
		Subject:         app.Namespace + "/" + app.Name,
		Time:            time.UnixMilli(ev.Time).UTC(),
		DataContentType: "application/json",
		DataSchema:      OCSFSchemaURL,
		Data:            data,
	})
	if err != nil {
		return nil, fmt.Errorf("encode audit event %s: %w", t, err)
	}
	return b, nil
}

// ErrNotAuditEvent is returned by DecodeAuditEvent for a CloudEvent that is
// not a web app audit event.
var ErrNotAuditEvent = errors.New("not a servingapp audit event")

// DecodeAuditEvent parses a message of the audit stream.
func DecodeAuditEvent(b []byte) (CloudEvent, EventType, AuditEvent, error) {
	var ce CloudEvent
	if err := json.Unmarshal(b, &ce); err != nil {
		return CloudEvent{}, "", AuditEvent{}, fmt.Errorf("decode audit event: %w", err)
	}
	t := EventType(strings.TrimPrefix(ce.Type, AuditEventTypePrefix))
	if !strings.HasPrefix(ce.Type, AuditEventTypePrefix) || !t.Valid() {
		return ce, "", AuditEvent{}, fmt.Errorf("decode audit event %s of type %q: %w", ce.ID, ce.Type, ErrNotAuditEvent)
	}
	var ev AuditEvent
	if err := json.Unmarshal(ce.Data, &ev); err != nil {
		return ce, t, AuditEvent{}, fmt.Errorf("decode audit event %s data: %w", ce.ID, err)
	}
	return ce, t, ev, nil
}

// StoredAuditEvent is an audit event as read back from the stream.
type StoredAuditEvent struct {
	// Sequence is the stream sequence number.
	Sequence uint64
	// Subject is the NATS subject it was published on.
	Subject string
	// MsgID is the Nats-Msg-Id header, equal to Envelope.ID.
	MsgID    string
	Envelope CloudEvent
	Type     EventType
	Event    AuditEvent
}

// ReadAuditEvents reads the audit events on subjects matching filter (for
// example AuditAppSubjects(ns, name), or AuditSubjectRoot+".>" for all),
// oldest first, stopping after limit events when limit > 0. It uses an
// ephemeral ordered consumer, which leaves the stream as it is. Messages that
// are not audit events are skipped.
func ReadAuditEvents(ctx context.Context, js jetstream.JetStream, filter string, limit int) ([]StoredAuditEvent, error) {
	s, err := js.Stream(ctx, AuditStream)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", AuditStream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", AuditStream, err)
	}
	var total uint64
	for _, n := range info.State.Subjects {
		total += n
	}
	if limit > 0 {
		total = min(total, uint64(limit))
	}
	if total == 0 {
		return nil, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, fmt.Errorf("read audit events %s: %w", filter, err)
	}
	// Delete the consumer at once rather than leave it to its inactivity
	// threshold: a caller polling this would otherwise pile up consumers
	// until the server's limit refuses new ones.
	defer func() { _ = s.DeleteConsumer(context.WithoutCancel(ctx), c.CachedInfo().Name) }()
	out := make([]StoredAuditEvent, 0, total)
	err = fetch(c, total, func(m jetstream.Msg) {
		ce, t, ev, err := DecodeAuditEvent(m.Data())
		if err != nil {
			return
		}
		meta, _ := m.Metadata()
		var seq uint64
		if meta != nil {
			seq = meta.Sequence.Stream
		}
		out = append(out, StoredAuditEvent{Sequence: seq, Subject: m.Subject(), MsgID: m.Headers().Get(jetstream.MsgIDHeader), Envelope: ce, Type: t, Event: ev})
	})
	if err != nil {
		return nil, fmt.Errorf("read audit events %s: %w", filter, err)
	}
	return out, nil
}

// fetch reads up to total messages from c in batches and passes each to
// each, stopping early when a batch comes back empty (the stream holds
// fewer than the caller counted).
func fetch(c jetstream.Consumer, total uint64, each func(jetstream.Msg)) error {
	for read := uint64(0); read < total; {
		batch, err := c.Fetch(int(min(total-read, 500)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			each(m)
		}
		if err := batch.Error(); err != nil && got == 0 {
			return err
		}
		if got == 0 {
			break
		}
		read += uint64(got)
	}
	return nil
}
