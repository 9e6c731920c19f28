package webapp

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/servingapp/servingapp/api/appenv"
	"github.com/servingapp/servingapp/webapp/session"
)

// Defaults applied by ConfigFromEnv and New.
const (
	DefaultSessionTTL      = 8 * time.Hour
	DefaultIdleTimeout     = time.Hour
	DefaultMaxTokens       = 512
	DefaultMaxRequestBytes = 1 << 20
	DefaultInvokeTimeout   = 120 * time.Second
	DefaultListenAddr      = ":8080"
	DefaultLoginTTL        = 10 * time.Minute
	// DefaultMaxPendingRequests: at most this many texts typed before
	// sign-in (32 KiB each) are kept per replica at a time.
	DefaultMaxPendingRequests = 256
	DefaultSystemPrompt       = "Summarize the user's text in a few clear sentences. Keep the language of the text."
)

// DefaultScopes are requested when the config names none.
var DefaultScopes = []string{"openid", "email", "profile", "offline_access", "all-apis"}

// Config is one app's configuration. ConfigFromEnv reads it from the
// variables named in api/appenv; dev mode fills it directly.
type Config struct {
	// DatabricksHost is the workspace URL (https://<workspace>).
	DatabricksHost string
	// ServingEndpoint is the Model Serving endpoint name.
	ServingEndpoint string
	// ClientID and ClientSecret are the OAuth integration's credentials; an
	// empty secret means a public client.
	ClientID     string
	ClientSecret string
	// RedirectURL is https://<host><PathPrefix>/oauth/callback exactly as
	// registered with the integration.
	RedirectURL string
	// Scopes requested at login; empty means DefaultScopes. Must hold openid.
	Scopes []string
	// Issuer overrides the OpenID issuer; empty means DatabricksHost + "/oidc".
	// It is used exactly as given, a trailing "/" included, because it must
	// equal the issuer in the provider's discovery document and ID tokens.
	Issuer string
	// Namespace and Name identify the ServingApp (audit events, bucket names).
	Namespace string
	Name      string
	// PathPrefix is where the ALB forwards the app ("/" or "/chat"); the app
	// serves every route under it.
	PathPrefix string
	// NATSURL and NATSCreds are for the binary, which connects and passes the
	// connection in Deps; New ignores them.
	NATSURL   string
	NATSCreds string
	NATSCA    string
	// NATSReplicas is the replica count of the session bucket and the audit
	// stream when the app has to create them (existing ones are kept as
	// they are); zero means 1.
	NATSReplicas int
	// SessionKey is the 32-byte key that seals session records and cookies.
	SessionKey []byte
	// SessionTTL is the absolute session lifetime; zero means DefaultSessionTTL.
	SessionTTL time.Duration
	// IdleTimeout ends sessions unused this long; zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// AllowedEmailDomains is the login policy; empty allows every user.
	AllowedEmailDomains []string
	// TrustedProxies are the peers whose X-Forwarded-For and
	// X-Forwarded-Proto are believed (the ALB's subnets).
	TrustedProxies []netip.Prefix
	// ListenAddr is for the binary; New ignores it.
	ListenAddr string
	// InsecureDevCookies drops the Secure attribute and the __Host- prefix so
	// dev mode works over plain http on loopback. Never set it in production.
	InsecureDevCookies bool
	// SystemPrompt and MaxTokens shape the summarizer form's request.
	SystemPrompt string
	MaxTokens    int
	// MaxRequestBytes bounds /api/invoke bodies and the form; zero means
	// DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// InvokeTimeout bounds one invocation; zero means DefaultInvokeTimeout.
	InvokeTimeout time.Duration
	// AuditOutboxDir is the audit outbox directory; empty means
	// <temp dir>/servingapp-audit-outbox/<namespace>_<name>. When another
	// publisher holds it, New uses <dir>-2, <dir>-3, ... (replicas in one
	// process, dev mode).
	AuditOutboxDir string
	// AuditOutboxMaxBytes bounds the outbox; zero means the publisher default.
	AuditOutboxMaxBytes int64
	// LoginTTL bounds how long a started login (and a request typed before
	// it) is kept; zero means DefaultLoginTTL.
	LoginTTL time.Duration
	// MaxPendingRequests bounds the requests typed before sign-in that one
	// replica keeps at a time (the form needs no sign-in, so anyone can post
	// them); further ones are refused until the oldest expire. Zero means
	// DefaultMaxPendingRequests.
	MaxPendingRequests int
	// LogLevel is debug, info, warn or error (for the binary).
	LogLevel string
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ConfigFromEnv reads the configuration from environment variables through
// getenv (os.Getenv in the binary). It reports every problem, one line each,
// in a single error.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var problems []string
	bad := func(name, format string, args ...any) {
		problems = append(problems, name+": "+fmt.Sprintf(format, args...))
	}
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	required := func(name string) string {
		v := get(name)
		if v == "" {
			bad(name, "is required")
		}
		return v
	}
	duration := func(name string, def time.Duration) time.Duration {
		v := get(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad(name, "%q is not a positive Go duration such as 8h or 90s", v)
			return def
		}
		return d
	}
	integer := func(name string, def int64) int64 {
		v := get(name)
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			bad(name, "%q is not a positive integer", v)
			return def
		}
		return n
	}

	c := Config{
		DatabricksHost:  strings.TrimRight(required(appenv.DatabricksHost), "/"),
		ServingEndpoint: required(appenv.ServingEndpoint),
		ClientID:        required(appenv.ClientID),
		ClientSecret:    getenv(appenv.ClientSecret),
		RedirectURL:     required(appenv.RedirectURL),
		Scopes:          strings.Fields(get(appenv.Scopes)),
		// The issuer is an identifier compared exactly (OpenID Connect
		// Discovery 1.0 section 4.3), so a trailing slash stays; only URLs
		// built from the Databricks host are trimmed.
		Issuer:          get(appenv.Issuer),
		Namespace:       required(appenv.AppNamespace),
		Name:            required(appenv.AppName),
		PathPrefix:      get(appenv.PathPrefix),
		NATSURL:         get(appenv.NATSURL),
		NATSCreds:       get(appenv.NATSCreds),
		NATSCA:          get(appenv.NATSCA),
		NATSReplicas:    int(integer(appenv.NATSReplicas, 1)),
		SessionTTL:      duration(appenv.SessionTTL, DefaultSessionTTL),
		IdleTimeout:     duration(appenv.SessionIdleTimeout, DefaultIdleTimeout),
		ListenAddr:      get(appenv.ListenAddr),
		SystemPrompt:    getenv(appenv.SystemPrompt),
		MaxTokens:       int(integer(appenv.MaxTokens, DefaultMaxTokens)),
		MaxRequestBytes: integer(appenv.MaxRequestBytes, DefaultMaxRequestBytes),
		InvokeTimeout:   duration(appenv.InvokeTimeout, DefaultInvokeTimeout),
		AuditOutboxDir:  get(appenv.AuditOutboxDir),
		LogLevel:        strings.ToLower(get(appenv.LogLevel)),
		// Not set by the controller: the default suits a replica, and an
		// operator who sees err_pending_busy under a legitimate load raises it.
		MaxPendingRequests: int(integer(appenv.MaxPendingRequests, DefaultMaxPendingRequests)),
	}
	c.AuditOutboxMaxBytes = integer(appenv.AuditOutboxMaxBytes, 0)
	if v := get(appenv.InsecureDevCookies); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(appenv.InsecureDevCookies, "%q is not true or false", v)
		}
		c.InsecureDevCookies = b
	}
	if v := get(appenv.SessionKey); v == "" {
		bad(appenv.SessionKey, "is required (%d random bytes, base64)", session.KeySize)
	} else if key, err := decodeKey(v); err != nil {
		bad(appenv.SessionKey, "%v", err)
	} else {
		c.SessionKey = key
	}
	if v := get(appenv.AllowedEmailDomains); v != "" {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				c.AllowedEmailDomains = append(c.AllowedEmailDomains, d)
			}
		}
	}
	if v := get(appenv.TrustedProxies); v != "" {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := parsePrefix(s)
			if err != nil {
				bad(appenv.TrustedProxies, "%q is not a CIDR or IP address", s)
				continue
			}
			c.TrustedProxies = append(c.TrustedProxies, p)
		}
	}
	if c.LogLevel != "" {
		switch c.LogLevel {
		case "debug", "info", "warn", "error":
		default:
			bad(appenv.LogLevel, "%q is not debug, info, warn or error", c.LogLevel)
		}
	}
	problems = append(problems, c.problems(true)...)
	if len(problems) > 0 {
		return c, configError(problems)
	}
	return c.withDefaults(), nil
}

func configError(problems []string) error {
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = errors.New(p)
	}
	return fmt.Errorf("invalid web app configuration:\n%w", errors.Join(errs...))
}

func decodeKey(v string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil {
			if len(b) != session.KeySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d", len(b), session.KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("is not base64")
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(DefaultScopes)
	}
	if c.Issuer == "" {
		c.Issuer = strings.TrimRight(c.DatabricksHost, "/") + "/oidc"
	}
	c.PathPrefix = normalizePrefix(c.PathPrefix)
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.IdleTimeout > c.SessionTTL {
		c.IdleTimeout = c.SessionTTL
	}
	if c.SystemPrompt == "" {
		c.SystemPrompt = DefaultSystemPrompt
	}
	if c.MaxTokens <= 0 {
		c.MaxTokens = DefaultMaxTokens
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.InvokeTimeout <= 0 {
		c.InvokeTimeout = DefaultInvokeTimeout
	}
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.LoginTTL <= 0 {
		c.LoginTTL = DefaultLoginTTL
	}
	if c.MaxPendingRequests <= 0 {
		c.MaxPendingRequests = DefaultMaxPendingRequests
	}
	domains := make([]string, 0, len(c.AllowedEmailDomains))
	for _, d := range c.AllowedEmailDomains {
		domains = append(domains, strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@")))
	}
	c.AllowedEmailDomains = domains
	c.TrustedProxies = slices.Clone(c.TrustedProxies)
	c.SessionKey = slices.Clone(c.SessionKey)
	return c
}

// normalizePrefix returns "" for the root and "/x/y" (no trailing slash)
// otherwise; routes are prefix + "/login" and so on.
func normalizePrefix(p string) string {
	p = strings.TrimSpace(p)
	p = strings.TrimRight(p, "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// problems lists what is wrong with c, one line each. fromEnv names the
// variables; otherwise the fields.
func (c Config) problems(fromEnv bool) []string {
	var out []string
	name := func(env, field string) string {
		if fromEnv {
			return env
		}
		return field
	}
	bad := func(env, field, format string, args ...any) {
		out = append(out, name(env, field)+": "+fmt.Sprintf(format, args...))
	}
	if !fromEnv {
		for _, f := range []struct{ env, field, v string }{
			{appenv.DatabricksHost, "DatabricksHost", c.DatabricksHost},
			{appenv.ServingEndpoint, "ServingEndpoint", c.ServingEndpoint},
			{appenv.ClientID, "ClientID", c.ClientID},
			{appenv.RedirectURL, "RedirectURL", c.RedirectURL},
			{appenv.AppNamespace, "Namespace", c.Namespace},
			{appenv.AppName, "Name", c.Name},
		} {
			if f.v == "" {
				bad(f.env, f.field, "is required")
			}
		}
		if len(c.SessionKey) != session.KeySize {
			bad(appenv.SessionKey, "SessionKey", "must be %d bytes, got %d", session.KeySize, len(c.SessionKey))
		}
	}
	if c.DatabricksHost != "" {
		if u, err := url.Parse(c.DatabricksHost); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			bad(appenv.DatabricksHost, "DatabricksHost", "%q is not a workspace URL such as https://dbc-1234.cloud.databricks.com", c.DatabricksHost)
		}
	}
	if c.Issuer != "" {
		if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(appenv.Issuer, "Issuer", "%q is not an absolute http(s) URL", c.Issuer)
		}
	}
	for _, f := range []struct{ env, field, v string }{
		{appenv.AppNamespace, "Namespace", c.Namespace},
		{appenv.AppName, "Name", c.Name},
	} {
		if f.v != "" && !dnsLabel.MatchString(f.v) {
			bad(f.env, f.field, "%q is not a DNS label", f.v)
		}
	}
	prefix := normalizePrefix(c.PathPrefix)
	if c.PathPrefix != "" {
		if !strings.HasPrefix(strings.TrimSpace(c.PathPrefix), "/") || strings.ContainsAny(prefix, "?#\\ %{}") || strings.Contains(prefix, "//") || strings.Contains(prefix+"/", "/../") || strings.Contains(prefix+"/", "/./") {
			bad(appenv.PathPrefix, "PathPrefix", "%q is not a clean path such as / or /chat", c.PathPrefix)
		}
	}
	if c.RedirectURL != "" {
		u, err := url.Parse(c.RedirectURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			bad(appenv.RedirectURL, "RedirectURL", "%q is not an absolute URL", c.RedirectURL)
		case u.Scheme == "http" && !c.InsecureDevCookies:
			bad(appenv.RedirectURL, "RedirectURL", "%q must be https (plain http only with %s=true)", c.RedirectURL, appenv.InsecureDevCookies)
		case u.Path != prefix+"/oauth/callback":
			bad(appenv.RedirectURL, "RedirectURL", "path %q must be %q (the path prefix followed by /oauth/callback)", u.Path, prefix+"/oauth/callback")
		}
	}
	if len(c.Scopes) > 0 && !contains(c.Scopes, "openid") {
		bad(appenv.Scopes, "Scopes", "%q must include openid", strings.Join(c.Scopes, " "))
	}
	for _, d := range c.AllowedEmailDomains {
		d = strings.TrimPrefix(strings.TrimSpace(d), "@")
		if d == "" || strings.ContainsAny(d, "@/ ") || !strings.Contains(d, ".") {
			bad(appenv.AllowedEmailDomains, "AllowedEmailDomains", "%q is not a domain such as example.com", d)
		}
	}
	if c.SessionTTL > 0 && c.SessionTTL < time.Minute {
		bad(appenv.SessionTTL, "SessionTTL", "%s is shorter than a minute", c.SessionTTL)
	}
	if c.NATSReplicas < 0 || c.NATSReplicas > 5 {
		bad(appenv.NATSReplicas, "NATSReplicas", "%d is not between 1 and 5", c.NATSReplicas)
	}
	if c.MaxRequestBytes < 0 || c.MaxTokens < 0 || c.InvokeTimeout < 0 {
		out = append(out, "MaxRequestBytes, MaxTokens and InvokeTimeout must not be negative")
	}
	if c.MaxPendingRequests < 0 {
		bad(appenv.MaxPendingRequests, "MaxPendingRequests", "%d is negative", c.MaxPendingRequests)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
