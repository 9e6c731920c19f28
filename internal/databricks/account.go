package databricks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AccountConfig configures an AccountClient.
type AccountConfig struct {
	// Host is the account console URL, for example
	// https://accounts.cloud.databricks.com (AWS), or the emulator's URL.
	Host string
	// AccountID is the Databricks account id.
	AccountID string
	// ClientID and ClientSecret are an account admin service principal's
	// OAuth credentials, exchanged at AccountTokenURL(Host, AccountID).
	ClientID     string
	ClientSecret string // never logged nor put in errors
	// TokenSource, when set, replaces the client-credentials source built
	// from ClientID and ClientSecret.
	TokenSource TokenSource
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Retry governs retries of 429 and 503 answers.
	Retry RetryPolicy
	// Now is the clock for token expiry and Retry-After dates; nil means time.Now.
	Now func() time.Time
}

// AccountClient calls the Databricks account API for OAuth custom app
// integrations. It is safe for concurrent use.
type AccountClient struct {
	t         *transport
	accountID string
}

// NewAccountClient returns a client for one account. Unless cfg.TokenSource
// is set it authenticates with a cached client-credentials token from the
// account token endpoint.
func NewAccountClient(cfg AccountConfig) (*AccountClient, error) {
	if cfg.AccountID == "" {
		return nil, errors.New("databricks: account id is empty")
	}
	tokens := cfg.TokenSource
	if tokens == nil {
		cc, err := NewClientCredentials(ClientCredentialsConfig{
			TokenURL:     AccountTokenURL(cfg.Host, cfg.AccountID),
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Scopes:       []string{ScopeAllAPIs},
			HTTPClient:   cfg.HTTPClient,
			Retry:        cfg.Retry,
			Now:          cfg.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("databricks: account credentials: %w", err)
		}
		tokens = cc
	}
	t, err := newTransport(cfg.Host, cfg.HTTPClient, cfg.Retry, cfg.Now, tokens)
	if err != nil {
		return nil, err
	}
	return &AccountClient{t: t, accountID: cfg.AccountID}, nil
}

// TokenAccessPolicy sets token lifetimes for an integration. Zero fields are
// left to the server's defaults (1 hour access tokens, 7 day refresh tokens).
type TokenAccessPolicy struct {
	// AccessTokenTTLInMinutes is the access token lifetime, 5 to 1440.
	AccessTokenTTLInMinutes int `json:"access_token_ttl_in_minutes,omitempty"`
	// RefreshTokenTTLInMinutes is the refresh token lifetime, 5 to 129600.
	RefreshTokenTTLInMinutes int `json:"refresh_token_ttl_in_minutes,omitempty"`
	// EnableSingleUseRefreshTokens turns on refresh token rotation: every
	// refresh returns a new refresh token and the old one stops working.
	EnableSingleUseRefreshTokens bool `json:"enable_single_use_refresh_tokens,omitempty"`
	// AbsoluteSessionLifetimeInMinutes bounds how long refreshes may extend
	// a login session.
	AbsoluteSessionLifetimeInMinutes int `json:"absolute_session_lifetime_in_minutes,omitempty"`
}

// CustomAppIntegration is an OAuth custom app integration as the account API
// returns it. The client secret is never part of it.
type CustomAppIntegration struct {
	IntegrationID        string             `json:"integration_id"`                   // unique id of the integration
	ClientID             string             `json:"client_id"`                        // OAuth client id used at login
	Name                 string             `json:"name"`                             // display name; immutable
	Confidential         bool               `json:"confidential"`                     // whether the client has a secret; immutable
	RedirectURLs         []string           `json:"redirect_urls"`                    // exact-match redirect URLs
	Scopes               []string           `json:"scopes"`                           // scopes the app may request
	UserAuthorizedScopes []string           `json:"user_authorized_scopes,omitempty"` // scopes the user must consent to; a subset of Scopes
	TokenAccessPolicy    *TokenAccessPolicy `json:"token_access_policy,omitempty"`    // token lifetimes and rotation
	CreateTime           string             `json:"create_time,omitempty"`            // creation time as the server formats it
	CreatedBy            int64              `json:"created_by,omitempty"`             // id of the creating principal
	CreatorUsername      string             `json:"creator_username,omitempty"`       // name of the creating principal, when asked for
}

// CreateCustomAppIntegrationRequest describes a new integration.
type CreateCustomAppIntegrationRequest struct {
	// Name is the display name; it cannot be changed later.
	Name string `json:"name"`
	// Confidential apps get a client secret, returned only by the create call.
	// It cannot be changed later.
	Confidential bool `json:"confidential"`
	// RedirectURLs are matched exactly against the redirect_uri of logins.
	RedirectURLs []string `json:"redirect_urls,omitempty"`
	// Scopes the app may request, e.g. openid, email, profile,
	// offline_access, all-apis.
	Scopes []string `json:"scopes,omitempty"`
	// UserAuthorizedScopes must be a subset of Scopes.
	UserAuthorizedScopes []string           `json:"user_authorized_scopes,omitempty"`
	TokenAccessPolicy    *TokenAccessPolicy `json:"token_access_policy,omitempty"` // nil leaves the server defaults
}

// CreateCustomAppIntegrationResponse is the create answer. ClientSecret is
// set for confidential apps and is never returned again: store it at once.
type CreateCustomAppIntegrationResponse struct {
	IntegrationID string `json:"integration_id"`          // id for get, update and delete
	ClientID      string `json:"client_id"`               // OAuth client id for the app
	ClientSecret  string `json:"client_secret,omitempty"` // only for confidential apps, only in this response
}

// String describes the response with the secret redacted.
func (r CreateCustomAppIntegrationResponse) String() string {
	return fmt.Sprintf("{IntegrationID:%s ClientID:%s ClientSecret:%s}", r.IntegrationID, r.ClientID, redacted(r.ClientSecret))
}

// LogValue logs the response with the secret redacted.
func (r CreateCustomAppIntegrationResponse) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("integration_id", r.IntegrationID),
		slog.String("client_id", r.ClientID),
		slog.String("client_secret", redacted(r.ClientSecret)),
	)
}

func redacted(s string) string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// UpdateCustomAppIntegrationRequest changes an integration. A nil field is
// left unchanged; a non-nil list (even empty) REPLACES the stored list, so to
// add a redirect URL read the integration, merge, and write the whole list.
type UpdateCustomAppIntegrationRequest struct {
	RedirectURLs         []string           `json:"redirect_urls,omitzero"`          // replaces the redirect URLs when non-nil
	Scopes               []string           `json:"scopes,omitzero"`                 // replaces the scopes when non-nil
	UserAuthorizedScopes []string           `json:"user_authorized_scopes,omitzero"` // replaces the user-authorized scopes when non-nil
	TokenAccessPolicy    *TokenAccessPolicy `json:"token_access_policy,omitempty"`   // replaces the policy when non-nil
}

// ListCustomAppIntegrationsRequest asks for one page of integrations.
type ListCustomAppIntegrationsRequest struct {
	// PageSize is the maximum number of integrations; zero leaves it to the server.
	PageSize int
	// PageToken continues from a previous page's NextPageToken.
	PageToken string
	// IncludeCreatorUsername fills CreatorUsername.
	IncludeCreatorUsername bool
}

// ListCustomAppIntegrationsResponse is one page of integrations.
type ListCustomAppIntegrationsResponse struct {
	Apps []CustomAppIntegration `json:"apps"` // the integrations of this page
	// NextPageToken is empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

func (c *AccountClient) integrationsPath() string {
	return "/api/2.0/accounts/" + url.PathEscape(c.accountID) + "/oauth2/custom-app-integrations"
}

func (c *AccountClient) integrationPath(id string) string {
	return c.integrationsPath() + "/" + url.PathEscape(id)
}

// CreateCustomAppIntegration creates an integration. For confidential apps
// the response carries the only copy of the client secret.
func (c *AccountClient) CreateCustomAppIntegration(ctx context.Context, req CreateCustomAppIntegrationRequest) (*CreateCustomAppIntegrationResponse, error) {
	op := fmt.Sprintf("create custom app integration %q", req.Name)
	var out CreateCustomAppIntegrationResponse
	if err := c.call(ctx, http.MethodPost, c.integrationsPath(), nil, req, &out); err != nil {
		return nil, opError(op, err)
	}
	if out.IntegrationID == "" || out.ClientID == "" {
		return nil, fmt.Errorf("%s: response lacks integration_id or client_id", op)
	}
	return &out, nil
}

// GetCustomAppIntegration reads one integration; IsNotFound(err) when it does
// not exist.
func (c *AccountClient) GetCustomAppIntegration(ctx context.Context, integrationID string) (*CustomAppIntegration, error) {
	var out CustomAppIntegration
	if err := c.call(ctx, http.MethodGet, c.integrationPath(integrationID), nil, nil, &out); err != nil {
		return nil, opError("get custom app integration "+integrationID, err)
	}
	return &out, nil
}

// ListCustomAppIntegrations reads one page of integrations.
func (c *AccountClient) ListCustomAppIntegrations(ctx context.Context, req ListCustomAppIntegrationsRequest) (*ListCustomAppIntegrationsResponse, error) {
	q := url.Values{}
	if req.PageSize > 0 {
		q.Set("page_size", strconv.Itoa(req.PageSize))
	}
	if req.PageToken != "" {
		q.Set("page_token", req.PageToken)
	}
	if req.IncludeCreatorUsername {
		q.Set("include_creator_username", "true")
	}
	var out ListCustomAppIntegrationsResponse
	if err := c.call(ctx, http.MethodGet, c.integrationsPath(), q, nil, &out); err != nil {
		return nil, opError("list custom app integrations", err)
	}
	return &out, nil
}

// ListAllCustomAppIntegrations follows next_page_token until the last page
// and returns every integration. pageSize zero leaves the page size to the server.
func (c *AccountClient) ListAllCustomAppIntegrations(ctx context.Context, pageSize int) ([]CustomAppIntegration, error) {
	var all []CustomAppIntegration
	seen := map[string]bool{}
	req := ListCustomAppIntegrationsRequest{PageSize: pageSize}
	for {
		page, err := c.ListCustomAppIntegrations(ctx, req)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Apps...)
		if page.NextPageToken == "" {
			return all, nil
		}
		if seen[page.NextPageToken] {
			return nil, errors.New("list custom app integrations: server repeated a page token")
		}
		seen[page.NextPageToken] = true
		req.PageToken = page.NextPageToken
	}
}

// UpdateCustomAppIntegration patches an integration. Lists in req replace the
// stored lists; name and confidentiality cannot be changed.
func (c *AccountClient) UpdateCustomAppIntegration(ctx context.Context, integrationID string, req UpdateCustomAppIntegrationRequest) error {
	if err := c.call(ctx, http.MethodPatch, c.integrationPath(integrationID), nil, req, nil); err != nil {
		return opError("update custom app integration "+integrationID, err)
	}
	return nil
}

// DeleteCustomAppIntegration deletes an integration; IsNotFound(err) when it
// was already gone.
func (c *AccountClient) DeleteCustomAppIntegration(ctx context.Context, integrationID string) error {
	if err := c.call(ctx, http.MethodDelete, c.integrationPath(integrationID), nil, nil, nil); err != nil {
		return opError("delete custom app integration "+integrationID, err)
	}
	return nil
}

// call sends a JSON request and decodes a JSON answer into out (when non-nil).
func (c *AccountClient) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	return callJSON(ctx, c.t, method, path, query, in, out)
}

func callJSON(ctx context.Context, t *transport, method, path string, query url.Values, in, out any) error {
	req := request{method: method, path: path, query: query}
	if in != nil {
		body, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		req.body = body
		req.contentType = "application/json"
	}
	resp, err := t.do(ctx, req)
	if err != nil {
		return err
	}
	defer drainAndClose(resp.Body)
	if out == nil {
		return nil
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
