package webapp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// requestInfo is what the middleware learned about a request.
type requestInfo struct {
	id        string
	clientIP  string
	scheme    string
	userAgent string
}

type requestInfoKey struct{}

func info(r *http.Request) *requestInfo {
	if ri, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:/=+-]{1,128}$`)

// statusWriter records the status and size of a response. It unwraps for
// http.ResponseController, so streaming handlers can flush.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// middleware wraps the routes: request id, client address from trusted
// proxies, security headers, panic recovery, access log and metrics.
func (a *App) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{userAgent: r.UserAgent()}
		peer, trusted := a.peer(r)
		ri.clientIP, ri.scheme = a.clientAddress(r, peer, trusted)
		if id := r.Header.Get("X-Request-Id"); trusted && requestIDPattern.MatchString(id) {
			ri.id = id
		} else {
			ri.id = a.replicaID + "-" + strconv.FormatUint(a.requestSeq.Add(1), 36)
		}
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri))

		h := w.Header()
		h.Set("X-Request-Id", ri.id)
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if ri.scheme == "https" {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}

		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("panic while serving a request", "request_id", ri.id, "route", r.Pattern, "panic", fmt.Sprintf("%T", v))
				if sw.status == 0 {
					a.renderError(sw, r, http.StatusInternalServerError, "err_internal")
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			route := r.Pattern
			if route == "" || route == "/" {
				route = "other"
			}
			elapsed := time.Since(start)
			a.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
			a.metrics.requestDuration.WithLabelValues(route).Observe(elapsed.Seconds())
			level := slog.LevelInfo
			if strings.HasSuffix(route, "/healthz") || strings.HasSuffix(route, "/readyz") || strings.HasSuffix(route, "/metrics") || strings.HasSuffix(route, ".css") {
				level = slog.LevelDebug
			}
			a.log.LogAttrs(r.Context(), level, "request",
				slog.String("request_id", ri.id),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path), // never the query: it may carry codes
				slog.String("route", route),
				slog.Int("status", status),
				slog.Int64("bytes", sw.bytes),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.String("client_ip", ri.clientIP),
				slog.String("user_agent", truncate(ri.userAgent, 256)),
			)
		}()
		next.ServeHTTP(sw, r)
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// peer returns the TCP peer's address and whether it is a trusted proxy.
func (a *App) peer(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	addr = addr.Unmap()
	return addr, a.trusted(addr)
}

func (a *App) trusted(addr netip.Addr) bool {
	for _, p := range a.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// clientAddress returns the client IP and the scheme the client used. Only a
// trusted proxy's X-Forwarded-For and X-Forwarded-Proto are believed; the
// client is the right-most X-Forwarded-For entry that is not itself a
// trusted proxy (entries further left are whatever the client claimed).
func (a *App) clientAddress(r *http.Request, peer netip.Addr, trusted bool) (string, string) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ip := peer
	if trusted {
		values := r.Header.Values("X-Forwarded-For")
		var hops []string
		for _, v := range values {
			hops = append(hops, strings.Split(v, ",")...)
		}
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			ip = hop.Unmap()
			if !a.trusted(ip) {
				break
			}
		}
		if protos := r.Header.Values("X-Forwarded-Proto"); len(protos) > 0 {
			last := protos[len(protos)-1]
			if i := strings.LastIndex(last, ","); i >= 0 {
				last = last[i+1:]
			}
			switch p := strings.ToLower(strings.TrimSpace(last)); p {
			case "http", "https":
				scheme = p
			}
		}
	}
	if !ip.IsValid() {
		return "", scheme
	}
	return ip.String(), scheme
}

// contentSecurityPolicy allows nothing but our own stylesheet, and form
// submissions only to ourselves. Browsers apply form-action to every
// redirect that follows a submission (Chrome to the whole chain), so no form
// of ours may lead to the provider by redirects: the form posted before
// sign-in ends on a page of ours that moves on by a link and a meta refresh
// (see handleContinue), which form-action does not govern.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
