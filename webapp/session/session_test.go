package session_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	if sc := kvStreamConfig(t, js, bucket); sc.MaxBytes != -1 || sc.AllowMsgTTL {
		t.Fatalf("the existing bucket was reconfigured: MaxBytes %d, AllowMsgTTL %v", sc.MaxBytes, sc.AllowMsgTTL)
	}
	// A longer TTL is left alone.
	if _, err := session.OpenKVStore(ctx, js, session.KVConfig{Bucket: bucket, TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if st, _ := kv.Status(ctx); st.TTL() != time.Hour {
		t.Fatalf("TTL lowered to %s", st.TTL())
	}
	// Without per-key TTLs a short record simply lives for the bucket's TTL.
	store, err := session.OpenKVStore(ctx, js, session.KVConfig{Bucket: bucket, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, "pending", []byte("v"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := keyTTLHeader(t, js, bucket, "pending"); got != "" {
		t.Fatalf("Nats-TTL %q on a bucket without per-key TTLs", got)
	}
}

func TestMemoryStoreIsBoundedInBytes(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := session.NewMemoryStore(func() time.Time { return now })
	s.SetMaxBytes(1000)
	value := bytes.Repeat([]byte{1}, 400)
	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"first record", func() error { _, err := s.Create(ctx, "a", value, now.Add(time.Minute)); return err }, nil},
		{"second record", func() error { _, err := s.Create(ctx, "b", value, now.Add(time.Hour)); return err }, nil},
		{"third does not fit", func() error { _, err := s.Create(ctx, "c", value, now.Add(time.Hour)); return err }, session.ErrFull},
		{"an update is never refused", func() error {
			_, rev, _ := s.Get(ctx, "b")
			_, err := s.Update(ctx, "b", bytes.Repeat([]byte{2}, 500), rev, now.Add(time.Hour))
			return err
		}, nil},
		{"expired records make room", func() error {
			now = now.Add(2 * time.Minute) // "a" expires
			_, err := s.Create(ctx, "c", value, now.Add(time.Hour))
			return err
		}, nil},
		{"full again", func() error { _, err := s.Create(ctx, "d", value, now.Add(time.Hour)); return err }, session.ErrFull},
		{"a delete makes room", func() error {
			_ = s.Delete(ctx, "c")
			_, err := s.Create(ctx, "d", value, now.Add(time.Hour))
			return err
		}, nil},
	}
	for _, st := range steps {
		if err := st.do(); !errors.Is(err, st.want) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
	}
	if got := s.Bytes(); got != 900 {
		t.Fatalf("%d bytes held, want 900 (b and d)", got)
	}
}

func TestPendingRecordsStayCompact(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	tests := map[string]string{
		"control characters": strings.Repeat("\x01", 32<<10),
		"invalid UTF-8":      strings.Repeat("\xff", 32<<10),
		"HTML":               strings.Repeat("<&>", (32<<10)/3),
		"Japanese":           strings.Repeat("要約", (32<<10)/6),
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			store := session.NewMemoryStore(nil)
			m, _ := session.NewManager(store, testKey, nil)
			id, err := m.PutPending(ctx, session.Pending{Text: text, Expires: now.Add(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			if max := int64(len(text))*4/3 + 256; store.Bytes() > max {
				t.Fatalf("a %d-byte text takes %d bytes, want at most %d", len(text), store.Bytes(), max)
			}
			p, err := m.TakePending(ctx, id, now)
			if err != nil || p.Text != text || !p.Expires.Equal(now.Add(time.Minute).Truncate(time.Millisecond)) {
				t.Fatalf("take: %d bytes, expires %s, %v", len(p.Text), p.Expires, err)
			}
		})
	}
}

func TestPendingRecordsOfTheOldFormatStillOpen(t *testing.T) {
	ctx := context.Background()
	store := session.NewMemoryStore(nil)
	m, _ := session.NewManager(store, testKey, nil)
	id, _ := m.NewID()
	sum := sha256.Sum256([]byte(id))
	key := "p." + hex.EncodeToString(sum[:])
	sealer, _ := session.NewSealer(testKey, "session records", nil)
	exp := time.Now().Add(time.Minute).UTC().Truncate(time.Second)
	old, _ := json.Marshal(map[string]any{"text": "typed before the upgrade", "exp": exp})
	sealed, _ := sealer.Seal(old, []byte(key))
	if _, err := store.Create(ctx, key, sealed, exp); err != nil {
		t.Fatal(err)
	}
	p, err := m.TakePending(ctx, id, time.Now())
	if err != nil || p.Text != "typed before the upgrade" || !p.Expires.Equal(exp) {
		t.Fatalf("take an old record: %+v %v", p, err)
	}
}

func TestDeletePending(t *testing.T) {
	ctx := context.Background()
	store := session.NewMemoryStore(nil)
	m, _ := session.NewManager(store, testKey, nil)
	id, _ := m.PutPending(ctx, session.Pending{Text: "x", Expires: time.Now().Add(time.Minute)})
	if err := m.DeletePending(ctx, id); err != nil || store.Len() != 0 {
		t.Fatalf("delete: %v, %d records left", err, store.Len())
	}
	if _, err := m.TakePending(ctx, id, time.Now()); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("take a deleted request: %v", err)
	}
}

// kvStreamConfig reads the stream behind a bucket.
func kvStreamConfig(t *testing.T, js jetstream.JetStream, bucket string) jetstream.StreamConfig {
	t.Helper()
	st, err := js.Stream(context.Background(), "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.Config
}

// keyTTLHeader returns the Nats-TTL header of the latest record under key.
func keyTTLHeader(t *testing.T, js jetstream.JetStream, bucket, key string) string {
	t.Helper()
	st, _ := js.Stream(context.Background(), "KV_"+bucket)
	msg, err := st.GetLastMsgForSubject(context.Background(), "$KV."+bucket+"."+key)
	if err != nil {
		t.Fatal(err)
	}
	return msg.Header.Get("Nats-TTL")
}

func TestKVBucketTheAppCreatesIsBoundedAndExpiresShortRecordsEarly(t *testing.T) {
	url, _ := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	bucket := session.BucketName("ns", "fresh")
	store, err := session.OpenKVStore(ctx, js, session.KVConfig{Bucket: bucket, TTL: 8 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := kvStreamConfig(t, js, bucket); cfg.MaxBytes != session.DefaultBucketMaxBytes || !cfg.AllowMsgTTL {
		t.Fatalf("new bucket: MaxBytes %d, AllowMsgTTL %v", cfg.MaxBytes, cfg.AllowMsgTTL)
	}
	tests := []struct {
		key     string
		expires time.Time
		ttl     string // the Nats-TTL header; "" for none
	}{
		{"pending", now.Add(10 * time.Minute), "10m0s"},
		{"pending-rounded-up", now.Add(90*time.Second + time.Millisecond), "1m31s"},
		{"almost-expired", now.Add(100 * time.Millisecond), "1s"},
		{"session", now.Add(8 * time.Hour), ""},
		{"no-expiry", time.Time{}, ""},
	}
	for _, tt := range tests {
		if _, err := store.Create(ctx, tt.key, []byte("v"), tt.expires); err != nil {
			t.Fatal(err)
		}
		if got := keyTTLHeader(t, js, bucket, tt.key); got != tt.ttl {
			t.Errorf("%s: Nats-TTL %q, want %q", tt.key, got, tt.ttl)
		}
	}

	small := session.BucketName("ns", "small")
	store, err = session.OpenKVStore(ctx, js, session.KVConfig{Bucket: small, TTL: time.Hour, MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var full error
	for i := 0; i < 10 && full == nil; i++ {
		_, full = store.Create(ctx, "k"+strings.Repeat("x", i), bytes.Repeat([]byte{1}, 16<<10), time.Now().Add(time.Hour))
	}
	if !errors.Is(full, session.ErrFull) {
		t.Fatalf("writing 160 KiB into a 64 KiB bucket: %v, want ErrFull", full)
	}
}

// TestRetentionKeepsAnEndedSessionReadable: with a retention, the store
// keeps a session's record (created or saved) that long past its Expires,
// so a late request still loads it and can see why it ended; without one,
// or once the retention is over, it is gone.
func TestRetentionKeepsAnEndedSessionReadable(t *testing.T) {
	ctx := context.Background()
	start := time.Now().Truncate(time.Millisecond)
	tests := []struct {
		name      string
		retention time.Duration
		save      bool // write the record again after creating it
		after     time.Duration
		found     bool
	}{
		{"no retention, before Expires", 0, false, time.Hour - time.Millisecond, true},
		{"no retention, at Expires", 0, false, time.Hour, false},
		{"retention, at Expires", 30 * time.Minute, false, time.Hour, true},
		{"retention, just before it is over", 30 * time.Minute, false, 90*time.Minute - time.Millisecond, true},
		{"retention, once it is over", 30 * time.Minute, false, 90 * time.Minute, false},
		{"retention of a saved record, at Expires", 30 * time.Minute, true, time.Hour, true},
		{"retention of a saved record, once it is over", 30 * time.Minute, true, 90 * time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := start
			store := session.NewMemoryStore(func() time.Time { return now })
			m, _ := session.NewManager(store, testKey, nil)
			m.SetRetention(tt.retention)
			l, err := m.Create(ctx, session.Session{Subject: "alice", Created: now, LastSeen: now, Expires: now.Add(time.Hour), CSRF: "c"})
			if err != nil {
				t.Fatal(err)
			}
			if tt.save {
				now = now.Add(time.Minute)
				l.Session.LastSeen = now
				if err := m.Save(ctx, l); err != nil {
					t.Fatal(err)
				}
			}
			now = start.Add(tt.after)
			got, err := m.Load(ctx, l.ID)
			if tt.found != (err == nil) {
				t.Fatalf("load %s after creation: %v, want found=%v", tt.after, err, tt.found)
			}
			if err != nil && !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("load: %v, want ErrNotFound", err)
			}
			if err == nil && tt.after >= time.Hour {
				if reason, ended := got.Session.Expired(now, 0); !ended || reason != session.ExpiredAbsolute {
					t.Fatalf("a retained record past Expires: Expired = %q, %v; want absolute_timeout", reason, ended)
				}
			}
		})
	}
}
