package webapp

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/webapp/session"
)

// event starts an audit event of type t for request r: app, time, request
// id, client address and user agent. Never the query, a token or a code.
func (a *App) event(t audit.EventType, r *http.Request) audit.AuditEvent {
	ri := info(r)
	ev := audit.NewAuditEvent(t, audit.AppRef{Namespace: a.cfg.Namespace, Name: a.cfg.Name}, a.clock.Now())
	ev.Metadata.CorrelationUID = ri.id
	ev.SrcEndpoint = &audit.NetEndpoint{IP: ri.clientIP}
	ev.HTTPRequest = &audit.HTTPRequest{
		HTTPMethod: r.Method,
		URL:        &audit.URL{Path: r.URL.Path},
		UserAgent:  truncate(ri.userAgent, 512),
		UID:        ri.id,
	}
	return ev
}

// emit hands the event to the publisher, which never blocks on NATS and
// logs and counts what it has to drop.
func (a *App) emit(t audit.EventType, ev audit.AuditEvent) {
	_, _ = a.publisher.Publish(t, ev)
}

// invocation is what one call of the serving endpoint did, for audit and metrics.
type invocation struct {
	form        string // summarizer or api
	stream      bool
	promptSHA   string
	reqBytes    int64
	respBytes   int64
	status      int    // HTTP status returned to the user
	code        string // error code when it failed
	message     string
	usage       *audit.TokenUsage
	servedModel string
	elapsed     time.Duration
}

func (a *App) recordInvocation(r *http.Request, l *session.Loaded, inv invocation) {
	t, outcome := audit.InvocationCompleted, "completed"
	if inv.code != "" {
		t, outcome = audit.InvocationFailed, "failed"
	}
	a.metrics.invocations.WithLabelValues(outcome, strconv.Itoa(inv.status)).Inc()
	a.metrics.invokeLatency.WithLabelValues(outcome).Observe(inv.elapsed.Seconds())

	ev := a.event(t, r)
	ev.Actor = &audit.Actor{User: sessionUser(&l.Session), Session: &audit.Session{UID: session.AuditID(l.ID), ExpirationTime: l.Session.Expires.UnixMilli()}}
	ev.API = &audit.API{
		Operation: "invocations",
		Service:   audit.Service{Name: a.cfg.ServingEndpoint},
		Request:   &audit.APIRequest{UID: info(r).id},
		Response:  &audit.APIResponse{Code: inv.status, Error: inv.code, ErrorMessage: inv.message},
	}
	host := a.cfg.DatabricksHost
	if u, err := url.Parse(host); err == nil {
		host = u.Host
	}
	ev.DstEndpoint = &audit.NetEndpoint{Hostname: host, SvcName: a.cfg.ServingEndpoint}
	ev.HTTPRequest.Length = inv.reqBytes
	ev.HTTPResponse = &audit.HTTPResponse{Code: inv.status, Length: inv.respBytes}
	ev.Duration = inv.elapsed.Milliseconds()
	ev.StatusCode = inv.code
	if ev.StatusCode == "" {
		ev.StatusCode = strconv.Itoa(inv.status)
	}
	ev.Message = inv.message
	ev.Unmapped.PromptSHA256 = inv.promptSHA
	ev.Unmapped.Usage = inv.usage
	ev.Unmapped.ServedModel = inv.servedModel
	ev.Unmapped.Stream = inv.stream
	ev.Unmapped.Form = inv.form
	a.emit(t, ev)
}
