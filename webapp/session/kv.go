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
	// absolute session lifetime plus the Manager's retention, which bounds
	// every record's use anyway.
	TTL time.Duration
	// Replicas of a bucket this store creates: 1 in dev mode, 3 in
	// production; zero means 1. An existing bucket keeps its own.
	Replicas int
	// MaxBytes bounds a bucket this store creates; zero means
	// DefaultBucketMaxBytes, negative means unbounded. An existing bucket
	// keeps its own.
	MaxBytes int64
	// Now is the clock that turns a record's expiry into a per-key TTL;
	// nil means time.Now.
	Now func() time.Time
}

// DefaultBucketMaxBytes bounds a session bucket the store creates: room for
// tens of thousands of sessions, and a ceiling on what the app can ever put
// into JetStream.
const DefaultBucketMaxBytes = 256 << 20

// limitMarkerTTL is how long a bucket this store creates keeps the marker
// of a key that expired by its own TTL; setting it is what enables per-key
// TTLs (NATS 2.11 and later).
const limitMarkerTTL = time.Minute

// jsStreamStoreFailed is JetStream's JSStreamStoreFailedF error code: the
// stream could not store the message, which for a KV bucket means one of its
// limits (MaxBytes) is reached. nats.go names no constant for it.
const jsStreamStoreFailed jetstream.ErrorCode = 10077

// BucketName returns the session bucket of an app:
// servingapp-sessions_<namespace>_<name> (DNS labels have no '_', so
// distinct apps never share a bucket).
func BucketName(namespace, name string) string {
	return "servingapp-sessions_" + namespace + "_" + name
}

// KVStore is a Store on a NATS JetStream KV bucket, shared by every replica
// of an app. Update is a compare-and-set on the KV revision. A record that
// expires before the bucket's TTL (a request kept across a login) gets its
// own TTL when the bucket allows per-key TTLs, so it is gone from JetStream
// when it expires rather than hours later.
type KVStore struct {
	kv        jetstream.KeyValue
	now       func() time.Time
	bucketTTL time.Duration
	keyTTL    bool // the bucket allows per-key TTLs
}

// OpenKVStore opens the bucket, creating it when it is missing (bounded by
// cfg.MaxBytes, with per-key TTLs where the server has them). An existing
// bucket keeps its replicas and other settings (an operator or the
// controller may have made it R3); only a TTL shorter than cfg.TTL is
// raised, so no session outlives its record.
func OpenKVStore(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KVStore, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	switch {
	case cfg.MaxBytes == 0:
		cfg.MaxBytes = DefaultBucketMaxBytes
	case cfg.MaxBytes < 0:
		cfg.MaxBytes = 0 // unbounded for nats.go
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		bc := jetstream.KeyValueConfig{
			Bucket:         cfg.Bucket,
			Description:    "servingapp web app sessions (encrypted)",
			History:        1,
			TTL:            cfg.TTL,
			MaxBytes:       cfg.MaxBytes,
			Storage:        jetstream.FileStorage,
			Replicas:       cfg.Replicas,
			LimitMarkerTTL: limitMarkerTTL,
		}
		kv, err = js.CreateKeyValue(ctx, bc)
		if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
			// A server before 2.11: records live for the bucket's TTL.
			bc.LimitMarkerTTL = 0
			kv, err = js.CreateKeyValue(ctx, bc)
		}
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
		if st, err = kv.Status(ctx); err != nil {
			return nil, fmt.Errorf("read session bucket %s: %w", cfg.Bucket, err)
		}
	}
	s := &KVStore{kv: kv, now: cfg.Now, bucketTTL: st.TTL()}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		s.keyTTL = bs.StreamInfo().Config.AllowMsgTTL
	}
	return s, nil
}

// fullOr returns ErrFull for a write the bucket refused for lack of room
// (keeping the cause), and err otherwise.
func fullOr(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsStreamStoreFailed {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	return err
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

// Create stores a new record. One that expires before the bucket's TTL
// gets that as its own TTL (whole seconds, at least one) when the bucket
// allows it.
func (s *KVStore) Create(ctx context.Context, key string, value []byte, expires time.Time) (uint64, error) {
	var opts []jetstream.KVCreateOpt
	if ttl := expires.Sub(s.now()); s.keyTTL && !expires.IsZero() && (s.bucketTTL == 0 || ttl < s.bucketTTL) {
		opts = append(opts, jetstream.KeyTTL(max(time.Second, (ttl+time.Second-1).Truncate(time.Second))))
	}
	rev, err := s.kv.Create(ctx, key, value, opts...)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create session record: %w", fullOr(err))
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
		return 0, fmt.Errorf("update session record: %w", fullOr(err))
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
