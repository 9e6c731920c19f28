package session_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/internal/natstest"
	"github.com/servingapp/servingapp/webapp/session"
)

var testKey = bytes.Repeat([]byte{7}, session.KeySize)

// stores returns each Store implementation under test.
func stores(t *testing.T) map[string]session.Store {
	t.Helper()
	url, _ := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := session.OpenKVStore(ctx, js, session.KVConfig{Bucket: session.BucketName("ns", "app"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]session.Store{"memory": session.NewMemoryStore(nil), "kv": kv}
}

func TestManagerLifecycleOnEveryStore(t *testing.T) {
	now := time.Now()
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			m, err := session.NewManager(store, testKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := session.Session{Subject: "alice", Email: "alice@example.com", AccessToken: "secret-access-token", RefreshToken: "secret-refresh", Created: now, LastSeen: now, Expires: now.Add(time.Hour), CSRF: "c"}
			l, err := m.Create(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			raw, _, err := store.Get(ctx, session.Key(l.ID))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte("secret")) || bytes.Contains(raw, []byte("alice")) {
				t.Fatal("the stored record is not encrypted")
			}
			if strings.Contains(session.Key(l.ID), l.ID) || session.AuditID(l.ID) == session.Key(l.ID) {
				t.Fatal("keys must be hashes of the id")
			}

			a, err := m.Load(ctx, l.ID)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := m.Load(ctx, l.ID)
			a.Session.AccessToken = "new"
			if err := m.Save(ctx, a); err != nil {
				t.Fatal(err)
			}
			b.Session.AccessToken = "stale"
			if err := m.Save(ctx, b); !errors.Is(err, session.ErrConflict) {
				t.Fatalf("save with a stale revision: %v, want ErrConflict", err)
			}
			got, _ := m.Load(ctx, l.ID)
			if got.Session.AccessToken != "new" || got.Revision != a.Revision {
				t.Fatalf("loaded %+v", got)
			}

			other, _ := session.NewManager(store, bytes.Repeat([]byte{8}, session.KeySize), nil)
			if _, err := other.Load(ctx, l.ID); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("load with another key: %v", err)
			}
			if _, err := m.Load(ctx, "not-an-id"); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("load malformed id: %v", err)
			}

			if err := m.Delete(ctx, l.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Load(ctx, l.ID); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("load after delete: %v", err)
			}
			if err := m.Save(ctx, got); !errors.Is(err, session.ErrConflict) {
				t.Fatalf("save after delete: %v", err)
			}

			pid, err := m.PutPending(ctx, session.Pending{Text: "typed before login", Expires: now.Add(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			p, err := m.TakePending(ctx, pid, now)
			if err != nil || p.Text != "typed before login" {
				t.Fatalf("take pending: %+v %v", p, err)
			}
			if _, err := m.TakePending(ctx, pid, now); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("second take: %v", err)
			}
			pid, _ = m.PutPending(ctx, session.Pending{Text: "x", Expires: now.Add(time.Minute)})
			if _, err := m.TakePending(ctx, pid, now.Add(2*time.Minute)); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("take expired pending: %v", err)
			}
			if err := store.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSessionExpiry(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := session.Session{Created: start, LastSeen: start, Expires: start.Add(8 * time.Hour)}
	tests := []struct {
		at     time.Duration
		reason string
	}{
		{59 * time.Minute, ""},
		{time.Hour, session.ExpiredIdle},
		{8 * time.Hour, session.ExpiredAbsolute},
	}
	for _, tt := range tests {
		reason, expired := s.Expired(start.Add(tt.at), time.Hour)
		if reason != tt.reason || expired != (tt.reason != "") {
			t.Errorf("at +%s: %q %v, want %q", tt.at, reason, expired, tt.reason)
		}
	}
}

func TestSealerRejectsTamperingAndOtherPurposes(t *testing.T) {
	a, _ := session.NewSealer(testKey, "cookies", nil)
	b, _ := session.NewSealer(testKey, "records", nil)
	sealed, err := a.Seal([]byte("hello"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Open(sealed, []byte("aad")); err != nil || string(got) != "hello" {
		t.Fatalf("open: %q %v", got, err)
	}
	for name, try := range map[string]func() ([]byte, error){
		"other purpose": func() ([]byte, error) { return b.Open(sealed, []byte("aad")) },
		"other aad":     func() ([]byte, error) { return a.Open(sealed, []byte("x")) },
		"flipped bit": func() ([]byte, error) {
			c := bytes.Clone(sealed)
			c[len(c)-1] ^= 1
			return a.Open(c, []byte("aad"))
		},
		"truncated": func() ([]byte, error) { return a.Open(sealed[:5], []byte("aad")) },
	} {
		if _, err := try(); !errors.Is(err, session.ErrUnsealable) {
			t.Errorf("%s: %v, want ErrUnsealable", name, err)
		}
	}
	if _, err := session.NewSealer([]byte("short"), "x", nil); err == nil {
		t.Fatal("short key accepted")
	}
}

func TestOpenKVStoreKeepsAnExistingBucketButRaisesItsTTL(t *testing.T) {
	url, _ := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bucket := session.BucketName("ns", "premade")
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Description: "made by the operator", TTL: time.Minute, History: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := session.OpenKVStore(ctx, js, session.KVConfig{Bucket: bucket, TTL: time.Hour, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	kv, _ := js.KeyValue(ctx, bucket)
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.(*jetstream.KeyValueBucketStatus).Config()
	if cfg.TTL != time.Hour || cfg.Description != "made by the operator" {
		t.Fatalf("bucket after open: TTL %s, description %q", cfg.TTL, cfg.Description)
	}
	// A longer TTL is left alone.
	if _, err := session.OpenKVStore(ctx, js, session.KVConfig{Bucket: bucket, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if st, _ := kv.Status(ctx); st.TTL() != time.Hour {
		t.Fatalf("TTL lowered to %s", st.TTL())
	}
}
