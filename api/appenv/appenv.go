// Package appenv names the environment variables through which the controller
// configures a web app container. The controller's task definitions and the web
// app's config loader both use these names, so they can never drift apart.
package appenv

import "strings"

// Prefix starts every variable the controller injects. Names with this prefix
// are reserved: a ServingApp's spec.env and spec.secrets may not use them.
const Prefix = "SERVINGAPP_"

// Names of the variables the controller injects into every web app container.
const (
	DatabricksHost      = Prefix + "DATABRICKS_HOST"       // workspace URL, https://<workspace>
	ServingEndpoint     = Prefix + "SERVING_ENDPOINT"      // Model Serving endpoint name
	ClientID            = Prefix + "CLIENT_ID"             // OAuth client id
	ClientSecret        = Prefix + "CLIENT_SECRET"         // OAuth client secret (from Secrets Manager)
	RedirectURL         = Prefix + "REDIRECT_URL"          // https://<host><pathPrefix>/oauth/callback
	Scopes              = Prefix + "SCOPES"                // space-separated OAuth scopes
	Issuer              = Prefix + "ISSUER"                // optional OIDC issuer override
	AppNamespace        = Prefix + "APP_NAMESPACE"         // metadata.namespace
	AppName             = Prefix + "APP_NAME"              // metadata.name
	PathPrefix          = Prefix + "PATH_PREFIX"           // spec.route.pathPrefix
	NATSURL             = Prefix + "NATS_URL"              // NATS servers for sessions and audit
	NATSCreds           = Prefix + "NATS_CREDS"            // optional NATS credentials: .creds content (from Secrets Manager) or a file path
	NATSCA              = Prefix + "NATS_CA"               // optional PEM of the CA that signed the NATS servers' certificates
	SessionKey          = Prefix + "SESSION_KEY"           // 32-byte key, base64, from Secrets Manager
	SessionTTL          = Prefix + "SESSION_TTL"           // absolute session lifetime, Go duration
	AllowedEmailDomains = Prefix + "ALLOWED_EMAIL_DOMAINS" // comma-separated login policy
	TrustedProxies      = Prefix + "TRUSTED_PROXIES"       // comma-separated CIDRs whose X-Forwarded-* is believed
	ListenAddr          = Prefix + "LISTEN_ADDR"           // default :8080
)

// Port is the container port the web app listens on and the ALB forwards to.
const Port = 8080

// Reserved reports whether name may not be set by a ServingApp's env or
// secrets, because the controller or the platform owns it.
func Reserved(name string) bool {
	return strings.HasPrefix(name, Prefix) || name == "PORT"
}

// Optional web app settings, with the defaults the web app applies when they
// are unset. The controller may set them; people running the web app by hand
// (dev mode, tests) set them directly.
const (
	SessionIdleTimeout  = Prefix + "SESSION_IDLE_TIMEOUT"   // Go duration, default 1h; a session unused this long ends
	InsecureDevCookies  = Prefix + "INSECURE_DEV_COOKIES"   // "true" allows cookies over plain http (dev mode on loopback only)
	SystemPrompt        = Prefix + "SYSTEM_PROMPT"          // system message of the summarizer form
	MaxTokens           = Prefix + "MAX_TOKENS"             // max_tokens of the summarizer form, default 512
	MaxRequestBytes     = Prefix + "MAX_REQUEST_BYTES"      // body limit of /api/invoke and the form, default 1048576
	InvokeTimeout       = Prefix + "INVOKE_TIMEOUT"         // Go duration, default 120s
	AuditOutboxDir      = Prefix + "AUDIT_OUTBOX_DIR"       // directory of the on-disk audit outbox
	AuditOutboxMaxBytes = Prefix + "AUDIT_OUTBOX_MAX_BYTES" // outbox bound, default 67108864
	LogLevel            = Prefix + "LOG_LEVEL"              // debug, info (default), warn or error
	NATSReplicas        = Prefix + "NATS_REPLICAS"          // replicas of the session bucket and audit stream if the app creates them, default 1
	MaxPendingRequests  = Prefix + "MAX_PENDING_REQUESTS"   // requests typed before sign-in one replica keeps at a time, default 256
)
