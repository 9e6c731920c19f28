package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/natstest"
)

var auditBenchEvents = flag.Int("audit-events", 1_000_000, "events BenchmarkAuditTail stores before it measures")

// BenchmarkAuditTail fills an embedded server (file storage) with
// -audit-events events (default 1,000,000) across 20 apps and every type,
// published asynchronously, then measures servingctl audit commands on it:
// ns/op of the tail cases is the time from the start of the command
// (connecting included) to its first line of output. Run it with
//
//	go test -run '^$' -bench AuditTail -benchtime 5x -timeout 30m ./cmd/servingctl/
func BenchmarkAuditTail(b *testing.B) {
	url, _ := natstest.Start(b)
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{}); err != nil {
		b.Fatal(err)
	}
	n := *auditBenchEvents
	start := time.Now()
	for i := range n {
		t := audit.EventTypes[(i/20)%len(audit.EventTypes)]
		app := fmt.Sprintf("app%02d", i%20)
		ev := audit.NewAuditEvent(t, audit.AppRef{Namespace: "bench", Name: app}, time.Now())
		ev.User = &audit.User{UID: fmt.Sprintf("sub-%d", i%500), EmailAddr: fmt.Sprintf("user%d@example.com", i%500)}
		ev.SrcEndpoint = &audit.NetEndpoint{IP: fmt.Sprintf("198.51.100.%d", i%250)}
		id := fmt.Sprintf("%032x", i)
		data, err := audit.EncodeAuditEvent(id, t, ev)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishAsync(audit.AuditSubject("bench", app, t), data, jetstream.WithMsgID(id)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("publishes not acknowledged")
	}
	s, err := js.Stream(ctx, audit.AuditStream)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("stored %d events (%d MB) in %s: %.0f events/s", info.State.Msgs, info.State.Bytes>>20, time.Since(start).Round(time.Millisecond),
		float64(n)/time.Since(start).Seconds())
	// --since the storage time of the 1,000th event from the end.
	m, err := s.GetMsg(ctx, info.State.LastSeq-999)
	if err != nil {
		b.Fatal(err)
	}
	recent := m.Time.UTC().Format(time.RFC3339Nano)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"since=last-1000", []string{"audit", "tail", "--since", recent}},
		{"since=1h(all)", []string{"audit", "tail", "--since", "1h"}},
		{"app/since=last-1000", []string{"audit", "tail", "--app", "bench/app07", "--since", recent}},
		{"app+type/since=all", []string{"audit", "tail", "--app", "bench/app07", "--type", "login.failed", "--since", "all"}},
		{"app+type/since=last-1000", []string{"audit", "tail", "--app", "bench/app07", "--type", "login.failed", "--since", recent}},
		{"user/since=last-1000", []string{"audit", "tail", "--user", "user7@example.com", "--since", recent}},
		{"ocsf/since=last-1000", []string{"audit", "tail", "-o", "ocsf", "--since", recent}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				timeToFirstLine(b, url, tc.args)
			}
		})
	}
	b.Run("export-all", func(b *testing.B) {
		for b.Loop() {
			out := &countingWriter{}
			c := benchCLI(url, out, io.Discard)
			began := time.Now()
			if code := c.run(ctx, []string{"audit", "export", "--since", "all", "--until", time.Now().Add(time.Hour).Format(time.RFC3339)}); code != 0 {
				b.Fatalf("exit %d", code)
			}
			b.ReportMetric(float64(out.lines)/time.Since(began).Seconds(), "events/s")
		}
	})
}

func benchCLI(url string, out, errOut io.Writer) *cli {
	return &cli{
		streams: streams{in: strings.NewReader(""), out: out, errOut: errOut},
		getenv: func(k string) string {
			if k == "SERVINGAPP_NATS_URL" {
				return url
			}
			return ""
		},
		now:     time.Now,
		timeout: 10 * time.Second,
	}
}

// timeToFirstLine runs servingctl until its first write and stops it there.
func timeToFirstLine(b *testing.B, url string, args []string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &firstWrite{cancel: cancel}
	c := benchCLI(url, w, io.Discard)
	if code := c.run(ctx, args); code != 0 {
		b.Fatalf("%v: exit %d", args, code)
	}
	if !w.wrote {
		b.Fatalf("%v: no output", args)
	}
}

// firstWrite cancels the command at its first output.
type firstWrite struct {
	mu     sync.Mutex
	wrote  bool
	cancel func()
}

func (f *firstWrite) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.wrote {
		f.wrote = true
		f.cancel()
	}
	return len(p), nil
}

type countingWriter struct{ lines int }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.lines += strings.Count(string(p), "\n")
	return len(p), nil
}
