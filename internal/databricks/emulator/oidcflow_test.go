package emulator_test

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/servingapp/servingapp/internal/databricks/emulator"
)

var formAction = regexp.MustCompile(`<form id="login-form" method="post" action="([^"]+)">`)

// browserLogin opens authURL like a browser, presses the button of email on
// the login page, and returns the callback URL the emulator redirects to.
func browserLogin(t *testing.T, h *harness, authURL, email string) *url.URL {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, authURL, nil)
	resp, page := h.do(t, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize page: %d %s", resp.StatusCode, page)
	}
	button := `id="` + emulator.LoginButtonID(email) + `" name="user" value="` + email + `"`
	if !strings.Contains(page, button) {
		t.Fatalf("login page has no button %s:\n%s", button, page)
	}
	m := formAction.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("login page has no form:\n%s", page)
	}
	action, err := resp.Request.URL.Parse(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	post, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(url.Values{"user": {email}}.Encode()))
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body := h.do(t, post)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login submit: %d %s", resp.StatusCode, body)
	}
	callback, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return callback
}

func TestAuthorizationCodeFlowWithOAuth2AndGoOIDC(t *testing.T) {
	h := newHarness(t, emulator.Options{KeyGracePeriod: 10 * time.Minute})
	ctx := oidc.ClientContext(context.Background(), &http.Client{Timeout: 10 * time.Second})

	provider, err := oidc.NewProvider(ctx, h.srv.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	conf := &oauth2.Config{
		ClientID:     h.rotate.ClientID,
		ClientSecret: h.rotate.secret,
		Endpoint:     provider.Endpoint(),
		RedirectURL:  redirectURL,
		Scopes:       strings.Fields(allScopes),
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: conf.ClientID, Now: h.clock.Now})

	type login struct {
		token   *oauth2.Token
		rawID   string
		idToken *oidc.IDToken
	}
	doLogin := func(t *testing.T, email string) login {
		pkce := oauth2.GenerateVerifier()
		state, nonce := "st-"+email, "nonce-"+email
		callback := browserLogin(t, h, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce)), email)
		if got := callback.Scheme + "://" + callback.Host + callback.Path; got != redirectURL {
			t.Fatalf("redirected to %s", callback)
		}
		if callback.Query().Get("state") != state {
			t.Fatalf("state %q, want %q", callback.Query().Get("state"), state)
		}
		token, err := conf.Exchange(ctx, callback.Query().Get("code"), oauth2.VerifierOption(pkce))
		if err != nil {
			t.Fatal(err)
		}
		rawID, _ := token.Extra("id_token").(string)
		idToken, err := verifier.Verify(ctx, rawID)
		if err != nil {
			t.Fatalf("verify ID token: %v", err)
		}
		if idToken.Nonce != nonce {
			t.Fatalf("nonce %q, want %q", idToken.Nonce, nonce)
		}
		if err := idToken.VerifyAccessToken(token.AccessToken); err != nil {
			t.Fatalf("at_hash: %v", err)
		}
		return login{token: token, rawID: rawID, idToken: idToken}
	}

	alice := doLogin(t, "alice@example.com")
	var claims struct {
		Email             string `json:"email"`
		Name              string `json:"name"`
		GivenName         string `json:"given_name"`
		PreferredUsername string `json:"preferred_username"`
	}
	if err := alice.idToken.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, got, want string }{
		{"iss", alice.idToken.Issuer, h.srv.URL + "/oidc"},
		{"sub", alice.idToken.Subject, "alice@example.com"},
		{"email", claims.Email, "alice@example.com"},
		{"name", claims.Name, "Alice Example"},
		{"given_name", claims.GivenName, "Alice"},
		{"preferred_username", claims.PreferredUsername, "alice@example.com"},
	}
	for _, c := range want {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !slices.Equal(alice.idToken.Audience, []string{h.rotate.ClientID}) || alice.token.RefreshToken == "" {
		t.Fatalf("aud %v, refresh %q", alice.idToken.Audience, alice.token.RefreshToken)
	}

	// The access token works on the workspace and identifies Alice.
	status, me, _ := h.api(t, "GET", "/api/2.0/preview/scim/v2/Me", alice.token.AccessToken, "")
	if status != 200 || me["userName"] != "alice@example.com" {
		t.Fatalf("Me: %d %v", status, me)
	}

	// x/oauth2 refreshes an expired token with the rotating refresh token.
	h.clock.Advance(time.Minute)
	expired := *alice.token
	expired.Expiry = time.Now().Add(-time.Minute)
	refreshed, err := conf.TokenSource(ctx, &expired).Token()
	if err != nil {
		t.Fatal(err)
	}
	if refreshed.AccessToken == alice.token.AccessToken || refreshed.RefreshToken == alice.token.RefreshToken || refreshed.RefreshToken == "" {
		t.Fatal("refresh did not rotate the tokens")
	}
	if status, _, _ := h.api(t, "GET", "/api/2.0/preview/scim/v2/Me", refreshed.AccessToken, ""); status != 200 {
		t.Fatalf("refreshed token refused: %d", status)
	}

	// Key rotation: new ID tokens carry the new kid and still verify (go-oidc
	// refetches JWKS on an unknown kid); old ones verify during the grace period.
	oldKid := h.srv.SigningKeyIDs()[0]
	newKid, err := h.srv.RotateKeys()
	if err != nil {
		t.Fatal(err)
	}
	if got := h.srv.SigningKeyIDs(); !slices.Equal(got, []string{newKid, oldKid}) {
		t.Fatalf("JWKS kids %v, want [%s %s]", got, newKid, oldKid)
	}
	bob := doLogin(t, "bob@example.com")
	if kid := jwtKid(t, bob.rawID); kid != newKid {
		t.Fatalf("new ID token kid %s, want %s", kid, newKid)
	}
	freshVerifier := func() *oidc.IDTokenVerifier {
		p, err := oidc.NewProvider(ctx, h.srv.Issuer())
		if err != nil {
			t.Fatal(err)
		}
		return p.Verifier(&oidc.Config{ClientID: conf.ClientID, Now: h.clock.Now})
	}
	if _, err := freshVerifier().Verify(ctx, alice.rawID); err != nil {
		t.Fatalf("old ID token within the grace period: %v", err)
	}
	h.clock.Advance(11 * time.Minute)
	if got := h.srv.SigningKeyIDs(); !slices.Equal(got, []string{newKid}) {
		t.Fatalf("JWKS kids after grace %v, want [%s]", got, newKid)
	}
	if _, err := freshVerifier().Verify(ctx, alice.rawID); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("old ID token after the grace period: %v, want a signature failure", err)
	}
	if _, err := freshVerifier().Verify(ctx, bob.rawID); err != nil {
		t.Fatalf("new ID token after the grace period: %v", err)
	}
}

func jwtKid(t *testing.T, raw string) string {
	t.Helper()
	header, _, _ := strings.Cut(raw, ".")
	data, err := jsonB64(header)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(data, &h); err != nil || h.Alg != "RS256" {
		t.Fatalf("JWT header %s: %v", data, err)
	}
	return h.Kid
}

func TestDiscoveryDocumentsDescribeTheProvider(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	for _, path := range []string{"/oidc/.well-known/openid-configuration", "/oidc/.well-known/oauth-authorization-server"} {
		status, doc, _ := h.api(t, "GET", path, "", "")
		if status != 200 {
			t.Fatalf("%s: %d", path, status)
		}
		checks := map[string]string{
			"issuer":                 h.srv.URL + "/oidc",
			"authorization_endpoint": h.srv.URL + "/oidc/v1/authorize",
			"token_endpoint":         h.srv.URL + "/oidc/v1/token",
			"jwks_uri":               h.srv.URL + "/oidc/v1/keys",
		}
		for k, v := range checks {
			if doc[k] != v {
				t.Errorf("%s: %s = %v, want %s", path, k, doc[k], v)
			}
		}
		if methods, _ := doc["code_challenge_methods_supported"].([]any); len(methods) != 1 || methods[0] != "S256" {
			t.Errorf("%s: code_challenge_methods_supported = %v", path, doc["code_challenge_methods_supported"])
		}
	}
	status, jwks, _ := h.api(t, "GET", "/oidc/v1/keys", "", "")
	keys, _ := jwks["keys"].([]any)
	if status != 200 || len(keys) != 1 {
		t.Fatalf("JWKS: %d %v", status, jwks)
	}
	key := keys[0].(map[string]any)
	if key["kty"] != "RSA" || key["alg"] != "RS256" || key["use"] != "sig" || key["kid"] != h.srv.SigningKeyIDs()[0] {
		t.Fatalf("JWK %v", key)
	}
}
