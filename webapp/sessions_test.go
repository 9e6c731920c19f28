package webapp_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
	"github.com/servingapp/servingapp/internal/natstest"
	"github.com/servingapp/servingapp/webapp"
)

func TestTwoInstancesShareSessionsOverNATS(t *testing.T) {
	h := newHarness(t, options{nats: true, instances: 2})
	a, b := h.instances[0], h.instances[1]
	br := h.browser()
	br.login(a, "alice@example.com") // cookies are per host, not per port: b sees them too
	status, me := br.me(b)
	if status != http.StatusOK || me["email"] != "alice@example.com" {
		t.Fatalf("instance b does not see the session made on a: %d %v", status, me)
	}
	csrf := me["csrf_token"].(string)

	// Both instances hit the expired token at once: one refresh in all.
	chat := map[string]any{"messages": []map[string]string{{"role": "user", "content": summaryText}}}
	tokenCalls := h.emu.RequestCount(emulator.RouteToken)
	h.clock.Advance(5 * time.Minute)
	var wg sync.WaitGroup
	codes := make([]int, 12)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := []*instance{a, b}[i%2]
			resp, _ := br.postJSON(in.at("/api/invoke"), csrf, chat)
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("concurrent invocation %d: %d", i, c)
		}
	}
	if got := h.emu.RequestCount(emulator.RouteToken) - tokenCalls; got != 1 {
		t.Fatalf("%d refreshes for one session across two instances, want 1", got)
	}
	// The rotated refresh token was saved: the next expiry refreshes again
	// (a lost rotation would be answered with invalid_grant).
	h.clock.Advance(5 * time.Minute)
	if resp, body := br.postJSON(b.at("/api/invoke"), csrf, chat); resp.StatusCode != http.StatusOK {
		t.Fatalf("second refresh on the other instance: %d %s", resp.StatusCode, body)
	}
	if n := len(ofType(h.events(), audit.SessionRefreshed)); n != 2 {
		t.Fatalf("%d session.refreshed events, want 2", n)
	}

	// Logout on b ends the session on a.
	_, page := br.get(b.at("/"))
	br.postForm(b.at("/logout"), url.Values{"csrf": {csrfOf(t, page)}})
	if status, _ := br.me(a); status != http.StatusUnauthorized {
		t.Fatalf("instance a still has the session after logout on b: %d", status)
	}
}

func TestRequestTypedBeforeLoginRunsAfterLogin(t *testing.T) {
	h := newHarness(t, options{nats: true})
	in := h.instances[0]
	b := h.browser()
	_, page := b.get(in.at("/"))
	resp, page := b.postForm(in.at("/summarize"), url.Values{"text": {summaryText}, "csrf": {csrfOf(t, page)}})
	if resp.Request.URL.Path != prefix+"/login/continue" {
		t.Fatalf("summarize before login went to %s, want the continue page", resp.Request.URL)
	}
	resp, page = b.follow(resp, page)
	if !strings.Contains(resp.Request.URL.Path, "/oidc/v1/authorize") {
		t.Fatalf("the continue page went to %s, want the sign-in page", resp.Request.URL)
	}
	resp, page = b.chooseUser(resp, page, "alice@example.com")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != prefix+"/resume" || elementText(page, "summary") == "" {
		t.Fatalf("after login: %d at %s\n%s", resp.StatusCode, resp.Request.URL, page)
	}
	// The kept request runs once.
	resp, page = b.get(in.at("/resume"))
	if resp.Request.URL.Path != prefix+"/" || strings.Contains(page, `id="summary"`) {
		t.Fatalf("resume ran twice: %s", resp.Request.URL)
	}
	inv := ofType(h.events(), audit.InvocationCompleted)
	if len(inv) != 1 || inv[0].Event.Actor.User.EmailAddr != "alice@example.com" || inv[0].Event.Unmapped.Form != "summarizer" {
		t.Fatalf("invocations: %+v", inv)
	}
}

func TestParallelLoginsKeepOneBoundedCookie(t *testing.T) {
	h := newHarness(t, options{})
	in := h.instances[0]
	b := h.browser()
	var callbacks []*url.URL
	for range 10 {
		callbacks = append(callbacks, b.authorize(in, in.at("/login?return_to="+url.QueryEscape(prefix+"/api/me")), "alice@example.com"))
	}
	u, _ := url.Parse(in.url)
	var loginCookies, size int
	for _, c := range b.client.Jar.Cookies(u) {
		if strings.HasSuffix(c.Name, "-login") {
			loginCookies++
			size = len(c.Value)
		}
	}
	if loginCookies != 1 || size > 3000 {
		t.Fatalf("%d login cookies, the last %d bytes; want one, well under 4 KiB", loginCookies, size)
	}
	// The oldest logins were forgotten; the newest still complete.
	if resp, _ := b.noFollow(callbacks[0].String()); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the oldest login completed: %d", resp.StatusCode)
	}
	if resp, _ := b.noFollow(callbacks[9].String()); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the newest login failed: %d", resp.StatusCode)
	}
}

func TestRejectedRefreshEndsTheSession(t *testing.T) {
	h := newHarness(t, options{nats: true, refreshTTL: 10, config: func(_ int, c *webapp.Config) {
		c.IdleTimeout = 3 * time.Hour
	}})
	in := h.instances[0]
	b := h.browser()
	b.login(in, "alice@example.com")
	csrf := b.csrf(in)
	h.clock.Advance(11 * time.Minute) // past the refresh token's 10 minutes
	resp, body := b.postJSON(in.at("/api/invoke"), csrf, map[string]any{"messages": []map[string]string{{"role": "user", "content": "hi"}}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "sign in again") {
		t.Fatalf("invoke with a dead refresh token: %d %s", resp.StatusCode, body)
	}
	if status, _ := b.me(in); status != http.StatusUnauthorized {
		t.Fatalf("the session survived invalid_grant: %d", status)
	}
	ev := eventFor(t, h.events(), audit.SessionExpired, resp.Header.Get("X-Request-Id"))
	if ev.Event.StatusDetail != audit.ExpiryRefreshRejected || ev.Event.User.EmailAddr != "alice@example.com" {
		t.Fatalf("session.expired: %+v", ev.Event)
	}
}

// TestAuditEventsSurviveANATSOutageDuringLogins stops NATS for the middle
// of 100 logins; once it is back, every login.succeeded event is in the
// stream exactly once and in order.
func TestAuditEventsSurviveANATSOutageDuringLogins(t *testing.T) {
	h := newHarness(t, options{nats: true, memorySessions: true})
	in := h.instances[0]
	const logins = 100
	for i := range logins {
		switch i {
		case 30:
			h.nats.Stop()
		case 70:
			// The publisher notices the outage within its connection check
			// and moves what waits in memory to the outbox; give it a
			// moment rather than racing it.
			deadline := time.Now().Add(10 * time.Second)
			for out, _ := in.app.Publisher().Depth(); out < 40; out, _ = in.app.Publisher().Depth() {
				if time.Now().After(deadline) {
					t.Fatalf("%d events in the outbox while NATS is down, want the 40 of logins 30-69", out)
				}
				time.Sleep(5 * time.Millisecond)
			}
			h.nats.Restart()
		}
		h.clock.Advance(time.Second) // distinct, increasing event times
		resp, page := h.browser().login(in, "alice@example.com")
		if resp.StatusCode != http.StatusOK || elementText(page, "user-email") != "alice@example.com" {
			t.Fatalf("login %d: %d", i, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := in.app.Publisher().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := in.app.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, h.natsURL)
	evs, err := audit.ReadAuditEvents(ctx, js, audit.AuditAppSubjects(testNamespace, testName), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != logins {
		t.Fatalf("%d events in the stream, want %d", len(evs), logins)
	}
	seen := map[string]bool{}
	for i, e := range evs {
		if e.Type != audit.LoginSucceeded || seen[e.Envelope.ID] || e.MsgID != e.Envelope.ID {
			t.Fatalf("event %d: %s %s (duplicate: %v)", i, e.Type, e.Envelope.ID, seen[e.Envelope.ID])
		}
		seen[e.Envelope.ID] = true
		if i > 0 && e.Event.Time <= evs[i-1].Event.Time {
			t.Fatalf("event %d is out of order", i)
		}
	}
}

func TestEmailFromSCIMWhenTheIDTokenHasNone(t *testing.T) {
	h := newHarness(t, options{config: func(_ int, c *webapp.Config) {
		c.Scopes = []string{"openid", "offline_access", "all-apis"} // no email, no profile claims
	}})
	in := h.instances[0]
	b := h.browser()
	resp, page := b.login(in, "bob@example.com")
	if resp.StatusCode != http.StatusOK || elementText(page, "user-email") != "bob@example.com" || elementText(page, "user-name") != "Bob Example" {
		t.Fatalf("login without email claims: %d\n%s", resp.StatusCode, page)
	}
	if id := elementText(page, "user-id"); id == "" || strings.Contains(id, "@") {
		t.Fatalf("user id %q, want the SCIM id", id)
	}
	if n := h.emu.RequestCount(emulator.RouteMe); n != 1 {
		t.Fatalf("SCIM Me called %d times, want 1", n)
	}
}

// TestUnreachableKeysDuringRefreshKeepTheSession: the provider rotated its
// signing key and the first JWKS fetch for the new key fails. The request
// fails with a try-again answer, the session survives, and the next request
// refreshes with the refresh token the failed attempt was given (the
// integration's refresh tokens are single-use, so losing it would end the
// session).
func TestUnreachableKeysDuringRefreshKeepTheSession(t *testing.T) {
	tests := []struct {
		name  string
		fault emulator.Fault
	}{
		{"JWKS answers 503 once", emulator.Fault{StatusCode: http.StatusServiceUnavailable, Times: 1}},
		{"JWKS answers 500 once", emulator.Fault{StatusCode: http.StatusInternalServerError, Times: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, options{nats: true})
			in := h.instances[0]
			b := h.browser()
			b.login(in, "alice@example.com")
			csrf := b.csrf(in)
			if _, err := h.emu.RotateKeys(); err != nil {
				t.Fatal(err)
			}
			if err := h.emu.InjectRouteFault(emulator.RouteKeys, tt.fault); err != nil {
				t.Fatal(err)
			}
			h.clock.Advance(5 * time.Minute)
			chat := map[string]any{"messages": []map[string]string{{"role": "user", "content": "hi"}}}
			resp, body := b.postJSON(in.at("/api/invoke"), csrf, chat)
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "TEMPORARILY_UNAVAILABLE") {
				t.Fatalf("invoke while the keys are unreachable: %d %s, want 503", resp.StatusCode, body)
			}
			if status, _ := b.me(in); status != http.StatusOK {
				t.Fatalf("the session ended after a transient key failure: /api/me %d", status)
			}
			resp, body = b.postJSON(in.at("/api/invoke"), csrf, chat)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("invoke once the keys are back: %d %s", resp.StatusCode, body)
			}
			evs := h.events()
			if n := len(ofType(evs, audit.SessionExpired)); n != 0 {
				t.Fatalf("%d session.expired events, want none", n)
			}
			if n := len(ofType(evs, audit.SessionRefreshed)); n != 1 {
				t.Fatalf("%d session.refreshed events, want 1", n)
			}
			checkNoSecrets(t, h, evs)
		})
	}
}

// TestLoginCookieStaysUnder4KiB starts ten logins in one browser (tabs)
// with return_to values whose characters JSON escapes; every Set-Cookie the
// app sends fits the 4096 bytes browsers keep, and the newest login still
// completes to its return_to.
func TestLoginCookieStaysUnder4KiB(t *testing.T) {
	h := newHarness(t, options{})
	in := h.instances[0]
	tests := []struct {
		name     string
		returnTo string
	}{
		{"ampersands", prefix + "/?" + strings.Repeat("&", 500)},
		{"angle brackets", prefix + "/?q=" + strings.Repeat("<>", 250)},
		{"line separators (escaped even without HTML escaping)", prefix + "/?" + strings.Repeat("\u2028", 168)},
		{"plain", prefix + "/api/me"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.returnTo) > 512 {
				t.Fatalf("return_to of %d bytes; the app caps them at 512", len(tt.returnTo))
			}
			b := h.browser()
			var callbacks []*url.URL
			for range 10 {
				callbacks = append(callbacks, b.authorize(in, in.at("/login?return_to="+url.QueryEscape(tt.returnTo)), "alice@example.com"))
			}
			resp, _ := b.noFollow(callbacks[9].String())
			loc, _ := url.PathUnescape(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusSeeOther || loc != tt.returnTo {
				t.Fatalf("the newest login: %d to %.60q..., want its return_to", resp.StatusCode, loc)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			n := 0
			for _, c := range b.setCookies {
				if !strings.HasPrefix(c, prefix+"/") {
					continue // the emulator's
				}
				n++
				if _, v, _ := strings.Cut(c, " "); len(v) > 4096 {
					t.Errorf("a Set-Cookie of %d bytes (%.40s...)", len(v), v)
				}
			}
			if n < 11 {
				t.Fatalf("only %d Set-Cookie headers from the app", n)
			}
		})
	}
}

// TestFormSubmissionsNeverRedirectOffOrigin submits every form of the app
// and follows the answer's redirects by hand: with form-action 'self', a
// browser blocks a submission whose redirect chain leaves the origin (Chrome
// checks every hop), so each chain must end on a page of this app. The
// continue page then moves on by a meta refresh, which form-action does not
// govern, and the request typed before sign-in still runs.
func TestFormSubmissionsNeverRedirectOffOrigin(t *testing.T) {
	h := newHarness(t, options{})
	in := h.instances[0]
	origin := in.url

	// submit posts a form and follows redirects itself, checking each hop.
	submit := func(t *testing.T, b *browser, path string, form url.Values) (*http.Response, string) {
		t.Helper()
		saved := b.client.CheckRedirect
		b.client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if got := req.URL.Scheme + "://" + req.URL.Host; got != origin {
				return fmt.Errorf("hop %d of a form submission goes to %s, off %s", len(via), req.URL, origin)
			}
			return nil
		}
		defer func() { b.client.CheckRedirect = saved }()
		req, _ := http.NewRequest(http.MethodPost, in.at(path), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s ended with %d at %s", path, resp.StatusCode, resp.Request.URL)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); cspDirective(csp, "form-action") != "'self'" {
			t.Fatalf("CSP %q, want form-action 'self' only", csp)
		}
		return resp, string(body)
	}

	t.Run("summarize before sign-in", func(t *testing.T) {
		b := h.browser()
		_, home := b.get(in.at("/"))
		resp, page := submit(t, b, "/summarize", url.Values{"text": {summaryText}, "csrf": {csrfOf(t, home)}})
		if resp.Request.URL.Path != prefix+"/login/continue" || strings.Contains(page, "<script") {
			t.Fatalf("ended at %s:\n%s", resp.Request.URL, page)
		}
		resp, page = b.follow(resp, page)
		resp, page = b.chooseUser(resp, page, "alice@example.com")
		if resp.Request.URL.Path != prefix+"/resume" || elementText(page, "summary") == "" {
			t.Fatalf("after sign-in: %s\n%s", resp.Request.URL, page)
		}
	})
	t.Run("summarize and sign out when signed in", func(t *testing.T) {
		b := h.browser()
		b.login(in, "alice@example.com")
		_, home := b.get(in.at("/"))
		if _, page := submit(t, b, "/summarize", url.Values{"text": {summaryText}, "csrf": {csrfOf(t, home)}}); elementText(page, "summary") == "" {
			t.Fatalf("no summary:\n%s", page)
		}
		_, home = b.get(in.at("/"))
		if _, page := submit(t, b, "/logout", url.Values{"csrf": {csrfOf(t, home)}}); !strings.Contains(page, `id="login"`) {
			t.Fatalf("not signed out:\n%s", page)
		}
	})
	t.Run("the continue page without a kept request is an ordinary sign-in", func(t *testing.T) {
		b := h.browser()
		resp, page := b.get(in.at("/login/continue"))
		resp, page = b.follow(resp, page)
		resp, _ = b.chooseUser(resp, page, "bob@example.com")
		if resp.Request.URL.Path != prefix+"/" {
			t.Fatalf("after sign-in: %s", resp.Request.URL)
		}
	})
}
