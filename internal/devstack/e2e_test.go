package devstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/devstack"
)

func startStack(t testing.TB) *devstack.Stack {
	t.Helper()
	s, err := devstack.Start(context.Background(), devstack.Options{DataDir: t.TempDir(), GatewayAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func e2eApp(allow ...string) *v1.ServingApp {
	one := int32(1)
	return &v1.ServingApp{APIVersion: v1.APIVersion, Kind: v1.Kind,
		Metadata: v1.ObjectMeta{Name: "e2e", Namespace: "team"},
		Spec: v1.ServingAppSpec{
			Replicas:   &one,
			Route:      v1.Route{PathPrefix: "/tools"},
			Allowlist:  allow,
			Databricks: v1.Databricks{Host: "https://dbc-e2e.cloud.databricks.com", ServingEndpoint: "summarizer"},
		}}
}

// waitFor polls cond with a generous bound; it asserts nothing about time.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func phase(s *devstack.Stack, ns, name string) v1.Phase {
	a, err := s.Store.Get(context.Background(), ns, name)
	if err != nil {
		return ""
	}
	return a.Status.Phase
}

// client talks to the gateway from the given loopback address; every
// *.localhost host is dialled at the gateway, as a browser resolves it.
func client(s *devstack.Stack, from string) *http.Client {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	gw := fmt.Sprintf("127.0.0.1:%d", s.GatewayPort)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(addr); strings.HasSuffix(host, ".localhost") {
				addr = gw
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func status(t testing.TB, c *http.Client, u string) int {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// login signs in as email through the emulator's login page.
func login(t testing.TB, c *http.Client, appURL, email string) {
	t.Helper()
	resp, err := c.Get(appURL + "login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte(`id="login-form"`)) {
		t.Fatalf("login page: %d %s", resp.StatusCode, page)
	}
	resp, err = c.PostForm(resp.Request.URL.String(), url.Values{"user": {email}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.String(), appURL) {
		t.Fatalf("after login: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
}

type me struct {
	Email     string `json:"email"`
	Name      string `json:"name"`
	CSRFToken string `json:"csrf_token"`
}

func getMe(t testing.TB, c *http.Client, appURL string) me {
	t.Helper()
	resp, err := c.Get(appURL + "api/me")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m me
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("api/me: %d %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEndToEndOnTheDevStack: apply → Ready → login through the gateway →
// invoke → the audit events read back from JetStream and counted in
// status.usage → allowlist enforced and changed → delete → 404 and the
// redirect URL gone from the emulator.
func TestEndToEndOnTheDevStack(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	if err := s.Seed([]*v1.ServingApp{e2eApp("127.0.0.1/32")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Store.Apply(ctx, e2eApp("127.0.0.1/32")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "e2e Ready", func() bool { return phase(s, "team", "e2e") == v1.PhaseReady })
	a, _ := s.Store.Get(ctx, "team", "e2e")
	appURL := a.Status.URL
	if want := fmt.Sprintf("http://e2e.team.localhost:%d/tools/", s.GatewayPort); appURL != want {
		t.Fatalf("url %s, want %s", appURL, want)
	}

	alice := client(s, "127.0.0.1")
	login(t, alice, appURL, "alice@example.com")
	m := getMe(t, alice, appURL)
	if m.Email != "alice@example.com" || m.CSRFToken == "" {
		t.Fatalf("me: %+v", m)
	}
	body := `{"messages":[{"role":"user","content":"The controller reconciles ServingApps. It creates ECS services. Users log in with Databricks."}],"max_tokens":64}`
	req, _ := http.NewRequest(http.MethodPost, appURL+"api/invoke", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", m.CSRFToken)
	resp, err := alice.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(out, []byte(`"chat.completion"`)) {
		t.Fatalf("invoke: %d %s", resp.StatusCode, out)
	}
	waitForAudit(t, s, "team", "e2e", "alice@example.com", audit.LoginSucceeded, audit.InvocationCompleted)
	// The controller's usage engine folds the same events into status.usage
	// (at most one status write per app every 10 s, hence the poll).
	waitFor(t, "status.usage of team/e2e to count the login and the invocation", func() bool {
		a, err := s.Store.Get(ctx, "team", "e2e")
		if err != nil {
			return false
		}
		u := a.Status.Usage
		return u.Logins24h >= 1 && u.Invocations24h >= 1 && u.LastInvocationTime != nil
	})

	other := client(s, "127.0.0.2")
	if code := status(t, other, appURL); code != http.StatusForbidden {
		t.Fatalf("127.0.0.2 with allowlist 127.0.0.1/32: %d, want 403", code)
	}
	if _, _, err := s.Store.Apply(ctx, e2eApp("127.0.0.1/32", "127.0.0.2/32")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "127.0.0.2 admitted", func() bool { return status(t, other, appURL) == http.StatusOK })

	redirect := appURL + "oauth/callback"
	registered := func() bool {
		for _, in := range s.Emulator.Integrations() {
			if slices.Contains(in.RedirectURLs, redirect) {
				return true
			}
		}
		return false
	}
	if !registered() {
		t.Fatal("redirect URL not registered in the emulator")
	}
	checkConditionsEventsAndNoSecrets(t, s)
	if _, err := s.Store.Delete(ctx, "team", "e2e"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "e2e gone", func() bool {
		_, err := s.Store.Get(ctx, "team", "e2e")
		return errors.Is(err, store.ErrNotFound)
	})
	if code := status(t, alice, appURL); code != http.StatusNotFound {
		t.Fatalf("after delete: %d, want 404", code)
	}
	if registered() {
		t.Fatal("redirect URL still registered after delete")
	}
}

// waitForAudit reads the app's audit events back from JetStream, as
// servingctl audit tail does (one ephemeral ordered consumer, deleted after),
// until it has seen an event of each of types by the user with email for the
// app ns/name (in the envelope and the data, not only in the subject). The
// events are published after the responses, so it waits for them, with a
// generous bound that asserts nothing about time.
func waitForAudit(t *testing.T, s *devstack.Stack, ns, name, email string, types ...audit.EventType) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := s.JS.Stream(ctx, audit.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{audit.AuditAppSubjects(ns, name)}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if ci := cons.CachedInfo(); ci != nil {
			_ = stream.DeleteConsumer(context.Background(), ci.Name)
		}
	}()
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	var seen []string
	missing := slices.Clone(types)
	for len(missing) > 0 {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("audit events %v of %s in %s/%s: %v; read back: %v", missing, email, ns, name, err, seen)
		}
		env, typ, ev, err := audit.DecodeAuditEvent(m.Data())
		if err != nil {
			t.Fatalf("audit stream message on %s: %v", m.Subject(), err)
		}
		u := ev.Principal()
		seen = append(seen, fmt.Sprintf("%s %s by %v for %+v", env.Subject, typ, u, ev.App()))
		if u != nil && u.EmailAddr == email && env.Subject == ns+"/"+name && ev.App() == (audit.AppRef{Namespace: ns, Name: name}) {
			missing = slices.DeleteFunc(missing, func(x audit.EventType) bool { return x == typ })
		}
	}
}

// BenchmarkApplyToReady measures the time from apply of a new app to Ready
// on the local platform (OAuth registration, secret, instance start, route).
func BenchmarkApplyToReady(b *testing.B) {
	s := startStack(b)
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		a := e2eApp("127.0.0.1/32")
		a.Metadata.Name = fmt.Sprintf("bench-%d", i)
		start := time.Now()
		if _, _, err := s.Store.Apply(ctx, a); err != nil {
			b.Fatal(err)
		}
		waitFor(b, "Ready", func() bool { return phase(s, "team", a.Metadata.Name) == v1.PhaseReady })
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/apply-to-ready")
}

// checkConditionsEventsAndNoSecrets: a Ready app on the local platform has
// the conditions and reconcile events it has on AWS, and none of its secret
// values (session key, OAuth client secret) shows in its status or events.
func checkConditionsEventsAndNoSecrets(t *testing.T, s *devstack.Stack) {
	t.Helper()
	ctx := context.Background()
	var a *v1.ServingApp
	waitFor(t, "e2e Ready at its latest generation", func() bool {
		var err error
		a, err = s.Store.Get(ctx, "team", "e2e")
		return err == nil && a.Status.Phase == v1.PhaseReady && a.Status.ObservedGeneration == a.Metadata.Generation
	})
	for _, typ := range []string{"Synced", "OAuthRegistered", "Available", "Ready"} {
		i := slices.IndexFunc(a.Status.Conditions, func(c v1.Condition) bool { return c.Type == typ })
		if i < 0 || a.Status.Conditions[i].Status != v1.ConditionTrue || a.Status.Conditions[i].ObservedGeneration != a.Metadata.Generation {
			t.Errorf("condition %s: %+v", typ, a.Status.Conditions)
		}
	}
	_, evs, err := audit.LastReconcileEvents(ctx, s.JS, "team", "e2e", 10)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, ev := range evs {
		reasons[ev.Reason] = true
	}
	if !reasons["OAuthIntegrationCreated"] {
		t.Errorf("reconcile events %v: want the OAuth registration among them", reasons)
	}
	owned := s.Platform.Secrets.Owned("team/e2e")
	if len(owned) < 2 {
		t.Fatalf("secrets of team/e2e: %v, want the session key and the client secret", owned)
	}
	statusJSON, _ := json.Marshal(a.Status)
	eventsJSON, _ := json.Marshal(evs)
	for _, name := range owned {
		v, err := s.Platform.Secrets.Get(name)
		if err != nil || len(v) < 16 {
			t.Fatalf("secret %s: %d bytes, %v", name, len(v), err)
		}
		for what, text := range map[string][]byte{"status": statusJSON, "events": eventsJSON} {
			if bytes.Contains(text, v) {
				t.Errorf("the value of secret %s appears in the %s", name, what)
			}
		}
	}
}
