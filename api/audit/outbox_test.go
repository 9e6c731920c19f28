package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func testMessage(i int) message {
	return message{subject: "servingapp.audit.ns.app.logout", id: fmt.Sprintf("id-%04d", i), data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

// drain peeks and pops every message and returns their ids in order.
func drain(t *testing.T, o *outbox) []string {
	t.Helper()
	var ids []string
	for {
		m, ok, err := o.peek()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return ids
		}
		ids = append(ids, m.id)
		if err := o.pop(); err != nil {
			t.Fatal(err)
		}
	}
}

func wantIDs(from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, fmt.Sprintf("id-%04d", i))
	}
	return ids
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOutboxKeepsOrderAcrossSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	o, err := openOutbox(dir, 1<<20, 256, nil) // tiny segments: many files
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := o.append(testMessage(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Publish 20, then "crash" (close without draining) and reopen.
	for range 20 {
		if _, _, err := o.peek(); err != nil {
			t.Fatal(err)
		}
		if err := o.pop(); err != nil {
			t.Fatal(err)
		}
	}
	o.close()
	o, err = openOutbox(dir, 1<<20, 256, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.count != 30 {
		t.Fatalf("after reopen count = %d, want 30", o.count)
	}
	for i := 50; i < 60; i++ {
		if err := o.append(testMessage(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := drain(t, o); !equalStrings(got, wantIDs(20, 60)) {
		t.Fatalf("ids = %v", got)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, segmentPrefix+"*"))
	if len(segs) != 0 || o.bytes != 0 {
		t.Fatalf("drained outbox keeps %d segments and %d bytes", len(segs), o.bytes)
	}
	o.close()
}

func TestOutboxCutsOffTornRecord(t *testing.T) {
	dir := t.TempDir()
	o, err := openOutbox(dir, 1<<20, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := o.append(testMessage(i)); err != nil {
			t.Fatal(err)
		}
	}
	seg := o.segPath(o.segs[0])
	o.close()
	// A crash in the middle of a write leaves half a record.
	half := encodeRecord(testMessage(5))[:10]
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(half); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	o, err = openOutbox(dir, 1<<20, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	if err := o.append(testMessage(6)); err != nil {
		t.Fatal(err)
	}
	want := append(wantIDs(0, 5), "id-0006")
	if got := drain(t, o); !equalStrings(got, want) {
		t.Fatalf("ids = %v, want %v", got, want)
	}
}

func TestOutboxRefusesBeyondItsBound(t *testing.T) {
	o, err := openOutbox(t.TempDir(), 3*testMessage(0).size(), 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	for i := range 3 {
		if err := o.append(testMessage(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.append(testMessage(3)); !errors.Is(err, errOutboxFull) {
		t.Fatalf("append to a full outbox: %v, want errOutboxFull", err)
	}
	if _, _, err := o.peek(); err != nil {
		t.Fatal(err)
	}
	if err := o.pop(); err != nil {
		t.Fatal(err)
	}
	if err := o.append(testMessage(3)); err != nil {
		t.Fatalf("append after a pop: %v", err)
	}
}

func TestOutboxDirectoryIsExclusive(t *testing.T) {
	dir := t.TempDir()
	o, err := openOutbox(dir, 1<<20, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openOutbox(dir, 1<<20, 1<<20, nil); !errors.Is(err, ErrOutboxLocked) {
		t.Fatalf("second open: %v, want ErrOutboxLocked", err)
	}
	o.close()
	o, err = openOutbox(dir, 1<<20, 1<<20, nil)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	o.close()
}
