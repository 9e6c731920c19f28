package main

import (
	"bytes"
	"context"
	"errors"
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
		// Every way cobra rejects a command line is a usage error, found by
		// type: none of these depends on the wording of cobra's message.
		{"too many arguments is a usage error", "", []string{"get", "a", "b"}, 2, []string{"accepts at most 1 arg(s), received 2"}},
		{"missing argument is a usage error", "", []string{"describe"}, 2, []string{"accepts 1 arg(s), received 0"}},
		{"argument to a command that takes none is a usage error", "", []string{"validate", "x", "-f", bad}, 2, []string{`unknown command "x" for "servingctl validate"`}},
		{"flag without its value is a usage error", "", []string{"get", "-o"}, 2, []string{"flag needs an argument"}},
		{"flag with a bad value is a usage error", "", []string{"delete", "x", "--timeout", "soon"}, 2, []string{`invalid argument "soon"`}},
		{"misspelt command suggests the right one", "", []string{"gett"}, 2, []string{`unknown command "gett" for "servingctl"`, "Did you mean this?\n\tget"}},
		{"unknown subcommand of a parent is a usage error", "", []string{"audit", "tial"}, 2, []string{`unknown command "tial" for "servingctl audit"`, "tail"}},
		{"argument to a completion script is a usage error", "", []string{"completion", "bash", "extra"}, 2, []string{`unknown command "extra"`}},
		// And an error that merely quotes cobra's words is not one.
		{"error quoting cobra's words is not a usage error", "", []string{"validate", "-f", "/no/an unknown command.yaml"}, 1, []string{"no such file or directory"}},
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
	for _, args := range [][]string{nil, {"audit"}} {
		out, errOut, code := h.run("", args...)
		if code != 0 || !strings.Contains(out, "Available Commands:") || errOut != "" {
			t.Errorf("servingctl %v: exit %d, want 0 and help; stdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
	}
}

// TestValidateNeedsNoServer: validate reads only the files. With the API
// store unreachable, named by the environment or by --server, valid files
// pass and invalid ones fail on their problems, never on the connection.
func TestValidateNeedsNoServer(t *testing.T) {
	const unreachable = "nats://127.0.0.1:1"
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: servingapp.io/v1alpha1\nkind: ServingApp\nmetadata: {name: a}\nspec:\n  allowlist: [10.0.0.5/8]\n  databricks: {host: https://x.cloud.databricks.com, servingEndpoint: e}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		code     int
		inOut    string
		inErrOut string
	}{
		{"valid files, server from the environment", []string{"validate", "-f", examples}, 0, "servingapp analytics/summarizer is valid", ""},
		{"valid files, --server", []string{"validate", "-f", examples, "--server", unreachable}, 0, "servingapp platform/chat is valid", ""},
		{"valid file from stdin", []string{"validate", "-f", "-", "--server", unreachable}, 0, "servingapp analytics/summarizer is valid", ""},
		{"invalid file", []string{"validate", "-f", bad, "--server", unreachable}, 1, "", `spec.allowlist[0]: "10.0.0.5/8" has host bits set`},
	}
	stdin, err := os.ReadFile(filepath.Join(examples, "summarizer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			c := &cli{
				streams: streams{in: bytes.NewReader(stdin), out: &out, errOut: &errOut},
				getenv: func(k string) string {
					if k == "SERVINGAPP_NATS_URL" {
						return unreachable
					}
					return ""
				},
				now: func() time.Time { return testNow },
			}
			code := c.run(context.Background(), append(tc.args, "--request-timeout", "2s"))
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, &out, &errOut)
			}
			if !strings.Contains(out.String(), tc.inOut) || !strings.Contains(errOut.String(), tc.inErrOut) {
				t.Fatalf("stdout lacks %q or stderr lacks %q; stdout:\n%s\nstderr:\n%s", tc.inOut, tc.inErrOut, &out, &errOut)
			}
			if strings.Contains(errOut.String(), "127.0.0.1:1") {
				t.Fatalf("validate tried the server:\n%s", &errOut)
			}
		})
	}
}

// TestDescribeShowsTheLastTenEventsOldestFirst: of an app's twelve events,
// interleaved with another app's, describe shows exactly the newest ten, in
// the order they happened.
func TestDescribeShowsTheLastTenEventsOldestFirst(t *testing.T) {
	h := newHarness(t)
	if _, errOut, code := h.run("", "apply", "-f", examples); code != 0 {
		t.Fatal(errOut)
	}
	js := h.openJS()
	ctx := context.Background()
	if err := audit.EnsureStreams(ctx, js, audit.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 12; i++ {
		at := testNow.Add(time.Duration(i-13) * time.Minute)
		for _, ev := range []audit.ReconcileEvent{
			{Namespace: "analytics", Name: "summarizer", Severity: audit.SeverityNormal, Reason: fmt.Sprintf("Step%02d", i), Message: fmt.Sprintf("step %d of the summarizer", i)},
			{Namespace: "platform", Name: "chat", Severity: audit.SeverityWarning, Reason: "OtherApp", Message: "an event of another app"},
		} {
			if err := audit.PublishReconcileEvent(ctx, js, audit.NewEventID(), at, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, errOut, code := h.run("", "describe", "summarizer", "-n", "analytics")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, events, ok := strings.Cut(out, "\nEvents:\n")
	if !ok {
		t.Fatalf("no Events section:\n%s", out)
	}
	// Rows are TYPE REASON AGE MESSAGE; the messages say which step they are.
	var rows []string
	for line := range strings.SplitSeq(strings.TrimSpace(events), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] != "TYPE" {
			rows = append(rows, strings.Join(f, " "))
		}
	}
	var want []string
	for i := 3; i <= 12; i++ {
		age := fmt.Sprintf("%dm", 13-i)
		if i == 12 {
			age = "60s"
		}
		want = append(want, fmt.Sprintf("Normal Step%02d %s step %d of the summarizer", i, age, i))
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
}

// TestDeleteByNameWaitsForTheFinalizer: delete NAME --wait marks the object
// deleted and returns 0 only once the controller (here a goroutine holding
// the finalizer for a second) has removed its finalizer; without that it
// gives up at --timeout, naming what to check.
func TestDeleteByNameWaitsForTheFinalizer(t *testing.T) {
	h := newHarness(t)
	if _, errOut, code := h.run("", "apply", "-f", filepath.Join(examples, "summarizer.yaml")); code != 0 {
		t.Fatal(errOut)
	}
	st := h.openStore()
	ctx := context.Background()
	if _, err := st.AddFinalizer(ctx, "analytics", "summarizer", v1.FinalizerCleanup); err != nil {
		t.Fatal(err)
	}

	_, errOut, code := h.run("", "delete", "summarizer", "-n", "analytics", "--wait", "--timeout", "300ms")
	if code != 1 || !strings.Contains(errOut, "servingapp analytics/summarizer still exists after 300ms: is the controller running?") {
		t.Fatalf("with the finalizer kept: exit %d, want 1 and a timeout naming the app:\n%s", code, errOut)
	}

	returned := make(chan struct{})
	removed := make(chan error, 1)
	go func() {
		for {
			a, err := st.Get(ctx, "analytics", "summarizer")
			if err != nil {
				removed <- err
				return
			}
			if a.Metadata.DeletionTimestamp != nil && len(a.Metadata.Finalizers) > 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		select {
		case <-returned:
			removed <- errors.New("delete --wait returned while the finalizer was still there")
			return
		case <-time.After(time.Second):
		}
		_, err := st.RemoveFinalizer(ctx, "analytics", "summarizer", v1.FinalizerCleanup)
		removed <- err
	}()
	out, errOut, code := h.run("", "delete", "summarizer", "-n", "analytics", "--wait", "--timeout", "30s")
	close(returned)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if code != 0 || out != "servingapp analytics/summarizer deleting\nservingapp analytics/summarizer deleted\n" {
		t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if _, err := st.Get(ctx, "analytics", "summarizer"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete --wait: %v, want not found", err)
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
