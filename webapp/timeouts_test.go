package webapp_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
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
