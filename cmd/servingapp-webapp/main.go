// Command servingapp-webapp runs one ServingApp's web app: OpenID Connect
// login with Databricks, the summarizer and /api/invoke, audit events to
// NATS JetStream. The controller's ECS task definitions run it, configured
// by the SERVINGAPP_* variables of api/appenv.
//
// Usage:
//
//	servingapp-webapp              serve on SERVINGAPP_LISTEN_ADDR (default :8080)
//	servingapp-webapp healthcheck  GET /healthz of the local listener; exit 0 when healthy, 1 otherwise
//	servingapp-webapp --version    print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/servingapp/servingapp/api/appenv"
	"github.com/servingapp/servingapp/internal/natsconn"
	"github.com/servingapp/servingapp/webapp"
)

// version is stamped at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the program; it returns the exit code. ctx ends on SIGINT/SIGTERM.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 1 && args[0] == "healthcheck":
		return healthcheck(getenv, stderr)
	case len(args) == 1 && (args[0] == "--version" || args[0] == "version"):
		fmt.Fprintln(stdout, "servingapp-webapp", version)
		return 0
	case len(args) > 0:
		fmt.Fprintf(stderr, "usage: servingapp-webapp [healthcheck | --version]\n")
		return 2
	}
	cfg, err := webapp.ConfigFromEnv(getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("servingapp-webapp stopped", "err", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg webapp.Config, log *slog.Logger) error {
	var nc *nats.Conn
	if cfg.NATSURL != "" {
		opts := []nats.Option{
			nats.Name("servingapp-webapp " + cfg.Namespace + "/" + cfg.Name),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(time.Second),
			nats.RetryOnFailedConnect(true),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				log.Warn("NATS disconnected; audit events go to the outbox", "err", err)
			}),
			nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "server", c.ConnectedUrlRedacted()) }),
		}
		auth, err := natsconn.Options(cfg.NATSCreds, cfg.NATSCA)
		if err != nil {
			return err
		}
		opts = append(opts, auth...)
		if nc, err = nats.Connect(cfg.NATSURL, opts...); err != nil {
			return fmt.Errorf("connect to NATS: %w", err)
		}
		defer nc.Close()
	} else {
		log.Warn("no " + appenv.NATSURL + ": sessions stay in memory and audit events in the outbox")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	app, err := webapp.New(cfg, webapp.Deps{Logger: log, NATS: nc, Registerer: reg, Gatherer: reg})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		_ = app.Close(context.Background())
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	srv := &http.Server{
		Handler:           app.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      cfg.InvokeTimeout + 30*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("servingapp-webapp listening", "addr", ln.Addr().String(), "version", version)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-served:
	}
	// Within ECS's default 30-second stop timeout: finish open requests for
	// up to 20 seconds, then hand the audit queue to NATS or the outbox.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("HTTP shutdown cut open requests short", "err", err)
	}
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelClose()
	if err := app.Close(closeCtx); err != nil {
		log.Warn("closing the app", "err", err)
	}
	if nc != nil {
		_ = nc.FlushTimeout(5 * time.Second)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve HTTP: %w", serveErr)
	}
	return nil
}

// healthcheck asks the local listener's /healthz, for container health checks.
func healthcheck(getenv func(string) string, stderr io.Writer) int {
	addr := getenv(appenv.ListenAddr)
	if addr == "" {
		addr = webapp.DefaultListenAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %s=%q: %v\n", appenv.ListenAddr, addr, err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: /healthz answered %s\n", resp.Status)
		return 1
	}
	return 0
}
