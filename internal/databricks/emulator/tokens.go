package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Scopes the emulator gives meaning to.
const (
	ScopeAllAPIs       = "all-apis"
	ScopeSQL           = "sql"
	ScopeServing       = "serving.serving-endpoints"
	ScopeOfflineAccess = "offline_access"
	ScopeOpenID        = "openid"
	ScopeEmail         = "email"
	ScopeProfile       = "profile"
)

// isOIDCScope reports whether s only shapes the login (ID token, refresh
// token) rather than granting API access.
func isOIDCScope(s string) bool {
	switch s {
	case ScopeOpenID, ScopeEmail, ScopeProfile, ScopeOfflineAccess:
		return true
	}
	return false
}

type principalKind int

const (
	principalUser principalKind = iota + 1
	principalServicePrincipal
)

type audience int

const (
	audienceWorkspace audience = iota + 1
	audienceAccount
)

// accessToken is an issued opaque access token.
type accessToken struct {
	kind      principalKind
	principal string // user email or service principal client id
	clientID  string
	scopes    []string
	audience  audience
	expiresAt time.Time
	family    *tokenFamily // nil for client-credentials tokens
}

func (t *accessToken) hasScope(s string) bool { return slices.Contains(t.scopes, s) }

// hasAPIScope reports whether the token grants access to some API (SCIM Me is
// reachable with any API scope).
func (t *accessToken) hasAPIScope() bool {
	for _, s := range t.scopes {
		if !isOIDCScope(s) {
			return true
		}
	}
	return false
}

// canServe reports whether the token's scopes reach Model Serving.
func (t *accessToken) canServe() bool {
	return t.hasScope(ScopeAllAPIs) || t.hasScope(ScopeServing)
}

// authCode is an issued authorization code.
type authCode struct {
	clientID    string
	redirectURI string
	user        string
	scopes      []string
	nonce       string
	challenge   string
	authTime    time.Time
	expiresAt   time.Time
	used        bool
	family      *tokenFamily // set once exchanged, to revoke on reuse
}

// refreshToken is an issued refresh token.
type refreshToken struct {
	family    *tokenFamily
	scopes    []string
	expiresAt time.Time
	used      bool // rotated away: presenting it again revokes the family
}

// tokenFamily links every token descending from one login, so reuse of a
// rotated refresh token (or of a code) can revoke them all.
type tokenFamily struct {
	clientID   string
	user       string
	authTime   time.Time
	sessionEnd time.Time // zero: no absolute session lifetime
	revoked    bool
	lastExpiry time.Time
}

func (f *tokenFamily) extend(t time.Time) {
	if t.After(f.lastExpiry) {
		f.lastExpiry = t
	}
}

// tokenStore holds codes and tokens; guarded by Emulator.mu.
type tokenStore struct {
	codes   map[string]*authCode
	access  map[string]*accessToken
	refresh map[string]*refreshToken
	issued  int
}

func newTokenStore() tokenStore {
	return tokenStore{
		codes:   map[string]*authCode{},
		access:  map[string]*accessToken{},
		refresh: map[string]*refreshToken{},
	}
}

// sweepEvery is how many issued items trigger a sweep of expired ones.
const sweepEvery = 4096

// noteIssued counts an issued item and, now and then, forgets expired ones.
// Used refresh tokens are kept until they expire so reuse is still detected.
func (s *tokenStore) noteIssued(now time.Time) {
	s.issued++
	if s.issued%sweepEvery != 0 {
		return
	}
	for k, c := range s.codes {
		if !now.Before(c.expiresAt) && (c.family == nil || !now.Before(c.family.lastExpiry)) {
			delete(s.codes, k)
		}
	}
	for k, t := range s.access {
		if !now.Before(t.expiresAt) {
			delete(s.access, k)
		}
	}
	for k, t := range s.refresh {
		if !now.Before(t.expiresAt) {
			delete(s.refresh, k)
		}
	}
}

// newOpaqueToken returns a random token string.
func (e *Emulator) newOpaqueToken() string { return b64(e.randomBytes(32)) }

// bearer extracts a bearer token from the Authorization header.
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// authenticate checks the bearer token for an API call; on failure it writes
// a 401 answer and returns false.
func (e *Emulator) authenticate(w http.ResponseWriter, r *http.Request, aud audience) (*accessToken, bool) {
	raw, ok := bearer(r)
	if !ok {
		// Databricks sends this numeric error_code for missing credentials.
		writeAPIError(w, http.StatusUnauthorized, 401, "Credential was not sent or was of an unsupported type for this API.")
		return nil, false
	}
	now := e.now()
	e.mu.Lock()
	tok, found := e.tokens.access[raw]
	var msg string
	switch {
	case !found:
		msg = "Invalid access token."
	case !now.Before(tok.expiresAt):
		msg = "Access token has expired."
	case tok.family != nil && tok.family.revoked:
		msg = "Access token has been revoked."
	case tok.audience != aud:
		msg = "Access token is not valid for this API."
	}
	var copied accessToken
	if msg == "" {
		copied = *tok
	}
	e.mu.Unlock()
	if msg != "" {
		writeAPIError(w, http.StatusUnauthorized, 401, msg)
		return nil, false
	}
	return &copied, true
}

// IssueUserToken mints a workspace access token for a dev user without the
// login flow, for tests and dev tooling that need a user's bearer token. It
// lives DefaultAccessTokenTTL; no scopes means [all-apis].
func (e *Emulator) IssueUserToken(email string, scopes ...string) (string, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	if len(scopes) == 0 {
		scopes = []string{ScopeAllAPIs}
	}
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.users[email]; !ok {
		return "", fmt.Errorf("emulator: issue token: no user %q", email)
	}
	token := e.newOpaqueToken()
	e.tokens.access[token] = &accessToken{
		kind:      principalUser,
		principal: email,
		scopes:    dedupe(scopes),
		audience:  audienceWorkspace,
		expiresAt: now.Add(DefaultAccessTokenTTL),
	}
	e.tokens.noteIssued(now)
	return token, nil
}
