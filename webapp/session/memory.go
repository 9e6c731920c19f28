package session

import (
	"context"
	"sync"
	"time"
)

// DefaultMemoryMaxBytes bounds a MemoryStore's records unless SetMaxBytes
// says otherwise: far more than the sessions of one replica need, little
// enough that a flood of records cannot exhaust the process.
const DefaultMemoryMaxBytes = 64 << 20

// MemoryStore is a Store in process memory, for a single replica and for
// tests. Expired records are forgotten lazily. The values it holds are
// bounded in bytes (DefaultMemoryMaxBytes): Create answers ErrFull when a
// new record does not fit even after expired ones are swept. Update is never
// refused, so a full store still saves a signed-in user's rotated tokens.
type MemoryStore struct {
	now func() time.Time

	mu       sync.RWMutex
	records  map[string]memoryRecord
	rev      uint64
	writes   int
	bytes    int64 // of the values held, expired ones included until swept
	maxBytes int64
}

type memoryRecord struct {
	value   []byte
	rev     uint64
	expires time.Time
}

// NewMemoryStore returns an empty store bounded by DefaultMemoryMaxBytes;
// now decides expiry (nil means time.Now).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{now: now, records: map[string]memoryRecord{}, maxBytes: DefaultMemoryMaxBytes}
}

// SetMaxBytes changes the bound on the bytes of the values held; zero or
// less means unbounded. Records held already are kept.
func (s *MemoryStore) SetMaxBytes(n int64) {
	s.mu.Lock()
	s.maxBytes = n
	s.mu.Unlock()
}

// sweepEvery is how many writes trigger a sweep of expired records.
const sweepEvery = 1024

// Get returns the record under key.
func (s *MemoryStore) Get(_ context.Context, key string) ([]byte, uint64, error) {
	s.mu.RLock()
	r, ok := s.records[key]
	s.mu.RUnlock()
	if !ok || s.expired(r) {
		return nil, 0, ErrNotFound
	}
	return r.value, r.rev, nil
}

func (s *MemoryStore) expired(r memoryRecord) bool {
	return !r.expires.IsZero() && !s.now().Before(r.expires)
}

// Create stores a new record; ErrFull when it does not fit the bound.
func (s *MemoryStore) Create(_ context.Context, key string, value []byte, expires time.Time) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.records[key]; ok && !s.expired(r) {
		return 0, ErrExists
	}
	if s.maxBytes > 0 && s.bytes+int64(len(value)) > s.maxBytes {
		s.sweepLocked()
		if s.bytes+int64(len(value)) > s.maxBytes {
			return 0, ErrFull
		}
	}
	return s.putLocked(key, value, expires), nil
}

// Update replaces the record if revision matches.
func (s *MemoryStore) Update(_ context.Context, key string, value []byte, revision uint64, expires time.Time) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[key]
	if !ok || s.expired(r) || r.rev != revision {
		return 0, ErrConflict
	}
	return s.putLocked(key, value, expires), nil
}

func (s *MemoryStore) putLocked(key string, value []byte, expires time.Time) uint64 {
	s.rev++
	if old, ok := s.records[key]; ok {
		s.bytes -= int64(len(old.value))
	}
	s.records[key] = memoryRecord{value: append([]byte(nil), value...), rev: s.rev, expires: expires}
	s.bytes += int64(len(value))
	s.writes++
	if s.writes%sweepEvery == 0 {
		s.sweepLocked()
	}
	return s.rev
}

func (s *MemoryStore) sweepLocked() {
	for k, r := range s.records {
		if s.expired(r) {
			s.deleteLocked(k)
		}
	}
}

func (s *MemoryStore) deleteLocked(key string) {
	if r, ok := s.records[key]; ok {
		s.bytes -= int64(len(r.value))
		delete(s.records, key)
	}
}

// Delete removes the record.
func (s *MemoryStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	s.deleteLocked(key)
	s.mu.Unlock()
	return nil
}

// Ping always succeeds.
func (s *MemoryStore) Ping(context.Context) error { return nil }

// Len returns how many records are held, expired ones included until swept.
func (s *MemoryStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.records)
}

// Bytes returns the size of the values held, expired ones included until
// swept.
func (s *MemoryStore) Bytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bytes
}
