package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/natstest"
)

// startDev starts `servingctl dev` on dataDir with free ports and waits until
// its output holds until. It returns the output buffers and a stop function
// that cancels it (as Ctrl-C does) and returns its exit code.
func startDev(t *testing.T, dataDir, until string, extra ...string) (*lockedBuffer, *lockedBuffer, func() int) {
	t.Helper()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	c := &cli{
		streams: streams{in: strings.NewReader(""), out: out, errOut: errOut},
		getenv:  func(string) string { return "" },
		now:     time.Now,
	}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	args := append([]string{"dev", "--data-dir", dataDir, "--nats-port", "0", "--gateway", "127.0.0.1:0"}, extra...)
	go func() { code <- c.run(ctx, args) }()
	stopped := false
	stop := func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case n := <-code:
			return n
		case <-time.After(60 * time.Second):
			t.Fatalf("servingctl dev did not stop after Ctrl-C; output:\n%s\n%s", out, errOut)
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(120 * time.Second)
	for !strings.Contains(out.String(), until) {
		select {
		case n := <-code:
			t.Fatalf("servingctl dev exited with %d before printing %q:\n%s\n%s", n, until, out, errOut)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("servingctl dev did not print %q; output so far:\n%s\n%s", until, out, errOut)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out, errOut, stop
}

// runDev starts `servingctl dev` and waits for its table.
func runDev(t *testing.T, dataDir string, extra ...string) (*lockedBuffer, func() int) {
	t.Helper()
	out, _, stop := startDev(t, dataDir, "Press Ctrl-C to stop.", extra...)
	return out, stop
}

// TestDevServesTheExamplesStopsCleanlyAndKeepsSpecsAcrossRestarts: the first
// command of the README, run three times on one data dir. Each run's table
// lists as Ready only apps its own gateway already serves, at its own port:
// a restart starts with the previous run's Ready status in the store and
// must not take it for its own, whether the gateway kept its port (the
// README's 8080) or not. The audit history of the first run is still there
// in the later ones.
func TestDevServesTheExamplesStopsCleanlyAndKeepsSpecsAcrossRestarts(t *testing.T) {
	dataDir := t.TempDir()
	apps := []string{"analytics/summarizer", "finance/reporting", "platform/chat"}
	fixed := freeAddr(t)
	const eventID = "dev-first-run-login"
	runs := []struct {
		name    string
		gateway string
		outcome string
	}{
		{"first run", fixed, "created"},
		{"restart on the same port", fixed, "unchanged"},
		{"restart on another port", "127.0.0.1:0", "unchanged"},
	}
	for i, run := range runs {
		out, stop := runDev(t, dataDir, "--gateway", run.gateway)
		text := out.String()
		for _, app := range apps {
			if !strings.Contains(text, "servingapp "+app+" "+run.outcome) {
				t.Errorf("%s: %s not %s:\n%s", run.name, app, run.outcome, text)
			}
			ns, name, _ := strings.Cut(app, "/")
			if !tableRowReady(text, app, "http://"+name+"."+ns+".localhost:") {
				t.Errorf("%s: table has no Ready row with a .localhost URL for %s:\n%s", run.name, app, text)
			}
			// At once, with no retry: the table says Ready only for what is served.
			requestThroughGateway(t, text, app)
		}
		if i == 0 {
			for _, want := range []string{"first app Ready", "alice@example.com", "bob@example.com"} {
				if !strings.Contains(text, want) {
					t.Errorf("output lacks %q:\n%s", want, text)
				}
			}
			publishLogin(t, apiStoreURL(t, text), eventID)
		} else {
			var auditOut, auditErr bytes.Buffer
			c := &cli{streams: streams{in: strings.NewReader(""), out: &auditOut, errOut: &auditErr}, getenv: func(string) string { return "" }, now: time.Now}
			code := c.run(context.Background(), []string{"audit", "tail", "--server", apiStoreURL(t, text), "--since", "all", "--app", "analytics/summarizer", "-o", "json"})
			if code != 0 || !strings.Contains(auditOut.String(), `"id":"`+eventID+`"`) {
				t.Errorf("%s: audit tail exit %d lacks the first run's event %s:\n%s\n%s", run.name, code, eventID, &auditOut, &auditErr)
			}
		}
		if code := stop(); code != 0 {
			t.Fatalf("%s: Ctrl-C: exit %d, want 0:\n%s", run.name, code, out)
		}
		if !strings.Contains(out.String(), "stopping…") {
			t.Errorf("%s: no stopping line:\n%s", run.name, out)
		}
	}
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDevCtrlCWhileWaitingForTheAppsIsACleanStop: an app that cannot become
// Ready (its secret does not exist) keeps dev waiting; Ctrl-C then stops it
// like Ctrl-C after the table: "stopping…" and exit 0, no error.
func TestDevCtrlCWhileWaitingForTheAppsIsACleanStop(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "stuck.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: servingapp.io/v1alpha1
kind: ServingApp
metadata: {name: stuck, namespace: team}
spec:
  allowlist: [127.0.0.1/32]
  databricks: {host: "https://dbc-1234abcd.cloud.databricks.com", servingEndpoint: databricks-claude-sonnet-4}
  secrets: {EXTRA_KEY: team/does-not-exist}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, stop := startDev(t, filepath.Join(dir, "data"), "servingapp team/stuck created", "-f", manifest, "--wait", "10m")
	time.Sleep(200 * time.Millisecond) // well into the wait
	if code := stop(); code != 0 {
		t.Fatalf("Ctrl-C while waiting: exit %d, want 0; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out.String(), "stopping…") || strings.Contains(out.String(), "Press Ctrl-C") || errOut.String() != "" {
		t.Fatalf("want a stopping line, no table and nothing on stderr; stdout:\n%s\nstderr:\n%s", out, errOut)
	}
}

// tableRowReady reports whether the dev table has a row for app in phase
// Ready whose URL starts with urlPrefix.
func tableRowReady(text, app, urlPrefix string) bool {
	return strings.HasPrefix(tableURL(text, app), urlPrefix)
}

// tableURL is the URL of app's Ready row in the dev table, or "".
func tableURL(text, app string) string {
	for line := range strings.SplitSeq(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == app && f[1] == "Ready" {
			return f[2]
		}
	}
	return ""
}

// requestThroughGateway opens app's URL from the dev table, connecting to
// the gateway's port on loopback (as a browser resolves *.localhost), and
// fails the test unless the app answers: not the gateway's 404 (no route),
// nor a 5xx (no instance, or one that does not answer).
func requestThroughGateway(t *testing.T, text, app string) {
	t.Helper()
	raw := tableURL(text, app)
	u, err := url.Parse(raw)
	if raw == "" || err != nil {
		t.Errorf("no URL for %s in the table:\n%s", app, text)
		return
	}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", u.Port()))
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(raw)
	if err != nil {
		t.Errorf("GET %s: %v", raw, err)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode >= 500 {
		t.Errorf("GET %s right after the table said Ready: %s\n%s", raw, resp.Status, body)
	}
}

// apiStoreURL is the NATS URL dev printed.
func apiStoreURL(t *testing.T, text string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "API store: ")
	if f := strings.Fields(rest); ok && len(f) > 0 {
		return f[0]
	}
	t.Fatalf("dev printed no API store URL:\n%s", text)
	return ""
}

// publishLogin stores one login event of analytics/summarizer in the audit
// stream of the dev server at natsURL, as its web app would.
func publishLogin(t *testing.T, natsURL, id string) {
	t.Helper()
	_, js := natstest.Connect(t, natsURL)
	ev := audit.NewAuditEvent(audit.LoginSucceeded, audit.AppRef{Namespace: "analytics", Name: "summarizer"}, time.Now())
	ev.User = &audit.User{UID: "sub-alice", EmailAddr: "alice@example.com"}
	b, err := audit.EncodeAuditEvent(id, audit.LoginSucceeded, ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, audit.AuditSubject("analytics", "summarizer", audit.LoginSucceeded), b, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
}

// TestGatewayProbeCountsOnlyWhatThisGatewayServes: the gateway's answer for
// an app's health page, at the app's host and path, says whether this run
// serves it. Its own 404/502/503 pages say not yet (unless the app asks for
// no instance), any other answer says yes, and a status URL naming another
// port is a previous run's.
func TestGatewayProbeCountsOnlyWhatThisGatewayServes(t *testing.T) {
	var code int
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As the gateway does for a host or path it does not route.
		if !strings.HasPrefix(r.Host, "chat.platform.localhost:") || r.URL.Path != "/chat/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(code)
	}))
	defer gw.Close()
	port := gw.Listener.Addr().(*net.TCPAddr).Port
	probe := newGatewayProbe("0.0.0.0:0", port)
	app := func(url string, replicas int32) *v1.ServingApp {
		return &v1.ServingApp{Spec: v1.ServingAppSpec{Replicas: &replicas}, Status: v1.ServingAppStatus{URL: url}}
	}
	here := fmt.Sprintf("http://chat.platform.localhost:%d/chat/", port)
	cases := []struct {
		name   string
		app    *v1.ServingApp
		answer int
		serves bool
	}{
		{"the app answers", app(here, 2), http.StatusOK, true},
		{"the app redirects", app(here, 2), http.StatusFound, true},
		{"the address is not on the allowlist", app(here, 2), http.StatusForbidden, true},
		{"not routed yet", app(here, 2), http.StatusNotFound, false},
		{"no instance yet", app(here, 2), http.StatusServiceUnavailable, false},
		{"no instance wanted", app(here, 0), http.StatusServiceUnavailable, true},
		{"instance does not answer", app(here, 2), http.StatusBadGateway, false},
		{"instance fails", app(here, 2), http.StatusInternalServerError, false},
		{"a previous run's port", app(fmt.Sprintf("http://chat.platform.localhost:%d/chat/", port+1), 2), http.StatusOK, false},
		{"no URL yet", app("", 2), http.StatusOK, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code = tc.answer
			if got := probe.serves(context.Background(), tc.app); got != tc.serves {
				t.Fatalf("serves = %t, want %t", got, tc.serves)
			}
		})
	}
}
