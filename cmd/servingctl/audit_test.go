package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
)

// auditTestEvent is one event the audit tests publish.
type auditTestEvent struct {
	id  string
	typ audit.EventType
	ev  audit.AuditEvent
}

// auditTestEvents is a small trail across three apps, at fixed times before
// testNow, so outputs are stable.
func auditTestEvents() []auditTestEvent {
	var out []auditTestEvent
	add := func(minutesAgo int, ns, name string, t audit.EventType, fill func(*audit.AuditEvent)) {
		ev := audit.NewAuditEvent(t, audit.AppRef{Namespace: ns, Name: name}, testNow.Add(-time.Duration(minutesAgo)*time.Minute))
		fill(&ev)
		out = append(out, auditTestEvent{id: fmt.Sprintf("evt%03d", len(out)+1), typ: t, ev: ev})
	}
	alice := &audit.User{UID: "sub-alice", EmailAddr: "alice@example.com"}
	bob := &audit.User{UID: "sub-bob", EmailAddr: "bob@example.com"}
	carol := &audit.User{UID: "sub-carol", EmailAddr: "carol@example.com"}
	api := func(endpoint string) *audit.API {
		return &audit.API{Operation: "invocations", Service: audit.Service{Name: endpoint}}
	}
	add(50, "analytics", "summarizer", audit.LoginSucceeded, func(ev *audit.AuditEvent) {
		ev.User, ev.SrcEndpoint = alice, &audit.NetEndpoint{IP: "203.0.113.7"}
	})
	add(49, "analytics", "summarizer", audit.InvocationCompleted, func(ev *audit.AuditEvent) {
		ev.Actor, ev.API, ev.Duration = &audit.Actor{User: alice}, api("databricks-claude-sonnet-4"), 1840
		ev.SrcEndpoint = &audit.NetEndpoint{IP: "203.0.113.7"}
	})
	add(45, "platform", "chat", audit.LoginFailed, func(ev *audit.AuditEvent) {
		ev.User, ev.StatusDetail = &audit.User{EmailAddr: "mallory@example.org"}, audit.ReasonPolicyDenied
		ev.SrcEndpoint = &audit.NetEndpoint{IP: "198.51.100.23"}
	})
	add(44, "platform", "chat", audit.LoginFailed, func(ev *audit.AuditEvent) {
		ev.StatusDetail, ev.SrcEndpoint = audit.ReasonStateMismatch, &audit.NetEndpoint{IP: "198.51.100.23"}
	})
	add(40, "platform", "chat", audit.LoginSucceeded, func(ev *audit.AuditEvent) {
		ev.User, ev.SrcEndpoint = bob, &audit.NetEndpoint{IP: "192.0.2.10"}
	})
	add(39, "platform", "chat", audit.InvocationFailed, func(ev *audit.AuditEvent) {
		ev.Actor, ev.API, ev.Duration = &audit.Actor{User: bob}, api("databricks-meta-llama"), 95
		ev.StatusCode = "REQUEST_LIMIT_EXCEEDED"
		ev.SrcEndpoint = &audit.NetEndpoint{IP: "192.0.2.10"}
	})
	add(30, "analytics", "summarizer", audit.SessionRefreshed, func(ev *audit.AuditEvent) {
		ev.User = alice
	})
	add(20, "finance", "forecast", audit.InvocationCompleted, func(ev *audit.AuditEvent) {
		ev.Actor, ev.API, ev.Duration = &audit.Actor{User: carol}, api("forecast-model"), 410
	})
	add(10, "analytics", "summarizer", audit.Logout, func(ev *audit.AuditEvent) {
		ev.User, ev.SrcEndpoint = alice, &audit.NetEndpoint{IP: "203.0.113.7"}
	})
	add(5, "platform", "chat", audit.SessionExpired, func(ev *audit.AuditEvent) {
		ev.User, ev.StatusDetail = bob, audit.ExpiryIdle
	})
	return out
}

func publishAuditEvents(t *testing.T, js jetstream.JetStream, evs []auditTestEvent) {
	t.Helper()
	for _, e := range evs {
		b, err := audit.EncodeAuditEvent(e.id, e.typ, e.ev)
		if err != nil {
			t.Fatal(err)
		}
		app := e.ev.App()
		if _, err := js.Publish(context.Background(), audit.AuditSubject(app.Namespace, app.Name, e.typ), b, jetstream.WithMsgID(e.id)); err != nil {
			t.Fatal(err)
		}
	}
}

// newAuditHarness starts a server with the audit stream holding the test trail.
func newAuditHarness(t *testing.T) (*harness, jetstream.JetStream) {
	h := newHarness(t)
	js := h.openJS()
	if err := audit.EnsureStreams(context.Background(), js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	publishAuditEvents(t, js, auditTestEvents())
	return h, js
}

func TestAuditTailGolden(t *testing.T) {
	h, _ := newAuditHarness(t)
	cases := []struct {
		name string
		args []string
	}{
		{"audit-tail", []string{"audit", "tail"}},
		{"audit-tail-app", []string{"audit", "tail", "--app", "analytics/summarizer"}},
		{"audit-tail-type", []string{"audit", "tail", "--type", "login.failed"}},
		{"audit-tail-family-namespace", []string{"audit", "tail", "--type", "login,invocation.failed", "--app", "platform/*"}},
		{"audit-tail-user", []string{"audit", "tail", "--user", "ALICE@example.com", "--since", "all"}},
		{"audit-tail-json", []string{"audit", "tail", "--type", "invocation.failed", "-o", "json"}},
		{"audit-tail-ocsf", []string{"audit", "tail", "--app", "finance/forecast", "-o", "ocsf"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := h.run("", tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			golden(t, tc.name, out)
		})
	}
}

func TestAuditTailPrintsInStreamOrderAndNothingTwice(t *testing.T) {
	h, _ := newAuditHarness(t)
	out, errOut, code := h.run("", "audit", "tail", "-o", "json", "--since", "all")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ce audit.CloudEvent
		if err := json.Unmarshal([]byte(line), &ce); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ce.ID)
	}
	var want []string
	for _, e := range auditTestEvents() {
		want = append(want, e.id)
	}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Fatalf("ids %v, want %v", ids, want)
	}
}

func TestAuditTailSinceSeeksByStorageTime(t *testing.T) {
	h, js := newAuditHarness(t)
	// The trail above was stored before mark; these two after it.
	mark := time.Now().UTC()
	later := auditTestEvents()[:2]
	for i := range later {
		later[i].id = fmt.Sprintf("late%d", i)
	}
	publishAuditEvents(t, js, later)
	out, errOut, code := h.run("", "audit", "tail", "--since", mark.Format(time.RFC3339Nano), "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := strings.Count(out, "\n"); got != 2 || !strings.Contains(out, `"id":"late0"`) || !strings.Contains(out, `"id":"late1"`) {
		t.Fatalf("want exactly the 2 events stored after %s:\n%s", mark, out)
	}
	// Nothing stored after a time in the future: a clean, empty answer.
	out, errOut, code = h.run("", "audit", "tail", "--since", time.Now().Add(time.Hour).Format(time.RFC3339))
	if code != 0 || out != "" || errOut != "No audit events match.\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitForLines waits until out holds n lines; the deadline only bounds a
// broken test, it asserts nothing about speed.
func waitForLines(t *testing.T, out *lockedBuffer, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(out.String(), "\n") < n {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d lines, have:\n%s", n, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuditTailFollowReplaysThenPrintsNewEvents(t *testing.T) {
	h, js := newAuditHarness(t)
	var out, errOut lockedBuffer
	c := &cli{
		streams: streams{in: strings.NewReader(""), out: &out, errOut: &errOut},
		getenv: func(k string) string {
			if k == "SERVINGAPP_NATS_URL" {
				return h.url
			}
			return ""
		},
		now: func() time.Time { return testNow },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int)
	go func() { done <- c.run(ctx, []string{"audit", "tail", "-f", "--app", "platform/chat"}) }()

	waitForLines(t, &out, 1+5) // header and the 5 stored events of platform/chat
	more := auditTestEvents()
	var follow []auditTestEvent
	for k, i := range []int{2, 0, 3} { // two of platform/chat around one of another app
		e := more[i]
		e.id = fmt.Sprintf("new%d", i)
		e.ev.Time = testNow.Add(time.Duration(k) * time.Second).UnixMilli()
		follow = append(follow, e)
	}
	publishAuditEvents(t, js, follow)
	waitForLines(t, &out, 1+5+2)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	golden(t, "audit-tail-follow", out.String())
}

func TestAuditReadsLeaveTheStreamUntouched(t *testing.T) {
	h, js := newAuditHarness(t)
	ctx := context.Background()
	s, err := js.Stream(ctx, audit.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"audit", "tail", "--since", "all"},
		{"audit", "tail", "--type", "login"},
		{"audit", "export", "--since", "all", "--until", time.Now().Add(time.Hour).Format(time.RFC3339)},
	} {
		if _, errOut, code := h.run("", args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
	}
	after, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.Msgs != before.State.Msgs || after.State.LastSeq != before.State.LastSeq || after.State.Consumers != 0 {
		t.Fatalf("stream changed: %d→%d messages, last %d→%d, %d consumers left", before.State.Msgs, after.State.Msgs,
			before.State.LastSeq, after.State.LastSeq, after.State.Consumers)
	}
}

func TestAuditExportWritesSchemaValidOCSFLinesOncePerWindow(t *testing.T) {
	h, js := newAuditHarness(t)
	mark := time.Now().UTC()
	later := auditTestEvents()
	for i := range later {
		later[i].id = fmt.Sprintf("w2-%02d", i)
	}
	publishAuditEvents(t, js, later)
	end := time.Now().UTC().Add(time.Second)
	types := map[string]audit.EventType{}
	for _, e := range auditTestEvents() {
		types[e.id] = e.typ
	}
	for _, e := range later {
		types[e.id] = e.typ
	}
	v, err := audit.NewSchemaValidator()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, window := range [][2]string{{"all", mark.Format(time.RFC3339Nano)}, {mark.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano)}} {
		out, errOut, code := h.run("", "audit", "export", "--since", window[0], "--until", window[1])
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if !strings.HasPrefix(errOut, fmt.Sprintf("exported %d events stored from ", len(lines))) {
			t.Errorf("summary %q for %d lines", errOut, len(lines))
		}
		for _, line := range lines {
			var ev audit.AuditEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			typ, ok := types[ev.Metadata.UID]
			if !ok {
				t.Fatalf("unknown event %q", ev.Metadata.UID)
			}
			if err := v.ValidateOCSF(typ, []byte(line)); err != nil {
				t.Errorf("line of %s: %v", typ, err)
			}
			seen[ev.Metadata.UID]++
		}
	}
	if len(seen) != len(types) {
		t.Errorf("exported %d distinct events, want %d", len(seen), len(types))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s exported %d times across the two windows", id, n)
		}
	}
}

func TestAuditUsageErrors(t *testing.T) {
	h, _ := newAuditHarness(t)
	for _, args := range [][]string{
		{"audit", "tail", "--app", "summarizer"},
		{"audit", "tail", "--app", "Analytics/summarizer"},
		{"audit", "tail", "--type", "login.maybe"},
		{"audit", "tail", "--since", "yesterday"},
		{"audit", "tail", "-o", "yaml"},
		{"audit", "export"},
		{"audit", "export", "--since", "1h", "--until", "2h"},
		{"audit", "schema", "bogus"},
	} {
		if _, errOut, code := h.run("", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, errOut)
		}
	}
}

func TestAuditSchemaPrintsTheEmbeddedSchemas(t *testing.T) {
	h := newHarness(t)
	out, _, code := h.run("", "audit", "schema")
	if code != 0 || strings.Count(out, "\n") != len(audit.EventTypes) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, _, code = h.run("", "audit", "schema", "login.failed")
	want, _ := audit.Schema(audit.LoginFailed)
	if code != 0 || out != string(want) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestAuditSubjectFiltersAvoidOverlaps(t *testing.T) {
	tests := []struct {
		apps, types []string
		want        string
	}{
		{nil, nil, "servingapp.audit.>"},
		{[]string{"a/b"}, nil, "servingapp.audit.a.b.>"},
		{nil, []string{"login.failed"}, "servingapp.audit.*.*.login.failed"},
		{[]string{"a/*", "a/b", "c/d"}, []string{"login", "login.failed", "logout"},
			"servingapp.audit.a.*.login.> servingapp.audit.a.*.logout servingapp.audit.c.d.login.> servingapp.audit.c.d.logout"},
	}
	for _, tt := range tests {
		f := auditFilters{apps: tt.apps, types: tt.types}
		q, err := f.query()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(q.subjects, " "); got != tt.want {
			t.Errorf("apps %v types %v: %s, want %s", tt.apps, tt.types, got, tt.want)
		}
	}
}
