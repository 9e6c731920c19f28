package emulator_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servingapp/servingapp/internal/databricks/emulator"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const (
	redirectURL = "https://app.example.com/oauth/callback"
	verifier    = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-emulator-test"
	allScopes   = "openid email profile offline_access all-apis"
)

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// harness is an emulator with a confidential app that rotates refresh
// tokens, a confidential app that does not, and a public app.
type harness struct {
	srv    *emulator.Server
	clock  *clock
	http   *http.Client // does not follow redirects
	rotate app
	steady app
	public app
}

type app struct {
	emulator.Integration
	secret string
}

func newHarness(t *testing.T, opts emulator.Options) *harness {
	t.Helper()
	c := newClock()
	if opts.Now == nil {
		opts.Now = c.Now
	}
	srv, err := emulator.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	h := &harness{
		srv:   srv,
		clock: c,
		http: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
	register := func(name string, confidential, rotate bool) app {
		in, secret, err := srv.RegisterIntegration(emulator.Integration{
			Name:              name,
			Confidential:      confidential,
			RedirectURLs:      []string{redirectURL, "http://localhost:8080/cb"},
			Scopes:            strings.Fields(allScopes),
			TokenAccessPolicy: emulator.TokenAccessPolicy{EnableSingleUseRefreshTokens: rotate},
		})
		if err != nil {
			t.Fatal(err)
		}
		return app{Integration: in, secret: secret}
	}
	h.rotate = register("rotating app", true, true)
	h.steady = register("steady app", true, false)
	h.public = register("public app", false, false)
	return h
}

// authorizeParams returns a valid authorization request for a; mods replace
// parameters, and an empty value removes one.
func authorizeParams(a app, mods map[string]string) url.Values {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {a.ClientID},
		"redirect_uri":          {redirectURL},
		"scope":                 {allScopes},
		"state":                 {"state-123"},
		"nonce":                 {"nonce-456"},
		"code_challenge":        {challenge(verifier)},
		"code_challenge_method": {"S256"},
	}
	for k, v := range mods {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return q
}

func (h *harness) authorizeURL(q url.Values) string {
	return h.srv.URL + "/oidc/v1/authorize?" + q.Encode()
}

func (h *harness) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// submitLogin posts the login form for email, as the login page's button does.
func (h *harness) submitLogin(t *testing.T, q url.Values, email string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.authorizeURL(q), strings.NewReader(url.Values{"user": {email}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return h.do(t, req)
}

// login runs the authorization request and returns the code.
func (h *harness) login(t *testing.T, a app, email string, mods map[string]string) string {
	t.Helper()
	resp, body := h.submitLogin(t, authorizeParams(a, mods), email)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login: status %d: %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("login redirected to %s without a code", loc)
	}
	return code
}

// tokenRequest posts a form to a token endpoint path; basic, when non-nil,
// holds HTTP Basic client credentials.
func (h *harness) tokenRequest(t *testing.T, path string, form url.Values, basic []string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != nil {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, body := h.do(t, req)
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("token answer %d is not JSON: %s", resp.StatusCode, body)
	}
	return resp.StatusCode, out
}

func (h *harness) token(t *testing.T, form url.Values, basic []string) (int, map[string]any) {
	t.Helper()
	return h.tokenRequest(t, "/oidc/v1/token", form, basic)
}

// codeForm is a code exchange for a, authenticated in the form body.
func codeForm(a app, code string) url.Values {
	f := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURL},
		"code_verifier": {verifier},
		"client_id":     {a.ClientID},
	}
	if a.secret != "" {
		f.Set("client_secret", a.secret)
	}
	return f
}

func refreshForm(a app, refresh string) url.Values {
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {a.ClientID}}
	if a.secret != "" {
		f.Set("client_secret", a.secret)
	}
	return f
}

// tokens logs email in to a and exchanges the code.
func (h *harness) tokens(t *testing.T, a app, email string, mods map[string]string) map[string]any {
	t.Helper()
	code := h.login(t, a, email, mods)
	status, body := h.token(t, codeForm(a, code), nil)
	if status != http.StatusOK {
		t.Fatalf("code exchange: %d %v", status, body)
	}
	return body
}

// api calls an API with a bearer token and returns the status and JSON body.
func (h *harness) api(t *testing.T, method, path, token, body string) (int, map[string]any, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, text := h.do(t, req)
	var out map[string]any
	_ = json.Unmarshal([]byte(text), &out)
	return resp.StatusCode, out, resp.Header
}

// accountToken gets an account-level M2M token.
func (h *harness) accountToken(t *testing.T, clientID, secret string) string {
	t.Helper()
	status, body := h.tokenRequest(t, "/oidc/accounts/"+h.srv.AccountID()+"/v1/token",
		url.Values{"grant_type": {"client_credentials"}, "scope": {"all-apis"}}, []string{clientID, secret})
	if status != http.StatusOK {
		t.Fatalf("account token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

func (h *harness) integrationsPath() string {
	return "/api/2.0/accounts/" + h.srv.AccountID() + "/oauth2/custom-app-integrations"
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func jsonB64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
