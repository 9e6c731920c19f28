package local

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servingapp/servingapp/internal/clock"
)

// Gateway is dev mode's load balancer: it routes by Host and path prefix,
// enforces each app's allowlist on the client address (403 otherwise), and
// round-robins over the app's healthy instances, as the ALB does in AWS.
//
// The platform sets an app's instances when it reconciles the app, which may
// be minutes after one died; so the gateway also checks health passively: an
// instance that refuses a connection is skipped for DownFor and the request
// goes to the next instance. Its zero value is ready to use.
type Gateway struct {
	// Transport carries requests to the instances; nil is http.DefaultTransport.
	Transport http.RoundTripper
	// Clock times how long an instance stays marked down; nil is the real clock.
	Clock clock.Clock
	// DownFor is how long an instance that refused a connection is skipped
	// (meanwhile it is tried only after every other instance failed to
	// connect); zero is DefaultDownFor.
	DownFor time.Duration

	mu     sync.RWMutex
	routes []*route // longest path prefix first
}

// DefaultDownFor is how long the gateway skips an instance that refused a
// connection, unless Gateway.DownFor says otherwise: long enough that a dead
// instance costs one failed dial per period rather than one per request,
// short enough that a transient refusal is soon forgotten.
const DefaultDownFor = 5 * time.Second

type route struct {
	app        string // "<ns>/<name>"
	host       string
	pathPrefix string
	allow      []netip.Prefix
	blocked    map[netip.Addr]bool
	backends   []*backend
	next       atomic.Uint64
}

// backend is one instance as the gateway sees it.
type backend struct {
	url *url.URL
	// downUntil is when a refused connection stops counting against the
	// instance, in Unix nanoseconds; 0 or past: up.
	downUntil atomic.Int64
}

func (b *backend) up(now time.Time) bool { return now.UnixNano() >= b.downUntil.Load() }

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

// SetRoute adds or replaces the route of r.App. An instance the route kept
// stays marked down if it was, so rewriting a route (an allowlist change, a
// lockout) does not send traffic back to an instance known to be dead.
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
		nr.backends = append(nr.backends, &backend{url: u})
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, old := range g.routes {
		if old.app != r.App {
			continue
		}
		for _, ob := range old.backends {
			for _, nb := range nr.backends {
				if nb.url.String() == ob.url.String() {
					nb.downUntil.Store(ob.downUntil.Load())
				}
			}
		}
	}
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
				out.Backends = append(out.Backends, b.url.String())
			}
			return out, true
		}
	}
	return Route{}, false
}

// match finds the route of host and path as the ALB evaluates the rules the
// AWS platform creates: host exactly (any case), then path by the rule's
// patterns, "/*" for the prefix "/" and "/p" and "/p/*" for "/p" (whole
// segments, case-sensitive: "/p/x" and "/p" match, "/px" does not), the
// longest prefix first, as the AWS platform orders rule priorities.
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
	switch {
	case err != nil:
		page(w, http.StatusForbidden, "Forbidden", "Your address could not be read.")
		return
	case r.blocked[client]:
		// The words of the AWS platform's lockout rule.
		page(w, http.StatusForbidden, "Forbidden", "Access to this app from your address is blocked.")
		return
	case !allowed(r, client):
		page(w, http.StatusForbidden, "Forbidden", "Your address is not on this app's allowlist.")
		return
	}
	if len(r.backends) == 0 {
		page(w, http.StatusServiceUnavailable, "Starting", "The app has no running instance yet. Try again in a moment.")
		return
	}
	g.proxy(w, req, r)
}

// proxy sends req to r's instances in turn until one answers.
//
// It moves on to the next instance only when the connection to an instance
// could not be established and the request body was not read: then the
// instance never saw the request, so a retry is safe for any method,
// including a POST that invokes a model, and needs no buffering. Once a
// connection was made the first answer, or failure, is final: the instance
// may have acted on the request. (A pooled connection the instance closed
// as it stopped is such a case: the transport itself sends GET, HEAD and
// the like again, which then fail to connect and move on; a POST gets the
// 502 page.) A failure before any response byte gives the 502 page; the
// client has then received nothing else.
func (g *Gateway) proxy(w http.ResponseWriter, req *http.Request, r *route) {
	// ReverseProxy keeps the transport from closing the inbound body when
	// a connect fails, so the same body serves the next attempt.
	var body *trackedBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &trackedBody{ReadCloser: req.Body}
		req = req.WithContext(req.Context()) // a shallow copy, to swap the body
		req.Body = body
	}
	for _, b := range g.candidates(r) {
		next := false
		rp := &httputil.ReverseProxy{
			Transport: g.Transport,
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(b.url)
				pr.Out.Host = pr.In.Host // the app builds redirect URLs from its own config, but keep Host like the ALB
				pr.SetXForwarded()       // X-Forwarded-For/-Host/-Proto from the client's connection, like the ALB
			},
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				if connectFailed(err) && req.Context().Err() == nil {
					b.downUntil.Store(g.now().Add(g.downFor()).UnixNano())
					next = body == nil || !body.read.Load()
				}
				if !next {
					page(w, http.StatusBadGateway, "Bad gateway", "The app's instance did not answer.")
				}
			},
		}
		rp.ServeHTTP(w, req)
		if !next {
			return
		}
	}
	page(w, http.StatusBadGateway, "Bad gateway", "None of the app's instances answered.")
}

// candidates are r's instances in the order to try them for one request:
// those up, round-robin, then those marked down, in case they are back
// (when every instance is marked down the gateway tries them all rather
// than refuse, as the ALB routes to all targets when none is healthy).
func (g *Gateway) candidates(r *route) []*backend {
	now := g.now()
	var up, down []*backend
	for _, b := range r.backends {
		if b.up(now) {
			up = append(up, b)
		} else {
			down = append(down, b)
		}
	}
	i := 0
	if len(up) > 0 {
		i = int((r.next.Add(1) - 1) % uint64(len(up)))
	}
	return slices.Concat(up[i:], up[:i], down)
}

// connectFailed reports whether err means no connection to the instance
// could be made (refused, unreachable, dial timeout): nothing was sent.
func connectFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (g *Gateway) now() time.Time {
	if g.Clock == nil {
		return time.Now()
	}
	return g.Clock.Now()
}

func (g *Gateway) downFor() time.Duration {
	if g.DownFor <= 0 {
		return DefaultDownFor
	}
	return g.DownFor
}

// trackedBody is a request body that tells whether anything read it.
type trackedBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (t *trackedBody) Read(p []byte) (int, error) {
	t.read.Store(true)
	return t.ReadCloser.Read(p)
}

func allowed(r *route, client netip.Addr) bool {
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
