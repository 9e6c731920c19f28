package webapp_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
	"github.com/servingapp/servingapp/webapp/session"
)

const summaryText = "The committee met on Monday to review the budget. " +
	"It approved the new research program after a long debate. " +
	"Funding for the program starts in April and runs for three years. " +
	"Several members asked for quarterly reports on progress."

// TestFullFlow walks a user through everything, over TLS (production
// cookies) and in dev mode (plain http, InsecureDevCookies): home page,
// login, user card, session cookie attributes, API and form invocations,
// streaming, error mapping, token refresh after the access token's short
// lifetime, logout, and idle expiry; then reads every audit event back from
// JetStream and checks that no token, code, session id or CSRF token issued
// in the test appears in any event or log line.
func TestFullFlow(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
	}{
		{"over TLS", true},
		{"dev mode over plain http", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { fullFlow(t, tt.tls) })
	}
}

func fullFlow(t *testing.T, tls bool) {
	h := newHarness(t, options{nats: true, tls: tls})
	in := h.instances[0]
	b := h.browser()

	// Anonymous home page: a login button, security headers.
	resp, page := b.get(in.at("/"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="login"`) || strings.Contains(page, `id="user-card"`) {
		t.Fatalf("anonymous home: %d\n%s", resp.StatusCode, page)
	}
	for header, want := range map[string]string{
		"Content-Security-Policy": "frame-ancestors 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := resp.Header.Get(header); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", header, got, want)
		}
	}
	// HSTS only means something over https.
	if hsts := resp.Header.Get("Strict-Transport-Security"); strings.Contains(hsts, "max-age=") != tls {
		t.Errorf("Strict-Transport-Security = %q over %s", hsts, resp.Request.URL.Scheme)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") || cspDirective(csp, "form-action") != "'self'" {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "style=") || strings.Contains(page, "http://") && strings.Contains(page, "cdn") {
		t.Error("the page has inline script, inline style or a CDN reference")
	}

	// Login: the user card shows who signed in.
	resp, page = b.login(in, "alice@example.com")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != prefix+"/" {
		t.Fatalf("after login: %d at %s\n%s", resp.StatusCode, resp.Request.URL, page)
	}
	if got := elementText(page, "user-name"); got != "Alice Example" {
		t.Errorf("user-name = %q", got)
	}
	if got := elementText(page, "user-email"); got != "alice@example.com" {
		t.Errorf("user-email = %q", got)
	}
	if elementText(page, "user-id") == "" || !strings.Contains(page, `id="session-expiry"`) || !strings.Contains(page, `id="logout"`) {
		t.Errorf("user card incomplete:\n%s", page)
	}
	sessionCookie := checkSessionCookie(t, b, tls)

	// The JSON API.
	status, me := b.me(in)
	if status != http.StatusOK || me["email"] != "alice@example.com" || me["csrf_token"] == "" {
		t.Fatalf("/api/me: %d %v", status, me)
	}
	csrf := me["csrf_token"].(string)
	chat := map[string]any{"messages": []map[string]string{{"role": "user", "content": summaryText}}, "max_tokens": 64}
	resp, body := b.postJSON(in.at("/api/invoke"), csrf, chat)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"choices"`) {
		t.Fatalf("/api/invoke: %d %s", resp.StatusCode, body)
	}
	apiInvokeID := resp.Header.Get("X-Request-Id")
	apiBody, _ := json.Marshal(chat)

	// Streaming passes the server-sent events through.
	resp, body = b.postJSON(in.at("/api/invoke"), csrf, map[string]any{"messages": chat["messages"], "stream": true})
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") ||
		!strings.Contains(body, "data: {") || !strings.Contains(body, "data: [DONE]") {
		t.Fatalf("stream: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	streamID := resp.Header.Get("X-Request-Id")

	// The summarizer form.
	_, page = b.get(in.at("/"))
	resp, page = b.postForm(in.at("/summarize"), url.Values{"text": {summaryText}, "csrf": {csrfOf(t, page)}})
	if resp.StatusCode != http.StatusOK || elementText(page, "summary") == "" || elementText(page, "served-model") == "" {
		t.Fatalf("summarize: %d\n%s", resp.StatusCode, page)
	}
	formID := resp.Header.Get("X-Request-Id")

	// Databricks errors become clear messages.
	if err := h.emu.SetPermission("summarizer", "alice@example.com", emulator.NoPermission); err != nil {
		t.Fatal(err)
	}
	resp, body = b.postJSON(in.at("/api/invoke"), csrf, chat)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CAN_QUERY") {
		t.Fatalf("no permission: %d %s", resp.StatusCode, body)
	}
	deniedID := resp.Header.Get("X-Request-Id")
	_, page = b.get(in.at("/"))
	resp, page = b.postForm(in.at("/summarize"), url.Values{"text": {"hello"}, "csrf": {csrfOf(t, page)}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(elementText(page, "error-message"), "CAN_QUERY") {
		t.Fatalf("form without permission: %d\n%s", resp.StatusCode, page)
	}
	_ = h.emu.SetPermission("summarizer", "alice@example.com", emulator.CanQuery)
	if err := h.emu.InjectFault("summarizer", emulator.Fault{StatusCode: http.StatusTooManyRequests, Times: 2}); err != nil {
		t.Fatal(err)
	}
	resp, body = b.postJSON(in.at("/api/invoke"), csrf, chat)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "try again later") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("rate limited: %d %s", resp.StatusCode, body)
	}
	jaReq, _ := http.NewRequest(http.MethodGet, in.at("/"), nil)
	jaReq.Header.Set("Accept-Language", "ja,en;q=0.5")
	_, page = b.do(jaReq)
	if !strings.Contains(page, `lang="ja"`) || !strings.Contains(page, "サインアウト") {
		t.Errorf("Japanese page expected:\n%s", page)
	}

	// Refresh: past the 5-minute access token, the next call refreshes once.
	tokenCalls := h.emu.RequestCount(emulator.RouteToken)
	h.clock.Advance(5 * time.Minute)
	for range 3 {
		resp, body = b.postJSON(in.at("/api/invoke"), csrf, chat)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("invoke after expiry: %d %s", resp.StatusCode, body)
		}
	}
	if got := h.emu.RequestCount(emulator.RouteToken) - tokenCalls; got != 1 {
		t.Fatalf("token endpoint called %d times after expiry, want one refresh", got)
	}

	// Logout needs the CSRF token and ends the session.
	_, page = b.get(in.at("/"))
	resp, page = b.postForm(in.at("/logout"), url.Values{"csrf": {csrfOf(t, page)}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="login"`) {
		t.Fatalf("logout: %d\n%s", resp.StatusCode, page)
	}
	logoutID := resp.Request.Response.Header.Get("X-Request-Id")
	if status, _ := b.me(in); status != http.StatusUnauthorized {
		t.Fatalf("/api/me after logout: %d", status)
	}

	// Idle expiry: a session unused for the idle timeout ends.
	b.login(in, "bob@example.com")
	bobCookie := checkSessionCookie(t, b, tls)
	h.clock.Advance(time.Hour)
	resp, page = b.get(in.at("/"))
	if !strings.Contains(page, `id="login"`) {
		t.Fatalf("idle session still signed in:\n%s", page)
	}
	expiredID := resp.Header.Get("X-Request-Id")

	// Every event, read back from JetStream.
	evs := h.events()
	logins := ofType(evs, audit.LoginSucceeded)
	if len(logins) != 2 {
		t.Fatalf("%d login.succeeded events, want 2", len(logins))
	}
	login := logins[0].Event
	if login.ClassUID != audit.ClassAuthentication || login.ActivityID != audit.ActivityLogon || login.StatusID != audit.StatusSuccess ||
		login.User.EmailAddr != "alice@example.com" || login.User.UID == "" || login.SrcEndpoint.IP != "127.0.0.1" ||
		login.HTTPRequest.UserAgent != "webapp-test-browser/1" || login.Metadata.CorrelationUID == "" ||
		login.Session.UID != session.AuditID(sessionCookie) || strings.Contains(login.Session.UID, sessionCookie) {
		t.Errorf("login.succeeded: %+v", login)
	}
	if logins[0].Subject != "servingapp.audit.analytics.summarizer.login.succeeded" || logins[0].MsgID != logins[0].Envelope.ID {
		t.Errorf("subject %s, msg id %s, id %s", logins[0].Subject, logins[0].MsgID, logins[0].Envelope.ID)
	}

	inv := eventFor(t, evs, audit.InvocationCompleted, apiInvokeID).Event
	sum := sha256.Sum256(apiBody)
	if inv.ClassUID != audit.ClassAPIActivity || inv.API.Service.Name != "summarizer" || inv.HTTPResponse.Code != 200 ||
		inv.HTTPRequest.Length != int64(len(apiBody)) || inv.HTTPResponse.Length == 0 || inv.Unmapped.Usage == nil ||
		inv.Unmapped.Usage.TotalTokens == 0 || inv.Unmapped.PromptSHA256 != hex.EncodeToString(sum[:]) ||
		inv.Actor.User.EmailAddr != "alice@example.com" || inv.Actor.Session.UID != session.AuditID(sessionCookie) ||
		inv.Unmapped.ServedModel == "" || inv.DstEndpoint.SvcName != "summarizer" {
		t.Errorf("invocation.completed (api): %+v", inv)
	}
	if ev := eventFor(t, evs, audit.InvocationCompleted, streamID).Event; !ev.Unmapped.Stream || ev.Unmapped.Usage == nil {
		t.Errorf("invocation.completed (stream): %+v", ev.Unmapped)
	}
	formSum := sha256.Sum256([]byte(summaryText))
	if ev := eventFor(t, evs, audit.InvocationCompleted, formID).Event; ev.Unmapped.PromptSHA256 != hex.EncodeToString(formSum[:]) || ev.Unmapped.Form != "summarizer" {
		t.Errorf("invocation.completed (form): %+v", ev.Unmapped)
	}
	if ev := eventFor(t, evs, audit.InvocationFailed, deniedID).Event; ev.StatusID != audit.StatusFailure || ev.HTTPResponse.Code != http.StatusForbidden || ev.StatusCode != "PERMISSION_DENIED" {
		t.Errorf("invocation.failed: %+v %+v", ev, ev.HTTPResponse)
	}
	if got := len(ofType(evs, audit.InvocationFailed)); got != 3 {
		t.Errorf("%d invocation.failed events, want 3 (two denied, one rate limited)", got)
	}
	refreshed := ofType(evs, audit.SessionRefreshed)
	if len(refreshed) != 1 || refreshed[0].Event.Session.UID != session.AuditID(sessionCookie) || refreshed[0].Event.ActivityID != audit.ActivityTicketRenew {
		t.Errorf("session.refreshed: %+v", refreshed)
	}
	if ev := eventFor(t, evs, audit.Logout, logoutID).Event; ev.User.EmailAddr != "alice@example.com" || ev.ActivityID != audit.ActivityLogoff {
		t.Errorf("logout: %+v", ev)
	}
	if ev := eventFor(t, evs, audit.SessionExpired, expiredID).Event; ev.StatusDetail != audit.ExpiryIdle || ev.Session.UID != session.AuditID(bobCookie) {
		t.Errorf("session.expired: %+v", ev)
	}
	for _, e := range evs {
		if e.Envelope.SpecVersion != "1.0" || e.Envelope.Source != "/servingapp/apps/analytics/summarizer" || e.Event.Unmapped.App.Name != testName {
			t.Errorf("envelope: %+v", e.Envelope)
		}
	}
	checkNoSecrets(t, h, evs)
	checkSchemas(t, evs)
}

// checkSchemas validates every event the app published against the audit
// JSON Schemas (api/audit/schemas).
func checkSchemas(t *testing.T, evs []audit.StoredAuditEvent) {
	t.Helper()
	v, err := audit.NewSchemaValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		raw, _ := json.Marshal(e.Envelope)
		if err := v.ValidateCloudEvent(raw); err != nil {
			t.Errorf("%s event does not match its schema: %v", e.Type, err)
		}
	}
}

// checkSessionCookie checks the attributes of the last session cookie set
// and returns its value. Over TLS (secure) it must be a __Host- cookie with
// Secure; in dev mode neither, since browsers refuse both over plain http.
// Either way it is HttpOnly, SameSite=Lax, Path=/ and host-only. What is
// expected comes from how the test runs, never from the cookie itself.
func checkSessionCookie(t *testing.T, b *browser, secure bool) string {
	t.Helper()
	c := b.lastSetSessionCookie(t)
	if hostPrefixed := strings.HasPrefix(c.Name, "__Host-"); hostPrefixed != secure {
		t.Errorf("session cookie %s: __Host- prefix %v, want %v", c.Name, hostPrefixed, secure)
	}
	if c.Secure != secure {
		t.Errorf("session cookie %s: Secure %v, want %v", c.Name, c.Secure, secure)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("session cookie %s: HttpOnly %v, SameSite %v, Path %q, Domain %q; want HttpOnly, Lax, / and none",
			c.Name, c.HttpOnly, c.SameSite, c.Path, c.Domain)
	}
	return c.Value
}

// checkNoSecrets fails if any token, code, client secret, session id (raw
// cookie value), login cookie or CSRF token issued in the test appears in
// an audit event or a log line.
func checkNoSecrets(t *testing.T, h *harness, evs []audit.StoredAuditEvent) {
	t.Helper()
	var all strings.Builder
	for _, e := range evs {
		raw, _ := json.Marshal(e.Envelope)
		all.Write(raw)
	}
	events, logs := all.String(), h.logs.String()
	secrets := h.secrets.all()
	kinds := map[string]int{}
	for _, s := range secrets {
		kinds[s.kind]++
	}
	t.Logf("checked %d audit events and %d bytes of logs for %d secrets %v", len(evs), len(logs), len(secrets), kinds)
	if len(secrets) < 5 || kinds[secretSession] == 0 || kinds[secretCSRF] == 0 {
		t.Fatalf("only %d secrets recorded %v (want session ids and CSRF tokens among them); the recorder is broken", len(secrets), kinds)
	}
	for _, s := range secrets {
		if strings.Contains(events, s.value) {
			t.Errorf("an audit event contains a %s (%d chars)", s.kind, len(s.value))
		}
		if strings.Contains(logs, s.value) {
			t.Errorf("a log line contains a %s (%d chars)", s.kind, len(s.value))
		}
	}
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"request_id"`) {
		t.Error("no JSON access log lines with request ids")
	}
}
