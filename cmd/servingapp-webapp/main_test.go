package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/appenv"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
)

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

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestHealthcheckExitCode(t *testing.T) {
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	defer healthy.Close()
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer sick.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	_ = closed.Close()

	tests := []struct {
		name, addr string
		want       int
	}{
		{"healthy", healthy.Listener.Addr().String(), 0},
		{"healthy on all interfaces", ":" + portOf(healthy.Listener.Addr().String()), 0},
		{"unhealthy", sick.Listener.Addr().String(), 1},
		{"nothing listening", closedAddr, 1},
		{"bad address", "nonsense", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(context.Background(), []string{"healthcheck"}, envOf(map[string]string{appenv.ListenAddr: tt.addr}), &bytes.Buffer{}, &stderr); got != tt.want {
				t.Fatalf("exit %d, want %d (%s)", got, tt.want, stderr.String())
			}
		})
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func TestRunReportsEveryConfigProblem(t *testing.T) {
	var stderr bytes.Buffer
	if got := run(context.Background(), nil, envOf(nil), &bytes.Buffer{}, &stderr); got != 1 {
		t.Fatalf("exit %d, want 1", got)
	}
	for _, name := range []string{appenv.DatabricksHost, appenv.ClientID, appenv.SessionKey, appenv.RedirectURL} {
		if !strings.Contains(stderr.String(), name+": is required") {
			t.Errorf("no line for %s in:\n%s", name, stderr.String())
		}
	}
	if got := run(context.Background(), []string{"bogus"}, envOf(nil), &bytes.Buffer{}, &stderr); got != 2 {
		t.Fatalf("unknown command: exit %d, want 2", got)
	}
}

func TestRunServesUntilSignalled(t *testing.T) {
	emu, err := emulator.Start(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = emu.Close() }()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	_ = ln.Close()
	env := map[string]string{
		appenv.DatabricksHost:     emu.URL,
		appenv.ServingEndpoint:    "echo",
		appenv.ClientID:           "client",
		appenv.RedirectURL:        "http://" + addr + "/oauth/callback",
		appenv.AppNamespace:       "default",
		appenv.AppName:            "echo",
		appenv.SessionKey:         base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		appenv.ListenAddr:         addr,
		appenv.InsecureDevCookies: "true",
		appenv.AuditOutboxDir:     t.TempDir(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, envOf(env), stdout, &bytes.Buffer{}) }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("never ready; logs:\n%s", stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := run(context.Background(), []string{"healthcheck"}, envOf(env), &bytes.Buffer{}, &bytes.Buffer{}); got != 0 {
		t.Fatalf("healthcheck of the running app: exit %d", got)
	}
	cancel()
	if got := <-done; got != 0 {
		t.Fatalf("exit %d after the signal; logs:\n%s", got, stdout.String())
	}
	if logs := stdout.String(); !strings.Contains(logs, `"msg":"servingapp-webapp listening"`) || !strings.Contains(logs, `"msg":"shutting down"`) {
		t.Fatalf("logs:\n%s", logs)
	}
}
