package webapp_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/webapp"
	"github.com/servingapp/servingapp/webapp/session"
)

// expectLoginFailed checks that the callback response refused the login,
// created no session, and was audited as login.failed with reason.
func expectLoginFailed(t *testing.T, h *harness, b *browser, in *instance, resp *http.Response, page, reason string) {
	t.Helper()
	if resp.StatusCode < 400 || !strings.Contains(page, `id="error-title"`) {
		t.Fatalf("callback answered %d, want an error page:\n%s", resp.StatusCode, page)
	}
	if status, _ := b.me(in); status != http.StatusUnauthorized {
		t.Fatalf("a session exists after a refused login (/api/me: %d)", status)
	}
	ev := eventFor(t, h.events(), audit.LoginFailed, resp.Header.Get("X-Request-Id"))
	if ev.Event.StatusDetail != reason || ev.Event.StatusID != audit.StatusFailure || ev.Event.ClassUID != audit.ClassAuthentication {
		t.Fatalf("login.failed reason %q (status %d), want %q; message %q", ev.Event.StatusDetail, ev.Event.StatusID, reason, ev.Event.Message)
	}
	// Who tried: the client's address and user agent, and the callback
	// path without its query (which holds the code).
	if src := ev.Event.SrcEndpoint; src == nil || src.IP != "127.0.0.1" {
		t.Errorf("login.failed source endpoint %+v, want IP 127.0.0.1", src)
	}
	if req := ev.Event.HTTPRequest; req == nil || req.URL == nil {
		t.Errorf("login.failed has no HTTP request or URL: %+v", req)
	} else if req.UserAgent != "webapp-test-browser/1" || req.URL.Path != in.prefix+"/oauth/callback" {
		t.Errorf("login.failed user agent %q at %q, want webapp-test-browser/1 at %s/oauth/callback", req.UserAgent, req.URL.Path, in.prefix)
	}
	t.Logf("refused: %s", ev.Event.Message)
}

// forgeryHarness starts two app instances on NATS whose JWKS also holds
// trustedKey, so signedByTrusted forges ID tokens they accept. Instance
// number policy allows only corp.example emails; the other has no domain
// policy.
func forgeryHarness(t *testing.T, policy int) *harness {
	t.Helper()
	h := newHarness(t, options{nats: true, instances: 2, config: func(i int, c *webapp.Config) {
		if i == policy {
			c.AllowedEmailDomains = []string{"corp.example"}
		}
	}})
	h.hook.extraJWK = trustedJWK()
	return h
}

func TestLoginAttacksAreRejectedWithTheRightReason(t *testing.T) {
	h := forgeryHarness(t, 1)
	_, unknown := testKeys()
	now := func() int64 { return h.clock.Now().Unix() }
	setQuery := func(key, value string) func(*url.URL) {
		return func(u *url.URL) {
			q := u.Query()
			if value == "" {
				q.Del(key)
			} else {
				q.Set(key, value)
			}
			u.RawQuery = q.Encode()
		}
	}

	tests := []struct {
		name     string
		instance int
		forge    func(claims map[string]any, accessToken string) string
		callback func(*url.URL)
		reason   string
	}{
		{name: "missing state", callback: setQuery("state", ""), reason: audit.ReasonStateMismatch},
		{name: "wrong state", callback: setQuery("state", "c3RhdGUtZnJvbS1hbm90aGVyLWJyb3dzZXItMDEyMzQ1Njc4OQ"), reason: audit.ReasonStateMismatch},
		{name: "provider says access_denied", callback: func(u *url.URL) {
			u.RawQuery = url.Values{"error": {"access_denied"}, "error_description": {"The user said no."}, "state": {u.Query().Get("state")}}.Encode()
		}, reason: audit.ReasonAccessDenied},
		{name: "nonce mismatch", forge: signedByTrusted(func(c map[string]any) { c["nonce"] = "nonce-of-another-login" }), reason: audit.ReasonNonceMismatch},
		{name: "ID token signed by an unknown key", forge: func(c map[string]any, _ string) string {
			return signJWT("RS256", unknownKID, unknown, "", c)
		}, reason: audit.ReasonInvalidIDToken},
		{name: "alg none", forge: func(c map[string]any, _ string) string {
			return signJWT("none", "", nil, "", c)
		}, reason: audit.ReasonInvalidIDToken},
		{name: "HS256 signed with the client secret", forge: func(c map[string]any, _ string) string {
			return signJWT("HS256", trustedKID, nil, h.secret, c)
		}, reason: audit.ReasonInvalidIDToken},
		{name: "wrong audience", forge: signedByTrusted(func(c map[string]any) { c["aud"] = "another-client" }), reason: audit.ReasonInvalidIDToken},
		{name: "wrong issuer", forge: signedByTrusted(func(c map[string]any) { c["iss"] = "https://evil.example/oidc" }), reason: audit.ReasonInvalidIDToken},
		{name: "expired", forge: signedByTrusted(func(c map[string]any) { c["iat"], c["exp"] = now()-3600, now()-60 }), reason: audit.ReasonInvalidIDToken},
		{name: "issued in the future", forge: signedByTrusted(func(c map[string]any) { c["iat"], c["exp"] = now()+3600, now()+7200 }), reason: audit.ReasonInvalidIDToken},
		{name: "at_hash mismatch", forge: signedByTrusted(func(c map[string]any) { c["at_hash"] = atHash("another access token") }), reason: audit.ReasonInvalidIDToken},
		{name: "email domain not allowed", instance: 1, reason: audit.ReasonPolicyDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.hook.setForge(tt.forge)
			defer h.hook.setForge(nil)
			in := h.instances[tt.instance]
			b := h.browser()
			cb := b.authorize(in, in.at("/login"), "alice@example.com")
			if tt.callback != nil {
				tt.callback(cb)
			}
			resp, page := b.noFollow(cb.String())
			expectLoginFailed(t, h, b, in, resp, page, tt.reason)
		})
	}

	// Sanity: the trusted key really is trusted, so the cases above failed
	// for their one defect and not for the key.
	t.Run("control: untouched claims signed by the trusted key", func(t *testing.T) {
		h.hook.setForge(signedByTrusted(func(map[string]any) {}))
		defer h.hook.setForge(nil)
		b := h.browser()
		in := h.instances[0]
		resp, page := b.login(in, "alice@example.com")
		if resp.StatusCode != http.StatusOK || elementText(page, "user-email") != "alice@example.com" {
			t.Fatalf("login with a well-formed forged token failed: %d\n%s", resp.StatusCode, page)
		}
	})
	evs := h.events()
	checkNoSecrets(t, h, evs)
	checkSchemas(t, evs)
}

func TestReplayedCodesAndCallbacksAreRejected(t *testing.T) {
	h := newHarness(t, options{nats: true})
	in := h.instances[0]

	t.Run("the same callback twice", func(t *testing.T) {
		b := h.browser()
		cb := b.authorize(in, in.at("/login"), "alice@example.com")
		if resp, _ := b.noFollow(cb.String()); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("first callback: %d", resp.StatusCode)
		}
		resp, page := b.noFollow(cb.String())
		if resp.StatusCode < 400 {
			t.Fatalf("replayed callback answered %d", resp.StatusCode)
		}
		ev := eventFor(t, h.events(), audit.LoginFailed, resp.Header.Get("X-Request-Id"))
		if ev.Event.StatusDetail != audit.ReasonStateMismatch || !strings.Contains(page, `id="error-login"`) {
			t.Fatalf("reason %q", ev.Event.StatusDetail)
		}
	})

	t.Run("a used code injected into another login", func(t *testing.T) {
		victim, attacker := h.browser(), h.browser()
		used := attacker.authorize(in, in.at("/login"), "bob@example.com")
		if resp, _ := attacker.noFollow(used.String()); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("attacker's own login: %d", resp.StatusCode)
		}
		cb := victim.authorize(in, in.at("/login"), "alice@example.com")
		q := cb.Query()
		q.Set("code", used.Query().Get("code"))
		cb.RawQuery = q.Encode()
		resp, page := victim.noFollow(cb.String())
		expectLoginFailed(t, h, victim, in, resp, page, audit.ReasonExchangeFailed)
	})
}

func TestLoginRedirectsOnlyToPathsOfThisApp(t *testing.T) {
	h := newHarness(t, options{})
	in := h.instances[0]
	tests := []struct {
		returnTo string
		want     string
	}{
		{"//evil.example", prefix + "/"},
		{"https://evil.example", prefix + "/"},
		{`/\evil.example`, prefix + "/"},
		{"/chat/../evil.example", prefix + "/"},
		{"/chat/%2F%2Fevil.example", prefix + "/"},
		{"/chat/%5Cevil.example", prefix + "/"},
		{"/other-app/", prefix + "/"},
		{"javascript:alert(1)", prefix + "/"},
		{"/chat/\r\nSet-Cookie: x=y", prefix + "/"},
		{"/chat/api/me", prefix + "/api/me"},
		{"/chat/?tab=2", prefix + "/?tab=2"},
	}
	for _, tt := range tests {
		t.Run(tt.returnTo, func(t *testing.T) {
			b := h.browser()
			cb := b.authorize(in, in.at("/login?return_to="+url.QueryEscape(tt.returnTo)), "alice@example.com")
			resp, _ := b.noFollow(cb.String())
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tt.want {
				t.Fatalf("after login: %d to %q, want %q", resp.StatusCode, resp.Header.Get("Location"), tt.want)
			}
		})
	}
}

func TestCSRFTokensAreRequired(t *testing.T) {
	h := newHarness(t, options{})
	in := h.instances[0]
	b := h.browser()
	b.login(in, "alice@example.com")
	csrf := b.csrf(in)
	chat := map[string]any{"messages": []map[string]string{{"role": "user", "content": "hello there"}}}

	tests := []struct {
		name string
		do   func() *http.Response
	}{
		{"logout without a token", func() *http.Response {
			resp, _ := b.postForm(in.at("/logout"), url.Values{})
			return resp
		}},
		{"logout with a wrong token", func() *http.Response {
			resp, _ := b.postForm(in.at("/logout"), url.Values{"csrf": {csrf + "x"}})
			return resp
		}},
		{"invoke without a token", func() *http.Response {
			resp, _ := b.postJSON(in.at("/api/invoke"), "", chat)
			return resp
		}},
		{"invoke with a wrong token", func() *http.Response {
			resp, _ := b.postJSON(in.at("/api/invoke"), "not-the-token", chat)
			return resp
		}},
		{"summarize without a token", func() *http.Response {
			resp, _ := b.postForm(in.at("/summarize"), url.Values{"text": {"hello"}})
			return resp
		}},
		{"summarize before login without a token", func() *http.Response {
			resp, _ := h.browser().postForm(in.at("/summarize"), url.Values{"text": {"hello"}})
			return resp
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp := tt.do(); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403", resp.StatusCode)
			}
			if status, _ := b.me(in); status != http.StatusOK {
				t.Fatalf("the session did not survive: /api/me %d", status)
			}
		})
	}
	if resp, _ := h.browser().postJSON(in.at("/api/invoke"), csrf, chat); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("invoke with the token but without the session cookie: %d, want 401", resp.StatusCode)
	}
	if resp, body := b.postJSON(in.at("/api/invoke"), csrf, chat); resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke with the token: %d %s", resp.StatusCode, body)
	}
}

func TestInvocationRejectsBadBodies(t *testing.T) {
	h := newHarness(t, options{config: func(_ int, c *webapp.Config) { c.MaxRequestBytes = 4096 }})
	in := h.instances[0]
	b := h.browser()
	b.login(in, "alice@example.com")
	csrf := b.csrf(in)
	post := func(contentType, body string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, in.at("/api/invoke"), strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-CSRF-Token", csrf)
		return b.do(req)
	}
	tests := []struct {
		name, contentType, body string
		status                  int
		code                    string
	}{
		{"too large", "application/json", `{"messages":[{"role":"user","content":"` + strings.Repeat("a", 5000) + `"}]}`, http.StatusRequestEntityTooLarge, "REQUEST_TOO_LARGE"},
		{"not JSON", "text/plain", `hello`, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"},
		{"malformed JSON", "application/json", `{"messages":`, http.StatusBadRequest, "MALFORMED_REQUEST"},
		{"not an object", "application/json", `["hello"]`, http.StatusBadRequest, "MALFORMED_REQUEST"},
		{"rejected by the endpoint", "application/json", `{"messages":[]}`, http.StatusBadRequest, "INVALID_PARAMETER_VALUE"},
		{"completions body passed through", "application/json; charset=utf-8", `{"prompt":"hello"}`, http.StatusBadRequest, "INVALID_PARAMETER_VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(tt.contentType, tt.body)
			if resp.StatusCode != tt.status || !strings.Contains(body, `"error_code":"`+tt.code+`"`) {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
		})
	}
	_, page := b.get(in.at("/"))
	resp, _ := b.postForm(in.at("/summarize"), url.Values{"text": {strings.Repeat("a", 5000)}, "csrf": {csrfOf(t, page)}})
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized form: %d", resp.StatusCode)
	}
}

// TestUnverifiedEmailIsNotTrustedByTheDomainPolicy: an ID token that says
// email_verified false does not pass the allowed-domain policy, whatever
// its email; an absent claim (Databricks omits it) is trusted as before.
func TestUnverifiedEmailIsNotTrustedByTheDomainPolicy(t *testing.T) {
	const policy, noPolicy = 0, 1
	h := forgeryHarness(t, policy)
	tests := []struct {
		name     string
		instance int
		verified any // nil: the claim is absent
		denied   bool
	}{
		{"claim absent", policy, nil, false},
		{"verified", policy, true, false},
		{"not verified", policy, false, true},
		{`not verified, as the string "false"`, policy, "false", true},
		{"not verified, without a domain policy", noPolicy, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.hook.setForge(signedByTrusted(func(c map[string]any) {
				c["email"] = "alice@corp.example"
				if tt.verified != nil {
					c["email_verified"] = tt.verified
				}
			}))
			defer h.hook.setForge(nil)
			in := h.instances[tt.instance]
			b := h.browser()
			cb := b.authorize(in, in.at("/login"), "alice@example.com")
			resp, page := b.noFollow(cb.String())
			if !tt.denied {
				if resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("callback: %d, want a signed-in redirect\n%s", resp.StatusCode, page)
				}
				if status, me := b.me(in); status != http.StatusOK || me["email"] != "alice@corp.example" {
					t.Fatalf("/api/me: %d %v", status, me)
				}
				return
			}
			expectLoginFailed(t, h, b, in, resp, page, audit.ReasonPolicyDenied)
			if ev := eventFor(t, h.events(), audit.LoginFailed, resp.Header.Get("X-Request-Id")); ev.Event.StatusCode != "email_unverified" {
				t.Fatalf("status_code %q, want email_unverified", ev.Event.StatusCode)
			}
			if !strings.Contains(elementText(page, "error-message"), "not verified") {
				t.Fatalf("error page: %s", elementText(page, "error-message"))
			}
		})
	}
	checkSchemas(t, h.events())
}

// TestProviderErrorsKeepTheirCode: only error=access_denied is recorded as
// access_denied; other provider errors are failed sign-ins
// (exchange_failed) that keep the provider's code in status_code.
func TestProviderErrorsKeepTheirCode(t *testing.T) {
	h := newHarness(t, options{nats: true})
	in := h.instances[0]
	tests := []struct {
		providerError string
		reason        string
		code          string
		status        int
	}{
		{"access_denied", audit.ReasonAccessDenied, "access_denied", http.StatusForbidden},
		{"server_error", audit.ReasonExchangeFailed, "server_error", http.StatusBadGateway},
		{"temporarily_unavailable", audit.ReasonExchangeFailed, "temporarily_unavailable", http.StatusBadGateway},
		{"invalid_scope", audit.ReasonExchangeFailed, "invalid_scope", http.StatusBadGateway},
		{"login_required", audit.ReasonExchangeFailed, "login_required", http.StatusBadGateway},
		{"weird\"code\x01é", audit.ReasonExchangeFailed, "weird?code???", http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.providerError, func(t *testing.T) {
			b := h.browser()
			cb := b.authorize(in, in.at("/login"), "alice@example.com")
			cb.RawQuery = url.Values{"error": {tt.providerError}, "error_description": {"Something happened."}, "state": {cb.Query().Get("state")}}.Encode()
			resp, page := b.noFollow(cb.String())
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			expectLoginFailed(t, h, b, in, resp, page, tt.reason)
			ev := eventFor(t, h.events(), audit.LoginFailed, resp.Header.Get("X-Request-Id"))
			if ev.Event.StatusCode != tt.code || !strings.Contains(ev.Event.Message, "Something happened.") {
				t.Fatalf("status_code %q, message %q; want code %q", ev.Event.StatusCode, ev.Event.Message, tt.code)
			}
			if !strings.Contains(elementText(page, "error-message"), tt.code) || !strings.Contains(page, `id="error-login"`) {
				t.Fatalf("the error page does not name %q or offer a new sign-in:\n%s", tt.code, page)
			}
		})
	}
	checkSchemas(t, h.events())
}

// TestSignInReplacesTheSessionABrowserAlreadyHas: a browser that carries a
// session cookie when it signs in (its own signed-in session, a session an
// attacker signed in and planted, an id an attacker made up, or a value that
// is no id at all) comes out with a new session id; the record of the old
// one is deleted from the store, memory or KV, and the old cookie no longer
// authenticates anyone. Otherwise whoever knew the old value before the
// sign-in would hold the new session (session fixation).
func TestSignInReplacesTheSessionABrowserAlreadyHas(t *testing.T) {
	stores := []struct {
		name string
		nats bool // sessions in the KV bucket, else in memory
	}{
		{"memory store", false},
		{"KV store", true},
	}
	before := []struct {
		name string
		// cookie puts a session cookie into b before its sign-in and
		// returns the value.
		cookie func(t *testing.T, h *harness, in *instance, b *browser) string
		// stored: the value names a record in the store before the sign-in.
		stored bool
	}{
		{"its own signed-in session", func(t *testing.T, _ *harness, in *instance, b *browser) string {
			b.login(in, "alice@example.com")
			return b.sessionCookie(t, in).Value
		}, true},
		{"a session an attacker signed in and planted", func(t *testing.T, h *harness, in *instance, b *browser) string {
			attacker := h.browser()
			attacker.login(in, "bob@example.com")
			v := attacker.sessionCookie(t, in).Value
			b.plantSessionCookie(t, in, v)
			return v
		}, true},
		{"an unknown id an attacker chose", func(t *testing.T, _ *harness, in *instance, b *browser) string {
			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				t.Fatal(err)
			}
			v := base64.RawURLEncoding.EncodeToString(raw) // shaped like a real id
			b.plantSessionCookie(t, in, v)
			return v
		}, false},
		{"a value that is no session id", func(t *testing.T, _ *harness, in *instance, b *browser) string {
			const v = "attacker-chosen-session-value"
			b.plantSessionCookie(t, in, v)
			return v
		}, false},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			o := options{nats: st.nats}
			var store session.Store
			if !st.nats {
				mem := session.NewMemoryStore(nil)
				store, o.store = mem, mem
			}
			h := newHarness(t, o)
			in := h.instances[0]
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if st.nats {
				kv, err := session.OpenKVStore(ctx, h.js, session.KVConfig{Bucket: session.BucketName(testNamespace, testName), TTL: webapp.DefaultSessionTTL})
				if err != nil {
					t.Fatal(err)
				}
				store = kv
			}
			recorded := func(id string) bool {
				t.Helper()
				_, _, err := store.Get(ctx, session.Key(id))
				if err != nil && !errors.Is(err, session.ErrNotFound) {
					t.Fatal(err)
				}
				return err == nil
			}
			for _, tt := range before {
				t.Run(tt.name, func(t *testing.T) {
					b := h.browser()
					old := tt.cookie(t, h, in, b)
					if got := recorded(old); got != tt.stored {
						t.Fatalf("before the sign-in, a record for the old cookie: %v, want %v", got, tt.stored)
					}

					resp, page := b.login(in, "alice@example.com")
					if resp.StatusCode != http.StatusOK || elementText(page, "user-email") != "alice@example.com" {
						t.Fatalf("sign-in: %d\n%s", resp.StatusCode, page)
					}
					// One session cookie is left in the browser (so the old
					// one had the app's name and was replaced), and it is new.
					current := b.sessionCookie(t, in).Value
					if current == old {
						t.Fatal("the session id after the sign-in is the one from before it")
					}
					if !recorded(current) {
						t.Fatal("no record for the new session")
					}
					if recorded(old) {
						t.Fatal("the old session's record is still in the store")
					}
					stale := h.browser()
					stale.plantSessionCookie(t, in, old)
					if status, me := stale.me(in); status != http.StatusUnauthorized {
						t.Fatalf("the old cookie still authenticates: /api/me %d %v", status, me)
					}
					if status, me := b.me(in); status != http.StatusOK || me["email"] != "alice@example.com" {
						t.Fatalf("the new cookie: /api/me %d %v", status, me)
					}
				})
			}
		})
	}
}
