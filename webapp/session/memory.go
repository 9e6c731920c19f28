package session

import (
	"context"
	"sync"
	"time"
)

// MemoryStore is a Store in process memory, for a single replica and for
// tests. Expired records are forgotten lazily.
type MemoryStore struct {
	now func() time.Time

	mu      sync.RWMutex
	records map[string]memoryRecord
	rev     uint64
	writes  int
}

type memoryRecord struct {
	value   []byte
	rev     uint64
	expires time.Time
}

// NewMemoryStore returns an empty store; now decides expiry (nil means time.Now).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{now: now, records: map[string]memoryRecord{}}
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

// Create stores a new record.
func (s *MemoryStore) Create(_ context.Context, key string, value []byte, expires time.Time) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.records[key]; ok && !s.expired(r) {
		return 0, ErrExists
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
	s.records[key] = memoryRecord{value: append([]byte(nil), value...), rev: s.rev, expires: expires}
	s.writes++
	if s.writes%sweepEvery == 0 {
		for k, r := range s.records {
			if s.expired(r) {
				delete(s.records, k)
			}
		}
	}
	return s.rev
}

// Delete removes the record.
func (s *MemoryStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	delete(s.records, key)
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
