package webapp_test

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/webapp"
)

func TestOperationsEndpoints(t *testing.T) {
	h := newHarness(t, options{nats: true})
	in := h.instances[0]
	b := h.browser()
	b.login(in, "alice@example.com")

	get := func(path string, header map[string]string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, in.url+path, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		return b.do(req)
	}
	tests := []struct {
		path   string
		header map[string]string
		status int
		has    []string
	}{
		{"/healthz", nil, 200, []string{"ok"}},
		{prefix + "/healthz", nil, 200, []string{"ok"}},
		{"/readyz", nil, 200, []string{"ok"}},
		{prefix + "/readyz", nil, 200, []string{"ok"}},
		{"/metrics", nil, 200, []string{
			`servingapp_webapp_http_requests_total{code="200",method="GET",route="GET /chat/{$}"}`,
			`servingapp_webapp_logins_total{outcome="succeeded"} 1`,
			"servingapp_webapp_invocation_duration_seconds", "servingapp_webapp_token_refreshes_total",
			"servingapp_audit_outbox_events", "servingapp_audit_events_published_total",
		}},
		{"/metrics", map[string]string{"X-Forwarded-For": "203.0.113.9"}, 404, nil},
		{prefix + "/static/app.css", nil, 200, []string{"--accent"}},
		{prefix + "/no-such-page", nil, 404, []string{`id="error-title"`}},
		{"/elsewhere", nil, 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(tt.path, tt.header)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			for _, s := range tt.has {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q", s)
				}
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("headers: %v", resp.Header)
			}
		})
	}
	b.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if resp, _ := b.get(in.url + prefix); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != prefix+"/" {
		t.Errorf("GET %s: %d to %q", prefix, resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := b.get(in.at("/logout")); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /logout: %d, want 405", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.app.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get("/readyz", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz after Close: %d, want 503", resp.StatusCode)
	}
}

func TestAppAtTheRootWithATrustedProxy(t *testing.T) {
	h := newHarness(t, options{nats: true, root: true, config: func(_ int, c *webapp.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}})
	in := h.instances[0]
	b := h.browser()
	resp, page := b.login(in, "alice@example.com")
	if resp.Request.URL.Path != "/" || elementText(page, "user-email") != "alice@example.com" {
		t.Fatalf("login at the root: %s\n%s", resp.Request.URL, page)
	}
	req, _ := http.NewRequest(http.MethodGet, in.url+"/", nil)
	req.Header.Set("X-Forwarded-For", "1.2.3.4, 198.51.100.23")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Request-Id", "alb-request-1")
	resp, _ = b.do(req)
	if resp.Header.Get("Strict-Transport-Security") == "" || resp.Header.Get("X-Request-Id") != "alb-request-1" {
		t.Fatalf("behind a trusted proxy on https: HSTS %q, request id %q", resp.Header.Get("Strict-Transport-Security"), resp.Header.Get("X-Request-Id"))
	}
	req, _ = http.NewRequest(http.MethodPost, in.url+"/logout", strings.NewReader("csrf="+b.csrf(in)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", "198.51.100.23")
	req.Header.Set("X-Request-Id", "alb-request-2")
	b.do(req)
	ev := eventFor(t, h.events(), audit.Logout, "alb-request-2")
	if ev.Event.SrcEndpoint.IP != "198.51.100.23" || ev.Event.HTTPRequest.URL.Path != "/logout" {
		t.Fatalf("logout event: %+v %+v", ev.Event.SrcEndpoint, ev.Event.HTTPRequest.URL)
	}
}
