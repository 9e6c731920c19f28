// Package devstack runs the whole product in one process for dev mode and
// end-to-end tests: an embedded NATS server, the Databricks emulator, the
// controller on the local platform (with OAuth registration through the
// emulator's account API, the same code as production) and the gateway.
// servingctl dev starts it; the e2e tests start it on free ports.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/config"
	"github.com/servingapp/servingapp/controller/local"
	"github.com/servingapp/servingapp/controller/oauth"
	"github.com/servingapp/servingapp/controller/runner"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/databricks"
	"github.com/servingapp/servingapp/internal/databricks/emulator"
	"github.com/servingapp/servingapp/internal/natsembed"
)

// ControllerID is the controller id in dev mode.
const ControllerID = "dev"

// Options configure a Stack. Zero ports pick free ones.
type Options struct {
	// DataDir keeps NATS data (specs, status, audit history) across restarts.
	DataDir string
	// NATSPort is the embedded NATS port (servingctl dev uses 4222).
	NATSPort int
	// GatewayAddr is where apps are served (servingctl dev uses 127.0.0.1:8080).
	GatewayAddr string
	// Runner starts app instances; nil means real web apps in this process.
	Runner local.Runner
	// Log receives the controller's logs; nil discards them.
	Log *slog.Logger
}

// Stack is a running dev stack.
type Stack struct {
	NATSURL     string
	GatewayURL  string
	GatewayPort int
	Emulator    *emulator.Server
	Store       *store.Store
	JS          jetstream.JetStream
	Platform    *local.Platform

	nats    *natsembed.Server
	nc      *nats.Conn
	gateway *http.Server
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
}

// Start starts every component and the controller. Close stops them.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Stack{done: make(chan error, 1)}
	if opts.Runner == nil {
		opts.Runner = &WebAppRunner{NATS: func() *nats.Conn { return s.nc }, DataDir: opts.DataDir, Log: opts.Log}
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	var err error
	s.nats, err = natsembed.Start(natsembed.Options{Port: opts.NATSPort, StoreDir: filepath.Join(opts.DataDir, "nats")})
	if err != nil {
		return nil, err
	}
	s.NATSURL = s.nats.URL()
	s.nc, err = nats.Connect(s.NATSURL, nats.Name("servingapp-dev"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	s.JS, err = jetstream.New(s.nc)
	if err != nil {
		return nil, err
	}
	s.Store, err = store.New(ctx, s.JS, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("open the API store: %w", err)
	}
	s.Emulator, err = emulator.Start(emulator.Options{Logger: opts.Log.With("component", "databricks-emulator")})
	if err != nil {
		return nil, err
	}

	gwAddr := opts.GatewayAddr
	if gwAddr == "" {
		gwAddr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", gwAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for the gateway on %s (is another servingctl dev running?): %w", gwAddr, err)
	}
	s.GatewayPort = ln.Addr().(*net.TCPAddr).Port
	s.GatewayURL = fmt.Sprintf("http://localhost:%d", s.GatewayPort)
	s.Platform = &local.Platform{Gateway: &local.Gateway{}, Runner: opts.Runner, Secrets: &local.Secrets{}}
	s.gateway = &http.Server{Handler: s.Platform.Gateway, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.gateway.Serve(ln) }()

	account, err := databricks.NewAccountClient(databricks.AccountConfig{
		Host: s.Emulator.URL, AccountID: emulator.DefaultAccountID,
		ClientID: emulator.DefaultAdminClientID, ClientSecret: emulator.DefaultAdminSecret,
	})
	if err != nil {
		return nil, err
	}
	registrar := &oauth.Registrar{Account: account, Secrets: s.Platform, Clock: clock.Real{}, ControllerID: ControllerID, InstantPropagation: true}

	cfg := &config.Config{
		ControllerID:   ControllerID,
		Platform:       config.PlatformLocal,
		DefaultImage:   "servingapp-webapp (in-process)",
		NATS:           config.NATS{URL: s.NATSURL},
		LeaderElection: config.LeaderElection{Disabled: true},
		TrustedProxies: []string{"127.0.0.0/8"},
	}
	cfg.SetDefaults()
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	mc := runner.ModelConfig(cfg)
	mc.Scheme = "http"
	mc.Port = s.GatewayPort
	mc.HostOverrideSuffix = "localhost"
	mc.DatabricksHostOverride = s.Emulator.URL
	healthLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go func() {
		s.done <- runner.Run(runCtx, cfg, runner.Deps{
			NC: s.nc, Platform: s.Platform, Registrar: registrar, Log: opts.Log,
			ModelConfig: &mc, Listener: healthLn,
		})
	}()
	ok = true
	return s, nil
}

// Seed makes what the apps expect of their Databricks workspace exist in the
// emulator: every serving endpoint they name (a summarizer model answers),
// and every "existing" OAuth integration, with its client secret in the dev
// secret store, so the examples work on a laptop as they are.
func (s *Stack) Seed(apps []*v1.ServingApp) error {
	for _, a := range apps {
		ep := a.Spec.Databricks.ServingEndpoint
		if !s.Emulator.HasEndpoint(ep) {
			if err := s.Emulator.AddEndpoint(emulator.Endpoint{Name: ep, Model: emulator.ModelSummarizer}); err != nil {
				return fmt.Errorf("seed serving endpoint %s for %s: %w", ep, a.NamespacedName(), err)
			}
		}
		o := a.Spec.Databricks.OAuth
		if o.Integration != v1.IntegrationExisting {
			continue
		}
		if _, ok := s.Emulator.Integration(o.IntegrationID); ok {
			continue
		}
		_, secret, err := s.Emulator.RegisterIntegration(emulator.Integration{
			IntegrationID: o.IntegrationID, Name: "shared integration " + o.IntegrationID, Confidential: true,
			Scopes: []string{"openid", "email", "profile", "offline_access", "all-apis", "sql"},
		})
		if err != nil {
			return fmt.Errorf("seed integration %s for %s: %w", o.IntegrationID, a.NamespacedName(), err)
		}
		s.Platform.Secrets.Put(o.ClientSecretRef, []byte(secret), "")
	}
	return nil
}

// Close stops the controller, the apps, the gateway, the emulator and NATS.
func (s *Stack) Close() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if s.cancel != nil {
			s.cancel()
			<-s.done
		}
		if s.Platform != nil {
			s.Platform.Shutdown(ctx)
		}
		if s.gateway != nil {
			_ = s.gateway.Shutdown(ctx)
		}
		if s.Emulator != nil {
			_ = s.Emulator.Shutdown(ctx)
		}
		if s.nc != nil {
			s.nc.Close()
		}
		if s.nats != nil {
			s.nats.Shutdown()
		}
	})
}
