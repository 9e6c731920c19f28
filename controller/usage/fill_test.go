package usage

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/api/audit"
)

// syncBuffer is a bytes.Buffer for a logger and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -2
}

func TestFullAuditStreamIsReportedByMetricAndLog(t *testing.T) {
	f := newFixture(t)
	const limit = 16 << 10
	if err := audit.EnsureStreams(context.Background(), f.js, audit.StreamOptions{AuditMaxBytes: limit}); err != nil {
		t.Fatal(err)
	}
	refused := false
	for i := 0; i < 200 && !refused; i++ {
		b, _ := f.encode(event{ns: "analytics", name: "summarizer", typ: audit.LoginSucceeded, at: f.base})
		if _, err := f.js.Publish(context.Background(), audit.AuditSubject("analytics", "summarizer", audit.LoginSucceeded), b); err != nil {
			refused = true
		}
	}
	if !refused {
		t.Fatal("the stream never refused an event")
	}
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	opts := f.options(f.js, reg)
	opts.Log = slog.New(slog.NewTextHandler(&logs, nil))
	f.start(opts)
	waitFor(t, "the full stream logged", func() bool { return strings.Contains(logs.String(), "audit stream is full") })
	if got := gaugeValue(t, reg, "servingapp_audit_stream_max_bytes"); got != limit {
		t.Fatalf("max bytes gauge %v, want %d", got, limit)
	}
	if got := gaugeValue(t, reg, "servingapp_audit_stream_bytes"); got < 0.9*limit {
		t.Fatalf("bytes gauge %v for a full stream of %d", got, limit)
	}
}
