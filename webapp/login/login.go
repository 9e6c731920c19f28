// Package login provides the OpenID Connect side of the web app's sign-in
// against Databricks: provider discovery, authorization URLs with PKCE S256,
// state and nonce, code exchange with full ID token verification, and token
// refresh. The webapp package uses it; it holds no per-user state.
package login

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/servingapp/servingapp/api/audit"
)

// Config configures a Provider.
type Config struct {
	// Issuer is the OpenID Connect issuer, https://<workspace>/oidc for
	// Databricks; discovery reads <Issuer>/.well-known/openid-configuration.
	Issuer string
	// ClientID and ClientSecret are the OAuth app integration's credentials;
	// an empty secret means a public client (PKCE only).
	ClientID     string
	ClientSecret string
	// RedirectURL is the app's /oauth/callback URL, registered with the integration.
	RedirectURL string
	// Scopes requested; they must include openid.
	Scopes []string
	// HTTPClient talks to the provider; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock for token expiry and iat checks; nil means time.Now.
	Now func() time.Time
	// IATLeeway is how far in the future an ID token's iat may lie (clock
	// skew between us and the provider); zero means one minute.
	IATLeeway time.Duration
	// DefaultTokenLifetime is assumed when a token response has no
	// expires_in; zero means one hour (the Databricks default).
	DefaultTokenLifetime time.Duration
}

// Provider is a discovered OpenID Connect provider for one client. It is
// safe for concurrent use.
type Provider struct {
	cfg      Config
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// metadata is what Discover reads from the discovery document besides what
// go-oidc reads itself.
type metadata struct {
	JWKSURL     string   `json:"jwks_uri"`
	Algorithms  []string `json:"id_token_signing_alg_values_supported"`
	AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
}

// Discover reads the provider's discovery document and prepares the client.
// The issuer must match the document's exactly (a trailing "/" included);
// the client authenticates at the token endpoint the way the document says
// (see tokenAuthStyle).
func Discover(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IATLeeway <= 0 {
		cfg.IATLeeway = time.Minute
	}
	if cfg.DefaultTokenLifetime <= 0 {
		cfg.DefaultTokenLifetime = time.Hour
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, cfg.HTTPClient), cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover OpenID provider %s: %w", cfg.Issuer, err)
	}
	var meta metadata
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("discover OpenID provider %s: read the discovery document: %w", cfg.Issuer, err)
	}
	endpoint := p.Endpoint()
	if endpoint.AuthStyle, err = tokenAuthStyle(cfg.ClientSecret != "", meta.AuthMethods); err != nil {
		return nil, fmt.Errorf("discover OpenID provider %s: %w", cfg.Issuer, err)
	}
	if au, err := url.Parse(endpoint.AuthURL); err != nil || au.Scheme == "" || au.Host == "" {
		return nil, fmt.Errorf("discover OpenID provider %s: authorization endpoint %q is not an absolute URL", cfg.Issuer, endpoint.AuthURL)
	}
	if meta.JWKSURL == "" {
		return nil, fmt.Errorf("discover OpenID provider %s: the discovery document has no jwks_uri", cfg.Issuer)
	}
	return &Provider{
		cfg: cfg,
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     endpoint,
			RedirectURL:  cfg.RedirectURL,
			Scopes:       cfg.Scopes,
		},
		verifier: oidc.NewVerifier(cfg.Issuer, newKeySet(cfg.HTTPClient, meta.JWKSURL), &oidc.Config{
			ClientID:             cfg.ClientID,
			Now:                  cfg.Now,
			SupportedSigningAlgs: signingAlgorithms(meta.Algorithms),
		}),
	}, nil
}

// tokenAuthStyle chooses how the client authenticates at the token endpoint
// from the provider's token_endpoint_auth_methods_supported. A public client
// (no secret) sends only client_id in the form. A confidential one prefers
// client_secret_post when the provider lists it, because Databricks
// documents the form body for confidential U2M clients; otherwise it uses
// HTTP Basic, which is also what an absent list means (OpenID Connect
// Discovery 1.0 section 3: the default is client_secret_basic).
func tokenAuthStyle(confidential bool, methods []string) (oauth2.AuthStyle, error) {
	switch {
	case !confidential:
		return oauth2.AuthStyleInParams, nil
	case len(methods) == 0:
		return oauth2.AuthStyleInHeader, nil
	case slices.Contains(methods, "client_secret_post"):
		return oauth2.AuthStyleInParams, nil
	case slices.Contains(methods, "client_secret_basic"):
		return oauth2.AuthStyleInHeader, nil
	}
	return 0, fmt.Errorf("the token endpoint accepts neither client_secret_post nor client_secret_basic (it lists %s), so a client secret cannot be presented", strings.Join(methods, ", "))
}

// signingAlgorithms keeps the advertised ID token algorithms go-oidc can
// verify, as oidc.Provider.Verifier does; none left means RS256, the
// algorithm every provider must support.
func signingAlgorithms(advertised []string) []string {
	var out []string
	for _, a := range advertised {
		switch a {
		case oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA:
			out = append(out, a)
		}
	}
	return out
}

// Request holds one authorization request's secrets: they travel to the
// provider (state, nonce, the verifier's S256 challenge) and must be kept,
// bound to the browser, until the callback.
type Request struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
}

// NewRequest draws a state, a nonce and a PKCE verifier (256 bits each) from
// rand (nil means crypto/rand).
func NewRequest(rand io.Reader) (Request, error) {
	var r Request
	for _, dst := range []*string{&r.State, &r.Nonce, &r.Verifier} {
		s, err := randomString(rand)
		if err != nil {
			return Request{}, fmt.Errorf("make authorization request: %w", err)
		}
		*dst = s
	}
	return r, nil
}

func randomString(r io.Reader) (string, error) {
	b := make([]byte, 32)
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// AuthCodeURL is where the browser goes to sign in: an authorization code
// request with PKCE S256, state and nonce.
func (p *Provider) AuthCodeURL(r Request) string {
	return p.oauth.AuthCodeURL(r.State, oauth2.S256ChallengeOption(r.Verifier), oidc.Nonce(r.Nonce))
}

// Tokens are what a token response granted. Never log them.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	// Expiry is when the access token expires, by the provider's expires_in
	// and Config.Now.
	Expiry time.Time
}

// Identity is who signed in, from the verified ID token.
type Identity struct {
	Subject string
	Email   string
	// EmailUnverified is set when the ID token says email_verified false
	// (or anything but true): the provider has not checked that the user
	// controls Email. An absent claim leaves it false, since Databricks
	// omits the claim for emails it does own.
	EmailUnverified   bool
	Name              string
	PreferredUsername string
}

// Error is a failed sign-in. Reason is one of the audit.Reason* values;
// Code is the provider's error code when it gave one. Its message never
// contains tokens or codes.
type Error struct {
	Reason string
	Code   string
	msg    string
	err    error
}

func (e *Error) Error() string {
	s := "sign-in failed (" + e.Reason + "): " + e.msg
	if e.Code != "" {
		s += " [" + e.Code + "]"
	}
	return s
}

func (e *Error) Unwrap() error { return e.err }

func fail(reason, code, msg string, err error) *Error {
	return &Error{Reason: reason, Code: code, msg: msg, err: err}
}

// safeCause describes a token endpoint failure without echoing its body.
func safeCause(err error) (code, msg string) {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code = re.ErrorCode
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		msg = fmt.Sprintf("token endpoint answered HTTP %d", status)
		if re.ErrorDescription != "" {
			msg += ": " + re.ErrorDescription
		}
		return code, msg
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return "", "token endpoint unreachable: " + ue.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "", "token request interrupted: " + err.Error()
	}
	return "", "token request failed"
}

func (p *Provider) clientContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.cfg.HTTPClient)
}

func (p *Provider) tokens(t *oauth2.Token) Tokens {
	lifetime := p.cfg.DefaultTokenLifetime
	if t.ExpiresIn > 0 {
		lifetime = time.Duration(t.ExpiresIn) * time.Second
	}
	return Tokens{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, Expiry: p.cfg.Now().Add(lifetime)}
}

// Exchange redeems an authorization code with r's PKCE verifier and
// verifies the ID token: signature (JWKS), algorithm, iss, aud, exp, iat not
// in the future, nonce equal to r's, and at_hash when present. Failures are
// *Error with reason exchange_failed, invalid_id_token or nonce_mismatch.
func (p *Provider) Exchange(ctx context.Context, code string, r Request) (Tokens, Identity, error) {
	t, err := p.oauth.Exchange(p.clientContext(ctx), code, oauth2.VerifierOption(r.Verifier))
	if err != nil {
		c, msg := safeCause(err)
		return Tokens{}, Identity{}, fail(audit.ReasonExchangeFailed, c, "exchange the authorization code: "+msg, nil)
	}
	if t.AccessToken == "" {
		return Tokens{}, Identity{}, fail(audit.ReasonExchangeFailed, "", "the token response has no access token", nil)
	}
	raw, _ := t.Extra("id_token").(string)
	if raw == "" {
		return Tokens{}, Identity{}, fail(audit.ReasonInvalidIDToken, "", "the token response has no ID token (is openid among the scopes?)", nil)
	}
	idt, err := p.verify(ctx, raw)
	if errors.Is(err, ErrKeysUnavailable) {
		// Not a verdict on the token: the sign-in failed, not an attack.
		return Tokens{}, Identity{}, fail(audit.ReasonExchangeFailed, "keys_unavailable", "verify the ID token: "+err.Error(), err)
	}
	if err != nil {
		return Tokens{}, Identity{}, fail(audit.ReasonInvalidIDToken, "", "verify the ID token: "+verifyProblem(err), err)
	}
	now := p.cfg.Now()
	if idt.IssuedAt.IsZero() {
		return Tokens{}, Identity{}, fail(audit.ReasonInvalidIDToken, "", "the ID token has no iat", nil)
	}
	if idt.IssuedAt.After(now.Add(p.cfg.IATLeeway)) {
		return Tokens{}, Identity{}, fail(audit.ReasonInvalidIDToken, "", fmt.Sprintf("the ID token was issued in the future (iat %s, now %s)", idt.IssuedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)), nil)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(r.Nonce)) != 1 || r.Nonce == "" {
		return Tokens{}, Identity{}, fail(audit.ReasonNonceMismatch, "", "the ID token's nonce is not the one this sign-in sent", nil)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(t.AccessToken); err != nil {
			return Tokens{}, Identity{}, fail(audit.ReasonInvalidIDToken, "", "the ID token's at_hash does not match the access token", err)
		}
	}
	var claims struct {
		Email             string `json:"email"`
		EmailVerified     any    `json:"email_verified"`
		Name              string `json:"name"`
		PreferredUsername string `json:"preferred_username"`
	}
	if err := idt.Claims(&claims); err != nil {
		return Tokens{}, Identity{}, fail(audit.ReasonInvalidIDToken, "", "decode ID token claims", err)
	}
	if idt.Subject == "" {
		return Tokens{}, Identity{}, fail(audit.ReasonInvalidIDToken, "", "the ID token has no subject", nil)
	}
	return p.tokens(t), Identity{
		Subject:           idt.Subject,
		Email:             strings.TrimSpace(claims.Email),
		EmailUnverified:   !emailVerified(claims.EmailVerified),
		Name:              claims.Name,
		PreferredUsername: claims.PreferredUsername,
	}, nil
}

// emailVerified reads the email_verified claim: absent means verified
// (Databricks omits it), true is verified, and so is the string "true"
// that some providers send; anything else (false, "false", garbage) is not.
func emailVerified(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true")
	}
	return false
}

// verifyProblem names what go-oidc rejected without quoting the token.
func verifyProblem(err error) string {
	var expired *oidc.TokenExpiredError
	if errors.As(err, &expired) {
		return "expired at " + expired.Expiry.UTC().Format(time.RFC3339)
	}
	msg := err.Error()
	// go-oidc messages name the check (issuer, audience, signature, algorithm)
	// and never include the raw token.
	return strings.TrimPrefix(msg, "oidc: ")
}

// ErrRefreshRejected matches a refresh the provider refused for good
// (invalid_grant: the refresh token expired, was revoked or already used),
// or whose ID token verifies as wrong: the session must end.
var ErrRefreshRejected = errors.New("the identity provider rejected the refresh token")

// Refresh trades a refresh token for new tokens. The result keeps the old
// refresh token when the provider does not rotate it. An invalid_grant
// answer, or a refreshed ID token that fails verification or names another
// subject, matches ErrRefreshRejected; other failures are temporary.
//
// One temporary failure comes with tokens: when the refreshed ID token could
// not be checked because the signing keys were unreachable, the error
// matches ErrKeysUnavailable and the returned Tokens hold only the refresh
// token to use next time (the provider may have rotated the old one, so it
// must be kept); the access token is withheld because the ID token that came
// with it is unchecked.
func (p *Provider) Refresh(ctx context.Context, refreshToken, subject string) (Tokens, error) {
	t, err := p.oauth.TokenSource(p.clientContext(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		code, msg := safeCause(err)
		if code == "invalid_grant" {
			return Tokens{}, fmt.Errorf("refresh tokens: %s: %w", msg, ErrRefreshRejected)
		}
		return Tokens{}, fmt.Errorf("refresh tokens: %s", msg)
	}
	out := p.tokens(t)
	if out.RefreshToken == "" {
		out.RefreshToken = refreshToken
	}
	if raw, _ := t.Extra("id_token").(string); raw != "" {
		idt, err := p.verify(ctx, raw)
		if errors.Is(err, ErrKeysUnavailable) {
			return Tokens{RefreshToken: out.RefreshToken}, fmt.Errorf("refresh tokens: verify the refreshed ID token: %w", err)
		}
		if err != nil {
			return Tokens{}, fmt.Errorf("refresh tokens: verify the refreshed ID token: %s: %w", verifyProblem(err), ErrRefreshRejected)
		}
		if idt.Subject != subject {
			return Tokens{}, fmt.Errorf("refresh tokens: the refreshed ID token is for another subject: %w", ErrRefreshRejected)
		}
	}
	return out, nil
}
