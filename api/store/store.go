// Package store keeps ServingApp objects in NATS JetStream KV: apply, get, list,
// delete with finalizers, status writes and watch, with optimistic concurrency.
// servingctl writes through it; the controller watches it and writes status.
//
// Two buckets hold the data, both keyed "<namespace>.<name>": the spec bucket
// holds each object without its status (its KV revision is the object's
// resourceVersion), the status bucket holds ServingAppStatus. Status writes
// therefore never change generation or resourceVersion and never wake spec
// watchers.
//
// Every call is bounded by its context. A request caught in a disconnect
// fails with the context's error and may or may not have been applied; Apply
// is idempotent (re-applying the same object is Unchanged), so calling it
// again is safe.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/v1alpha1"
)

// Bucket defaults.
const (
	DefaultSpecBucket   = "servingapp-specs"
	DefaultStatusBucket = "servingapp-status"
	// DefaultSpecHistory is how many revisions of each object the spec bucket
	// keeps, so a watcher that resumes after a disconnect still sees every
	// change of an object that changed a few times meanwhile.
	DefaultSpecHistory = 16
)

// maxAttempts bounds read-modify-write retries when concurrent writers keep
// winning the compare-and-set.
const maxAttempts = 8

// Options configure a Store. The zero value is usable.
type Options struct {
	// SpecBucket and StatusBucket name the KV buckets; defaults
	// DefaultSpecBucket and DefaultStatusBucket.
	SpecBucket   string
	StatusBucket string
	// Storage is where the buckets keep data; the zero value is file storage.
	Storage jetstream.StorageType
	// Replicas is the number of copies of each bucket in a cluster; default 1.
	Replicas int
	// SpecHistory is the revisions per object the spec bucket keeps (1–64);
	// default DefaultSpecHistory.
	SpecHistory int
	// Now gives creation and deletion timestamps; default time.Now.
	Now func() time.Time
	// NewUID gives object UIDs; default random (version 4) UUIDs.
	NewUID func() string
	// OpenExisting binds to buckets that exist without changing their
	// configuration (creating them only when missing). Clients such as
	// servingctl set it so they never resize the controller's 3-replica
	// buckets to their own defaults.
	OpenExisting bool
	// Logger receives what the store cannot return as an error, such as a
	// value a watcher cannot decode; default slog.Default().
	Logger *slog.Logger
}

// Store is the ServingApp object store. It is safe for concurrent use.
type Store struct {
	specs  jetstream.KeyValue
	status jetstream.KeyValue
	js     jetstream.JetStream
	// specStream and specPrefix address the stream behind the spec bucket,
	// which Watch consumes directly to resume from its last revision.
	specStream string
	specPrefix string
	now        func() time.Time
	newUID     func() string
	log        *slog.Logger
}

// openBucket creates or updates a bucket, or with existing only binds to it
// (creating it when missing).
func openBucket(ctx context.Context, js jetstream.JetStream, existing bool, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if !existing {
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, cfg.Bucket)
	}
	return kv, err
}

// New creates the spec and status buckets, or updates their configuration
// when they exist, and returns a Store on them.
func New(ctx context.Context, js jetstream.JetStream, opts Options) (*Store, error) {
	if opts.SpecBucket == "" {
		opts.SpecBucket = DefaultSpecBucket
	}
	if opts.StatusBucket == "" {
		opts.StatusBucket = DefaultStatusBucket
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.SpecHistory == 0 {
		opts.SpecHistory = DefaultSpecHistory
	}
	if opts.SpecHistory < 1 || opts.SpecHistory > jetstream.KeyValueMaxHistory {
		return nil, fmt.Errorf("open store: spec history %d is out of range 1-%d", opts.SpecHistory, jetstream.KeyValueMaxHistory)
	}
	s := &Store{js: js, now: opts.Now, newUID: opts.NewUID, log: opts.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newUID == nil {
		s.newUID = uuid.NewString
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	var err error
	s.specs, err = openBucket(ctx, js, opts.OpenExisting, jetstream.KeyValueConfig{
		Bucket:      opts.SpecBucket,
		Description: "ServingApp objects without status; the revision is the resourceVersion",
		History:     uint8(opts.SpecHistory),
		Storage:     opts.Storage,
		Replicas:    opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open store: create or update bucket %s: %w", opts.SpecBucket, err)
	}
	s.status, err = openBucket(ctx, js, opts.OpenExisting, jetstream.KeyValueConfig{
		Bucket:      opts.StatusBucket,
		Description: "ServingApp status, written by the controller",
		History:     1,
		Storage:     opts.Storage,
		Replicas:    opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open store: create or update bucket %s: %w", opts.StatusBucket, err)
	}
	st, err := s.specs.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("open store: read bucket %s: %w", opts.SpecBucket, err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil || len(bs.StreamInfo().Config.Subjects) != 1 ||
		!strings.HasSuffix(bs.StreamInfo().Config.Subjects[0], ".>") {
		return nil, fmt.Errorf("open store: bucket %s is not backed by a plain KV stream", opts.SpecBucket)
	}
	s.specStream = bs.StreamInfo().Config.Name
	s.specPrefix = strings.TrimSuffix(bs.StreamInfo().Config.Subjects[0], ">")
	return s, nil
}

// Outcome says what Apply did.
type Outcome string

// Apply outcomes, worded as servingctl prints them.
const (
	Created    Outcome = "created"
	Configured Outcome = "configured"
	Unchanged  Outcome = "unchanged"
)

// Apply creates app or replaces the stored spec, labels and annotations with
// app's. It defaults and validates app first (an *InvalidError reports every
// problem). The store owns uid, creationTimestamp, generation,
// deletionTimestamp and finalizers: Apply ignores them in app, and status
// too. Generation starts at 1 and rises only when spec, labels or
// annotations change; an identical re-apply writes nothing and returns
// Unchanged with the stored generation and resourceVersion.
//
// A non-empty app.Metadata.ResourceVersion makes the write a compare-and-set
// against that revision: a stale one gets ErrConflict, and an object that no
// longer exists ErrNotFound. Without it Apply reads, modifies and writes,
// retrying when a concurrent update wins; a concurrent creation of the same
// object gets ErrConflict (with ErrAlreadyExists). An object being deleted
// gets ErrBeingDeleted.
//
// The returned object is the stored one, resourceVersion set, status empty.
func (s *Store) Apply(ctx context.Context, app *v1alpha1.ServingApp) (*v1alpha1.ServingApp, Outcome, error) {
	in := app.DeepCopy()
	v1alpha1.SetDefaults(in)
	if errs := v1alpha1.Validate(in); len(errs) > 0 {
		return nil, "", &InvalidError{Object: in.NamespacedName(), Errors: errs}
	}
	var wantRev uint64
	if rv := in.Metadata.ResourceVersion; rv != "" {
		var err error
		if wantRev, err = strconv.ParseUint(rv, 10, 64); err != nil || wantRev == 0 {
			return nil, "", &InvalidError{Object: in.NamespacedName(), Errors: v1alpha1.FieldErrors{{
				Path:    "metadata.resourceVersion",
				Message: fmt.Sprintf("%q is not a store revision: leave it empty, or copy it from a stored object", rv),
			}}}
		}
	}
	in.Status = v1alpha1.ServingAppStatus{}
	key, nn := in.Key(), in.NamespacedName()
	for range maxAttempts {
		cur, rev, err := s.readSpec(ctx, key)
		if errors.Is(err, ErrNotFound) {
			if wantRev != 0 {
				return nil, "", fmt.Errorf("apply %s: resourceVersion %d given but the object does not exist: %w", nn, wantRev, ErrNotFound)
			}
			out, err := s.create(ctx, in)
			if err != nil {
				return nil, "", fmt.Errorf("apply %s: %w", nn, err)
			}
			return out, Created, nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("apply %s: %w", nn, err)
		}
		if wantRev != 0 && wantRev != rev {
			return nil, "", fmt.Errorf("apply %s: %w: resourceVersion %d is stale, the stored object is at %d", nn, ErrConflict, wantRev, rev)
		}
		if dt := cur.Metadata.DeletionTimestamp; dt != nil {
			return nil, "", fmt.Errorf("apply %s: %w since %s: wait until it is gone, then apply again", nn, ErrBeingDeleted, dt.Format(time.RFC3339))
		}
		next := in.DeepCopy()
		m := &next.Metadata
		m.UID, m.CreationTimestamp, m.Finalizers, m.DeletionTimestamp = cur.Metadata.UID, cur.Metadata.CreationTimestamp, cur.Metadata.Finalizers, nil
		m.Generation = cur.Metadata.Generation
		changed, err := userFieldsDiffer(cur, next)
		if err != nil {
			return nil, "", fmt.Errorf("apply %s: %w", nn, err)
		}
		if !changed {
			return cur, Unchanged, nil
		}
		m.Generation++
		newRev, err := s.writeSpec(ctx, next, rev)
		if errors.Is(err, ErrConflict) {
			if wantRev != 0 {
				return nil, "", fmt.Errorf("apply %s: %w: resourceVersion %d is stale, another writer got there first", nn, ErrConflict, wantRev)
			}
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("apply %s: %w", nn, err)
		}
		m.ResourceVersion = strconv.FormatUint(newRev, 10)
		return next, Configured, nil
	}
	return nil, "", fmt.Errorf("apply %s: %w: concurrent writers won %d times in a row", nn, ErrConflict, maxAttempts)
}

// create stores in as a new object.
func (s *Store) create(ctx context.Context, in *v1alpha1.ServingApp) (*v1alpha1.ServingApp, error) {
	out := in.DeepCopy()
	now := s.now().UTC().Truncate(time.Second)
	m := &out.Metadata
	m.UID, m.CreationTimestamp, m.Generation = s.newUID(), &now, 1
	m.DeletionTimestamp, m.Finalizers, m.ResourceVersion = nil, nil, ""
	// A status left behind by an earlier object of the same name (a crash
	// between deleting its spec and its status) must not show on this one.
	if _, err := s.status.Get(ctx, out.Key()); err == nil {
		if err := s.status.Delete(ctx, out.Key()); err != nil {
			return nil, fmt.Errorf("clear status left by a deleted object: %w", err)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("read status: %w", err)
	}
	data, err := encodeSpec(out)
	if err != nil {
		return nil, err
	}
	rev, err := s.specs.Create(ctx, out.Key(), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("%w: %w: another writer created it first", ErrConflict, ErrAlreadyExists)
	}
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	m.ResourceVersion = strconv.FormatUint(rev, 10)
	return out, nil
}

// Get returns the object with its status filled in.
func (s *Store) Get(ctx context.Context, namespace, name string) (*v1alpha1.ServingApp, error) {
	key, err := objectKey(namespace, name)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", namespace, name, err)
	}
	app, _, err := s.readSpec(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", namespace, name, err)
	}
	st, _, err := s.readStatus(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", namespace, name, err)
	}
	app.Status = *st
	return app, nil
}

// Delete asks for the object's deletion. While finalizers remain it only sets
// deletionTimestamp (once; a repeated Delete keeps the first) and raises
// generation, and the object stays until RemoveFinalizer takes the last one.
// Without finalizers it removes the object and its status at once. It
// returns the object as last stored: it still exists iff it has finalizers.
//
// Raising generation at deletion departs from "spec changes only" on
// purpose, as the Kubernetes API server does when it sets
// deletionTimestamp: status.observedGeneration then tells whether the
// controller has seen the deletion request, which an admin waiting on
// `servingctl delete --wait` wants to know.
func (s *Store) Delete(ctx context.Context, namespace, name string) (*v1alpha1.ServingApp, error) {
	out, err := s.modify(ctx, namespace, name, func(cur *v1alpha1.ServingApp) (action, error) {
		if len(cur.Metadata.Finalizers) == 0 {
			return remove, nil
		}
		if cur.Metadata.DeletionTimestamp != nil {
			return keep, nil
		}
		now := s.now().UTC().Truncate(time.Second)
		cur.Metadata.DeletionTimestamp = &now
		cur.Metadata.Generation++
		return write, nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete %s/%s: %w", namespace, name, err)
	}
	return out, nil
}

// AddFinalizer adds finalizer to the object unless it is there already. It
// does not change generation. An object being deleted gets ErrBeingDeleted.
func (s *Store) AddFinalizer(ctx context.Context, namespace, name, finalizer string) (*v1alpha1.ServingApp, error) {
	out, err := s.modify(ctx, namespace, name, func(cur *v1alpha1.ServingApp) (action, error) {
		m := &cur.Metadata
		for _, f := range m.Finalizers {
			if f == finalizer {
				return keep, nil
			}
		}
		if m.DeletionTimestamp != nil {
			return keep, ErrBeingDeleted
		}
		m.Finalizers = append(m.Finalizers, finalizer)
		return write, nil
	})
	if err != nil {
		return nil, fmt.Errorf("add finalizer %s to %s/%s: %w", finalizer, namespace, name, err)
	}
	return out, nil
}

// RemoveFinalizer removes finalizer from the object if it is there. Removing
// the last finalizer of an object with a deletionTimestamp deletes the
// object and its status; the returned object is then the deleted one, its
// resourceVersion that of its last stored state.
func (s *Store) RemoveFinalizer(ctx context.Context, namespace, name, finalizer string) (*v1alpha1.ServingApp, error) {
	out, err := s.modify(ctx, namespace, name, func(cur *v1alpha1.ServingApp) (action, error) {
		m := &cur.Metadata
		kept := m.Finalizers[:0:0]
		for _, f := range m.Finalizers {
			if f != finalizer {
				kept = append(kept, f)
			}
		}
		if len(kept) == len(m.Finalizers) {
			return keep, nil
		}
		if len(kept) == 0 {
			kept = nil
		}
		m.Finalizers = kept
		if kept == nil && m.DeletionTimestamp != nil {
			return remove, nil
		}
		return write, nil
	})
	if err != nil {
		return nil, fmt.Errorf("remove finalizer %s from %s/%s: %w", finalizer, namespace, name, err)
	}
	return out, nil
}

// action is what a read-modify-write does with the object it read.
type action int

const (
	keep   action = iota // write nothing
	write                // store the modified object
	remove               // delete the object and its status
)

// modify reads an object, lets change decide, and writes the result back with
// compare-and-set on the revision it read, retrying when another writer won.
func (s *Store) modify(ctx context.Context, namespace, name string, change func(*v1alpha1.ServingApp) (action, error)) (*v1alpha1.ServingApp, error) {
	key, err := objectKey(namespace, name)
	if err != nil {
		return nil, err
	}
	for range maxAttempts {
		cur, rev, err := s.readSpec(ctx, key)
		if err != nil {
			return nil, err
		}
		act, err := change(cur)
		if err != nil {
			return nil, err
		}
		switch act {
		case keep:
			return cur, nil
		case write:
			newRev, err := s.writeSpec(ctx, cur, rev)
			if errors.Is(err, ErrConflict) {
				continue
			}
			if err != nil {
				return nil, err
			}
			cur.Metadata.ResourceVersion = strconv.FormatUint(newRev, 10)
			return cur, nil
		case remove:
			err := s.specs.Delete(ctx, key, jetstream.LastRevision(rev))
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("delete spec: %w", err)
			}
			if err := s.status.Delete(ctx, key); err != nil {
				return nil, fmt.Errorf("delete status: %w", err)
			}
			return cur, nil
		}
	}
	return nil, fmt.Errorf("%w: concurrent writers won %d times in a row", ErrConflict, maxAttempts)
}

// readSpec returns the stored object under key with its resourceVersion, and
// its revision.
func (s *Store) readSpec(ctx context.Context, key string) (*v1alpha1.ServingApp, uint64, error) {
	e, err := s.specs.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read spec: %w", err)
	}
	app, err := decodeSpec(e.Value(), e.Revision())
	if err != nil {
		return nil, 0, err
	}
	return app, e.Revision(), nil
}

// writeSpec stores app if the stored revision is still rev; ErrConflict if not.
func (s *Store) writeSpec(ctx context.Context, app *v1alpha1.ServingApp, rev uint64) (uint64, error) {
	data, err := encodeSpec(app)
	if err != nil {
		return 0, err
	}
	newRev, err := s.specs.Update(ctx, app.Key(), data, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("%w: the object changed since revision %d", ErrConflict, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("write spec: %w", err)
	}
	return newRev, nil
}

// encodeSpec is the spec bucket value: the object without status and
// resourceVersion (the KV revision carries it).
func encodeSpec(app *v1alpha1.ServingApp) ([]byte, error) {
	c := *app
	c.Metadata.ResourceVersion = ""
	c.Status = v1alpha1.ServingAppStatus{}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", app.NamespacedName(), err)
	}
	return b, nil
}

func decodeSpec(data []byte, rev uint64) (*v1alpha1.ServingApp, error) {
	app := new(v1alpha1.ServingApp)
	if err := json.Unmarshal(data, app); err != nil {
		return nil, fmt.Errorf("decode stored object at revision %d: %w", rev, err)
	}
	app.Status = v1alpha1.ServingAppStatus{}
	app.Metadata.ResourceVersion = strconv.FormatUint(rev, 10)
	return app, nil
}

// userFieldsDiffer reports whether spec, labels or annotations differ, by
// their normalized JSON (map keys sorted, empty maps and nil alike).
func userFieldsDiffer(a, b *v1alpha1.ServingApp) (bool, error) {
	ja, err := userFields(a)
	if err != nil {
		return false, err
	}
	jb, err := userFields(b)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(ja, jb), nil
}

func userFields(a *v1alpha1.ServingApp) ([]byte, error) {
	b, err := json.Marshal(struct {
		Labels      map[string]string        `json:"labels,omitempty"`
		Annotations map[string]string        `json:"annotations,omitempty"`
		Spec        *v1alpha1.ServingAppSpec `json:"spec"`
	}{a.Metadata.Labels, a.Metadata.Annotations, &a.Spec})
	if err != nil {
		return nil, fmt.Errorf("normalize %s: %w", a.NamespacedName(), err)
	}
	return b, nil
}

// objectKey is the KV key of namespace/name. Names that are not DNS labels
// cannot be stored, so they are reported as not found.
func objectKey(namespace, name string) (string, error) {
	if !isDNSLabel(namespace) || !isDNSLabel(name) {
		return "", fmt.Errorf("%w: %q/%q is not a namespace/name pair of DNS labels", ErrNotFound, namespace, name)
	}
	return namespace + "." + name, nil
}

func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
