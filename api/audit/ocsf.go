package audit

import "time"

// OCSF classification of the audit events. The data of every audit event is
// an OCSF 1.3 event of class Authentication (3002) for logins, logouts,
// refreshes and expiries, or API Activity (6003) for invocations. Fields
// OCSF has no attribute for live under "unmapped", as OCSF prescribes.
const (
	// OCSFVersion is the OCSF schema version the events follow.
	OCSFVersion = "1.3.0"
	// OCSFSchemaURL is the CloudEvents dataschema of audit events.
	OCSFSchemaURL = "https://schema.ocsf.io/1.3.0/classes/"

	CategoryIAM            = 3 // Identity & Access Management
	CategoryApplication    = 6 // Application Activity
	ClassAuthentication    = 3002
	ClassAPIActivity       = 6003
	ActivityLogon          = 1  // Authentication: Logon
	ActivityLogoff         = 2  // Authentication: Logoff
	ActivityTicketRenew    = 5  // Authentication: Service Ticket Renew (token refresh)
	ActivityOther          = 99 // API Activity: Other (a model invocation)
	StatusSuccess          = 1
	StatusFailure          = 2
	SeverityInformational  = 1
	SeverityLow            = 2
	SeverityMedium         = 3
	AuthProtocolOpenID     = 4
	AuthProtocolOAuth2     = 6
	productName            = "servingapp-webapp"
	productVendor          = "servingapp"
	activityNameInvocation = "Invoke"
)

// AuditEvent is the data of a web app audit event, aligned with OCSF. It
// never carries prompt text, model output, tokens, codes or raw session ids.
type AuditEvent struct {
	CategoryUID  int    `json:"category_uid"`
	CategoryName string `json:"category_name"`
	ClassUID     int    `json:"class_uid"`
	ClassName    string `json:"class_name"`
	ActivityID   int    `json:"activity_id"`
	ActivityName string `json:"activity_name"`
	// TypeUID is ClassUID*100 + ActivityID.
	TypeUID    int    `json:"type_uid"`
	SeverityID int    `json:"severity_id"`
	Severity   string `json:"severity"`
	StatusID   int    `json:"status_id"`
	Status     string `json:"status"`
	// StatusCode is a machine-readable outcome: the identity provider's
	// error code, the Databricks error code, or the HTTP status.
	StatusCode string `json:"status_code,omitempty"`
	// StatusDetail is the reason: a Reason* constant for login.failed, an
	// Expiry* constant for session.expired.
	StatusDetail string `json:"status_detail,omitempty"`
	Message      string `json:"message,omitempty"`
	// Time is when it happened, in milliseconds since the Unix epoch.
	Time int64 `json:"time"`
	// Duration is the latency of the operation in milliseconds.
	Duration int64    `json:"duration,omitempty"`
	Metadata Metadata `json:"metadata"`

	// AuthProtocolID is set for Authentication events.
	AuthProtocolID int    `json:"auth_protocol_id,omitempty"`
	AuthProtocol   string `json:"auth_protocol,omitempty"`
	// User is the user who authenticated (Authentication events).
	User *User `json:"user,omitempty"`
	// Session is the web app session (Authentication events).
	Session *Session `json:"session,omitempty"`
	// Actor is who called (API Activity events).
	Actor *Actor `json:"actor,omitempty"`
	// API describes the serving endpoint call (API Activity events).
	API          *API          `json:"api,omitempty"`
	SrcEndpoint  *NetEndpoint  `json:"src_endpoint,omitempty"`
	DstEndpoint  *NetEndpoint  `json:"dst_endpoint,omitempty"`
	HTTPRequest  *HTTPRequest  `json:"http_request,omitempty"`
	HTTPResponse *HTTPResponse `json:"http_response,omitempty"`
	// Unmapped holds the servingapp attributes OCSF has no place for.
	Unmapped Unmapped `json:"unmapped"`
}

// Metadata is the OCSF metadata object.
type Metadata struct {
	Version string  `json:"version"`
	Product Product `json:"product"`
	// UID is the event id (the CloudEvent id, the Nats-Msg-Id).
	UID string `json:"uid,omitempty"`
	// CorrelationUID is the request id of the HTTP request that caused it.
	CorrelationUID string `json:"correlation_uid,omitempty"`
}

// Product names the software that produced the event.
type Product struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

// User is the OCSF user object.
type User struct {
	// UID is the OpenID Connect subject (sub).
	UID       string `json:"uid,omitempty"`
	EmailAddr string `json:"email_addr,omitempty"`
	Name      string `json:"name,omitempty"`
}

// Session is the OCSF session object.
type Session struct {
	// UID is a hash of the session id, never the id itself.
	UID string `json:"uid,omitempty"`
	// ExpirationTime is the session's absolute end, in ms since the epoch.
	ExpirationTime int64 `json:"expiration_time,omitempty"`
	IsNew          bool  `json:"is_new,omitempty"`
}

// Actor is the OCSF actor object.
type Actor struct {
	User    *User    `json:"user,omitempty"`
	Session *Session `json:"session,omitempty"`
}

// API is the OCSF api object.
type API struct {
	// Operation is e.g. "invocations".
	Operation string `json:"operation"`
	// Service names the serving endpoint.
	Service  Service      `json:"service"`
	Request  *APIRequest  `json:"request,omitempty"`
	Response *APIResponse `json:"response,omitempty"`
}

// Service is the OCSF service object.
type Service struct {
	Name string `json:"name"`
}

// APIRequest is the OCSF request object.
type APIRequest struct {
	// UID is the request id.
	UID string `json:"uid,omitempty"`
}

// APIResponse is the OCSF response object.
type APIResponse struct {
	Code         int    `json:"code,omitempty"`
	Error        string `json:"error,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
}

// NetEndpoint is the OCSF network endpoint object.
type NetEndpoint struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	SvcName  string `json:"svc_name,omitempty"`
}

// HTTPRequest is the OCSF http_request object.
type HTTPRequest struct {
	HTTPMethod string `json:"http_method,omitempty"`
	URL        *URL   `json:"url,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	// Length is the request body size in bytes.
	Length int64  `json:"length,omitempty"`
	UID    string `json:"uid,omitempty"`
}

// URL is the OCSF url object; only the path is recorded (no query).
type URL struct {
	Path string `json:"path,omitempty"`
}

// HTTPResponse is the OCSF http_response object.
type HTTPResponse struct {
	Code int `json:"code"`
	// Length is the response body size in bytes.
	Length int64 `json:"length,omitempty"`
}

// AppRef names the ServingApp an event belongs to.
type AppRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// TokenUsage counts model tokens of an invocation.
type TokenUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Unmapped holds servingapp attributes outside the OCSF schema.
type Unmapped struct {
	App AppRef `json:"app"`
	// PromptSHA256 is the hex SHA-256 of the user's input: the summarizer
	// text, or the raw /api/invoke body.
	PromptSHA256 string `json:"prompt_sha256,omitempty"`
	// Usage is the token usage the endpoint reported.
	Usage *TokenUsage `json:"usage,omitempty"`
	// ServedModel is the served-model-name the endpoint answered with.
	ServedModel string `json:"served_model,omitempty"`
	// Stream is true for streamed (SSE) invocations.
	Stream bool `json:"stream,omitempty"`
	// Form is the UI path: "summarizer" or "api".
	Form string `json:"form,omitempty"`
}

// NewAuditEvent returns an event of type t for app at the given time with the
// OCSF classification, status and severity filled in. The caller adds who,
// from where and what.
func NewAuditEvent(t EventType, app AppRef, at time.Time) AuditEvent {
	ev := AuditEvent{
		Time:     at.UnixMilli(),
		Metadata: Metadata{Version: OCSFVersion, Product: Product{Name: productName, VendorName: productVendor}},
		Unmapped: Unmapped{App: app},
		StatusID: StatusSuccess,
	}
	ev.SeverityID = SeverityInformational
	switch t {
	case LoginSucceeded, LoginFailed:
		ev.setAuth(ActivityLogon, "Logon", AuthProtocolOpenID, "OpenID")
	case Logout, SessionExpired:
		ev.setAuth(ActivityLogoff, "Logoff", AuthProtocolOpenID, "OpenID")
	case SessionRefreshed:
		ev.setAuth(ActivityTicketRenew, "Service Ticket Renew", AuthProtocolOAuth2, "OAUTH 2.0")
	case InvocationCompleted, InvocationFailed:
		ev.CategoryUID, ev.CategoryName = CategoryApplication, "Application Activity"
		ev.ClassUID, ev.ClassName = ClassAPIActivity, "API Activity"
		ev.ActivityID, ev.ActivityName = ActivityOther, activityNameInvocation
	}
	switch t {
	case LoginFailed:
		ev.StatusID, ev.SeverityID = StatusFailure, SeverityMedium
	case InvocationFailed:
		ev.StatusID, ev.SeverityID = StatusFailure, SeverityLow
	}
	ev.TypeUID = ev.ClassUID*100 + ev.ActivityID
	ev.Status = map[int]string{StatusSuccess: "Success", StatusFailure: "Failure"}[ev.StatusID]
	ev.Severity = map[int]string{SeverityInformational: "Informational", SeverityLow: "Low", SeverityMedium: "Medium"}[ev.SeverityID]
	return ev
}

func (ev *AuditEvent) setAuth(activity int, name string, protocol int, protocolName string) {
	ev.CategoryUID, ev.CategoryName = CategoryIAM, "Identity & Access Management"
	ev.ClassUID, ev.ClassName = ClassAuthentication, "Authentication"
	ev.ActivityID, ev.ActivityName = activity, name
	ev.AuthProtocolID, ev.AuthProtocol = protocol, protocolName
}

// App returns the app the event belongs to.
func (ev AuditEvent) App() AppRef { return ev.Unmapped.App }

// Principal returns the user of the event, whichever class it is, or nil.
func (ev AuditEvent) Principal() *User {
	if ev.User != nil {
		return ev.User
	}
	if ev.Actor != nil {
		return ev.Actor.User
	}
	return nil
}

// SessionUID returns the hashed session id of the event, or "".
func (ev AuditEvent) SessionUID() string {
	if ev.Session != nil {
		return ev.Session.UID
	}
	if ev.Actor != nil && ev.Actor.Session != nil {
		return ev.Actor.Session.UID
	}
	return ""
}
