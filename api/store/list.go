package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/v1alpha1"
)

// ListOptions select objects for List and Watch.
type ListOptions struct {
	// Namespace limits the result to one namespace; empty means all.
	Namespace string
	// Selector is a label selector (see ParseSelector); empty selects all.
	Selector string
}

// filter returns the key filter for the namespace and the parsed selector.
func (o ListOptions) filter() (string, Selector, error) {
	sel, err := ParseSelector(o.Selector)
	if err != nil {
		return "", Selector{}, err
	}
	if o.Namespace == "" {
		return "*.*", sel, nil
	}
	if !isDNSLabel(o.Namespace) {
		return "", Selector{}, fmt.Errorf("namespace %q is not a DNS label", o.Namespace)
	}
	return o.Namespace + ".*", sel, nil
}

// List returns the objects in opts.Namespace (all namespaces when empty) whose
// labels match opts.Selector, each with its status, sorted by namespace then
// name. A bad selector gets an error wrapping ErrInvalidSelector.
func (s *Store) List(ctx context.Context, opts ListOptions) ([]*v1alpha1.ServingApp, error) {
	filter, sel, err := opts.filter()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	specs, err := snapshot(ctx, s.specs, filter)
	if err != nil {
		return nil, fmt.Errorf("list: read specs: %w", err)
	}
	var apps []*v1alpha1.ServingApp
	for _, e := range specs {
		app, err := decodeSpec(e.Value(), e.Revision())
		if err != nil {
			return nil, fmt.Errorf("list: key %s: %w", e.Key(), err)
		}
		if sel.Matches(app.Metadata.Labels) {
			apps = append(apps, app)
		}
	}
	if len(apps) == 0 {
		return nil, nil
	}
	statuses, err := snapshot(ctx, s.status, filter)
	if err != nil {
		return nil, fmt.Errorf("list: read status: %w", err)
	}
	byKey := make(map[string]jetstream.KeyValueEntry, len(statuses))
	for _, e := range statuses {
		byKey[e.Key()] = e
	}
	for _, app := range apps {
		if e, ok := byKey[app.Key()]; ok {
			st, err := decodeStatus(e.Value(), e.Revision())
			if err != nil {
				return nil, fmt.Errorf("list: status of %s: %w", app.NamespacedName(), err)
			}
			app.Status = *st
		}
	}
	slices.SortFunc(apps, func(a, b *v1alpha1.ServingApp) int {
		return cmp.Or(cmp.Compare(a.Metadata.Namespace, b.Metadata.Namespace), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	return apps, nil
}

// snapshot returns the current entry of every live key matching filter, read
// in one pass with a KV watcher that stops at the end of the initial values.
func snapshot(ctx context.Context, kv jetstream.KeyValue, filter string) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = w.Stop()
		// The watcher's callback blocks on a full channel; let it finish so
		// the subscription can close.
		go func() {
			for range w.Updates() {
			}
		}()
	}()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("watcher closed before the initial values were read")
			}
			if e == nil {
				return out, nil
			}
			out = append(out, e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
