package webapp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
	"github.com/servingapp/servingapp/internal/natstest"
	"github.com/servingapp/servingapp/webapp"
	"github.com/servingapp/servingapp/webapp/session"
)

const (
	testNamespace = "analytics"
	testName      = "summarizer"
	prefix        = "/chat"
	allScopes     = "openid email profile offline_access all-apis"
)

var testSessionKey = bytes.Repeat([]byte{0x42}, session.KeySize)

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// options shape a harness.
type options struct {
	nats           bool // sessions in KV and audit events to JetStream
	memorySessions bool // with nats: sessions in memory, audit to JetStream
	tls            bool
	instances      int
	accessTTL      int // minutes, default 5
	refreshTTL     int // minutes, default Databricks'
	config         func(i int, c *webapp.Config)
	quiet          bool          // discard logs (benchmarks)
	root           bool          // serve the apps at "/" instead of prefix
	store          session.Store // sessions of every instance, when set
}

// harness is the Databricks emulator, optionally an embedded nats-server,
// and app instances sharing one OAuth integration and one manual clock.
type harness struct {
	t         testing.TB
	clock     *clock.Manual
	emu       *emulator.Server
	integ     emulator.Integration
	secret    string
	nats      *natstest.Server
	natsURL   string
	js        jetstream.JetStream
	logs      *syncBuffer
	hook      *hookTransport
	instances []*instance
	tlsRoots  *x509.CertPool
	secrets   *secretRecorder

	mu         sync.Mutex
	cookieName string // of the session cookie, once sessionCookieName learned it
}

// instance is one running App.
type instance struct {
	app    *webapp.App
	url    string // scheme://host:port, without the prefix
	prefix string // "/chat", or "" for an app at the root
	cfg    webapp.Config
	srv    *httptest.Server
}

func (in *instance) at(path string) string { return in.url + in.prefix + path }

func newHarness(t testing.TB, o options) *harness {
	t.Helper()
	if o.instances == 0 {
		o.instances = 1
	}
	if o.accessTTL == 0 {
		o.accessTTL = 5
	}
	h := &harness{
		t:       t,
		clock:   clock.NewManual(time.Now().Truncate(time.Second)),
		logs:    &syncBuffer{},
		secrets: &secretRecorder{},
	}
	emu, err := emulator.Start(emulator.Options{Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	h.emu = emu
	h.hook = &hookTransport{base: http.DefaultTransport.(*http.Transport).Clone(), secrets: h.secrets}
	if o.nats {
		h.natsURL, h.nats = natstest.Start(t)
		_, h.js = natstest.Connect(t, h.natsURL)
	}

	pfx := prefix
	if o.root {
		pfx = ""
	}
	// Listen first: the redirect URLs must be registered before the apps start.
	listeners := make([]net.Listener, o.instances)
	var redirects []string
	for i := range listeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners[i] = ln
		scheme := "http"
		if o.tls {
			scheme = "https"
		}
		redirects = append(redirects, scheme+"://"+ln.Addr().String()+pfx+"/oauth/callback")
	}
	h.integ, h.secret, err = emu.RegisterIntegration(emulator.Integration{
		Name:         testNamespace + "/" + testName,
		Confidential: true,
		RedirectURLs: redirects,
		Scopes:       strings.Fields(allScopes),
		TokenAccessPolicy: emulator.TokenAccessPolicy{
			AccessTokenTTLInMinutes:      o.accessTTL,
			RefreshTokenTTLInMinutes:     o.refreshTTL,
			EnableSingleUseRefreshTokens: true,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.secrets.add(secretClient, h.secret)
	for i, ln := range listeners {
		cfg := webapp.Config{
			DatabricksHost:     emu.URL,
			ServingEndpoint:    "summarizer",
			ClientID:           h.integ.ClientID,
			ClientSecret:       h.secret,
			RedirectURL:        redirects[i],
			Namespace:          testNamespace,
			Name:               testName,
			PathPrefix:         pfx + "/",
			SessionKey:         testSessionKey,
			TrustedProxies:     nil,
			InsecureDevCookies: !o.tls,
			AuditOutboxDir:     t.TempDir(),
		}
		if o.config != nil {
			o.config(i, &cfg)
		}
		in := h.startInstance(ln, cfg, o)
		in.prefix = pfx
		h.instances = append(h.instances, in)
	}
	return h
}

func (h *harness) startInstance(ln net.Listener, cfg webapp.Config, o options) *instance {
	t := h.t
	var logs io.Writer = h.logs
	level := slog.LevelDebug
	if o.quiet {
		logs, level = io.Discard, slog.LevelInfo
	}
	deps := webapp.Deps{
		Logger:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level})),
		Clock:      h.clock,
		HTTPClient: &http.Client{Transport: h.hook},
	}
	if o.nats {
		nc, _ := natstest.Connect(t, h.natsURL)
		deps.NATS = nc
		if o.memorySessions {
			deps.Sessions = session.NewMemoryStore(h.clock.Now)
		}
	}
	if o.store != nil {
		deps.Sessions = o.store
	}
	app, err := webapp.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(app.Handler())
	_ = srv.Listener.Close()
	srv.Listener = ln
	if o.tls {
		srv.StartTLS()
		if h.tlsRoots == nil {
			h.tlsRoots = x509.NewCertPool()
			h.tlsRoots.AddCert(srv.Certificate())
		}
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = app.Close(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := app.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return &instance{app: app, url: srv.URL, cfg: cfg, srv: srv}
}

// Kinds of secret the recorder keeps, named in failures (never the value).
const (
	secretClient  = "client secret"
	secretToken   = "OAuth token"
	secretCode    = "authorization code"
	secretSession = "session id"
	secretLogin   = "login cookie"
	secretCSRF    = "CSRF token"
)

// secret is one value issued in a test that must never be logged or
// audited, and what it is.
type secret struct{ kind, value string }

// secretRecorder remembers every token, code, client secret, session id
// (raw cookie value), login cookie and CSRF token issued in a test, to prove
// none of them leaks into logs or events.
type secretRecorder struct {
	mu     sync.Mutex
	values []secret
	seen   map[string]bool
}

func (s *secretRecorder) add(kind, v string) {
	if len(v) < 8 {
		return // too short to be one, and would match by accident
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[v] {
		return
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[v] = true
	s.values = append(s.values, secret{kind, v})
}

func (s *secretRecorder) all() []secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]secret(nil), s.values...)
}

// hookTransport sits between the apps and the emulator: it records the
// tokens of every token response, can replace the ID token with a forged
// one, and can add a key to the JWKS the apps trust.
type hookTransport struct {
	base    http.RoundTripper
	secrets *secretRecorder

	mu       sync.Mutex
	forge    func(claims map[string]any, accessToken string) string // returns the replacement id_token
	extraJWK map[string]any
}

func (h *hookTransport) setForge(f func(claims map[string]any, accessToken string) string) {
	h.mu.Lock()
	h.forge = f
	h.mu.Unlock()
}

func (h *hookTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	switch req.URL.Path {
	case "/oidc/v1/token":
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			for _, k := range []string{"access_token", "refresh_token", "id_token"} {
				if s, ok := m[k].(string); ok {
					h.secrets.add(secretToken, s)
				}
			}
			h.mu.Lock()
			forge := h.forge
			h.mu.Unlock()
			if id, ok := m["id_token"].(string); ok && forge != nil {
				m["id_token"] = forge(jwtClaims(id), m["access_token"].(string))
				h.secrets.add(secretToken, m["id_token"].(string))
				body, _ = json.Marshal(m)
			}
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Del("Content-Length")
	case "/oidc/v1/keys":
		h.mu.Lock()
		extra := h.extraJWK
		h.mu.Unlock()
		if extra == nil {
			return resp, nil
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		var set struct {
			Keys []any `json:"keys"`
		}
		if json.Unmarshal(body, &set) == nil {
			set.Keys = append(set.Keys, extra)
			body, _ = json.Marshal(set)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Del("Content-Length")
	}
	return resp, nil
}

// browser is a cookie-jar HTTP client that signs in like a person would.
type browser struct {
	t      testing.TB
	h      *harness
	client *http.Client
	// stopAt, when set, makes the client stop at (not follow) a redirect to
	// a URL whose path it matches.
	stopAt     string
	cookies    []*http.Cookie // every Set-Cookie seen
	setCookies []string       // and each as sent, with the URL that set it
	mu         sync.Mutex
}

type recordingTransport struct {
	base http.RoundTripper
	b    *browser
}

func (rt recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if code := req.URL.Query().Get("code"); code != "" {
		rt.b.h.secrets.add(secretCode, code)
	}
	resp, err := rt.base.RoundTrip(req)
	if err == nil {
		for _, c := range resp.Cookies() {
			if !isAppCookie(c.Name) {
				continue
			}
			kind := secretSession
			if strings.HasSuffix(c.Name, "-login") {
				kind = secretLogin
			}
			rt.b.h.secrets.add(kind, c.Value)
		}
		rt.b.mu.Lock()
		rt.b.cookies = append(rt.b.cookies, resp.Cookies()...)
		for _, v := range resp.Header.Values("Set-Cookie") {
			rt.b.setCookies = append(rt.b.setCookies, req.URL.Path+" "+v)
		}
		rt.b.mu.Unlock()
	}
	return resp, err
}

// isAppCookie reports whether name is one of the apps' cookies (session or
// login), in either naming (__Host- over TLS, plain in dev mode).
func isAppCookie(name string) bool {
	return strings.HasPrefix(name, "__Host-sa-") || strings.HasPrefix(name, "sa-")
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if h.tlsRoots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: h.tlsRoots}
	}
	b := &browser{t: h.t, h: h}
	b.client = &http.Client{
		Jar:       jar,
		Transport: recordingTransport{base: tr, b: b},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if b.stopAt != "" && req.URL.Path == b.stopAt {
				return http.ErrUseLastResponse
			}
			if len(via) > 10 {
				return fmt.Errorf("too many redirects")
			}
			return nil
		},
	}
	return b
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	req.Header.Set("User-Agent", "webapp-test-browser/1")
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	// Every CSRF token a page or /api/me hands out is a secret too.
	for _, re := range []*regexp.Regexp{hiddenCSRF, jsonCSRF} {
		for _, m := range re.FindAllSubmatch(body, -1) {
			b.h.secrets.add(secretCSRF, string(m[1]))
		}
	}
	return resp, string(body)
}

func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) postForm(u string, v url.Values) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(v.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) postJSON(u, csrf string, body any) (*http.Response, string) {
	b.t.Helper()
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(raw))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	return b.do(req)
}

var (
	formAction  = regexp.MustCompile(`<form id="login-form" method="post" action="([^"]+)">`)
	hiddenCSRF  = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	jsonCSRF    = regexp.MustCompile(`"csrf_token":"([^"]*)"`)
	metaRefresh = regexp.MustCompile(`<meta http-equiv="refresh" content="0; url=([^"]+)">`)
	continueURL = regexp.MustCompile(`<a id="continue" class="button" href="([^"]+)">`)
)

// follow moves on from the app's continue page the way a browser does (its
// meta refresh, which must agree with its link) and returns what follows.
func (b *browser) follow(resp *http.Response, page string) (*http.Response, string) {
	b.t.Helper()
	refresh, link := metaRefresh.FindStringSubmatch(page), continueURL.FindStringSubmatch(page)
	if refresh == nil || link == nil || refresh[1] != link[1] {
		b.t.Fatalf("not a continue page with a meta refresh and a matching link:\n%s", page)
	}
	next, err := resp.Request.URL.Parse(html.UnescapeString(refresh[1]))
	if err != nil {
		b.t.Fatal(err)
	}
	return b.get(next.String())
}

// cspDirective returns the value of one directive of a Content-Security-Policy.
func cspDirective(csp, name string) string {
	for _, d := range strings.Split(csp, ";") {
		if n, v, _ := strings.Cut(strings.TrimSpace(d), " "); n == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// chooseUser presses the user's button on the emulator's login page (the
// last response) and returns the response that follows.
func (b *browser) chooseUser(resp *http.Response, page, email string) (*http.Response, string) {
	b.t.Helper()
	if !strings.Contains(page, `id="`+emulator.LoginButtonID(email)+`"`) {
		b.t.Fatalf("not the emulator login page (status %d):\n%s", resp.StatusCode, page)
	}
	m := formAction.FindStringSubmatch(page)
	action, err := resp.Request.URL.Parse(html.UnescapeString(m[1]))
	if err != nil {
		b.t.Fatal(err)
	}
	return b.postForm(action.String(), url.Values{"user": {email}})
}

// login signs in through in's /login and returns the final page.
func (b *browser) login(in *instance, email string) (*http.Response, string) {
	b.t.Helper()
	resp, page := b.get(in.at("/login"))
	return b.chooseUser(resp, page, email)
}

// authorize runs a login up to the callback and returns the callback URL
// the emulator redirected to, without calling it.
func (b *browser) authorize(in *instance, loginURL, email string) *url.URL {
	b.t.Helper()
	resp, page := b.get(loginURL)
	b.stopAt = in.prefix + "/oauth/callback"
	defer func() { b.stopAt = "" }()
	resp, body := b.chooseUser(resp, page, email)
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("login did not redirect to the callback: %d %s", resp.StatusCode, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// noFollow performs a GET and returns the response without following redirects.
func (b *browser) noFollow(u string) (*http.Response, string) {
	b.t.Helper()
	pu, _ := url.Parse(u)
	b.stopAt = pu.Path
	saved := b.client.CheckRedirect
	b.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	defer func() { b.client.CheckRedirect, b.stopAt = saved, "" }()
	return b.get(u)
}

func (b *browser) me(in *instance) (int, map[string]any) {
	b.t.Helper()
	resp, body := b.get(in.at("/api/me"))
	var m map[string]any
	_ = json.Unmarshal([]byte(body), &m)
	return resp.StatusCode, m
}

func (b *browser) csrf(in *instance) string {
	b.t.Helper()
	status, m := b.me(in)
	if status != http.StatusOK {
		b.t.Fatalf("GET /api/me: %d %v", status, m)
	}
	return m["csrf_token"].(string)
}

// sessionCookie returns the one session cookie the browser holds for in,
// failing when it holds none or several.
func (b *browser) sessionCookie(t *testing.T, in *instance) *http.Cookie {
	t.Helper()
	u, err := url.Parse(in.url)
	if err != nil {
		t.Fatal(err)
	}
	var found []*http.Cookie
	for _, c := range b.client.Jar.Cookies(u) {
		if isAppCookie(c.Name) && !strings.HasSuffix(c.Name, "-login") {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the browser holds %d session cookies for %s, want 1", len(found), in.url)
	}
	return found[0]
}

// lastSetSessionCookie returns the last session cookie an app set in the
// browser, with its attributes as sent.
func (b *browser) lastSetSessionCookie(t *testing.T) *http.Cookie {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.cookies) - 1; i >= 0; i-- {
		if c := b.cookies[i]; isAppCookie(c.Name) && !strings.HasSuffix(c.Name, "-login") && c.Value != "" {
			return c
		}
	}
	t.Fatal("no session cookie was set")
	return nil
}

// plantSessionCookie puts value into the browser as in's session cookie,
// the way an attacker who can set cookies for the host would. The cookie's
// name is learned from a sign-in of another browser.
func (b *browser) plantSessionCookie(t *testing.T, in *instance, value string) {
	t.Helper()
	u, err := url.Parse(in.url)
	if err != nil {
		t.Fatal(err)
	}
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: b.h.sessionCookieName(t, in), Value: value, Path: "/"}})
}

// sessionCookieName signs in once (per harness) to learn the name of the
// apps' session cookie.
func (h *harness) sessionCookieName(t *testing.T, in *instance) string {
	t.Helper()
	h.mu.Lock()
	name := h.cookieName
	h.mu.Unlock()
	if name != "" {
		return name
	}
	probe := h.browser()
	probe.login(in, "bob@example.com")
	name = probe.sessionCookie(t, in).Name
	h.mu.Lock()
	h.cookieName = name
	h.mu.Unlock()
	return name
}

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := hiddenCSRF.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in page:\n%s", page)
	}
	return m[1]
}

// elementText returns the text of the element with id, or "" (good enough
// for the app's simple markup).
func elementText(page, id string) string {
	re := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// events reads every audit event of the test app from JetStream, after the
// apps have published what they queued.
func (h *harness) events() []audit.StoredAuditEvent {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, in := range h.instances {
		if err := in.app.Publisher().Flush(ctx); err != nil {
			h.t.Fatal(err)
		}
	}
	evs, err := audit.ReadAuditEvents(ctx, h.js, audit.AuditAppSubjects(testNamespace, testName), 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return evs
}

// eventFor returns the event of type t caused by the request with id requestID.
func eventFor(t *testing.T, evs []audit.StoredAuditEvent, typ audit.EventType, requestID string) audit.StoredAuditEvent {
	t.Helper()
	for _, e := range evs {
		if e.Type == typ && e.Event.Metadata.CorrelationUID == requestID {
			return e
		}
	}
	t.Fatalf("no %s event for request %s among %d events", typ, requestID, len(evs))
	return audit.StoredAuditEvent{}
}

func ofType(evs []audit.StoredAuditEvent, typ audit.EventType) []audit.StoredAuditEvent {
	var out []audit.StoredAuditEvent
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}
