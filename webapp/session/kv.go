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
	// Replicas is 1 in dev mode, 3 in production; zero means 1.
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

// OpenKVStore creates the bucket if it is missing (or updates its TTL and
// replicas) and returns a store on it.
func OpenKVStore(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KVStore, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "servingapp web app sessions (encrypted)",
		History:     1,
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open session bucket %s: %w", cfg.Bucket, err)
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
