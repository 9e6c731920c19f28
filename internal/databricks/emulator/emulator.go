// Package emulator is an in-process stand-in for Databricks, for dev mode and
// tests: an OpenID Connect provider (discovery, authorize with a login page
// for dev users, token endpoint with PKCE, refresh and client credentials,
// JWKS with key rotation), Model Serving with deterministic chat models, SCIM
// Me, and the account API for OAuth custom app integrations.
//
// One server plays both the workspace host and the account host. It enforces
// what Databricks documents: exact redirect URL matching, S256 PKCE,
// single-use short-lived codes, scopes, token expiry, endpoint permissions.
// Its clock, randomness and sleeps are injectable, and a Go API lets tests add
// users, endpoints and integrations, inject failures, rotate keys and count
// requests per route.
package emulator

import (
	"context"
	"crypto/rand"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults used when Options leave a field empty.
const (
	// DefaultAccountID is the account id the emulator serves.
	DefaultAccountID = "00000000-0000-4000-8000-0000000000ac"
	// DefaultAdminClientID and DefaultAdminSecret are the account admin
	// service principal's OAuth credentials.
	DefaultAdminClientID = "emulator-account-admin"
	DefaultAdminSecret   = "emulator-account-admin-secret"
	// DefaultCodeTTL is how long an authorization code stays valid.
	DefaultCodeTTL = 2 * time.Minute
	// DefaultAccessTokenTTL is the access token lifetime when an integration
	// sets none (Databricks: 1 hour).
	DefaultAccessTokenTTL = time.Hour
	// DefaultRefreshTokenTTL is the refresh token lifetime when an
	// integration sets none (Databricks: 7 days).
	DefaultRefreshTokenTTL = 7 * 24 * time.Hour
	// DefaultKeyGracePeriod is how long a rotated-out signing key stays in JWKS.
	DefaultKeyGracePeriod = 24 * time.Hour
)

// Route names, as passed to RequestCount and InjectRouteFault. They are the
// ServeMux patterns the emulator registers.
const (
	RouteOpenIDConfiguration = "GET /oidc/.well-known/openid-configuration"
	RouteOAuthServerMetadata = "GET /oidc/.well-known/oauth-authorization-server"
	RouteAuthorize           = "GET /oidc/v1/authorize"
	RouteAuthorizeSubmit     = "POST /oidc/v1/authorize"
	RouteToken               = "POST /oidc/v1/token"
	RouteKeys                = "GET /oidc/v1/keys"
	RouteKeysJSON            = "GET /oidc/jwks.json"
	RouteAccountToken        = "POST /oidc/accounts/{account_id}/v1/token"
	RouteListIntegrations    = "GET /api/2.0/accounts/{account_id}/oauth2/custom-app-integrations"
	RouteCreateIntegration   = "POST /api/2.0/accounts/{account_id}/oauth2/custom-app-integrations"
	RouteGetIntegration      = "GET /api/2.0/accounts/{account_id}/oauth2/custom-app-integrations/{integration_id}"
	RouteUpdateIntegration   = "PATCH /api/2.0/accounts/{account_id}/oauth2/custom-app-integrations/{integration_id}"
	RouteDeleteIntegration   = "DELETE /api/2.0/accounts/{account_id}/oauth2/custom-app-integrations/{integration_id}"
	RouteMe                  = "GET /api/2.0/preview/scim/v2/Me"
	RouteServingEndpoint     = "GET /api/2.0/serving-endpoints/{name}"
	RouteInvocations         = "POST /serving-endpoints/{name}/invocations"
)

// Options configure an Emulator. The zero value is usable.
type Options struct {
	// BaseURL is the URL clients use to reach the emulator, e.g.
	// http://127.0.0.1:41234; the issuer is BaseURL + "/oidc". Empty means
	// it is derived from each request's Host header. Start sets it.
	BaseURL string
	// AccountID is the one account served; empty means DefaultAccountID.
	AccountID string
	// Users are the dev users offered on the login page; nil means
	// DefaultUsers().
	Users []User
	// ServicePrincipals may use the client-credentials grant; nil means one
	// account admin with DefaultAdminClientID and DefaultAdminSecret.
	ServicePrincipals []ServicePrincipal
	// Endpoints are the serving endpoints; nil means DefaultEndpoints().
	Endpoints []Endpoint
	// PropagationDelay is how long integration changes made through the
	// account API take to reach login and the token endpoint (up to 30
	// minutes on real Databricks). Zero means immediately.
	PropagationDelay time.Duration
	// CodeTTL is the authorization code lifetime; zero means DefaultCodeTTL.
	CodeTTL time.Duration
	// ClientCredentialsTTL is the lifetime of machine-to-machine access
	// tokens; zero means one hour.
	ClientCredentialsTTL time.Duration
	// KeyGracePeriod is how long a rotated-out signing key is still served
	// in JWKS; zero means DefaultKeyGracePeriod.
	KeyGracePeriod time.Duration
	// Now is the clock for every expiry; nil means time.Now. Tests advance
	// it to expire codes and tokens without sleeping.
	Now func() time.Time
	// Rand is the source of ids, codes, tokens and secrets; nil means
	// crypto/rand. (Signing keys always come from crypto/rand.)
	Rand io.Reader
	// Sleep implements injected latency; nil means a real timer that stops
	// when ctx is done.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// ScrambleLists makes the account API answer an integration's
	// redirect_urls and scopes in an order of its own, not the one written:
	// reversed, with the first entry repeated at the end. Databricks
	// documents neither order nor deduplication, so clients must compare
	// these lists as sets; this mode checks that they do. Login is
	// unaffected.
	ScrambleLists bool
	// IgnoreEmptyLists makes PATCH treat an empty list like an absent field,
	// as a proto3-based API may (an empty repeated field looks like none on
	// the wire): the last redirect URL of an integration cannot be removed.
	IgnoreEmptyLists bool
}

// Emulator is the Databricks emulator, an http.Handler. Create it with New
// (or Start, which also listens on loopback). It is safe for concurrent use.
type Emulator struct {
	baseURL              string
	accountID            string
	codeTTL              time.Duration
	clientCredentialsTTL time.Duration
	keyGrace             time.Duration
	now                  func() time.Time
	sleep                func(ctx context.Context, d time.Duration) error
	log                  *slog.Logger
	mux                  *http.ServeMux
	counts               map[string]*atomic.Int64 // fixed after New
	scrambleLists        bool                     // fixed after New
	ignoreEmptyLists     bool                     // fixed after New
	pages                *template.Template

	randMu sync.Mutex
	rand   io.Reader

	keyMu sync.RWMutex
	keys  []*signingKey // keys[0] signs; the rest retire at retireAt

	mu               sync.Mutex
	propagationDelay time.Duration
	users            map[string]*User // by lower-case email
	userOrder        []string
	sps              map[string]*servicePrincipal // by client id
	integrations     map[string]*integrationRecord
	byClientID       map[string]*integrationRecord
	integrationSeq   int64
	endpoints        map[string]*endpoint
	routeFaults      map[string][]*faultState
	tokens           tokenStore
}

// New returns an emulator configured by opts. It generates an RSA signing key.
func New(opts Options) (*Emulator, error) {
	e := &Emulator{
		baseURL:              strings.TrimRight(opts.BaseURL, "/"),
		accountID:            opts.AccountID,
		codeTTL:              opts.CodeTTL,
		clientCredentialsTTL: opts.ClientCredentialsTTL,
		keyGrace:             opts.KeyGracePeriod,
		now:                  opts.Now,
		sleep:                opts.Sleep,
		log:                  opts.Logger,
		rand:                 opts.Rand,
		mux:                  http.NewServeMux(),
		counts:               map[string]*atomic.Int64{},
		scrambleLists:        opts.ScrambleLists,
		ignoreEmptyLists:     opts.IgnoreEmptyLists,
		propagationDelay:     opts.PropagationDelay,
		users:                map[string]*User{},
		sps:                  map[string]*servicePrincipal{},
		integrations:         map[string]*integrationRecord{},
		byClientID:           map[string]*integrationRecord{},
		endpoints:            map[string]*endpoint{},
		routeFaults:          map[string][]*faultState{},
		tokens:               newTokenStore(),
	}
	if e.accountID == "" {
		e.accountID = DefaultAccountID
	}
	if e.codeTTL <= 0 {
		e.codeTTL = DefaultCodeTTL
	}
	if e.clientCredentialsTTL <= 0 {
		e.clientCredentialsTTL = time.Hour
	}
	if e.keyGrace <= 0 {
		e.keyGrace = DefaultKeyGracePeriod
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.sleep == nil {
		e.sleep = sleepTimer
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.rand == nil {
		e.rand = rand.Reader
	}
	pages, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("parse emulator page templates: %w", err)
	}
	e.pages = pages
	key, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	e.keys = []*signingKey{key}

	users := opts.Users
	if users == nil {
		users = DefaultUsers()
	}
	for _, u := range users {
		if err := e.AddUser(u); err != nil {
			return nil, err
		}
	}
	sps := opts.ServicePrincipals
	if sps == nil {
		sps = []ServicePrincipal{{ClientID: DefaultAdminClientID, Secret: DefaultAdminSecret, DisplayName: "Emulator account admin", AccountAdmin: true}}
	}
	for _, sp := range sps {
		if err := e.AddServicePrincipal(sp); err != nil {
			return nil, err
		}
	}
	endpoints := opts.Endpoints
	if endpoints == nil {
		endpoints = DefaultEndpoints()
	}
	for _, ep := range endpoints {
		if err := e.AddEndpoint(ep); err != nil {
			return nil, err
		}
	}
	e.routes()
	return e, nil
}

func (e *Emulator) routes() {
	e.handle(RouteOpenIDConfiguration, e.handleDiscovery)
	e.handle(RouteOAuthServerMetadata, e.handleDiscovery)
	e.handle(RouteAuthorize, e.handleAuthorize)
	e.handle(RouteAuthorizeSubmit, e.handleAuthorize)
	e.handle(RouteToken, e.handleToken)
	e.handle(RouteKeys, e.handleKeys)
	e.handle(RouteKeysJSON, e.handleKeys)
	e.handle(RouteAccountToken, e.handleAccountToken)
	e.handle(RouteListIntegrations, e.handleListIntegrations)
	e.handle(RouteCreateIntegration, e.handleCreateIntegration)
	e.handle(RouteGetIntegration, e.handleGetIntegration)
	e.handle(RouteUpdateIntegration, e.handleUpdateIntegration)
	e.handle(RouteDeleteIntegration, e.handleDeleteIntegration)
	e.handle(RouteMe, e.handleMe)
	e.handle(RouteServingEndpoint, e.handleServingEndpoint)
	e.handle(RouteInvocations, e.handleInvocations)
	e.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, "ENDPOINT_NOT_FOUND", fmt.Sprintf("No API found for '%s %s'", r.Method, r.URL.Path))
	})
}

// handle registers h for pattern, counting requests and applying route faults.
func (e *Emulator) handle(pattern string, h http.HandlerFunc) {
	count := new(atomic.Int64)
	e.counts[pattern] = count
	e.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		if f, ok := e.takeRouteFault(pattern); ok && e.applyFault(w, r, f) {
			return
		}
		h(w, r)
	})
}

// ServeHTTP serves the emulated workspace and account APIs.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mux.ServeHTTP(w, r)
}

// RequestCount returns how many requests reached route (one of the Route
// constants) since New or the last ResetRequestCounts.
func (e *Emulator) RequestCount(route string) int64 {
	if c, ok := e.counts[route]; ok {
		return c.Load()
	}
	return 0
}

// RequestCounts returns the count of every route that saw a request.
func (e *Emulator) RequestCounts() map[string]int64 {
	out := map[string]int64{}
	for route, c := range e.counts {
		if n := c.Load(); n > 0 {
			out[route] = n
		}
	}
	return out
}

// ResetRequestCounts sets every route count to zero.
func (e *Emulator) ResetRequestCounts() {
	for _, c := range e.counts {
		c.Store(0)
	}
}

// AccountID returns the account id the emulator serves.
func (e *Emulator) AccountID() string { return e.accountID }

// SetPropagationDelay changes how long later integration changes take to
// reach login; changes already made keep their schedule.
func (e *Emulator) SetPropagationDelay(d time.Duration) {
	e.mu.Lock()
	e.propagationDelay = d
	e.mu.Unlock()
}

// base returns the external base URL: the configured one, or the request's.
func (e *Emulator) base(r *http.Request) string {
	if e.baseURL != "" {
		return e.baseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (e *Emulator) issuer(r *http.Request) string { return e.base(r) + "/oidc" }

// randomBytes reads n bytes from the injected source.
func (e *Emulator) randomBytes(n int) []byte {
	b := make([]byte, n)
	e.randMu.Lock()
	_, err := io.ReadFull(e.rand, b)
	e.randMu.Unlock()
	if err != nil {
		// A failing entropy source leaves nothing safe to do.
		panic(fmt.Sprintf("emulator: read random bytes: %v", err))
	}
	return b
}

// randomUUID returns a version 4 UUID from the injected source.
func (e *Emulator) randomUUID() string {
	b := e.randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Server is an Emulator listening on a loopback port.
type Server struct {
	*Emulator
	// URL is the base URL, e.g. http://127.0.0.1:41234, for both the
	// workspace and the account host.
	URL string
	srv *http.Server
}

// Start creates an emulator and serves it on 127.0.0.1 on a free port.
// opts.BaseURL defaults to the listening URL. Call Close when done.
func Start(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback for the Databricks emulator: %w", err)
	}
	url := "http://" + ln.Addr().String()
	if opts.BaseURL == "" {
		opts.BaseURL = url
	}
	em, err := New(opts)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	s := &Server{
		Emulator: em,
		URL:      url,
		srv: &http.Server{
			Handler:           em,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(em.log.Handler(), slog.LevelDebug),
		},
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			em.log.Error("Databricks emulator stopped serving", "err", err)
		}
	}()
	return s, nil
}

// Issuer returns the OpenID Connect issuer, URL + "/oidc".
func (s *Server) Issuer() string { return s.Emulator.baseURL + "/oidc" }

// Close stops the server at once, closing open connections and streams.
func (s *Server) Close() error { return s.srv.Close() }

// Shutdown stops the server gracefully, waiting for open requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
