package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KVConfig configures a KVStore bucket.
type KVConfig struct {
	// Bucket is the KV bucket name, one per app (see BucketName).
	Bucket string
	// TTL is how long a record lives after its last write; set it to the
	// absolute session lifetime, which bounds every record's use anyway.
	TTL time.Duration
	// Replicas of a bucket this store creates: 1 in dev mode, 3 in
	// production; zero means 1. An existing bucket keeps its own.
	Replicas int
}

// BucketName returns the session bucket of an app:
// servingapp-sessions_<namespace>_<name> (DNS labels have no '_', so
// distinct apps never share a bucket).
func BucketName(namespace, name string) string {
	return "servingapp-sessions_" + namespace + "_" + name
}

// KVStore is a Store on a NATS JetStream KV bucket, shared by every replica
// of an app. Update is a compare-and-set on the KV revision.
type KVStore struct {
	kv jetstream.KeyValue
}

// OpenKVStore opens the bucket, creating it when it is missing. An existing
// bucket keeps its replicas and other settings (an operator or the
// controller may have made it R3); only a TTL shorter than cfg.TTL is
// raised, so no session outlives its record.
func OpenKVStore(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KVStore, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "servingapp web app sessions (encrypted)",
			History:     1,
			TTL:         cfg.TTL,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket) // another replica was quicker
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open session bucket %s: %w", cfg.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read session bucket %s: %w", cfg.Bucket, err)
	}
	if ttl := st.TTL(); ttl != 0 && ttl < cfg.TTL {
		bs, ok := st.(*jetstream.KeyValueBucketStatus)
		if !ok {
			return nil, fmt.Errorf("read session bucket %s: unexpected status type %T", cfg.Bucket, st)
		}
		bc := bs.Config()
		bc.TTL = cfg.TTL
		if kv, err = js.UpdateKeyValue(ctx, bc); err != nil {
			return nil, fmt.Errorf("raise the TTL of session bucket %s to %s: %w", cfg.Bucket, cfg.TTL, err)
		}
	}
	return &KVStore{kv: kv}, nil
}

// Get returns the record under key.
func (s *KVStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read session record: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

// Create stores a new record.
func (s *KVStore) Create(ctx context.Context, key string, value []byte, _ time.Time) (uint64, error) {
	rev, err := s.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create session record: %w", err)
	}
	return rev, nil
}

// Update replaces the record if its revision is still revision.
func (s *KVStore) Update(ctx context.Context, key string, value []byte, revision uint64, _ time.Time) (uint64, error) {
	rev, err := s.kv.Update(ctx, key, value, revision)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("update session record: %w", err)
	}
	return rev, nil
}

// Delete removes the record.
func (s *KVStore) Delete(ctx context.Context, key string) error {
	if err := s.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete session record: %w", err)
	}
	return nil
}

// Ping reads the bucket's status from the server.
func (s *KVStore) Ping(ctx context.Context) error {
	if _, err := s.kv.Status(ctx); err != nil {
		return fmt.Errorf("reach session bucket: %w", err)
	}
	return nil
}
