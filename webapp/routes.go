package webapp

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes builds the handler. With path prefix "/chat" the app answers
// /chat/, /chat/login, /chat/oauth/callback, /chat/logout, /chat/summarize,
// /chat/resume, /chat/api/me, /chat/api/invoke, /chat/static/app.css,
// /chat/healthz and /chat/readyz; /healthz, /readyz and /metrics are also
// served at the root for health checks and scrapers that reach the task
// directly.
func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	b := a.base
	mux.HandleFunc("GET "+b+"/{$}", a.handleHome)
	if b != "" {
		mux.HandleFunc("GET "+b, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, b+"/", http.StatusMovedPermanently)
		})
	}
	mux.HandleFunc("GET "+b+"/login", a.handleLogin)
	mux.HandleFunc("GET "+b+"/oauth/callback", a.handleCallback)
	mux.HandleFunc("POST "+b+"/logout", a.handleLogout)
	mux.HandleFunc("POST "+b+"/summarize", a.handleSummarize)
	mux.HandleFunc("GET "+b+"/resume", a.handleResume)
	mux.HandleFunc("GET "+b+"/api/me", a.handleAPIMe)
	mux.HandleFunc("POST "+b+"/api/invoke", a.handleAPIInvoke)
	mux.HandleFunc("GET "+b+"/static/app.css", a.handleCSS)
	mux.HandleFunc("GET "+b+"/healthz", a.handleHealthz)
	mux.HandleFunc("GET "+b+"/readyz", a.handleReadyz)
	if b != "" {
		mux.HandleFunc("GET /healthz", a.handleHealthz)
		mux.HandleFunc("GET /readyz", a.handleReadyz)
	}
	metrics := promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{ErrorLog: nil})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		// Scrapers reach the task directly; a request that came through the
		// load balancer (it adds X-Forwarded-For) does not see metrics.
		if r.Header.Get("X-Forwarded-For") != "" {
			a.renderError(w, r, http.StatusNotFound, "err_not_found")
			return
		}
		metrics.ServeHTTP(w, r)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.renderError(w, r, http.StatusNotFound, "err_not_found")
	})
	return a.middleware(mux)
}

func (a *App) handleCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(appCSS)
}

// handleHealthz says the process serves HTTP.
func (a *App) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// handleReadyz says whether the app can sign users in: the provider was
// discovered, the session store answers, and the app is not closing.
func (a *App) handleReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if a.closing.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if !a.isReady() {
		reason := "starting"
		if p := a.initErr.Load(); p != nil {
			reason = "starting: " + *p
		}
		http.Error(w, reason, http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.sessions.Load().Store().Ping(ctx); err != nil {
		http.Error(w, "session store unreachable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
