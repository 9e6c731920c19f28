package awsemu

import (
	"net/http"
	"strings"
	"sync"
)

// Outcome classifies how a call was answered.
type Outcome string

// Outcomes recorded by the call counter.
const (
	// OutcomeOK is a 2xx answer.
	OutcomeOK Outcome = "ok"
	// OutcomeClientError is a 4xx answer other than an injected throttle,
	// such as ServiceNotFoundException or PriorityInUse.
	OutcomeClientError Outcome = "client_error"
	// OutcomeThrottled is an injected throttling error.
	OutcomeThrottled Outcome = "throttled"
	// OutcomeServerError is a 5xx answer, injected or not, or a call abandoned
	// by the client during an injected delay.
	OutcomeServerError Outcome = "server_error"
)

func outcomeFromStatus(status int) Outcome {
	switch {
	case status >= http.StatusInternalServerError:
		return OutcomeServerError
	case status >= http.StatusBadRequest:
		return OutcomeClientError
	}
	return OutcomeOK
}

// CallKey identifies a class of calls: the service's SigV4 signing name, the
// operation, and the outcome.
type CallKey struct {
	Service   string
	Operation string
	Outcome   Outcome
}

// CallCounts is a snapshot of call counts. Every attempt counts, so an SDK
// retry after a throttle is two calls.
type CallCounts map[CallKey]int

// IsReadOperation reports whether an operation only reads: its name starts
// with Describe, List or Get. Everything else (Create, Update, Delete, Put,
// Register, Tag, Modify, Set, ...) mutates.
func IsReadOperation(operation string) bool {
	for _, p := range []string{"Describe", "List", "Get"} {
		if strings.HasPrefix(operation, p) {
			return true
		}
	}
	return false
}

// IsMutatingOperation is the complement of IsReadOperation.
func IsMutatingOperation(operation string) bool { return !IsReadOperation(operation) }

// Calls returns a snapshot of the calls counted since New or the last
// ResetCalls.
func (s *Server) Calls() CallCounts { return s.calls.snapshot() }

// ResetCalls sets every count back to zero.
func (s *Server) ResetCalls() { s.calls.reset() }

// Where returns the counts whose key satisfies keep.
func (c CallCounts) Where(keep func(CallKey) bool) CallCounts {
	out := CallCounts{}
	for k, n := range c {
		if keep(k) {
			out[k] = n
		}
	}
	return out
}

// Total is the sum of all counts.
func (c CallCounts) Total() int {
	total := 0
	for _, n := range c {
		total += n
	}
	return total
}

// Mutating is the number of calls to mutating operations, whatever their
// outcome.
func (c CallCounts) Mutating() int {
	return c.Where(func(k CallKey) bool { return IsMutatingOperation(k.Operation) }).Total()
}

// Reads is the number of calls to read operations, whatever their outcome.
func (c CallCounts) Reads() int {
	return c.Where(func(k CallKey) bool { return IsReadOperation(k.Operation) }).Total()
}

// Operation is the number of calls to one operation of one service, whatever
// their outcome.
func (c CallCounts) Operation(service, operation string) int {
	return c.Where(func(k CallKey) bool { return k.Service == service && k.Operation == operation }).Total()
}

// Outcome is the number of calls answered with outcome o.
func (c CallCounts) Outcome(o Outcome) int {
	return c.Where(func(k CallKey) bool { return k.Outcome == o }).Total()
}

// Since returns the calls made after the earlier snapshot was taken:
// c minus earlier, keeping positive differences only.
func (c CallCounts) Since(earlier CallCounts) CallCounts {
	out := CallCounts{}
	for k, n := range c {
		if d := n - earlier[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

type callCounter struct {
	mu     sync.Mutex
	counts CallCounts
}

func newCallCounter() *callCounter { return &callCounter{counts: CallCounts{}} }

func (c *callCounter) add(k CallKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[k]++
}

func (c *callCounter) snapshot() CallCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(CallCounts, len(c.counts))
	for k, n := range c.counts {
		out[k] = n
	}
	return out
}

func (c *callCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts = CallCounts{}
}
