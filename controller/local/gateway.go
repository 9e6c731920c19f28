package local

import (
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Gateway is dev mode's load balancer: it routes by Host and path prefix,
// enforces each app's allowlist on the client address (403 otherwise), and
// round-robins over the app's healthy instances, as the ALB does in AWS.
type Gateway struct {
	mu     sync.RWMutex
	routes []*route // longest path prefix first
}

type route struct {
	app        string // "<ns>/<name>"
	host       string
	pathPrefix string
	allow      []netip.Prefix
	blocked    map[netip.Addr]bool
	backends   []*url.URL
	next       atomic.Uint64
}

// Route is one app's entry in the gateway.
type Route struct {
	App        string
	Host       string
	PathPrefix string
	Allowlist  []netip.Prefix
	// Blocked are addresses refused even though the allowlist admits them (lockout).
	Blocked []netip.Addr
	// Backends are the base URLs of the app's healthy instances.
	Backends []string
}

// SetRoute adds or replaces the route of r.App.
func (g *Gateway) SetRoute(r Route) error {
	nr := &route{app: r.App, host: strings.ToLower(r.Host), pathPrefix: r.PathPrefix, allow: slices.Clone(r.Allowlist), blocked: map[netip.Addr]bool{}}
	for _, a := range r.Blocked {
		nr.blocked[a.Unmap()] = true
	}
	for _, b := range r.Backends {
		u, err := url.Parse(b)
		if err != nil {
			return fmt.Errorf("gateway route for %s: backend %q: %w", r.App, b, err)
		}
		nr.backends = append(nr.backends, u)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.routes = slices.DeleteFunc(g.routes, func(x *route) bool { return x.app == r.App })
	g.routes = append(g.routes, nr)
	slices.SortStableFunc(g.routes, func(a, b *route) int { return len(b.pathPrefix) - len(a.pathPrefix) })
	return nil
}

// RemoveRoute removes app's route; its host/path then answers 404.
func (g *Gateway) RemoveRoute(app string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.routes = slices.DeleteFunc(g.routes, func(x *route) bool { return x.app == app })
}

// Route returns app's current route, if any.
func (g *Gateway) Route(app string) (Route, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, r := range g.routes {
		if r.app == app {
			out := Route{App: r.app, Host: r.host, PathPrefix: r.pathPrefix, Allowlist: slices.Clone(r.allow)}
			for a := range r.blocked {
				out.Blocked = append(out.Blocked, a)
			}
			for _, b := range r.backends {
				out.Backends = append(out.Backends, b.String())
			}
			return out, true
		}
	}
	return Route{}, false
}

func (g *Gateway) match(host, path string) *route {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, r := range g.routes {
		if r.host != host {
			continue
		}
		if r.pathPrefix == "/" || path == r.pathPrefix || strings.HasPrefix(path, r.pathPrefix+"/") {
			return r
		}
	}
	return nil
}

// ServeHTTP routes one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r := g.match(req.Host, req.URL.Path)
	if r == nil {
		page(w, http.StatusNotFound, "Not found", "No app is served at this address.")
		return
	}
	client, err := clientAddr(req.RemoteAddr)
	if err != nil || !allowed(r, client) {
		page(w, http.StatusForbidden, "Forbidden", "Your address is not on this app's allowlist.")
		return
	}
	if len(r.backends) == 0 {
		page(w, http.StatusServiceUnavailable, "Starting", "The app has no running instance yet. Try again in a moment.")
		return
	}
	target := r.backends[int(r.next.Add(1)-1)%len(r.backends)]
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the app builds redirect URLs from its own config, but keep Host like the ALB
			pr.SetXForwarded()       // X-Forwarded-For/-Host/-Proto from the client's connection, like the ALB
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			page(w, http.StatusBadGateway, "Bad gateway", "The app's instance did not answer.")
		},
	}
	proxy.ServeHTTP(w, req)
}

func allowed(r *route, client netip.Addr) bool {
	if r.blocked[client] {
		return false
	}
	for _, p := range r.allow {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

func clientAddr(remote string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;margin:4rem auto;max-width:32rem;color:#222}h1{font-size:1.4rem}</style>
</head><body><h1>{{.Code}} {{.Title}}</h1><p>{{.Text}}</p><p><small>servingapp dev gateway</small></p></body></html>
`))

func page(w http.ResponseWriter, code int, title, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = pageTmpl.Execute(w, struct {
		Code        int
		Title, Text string
	}{code, title, text})
}
