package awsemu

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// FaultKind is what an injected fault does to a call.
type FaultKind int

const (
	// FaultThrottle answers HTTP 400 with the protocol's throttling error
	// (ThrottlingException for AWS JSON, Throttling for AWS Query), which the
	// SDK's retryers classify as a retryable throttle.
	FaultThrottle FaultKind = iota + 1
	// FaultServerError answers HTTP 500 with the service's internal error
	// (ServerException, InternalServiceError, InternalFailure).
	FaultServerError
	// FaultDelay holds the call for Fault.Delay of wall time, then serves it
	// normally. Delays of several matching rules add up.
	FaultDelay
	// FaultResponseLost serves the call (it takes effect, and the call hook
	// sees its effect) and then answers HTTP 500 with the service's internal
	// error instead of the real answer, as when a response is lost between
	// AWS and the client. The SDK retries it like any 500, so a call that is
	// not idempotent runs twice.
	FaultResponseLost
	// FaultConnectionDropped serves the call (it takes effect) and then
	// closes the connection without answering. The SDK sees a connection
	// error and retries it.
	FaultConnectionDropped
)

// lastFaultKind is the highest valid FaultKind.
const lastFaultKind = FaultConnectionDropped

// takesEffect reports whether a call hit by the fault is still served.
func (k FaultKind) takesEffect() bool { return k == FaultResponseLost || k == FaultConnectionDropped }

func (k FaultKind) String() string {
	switch k {
	case FaultThrottle:
		return "throttle"
	case FaultServerError:
		return "server-error"
	case FaultDelay:
		return "delay"
	case FaultResponseLost:
		return "response-lost"
	case FaultConnectionDropped:
		return "connection-dropped"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Fault is one fault-injection rule. A call matches when Service and
// Operation match (empty matches any); each matching rule then fires with
// probability Fraction, drawn from the Server's seeded random source. The
// first firing rule of another kind than delay decides the answer; firing
// delay rules hold the call first.
type Fault struct {
	// Service is a SigV4 signing name (ServiceECS, ServiceELBv2,
	// ServiceSecretsManager, or any other for kumo-served services); empty
	// matches every service.
	Service string
	// Operation is an API operation name such as "CreateService"; empty
	// matches every operation.
	Operation string
	// Kind selects the effect.
	Kind FaultKind
	// Fraction is the probability in [0, 1] that a matching call is hit.
	Fraction float64
	// Delay is the added latency for FaultDelay.
	Delay time.Duration
	// Limit, when positive, caps how many times the rule fires; 0 means no
	// cap. With Fraction 1 and Limit n the next n matching calls are hit.
	Limit int
	// After lets that many matching calls through before the rule starts to
	// draw: with Fraction 1, After k fails every matching call from the
	// (k+1)th on, e.g. to cut a controller off after its kth AWS call.
	After int
}

// SetFaults replaces the fault-injection rules. With no arguments it removes
// them all. It rejects a rule with an unknown kind or a fraction outside
// [0, 1] and leaves the previous rules in place.
func (s *Server) SetFaults(faults ...Fault) error {
	for i, f := range faults {
		if f.Kind < FaultThrottle || f.Kind > lastFaultKind {
			return fmt.Errorf("fault %d: unknown kind %d", i, int(f.Kind))
		}
		if f.Fraction < 0 || f.Fraction > 1 {
			return fmt.Errorf("fault %d: fraction %v outside [0, 1]", i, f.Fraction)
		}
		if f.Limit < 0 || f.After < 0 {
			return fmt.Errorf("fault %d: negative Limit or After", i)
		}
		if f.Kind == FaultDelay && f.Delay <= 0 {
			return fmt.Errorf("fault %d: delay fault without a positive Delay", i)
		}
	}
	s.faults.set(faults)
	return nil
}

// ClearFaults removes every fault-injection rule.
func (s *Server) ClearFaults() { s.faults.set(nil) }

type faultRule struct {
	Fault
	seen  int
	fired int
}

type faultInjector struct {
	mu    sync.Mutex
	rng   *rand.Rand
	rules []*faultRule
}

func newFaultInjector(seed uint64) *faultInjector {
	return &faultInjector{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (f *faultInjector) set(faults []Fault) {
	rules := make([]*faultRule, len(faults))
	for i, fault := range faults {
		rules[i] = &faultRule{Fault: fault}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = rules
}

// decide draws the faults for one call: the total delay and the error kind
// (0 for none).
func (f *faultInjector) decide(service, operation string) (time.Duration, FaultKind) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var delay time.Duration
	var kind FaultKind
	for _, r := range f.rules {
		if (r.Service != "" && r.Service != service) || (r.Operation != "" && r.Operation != operation) {
			continue
		}
		if r.seen++; r.seen <= r.After {
			continue
		}
		if r.Limit > 0 && r.fired >= r.Limit {
			continue
		}
		if f.rng.Float64() >= r.Fraction {
			continue
		}
		switch r.Kind {
		case FaultDelay:
			r.fired++
			delay += r.Delay
		default:
			if kind == 0 {
				r.fired++
				kind = r.Kind
			}
		}
	}
	return delay, kind
}

// throttleError is the throttling error of a service's protocol.
func throttleError(service string) *apiError {
	code := "ThrottlingException"
	if service == ServiceELBv2 {
		code = "Throttling"
	}
	return &apiError{Code: code, Message: "Rate exceeded", Status: http.StatusBadRequest}
}

// internalError is a service's HTTP 500 error.
func internalError(service string) *apiError {
	code := "InternalFailure"
	switch service {
	case ServiceECS:
		code = "ServerException"
	case ServiceSecretsManager:
		code = "InternalServiceError"
	}
	return &apiError{Code: code, Message: "We encountered an internal error. Please try again.", Status: http.StatusInternalServerError}
}
