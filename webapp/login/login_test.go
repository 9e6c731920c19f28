package login_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/internal/databricks/emulator"
	"github.com/servingapp/servingapp/webapp/login"
)

const redirect = "https://app.example.com/oauth/callback"

func setup(t *testing.T, confidential, rotate bool) (*emulator.Server, *login.Provider) {
	t.Helper()
	emu, err := emulator.Start(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	scopes := []string{"openid", "email", "profile", "offline_access", "all-apis"}
	in, secret, err := emu.RegisterIntegration(emulator.Integration{
		Name: "login test", Confidential: confidential, RedirectURLs: []string{redirect}, Scopes: scopes,
		TokenAccessPolicy: emulator.TokenAccessPolicy{EnableSingleUseRefreshTokens: rotate},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := login.Discover(ctx, login.Config{Issuer: emu.Issuer(), ClientID: in.ClientID, ClientSecret: secret, RedirectURL: redirect, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return emu, p
}

// signIn presses alice's button for an authorization request and returns the code.
func signIn(t *testing.T, p *login.Provider, r login.Request) string {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(p.AuthCodeURL(r), url.Values{"user": {"alice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != r.State || loc.Query().Get("code") == "" {
		t.Fatalf("authorize answered %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

func TestExchangeAndRefresh(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		confidential, rotate bool
	}{
		{"confidential client, rotating refresh tokens", true, true},
		{"confidential client, steady refresh tokens", true, false},
		{"public client", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, p := setup(t, tt.confidential, tt.rotate)
			ctx := context.Background()
			r, err := login.NewRequest(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(p.AuthCodeURL(r), "code_challenge_method=S256") || strings.Contains(p.AuthCodeURL(r), r.Verifier) {
				t.Fatal("the authorization URL must carry the S256 challenge, never the verifier")
			}
			tokens, ident, err := p.Exchange(ctx, signIn(t, p, r), r)
			if err != nil {
				t.Fatal(err)
			}
			if ident.Email != "alice@example.com" || ident.Subject == "" || tokens.AccessToken == "" || tokens.RefreshToken == "" || !tokens.Expiry.After(time.Now()) {
				t.Fatalf("exchange: %+v %+v", ident, tokens)
			}
			fresh, err := p.Refresh(ctx, tokens.RefreshToken, ident.Subject)
			if err != nil {
				t.Fatal(err)
			}
			if fresh.AccessToken == tokens.AccessToken || (fresh.RefreshToken != tokens.RefreshToken) != tt.rotate {
				t.Fatalf("refresh (rotate=%v): refresh token changed=%v", tt.rotate, fresh.RefreshToken != tokens.RefreshToken)
			}
			if tt.rotate {
				if _, err := p.Refresh(ctx, tokens.RefreshToken, ident.Subject); !errors.Is(err, login.ErrRefreshRejected) {
					t.Fatalf("reusing a rotated refresh token: %v, want ErrRefreshRejected", err)
				}
			}
			if _, err := p.Refresh(ctx, "not-a-refresh-token", ident.Subject); !errors.Is(err, login.ErrRefreshRejected) || strings.Contains(err.Error(), "not-a-refresh-token") {
				t.Fatalf("unknown refresh token: %v", err)
			}
		})
	}
}

func TestExchangeFailuresNameTheReasonWithoutSecrets(t *testing.T) {
	_, p := setup(t, true, false)
	ctx := context.Background()
	r, _ := login.NewRequest(nil)
	code := signIn(t, p, r)
	other, _ := login.NewRequest(nil)
	_, _, err := p.Exchange(ctx, code, other) // wrong PKCE verifier
	var le *login.Error
	if !errors.As(err, &le) || le.Reason != "exchange_failed" || le.Code != "invalid_grant" || strings.Contains(err.Error(), code) {
		t.Fatalf("wrong verifier: %v", err)
	}
}

func TestDiscoverRefusesAnotherIssuer(t *testing.T) {
	emu, err := emulator.Start(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = emu.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := login.Discover(ctx, login.Config{Issuer: emu.URL + "/not-oidc", ClientID: "x"}); err == nil {
		t.Fatal("discovery of a wrong issuer succeeded")
	}
}

// discover prepares a client of p; an empty secret makes it public.
func discover(t *testing.T, p *idp, secret string) (*login.Provider, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return login.Discover(ctx, login.Config{Issuer: p.issuer, ClientID: p.clientID, ClientSecret: secret, RedirectURL: redirect, Scopes: []string{"openid", "email"}})
}

// exchange signs in at p with a code that p turns into the right nonce.
func exchange(t *testing.T, prov *login.Provider) (login.Tokens, login.Identity, error) {
	t.Helper()
	r, err := login.NewRequest(nil)
	if err != nil {
		t.Fatal(err)
	}
	return prov.Exchange(context.Background(), r.Nonce, r)
}

func TestTokenEndpointAuthenticationFollowsDiscovery(t *testing.T) {
	tests := []struct {
		name    string
		methods []string // nil: the field is absent
		secret  string
		want    string // what the token endpoint saw: basic, post or none
	}{
		{"field absent means client_secret_basic", nil, "s3cret", "basic"},
		{"only client_secret_basic", []string{"client_secret_basic"}, "s3cret", "basic"},
		{"only client_secret_post", []string{"client_secret_post"}, "s3cret", "post"},
		{"both: form body, as Databricks documents", []string{"client_secret_basic", "client_secret_post"}, "s3cret", "post"},
		{"basic among others", []string{"private_key_jwt", "client_secret_basic", "none"}, "s3cret", "basic"},
		{"public client: client_id in the form", []string{"client_secret_basic"}, "", "none"},
		{"public client, field absent", nil, "", "none"},
		{"secret with characters Basic must encode", nil, "a:b/c+d%e", "basic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newIDP(t, "/", "client-1", tt.secret)
			p.authMethods = tt.methods
			prov, err := discover(t, p, tt.secret)
			if err != nil {
				t.Fatal(err)
			}
			tokens, _, err := exchange(t, prov)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := prov.Refresh(context.Background(), tokens.RefreshToken, "user-1"); err != nil {
				t.Fatal(err)
			}
			if got := p.authSeen(); len(got) != 2 || got[0] != tt.want || got[1] != tt.want {
				t.Fatalf("the token endpoint saw %v (exchange, refresh), want %s both times", got, tt.want)
			}
		})
	}
}

func TestDiscoverRefusesAProviderWithoutAUsableSecretMethod(t *testing.T) {
	p := newIDP(t, "/", "client-1", "s3cret")
	p.authMethods = []string{"private_key_jwt", "tls_client_auth"}
	_, err := discover(t, p, "s3cret")
	if err == nil || !strings.Contains(err.Error(), "private_key_jwt") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("discover: %v", err)
	}
}

func TestIssuerIsComparedExactly(t *testing.T) {
	for _, path := range []string{"/", "/tenant/", "/tenant"} {
		t.Run(path, func(t *testing.T) {
			p := newIDP(t, path, "client-1", "s3cret")
			prov, err := discover(t, p, "s3cret")
			if err != nil {
				t.Fatalf("discover %s: %v", p.issuer, err)
			}
			if _, ident, err := exchange(t, prov); err != nil || ident.Subject != "user-1" {
				t.Fatalf("sign in at %s: %+v %v", p.issuer, ident, err)
			}
			// The same provider named without (or with) its trailing slash is
			// another issuer.
			other := strings.TrimSuffix(p.issuer, "/")
			if other == p.issuer {
				other += "/"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := login.Discover(ctx, login.Config{Issuer: other, ClientID: "client-1"}); err == nil {
				t.Fatalf("discovery as %s of a provider whose issuer is %s succeeded", other, p.issuer)
			}
		})
	}
}

func TestEmailVerifiedClaim(t *testing.T) {
	tests := []struct {
		name       string
		claim      any // nil: absent
		unverified bool
	}{
		{"absent (Databricks)", nil, false},
		{"true", true, false},
		{"false", false, true},
		{`string "true"`, "true", false},
		{`string "false"`, "false", true},
		{"a number", 0, true},
	}
	p := newIDP(t, "/", "client-1", "s3cret")
	prov, err := discover(t, p, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.set(func(p *idp) {
				p.claims = func(c map[string]any) {
					if tt.claim != nil {
						c["email_verified"] = tt.claim
					}
				}
			})
			_, ident, err := exchange(t, prov)
			if err != nil {
				t.Fatal(err)
			}
			if ident.Email != "carol@corp.example" || ident.EmailUnverified != tt.unverified {
				t.Fatalf("identity %+v, want EmailUnverified=%v", ident, tt.unverified)
			}
		})
	}
}

func TestRefreshTellsUnreachableKeysFromABadToken(t *testing.T) {
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		failures  []string        // how the JWKS fails, once each
		signer    *rsa.PrivateKey // nil: the published key
		subject   string
		transient bool
		rejected  bool
	}{
		{"keys fetched", nil, nil, "user-1", false, false},
		// http.Transport retries a GET whose reused connection closed, so drop a few.
		{"JWKS connection dropped", []string{"drop", "drop", "drop"}, nil, "user-1", true, false},
		{"JWKS answers 503", []string{"503"}, nil, "user-1", true, false},
		{"a proxy's HTML page instead of the JWKS", []string{"html"}, nil, "user-1", true, false},
		{"signed by a key the provider does not publish", nil, otherKey, "user-1", false, true},
		{"another subject", nil, nil, "user-2", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newIDP(t, "/", "client-1", "s3cret")
			// A fresh client has no keys cached, so the refresh must fetch them.
			prov, err := discover(t, p, "s3cret")
			if err != nil {
				t.Fatal(err)
			}
			p.set(func(p *idp) { p.keyFailures, p.signer = tt.failures, tt.signer })
			got, err := prov.Refresh(context.Background(), "refresh-old", tt.subject)
			switch {
			case tt.transient:
				if !errors.Is(err, login.ErrKeysUnavailable) || errors.Is(err, login.ErrRefreshRejected) {
					t.Fatalf("refresh: %v, want ErrKeysUnavailable and not ErrRefreshRejected", err)
				}
				if got.AccessToken != "" || !strings.HasPrefix(got.RefreshToken, "refresh-") || got.RefreshToken == "refresh-old" {
					t.Fatalf("tokens %+v: want only the rotated refresh token, no access token", got)
				}
				// The keys are back: the next refresh verifies.
				p.set(func(p *idp) { p.keyFailures = nil })
				if _, err := prov.Refresh(context.Background(), got.RefreshToken, tt.subject); err != nil {
					t.Fatalf("refresh once the keys are back: %v", err)
				}
			case tt.rejected:
				if !errors.Is(err, login.ErrRefreshRejected) || errors.Is(err, login.ErrKeysUnavailable) {
					t.Fatalf("refresh: %v, want ErrRefreshRejected", err)
				}
			default:
				if err != nil || got.AccessToken == "" {
					t.Fatalf("refresh: %+v %v", got, err)
				}
			}
			if err != nil && (strings.Contains(err.Error(), "refresh-") || strings.Contains(err.Error(), "access-")) {
				t.Fatalf("the error names a token: %v", err)
			}
		})
	}
}

func TestExchangeWithUnreachableKeysIsNotAnInvalidToken(t *testing.T) {
	p := newIDP(t, "/", "client-1", "s3cret")
	prov, err := discover(t, p, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	p.set(func(p *idp) { p.keyFailures = []string{"503"} })
	_, _, err = exchange(t, prov)
	var le *login.Error
	if !errors.As(err, &le) || le.Reason != "exchange_failed" || le.Code != "keys_unavailable" || !errors.Is(err, login.ErrKeysUnavailable) {
		t.Fatalf("exchange with the JWKS down: %v", err)
	}
}
