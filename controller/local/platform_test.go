package local

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/servingapp/servingapp/api/appenv"
	"github.com/servingapp/servingapp/controller/model"
)

// echoRunner starts small HTTP servers that answer with their instance number
// and one variable of their environment.
type echoRunner struct {
	n       atomic.Int32
	mu      sync.Mutex
	running map[string]bool
}

type echoInstance struct {
	srv *httptest.Server
	r   *echoRunner
}

func (e *echoInstance) URL() string { return e.srv.URL }
func (e *echoInstance) Stop(context.Context) error {
	e.r.mu.Lock()
	delete(e.r.running, e.srv.URL)
	e.r.mu.Unlock()
	e.srv.Close()
	return nil
}

func (r *echoRunner) Start(_ context.Context, _ model.Ref, env map[string]string) (Instance, error) {
	id := r.n.Add(1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/healthz" {
			return
		}
		body, _ := io.ReadAll(req.Body)
		fmt.Fprintf(w, "instance=%d greeting=%s xff=%s path=%s body=%s", id, env["GREETING"], req.Header.Get("X-Forwarded-For"), req.URL.Path, body)
	}))
	r.mu.Lock()
	if r.running == nil {
		r.running = map[string]bool{}
	}
	r.running[srv.URL] = true
	r.mu.Unlock()
	if len(env[appenv.SessionKey]) != 44 {
		return nil, fmt.Errorf("session key not resolved: %q", env[appenv.SessionKey])
	}
	return &echoInstance{srv: srv, r: r}, nil
}

func (r *echoRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

type nopRecorder struct{ events []string }

func (n *nopRecorder) Event(_ context.Context, reason, _ string) { n.events = append(n.events, reason) }
func (n *nopRecorder) Warning(_ context.Context, reason, _ string) {
	n.events = append(n.events, reason)
}

func testModel(replicas int32, greeting string, allow ...string) *model.App {
	m := &model.App{
		Ref: model.Ref{Namespace: "team", Name: "web", UID: "u1"}, Replicas: replicas,
		Host: "web.team.localhost", PathPrefix: "/app",
		Env: map[string]string{"GREETING": greeting}, SecretEnv: map[string]string{},
	}
	for _, a := range allow {
		m.Allowlist = append(m.Allowlist, netip.MustParsePrefix(a))
	}
	return m
}

func converge(t *testing.T, p *Platform, m *model.App) {
	t.Helper()
	rec := &nopRecorder{}
	for i := 0; i < 3; i++ { // as the reconciler does: observe, then apply the difference
		obs, err := p.Observe(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		after, err := p.Apply(context.Background(), m, obs, rec)
		if err != nil {
			t.Fatal(err)
		}
		if after.Available {
			return
		}
	}
	t.Fatal("did not converge")
}

// serveWeb runs team/web, two instances greeting "hello" to 127.0.0.1, on a
// platform whose gateway is g, and serves g until the test ends. It returns
// the platform, its runner and the gateway's URL.
func serveWeb(t *testing.T, g *Gateway) (*Platform, *echoRunner, string) {
	t.Helper()
	runner := &echoRunner{}
	p := &Platform{Gateway: g, Runner: runner, Secrets: &Secrets{}}
	gw := httptest.NewServer(g)
	t.Cleanup(gw.Close)
	converge(t, p, testModel(2, "hello", "127.0.0.1/32"))
	return p, runner, gw.URL
}

// get sends a request through the gateway from the given local source address.
func get(t *testing.T, gw string, from string, host, path string) (int, string) {
	t.Helper()
	r := send(t, gw, from, http.MethodGet, host, path, "")
	return r.code, r.body
}

type response struct {
	code        int
	contentType string
	body        string
}

// send sends a request with body (none when empty) through the gateway from
// the given local source address.
func send(t *testing.T, gw, from, method, host, path, body string) response {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, gw+path, rd)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

// isPage reports whether r is the gateway's own HTML page with code and text.
func isPage(r response, code int, text string) bool {
	return r.code == code && strings.HasPrefix(r.contentType, "text/html") &&
		strings.Contains(r.body, fmt.Sprintf("<h1>%d ", code)) &&
		strings.Contains(r.body, "servingapp dev gateway") && strings.Contains(r.body, text)
}

func TestGatewayRoutesEnforcesAllowlistAndRollsOut(t *testing.T) {
	p, runner, gw := serveWeb(t, &Gateway{})
	if n := runner.count(); n != 2 {
		t.Fatalf("%d instances, want 2", n)
	}
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		code, body := get(t, gw, "127.0.0.1", "web.team.localhost:8080", "/app/x")
		if code != 200 || !strings.Contains(body, "greeting=hello") || !strings.Contains(body, "xff=127.0.0.1") || !strings.Contains(body, "path=/app/x") {
			t.Fatalf("%d %s", code, body)
		}
		seen[strings.Fields(body)[0]] = true
	}
	if len(seen) != 2 {
		t.Fatalf("round robin reached %d instances, want 2", len(seen))
	}
	cases := []struct {
		name, from, host, path string
		code                   int
		page                   string // the text of the gateway's own page; "" for the app's answer
	}{
		{"other source address", "127.0.0.2", "web.team.localhost", "/app/", 403, "is not on this app"},
		{"unknown host", "127.0.0.1", "other.localhost", "/app/", 404, "No app is served"},
		{"path outside prefix", "127.0.0.1", "web.team.localhost", "/application", 404, "No app is served"},
		{"prefix itself", "127.0.0.1", "web.team.localhost", "/app", 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, gw, tc.from, http.MethodGet, tc.host, tc.path, "")
			if r.code != tc.code {
				t.Fatalf("%d, want %d: %s", r.code, tc.code, r.body)
			}
			if tc.page != "" && !isPage(r, tc.code, tc.page) {
				t.Fatalf("not the gateway's %d page saying %q: %s %s", tc.code, tc.page, r.contentType, r.body)
			}
		})
	}

	// Allowlist change lets 127.0.0.2 in without restarting instances.
	m := testModel(2, "hello", "127.0.0.1/32", "127.0.0.2/32")
	converge(t, p, m)
	if code, _ := get(t, gw, "127.0.0.2", "web.team.localhost", "/app/"); code != 200 {
		t.Fatalf("after allowlist change: %d", code)
	}
	if runner.n.Load() != 2 {
		t.Fatal("an allowlist change restarted instances")
	}

	// A config change replaces the instances; the route never goes empty.
	m = testModel(2, "bonjour", "127.0.0.1/32")
	converge(t, p, m)
	if code, body := get(t, gw, "127.0.0.1", "web.team.localhost", "/app/"); code != 200 || !strings.Contains(body, "greeting=bonjour") {
		t.Fatalf("after rollout: %d %s", code, body)
	}
	if n := runner.count(); n != 2 {
		t.Fatalf("%d instances running after rollout, want 2 (old ones stopped)", n)
	}

	// Lockout blocks one address.
	if err := p.SetBlocked(context.Background(), m.Ref, []netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if r := send(t, gw, "127.0.0.1", http.MethodGet, "web.team.localhost", "/app/", ""); r.code != 403 {
		t.Fatalf("blocked address got %d", r.code)
	} else if !isPage(r, 403, "from your address is blocked") {
		t.Fatalf("blocked address: not the gateway's lockout page: %s %s", r.contentType, r.body)
	}
	// Lifting the lockout lets the address in again.
	if err := p.SetBlocked(context.Background(), m.Ref, nil); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, gw, "127.0.0.1", "web.team.localhost", "/app/"); code != 200 {
		t.Fatalf("after the lockout was lifted: %d", code)
	}

	obs, _ := p.Observe(context.Background(), m)
	if err := p.Delete(context.Background(), m, obs, false, &nopRecorder{}); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, gw, "127.0.0.1", "web.team.localhost", "/app/"); code != 404 {
		t.Fatalf("after delete: %d", code)
	}
	if runner.count() != 0 || len(p.Secrets.Owned("team/web")) != 0 {
		t.Fatal("instances or secrets left after delete")
	}
}

func TestSecondApplyStartsNothing(t *testing.T) {
	runner := &echoRunner{}
	p := &Platform{Gateway: &Gateway{}, Runner: runner, Secrets: &Secrets{}}
	m := testModel(1, "hi", "127.0.0.1/32")
	converge(t, p, m)
	obs, _ := p.Observe(context.Background(), m)
	rec := &nopRecorder{}
	if _, err := p.Apply(context.Background(), m, obs, rec); err != nil {
		t.Fatal(err)
	}
	if runner.n.Load() != 1 || len(rec.events) != 0 {
		t.Fatalf("steady-state apply did work: %d starts, events %v", runner.n.Load(), rec.events)
	}
}
