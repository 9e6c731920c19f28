// Package session provides the web app's server-side sessions: a Store
// interface with an in-memory implementation (one replica, dev mode) and a
// NATS JetStream KV implementation (replicas share sessions, compare-and-set
// on the revision), and a Manager that keys records by a hash of the session
// id and seals them with AES-256-GCM under the app's session key. The webapp
// package uses it; nothing else should read session records.
package session

import (
	"context"
	"errors"
	"time"
)

// Errors every Store returns, matched with errors.Is.
var (
	// ErrNotFound: there is no record under the key (or it expired).
	ErrNotFound = errors.New("session: not found")
	// ErrExists: Create found a record under the key.
	ErrExists = errors.New("session: already exists")
	// ErrConflict: Update's revision is not the record's current one.
	ErrConflict = errors.New("session: revision conflict")
	// ErrFull: the store has no room for a new record (its byte bound).
	ErrFull = errors.New("session: store full")
)

// Store keeps opaque, already encrypted records under keys that are already
// hashed. Revisions increase with every write and make Update a
// compare-and-set. Implementations are safe for concurrent use.
type Store interface {
	// Get returns the record under key and its revision. The returned slice
	// must not be modified.
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	// Create stores a new record; ErrExists when key is taken, ErrFull when
	// the store is at its bound. expires is when the record may be
	// forgotten; a store forgets it then, or at the latest after its own TTL.
	Create(ctx context.Context, key string, value []byte, expires time.Time) (uint64, error)
	// Update replaces the record if its revision is still revision;
	// ErrConflict otherwise (also when it was deleted meanwhile).
	Update(ctx context.Context, key string, value []byte, revision uint64, expires time.Time) (uint64, error)
	// Delete removes the record; deleting a missing record is not an error.
	Delete(ctx context.Context, key string) error
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
}
