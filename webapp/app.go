// Package webapp is the per-app web application every ServingApp runs: users
// sign in with Databricks (OpenID Connect, authorization code with PKCE),
// see who they are, and call the app's Model Serving endpoint with their own
// token, from a summarizer form or a JSON API. Sessions live server-side
// (NATS JetStream KV, or memory), every login and invocation becomes an
// audit event on JetStream, and the app serves health, readiness and
// Prometheus metrics. The servingapp-webapp binary runs one App; dev mode
// (controller/local) runs many in one process.
package webapp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/databricks"
	"github.com/servingapp/servingapp/webapp/login"
	"github.com/servingapp/servingapp/webapp/session"
)

// Deps are what an App gets from its host rather than from configuration.
// Every field is optional.
type Deps struct {
	// Logger receives JSON access logs and diagnostics; nil discards them.
	Logger *slog.Logger
	// Clock decides token, session and login expiry; nil means the real clock.
	Clock clock.Clock
	// HTTPClient calls Databricks (OIDC and serving); nil means a client
	// with sensible timeouts. Its Timeout must not cut streams short.
	HTTPClient *http.Client
	// NATS carries sessions (KV) and audit events. Nil means memory sessions
	// and audit events kept in the outbox only.
	NATS *nats.Conn
	// Registerer receives the app's metrics and Gatherer serves /metrics.
	// Nil means a fresh registry of the app's own (never the global one).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Rand supplies session ids, CSRF tokens and login secrets; nil means crypto/rand.
	Rand io.Reader
	// Sessions overrides the session store (for example memory sessions
	// while audit events go to NATS).
	Sessions session.Store
}

// App is one running web app. Create it with New, serve Handler, wait for
// Ready, and Close it after the HTTP server has shut down.
type App struct {
	cfg        Config
	base       string // path prefix without trailing slash, "" for the root
	log        *slog.Logger
	clock      clock.Clock
	httpClient *http.Client
	rand       io.Reader
	js         jetstream.JetStream
	ws         *databricks.WorkspaceClient
	publisher  *audit.Publisher
	metrics    *metrics
	gatherer   prometheus.Gatherer
	pages      *pages
	cookies    cookieNames
	loginSeal  *session.Sealer
	replicaID  string
	requestSeq atomic.Uint64
	handler    http.Handler
	refreshes  singleflight.Group
	// pendingSlots bounds the requests typed before sign-in this replica keeps.
	pendingSlots pendingSlots

	sessions atomic.Pointer[session.Manager]
	provider atomic.Pointer[login.Provider]

	ready     chan struct{}
	initErr   atomic.Pointer[string]
	stopInit  context.CancelFunc
	initDone  chan struct{}
	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and assembles an App. It does no network I/O: discovery
// of the OpenID provider and opening the session bucket happen in the
// background, and Ready reports when they are done. The audit outbox is
// opened here; New fails when every candidate directory is held by another
// publisher.
func New(cfg Config, deps Deps) (*App, error) {
	if problems := cfg.problems(false); len(problems) > 0 {
		return nil, configError(problems)
	}
	cfg = cfg.withDefaults()
	a := &App{
		cfg:        cfg,
		base:       cfg.PathPrefix,
		log:        deps.Logger,
		clock:      deps.Clock,
		httpClient: deps.HTTPClient,
		rand:       deps.Rand,
		ready:      make(chan struct{}),
		initDone:   make(chan struct{}),
	}
	a.pendingSlots.max = cfg.MaxPendingRequests
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("app", cfg.Namespace+"/"+cfg.Name)
	if a.clock == nil {
		a.clock = clock.Real{}
	}
	if a.httpClient == nil {
		a.httpClient = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: cfg.InvokeTimeout,
			ForceAttemptHTTP2:     true,
		}}
	}
	id := make([]byte, 4)
	if err := a.readRandom(id); err != nil {
		return nil, fmt.Errorf("start web app %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	a.replicaID = fmt.Sprintf("%x", id)

	var err error
	a.loginSeal, err = session.NewSealer(cfg.SessionKey, "login cookie", a.rand)
	if err != nil {
		return nil, fmt.Errorf("start web app %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	a.cookies = newCookieNames(cfg.Namespace, cfg.Name, !cfg.InsecureDevCookies)
	a.ws, err = databricks.NewWorkspaceClient(databricks.WorkspaceConfig{
		Host:       cfg.DatabricksHost,
		HTTPClient: a.httpClient,
		// A user waits on each invocation: retry a rate limit once, briefly,
		// and otherwise tell them to try later.
		Retry: databricks.RetryPolicy{MaxAttempts: 2, BaseDelay: 200 * time.Millisecond, MaxDelay: 2 * time.Second},
		Now:   a.clock.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("start web app %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	if a.pages, err = parsePages(); err != nil {
		return nil, fmt.Errorf("start web app %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}

	reg, gatherer := deps.Registerer, deps.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg = r
		if gatherer == nil {
			gatherer = r
		}
	}
	if gatherer == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			gatherer = g
		}
	}
	a.gatherer = gatherer
	if a.metrics, err = newMetrics(reg); err != nil {
		return nil, fmt.Errorf("start web app %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}

	if deps.NATS != nil {
		if a.js, err = jetstream.New(deps.NATS); err != nil {
			return nil, fmt.Errorf("start web app %s/%s: JetStream: %w", cfg.Namespace, cfg.Name, err)
		}
	}
	switch {
	case deps.Sessions != nil:
		err = a.useStore(deps.Sessions)
	case a.js == nil:
		err = a.useStore(session.NewMemoryStore(a.clock.Now))
	}
	if err != nil {
		return nil, fmt.Errorf("start web app %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	if a.publisher, err = a.openPublisher(reg); err != nil {
		return nil, fmt.Errorf("start web app %s/%s: %w", cfg.Namespace, cfg.Name, err)
	}
	a.handler = a.routes()

	ctx, cancel := context.WithCancel(context.Background())
	a.stopInit = cancel
	go a.initialize(ctx)
	return a, nil
}

func (a *App) useStore(store session.Store) error {
	m, err := session.NewManager(store, a.cfg.SessionKey, a.rand)
	if err != nil {
		return err
	}
	m.SetRetention(a.endedSessionGrace())
	a.sessions.Store(m)
	return nil
}

// openPublisher opens the audit publisher on the configured (or default)
// outbox directory, or the first of <dir>-2 ... <dir>-16 that no other
// publisher holds.
func (a *App) openPublisher(reg prometheus.Registerer) (*audit.Publisher, error) {
	dir := a.cfg.AuditOutboxDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "servingapp-audit-outbox", a.cfg.Namespace+"_"+a.cfg.Name)
	}
	var lastErr error
	for i := 1; i <= 16; i++ {
		candidate := dir
		if i > 1 {
			candidate = dir + "-" + strconv.Itoa(i)
		}
		stream := audit.AuditStreamConfig(audit.StreamOptions{Replicas: a.cfg.NATSReplicas})
		p, err := audit.NewPublisher(audit.PublisherConfig{
			Stream:         &stream,
			JetStream:      a.js,
			OutboxDir:      candidate,
			OutboxMaxBytes: a.cfg.AuditOutboxMaxBytes,
			Logger:         a.log,
			Registerer:     reg,
		})
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, audit.ErrOutboxLocked) {
			return nil, err
		}
		lastErr = err
	}
	return nil, fmt.Errorf("every audit outbox directory %s[-2..-16] is in use: %w", dir, lastErr)
}

// initialize discovers the OpenID provider and opens the session bucket,
// retrying until both work or the app closes.
func (a *App) initialize(ctx context.Context) {
	defer close(a.initDone)
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := a.initOnce(ctx)
		if err == nil {
			a.initErr.Store(nil)
			close(a.ready)
			a.log.Info("web app ready", "issuer", a.cfg.Issuer, "endpoint", a.cfg.ServingEndpoint, "path_prefix", a.base+"/")
			return
		}
		msg := err.Error()
		a.initErr.Store(&msg)
		if attempt == 1 || attempt%10 == 0 {
			a.log.Warn("web app not ready yet; retrying", "attempt", attempt, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (a *App) initOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if a.provider.Load() == nil {
		p, err := login.Discover(ctx, login.Config{
			Issuer:       a.cfg.Issuer,
			ClientID:     a.cfg.ClientID,
			ClientSecret: a.cfg.ClientSecret,
			RedirectURL:  a.cfg.RedirectURL,
			Scopes:       a.cfg.Scopes,
			HTTPClient:   a.httpClient,
			Now:          a.clock.Now,
		})
		if err != nil {
			return err
		}
		a.provider.Store(p)
	}
	if a.sessions.Load() == nil {
		store, err := session.OpenKVStore(ctx, a.js, session.KVConfig{
			Bucket:   session.BucketName(a.cfg.Namespace, a.cfg.Name),
			TTL:      a.cfg.SessionTTL + a.endedSessionGrace(),
			Replicas: a.cfg.NATSReplicas,
			Now:      a.clock.Now,
		})
		if err != nil {
			return err
		}
		if err := a.useStore(store); err != nil {
			return err
		}
	}
	return nil
}

// endedSessionGrace is how long past its absolute timeout a session's
// cookie and record are kept, so a request then is told (and the audit
// trail says) that the session ended, rather than finding nothing. Later
// than an idle timeout past it, the session would have ended idle anyway.
func (a *App) endedSessionGrace() time.Duration { return a.cfg.IdleTimeout }

// Handler serves the app: every route under the path prefix, plus /healthz,
// /readyz and /metrics at the root.
func (a *App) Handler() http.Handler { return a.handler }

// Ready waits until the OpenID provider is discovered and the session store
// is open, or ctx ends (then it returns why the app is not ready).
func (a *App) Ready(ctx context.Context) error {
	select {
	case <-a.ready:
		return nil
	case <-ctx.Done():
		reason := "still starting"
		if p := a.initErr.Load(); p != nil {
			reason = *p
		}
		return fmt.Errorf("web app %s/%s not ready: %s: %w", a.cfg.Namespace, a.cfg.Name, reason, ctx.Err())
	}
}

// isReady reports whether initialization finished.
func (a *App) isReady() bool {
	select {
	case <-a.ready:
		return true
	default:
		return false
	}
}

// Close marks the app not ready, stops background work and closes the
// audit publisher, which sends what it can until ctx ends and keeps the rest
// in the outbox. It does not close the NATS connection (the host owns it).
// Call it after the HTTP server has shut down; calling it twice is harmless.
func (a *App) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		a.closing.Store(true)
		a.stopInit()
		<-a.initDone
		a.closeErr = a.publisher.Close(ctx)
	})
	return a.closeErr
}

// Config returns the configuration with defaults applied.
func (a *App) Config() Config { return a.cfg }

// Publisher returns the app's audit publisher (tests flush it).
func (a *App) Publisher() *audit.Publisher { return a.publisher }

func (a *App) readRandom(b []byte) error {
	if a.rand == nil {
		_, err := rand.Read(b)
		return err
	}
	_, err := io.ReadFull(a.rand, b)
	return err
}
