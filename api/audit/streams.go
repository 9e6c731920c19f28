package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and subject roots.
const (
	AuditStream  = "SERVINGAPP_AUDIT"
	EventsStream = "SERVINGAPP_EVENTS"

	AuditSubjectRoot  = "servingapp.audit"
	EventsSubjectRoot = "servingapp.events"
)

// StreamOptions size the streams. Zero values take the defaults.
type StreamOptions struct {
	// Replicas is 1 in dev mode and 3 in production.
	Replicas int
	// AuditMaxAge defaults to 400 days: a year of audit history plus margin.
	AuditMaxAge time.Duration
	// AuditMaxBytes bounds the audit stream; -1 (the default) is unlimited.
	AuditMaxBytes int64
	// EventsMaxAge defaults to 30 days.
	EventsMaxAge time.Duration
}

// AuditStreamConfig is SERVINGAPP_AUDIT: file storage, limits retention, a
// 2-minute duplicate window for Nats-Msg-Id deduplication, delete and purge
// denied so the trail cannot be edited, and discard-new at MaxBytes so a full
// stream refuses new events loudly instead of dropping old ones silently.
func AuditStreamConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        AuditStream,
		Description: "servingapp audit events: logins and model invocations",
		Subjects:    []string{AuditSubjectRoot + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      o.AuditMaxAge,
		MaxBytes:    o.AuditMaxBytes,
		Discard:     jetstream.DiscardNew,
		Duplicates:  2 * time.Minute,
		DenyDelete:  true,
		DenyPurge:   true,
		Replicas:    o.Replicas,
	}
}

// EventsStreamConfig is SERVINGAPP_EVENTS: reconcile events for 30 days.
func EventsStreamConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "servingapp controller reconcile events",
		Subjects:    []string{EventsSubjectRoot + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      o.EventsMaxAge,
		Discard:     jetstream.DiscardOld,
		Duplicates:  2 * time.Minute,
		Replicas:    o.Replicas,
	}
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.AuditMaxAge == 0 {
		o.AuditMaxAge = 400 * 24 * time.Hour
	}
	if o.AuditMaxBytes == 0 {
		o.AuditMaxBytes = -1
	}
	if o.EventsMaxAge == 0 {
		o.EventsMaxAge = 30 * 24 * time.Hour
	}
	return o
}

// EnsureStreams creates both streams or updates them to the given options.
// It is idempotent, so every controller start calls it.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range []jetstream.StreamConfig{AuditStreamConfig(o), EventsStreamConfig(o)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// EnsureStream creates cfg's stream if it is missing and leaves an existing one
// as it is: for publishers (web apps), which must not fight the controller
// over the stream's configuration.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	_, err := js.Stream(ctx, cfg.Name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	return nil
}

// subjectToken makes s safe as one NATS subject token: the characters NATS
// treats specially ('.', '*', '>', whitespace) become '_'. Namespaces and
// names are DNS labels, so for them it changes nothing.
func subjectToken(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}
