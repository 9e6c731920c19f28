package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/natsconn"
	"github.com/servingapp/servingapp/internal/natstest"
)

// TestSecuredServerNeedsCredentialsAndCA: against a server run like
// production's (TLS from a private CA, operator-mode credentials), servingctl
// connects with --creds and --ca or their environment variables, and says in
// one line what is missing otherwise.
func TestSecuredServerNeedsCredentialsAndCA(t *testing.T) {
	srv := natstest.StartSecured(t)
	ensureAuditStreams(t, srv)
	cases := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantErr  string
	}{
		{"flags", []string{"--creds", srv.CredsFile, "--ca", srv.CAFile}, nil, 0, ""},
		{"environment", nil, map[string]string{"SERVINGAPP_NATS_CREDS": srv.CredsFile, "SERVINGAPP_NATS_CA": srv.CAFile}, 0, ""},
		{"no CA", []string{"--creds", srv.CredsFile}, nil, 1, "pass it with --ca"},
		{"no credentials", []string{"--ca", srv.CAFile}, nil, 1, "check the credentials: --creds"},
		{"missing credentials file", []string{"--creds", srv.CredsFile + ".missing", "--ca", srv.CAFile}, nil, 1, "NATS credentials"},
		{"CA file that is no PEM", []string{"--creds", srv.CredsFile, "--ca", srv.CredsFile}, nil, 1, "NATS CA"},
	}
	// The store commands and the audit commands connect alike.
	commands := [][]string{
		{"get", "-A"},
		{"audit", "tail", "--since", "1h"},
		{"audit", "export", "--since", "1h"},
	}
	for _, command := range commands {
		for _, tc := range cases {
			t.Run(strings.Join(command[:2], " ")+"/"+tc.name, func(t *testing.T) {
				var out, errOut bytes.Buffer
				env := map[string]string{"SERVINGAPP_NATS_URL": srv.URL}
				for k, v := range tc.env {
					env[k] = v
				}
				c := &cli{
					streams: streams{in: strings.NewReader(""), out: &out, errOut: &errOut},
					getenv:  func(k string) string { return env[k] },
					now:     time.Now,
				}
				args := append(append(slices.Clone(command), "--request-timeout", "5s"), tc.args...)
				code := c.run(context.Background(), args)
				if code != tc.wantCode {
					t.Fatalf("exit %d, want %d; stderr: %s", code, tc.wantCode, errOut.String())
				}
				if tc.wantErr != "" {
					msg := strings.TrimSpace(errOut.String())
					if !strings.Contains(msg, tc.wantErr) || strings.Count(msg, "\n") > 0 {
						t.Fatalf("stderr %q: want one line naming %q", msg, tc.wantErr)
					}
					if strings.Contains(msg, "SUA") || strings.Contains(msg, "eyJ") {
						t.Fatalf("stderr shows credential material: %q", msg)
					}
				}
			})
		}
	}
}

// ensureAuditStreams creates the audit streams on srv, as a controller
// starting there would.
func ensureAuditStreams(t *testing.T, srv natstest.Secured) {
	t.Helper()
	auth, err := natsconn.Options(srv.CredsFile, srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, srv.URL, auth...)
	if err := audit.EnsureStreams(context.Background(), js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
}
