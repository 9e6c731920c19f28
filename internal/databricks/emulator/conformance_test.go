package emulator_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/internal/databricks/emulator"
)

func TestAuthorizeEnforcement(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	tests := []struct {
		name  string
		app   app
		mods  map[string]string
		login string // when set, POST the login form as this user
		// Exactly one of the following outcomes.
		wantPageError     string // an HTML error page with this code, never a redirect
		wantRedirectError string // a redirect to the app with this OAuth error
		wantLoginPage     int    // the login page with this status
		wantCode          bool   // a redirect with a code
	}{
		{name: "unknown client", app: h.rotate, mods: map[string]string{"client_id": "not-a-client"}, wantPageError: "invalid_client"},
		{name: "missing client", app: h.rotate, mods: map[string]string{"client_id": ""}, wantPageError: "invalid_client"},
		{name: "missing redirect_uri", app: h.rotate, mods: map[string]string{"redirect_uri": ""}, wantPageError: "invalid_request"},
		{name: "redirect_uri with trailing slash", app: h.rotate, mods: map[string]string{"redirect_uri": redirectURL + "/"}, wantPageError: "invalid_request"},
		{name: "redirect_uri with other scheme", app: h.rotate, mods: map[string]string{"redirect_uri": strings.Replace(redirectURL, "https", "http", 1)}, wantPageError: "invalid_request"},
		{name: "redirect_uri with extra query", app: h.rotate, mods: map[string]string{"redirect_uri": redirectURL + "?x=1"}, wantPageError: "invalid_request"},
		{name: "redirect_uri with other case", app: h.rotate, mods: map[string]string{"redirect_uri": strings.ToUpper(redirectURL)}, wantPageError: "invalid_request"},
		{name: "redirect_uri of another host", app: h.rotate, mods: map[string]string{"redirect_uri": "https://evil.example.com/oauth/callback"}, wantPageError: "invalid_request"},
		{name: "redirect mismatch on login submit", app: h.rotate, mods: map[string]string{"redirect_uri": "https://evil.example.com/cb"}, login: "alice@example.com", wantPageError: "invalid_request"},
		{name: "implicit flow", app: h.rotate, mods: map[string]string{"response_type": "token"}, wantRedirectError: "unsupported_response_type"},
		{name: "no PKCE", app: h.rotate, mods: map[string]string{"code_challenge": "", "code_challenge_method": ""}, wantRedirectError: "invalid_request"},
		{name: "plain PKCE", app: h.rotate, mods: map[string]string{"code_challenge": verifier, "code_challenge_method": "plain"}, wantRedirectError: "invalid_request"},
		{name: "PKCE method missing", app: h.rotate, mods: map[string]string{"code_challenge_method": ""}, wantRedirectError: "invalid_request"},
		{name: "malformed challenge", app: h.rotate, mods: map[string]string{"code_challenge": "short"}, wantRedirectError: "invalid_request"},
		{name: "scope not registered", app: h.rotate, mods: map[string]string{"scope": "openid sql"}, wantRedirectError: "invalid_scope"},
		{name: "no scope", app: h.rotate, mods: map[string]string{"scope": ""}, wantRedirectError: "invalid_scope"},
		{name: "prompt none without a session", app: h.rotate, mods: map[string]string{"prompt": "none"}, wantRedirectError: "login_required"},
		{name: "valid request shows the login page", app: h.rotate, wantLoginPage: http.StatusOK},
		{name: "second registered redirect URL", app: h.public, mods: map[string]string{"redirect_uri": "http://localhost:8080/cb"}, wantLoginPage: http.StatusOK},
		{name: "unknown user on submit", app: h.rotate, login: "mallory@example.com", wantLoginPage: http.StatusBadRequest},
		{name: "known user on submit", app: h.rotate, login: "alice@example.com", wantCode: true},
		{name: "public client", app: h.public, login: "bob@example.com", wantCode: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := authorizeParams(tt.app, tt.mods)
			var resp *http.Response
			var body string
			if tt.login != "" {
				resp, body = h.submitLogin(t, q, tt.login)
			} else {
				req, _ := http.NewRequest(http.MethodGet, h.authorizeURL(q), nil)
				resp, body = h.do(t, req)
			}
			loc := resp.Header.Get("Location")
			switch {
			case tt.wantPageError != "":
				if resp.StatusCode != http.StatusBadRequest || loc != "" {
					t.Fatalf("status %d, Location %q; want a 400 page and no redirect", resp.StatusCode, loc)
				}
				if !strings.Contains(body, `<code id="oauth-error">`+tt.wantPageError+`</code>`) {
					t.Fatalf("error page lacks %s: %s", tt.wantPageError, body)
				}
			case tt.wantRedirectError != "":
				u, err := url.Parse(loc)
				if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc, redirectURL+"?") {
					t.Fatalf("status %d, Location %q; want a redirect to the app", resp.StatusCode, loc)
				}
				if got := u.Query().Get("error"); got != tt.wantRedirectError || u.Query().Get("state") != "state-123" || u.Query().Get("code") != "" {
					t.Fatalf("redirect %s; want error=%s with state and no code", loc, tt.wantRedirectError)
				}
			case tt.wantLoginPage != 0:
				if resp.StatusCode != tt.wantLoginPage || loc != "" {
					t.Fatalf("status %d, Location %q; want the login page with %d", resp.StatusCode, loc, tt.wantLoginPage)
				}
				for _, want := range []string{`id="login-alice"`, `id="login-bob"`, `name="user" value="alice@example.com"`, "Alice Example", "Bob Example", `method="post"`} {
					if !strings.Contains(body, want) {
						t.Fatalf("login page lacks %s:\n%s", want, body)
					}
				}
			case tt.wantCode:
				u, _ := url.Parse(loc)
				if resp.StatusCode != http.StatusFound || u.Query().Get("code") == "" || u.Query().Get("state") != "state-123" {
					t.Fatalf("status %d, Location %q; want a redirect with code and state", resp.StatusCode, loc)
				}
			}
		})
	}
}

func TestTokenEndpointEnforcement(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	other := func(t *testing.T) string { return h.login(t, h.steady, "alice@example.com", nil) }
	tests := []struct {
		name       string
		request    func(t *testing.T) (url.Values, []string)
		wantStatus int
		wantError  string
	}{
		{"valid exchange, secret in form", func(t *testing.T) (url.Values, []string) {
			return codeForm(h.rotate, h.login(t, h.rotate, "alice@example.com", nil)), nil
		}, 200, ""},
		{"valid exchange, secret in HTTP Basic", func(t *testing.T) (url.Values, []string) {
			f := codeForm(h.rotate, h.login(t, h.rotate, "alice@example.com", nil))
			f.Del("client_id")
			f.Del("client_secret")
			return f, []string{h.rotate.ClientID, h.rotate.secret}
		}, 200, ""},
		{"valid exchange, public client", func(t *testing.T) (url.Values, []string) {
			return codeForm(h.public, h.login(t, h.public, "alice@example.com", nil)), nil
		}, 200, ""},
		{"wrong PKCE verifier", func(t *testing.T) (url.Values, []string) {
			f := codeForm(h.rotate, h.login(t, h.rotate, "alice@example.com", nil))
			f.Set("code_verifier", strings.Repeat("x", 50))
			return f, nil
		}, 400, "invalid_grant"},
		{"missing PKCE verifier", func(t *testing.T) (url.Values, []string) {
			f := codeForm(h.rotate, h.login(t, h.rotate, "alice@example.com", nil))
			f.Del("code_verifier")
			return f, nil
		}, 400, "invalid_request"},
		{"code used twice", func(t *testing.T) (url.Values, []string) {
			f := codeForm(h.rotate, h.login(t, h.rotate, "alice@example.com", nil))
			if status, body := h.token(t, f, nil); status != 200 {
				t.Fatalf("first exchange: %d %v", status, body)
			}
			return f, nil
		}, 400, "invalid_grant"},
		{"code expired", func(t *testing.T) (url.Values, []string) {
			f := codeForm(h.rotate, h.login(t, h.rotate, "alice@example.com", nil))
			h.clock.Advance(emulator.DefaultCodeTTL + time.Second)
			return f, nil
		}, 400, "invalid_grant"},
		{"code of another client", func(t *testing.T) (url.Values, []string) {
			return codeForm(h.rotate, other(t)), nil
		}, 400, "invalid_grant"},
		{"unknown code", func(t *testing.T) (url.Values, []string) {
			return codeForm(h.rotate, "made-up-code"), nil
		}, 400, "invalid_grant"},
		{"redirect_uri differs from the authorization request", func(t *testing.T) (url.Values, []string) {
			f := codeForm(h.rotate, h.login(t, h.rotate, "alice@example.com", nil))
			f.Set("redirect_uri", "http://localhost:8080/cb")
			return f, nil
		}, 400, "invalid_grant"},
		{"wrong client secret", func(t *testing.T) (url.Values, []string) {
			f := codeForm(h.rotate, h.login(t, h.rotate, "alice@example.com", nil))
			f.Set("client_secret", "wrong")
			return f, nil
		}, 401, "invalid_client"},
		{"confidential client without secret", func(t *testing.T) (url.Values, []string) {
			f := codeForm(h.rotate, h.login(t, h.rotate, "alice@example.com", nil))
			f.Del("client_secret")
			return f, nil
		}, 401, "invalid_client"},
		{"unknown client", func(t *testing.T) (url.Values, []string) {
			f := codeForm(h.rotate, "whatever")
			f.Set("client_id", "not-a-client")
			return f, nil
		}, 401, "invalid_client"},
		{"no client authentication", func(t *testing.T) (url.Values, []string) {
			return url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, nil
		}, 401, "invalid_client"},
		{"two client authentication methods", func(t *testing.T) (url.Values, []string) {
			return codeForm(h.rotate, "x"), []string{h.rotate.ClientID, h.rotate.secret}
		}, 400, "invalid_request"},
		{"missing grant_type", func(t *testing.T) (url.Values, []string) {
			return url.Values{"client_id": {h.public.ClientID}}, nil
		}, 400, "invalid_request"},
		{"unsupported grant_type", func(t *testing.T) (url.Values, []string) {
			return url.Values{"grant_type": {"password"}, "client_id": {h.public.ClientID}}, nil
		}, 400, "unsupported_grant_type"},
		{"unknown refresh token", func(t *testing.T) (url.Values, []string) {
			return refreshForm(h.rotate, "made-up"), nil
		}, 400, "invalid_grant"},
		{"refresh token of another client", func(t *testing.T) (url.Values, []string) {
			rt := str(h.tokens(t, h.steady, "alice@example.com", nil)["refresh_token"])
			return refreshForm(h.rotate, rt), nil
		}, 400, "invalid_grant"},
		{"refresh asking for a scope not granted", func(t *testing.T) (url.Values, []string) {
			rt := str(h.tokens(t, h.steady, "alice@example.com", map[string]string{"scope": "openid offline_access"})["refresh_token"])
			f := refreshForm(h.steady, rt)
			f.Set("scope", "openid all-apis")
			return f, nil
		}, 400, "invalid_scope"},
		{"refresh token expired", func(t *testing.T) (url.Values, []string) {
			rt := str(h.tokens(t, h.steady, "alice@example.com", nil)["refresh_token"])
			h.clock.Advance(emulator.DefaultRefreshTokenTTL + time.Second)
			return refreshForm(h.steady, rt), nil
		}, 400, "invalid_grant"},
		{"client_credentials for a service principal", func(t *testing.T) (url.Values, []string) {
			return url.Values{"grant_type": {"client_credentials"}, "scope": {"all-apis"}}, []string{emulator.DefaultAdminClientID, emulator.DefaultAdminSecret}
		}, 200, ""},
		{"client_credentials with a wrong secret", func(t *testing.T) (url.Values, []string) {
			return url.Values{"grant_type": {"client_credentials"}}, []string{emulator.DefaultAdminClientID, "nope"}
		}, 401, "invalid_client"},
		{"client_credentials for an app integration", func(t *testing.T) (url.Values, []string) {
			return url.Values{"grant_type": {"client_credentials"}}, []string{h.rotate.ClientID, h.rotate.secret}
		}, 400, "unauthorized_client"},
		{"client_credentials asking for an ID token", func(t *testing.T) (url.Values, []string) {
			return url.Values{"grant_type": {"client_credentials"}, "scope": {"openid all-apis"}}, []string{emulator.DefaultAdminClientID, emulator.DefaultAdminSecret}
		}, 400, "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form, basic := tt.request(t)
			status, body := h.token(t, form, basic)
			if status != tt.wantStatus || str(body["error"]) != tt.wantError {
				t.Fatalf("got %d %v, want %d %q", status, body, tt.wantStatus, tt.wantError)
			}
			if tt.wantError != "" && str(body["error_description"]) == "" {
				t.Fatalf("error without description: %v", body)
			}
			if tt.wantError == "" && (str(body["access_token"]) == "" || str(body["token_type"]) != "Bearer" || body["expires_in"] == nil) {
				t.Fatalf("incomplete token response %v", body)
			}
		})
	}
}

func TestTokenResponsesCarryWhatTheScopesAsk(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	tests := []struct {
		scope                    string
		wantRefresh, wantIDToken bool
	}{
		{"openid email profile offline_access all-apis", true, true},
		{"openid all-apis", false, true},
		{"offline_access all-apis", true, false},
		{"all-apis", false, false},
	}
	for _, tt := range tests {
		body := h.tokens(t, h.steady, "alice@example.com", map[string]string{"scope": tt.scope})
		if (body["refresh_token"] != nil) != tt.wantRefresh || (body["id_token"] != nil) != tt.wantIDToken || str(body["scope"]) != tt.scope {
			t.Errorf("scope %q: response %v", tt.scope, body)
		}
		if got := body["expires_in"].(float64); got != 3600 {
			t.Errorf("scope %q: expires_in %v, want 3600", tt.scope, got)
		}
	}
}

func TestRefreshTokenRotationRevokesTheFamilyOnReuse(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	first := h.tokens(t, h.rotate, "alice@example.com", nil)
	rt1 := str(first["refresh_token"])

	steps := []struct {
		name       string
		refresh    func() string
		wantStatus int
		wantError  string
		save       *string
	}{
		{name: "first refresh rotates", refresh: func() string { return rt1 }, wantStatus: 200},
		{name: "reusing the rotated token is refused", refresh: func() string { return rt1 }, wantStatus: 400, wantError: "invalid_grant"},
		{name: "the newest token of the family died too", refresh: nil, wantStatus: 400, wantError: "invalid_grant"},
	}
	var rt2, access2 string
	for i, step := range steps {
		token := rt2
		if step.refresh != nil {
			token = step.refresh()
		}
		status, body := h.token(t, refreshForm(h.rotate, token), nil)
		if status != step.wantStatus || str(body["error"]) != step.wantError {
			t.Fatalf("%s: got %d %v", step.name, status, body)
		}
		if i == 0 {
			rt2, access2 = str(body["refresh_token"]), str(body["access_token"])
			if rt2 == "" || rt2 == rt1 {
				t.Fatalf("%s: no new refresh token: %v", step.name, body)
			}
			if status, _, _ := h.api(t, "GET", "/api/2.0/preview/scim/v2/Me", access2, ""); status != 200 {
				t.Fatalf("refreshed access token refused: %d", status)
			}
		}
	}
	for name, token := range map[string]string{"original": str(first["access_token"]), "refreshed": access2} {
		if status, body, _ := h.api(t, "GET", "/api/2.0/preview/scim/v2/Me", token, ""); status != 401 {
			t.Fatalf("%s access token after family revocation: %d %v", name, status, body)
		}
	}
}

func TestNarrowedRefreshKeepsTheSessionScopes(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	rt := str(h.tokens(t, h.rotate, "alice@example.com", nil)["refresh_token"])
	steps := []struct {
		scope, wantScope string
	}{
		{"openid", "openid"},
		{"", allScopes},
		{"all-apis offline_access", "all-apis offline_access"},
	}
	for _, step := range steps {
		f := refreshForm(h.rotate, rt)
		if step.scope != "" {
			f.Set("scope", step.scope)
		}
		status, body := h.token(t, f, nil)
		if status != 200 || str(body["scope"]) != step.wantScope || str(body["refresh_token"]) == "" {
			t.Fatalf("refresh with scope %q: %d %v", step.scope, status, body)
		}
		rt = str(body["refresh_token"])
	}
}

func TestRefreshWithoutRotationKeepsTheTokenUsable(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	rt := str(h.tokens(t, h.steady, "alice@example.com", nil)["refresh_token"])
	for i := range 3 {
		status, body := h.token(t, refreshForm(h.steady, rt), nil)
		if status != 200 || body["refresh_token"] != nil || body["id_token"] == nil {
			t.Fatalf("refresh %d: %d %v", i, status, body)
		}
	}
}

func TestCodeReuseRevokesTheTokensOfTheFirstExchange(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	code := h.login(t, h.steady, "alice@example.com", nil)
	status, first := h.token(t, codeForm(h.steady, code), nil)
	if status != 200 {
		t.Fatal(first)
	}
	if status, body := h.token(t, codeForm(h.steady, code), nil); status != 400 || str(body["error"]) != "invalid_grant" {
		t.Fatalf("second exchange: %d %v", status, body)
	}
	if status, _, _ := h.api(t, "GET", "/api/2.0/preview/scim/v2/Me", str(first["access_token"]), ""); status != 401 {
		t.Fatalf("access token of a replayed code still works: %d", status)
	}
	if status, body := h.token(t, refreshForm(h.steady, str(first["refresh_token"])), nil); status != 400 || str(body["error"]) != "invalid_grant" {
		t.Fatalf("refresh token of a replayed code still works: %d %v", status, body)
	}
}

func TestTokenLifetimesFollowThePolicyAndTheClock(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	short, secret, err := h.srv.RegisterIntegration(emulator.Integration{
		Name: "short", Confidential: true, RedirectURLs: []string{redirectURL}, Scopes: strings.Fields(allScopes),
		TokenAccessPolicy: emulator.TokenAccessPolicy{AccessTokenTTLInMinutes: 5, RefreshTokenTTLInMinutes: 60, AbsoluteSessionLifetimeInMinutes: 90},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := app{Integration: short, secret: secret}
	body := h.tokens(t, a, "alice@example.com", nil)
	if body["expires_in"].(float64) != 300 {
		t.Fatalf("expires_in %v, want 300", body["expires_in"])
	}
	access, rt := str(body["access_token"]), str(body["refresh_token"])
	steps := []struct {
		advance     time.Duration
		wantAPI     int
		wantRefresh string // "" for success
	}{
		{4 * time.Minute, 200, ""},
		{2 * time.Minute, 401, ""},               // access token expired at 5 min; refresh still fine
		{55 * time.Minute, 401, "invalid_grant"}, // refresh token expired at 60 min
	}
	for i, step := range steps {
		h.clock.Advance(step.advance)
		if status, _, _ := h.api(t, "GET", "/api/2.0/preview/scim/v2/Me", access, ""); status != step.wantAPI {
			t.Fatalf("step %d: API status %d, want %d", i, status, step.wantAPI)
		}
		status, out := h.token(t, refreshForm(a, rt), nil)
		if str(out["error"]) != step.wantRefresh {
			t.Fatalf("step %d: refresh %d %v", i, status, out)
		}
	}
}

func TestAPIScopesAndAudiencesAreEnforced(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	in, secret, err := h.srv.RegisterIntegration(emulator.Integration{
		Name: "serving app", Confidential: true, RedirectURLs: []string{redirectURL},
		Scopes: append(strings.Fields(allScopes), emulator.ScopeServing),
	})
	if err != nil {
		t.Fatal(err)
	}
	servingApp := app{Integration: in, secret: secret}
	userToken := func(scope string) string {
		return str(h.tokens(t, servingApp, "alice@example.com", map[string]string{"scope": scope})["access_token"])
	}
	if err := h.srv.AddServicePrincipal(emulator.ServicePrincipal{ClientID: "worker", Secret: "worker-secret"}); err != nil {
		t.Fatal(err)
	}
	_, wsSP := h.token(t, url.Values{"grant_type": {"client_credentials"}}, []string{"worker", "worker-secret"})
	invoke := `{"messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name, method, path, token, body string
		wantStatus                      int
		wantCode                        any
	}{
		{"serving with all-apis", "POST", "/serving-endpoints/echo/invocations", userToken("openid all-apis"), invoke, 200, nil},
		{"serving with the serving scope", "POST", "/serving-endpoints/echo/invocations", userToken("openid " + emulator.ScopeServing), invoke, 200, nil},
		{"serving with OIDC scopes only", "POST", "/serving-endpoints/echo/invocations", userToken("openid email profile"), invoke, 403, "PERMISSION_DENIED"},
		{"endpoint state with OIDC scopes only", "GET", "/api/2.0/serving-endpoints/echo", userToken("openid profile"), "", 403, "PERMISSION_DENIED"},
		{"SCIM Me with the serving scope", "GET", "/api/2.0/preview/scim/v2/Me", userToken(emulator.ScopeServing), "", 200, nil},
		{"SCIM Me with OIDC scopes only", "GET", "/api/2.0/preview/scim/v2/Me", userToken("openid email"), "", 403, "PERMISSION_DENIED"},
		{"no credentials", "GET", "/api/2.0/preview/scim/v2/Me", "", "", 401, float64(401)},
		{"garbage token", "GET", "/api/2.0/preview/scim/v2/Me", "garbage", "", 401, float64(401)},
		{"workspace M2M token on serving", "POST", "/serving-endpoints/echo/invocations", str(wsSP["access_token"]), invoke, 200, nil},
		{"workspace token on the account API", "GET", h.integrationsPath(), str(wsSP["access_token"]), "", 401, float64(401)},
		{"user token on the account API", "GET", h.integrationsPath(), userToken("all-apis"), "", 401, float64(401)},
		{"account token on the workspace", "GET", "/api/2.0/preview/scim/v2/Me", h.accountToken(t, emulator.DefaultAdminClientID, emulator.DefaultAdminSecret), "", 401, float64(401)},
		{"account token of a non-admin", "GET", h.integrationsPath(), h.accountToken(t, "worker", "worker-secret"), "", 403, "PERMISSION_DENIED"},
		{"account token for another account", "GET", "/api/2.0/accounts/other-account/oauth2/custom-app-integrations", h.accountToken(t, emulator.DefaultAdminClientID, emulator.DefaultAdminSecret), "", 403, "PERMISSION_DENIED"},
		{"account admin", "GET", h.integrationsPath(), h.accountToken(t, emulator.DefaultAdminClientID, emulator.DefaultAdminSecret), "", 200, nil},
		{"unknown API", "GET", "/api/2.0/clusters/list", userToken("all-apis"), "", 404, "ENDPOINT_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := h.api(t, tt.method, tt.path, tt.token, tt.body)
			if status != tt.wantStatus || (tt.wantCode != nil && body["error_code"] != tt.wantCode) {
				t.Fatalf("got %d %v, want %d %v", status, body, tt.wantStatus, tt.wantCode)
			}
			if tt.wantCode != nil && str(body["message"]) == "" {
				t.Fatalf("error without message: %v", body)
			}
		})
	}
}

func TestAccountTokenEndpointOnlyServesItsAccount(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	creds := []string{emulator.DefaultAdminClientID, emulator.DefaultAdminSecret}
	tests := []struct {
		name       string
		path       string
		form       url.Values
		wantStatus int
		wantError  string
	}{
		{"client credentials", "/oidc/accounts/" + h.srv.AccountID() + "/v1/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"all-apis"}}, 200, ""},
		{"other grants", "/oidc/accounts/" + h.srv.AccountID() + "/v1/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, 400, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		status, body := h.tokenRequest(t, tt.path, tt.form, creds)
		if status != tt.wantStatus || str(body["error"]) != tt.wantError {
			t.Errorf("%s: %d %v", tt.name, status, body)
		}
	}
	status, body := h.tokenRequest(t, "/oidc/accounts/not-ours/v1/token", url.Values{"grant_type": {"client_credentials"}}, creds)
	if status != http.StatusNotFound || body["error_code"] != "RESOURCE_DOES_NOT_EXIST" {
		t.Errorf("unknown account: %d %v", status, body)
	}
}

func TestIntegrationChangesReachLoginAfterThePropagationDelay(t *testing.T) {
	const delay = 10 * time.Minute
	h := newHarness(t, emulator.Options{PropagationDelay: delay})
	admin := h.accountToken(t, emulator.DefaultAdminClientID, emulator.DefaultAdminSecret)
	status, created, _ := h.api(t, "POST", h.integrationsPath(), admin,
		`{"name":"late","confidential":false,"redirect_urls":["`+redirectURL+`"],"scopes":["openid","all-apis"]}`)
	if status != 200 {
		t.Fatalf("create: %d %v", status, created)
	}
	late := app{Integration: emulator.Integration{ClientID: str(created["client_id"])}}
	id := str(created["integration_id"])
	pageError := func(q url.Values) string {
		req, _ := http.NewRequest(http.MethodGet, h.authorizeURL(q), nil)
		resp, body := h.do(t, req)
		if resp.StatusCode == http.StatusOK {
			return ""
		}
		if i := strings.Index(body, `<code id="oauth-error">`); i >= 0 {
			return strings.SplitN(body[i+len(`<code id="oauth-error">`):], "<", 2)[0]
		}
		return resp.Status
	}
	scoped := func(mods map[string]string) url.Values {
		if mods == nil {
			mods = map[string]string{}
		}
		mods["scope"] = "openid all-apis"
		return authorizeParams(late, mods)
	}
	const newURL = "https://moved.example.com/oauth/callback"
	steps := []struct {
		name    string
		act     func()
		advance time.Duration
		old     string // page error for the original redirect URL ("" = login page)
		moved   string // page error for newURL
	}{
		{"right after create the client is unknown", nil, 0, "invalid_client", "invalid_client"},
		{"after the delay it works", nil, delay, "", "invalid_request"},
		{"a redirect URL change is not seen yet", func() {
			if status, body, _ := h.api(t, "PATCH", h.integrationsPath()+"/"+id, admin, `{"redirect_urls":["`+newURL+`"]}`); status != 200 {
				t.Fatalf("patch: %d %v", status, body)
			}
		}, time.Minute, "", "invalid_request"},
		{"then it is", nil, delay, "invalid_request", ""},
		{"a delete is not seen yet", func() {
			if status, body, _ := h.api(t, "DELETE", h.integrationsPath()+"/"+id, admin, ""); status != 200 {
				t.Fatalf("delete: %d %v", status, body)
			}
		}, time.Minute, "invalid_request", ""},
		{"then the client is gone", nil, delay, "invalid_client", "invalid_client"},
	}
	for _, step := range steps {
		if step.act != nil {
			step.act()
		}
		h.clock.Advance(step.advance)
		if got := pageError(scoped(nil)); got != step.old {
			t.Fatalf("%s: original redirect URL: %q, want %q", step.name, got, step.old)
		}
		if got := pageError(scoped(map[string]string{"redirect_uri": newURL})); got != step.moved {
			t.Fatalf("%s: moved redirect URL: %q, want %q", step.name, got, step.moved)
		}
	}
}
