package runner

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/config"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/controller/platformtest"
	"github.com/servingapp/servingapp/internal/natstest"
)

// scalingPlatform is the in-memory platform plus the autoscaler's lever.
type scalingPlatform struct {
	*platformtest.Platform
	mu      sync.Mutex
	desired map[string]int32
}

func (p *scalingPlatform) SetDesiredCount(_ context.Context, app model.Ref, n int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.desired[app.String()] = n
	return nil
}

func (p *scalingPlatform) get(app string) int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desired[app]
}

func TestLeaderRunsTheAuditConsumerAndAutoscalerWhenThePlatformCanScale(t *testing.T) {
	url, _ := natstest.Start(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg, err := config.Parse([]byte("controllerId: test\nplatform: local\ndefaultImage: webapp:1\nappDomain: apps.test\nnats: {url: " + url + "}\nleaderElection: {leaseTTL: 3s, renewEvery: 500ms, renewDeadline: 2s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Events and the app are there before the controller starts.
	js, _ := jetstream.New(nc)
	if err := audit.EnsureStreams(context.Background(), js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := store.New(context.Background(), js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	app := &v1.ServingApp{APIVersion: v1.APIVersion, Kind: v1.Kind, Metadata: v1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: v1.ServingAppSpec{Allowlist: []string{"127.0.0.1/32"},
			Autoscaling: &v1.Autoscaling{MinReplicas: 2, MaxReplicas: 5, TargetInvocationsPerReplicaPerMinute: 100},
			Databricks:  v1.Databricks{Host: "https://dbc.cloud.databricks.com", ServingEndpoint: "echo"}}}
	if _, _, err := st.Apply(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 3 {
		ev := audit.NewAuditEvent(audit.InvocationCompleted, audit.AppRef{Namespace: "team", Name: "web"}, now)
		b, err := audit.EncodeAuditEvent(audit.NewEventID(), audit.InvocationCompleted, ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(context.Background(), audit.AuditSubject("team", "web", audit.InvocationCompleted), b); err != nil {
			t.Fatal(i, err)
		}
	}

	p := &scalingPlatform{Platform: platformtest.New(), desired: map[string]int32{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Deps{NC: nc, Platform: p, Log: slog.New(slog.DiscardHandler), Listener: ln})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, err := st.Get(context.Background(), "team", "web")
		if err == nil && a.Status.Usage.Invocations24h == 3 && p.get("team/web") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage %+v, desired count %d; want 3 invocations and the autoscaler's minimum 2", a.Status.Usage, p.get("team/web"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
