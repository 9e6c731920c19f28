package emulator

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// TokenAccessPolicy sets an integration's token lifetimes; zero fields take
// the Databricks defaults.
type TokenAccessPolicy struct {
	AccessTokenTTLInMinutes          int  `json:"access_token_ttl_in_minutes,omitempty"`          // 5 to 1440; zero means 60
	RefreshTokenTTLInMinutes         int  `json:"refresh_token_ttl_in_minutes,omitempty"`         // 5 to 129600; zero means 10080 (7 days)
	EnableSingleUseRefreshTokens     bool `json:"enable_single_use_refresh_tokens,omitempty"`     // rotate refresh tokens, revoking the family on reuse
	AbsoluteSessionLifetimeInMinutes int  `json:"absolute_session_lifetime_in_minutes,omitempty"` // caps refreshes after login; zero means no cap
}

func (p TokenAccessPolicy) accessTTL() time.Duration {
	if p.AccessTokenTTLInMinutes > 0 {
		return time.Duration(p.AccessTokenTTLInMinutes) * time.Minute
	}
	return DefaultAccessTokenTTL
}

func (p TokenAccessPolicy) refreshTTL() time.Duration {
	if p.RefreshTokenTTLInMinutes > 0 {
		return time.Duration(p.RefreshTokenTTLInMinutes) * time.Minute
	}
	return DefaultRefreshTokenTTL
}

func (p TokenAccessPolicy) validate() error {
	if v := p.AccessTokenTTLInMinutes; v != 0 && (v < 5 || v > 1440) {
		return fmt.Errorf("access_token_ttl_in_minutes must be between 5 and 1440, got %d", v)
	}
	if v := p.RefreshTokenTTLInMinutes; v != 0 && (v < 5 || v > 129600) {
		return fmt.Errorf("refresh_token_ttl_in_minutes must be between 5 and 129600, got %d", v)
	}
	if p.AbsoluteSessionLifetimeInMinutes < 0 {
		return fmt.Errorf("absolute_session_lifetime_in_minutes must not be negative")
	}
	return nil
}

// Integration is an OAuth custom app integration.
type Integration struct {
	IntegrationID        string            // generated when empty
	ClientID             string            // generated when empty
	Name                 string            // required
	Confidential         bool              // gets a client secret
	RedirectURLs         []string          // matched exactly at authorize
	Scopes               []string          // the scopes logins may ask for
	UserAuthorizedScopes []string          // a subset of Scopes
	TokenAccessPolicy    TokenAccessPolicy // token lifetimes and rotation
	CreateTime           time.Time         // set at creation when zero
	CreatorUsername      string            // the creating principal
}

func (in Integration) clone() Integration {
	in.RedirectURLs = slices.Clone(in.RedirectURLs)
	in.Scopes = slices.Clone(in.Scopes)
	in.UserAuthorizedScopes = slices.Clone(in.UserAuthorizedScopes)
	return in
}

func (in *Integration) validate() error {
	if strings.TrimSpace(in.Name) == "" {
		return errors.New("name is required")
	}
	for _, u := range in.RedirectURLs {
		parsed, err := url.Parse(u)
		if err != nil || parsed.Scheme == "" || parsed.Fragment != "" {
			return fmt.Errorf("redirect url %q is not an absolute URL without fragment", u)
		}
	}
	for _, s := range in.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n\"\\") {
			return fmt.Errorf("scope %q is invalid", s)
		}
	}
	for _, s := range in.UserAuthorizedScopes {
		if !slices.Contains(in.Scopes, s) {
			return fmt.Errorf("user_authorized_scopes must be a subset of scopes; %q is not in scopes", s)
		}
	}
	return in.TokenAccessPolicy.validate()
}

// integrationRecord holds an integration as the account API sees it
// (current) and as login sees it (versions, delayed by propagation).
type integrationRecord struct {
	seq        int64
	current    *Integration // nil once deleted
	secretHash [32]byte
	versions   []loginVersion
}

type loginVersion struct {
	at    time.Time
	integ *Integration // nil: deleted
}

// publish schedules the current state to reach login at at.
func (rec *integrationRecord) publish(at time.Time) {
	var snapshot *Integration
	if rec.current != nil {
		c := rec.current.clone()
		snapshot = &c
	}
	rec.versions = append(rec.versions, loginVersion{at: at, integ: snapshot})
}

// loginView returns the integration as login sees it at now.
func (rec *integrationRecord) loginView(now time.Time) *Integration {
	for i := len(rec.versions) - 1; i >= 0; i-- {
		if !rec.versions[i].at.After(now) {
			// Older versions can never be seen again.
			rec.versions = rec.versions[i:]
			return rec.versions[0].integ
		}
	}
	return nil
}

// loginClient returns the integration with clientID as login sees it now.
// Callers hold e.mu.
func (e *Emulator) loginClient(clientID string, now time.Time) (*Integration, *integrationRecord) {
	rec, ok := e.byClientID[clientID]
	if !ok {
		return nil, nil
	}
	return rec.loginView(now), rec
}

// RegisterIntegration adds an integration directly, visible to login at once
// (no propagation delay), for example the pre-existing integration of
// "existing" mode. Empty IntegrationID and ClientID are generated. It returns
// the stored integration and, for confidential ones, the client secret.
func (e *Emulator) RegisterIntegration(in Integration) (Integration, string, error) {
	in = in.clone()
	if err := in.validate(); err != nil {
		return Integration{}, "", fmt.Errorf("emulator: register integration: %w", err)
	}
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	stored, secret, err := e.createIntegration(in, now, now)
	if err != nil {
		return Integration{}, "", fmt.Errorf("emulator: register integration: %w", err)
	}
	return stored, secret, nil
}

// createIntegration stores in, visible to login at visibleAt. Callers hold e.mu.
func (e *Emulator) createIntegration(in Integration, now, visibleAt time.Time) (Integration, string, error) {
	if in.IntegrationID == "" {
		in.IntegrationID = e.randomUUID()
	}
	if in.ClientID == "" {
		in.ClientID = e.randomUUID()
	}
	if _, dup := e.integrations[in.IntegrationID]; dup {
		return Integration{}, "", fmt.Errorf("integration %s already exists", in.IntegrationID)
	}
	if _, dup := e.byClientID[in.ClientID]; dup {
		return Integration{}, "", fmt.Errorf("client id %s is already used", in.ClientID)
	}
	if in.CreateTime.IsZero() {
		in.CreateTime = now
	}
	e.integrationSeq++
	rec := &integrationRecord{seq: e.integrationSeq, current: &in}
	var secret string
	if in.Confidential {
		secret = b64(e.randomBytes(32))
		rec.secretHash = sha256.Sum256([]byte(secret))
	}
	rec.publish(visibleAt)
	e.integrations[in.IntegrationID] = rec
	e.byClientID[in.ClientID] = rec
	return in.clone(), secret, nil
}

// Integration returns an integration as the account API sees it.
func (e *Emulator) Integration(integrationID string) (Integration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, ok := e.integrations[integrationID]
	if !ok || rec.current == nil {
		return Integration{}, false
	}
	return rec.current.clone(), true
}

// Integrations returns every integration, oldest first.
func (e *Emulator) Integrations() []Integration {
	e.mu.Lock()
	defer e.mu.Unlock()
	recs := e.liveRecords()
	out := make([]Integration, 0, len(recs))
	for _, rec := range recs {
		out = append(out, rec.current.clone())
	}
	return out
}

// liveRecords returns the non-deleted records in creation order. Callers hold e.mu.
func (e *Emulator) liveRecords() []*integrationRecord {
	recs := make([]*integrationRecord, 0, len(e.integrations))
	for _, rec := range e.integrations {
		if rec.current != nil {
			recs = append(recs, rec)
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq < recs[j].seq })
	return recs
}

// integrationJSON is the account API's wire form of an integration.
type integrationJSON struct {
	IntegrationID        string             `json:"integration_id"`
	ClientID             string             `json:"client_id"`
	Name                 string             `json:"name"`
	Confidential         bool               `json:"confidential"`
	RedirectURLs         []string           `json:"redirect_urls"`
	Scopes               []string           `json:"scopes"`
	UserAuthorizedScopes []string           `json:"user_authorized_scopes,omitempty"`
	TokenAccessPolicy    *TokenAccessPolicy `json:"token_access_policy,omitempty"`
	CreateTime           string             `json:"create_time"`
	CreatorUsername      string             `json:"creator_username,omitempty"`
}

// answer applies Options.ScrambleLists to an integration about to be sent.
func (e *Emulator) answer(out integrationJSON) integrationJSON {
	if e.scrambleLists {
		out.RedirectURLs = scramble(out.RedirectURLs)
		out.Scopes = scramble(out.Scopes)
	}
	return out
}

// scramble reverses list and repeats its first entry at the end.
func scramble(list []string) []string {
	out := slices.Clone(list)
	slices.Reverse(out)
	if len(out) > 0 {
		out = append(out, out[0])
	}
	return out
}

func toJSON(in *Integration, withCreator bool) integrationJSON {
	out := integrationJSON{
		IntegrationID:        in.IntegrationID,
		ClientID:             in.ClientID,
		Name:                 in.Name,
		Confidential:         in.Confidential,
		RedirectURLs:         slices.Clone(in.RedirectURLs),
		Scopes:               slices.Clone(in.Scopes),
		UserAuthorizedScopes: slices.Clone(in.UserAuthorizedScopes),
		CreateTime:           in.CreateTime.UTC().Format(time.RFC3339Nano),
	}
	if out.RedirectURLs == nil {
		out.RedirectURLs = []string{}
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	policy := in.TokenAccessPolicy
	policy.AccessTokenTTLInMinutes = int(policy.accessTTL() / time.Minute)
	policy.RefreshTokenTTLInMinutes = int(policy.refreshTTL() / time.Minute)
	out.TokenAccessPolicy = &policy
	if withCreator {
		out.CreatorUsername = in.CreatorUsername
	}
	return out
}

// accountCaller authenticates an account API call: an account-audience
// token of an account admin service principal with the all-apis scope, for
// this account. On failure it writes the answer and returns false.
func (e *Emulator) accountCaller(w http.ResponseWriter, r *http.Request) (*accessToken, bool) {
	tok, ok := e.authenticate(w, r, audienceAccount)
	if !ok {
		return nil, false
	}
	if r.PathValue("account_id") != e.accountID {
		writeAPIError(w, http.StatusForbidden, "PERMISSION_DENIED", "The token is not valid for account "+r.PathValue("account_id")+".")
		return nil, false
	}
	if !tok.hasScope(ScopeAllAPIs) {
		writeAPIError(w, http.StatusForbidden, "PERMISSION_DENIED", "Provided OAuth token does not have required scopes")
		return nil, false
	}
	e.mu.Lock()
	sp, found := e.sps[tok.principal]
	admin := found && sp.AccountAdmin
	e.mu.Unlock()
	if !admin {
		writeAPIError(w, http.StatusForbidden, "PERMISSION_DENIED", "Only account admins can manage OAuth app integrations.")
		return nil, false
	}
	return tok, true
}

// maxAPIBody bounds account API request bodies.
const maxAPIBody = 1 << 20

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "MALFORMED_REQUEST", "Could not read the request body.")
		return false
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		data = []byte("{}")
	}
	if err := json.Unmarshal(data, v); err != nil {
		writeAPIError(w, http.StatusBadRequest, "MALFORMED_REQUEST", "Could not parse request body as JSON: "+err.Error())
		return false
	}
	return true
}

func (e *Emulator) handleCreateIntegration(w http.ResponseWriter, r *http.Request) {
	tok, ok := e.accountCaller(w, r)
	if !ok {
		return
	}
	var req struct {
		Name                 string             `json:"name"`
		Confidential         bool               `json:"confidential"`
		RedirectURLs         []string           `json:"redirect_urls"`
		Scopes               []string           `json:"scopes"`
		UserAuthorizedScopes []string           `json:"user_authorized_scopes"`
		TokenAccessPolicy    *TokenAccessPolicy `json:"token_access_policy"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	in := Integration{
		Name:                 req.Name,
		Confidential:         req.Confidential,
		RedirectURLs:         req.RedirectURLs,
		Scopes:               req.Scopes,
		UserAuthorizedScopes: req.UserAuthorizedScopes,
		CreatorUsername:      tok.principal,
	}
	if req.TokenAccessPolicy != nil {
		in.TokenAccessPolicy = *req.TokenAccessPolicy
	}
	if err := in.validate(); err != nil {
		writeAPIError(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", err.Error())
		return
	}
	now := e.now()
	e.mu.Lock()
	stored, secret, err := e.createIntegration(in, now, now.Add(e.propagationDelay))
	e.mu.Unlock()
	if err != nil {
		writeAPIError(w, http.StatusConflict, "RESOURCE_ALREADY_EXISTS", err.Error())
		return
	}
	resp := map[string]string{"integration_id": stored.IntegrationID, "client_id": stored.ClientID}
	if secret != "" {
		resp["client_secret"] = secret
	}
	writeJSON(w, http.StatusOK, resp)
}

func integrationNotFound(w http.ResponseWriter, id string) {
	writeAPIError(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", fmt.Sprintf("OAuth app integration %s does not exist.", id))
}

func (e *Emulator) handleGetIntegration(w http.ResponseWriter, r *http.Request) {
	if _, ok := e.accountCaller(w, r); !ok {
		return
	}
	id := r.PathValue("integration_id")
	e.mu.Lock()
	rec, found := e.integrations[id]
	var out integrationJSON
	exists := found && rec.current != nil
	if exists {
		out = e.answer(toJSON(rec.current, true))
	}
	e.mu.Unlock()
	if !exists {
		integrationNotFound(w, id)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// defaultPageSize is used when a list request gives none.
const defaultPageSize = 100

func (e *Emulator) handleListIntegrations(w http.ResponseWriter, r *http.Request) {
	if _, ok := e.accountCaller(w, r); !ok {
		return
	}
	q := r.URL.Query()
	pageSize := defaultPageSize
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeAPIError(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "page_size must be a non-negative integer")
			return
		}
		if n > 0 {
			pageSize = n
		}
	}
	var after int64
	if tok := q.Get("page_token"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		seq, perr := strconv.ParseInt(strings.TrimPrefix(string(raw), "after:"), 10, 64)
		if err != nil || perr != nil || !strings.HasPrefix(string(raw), "after:") {
			writeAPIError(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "page_token is invalid")
			return
		}
		after = seq
	}
	withCreator := q.Get("include_creator_username") == "true"
	e.mu.Lock()
	apps := []integrationJSON{}
	next := ""
	for _, rec := range e.liveRecords() {
		if rec.seq <= after {
			continue
		}
		if len(apps) == pageSize {
			next = base64.RawURLEncoding.EncodeToString([]byte("after:" + strconv.FormatInt(after, 10)))
			break
		}
		apps = append(apps, e.answer(toJSON(rec.current, withCreator)))
		after = rec.seq
	}
	e.mu.Unlock()
	resp := map[string]any{"apps": apps}
	if next != "" {
		resp["next_page_token"] = next
	}
	writeJSON(w, http.StatusOK, resp)
}

func (e *Emulator) handleUpdateIntegration(w http.ResponseWriter, r *http.Request) {
	if _, ok := e.accountCaller(w, r); !ok {
		return
	}
	id := r.PathValue("integration_id")
	var fields map[string]json.RawMessage
	if !decodeBody(w, r, &fields) {
		return
	}
	present := func(name string) (json.RawMessage, bool) {
		raw, ok := fields[name]
		return raw, ok && string(raw) != "null"
	}
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, found := e.integrations[id]
	if !found || rec.current == nil {
		integrationNotFound(w, id)
		return
	}
	updated := rec.current.clone()
	// Each list present in the request replaces the stored one.
	for name, dst := range map[string]*[]string{
		"redirect_urls":          &updated.RedirectURLs,
		"scopes":                 &updated.Scopes,
		"user_authorized_scopes": &updated.UserAuthorizedScopes,
	} {
		if raw, ok := present(name); ok {
			var list []string
			if err := json.Unmarshal(raw, &list); err != nil {
				writeAPIError(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", name+" must be a list of strings")
				return
			}
			if len(list) == 0 && e.ignoreEmptyLists {
				continue
			}
			*dst = list
		}
	}
	if raw, ok := present("token_access_policy"); ok {
		var policy TokenAccessPolicy
		if err := json.Unmarshal(raw, &policy); err != nil {
			writeAPIError(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "token_access_policy is malformed")
			return
		}
		updated.TokenAccessPolicy = policy
	}
	if err := updated.validate(); err != nil {
		writeAPIError(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", err.Error())
		return
	}
	rec.current = &updated
	rec.publish(now.Add(e.propagationDelay))
	writeJSON(w, http.StatusOK, struct{}{})
}

func (e *Emulator) handleDeleteIntegration(w http.ResponseWriter, r *http.Request) {
	if _, ok := e.accountCaller(w, r); !ok {
		return
	}
	id := r.PathValue("integration_id")
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, found := e.integrations[id]
	if !found || rec.current == nil {
		integrationNotFound(w, id)
		return
	}
	rec.current = nil
	rec.publish(now.Add(e.propagationDelay))
	writeJSON(w, http.StatusOK, struct{}{})
}
