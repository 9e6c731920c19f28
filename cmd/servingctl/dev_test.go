package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// runDev starts `servingctl dev` on dataDir with free ports and returns its
// output buffer and a stop function that cancels it (as Ctrl-C does) and
// returns its exit code.
func runDev(t *testing.T, dataDir string, extra ...string) (*lockedBuffer, func() int) {
	t.Helper()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	c := &cli{
		streams: streams{in: strings.NewReader(""), out: out, errOut: errOut},
		getenv:  func(string) string { return "" },
		now:     time.Now,
	}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	args := append([]string{"dev", "--data-dir", dataDir, "--nats-port", "0", "--gateway", "127.0.0.1:0"}, extra...)
	go func() { code <- c.run(ctx, args) }()
	stopped := false
	stop := func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case n := <-code:
			return n
		case <-time.After(60 * time.Second):
			t.Fatalf("servingctl dev did not stop after Ctrl-C; output:\n%s\n%s", out, errOut)
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(120 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case n := <-code:
			t.Fatalf("servingctl dev exited with %d before serving:\n%s\n%s", n, out, errOut)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("servingctl dev printed no table; output so far:\n%s\n%s", out, errOut)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out, stop
}

// TestDevServesTheExamplesStopsCleanlyAndKeepsSpecsAcrossRestarts: the first
// command of the README, run twice on one data dir.
func TestDevServesTheExamplesStopsCleanlyAndKeepsSpecsAcrossRestarts(t *testing.T) {
	dataDir := t.TempDir()
	apps := []string{"analytics/summarizer", "finance/reporting", "platform/chat"}

	out, stop := runDev(t, dataDir)
	text := out.String()
	for _, app := range apps {
		if !strings.Contains(text, "servingapp "+app+" created") {
			t.Errorf("first run did not create %s:\n%s", app, text)
		}
		ns, name, _ := strings.Cut(app, "/")
		if !tableRowReady(text, app, "http://"+name+"."+ns+".localhost:") {
			t.Errorf("table has no Ready row with a .localhost URL for %s:\n%s", app, text)
		}
	}
	for _, want := range []string{"first app Ready", "alice@example.com", "bob@example.com"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("Ctrl-C: exit %d, want 0:\n%s", code, out)
	}
	if !strings.Contains(out.String(), "stopping…") {
		t.Errorf("no stopping line:\n%s", out)
	}

	out, stop = runDev(t, dataDir)
	text = out.String()
	for _, app := range apps {
		if !strings.Contains(text, "servingapp "+app+" unchanged") {
			t.Errorf("second run on the same data dir did not find %s kept:\n%s", app, text)
		}
		if !tableRowReady(text, app, "http://") {
			t.Errorf("%s not Ready again after the restart:\n%s", app, text)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("second Ctrl-C: exit %d", code)
	}
}

// tableRowReady reports whether the dev table has a row for app in phase
// Ready whose URL starts with urlPrefix.
func tableRowReady(text, app, urlPrefix string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == app && f[1] == "Ready" && strings.HasPrefix(f[2], urlPrefix) {
			return true
		}
	}
	return false
}
