package local

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servingapp/servingapp/internal/clock"
)

// instances are app's running instances, in start order.
func instances(p *Platform, app string) []Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Instance
	for _, in := range p.apps[app].instances {
		out = append(out, in.inst)
	}
	return out
}

// countingTransport counts the requests sent to each instance (by host:port).
type countingTransport struct {
	rt http.RoundTripper
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[req.URL.Host]++
	c.mu.Unlock()
	return c.rt.RoundTrip(req)
}

func (c *countingTransport) count(instanceURL string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[strings.TrimPrefix(instanceURL, "http://")]
}

func TestGatewaySkipsAStoppedInstanceWithoutAReconcile(t *testing.T) {
	p, _, gw := serveWeb(t, &Gateway{})
	insts := instances(p, "team/web")
	if len(insts) != 2 {
		t.Fatalf("%d instances, want 2", len(insts))
	}

	// One instance dies; nothing reconciles the app.
	_ = insts[0].Stop(context.Background())
	for i := range 10 {
		if code, body := get(t, gw, "127.0.0.1", "web.team.localhost", "/app/x"); code != 200 || !strings.Contains(body, "greeting=hello") {
			t.Fatalf("request %d with one of two instances stopped: %d %s", i, code, body)
		}
	}

	// Both die: the gateway's 502 page.
	_ = insts[1].Stop(context.Background())
	for i := range 2 {
		if r := send(t, gw, "127.0.0.1", http.MethodGet, "web.team.localhost", "/app/x", ""); !isPage(r, http.StatusBadGateway, "Bad gateway") {
			t.Fatalf("request %d with every instance stopped: %d %s %s, want the 502 page", i, r.code, r.contentType, r.body)
		}
	}
}

func TestGatewayMarksARefusingInstanceDownForAWhileAndReplaysTheBody(t *testing.T) {
	clk := clock.NewManual(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	// No keep-alive: a pooled connection the stopped instance closed is a
	// request written, which the gateway rightly does not retry; here every
	// attempt dials, so a stopped instance always refuses.
	ct := &countingTransport{rt: &http.Transport{DisableKeepAlives: true}}
	p, _, gw := serveWeb(t, &Gateway{Transport: ct, Clock: clk, DownFor: 10 * time.Second})
	insts := instances(p, "team/web")
	dead, alive := insts[0], insts[1]
	_ = dead.Stop(context.Background())

	post := func(step string, n int) {
		t.Helper()
		for i := range n {
			body := fmt.Sprintf("summarize %s %d", step, i)
			r := send(t, gw, "127.0.0.1", http.MethodPost, "web.team.localhost", "/app/api/invoke", body)
			if r.code != 200 || !strings.Contains(r.body, "body="+body) {
				t.Fatalf("%s, POST %d: %d %s, want 200 with the body delivered", step, i, r.code, r.body)
			}
		}
	}
	// The first request (round robin starts at the first instance) is
	// refused by the dead one and goes to the other with its body; the dead
	// one is then skipped.
	post("after the stop", 4)
	if n := ct.count(dead.URL()); n != 1 {
		t.Fatalf("the stopped instance was tried %d times, want once (then marked down)", n)
	}
	if n := ct.count(alive.URL()); n != 4 {
		t.Fatalf("the live instance got %d requests, want 4", n)
	}

	// After DownFor the gateway tries it again, once, and marks it down again.
	clk.Advance(10 * time.Second)
	post("after DownFor", 4)
	if n := ct.count(dead.URL()); n != 2 {
		t.Fatalf("after DownFor the stopped instance was tried %d times in all, want 2", n)
	}

	// With both down, each is still tried (one may be back) before the 502 page.
	_ = alive.Stop(context.Background())
	for i := range 2 {
		r := send(t, gw, "127.0.0.1", http.MethodPost, "web.team.localhost", "/app/api/invoke", "x")
		if !isPage(r, http.StatusBadGateway, "Bad gateway") {
			t.Fatalf("request %d with every instance stopped: %d %s %s, want the 502 page", i, r.code, r.contentType, r.body)
		}
	}
	if d, a := ct.count(dead.URL()), ct.count(alive.URL()); d != 4 || a != 10 {
		t.Fatalf("with both down: %d and %d attempts in all, want 4 and 10 (each tried by both requests)", d, a)
	}
}

// TestGatewayMatchesPathsAsTheALBRulesDo: two apps on one host, at /a and
// /a/b. The AWS platform gives a prefix /p the path patterns "/p" and "/p/*"
// and orders longer prefixes first, so the longest prefix wins on whole
// segments: /a/bc is /a's, /ab is nobody's, and matching is case-sensitive.
func TestGatewayMatchesPathsAsTheALBRulesDo(t *testing.T) {
	answer := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			fmt.Fprintf(w, "app=%s path=%s", name, req.URL.Path)
		}))
	}
	a, ab := answer("a"), answer("ab")
	defer a.Close()
	defer ab.Close()
	all := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	routes := []Route{
		{App: "team/a", Host: "tools.localhost", PathPrefix: "/a", Allowlist: all, Backends: []string{a.URL}},
		{App: "team/ab", Host: "tools.localhost", PathPrefix: "/a/b", Allowlist: all, Backends: []string{ab.URL}},
	}
	cases := []struct {
		path string
		app  string // "" for 404
	}{
		{"/a", "a"},
		{"/a/", "a"},
		{"/a/x", "a"},
		{"/a/bc", "a"},
		{"/a/b", "ab"},
		{"/a/b/", "ab"},
		{"/a/b/c", "ab"},
		{"/a/b/c/d", "ab"},
		{"/ab", ""},
		{"/", ""},
		{"/A/b", ""},
		{"/a/B", "a"},
	}
	// Either order of SetRoute: the longest prefix wins regardless.
	for _, order := range [][]int{{0, 1}, {1, 0}} {
		g := &Gateway{}
		for _, i := range order {
			if err := g.SetRoute(routes[i]); err != nil {
				t.Fatal(err)
			}
		}
		gw := httptest.NewServer(g)
		for _, tc := range cases {
			t.Run(fmt.Sprintf("routes %v %s", order, tc.path), func(t *testing.T) {
				r := send(t, gw.URL, "127.0.0.1", http.MethodGet, "tools.localhost", tc.path, "")
				if tc.app == "" {
					if !isPage(r, http.StatusNotFound, "No app is served") {
						t.Fatalf("%d %s, want the 404 page", r.code, r.body)
					}
					return
				}
				if want := "app=" + tc.app + " path=" + tc.path; r.code != 200 || r.body != want {
					t.Fatalf("%d %q, want 200 %q", r.code, r.body, want)
				}
			})
		}
		gw.Close()
	}
}
