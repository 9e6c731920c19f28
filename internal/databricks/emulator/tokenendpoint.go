package emulator

import (
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// oauthError is an RFC 6749 section 5.2 error answer.
type oauthError struct {
	status      int
	code        string
	description string
	basic       bool // the client tried HTTP Basic: answer 401 with a challenge
}

func (e *oauthError) write(w http.ResponseWriter) {
	if e.status == http.StatusUnauthorized && e.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="databricks-emulator"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.description})
}

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", description: desc}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_grant", description: desc}
}

func errInvalidScope(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_scope", description: desc}
}

// clientCredentials are the client id and secret a token request presented.
type clientCredentials struct {
	id, secret string
	basic      bool
}

// parseTokenRequest checks the form encoding and extracts client
// authentication (HTTP Basic or form body, not both).
func parseTokenRequest(r *http.Request) (url.Values, clientCredentials, *oauthError) {
	var creds clientCredentials
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType != "application/x-www-form-urlencoded" {
		return nil, creds, errInvalidRequest("The token request must be application/x-www-form-urlencoded.")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxAPIBody)
	if err := r.ParseForm(); err != nil {
		return nil, creds, errInvalidRequest("The request body could not be parsed.")
	}
	form := r.PostForm
	if user, pass, ok := r.BasicAuth(); ok {
		// RFC 6749 section 2.3.1: both parts are form-urlencoded first.
		id, err1 := url.QueryUnescape(user)
		secret, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return nil, creds, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: "Malformed HTTP Basic credentials.", basic: true}
		}
		if form.Get("client_secret") != "" {
			return nil, creds, errInvalidRequest("Use only one client authentication method.")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, creds, errInvalidRequest("client_id does not match the HTTP Basic credentials.")
		}
		creds = clientCredentials{id: id, secret: secret, basic: true}
	} else {
		creds = clientCredentials{id: form.Get("client_id"), secret: form.Get("client_secret")}
	}
	if creds.id == "" {
		return nil, creds, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: "Client authentication is required."}
	}
	return form, creds, nil
}

// handleToken is the workspace token endpoint.
func (e *Emulator) handleToken(w http.ResponseWriter, r *http.Request) {
	form, creds, oerr := parseTokenRequest(r)
	if oerr != nil {
		oerr.write(w)
		return
	}
	var body map[string]any
	switch grant := form.Get("grant_type"); grant {
	case "authorization_code":
		body, oerr = e.exchangeCode(r, form, creds)
	case "refresh_token":
		body, oerr = e.exchangeRefresh(r, form, creds)
	case "client_credentials":
		body, oerr = e.exchangeClientCredentials(form, creds, audienceWorkspace)
	case "":
		oerr = errInvalidRequest("grant_type is required.")
	default:
		oerr = &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type", description: "grant_type " + strconv.Quote(grant) + " is not supported."}
	}
	if oerr != nil {
		oerr.basic = creds.basic
		oerr.write(w)
		return
	}
	writeTokenResponse(w, body)
}

// handleAccountToken is the account-level token endpoint; it issues
// machine-to-machine tokens for the account API.
func (e *Emulator) handleAccountToken(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("account_id") != e.accountID {
		writeAPIError(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "Account "+r.PathValue("account_id")+" does not exist.")
		return
	}
	form, creds, oerr := parseTokenRequest(r)
	if oerr != nil {
		oerr.write(w)
		return
	}
	var body map[string]any
	switch grant := form.Get("grant_type"); grant {
	case "client_credentials":
		body, oerr = e.exchangeClientCredentials(form, creds, audienceAccount)
	case "":
		oerr = errInvalidRequest("grant_type is required.")
	default:
		oerr = &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type", description: "The account token endpoint of the emulator supports client_credentials only."}
	}
	if oerr != nil {
		oerr.basic = creds.basic
		oerr.write(w)
		return
	}
	writeTokenResponse(w, body)
}

// authenticateApp checks an app integration's client authentication and
// returns the integration as login currently sees it. Callers hold e.mu.
func (e *Emulator) authenticateApp(creds clientCredentials, now time.Time) (*Integration, *oauthError) {
	client, rec := e.loginClient(creds.id, now)
	bad := &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: "Client authentication failed."}
	if client == nil {
		return nil, bad
	}
	if client.Confidential {
		if creds.secret == "" || !secretMatches(rec.secretHash, creds.secret) {
			return nil, bad
		}
	} else if creds.secret != "" {
		return nil, bad
	}
	return client, nil
}

// exchangeCode redeems an authorization code (RFC 6749 section 4.1.3, RFC 7636).
func (e *Emulator) exchangeCode(r *http.Request, form url.Values, creds clientCredentials) (map[string]any, *oauthError) {
	code, verifier, redirectURI := form.Get("code"), form.Get("code_verifier"), form.Get("redirect_uri")
	switch {
	case code == "":
		return nil, errInvalidRequest("code is required.")
	case verifier == "":
		return nil, errInvalidRequest("code_verifier is required (PKCE).")
	case redirectURI == "":
		return nil, errInvalidRequest("redirect_uri is required.")
	}
	now := e.now()
	e.mu.Lock()
	client, oerr := e.authenticateApp(creds, now)
	if oerr != nil {
		e.mu.Unlock()
		return nil, oerr
	}
	ac, found := e.tokens.codes[code]
	switch {
	case !found || ac.clientID != client.ClientID:
		e.mu.Unlock()
		return nil, errInvalidGrant("The authorization code is invalid.")
	case ac.used:
		// RFC 6749 section 4.1.2: revoke what the first redemption issued.
		if ac.family != nil {
			ac.family.revoked = true
		}
		e.mu.Unlock()
		return nil, errInvalidGrant("The authorization code was already used.")
	case !now.Before(ac.expiresAt):
		delete(e.tokens.codes, code)
		e.mu.Unlock()
		return nil, errInvalidGrant("The authorization code has expired.")
	}
	ac.used = true // single use, also when the rest of the request is wrong
	if ac.redirectURI != redirectURI {
		e.mu.Unlock()
		return nil, errInvalidGrant("redirect_uri does not match the authorization request.")
	}
	if pkceS256(verifier) != ac.challenge {
		e.mu.Unlock()
		return nil, errInvalidGrant("PKCE verification failed: code_verifier does not match code_challenge.")
	}
	policy := client.TokenAccessPolicy
	family := &tokenFamily{clientID: client.ClientID, user: ac.user, authTime: ac.authTime}
	if m := policy.AbsoluteSessionLifetimeInMinutes; m > 0 {
		family.sessionEnd = ac.authTime.Add(time.Duration(m) * time.Minute)
	}
	ac.family = family
	issued := e.issueUserTokens(family, ac.scopes, policy, now, ac.scopes)
	e.mu.Unlock()
	return e.finishUserTokens(r, issued, ac.nonce)
}

// exchangeRefresh redeems a refresh token (RFC 6749 section 6), rotating it
// when the integration enables single-use refresh tokens.
func (e *Emulator) exchangeRefresh(r *http.Request, form url.Values, creds clientCredentials) (map[string]any, *oauthError) {
	raw := form.Get("refresh_token")
	if raw == "" {
		return nil, errInvalidRequest("refresh_token is required.")
	}
	now := e.now()
	e.mu.Lock()
	client, oerr := e.authenticateApp(creds, now)
	if oerr != nil {
		e.mu.Unlock()
		return nil, oerr
	}
	rt, found := e.tokens.refresh[raw]
	switch {
	case !found || rt.family.clientID != client.ClientID:
		e.mu.Unlock()
		return nil, errInvalidGrant("The refresh token is invalid.")
	case rt.family.revoked:
		e.mu.Unlock()
		return nil, errInvalidGrant("The refresh token has been revoked.")
	case rt.used:
		rt.family.revoked = true
		e.mu.Unlock()
		return nil, errInvalidGrant("The refresh token was already used; every token of this login is now revoked.")
	case !now.Before(rt.expiresAt):
		e.mu.Unlock()
		return nil, errInvalidGrant("The refresh token has expired.")
	case !rt.family.sessionEnd.IsZero() && !now.Before(rt.family.sessionEnd):
		e.mu.Unlock()
		return nil, errInvalidGrant("The session has reached its absolute lifetime.")
	}
	scopes := rt.scopes
	if requested := strings.Fields(form.Get("scope")); len(requested) > 0 {
		for _, s := range requested {
			if !slices.Contains(rt.scopes, s) {
				e.mu.Unlock()
				return nil, errInvalidScope("Scope " + strconv.Quote(s) + " was not granted to this refresh token.")
			}
		}
		scopes = dedupe(requested)
	}
	policy := client.TokenAccessPolicy
	var replacementScopes []string // nil: the refresh token stays valid, none is issued
	if policy.EnableSingleUseRefreshTokens {
		rt.used = true
		// The replacement keeps the scopes of the token it replaces, even
		// when this refresh narrowed the access token's scopes.
		replacementScopes = rt.scopes
	}
	issued := e.issueUserTokens(rt.family, scopes, policy, now, replacementScopes)
	e.mu.Unlock()
	// Refreshed ID tokens carry no nonce (OpenID Connect Core 12.2).
	return e.finishUserTokens(r, issued, "")
}

// issuedTokens are the tokens of one user token response, before signing.
type issuedTokens struct {
	access   string
	refresh  string
	scopes   []string
	ttl      time.Duration
	family   *tokenFamily
	user     User
	clientID string
	now      time.Time
}

// issueUserTokens stores an access token with scopes, and a refresh token
// with refreshScopes when those include offline_access. Callers hold e.mu.
func (e *Emulator) issueUserTokens(family *tokenFamily, scopes []string, policy TokenAccessPolicy, now time.Time, refreshScopes []string) issuedTokens {
	out := issuedTokens{
		access:   e.newOpaqueToken(),
		scopes:   slices.Clone(scopes),
		ttl:      policy.accessTTL(),
		family:   family,
		clientID: family.clientID,
		now:      now,
	}
	if u, ok := e.users[family.user]; ok {
		out.user = *u
	} else {
		out.user = User{Email: family.user, DisplayName: family.user, ID: derivedID(family.user)}
	}
	expiry := now.Add(out.ttl)
	e.tokens.access[out.access] = &accessToken{
		kind:      principalUser,
		principal: family.user,
		clientID:  family.clientID,
		scopes:    out.scopes,
		audience:  audienceWorkspace,
		expiresAt: expiry,
		family:    family,
	}
	family.extend(expiry)
	e.tokens.noteIssued(now)
	if slices.Contains(refreshScopes, ScopeOfflineAccess) {
		out.refresh = e.newOpaqueToken()
		rexp := now.Add(policy.refreshTTL())
		if !family.sessionEnd.IsZero() && family.sessionEnd.Before(rexp) {
			rexp = family.sessionEnd
		}
		e.tokens.refresh[out.refresh] = &refreshToken{family: family, scopes: slices.Clone(refreshScopes), expiresAt: rexp}
		family.extend(rexp)
		e.tokens.noteIssued(now)
	}
	return out
}

// idClaims are the claims of an emulator ID token.
type idClaims struct {
	Issuer            string `json:"iss"`
	Subject           string `json:"sub"`
	Audience          string `json:"aud"`
	IssuedAt          int64  `json:"iat"`
	Expiry            int64  `json:"exp"`
	AuthTime          int64  `json:"auth_time,omitempty"`
	Nonce             string `json:"nonce,omitempty"`
	AtHash            string `json:"at_hash,omitempty"`
	Email             string `json:"email,omitempty"`
	Name              string `json:"name,omitempty"`
	GivenName         string `json:"given_name,omitempty"`
	FamilyName        string `json:"family_name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
}

// finishUserTokens builds the token response, signing an ID token when
// openid was granted. It runs without e.mu held.
func (e *Emulator) finishUserTokens(r *http.Request, t issuedTokens, nonce string) (map[string]any, *oauthError) {
	body := map[string]any{
		"access_token": t.access,
		"token_type":   "Bearer",
		"expires_in":   expiresIn(t.ttl),
		"scope":        strings.Join(t.scopes, " "),
	}
	if t.refresh != "" {
		body["refresh_token"] = t.refresh
	}
	if slices.Contains(t.scopes, ScopeOpenID) {
		claims := idClaims{
			Issuer:   e.issuer(r),
			Subject:  t.user.Email,
			Audience: t.clientID,
			IssuedAt: t.now.Unix(),
			Expiry:   t.now.Add(t.ttl).Unix(),
			AuthTime: t.family.authTime.Unix(),
			Nonce:    nonce,
			AtHash:   atHash(t.access),
		}
		if slices.Contains(t.scopes, ScopeEmail) {
			claims.Email = t.user.Email
		}
		if slices.Contains(t.scopes, ScopeProfile) {
			claims.Name = t.user.DisplayName
			claims.GivenName, claims.FamilyName = t.user.givenFamily()
			claims.PreferredUsername = t.user.Email
		}
		idToken, err := e.signJWT(claims)
		if err != nil {
			e.log.Error("sign ID token", "err", err)
			return nil, &oauthError{status: http.StatusInternalServerError, code: "server_error", description: "Could not sign the ID token."}
		}
		body["id_token"] = idToken
	}
	return body, nil
}

// exchangeClientCredentials issues a machine-to-machine token to a service
// principal (RFC 6749 section 4.4).
func (e *Emulator) exchangeClientCredentials(form url.Values, creds clientCredentials, aud audience) (map[string]any, *oauthError) {
	scopes := strings.Fields(form.Get("scope"))
	if len(scopes) == 0 {
		scopes = []string{ScopeAllAPIs}
	}
	for _, s := range scopes {
		if isOIDCScope(s) {
			return nil, errInvalidScope("Scope " + strconv.Quote(s) + " cannot be used with client_credentials.")
		}
	}
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	sp, found := e.sps[creds.id]
	if !found {
		if app, _ := e.authenticateApp(creds, now); app != nil {
			return nil, &oauthError{status: http.StatusBadRequest, code: "unauthorized_client", description: "App integrations cannot use client_credentials; use a service principal."}
		}
	}
	if !found || !secretMatches(sp.secretHash, creds.secret) {
		return nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: "Client authentication failed."}
	}
	token := e.newOpaqueToken()
	e.tokens.access[token] = &accessToken{
		kind:      principalServicePrincipal,
		principal: sp.ClientID,
		clientID:  sp.ClientID,
		scopes:    dedupe(scopes),
		audience:  aud,
		expiresAt: now.Add(e.clientCredentialsTTL),
	}
	e.tokens.noteIssued(now)
	return map[string]any{
		"access_token": token,
		"token_type":   "Bearer",
		"expires_in":   expiresIn(e.clientCredentialsTTL),
		"scope":        strings.Join(dedupe(scopes), " "),
	}, nil
}

// dedupe drops repeated scopes, keeping the first occurrence's order.
func dedupe(scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
