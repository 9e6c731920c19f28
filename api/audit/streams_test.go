package audit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/natstest"
)

// jsErrStreamStoreFailed is the JetStream API error code of a publish the
// stream refused to store (here: maximum bytes exceeded with discard-new).
const jsErrStreamStoreFailed = 10077

func streamTestJS(t *testing.T, o audit.StreamOptions) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	url, _ := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	ctx := context.Background()
	if err := audit.EnsureStreams(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, audit.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	return js, s
}

func publishStreamTestEvent(ctx context.Context, js jetstream.JetStream, id string) error {
	ev := audit.NewAuditEvent(audit.Logout, audit.AppRef{Namespace: "analytics", Name: "summarizer"}, time.UnixMilli(1_780_000_000_000))
	b, err := audit.EncodeAuditEvent(id, audit.Logout, ev)
	if err != nil {
		return err
	}
	_, err = js.Publish(ctx, audit.AuditSubject("analytics", "summarizer", audit.Logout), b, jetstream.WithMsgID(id))
	return err
}

func TestAuditStreamConfigMeetsTheAuditRequirements(t *testing.T) {
	_, s := streamTestJS(t, audit.StreamOptions{})
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	switch {
	case len(c.Subjects) != 1 || c.Subjects[0] != "servingapp.audit.>":
		t.Errorf("subjects %v", c.Subjects)
	case c.Storage != jetstream.FileStorage || c.Retention != jetstream.LimitsPolicy:
		t.Errorf("storage %v retention %v", c.Storage, c.Retention)
	case c.MaxAge != 400*24*time.Hour || c.Duplicates != 2*time.Minute:
		t.Errorf("max age %v duplicates %v", c.MaxAge, c.Duplicates)
	case !c.DenyDelete || !c.DenyPurge || c.Discard != jetstream.DiscardNew:
		t.Errorf("deny delete %v deny purge %v discard %v", c.DenyDelete, c.DenyPurge, c.Discard)
	}
}

func TestAuditStreamRefusesDeleteAndPurge(t *testing.T) {
	ctx := context.Background()
	js, s := streamTestJS(t, audit.StreamOptions{})
	for _, id := range []string{"a1", "a2"} {
		if err := publishStreamTestEvent(ctx, js, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteMsg(ctx, 1); err == nil {
		t.Error("DeleteMsg succeeded on the audit stream")
	}
	if err := s.SecureDeleteMsg(ctx, 1); err == nil {
		t.Error("SecureDeleteMsg succeeded on the audit stream")
	}
	if err := s.Purge(ctx); err == nil {
		t.Error("Purge succeeded on the audit stream")
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(audit.AuditSubject("analytics", "summarizer", audit.Logout))); err == nil {
		t.Error("Purge of one subject succeeded on the audit stream")
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(2)); err == nil {
		t.Error("Purge up to a sequence succeeded on the audit stream")
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 || info.State.FirstSeq != 1 {
		t.Fatalf("stream state after refused edits: %d messages from %d", info.State.Msgs, info.State.FirstSeq)
	}
	if _, err := s.GetMsg(ctx, 1); err != nil {
		t.Fatalf("first event gone: %v", err)
	}
	// Re-running EnsureStreams (every controller start) keeps the denials.
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err == nil {
		t.Error("Purge succeeded after EnsureStreams ran again")
	}
}

func TestFullAuditStreamRefusesNewEventsAndKeepsOldOnes(t *testing.T) {
	ctx := context.Background()
	js, s := streamTestJS(t, audit.StreamOptions{AuditMaxBytes: 8 << 10})
	stored := 0
	var refusal error
	for i := range 100 {
		if err := publishStreamTestEvent(ctx, js, audit.NewEventID()); err != nil {
			refusal = err
			break
		}
		stored = i + 1
	}
	var apiErr *jetstream.APIError
	if !errors.As(refusal, &apiErr) || apiErr.ErrorCode != jsErrStreamStoreFailed {
		t.Fatalf("after %d events: refusal %v, want API error %d", stored, refusal, jsErrStreamStoreFailed)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq != 1 || info.State.Msgs != uint64(stored) {
		t.Fatalf("full stream holds %d events from %d; want the first %d kept", info.State.Msgs, info.State.FirstSeq, stored)
	}
}

func TestEnsureStreamsUpdatesAnExistingStream(t *testing.T) {
	ctx := context.Background()
	js, s := streamTestJS(t, audit.StreamOptions{})
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{AuditMaxAge: 30 * 24 * time.Hour, AuditMaxBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 30*24*time.Hour || info.Config.MaxBytes != 1<<30 || !info.Config.DenyPurge {
		t.Fatalf("updated config: max age %v max bytes %d deny purge %v", info.Config.MaxAge, info.Config.MaxBytes, info.Config.DenyPurge)
	}
}
