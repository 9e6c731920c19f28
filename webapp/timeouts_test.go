package webapp_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
	"github.com/servingapp/servingapp/webapp"
	"github.com/servingapp/servingapp/webapp/session"
)

// TestSessionInUseEndsAtTheAbsoluteTimeout: a session used every 20 minutes,
// so its 1h idle timeout never fires, lives until its 2h absolute timeout
// (on the app's clock) and not past it: the first request at the timeout
// finds the user signed out and asked to sign in again, and a
// session.expired event says absolute_timeout. The browser must still send
// the cookie then, or the app could not tell the session ended.
func TestSessionInUseEndsAtTheAbsoluteTimeout(t *testing.T) {
	const ttl, idle, every = 2 * time.Hour, time.Hour, 20 * time.Minute
	tests := []struct {
		name           string
		memorySessions bool
	}{
		{"KV sessions", false},
		{"memory sessions", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, options{nats: true, memorySessions: tt.memorySessions, config: func(_ int, c *webapp.Config) {
				c.SessionTTL, c.IdleTimeout = ttl, idle
			}})
			in := h.instances[0]
			b := h.browser()
			b.login(in, "alice@example.com")
			signedIn := h.clock.Now()
			cookie := b.lastSetSessionCookie(t)
			// The jar keeps cookies by the real clock, which hardly moves
			// here; a browser keeps them by its own, so the cookie must
			// outlive the session for its ending to be seen at all.
			if time.Duration(cookie.MaxAge)*time.Second <= ttl {
				t.Errorf("the session cookie's Max-Age is %ds, not longer than the session's %s", cookie.MaxAge, ttl)
			}

			for used := every; used < ttl; used += every {
				h.clock.Advance(every)
				if status, me := b.me(in); status != http.StatusOK {
					t.Fatalf("%s after sign-in, in use all along: /api/me %d %v", used, status, me)
				}
			}
			h.clock.Advance(ttl - h.clock.Now().Sub(signedIn) - time.Second)
			if status, _ := b.me(in); status != http.StatusOK {
				t.Fatalf("a second before the absolute timeout: /api/me %d", status)
			}

			h.clock.Advance(time.Second)
			resp, page := b.get(in.at("/"))
			if !strings.Contains(page, `id="login"`) || strings.Contains(page, `id="user-card"`) {
				t.Fatalf("at the absolute timeout the home page still shows the user:\n%s", page)
			}
			expiredID := resp.Header.Get("X-Request-Id")
			resp, body := b.get(in.at("/api/me"))
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"login_url"`) {
				t.Fatalf("/api/me after the absolute timeout: %d %s, want 401 with a login_url", resp.StatusCode, body)
			}

			evs := h.events()
			ev := eventFor(t, evs, audit.SessionExpired, expiredID).Event
			if ev.StatusDetail != audit.ExpiryAbsolute || ev.Session == nil || ev.Session.UID != session.AuditID(cookie.Value) ||
				ev.User == nil || ev.User.EmailAddr != "alice@example.com" {
				t.Fatalf("session.expired: reason %q, session %+v, user %+v; want absolute_timeout for alice's session", ev.StatusDetail, ev.Session, ev.User)
			}
			if n := len(ofType(evs, audit.SessionExpired)); n != 1 {
				t.Fatalf("%d session.expired events, want 1", n)
			}
			checkSchemas(t, evs)
		})
	}
}

// TestSlowEndpointTimesOutWithAClearAnswer: when the serving endpoint does
// not answer within the configured invocation timeout, the app gives up on
// it and tells the user so (504, DEADLINE_EXCEEDED, "took too long") on the
// API, the streaming API and the summarizer form alike, and records an
// invocation.failed event saying the same; the session is untouched.
func TestSlowEndpointTimesOutWithAClearAnswer(t *testing.T) {
	// The endpoint's latency is far beyond the timeout: only the app's own
	// timeout can end these requests in time for a 504 (were it broken, the
	// endpoint would answer after 30s and the test would fail on a 200).
	const timeout, latency = 200 * time.Millisecond, 30 * time.Second
	const tooLong = "took too long"
	h := newHarness(t, options{nats: true, config: func(_ int, c *webapp.Config) { c.InvokeTimeout = timeout }})
	in := h.instances[0]
	b := h.browser()
	b.login(in, "alice@example.com")
	csrf := b.csrf(in)
	messages := []map[string]string{{"role": "user", "content": summaryText}}

	tests := []struct {
		name   string
		stream bool
		invoke func(t *testing.T) (resp *http.Response, message string)
	}{
		{"API", false, func(t *testing.T) (*http.Response, string) {
			resp, body := b.postJSON(in.at("/api/invoke"), csrf, map[string]any{"messages": messages})
			return resp, deadlineMessage(t, resp, body)
		}},
		{"streaming API", true, func(t *testing.T) (*http.Response, string) {
			resp, body := b.postJSON(in.at("/api/invoke"), csrf, map[string]any{"messages": messages, "stream": true})
			return resp, deadlineMessage(t, resp, body)
		}},
		{"summarizer form", false, func(t *testing.T) (*http.Response, string) {
			_, home := b.get(in.at("/"))
			resp, page := b.postForm(in.at("/summarize"), url.Values{"text": {summaryText}, "csrf": {csrfOf(t, home)}})
			return resp, elementText(page, "error-message")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.emu.InjectFault("summarizer", emulator.Fault{Latency: latency, Times: 1}); err != nil {
				t.Fatal(err)
			}
			resp, message := tt.invoke(t)
			if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(message, tooLong) {
				t.Fatalf("%d %q, want 504 saying the endpoint %s", resp.StatusCode, message, tooLong)
			}
			ev := eventFor(t, h.events(), audit.InvocationFailed, resp.Header.Get("X-Request-Id")).Event
			if ev.StatusID != audit.StatusFailure || ev.StatusCode != "DEADLINE_EXCEEDED" || !strings.Contains(ev.Message, tooLong) ||
				ev.HTTPResponse == nil || ev.HTTPResponse.Code != http.StatusGatewayTimeout ||
				ev.API == nil || ev.API.Response == nil || ev.API.Response.Error != "DEADLINE_EXCEEDED" ||
				ev.Actor == nil || ev.Actor.User.EmailAddr != "alice@example.com" || ev.Unmapped.Stream != tt.stream {
				t.Fatalf("invocation.failed: status %d %q, message %q, response %+v, api %+v, stream %v",
					ev.StatusID, ev.StatusCode, ev.Message, ev.HTTPResponse, ev.API, ev.Unmapped.Stream)
			}
			if status, _ := b.me(in); status != http.StatusOK {
				t.Fatalf("the session did not survive the timeout: /api/me %d", status)
			}
		})
	}
	evs := h.events()
	checkSchemas(t, evs)
	checkNoSecrets(t, h, evs)
}

// deadlineMessage returns the message of a JSON DEADLINE_EXCEEDED answer,
// failing on any other body.
func deadlineMessage(t *testing.T, resp *http.Response, body string) string {
	t.Helper()
	var e struct {
		ErrorCode string `json:"error_code"`
		Message   string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.ErrorCode == "" {
		t.Fatalf("%d %s: not a JSON error (%v)", resp.StatusCode, body, err)
	}
	if e.ErrorCode != "DEADLINE_EXCEEDED" {
		t.Errorf("error_code %q, want DEADLINE_EXCEEDED", e.ErrorCode)
	}
	return e.Message
}

// TestEndpointWordsQuotingTheInputStayOutOfAuditAndLogs: a serving endpoint's
// 400 may quote what the user sent. The user is shown the endpoint's words;
// the invocation.failed event and the log say the error code instead, since
// the audit trail keeps a prompt's hash and never its text.
func TestEndpointWordsQuotingTheInputStayOutOfAuditAndLogs(t *testing.T) {
	const quoted = "quarterly-merger-plan-do-not-share"
	h := newHarness(t, options{nats: true})
	in := h.instances[0]
	b := h.browser()
	b.login(in, "alice@example.com")
	resp, body := b.postJSON(in.at("/api/invoke"), b.csrf(in), map[string]any{
		"messages": []map[string]string{{"role": quoted, "content": summaryText}},
	})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, quoted) || !strings.Contains(body, "INVALID_PARAMETER_VALUE") {
		t.Fatalf("%d %s, want 400 showing the user the endpoint's words", resp.StatusCode, body)
	}
	evs := h.events()
	ev := eventFor(t, evs, audit.InvocationFailed, resp.Header.Get("X-Request-Id")).Event
	if ev.StatusCode != "INVALID_PARAMETER_VALUE" || !strings.Contains(ev.Message, "INVALID_PARAMETER_VALUE") {
		t.Fatalf("invocation.failed: code %q, message %q; want the error code", ev.StatusCode, ev.Message)
	}
	for _, e := range evs {
		raw, _ := json.Marshal(e.Envelope)
		for _, text := range []string{quoted, summaryText} {
			if strings.Contains(string(raw), text) {
				t.Errorf("a %s event contains the user's input %.20q…", e.Envelope.Type, text)
			}
		}
	}
	for _, text := range []string{quoted, summaryText} {
		if strings.Contains(h.logs.String(), text) {
			t.Errorf("a log line contains the user's input %.20q…", text)
		}
	}
	checkSchemas(t, evs)
}
