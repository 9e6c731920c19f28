package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/natstest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var testNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

type harness struct {
	t   *testing.T
	url string
	uid int
}

func newHarness(t *testing.T) *harness {
	url, _ := natstest.Start(t)
	return &harness{t: t, url: url}
}

// run executes servingctl against the harness server with a fixed clock.
func (h *harness) run(stdin string, args ...string) (string, string, int) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{
		streams: streams{in: strings.NewReader(stdin), out: &out, errOut: &errOut},
		getenv: func(k string) string {
			if k == "SERVINGAPP_NATS_URL" {
				return h.url
			}
			return ""
		},
		now: func() time.Time { return testNow },
		storeOptions: store.Options{
			Now: func() time.Time { return testNow.Add(-90 * time.Minute) },
			NewUID: func() string {
				h.uid++
				return fmt.Sprintf("00000000-0000-4000-8000-%012d", h.uid)
			},
		},
	}
	code := c.run(context.Background(), args)
	return out.String(), errOut.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/servingctl -update)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs from golden:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

const examples = "../../manifests/examples"

func TestApplyFromDirectoryThenReapplyIsUnchanged(t *testing.T) {
	h := newHarness(t)
	out, errOut, code := h.run("", "apply", "-f", examples)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "apply-created", out)
	out, _, code = h.run("", "apply", "-f", examples)
	if code != 0 || strings.Count(out, " unchanged\n") != 3 {
		t.Fatalf("re-apply: exit %d\n%s", code, out)
	}
}

func TestApplyFromStdinConfiguresChangedObject(t *testing.T) {
	h := newHarness(t)
	doc, err := os.ReadFile(filepath.Join(examples, "summarizer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := h.run(string(doc), "apply", "-f", "-"); code != 0 || out != "servingapp analytics/summarizer created\n" {
		t.Fatalf("exit %d: %q %s", code, out, errOut)
	}
	changed := strings.Replace(string(doc), "replicas: 2", "replicas: 3", 1)
	if out, errOut, code := h.run(changed, "apply", "-f", "-"); code != 0 || out != "servingapp analytics/summarizer configured\n" {
		t.Fatalf("exit %d: %q %s", code, out, errOut)
	}
	out, _, _ := h.run("", "get", "summarizer", "-n", "analytics", "-o", "json")
	if !strings.Contains(out, `"generation": 2`) || !strings.Contains(out, `"replicas": 3`) {
		t.Fatalf("stored object not updated:\n%s", out)
	}
}

func TestGetAndDescribeGolden(t *testing.T) {
	h := newHarness(t)
	if _, errOut, code := h.run("", "apply", "-f", examples); code != 0 {
		t.Fatal(errOut)
	}
	// Give one app a status, as the controller would.
	st := h.openStore()
	_, err := st.PatchStatus(context.Background(), "analytics", "summarizer", func(s *v1.ServingAppStatus) error {
		s.ObservedGeneration = 1
		s.Phase = v1.PhaseReady
		s.URL = "https://summarizer.apps.example.com/"
		s.Replicas = v1.ReplicaStatus{Desired: 2, Running: 2}
		s.Resources.ServiceARN = "arn:aws:ecs:eu-west-1:123456789012:service/servingapp/analytics-summarizer"
		s.Usage = v1.Usage{Logins24h: 4, Invocations24h: 17, Errors24h: 1}
		for _, c := range []string{v1.ConditionSynced, v1.ConditionAvailable, v1.ConditionReady} {
			s.SetCondition(v1.Condition{Type: c, Status: v1.ConditionTrue, ObservedGeneration: 1, Reason: "AsExpected", LastTransitionTime: testNow.Add(-time.Hour)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	js := h.openJS()
	if err := audit.EnsureStreams(context.Background(), js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, ev := range []audit.ReconcileEvent{
		{Namespace: "analytics", Name: "summarizer", Severity: audit.SeverityNormal, Reason: "TaskDefinitionRegistered", Message: "registered analytics-summarizer:1"},
		{Namespace: "analytics", Name: "summarizer", Severity: audit.SeverityWarning, Reason: "ReconcileFailed", Message: "ThrottlingException: rate exceeded"},
	} {
		if err := audit.PublishReconcileEvent(context.Background(), js, fmt.Sprint("ev", i), testNow.Add(time.Duration(i-30)*time.Minute), ev); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		args []string
	}{
		{"get-all-namespaces", []string{"get", "-A"}},
		{"get-all-wide", []string{"get", "-A", "-o", "wide"}},
		{"get-namespace", []string{"get", "-n", "analytics"}},
		{"get-selector", []string{"get", "-A", "-l", "team in (finance,platform)"}},
		{"get-one-yaml", []string{"get", "analytics/summarizer", "-o", "yaml"}},
		{"describe-ready", []string{"describe", "summarizer", "-n", "analytics"}},
		{"describe-new", []string{"describe", "chat", "-n", "platform"}},
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

func (h *harness) openJS() jetstream.JetStream {
	h.t.Helper()
	c := &cli{server: h.url, getenv: func(string) string { return "" }, timeout: 5 * time.Second}
	conn, err := c.connect(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(conn.close)
	return conn.js
}

func (h *harness) openStore() *store.Store {
	h.t.Helper()
	c := &cli{server: h.url, getenv: func(string) string { return "" }, timeout: 5 * time.Second}
	conn, err := c.connect(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(conn.close)
	return conn.store
}

func TestExitCodes(t *testing.T) {
	h := newHarness(t)
	bad := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(bad, []byte(`apiVersion: servingapp.io/v1alpha1
kind: ServingApp
metadata: {name: Bad}
spec:
  allowlist: [10.0.0.5/8, 10.0.0.300/8]
  databricks: {host: "http://x", servingEndpoint: e}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		env     string
		args    []string
		code    int
		errLike []string
	}{
		{"validation lists every problem", "", []string{"validate", "-f", bad}, 1, []string{
			"bad.yaml: document 1: metadata.name:", `spec.allowlist[0]: "10.0.0.5/8" has host bits set: write "10.0.0.0/8"`,
			`spec.allowlist[1]: "10.0.0.300/8" is not a valid CIDR`, "spec.databricks.host:"}},
		{"apply of invalid file stores nothing", "", []string{"apply", "-f", bad}, 1, []string{"4 problem(s) found"}},
		{"unknown flag is a usage error", "", []string{"get", "--bogus"}, 2, []string{"unknown flag"}},
		{"unknown command is a usage error", "", []string{"frobnicate"}, 2, []string{"unknown command"}},
		{"bad output format is a usage error", "", []string{"get", "-o", "xml"}, 2, []string{"unknown output format"}},
		{"apply without -f is a usage error", "", []string{"apply"}, 2, []string{"-f"}},
		{"missing object", "", []string{"describe", "nope"}, 1, []string{"servingapp default/nope not found"}},
		{"unreachable server is one line", "nats://127.0.0.1:1", []string{"get", "-A"}, 1, []string{"cannot reach the servingapp API store at nats://127.0.0.1:1"}},
		{"missing file", "", []string{"validate", "-f", "/no/such.yaml"}, 1, []string{"read /no/such.yaml: no such file or directory"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := h.url
			if tc.env != "" {
				h.url = tc.env
				defer func() { h.url = url }()
			}
			_, errOut, code := h.run("", tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			for _, w := range tc.errLike {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tc.env != "" && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("want one line, got:\n%s", errOut)
			}
		})
	}
	if out, _, _ := h.run("", "get", "-A"); strings.Contains(out, "bad") {
		t.Fatal("invalid object was stored")
	}
}

func TestDiffAndDelete(t *testing.T) {
	h := newHarness(t)
	f := filepath.Join(examples, "summarizer.yaml")
	if out, _, code := h.run("", "diff", "-f", f); code != 1 || !strings.Contains(out, "+  replicas: 2") {
		t.Fatalf("diff against nothing: exit %d\n%s", code, out)
	}
	h.run("", "apply", "-f", f)
	if out, _, code := h.run("", "diff", "-f", f); code != 0 || out != "" {
		t.Fatalf("diff of identical: exit %d\n%s", code, out)
	}
	doc, _ := os.ReadFile(f)
	changed := strings.Replace(string(doc), "replicas: 2", "replicas: 4", 1)
	out, _, code := h.run(changed, "diff", "-f", "-")
	if code != 1 || !strings.Contains(out, "-  replicas: 2\n+  replicas: 4\n") {
		t.Fatalf("diff of change: exit %d\n%s", code, out)
	}
	if out, errOut, code := h.run("", "delete", "-f", f, "--wait", "--timeout", "5s"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: exit %d %s %s", code, out, errOut)
	}
	if _, errOut, code := h.run("", "get", "summarizer", "-n", "analytics"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("after delete: exit %d %s", code, errOut)
	}
}

func TestSchemaCommandPrintsSchema(t *testing.T) {
	var out bytes.Buffer
	c := &cli{streams: streams{out: &out, errOut: &out, in: strings.NewReader("")}, getenv: func(string) string { return "" }, now: time.Now}
	if code := c.run(context.Background(), []string{"schema"}); code != 0 {
		t.Fatal(out.String())
	}
	want, _ := os.ReadFile("../../manifests/servingapp.schema.json")
	if out.String() != string(want) {
		t.Fatal("schema output differs from manifests/servingapp.schema.json")
	}
}
