package emulator

import (
	"crypto/sha256"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// handleDiscovery serves both discovery documents (RFC 8414 and OpenID
// Connect Discovery share the content).
func (e *Emulator) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	base := e.base(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base + "/oidc",
		"authorization_endpoint":                base + "/oidc/v1/authorize",
		"token_endpoint":                        base + "/oidc/v1/token",
		"jwks_uri":                              base + "/oidc/v1/keys",
		"scopes_supported":                      []string{ScopeAllAPIs, ScopeSQL, ScopeOfflineAccess, ScopeOpenID, ScopeProfile, ScopeEmail},
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"client_credentials", "authorization_code", "refresh_token"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"claims_supported": []string{"iss", "sub", "aud", "iat", "exp", "auth_time", "nonce", "at_hash",
			"name", "given_name", "family_name", "preferred_username", "email"},
		"request_uri_parameter_supported": false,
	})
}

// authzRequest is a validated authorization request.
type authzRequest struct {
	client      *Integration
	redirectURI string
	state       string
	nonce       string
	challenge   string
	scopes      []string
}

// redirectError sends an OAuth error back to the (already validated) client.
func redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state, code, description string) {
	u, _ := url.Parse(redirectURI)
	q := u.Query()
	q.Set("error", code)
	if description != "" {
		q.Set("error_description", description)
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// validPKCEValue reports whether s is 43-128 characters of the RFC 7636
// unreserved alphabet (both verifiers and S256 challenges fit).
func validPKCEValue(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// handleAuthorize shows the login page (GET) or completes the login (POST
// with user=<email>). Authorization parameters come from the query string
// (and, for POST, may also come from the form body). An unknown client or a
// redirect URI that does not exactly match a registered one gets an error
// page, never a redirect.
func (e *Emulator) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		e.renderAuthorizeError(w, "invalid_request", "The request could not be parsed.")
		return
	}
	param := r.Form.Get
	now := e.now()

	clientID := param("client_id")
	e.mu.Lock()
	client, _ := e.loginClient(clientID, now)
	var clientCopy Integration
	if client != nil {
		clientCopy = client.clone()
	}
	e.mu.Unlock()
	if clientID == "" || client == nil {
		e.renderAuthorizeError(w, "invalid_client", "Unknown client_id "+strconv.Quote(clientID)+".")
		return
	}
	redirectURI := param("redirect_uri")
	if redirectURI == "" {
		e.renderAuthorizeError(w, "invalid_request", "redirect_uri is required.")
		return
	}
	if !slices.Contains(clientCopy.RedirectURLs, redirectURI) {
		e.renderAuthorizeError(w, "invalid_request", "redirect_uri "+strconv.Quote(redirectURI)+" does not match any redirect URL registered for this app.")
		return
	}

	// From here on errors go back to the client.
	state := param("state")
	fail := func(code, description string) { redirectError(w, r, redirectURI, state, code, description) }
	if rt := param("response_type"); rt != "code" {
		fail("unsupported_response_type", "response_type must be code.")
		return
	}
	challenge := param("code_challenge")
	if challenge == "" {
		fail("invalid_request", "code_challenge is required (PKCE).")
		return
	}
	if param("code_challenge_method") != "S256" {
		fail("invalid_request", "code_challenge_method must be S256.")
		return
	}
	if !validPKCEValue(challenge) {
		fail("invalid_request", "code_challenge is malformed.")
		return
	}
	scopes := strings.Fields(param("scope"))
	if len(scopes) == 0 {
		fail("invalid_scope", "scope is required.")
		return
	}
	for _, s := range scopes {
		if !slices.Contains(clientCopy.Scopes, s) {
			fail("invalid_scope", "Scope "+strconv.Quote(s)+" is not allowed for this app.")
			return
		}
	}
	if slices.Contains(strings.Fields(param("prompt")), "none") {
		fail("login_required", "The user is not signed in.")
		return
	}
	req := &authzRequest{
		client:      &clientCopy,
		redirectURI: redirectURI,
		state:       state,
		nonce:       param("nonce"),
		challenge:   challenge,
		scopes:      dedupe(scopes),
	}

	if r.Method != http.MethodPost {
		e.renderLogin(w, http.StatusOK, e.loginPageFor(r, req, ""))
		return
	}
	email := strings.ToLower(strings.TrimSpace(r.PostForm.Get("user")))
	e.mu.Lock()
	_, known := e.users[email]
	e.mu.Unlock()
	if !known {
		e.renderLogin(w, http.StatusBadRequest, e.loginPageFor(r, req, "Choose one of the users below."))
		return
	}
	code := e.newOpaqueToken()
	e.mu.Lock()
	e.tokens.codes[code] = &authCode{
		clientID:    clientCopy.ClientID,
		redirectURI: redirectURI,
		user:        email,
		scopes:      req.scopes,
		nonce:       req.nonce,
		challenge:   challenge,
		authTime:    now,
		expiresAt:   now.Add(e.codeTTL),
	}
	e.tokens.noteIssued(now)
	e.mu.Unlock()

	u, _ := url.Parse(redirectURI)
	q := u.Query()
	q.Set("code", code)
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (e *Emulator) loginPageFor(r *http.Request, req *authzRequest, errMsg string) loginPage {
	// Post back to the same URL: the authorization parameters ride along in
	// the query string, the chosen user in the body.
	action := &url.URL{Path: "/oidc/v1/authorize", RawQuery: r.URL.RawQuery}
	if r.Method == http.MethodPost && r.URL.RawQuery == "" {
		q := url.Values{}
		for k, v := range r.PostForm {
			if k != "user" {
				q[k] = v
			}
		}
		action.RawQuery = q.Encode()
	}
	page := loginPage{ClientName: req.client.Name, Action: action.String(), Error: errMsg}
	seen := map[string]int{}
	for _, u := range e.Users() {
		id := LoginButtonID(u.Email)
		seen[id]++
		if n := seen[id]; n > 1 {
			id += "-" + strconv.Itoa(n)
		}
		page.Users = append(page.Users, loginUser{Email: u.Email, DisplayName: u.DisplayName, ButtonID: id})
	}
	return page
}

// pkceS256 computes the S256 code challenge of a verifier.
func pkceS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return b64(sum[:])
}

// writeTokenResponse writes a successful token answer.
func writeTokenResponse(w http.ResponseWriter, body map[string]any) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, body)
}

// expiresIn renders a lifetime in whole seconds.
func expiresIn(d time.Duration) int64 { return int64(d / time.Second) }
