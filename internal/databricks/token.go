package databricks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// TokenSource supplies the bearer token for a request. Implementations must be
// safe for concurrent use.
type TokenSource interface {
	// Token returns a valid access token.
	Token(ctx context.Context) (string, error)
}

// StaticToken is a TokenSource that always returns the same token, such as a
// signed-in user's OAuth access token.
type StaticToken string

// Token returns the token, or an error when it is empty.
func (t StaticToken) Token(context.Context) (string, error) {
	if t == "" {
		return "", errors.New("databricks: static token is empty")
	}
	return string(t), nil
}

// ScopeAllAPIs is the OAuth scope that grants access to every REST API the
// principal is entitled to.
const ScopeAllAPIs = "all-apis"

// AccountTokenURL returns the account-level OAuth token endpoint,
// <host>/oidc/accounts/<accountID>/v1/token.
func AccountTokenURL(host, accountID string) string {
	return strings.TrimRight(host, "/") + "/oidc/accounts/" + url.PathEscape(accountID) + "/v1/token"
}

// WorkspaceTokenURL returns the workspace OAuth token endpoint, <host>/oidc/v1/token.
func WorkspaceTokenURL(host string) string {
	return strings.TrimRight(host, "/") + "/oidc/v1/token"
}

// ClientCredentialsConfig configures a machine-to-machine token source.
type ClientCredentialsConfig struct {
	// TokenURL is the token endpoint, see AccountTokenURL and WorkspaceTokenURL.
	TokenURL string
	// ClientID and ClientSecret are a service principal's OAuth credentials,
	// sent with HTTP Basic authentication.
	ClientID     string
	ClientSecret string // never logged nor put in errors
	// Scopes requested; empty means [all-apis].
	Scopes []string
	// HTTPClient sends the token requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Retry governs retries of 429 and 503 answers from the token endpoint.
	Retry RetryPolicy
	// Now is the clock used for expiry; nil means time.Now.
	Now func() time.Time
	// ExpiryMargin is how long before expiry a cached token is replaced.
	// Zero means one minute; it never exceeds half the token's lifetime.
	ExpiryMargin time.Duration
	// FetchTimeout bounds one token fetch shared by concurrent callers
	// (callers stop waiting when their own context ends). Zero means one minute.
	FetchTimeout time.Duration
}

// ClientCredentials is a TokenSource that obtains tokens with the OAuth
// client-credentials grant and caches them until shortly before expiry.
// Concurrent callers share one in-flight token request. It is safe for
// concurrent use.
type ClientCredentials struct {
	cfg       ClientCredentialsConfig
	transport *transport
	path      string
	now       func() time.Time

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	inflight  *tokenFetch
}

type tokenFetch struct {
	done  chan struct{}
	token string
	err   error
}

// NewClientCredentials returns a caching client-credentials token source.
func NewClientCredentials(cfg ClientCredentialsConfig) (*ClientCredentials, error) {
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("databricks: client credentials need a client id and secret")
	}
	u, err := url.Parse(cfg.TokenURL)
	if err != nil {
		return nil, fmt.Errorf("databricks: parse token URL: %w", err)
	}
	origin := &url.URL{Scheme: u.Scheme, Host: u.Host}
	t, err := newTransport(origin.String(), cfg.HTTPClient, cfg.Retry, cfg.Now, nil)
	if err != nil {
		return nil, fmt.Errorf("databricks: token URL: %w", err)
	}
	return &ClientCredentials{cfg: cfg, transport: t, path: u.EscapedPath(), now: t.now}, nil
}

// Token returns the cached token while it is fresh, otherwise fetches a new
// one. Many concurrent callers cause one token request.
func (c *ClientCredentials) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	if c.token != "" && c.now().Before(c.refreshAt) {
		token := c.token
		c.mu.Unlock()
		return token, nil
	}
	f := c.inflight
	if f == nil {
		f = &tokenFetch{done: make(chan struct{})}
		c.inflight = f
		timeout := c.cfg.FetchTimeout
		if timeout <= 0 {
			timeout = time.Minute
		}
		// The fetch outlives the caller that started it: the others wait on it.
		fetchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		go func() {
			defer cancel()
			c.fetch(fetchCtx, f)
		}()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", fmt.Errorf("wait for OAuth token: %w", ctx.Err())
	}
}

// Invalidate drops the cached token so the next call fetches a new one.
func (c *ClientCredentials) Invalidate() {
	c.mu.Lock()
	c.token = ""
	c.mu.Unlock()
}

func (c *ClientCredentials) fetch(ctx context.Context, f *tokenFetch) {
	token, lifetime, err := c.request(ctx)
	c.mu.Lock()
	if err == nil {
		c.token = token
		margin := c.cfg.ExpiryMargin
		if margin <= 0 {
			margin = time.Minute
		}
		margin = min(margin, lifetime/2)
		c.refreshAt = c.now().Add(lifetime - margin)
	}
	c.inflight = nil
	c.mu.Unlock()
	f.token, f.err = token, err
	close(f.done)
}

// tokenResponse is the OAuth 2.0 token response (RFC 6749 section 5.1).
type tokenResponse struct {
	AccessToken string      `json:"access_token"`
	TokenType   string      `json:"token_type"`
	ExpiresIn   json.Number `json:"expires_in"`
	Scope       string      `json:"scope"`
}

func (c *ClientCredentials) request(ctx context.Context) (string, time.Duration, error) {
	scopes := c.cfg.Scopes
	if len(scopes) == 0 {
		scopes = []string{ScopeAllAPIs}
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {strings.Join(scopes, " ")}}
	resp, err := c.transport.do(ctx, request{
		method:      http.MethodPost,
		path:        c.path,
		body:        []byte(form.Encode()),
		contentType: "application/x-www-form-urlencoded",
		basicUser:   c.cfg.ClientID,
		basicPass:   c.cfg.ClientSecret,
	})
	if err != nil {
		return "", 0, fmt.Errorf("fetch OAuth token for client %s: %w", c.cfg.ClientID, err)
	}
	defer drainAndClose(resp.Body)
	var tr tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return "", 0, fmt.Errorf("decode OAuth token response for client %s: %w", c.cfg.ClientID, err)
	}
	if tr.AccessToken == "" {
		return "", 0, fmt.Errorf("OAuth token response for client %s has no access_token", c.cfg.ClientID)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return "", 0, fmt.Errorf("OAuth token response for client %s has token_type %q, want Bearer", c.cfg.ClientID, tr.TokenType)
	}
	// Without expires_in the token is not cached: every call fetches anew.
	var lifetime time.Duration
	if secs, err := tr.ExpiresIn.Int64(); err == nil && secs > 0 {
		lifetime = time.Duration(secs) * time.Second
	}
	return tr.AccessToken, lifetime, nil
}
