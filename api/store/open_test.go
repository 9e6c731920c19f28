package store

import (
	"testing"

	"github.com/servingapp/servingapp/internal/natstest"
)

// TestOpenExistingNeverReconfiguresBuckets: a client opening the store must
// not resize or reconfigure the buckets the controller made.
func TestOpenExistingNeverReconfiguresBuckets(t *testing.T) {
	url, _ := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	ctx := ctxT(t)
	if _, err := New(ctx, js, Options{SpecHistory: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, js, Options{OpenExisting: true}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, DefaultSpecBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h := st.History(); h != 5 {
		t.Fatalf("history %d: OpenExisting changed the bucket (want 5)", h)
	}
	// Missing buckets are still created, so a fresh server works.
	_, js2 := natstest.Connect(t, func() string { u, _ := natstest.Start(t); return u }())
	if _, err := New(ctx, js2, Options{OpenExisting: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := js2.KeyValue(ctx, DefaultStatusBucket); err != nil {
		t.Fatalf("status bucket not created: %v", err)
	}
}
