package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/awsemu"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
	"github.com/servingapp/servingapp/internal/natstest"
)

// syncBuffer is an io.Writer safe for the controller's goroutines.
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

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "local.yaml")
	if err := os.WriteFile(local, []byte("controllerId: dev\nplatform: local\ndefaultImage: x\nnats: {url: nats://127.0.0.1:4222}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"version", []string{"--version"}, 0, "servingapp-controller dev", ""},
		{"no config", nil, 2, "", "usage: servingapp-controller"},
		{"unknown flag", []string{"--nope"}, 2, "", "flag provided but not defined"},
		{"stray argument", []string{"--config", local, "extra"}, 2, "", "usage"},
		{"missing file", []string{"--config", filepath.Join(dir, "absent.yaml")}, 1, "", "read controller config"},
		{"local platform", []string{"--config", local}, 1, "", "servingctl dev"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stdout %q stderr %q, want %q and %q", stdout.String(), stderr.String(), tc.stdout, tc.stderr)
			}
		})
	}
}

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer ok.Close()
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) }))
	defer sick.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name string
		addr string
		code int
	}{
		{"healthy", ok.Listener.Addr().String(), 0},
		{"unhealthy", sick.Listener.Addr().String(), 1},
		{"not listening", closed.Listener.Addr().String(), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(context.Background(), []string{"healthcheck", "--addr", tc.addr}, &bytes.Buffer{}, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d (%s)", code, tc.code, stderr.String())
			}
		})
	}
}

// TestRunsAppsOnEmulatedAWS runs the binary's code against embedded NATS,
// the AWS emulator (through AWS_ENDPOINT_URL, as any emulator would be used)
// and the Databricks emulator, whose account service principal it reads from
// Secrets Manager: an applied app becomes Ready, and SIGTERM stops it with 0.
func TestRunsAppsOnEmulatedAWS(t *testing.T) {
	ctx := context.Background()
	natsURL, _ := natstest.Start(t)
	aws := awsemu.New(awsemu.Options{ECS: awsemu.ECSOptions{InstantRollout: true}})
	t.Cleanup(aws.Close)
	t.Setenv("AWS_ENDPOINT_URL", aws.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	db, err := emulator.Start(emulator.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Shutdown(context.Background()) })

	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(awsemu.DefaultRegion),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")), awsconfig.WithBaseEndpoint(aws.URL))
	if err != nil {
		t.Fatal(err)
	}
	elbc, ecsc, smc := elb.NewFromConfig(awsCfg), ecs.NewFromConfig(awsCfg), sm.NewFromConfig(awsCfg)
	lb, err := elbc.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: awssdk.String("servingapp"), Subnets: []string{"subnet-a", "subnet-b"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := elbc.CreateListener(ctx, &elb.CreateListenerInput{
		LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn, Protocol: elbtypes.ProtocolEnumHttps, Port: awssdk.Int32(443),
		Certificates:   []elbtypes.Certificate{{CertificateArn: awssdk.String("arn:aws:acm:us-east-1:123456789012:certificate/c")}},
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{StatusCode: awssdk.String("404")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ecsc.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: awssdk.String("apps")}); err != nil {
		t.Fatal(err)
	}
	sp, _ := json.Marshal(map[string]string{"client_id": emulator.DefaultAdminClientID, "client_secret": emulator.DefaultAdminSecret})
	if _, err := smc.CreateSecret(ctx, &sm.CreateSecretInput{Name: awssdk.String("servingapp/databricks/account-sp"), SecretString: awssdk.String(string(sp))}); err != nil {
		t.Fatal(err)
	}

	health := freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "controller.yaml")
	cfgYAML := fmt.Sprintf(`controllerId: itest
platform: aws
defaultImage: registry.example.com/webapp:1
appDomain: apps.example.com
nats: {url: %q}
listen: %q
logLevel: debug
aws:
  region: %s
  cluster: apps
  listenerArn: %s
  vpcId: %s
  subnets: [subnet-a, subnet-b]
  securityGroups: [sg-apps]
  executionRoleArn: arn:aws:iam::123456789012:role/exec
  logGroup: /servingapp/apps
  secretPrefix: servingapp/apps/
databricks:
  accountHost: %s
  accountId: %s
  credentialsSecret: servingapp/databricks/account-sp
`, natsURL, health, awsemu.DefaultRegion, awssdk.ToString(ln.Listeners[0].ListenerArn), awsemu.DefaultVPCID, db.URL, emulator.DefaultAccountID)
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(runCtx, []string{"--config", cfgPath}, &bytes.Buffer{}, stderr) }()

	_, js := natstest.Connect(t, natsURL)
	deadline := time.Now().Add(45 * time.Second)
	var st *store.Store
	for st == nil {
		// The controller creates the store's buckets; wait for them.
		if s, err := store.New(ctx, js, store.Options{}); err == nil {
			st = s
		} else if time.Now().After(deadline) {
			t.Fatalf("no store: %v\n%s", err, stderr.String())
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	r := int32(1)
	app := &v1.ServingApp{APIVersion: v1.APIVersion, Kind: v1.Kind, Metadata: v1.ObjectMeta{Name: "hello", Namespace: "team"},
		Spec: v1.ServingAppSpec{Replicas: &r, Allowlist: []string{"10.0.0.0/8"}, Databricks: v1.Databricks{Host: "https://dbc-1.cloud.databricks.com", ServingEndpoint: "chat"}}}
	if _, _, err := st.Apply(ctx, app); err != nil {
		t.Fatal(err)
	}
	for {
		s, _, err := st.GetStatus(ctx, "team", "hello")
		if err == nil && s.Phase == v1.PhaseReady {
			if s.Resources.ServiceARN == "" || s.Resources.OAuthIntegrationID == "" {
				t.Errorf("ready without resources: %+v", s.Resources)
			}
			break
		}
		select {
		case code := <-done:
			t.Fatalf("the controller exited with %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app did not become Ready (status %+v, %v):\n%s", s, err, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var out bytes.Buffer
	if code := run(ctx, []string{"healthcheck", "--addr", health}, &out, &out); code != 0 {
		t.Errorf("healthcheck of the running controller: %d %s", code, out.String())
	}
	stop()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0:\n%s", code, stderr.String())
	}
	logs := stderr.String()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %s", line)
			break
		}
	}
	if strings.Contains(logs, emulator.DefaultAdminSecret) {
		t.Error("the account service principal's secret is in the logs")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
