package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/servingapp/servingapp/api/appenv"
	"github.com/servingapp/servingapp/controller/local"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/webapp"
)

// WebAppRunner starts real web apps (package webapp) in this process, each
// on its own loopback port: what an ECS task is in production.
type WebAppRunner struct {
	// NATS carries the apps' sessions and audit events; connect is lazy so the
	// runner can be built before the stack's NATS server exists.
	NATS func() *nats.Conn
	// DataDir holds the apps' audit outboxes.
	DataDir string
	Log     *slog.Logger

	seq atomic.Uint64
}

type webappInstance struct {
	url string
	srv *http.Server
	app *webapp.App
}

func (i *webappInstance) URL() string { return i.url }

func (i *webappInstance) Stop(ctx context.Context) error {
	err := i.srv.Shutdown(ctx)
	return errors.Join(err, i.app.Close(ctx))
}

// Start configures a web app from env exactly as the container would read
// it, plus the one dev-mode setting (cookies over plain http on loopback).
func (r *WebAppRunner) Start(ctx context.Context, ref model.Ref, env map[string]string) (local.Instance, error) {
	getenv := func(k string) string {
		if k == appenv.InsecureDevCookies {
			return "true"
		}
		return env[k]
	}
	cfg, err := webapp.ConfigFromEnv(getenv)
	if err != nil {
		return nil, fmt.Errorf("configure web app %s: %w", ref, err)
	}
	n := r.seq.Add(1)
	cfg.AuditOutboxDir = filepath.Join(r.DataDir, "outbox", fmt.Sprintf("%s_%s_%d", ref.Namespace, ref.Name, n))
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var nc *nats.Conn
	if r.NATS != nil {
		nc = r.NATS()
	}
	app, err := webapp.New(cfg, webapp.Deps{Logger: log.With("app", ref.String(), "instance", n), NATS: nc})
	if err != nil {
		return nil, fmt.Errorf("start web app %s: %w", ref, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = app.Close(ctx)
		return nil, err
	}
	srv := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	inst := &webappInstance{url: "http://" + ln.Addr().String(), srv: srv, app: app}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := app.Ready(rctx); err != nil {
		_ = inst.Stop(context.Background())
		return nil, fmt.Errorf("web app %s not ready: %w", ref, err)
	}
	return inst, nil
}
