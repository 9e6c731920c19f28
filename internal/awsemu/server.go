package awsemu

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sivchari/kumo"
)

// SigV4 signing names of the emulated services. Call accounting and fault
// injection identify services by these names.
const (
	ServiceECS            = "ecs"
	ServiceELBv2          = "elasticloadbalancing"
	ServiceSecretsManager = "secretsmanager"
)

// Defaults used when Options leaves a field zero.
const (
	DefaultRegion    = "us-east-1"
	DefaultAccountID = "123456789012"
)

const (
	ecsTargetPrefix     = "AmazonEC2ContainerServiceV20141113"
	secretsTargetPrefix = "secretsmanager"
	elbv2APIVersion     = "2015-12-01"
	maxRequestBody      = 16 << 20
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// Region and AccountID appear in every ARN the emulator mints.
	// Defaults: DefaultRegion, DefaultAccountID.
	Region    string
	AccountID string

	// Now is the base clock. Nil means a frozen clock that reads the wall time
	// once, in New, so simulated time moves only through Server.Advance and
	// tests stay deterministic. Pass time.Now to let rollouts and secret
	// recovery windows progress in real time. Advance adds to either.
	Now func() time.Time

	// Seed seeds the fault-injection random source: the same seed and the
	// same sequence of calls give the same faults.
	Seed uint64

	// ECS tunes the ECS emulator's simulated deployments.
	ECS ECSOptions

	// ELBv2 sets the load balancer quotas the emulator enforces.
	ELBv2 ELBv2Options
}

// Server is an AWS endpoint for tests on 127.0.0.1: ECS, ELBv2 and Secrets
// Manager are answered by the emulators in this package, every other request
// is forwarded to an in-process kumo server. Point SDK clients at URL
// (BaseEndpoint or AWS_ENDPOINT_URL). A Server is safe for concurrent use.
type Server struct {
	// URL is the endpoint, "http://127.0.0.1:port".
	URL string

	httpServer *httptest.Server
	clock      *clock
	faults     *faultInjector
	calls      *callCounter
	ecs        *ecsEmulator
	elb        *elbEmulator
	secrets    *secretsEmulator
	requestSeq atomic.Uint64
	hook       atomic.Pointer[func(CallKey)]

	kumoMu    sync.Mutex
	kumo      *kumo.Server
	kumoProxy *httputil.ReverseProxy
}

// New starts a Server listening on a random loopback port. Call Close when
// done.
func New(opts Options) *Server {
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.AccountID == "" {
		opts.AccountID = DefaultAccountID
	}
	s := &Server{
		clock:  newClock(opts.Now),
		faults: newFaultInjector(opts.Seed),
		calls:  newCallCounter(),
	}
	s.ecs = newECSEmulator(opts.Region, opts.AccountID, s.clock.now, opts.ECS)
	s.elb = newELBEmulator(opts.Region, opts.AccountID, s.clock.now, opts.ELBv2)
	s.secrets = newSecretsEmulator(opts.Region, opts.AccountID, s.clock.now)
	s.ecs.targetGroups = s.elb.checkTargetGroupForService
	s.httpServer = httptest.NewServer(s)
	s.URL = s.httpServer.URL
	return s
}

// Close shuts the server (and the kumo server behind it, if one was started)
// down, blocking until outstanding requests have finished.
func (s *Server) Close() {
	s.httpServer.Close()
	s.kumoMu.Lock()
	defer s.kumoMu.Unlock()
	if s.kumo != nil {
		s.kumo.Close()
		s.kumo = nil
	}
}

// Now returns the emulator's current simulated time.
func (s *Server) Now() time.Time { return s.clock.now() }

// Advance moves simulated time forward by d. ECS deployments progress by one
// step per ECSOptions.RolloutStep elapsed, INACTIVE services expire, and
// secrets whose recovery window has ended are deleted for good. The effects
// are applied before Advance returns.
func (s *Server) Advance(d time.Duration) {
	if d < 0 {
		panic("awsemu: Advance with a negative duration")
	}
	s.clock.advance(d)
	s.ecs.sync()
	s.secrets.sync()
}

// request is what the router learned about an incoming request.
type request struct {
	service   string
	operation string
	proto     protocol
	body      []byte
	form      url.Values
	requestID string
}

// ServeHTTP routes one AWS API request: fault injection first, then the
// emulator owning the service, else kumo. Every request is counted and shown
// to the call hook.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	req := classify(r, body)
	req.requestID = s.newRequestID()
	key := CallKey{Service: req.service, Operation: req.operation}

	delay, kind := s.faults.decide(req.service, req.operation)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			key.Outcome = OutcomeServerError
			s.finish(key)
			return
		}
	}

	// The answer of an emulated call (or an injected fault) is complete
	// before anything is written, so the hook runs between the call taking
	// effect and the client seeing its response.
	var apiErr *apiError
	var result []byte
	switch {
	case kind == FaultThrottle:
		key.Outcome, apiErr = OutcomeThrottled, throttleError(req.service)
	case kind == FaultServerError:
		key.Outcome, apiErr = OutcomeServerError, internalError(req.service)
	case req.service == ServiceECS && req.proto == protoJSON:
		result, apiErr = s.ecs.serve(req.operation, req.body)
	case req.service == ServiceSecretsManager && req.proto == protoJSONPascal:
		result, apiErr = s.secrets.serve(req.operation, req.body)
	case req.service == ServiceELBv2 && req.proto == protoQuery && req.form.Get("Version") == elbv2APIVersion:
		result, apiErr = s.elb.serve(req.operation, req.form)
		if apiErr == nil {
			result = wrapQueryResponse(req.operation, elbv2XMLNS, req.requestID, result)
		}
	case kind.takesEffect():
		// kumo answers straight into the writer: let it answer into a
		// discarded buffer instead, so only the lost answer goes out.
		s.proxyToKumo(httptest.NewRecorder(), r)
	default:
		rec := &recorder{ResponseWriter: w}
		s.proxyToKumo(rec, r)
		key.Outcome = outcomeFromStatus(rec.status())
		s.finish(key)
		return
	}
	if kind.takesEffect() {
		// The call took effect above; the client never learns its answer.
		key.Outcome = OutcomeServerError
		s.finish(key)
		if kind == FaultConnectionDropped {
			// The documented way to abort a response: net/http closes the
			// connection without writing anything, and does not log it.
			panic(http.ErrAbortHandler)
		}
		writeError(w, req.proto, internalError(req.service), req.requestID)
		return
	}
	if key.Outcome == "" {
		key.Outcome = OutcomeOK
		if apiErr != nil {
			key.Outcome = outcomeFromStatus(apiErr.Status)
		}
	}
	s.finish(key)
	switch {
	case apiErr != nil:
		writeError(w, req.proto, apiErr, req.requestID)
	case req.proto == protoQuery:
		w.Header().Set("Content-Type", "text/xml")
		w.Header().Set("X-Amzn-RequestId", req.requestID)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(result)
	default:
		writeJSONResponse(w, result, req.requestID)
	}
}

// finish counts a call and shows it to the call hook.
func (s *Server) finish(key CallKey) {
	s.calls.add(key)
	if hook := s.hook.Load(); hook != nil {
		(*hook)(key)
	}
}

// SetCallHook installs fn, called once for every call with its key. For
// calls the emulators answer, and for injected faults, fn runs after the
// call took effect and before its response is sent: it observes exactly the
// state the client will find when the call returns, and the client waits
// for it. Use it with the inspection methods (ListenerRules) to check an
// invariant at every intermediate step of a reconcile. For calls forwarded
// to kumo, fn runs after the response. fn must not call the Server over
// HTTP; nil removes the hook.
func (s *Server) SetCallHook(fn func(CallKey)) {
	if fn == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(&fn)
}

// classify identifies service, operation and protocol. The AWS JSON target
// header names both service and operation; AWS Query carries the operation in
// Action and the service in the SigV4 credential scope (or, unsigned, in the
// API Version). Paths are never consulted: every service shares "/".
func classify(r *http.Request, body []byte) request {
	req := request{body: body, service: scopeService(r.Header.Get("Authorization"))}
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		prefix, op, _ := strings.Cut(target, ".")
		req.operation = op
		req.proto = protoJSON
		switch prefix {
		case ecsTargetPrefix:
			req.service = ServiceECS
		case secretsTargetPrefix:
			req.service = ServiceSecretsManager
			req.proto = protoJSONPascal
		default:
			if req.service == "" {
				req.service = prefix
			}
		}
		return req
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.Method == http.MethodPost && mediaType == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err == nil && form.Get("Action") != "" {
			req.form = form
			req.operation = form.Get("Action")
			req.proto = protoQuery
			if req.service == "" && form.Get("Version") == elbv2APIVersion {
				req.service = ServiceELBv2
			}
			return req
		}
	}
	req.proto = protoREST
	req.operation = r.Method + " " + r.URL.Path
	if req.service == "" {
		req.service = "unknown"
	}
	return req
}

// scopeService extracts the service name from a SigV4 Authorization header:
// "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/ecs/aws4_request, ...".
func scopeService(auth string) string {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) != 5 {
		return ""
	}
	return parts[3]
}

func (s *Server) newRequestID() string {
	n := s.requestSeq.Add(1)
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", n)
}

// proxyToKumo forwards a request the emulators do not own to kumo, starting
// the kumo server on first use.
func (s *Server) proxyToKumo(w http.ResponseWriter, r *http.Request) {
	s.kumoMu.Lock()
	if s.kumo == nil {
		s.kumo = kumo.NewServer()
		target, err := url.Parse(s.kumo.URL)
		if err != nil {
			s.kumoMu.Unlock()
			http.Error(w, "kumo URL: "+err.Error(), http.StatusInternalServerError)
			return
		}
		s.kumoProxy = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		}}
	}
	proxy := s.kumoProxy
	s.kumoMu.Unlock()
	proxy.ServeHTTP(w, r)
}

// recorder captures the status of a response.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (used by the kumo proxy) reach the
// underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// clock is the simulated clock: a base clock plus the offset accumulated by
// Advance.
type clock struct {
	mu     sync.Mutex
	base   func() time.Time
	offset time.Duration
}

func newClock(base func() time.Time) *clock {
	if base == nil {
		frozen := time.Now().UTC().Truncate(time.Second)
		base = func() time.Time { return frozen }
	}
	return &clock{base: base}
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base().Add(c.offset).UTC()
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}
