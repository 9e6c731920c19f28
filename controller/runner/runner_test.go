package runner

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/config"
	"github.com/servingapp/servingapp/controller/platformtest"
	"github.com/servingapp/servingapp/internal/natstest"
)

// TestRunServesHealthMetricsAndReconciles runs the controller with and
// without leader election: either way the one running controller leads, and
// /readyz and the leader gauge both say so.
func TestRunServesHealthMetricsAndReconciles(t *testing.T) {
	for _, tc := range []struct{ name, leaderElection string }{
		{"elected", "{leaseTTL: 3s, renewEvery: 500ms, renewDeadline: 2s}"},
		{"election disabled", "{disabled: true}"},
	} {
		t.Run(tc.name, func(t *testing.T) { testRunServesHealthMetricsAndReconciles(t, tc.leaderElection) })
	}
}

func testRunServesHealthMetricsAndReconciles(t *testing.T, leaderElection string) {
	url, _ := natstest.Start(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg, err := config.Parse([]byte("controllerId: test\nplatform: local\ndefaultImage: webapp:1\nappDomain: apps.test\nnats: {url: " + url + "}\nleaderElection: " + leaderElection + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Deps{NC: nc, Platform: platformtest.New(), Log: slog.New(slog.DiscardHandler), Listener: ln})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	js, _ := jetstream.New(nc)
	st, err := store.New(context.Background(), js, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := int32(1)
	app := &v1.ServingApp{APIVersion: v1.APIVersion, Kind: v1.Kind, Metadata: v1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: v1.ServingAppSpec{Replicas: &r, Allowlist: []string{"127.0.0.1/32"},
			Databricks: v1.Databricks{Host: "https://dbc.cloud.databricks.com", ServingEndpoint: "echo"}}}
	if _, _, err := st.Apply(context.Background(), app); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, err := st.Get(context.Background(), "team", "web")
		if err == nil && a.Status.Phase == v1.PhaseReady {
			if a.Status.URL != "https://web.team.apps.test/" {
				t.Fatalf("derived URL %q", a.Status.URL)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not Ready: %+v %v", a.Status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tc := range []struct{ path, want string }{
		{"/healthz", "ok"},
		{"/readyz", "ok leader"},
		// Samples are matched from the start of a line: the HELP line of
		// the leader gauge reads "# HELP servingapp_controller_leader 1 while …".
		{"/metrics", "\n" + `servingapp_controller_reconciles_total{result="success"}`},
		{"/metrics", "\nservingapp_controller_reconcile_duration_seconds_count "},
		{"/metrics", "\nservingapp_controller_leader 1\n"},
		{"/metrics", "\nservingapp_controller_queue_depth "},
	} {
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), tc.want) {
			t.Fatalf("GET %s: %d, want %q in\n%s", tc.path, resp.StatusCode, tc.want, b)
		}
	}
}
