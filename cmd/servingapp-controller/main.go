// Command servingapp-controller is the production controller: it reconciles
// the ServingApps of the NATS store onto ECS Fargate, the shared ALB and
// Secrets Manager (controller/aws), and registers them with Databricks.
// Terraform runs it as an ECS service (terraform/controller.tf).
//
// Usage:
//
//	servingapp-controller --config FILE                       run (leader or standby)
//	servingapp-controller healthcheck [--addr 127.0.0.1:9090]  GET /healthz; exit 0 when healthy, 1 otherwise
//	servingapp-controller --version                           print the version
//
// It exits 1 when it loses leadership, so its orchestrator restarts it as a
// standby, and 0 on SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/servingapp/servingapp/controller"
	awsplatform "github.com/servingapp/servingapp/controller/aws"
	"github.com/servingapp/servingapp/controller/config"
	"github.com/servingapp/servingapp/controller/oauth"
	"github.com/servingapp/servingapp/controller/runner"
	"github.com/servingapp/servingapp/internal/clock"
	"github.com/servingapp/servingapp/internal/databricks"
	"github.com/servingapp/servingapp/internal/natsconn"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

// defaultHealthAddr is where healthcheck looks without --addr: the
// config's default listen address, on loopback.
const defaultHealthAddr = "127.0.0.1:9090"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the program; it returns the exit code. ctx ends on SIGINT/SIGTERM.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], stderr)
	}
	fs := flag.NewFlagSet("servingapp-controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "controller configuration file (YAML; see manifests/controller.example.yaml)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: servingapp-controller --config FILE | healthcheck [--addr HOST:PORT] | --version")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "servingapp-controller", version)
		return 0
	}
	if *configPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.Platform != config.PlatformAWS {
		fmt.Fprintf(stderr, "servingapp-controller runs the aws platform only; platform %q runs apps in-process for dev mode: use `servingctl dev` instead\n", cfg.Platform)
		return 1
	}
	log := newLogger(stderr, cfg.LogLevel)
	err = serve(ctx, cfg, log)
	switch {
	case errors.Is(err, controller.ErrLeadershipLost):
		log.Error("leadership lost; exiting so the orchestrator restarts this controller as a standby", "version", version)
		return 1
	case err != nil && ctx.Err() == nil:
		log.Error("controller stopped", "error", err, "version", version)
		return 1
	}
	log.Info("controller stopped", "version", version)
	return 0
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("component", "servingapp-controller")
}

// serve connects, builds the platform and the registrar, and runs the
// controller until ctx ends or leadership is lost.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	log.Info("starting", "version", version, "controllerId", cfg.ControllerID, "region", cfg.AWS.Region, "cluster", cfg.AWS.Cluster)
	natsOpts, err := natsconn.Options(cfg.NATS.Creds, "")
	if err != nil {
		return err
	}
	natsOpts = append(natsOpts,
		nats.Name("servingapp-controller "+cfg.ControllerID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected; reconnecting", "error", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "server", c.ConnectedUrlRedacted()) }),
	)
	nc, err := nats.Connect(cfg.NATS.URL, natsOpts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", cfg.NATS.URL, err)
	}
	defer nc.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	platform, err := awsplatform.New(ctx, awsplatform.ConfigFrom(cfg), awsplatform.Options{Registerer: reg, Log: log.With("component", "aws-platform")})
	if err != nil {
		return fmt.Errorf("build the AWS platform: %w", err)
	}
	registrar, err := newRegistrar(ctx, cfg, platform, log)
	if err != nil {
		return err
	}
	deps := runner.Deps{NC: nc, Platform: platform, Log: log, Registry: reg}
	if registrar != nil {
		deps.Registrar = registrar
	}
	return runner.Run(ctx, cfg, deps)
}

// accountCredentials is the JSON in databricks.credentialsSecret.
type accountCredentials struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// newRegistrar builds the OAuth registration step from the account service
// principal's credentials in Secrets Manager; nil when Databricks is not
// configured.
func newRegistrar(ctx context.Context, cfg *config.Config, platform *awsplatform.Platform, log *slog.Logger) (*oauth.Registrar, error) {
	d := cfg.Databricks
	if d.AccountID == "" {
		log.Error("NO OAUTH REGISTRATION: the databricks section of the config is empty, so apps get no Databricks OAuth integration and no redirect URL; users cannot log in until it is configured")
		return nil, nil
	}
	raw, err := platform.GetSecret(ctx, d.CredentialsSecret)
	if err != nil {
		return nil, fmt.Errorf("read the Databricks account service principal from %s: %w", d.CredentialsSecret, err)
	}
	var creds accountCredentials
	if err := json.Unmarshal(raw, &creds); err != nil || creds.ClientID == "" || creds.ClientSecret == "" {
		// Never the content in the error: it is a credential.
		return nil, fmt.Errorf("secret %s must hold JSON {\"client_id\": ..., \"client_secret\": ...} of the account service principal", d.CredentialsSecret)
	}
	account, err := databricks.NewAccountClient(databricks.AccountConfig{
		Host: d.AccountHost, AccountID: d.AccountID, ClientID: creds.ClientID, ClientSecret: creds.ClientSecret,
	})
	if err != nil {
		return nil, fmt.Errorf("build the Databricks account client: %w", err)
	}
	return &oauth.Registrar{
		Account:      account,
		Secrets:      platform,
		Clock:        clock.Real{},
		ControllerID: cfg.ControllerID,
		SecretPrefix: cfg.AWS.SecretPrefix,
		TokenPolicy: &databricks.TokenAccessPolicy{
			AccessTokenTTLInMinutes:  d.AccessTokenTTLMinutes,
			RefreshTokenTTLInMinutes: d.RefreshTokenTTLMinutes,
		},
	}, nil
}

// healthcheck asks a running controller's /healthz (for container health
// checks in a distroless image).
func healthcheck(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultHealthAddr, "host:port of the controller's health and metrics listener")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*addr+"/healthz", nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "healthcheck: /healthz answered", resp.Status)
		return 1
	}
	return 0
}
