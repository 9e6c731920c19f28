package webapp

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes builds the handler. With path prefix "/chat" the app answers
// /chat/, /chat/login, /chat/login/continue, /chat/oauth/callback, /chat/logout, /chat/summarize,
// /chat/resume, /chat/api/me, /chat/api/invoke, /chat/static/app.css,
// /chat/healthz and /chat/readyz; /healthz, /readyz and /metrics are also
// served at the root for health checks and scrapers that reach the task
// directly.
func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	b := a.base
	// route registers h for method and path, and a 405 answer (with Allow)
	// for other methods, which the catch-all 404 page would hide otherwise.
	route := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, h)
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			allow := method
			if method == http.MethodGet {
				allow += ", HEAD"
			}
			w.Header().Set("Allow", allow)
			writeJSONError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "Use "+method+".", 0)
		})
	}
	route(http.MethodGet, b+"/{$}", a.handleHome)
	if b != "" {
		route(http.MethodGet, b, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, b+"/", http.StatusMovedPermanently)
		})
	}
	route(http.MethodGet, b+"/login", a.handleLogin)
	route(http.MethodGet, b+"/login/continue", a.handleContinue)
	route(http.MethodGet, b+"/oauth/callback", a.handleCallback)
	route(http.MethodPost, b+"/logout", a.handleLogout)
	route(http.MethodPost, b+"/summarize", a.handleSummarize)
	route(http.MethodGet, b+"/resume", a.handleResume)
	route(http.MethodGet, b+"/api/me", a.handleAPIMe)
	route(http.MethodPost, b+"/api/invoke", a.handleAPIInvoke)
	route(http.MethodGet, b+"/static/app.css", a.handleCSS)
	route(http.MethodGet, b+"/healthz", a.handleHealthz)
	route(http.MethodGet, b+"/readyz", a.handleReadyz)
	if b != "" {
		route(http.MethodGet, "/healthz", a.handleHealthz)
		route(http.MethodGet, "/readyz", a.handleReadyz)
	}
	metrics := promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{})
	route(http.MethodGet, "/metrics", func(w http.ResponseWriter, r *http.Request) {
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
