package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/v1alpha1"
)

// GetStatus returns the object's status and the revision of the status
// bucket entry, for a compare-and-set with UpdateStatus. An object whose
// status was never written has an empty status at revision 0.
func (s *Store) GetStatus(ctx context.Context, namespace, name string) (*v1alpha1.ServingAppStatus, uint64, error) {
	key, err := objectKey(namespace, name)
	if err != nil {
		return nil, 0, fmt.Errorf("get status of %s/%s: %w", namespace, name, err)
	}
	if _, _, err := s.readSpec(ctx, key); err != nil {
		return nil, 0, fmt.Errorf("get status of %s/%s: %w", namespace, name, err)
	}
	st, rev, err := s.readStatus(ctx, key)
	if err != nil {
		return nil, 0, fmt.Errorf("get status of %s/%s: %w", namespace, name, err)
	}
	return st, rev, nil
}

// UpdateStatus stores st as the object's status if the status entry is still
// at expectedRevision (0: no status written yet), and returns the new
// revision. A status changed meanwhile gets ErrConflict; an object that does
// not exist ErrNotFound. It never touches the spec bucket, so generation and
// resourceVersion stay as they are and spec watchers see nothing.
func (s *Store) UpdateStatus(ctx context.Context, namespace, name string, st *v1alpha1.ServingAppStatus, expectedRevision uint64) (uint64, error) {
	key, err := objectKey(namespace, name)
	if err != nil {
		return 0, fmt.Errorf("update status of %s/%s: %w", namespace, name, err)
	}
	if _, _, err := s.readSpec(ctx, key); err != nil {
		return 0, fmt.Errorf("update status of %s/%s: %w", namespace, name, err)
	}
	rev, err := s.writeStatus(ctx, key, st, expectedRevision)
	if err != nil {
		return 0, fmt.Errorf("update status of %s/%s: %w", namespace, name, err)
	}
	return rev, nil
}

// PatchStatus reads the object's status, lets change modify it, and writes it
// back with compare-and-set, reading and calling change again when another
// writer got there first. An error from change is returned as is (wrapped).
// When change leaves the status as it was nothing is written. It returns the
// status as stored.
func (s *Store) PatchStatus(ctx context.Context, namespace, name string, change func(*v1alpha1.ServingAppStatus) error) (*v1alpha1.ServingAppStatus, error) {
	key, err := objectKey(namespace, name)
	if err != nil {
		return nil, fmt.Errorf("patch status of %s/%s: %w", namespace, name, err)
	}
	for range maxAttempts {
		if _, _, err := s.readSpec(ctx, key); err != nil {
			return nil, fmt.Errorf("patch status of %s/%s: %w", namespace, name, err)
		}
		cur, rev, err := s.readStatus(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("patch status of %s/%s: %w", namespace, name, err)
		}
		before, err := json.Marshal(cur)
		if err != nil {
			return nil, fmt.Errorf("patch status of %s/%s: encode: %w", namespace, name, err)
		}
		if err := change(cur); err != nil {
			return nil, fmt.Errorf("patch status of %s/%s: %w", namespace, name, err)
		}
		after, err := json.Marshal(cur)
		if err != nil {
			return nil, fmt.Errorf("patch status of %s/%s: encode: %w", namespace, name, err)
		}
		if bytes.Equal(before, after) {
			return cur, nil
		}
		_, err = s.writeStatus(ctx, key, cur, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("patch status of %s/%s: %w", namespace, name, err)
		}
		return cur, nil
	}
	return nil, fmt.Errorf("patch status of %s/%s: %w: concurrent writers won %d times in a row", namespace, name, ErrConflict, maxAttempts)
}

// readStatus returns the status under key and its revision; an empty status
// at revision 0 when none was written.
func (s *Store) readStatus(ctx context.Context, key string) (*v1alpha1.ServingAppStatus, uint64, error) {
	e, err := s.status.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return new(v1alpha1.ServingAppStatus), 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read status: %w", err)
	}
	st, err := decodeStatus(e.Value(), e.Revision())
	if err != nil {
		return nil, 0, err
	}
	return st, e.Revision(), nil
}

func decodeStatus(data []byte, rev uint64) (*v1alpha1.ServingAppStatus, error) {
	st := new(v1alpha1.ServingAppStatus)
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("decode stored status at revision %d: %w", rev, err)
	}
	return st, nil
}

// writeStatus stores st under key if the status entry is at rev (0: absent).
func (s *Store) writeStatus(ctx context.Context, key string, st *v1alpha1.ServingAppStatus, rev uint64) (uint64, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return 0, fmt.Errorf("encode status: %w", err)
	}
	if rev == 0 {
		newRev, err := s.status.Create(ctx, key, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("%w: a status was written meanwhile", ErrConflict)
		}
		if err != nil {
			return 0, fmt.Errorf("write status: %w", err)
		}
		return newRev, nil
	}
	newRev, err := s.status.Update(ctx, key, data, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("%w: the status changed since revision %d", ErrConflict, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("write status: %w", err)
	}
	return newRev, nil
}
