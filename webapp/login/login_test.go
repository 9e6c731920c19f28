package login_test

import (
	"context"
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
