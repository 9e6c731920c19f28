// Package model is the desired state of one ServingApp in platform-neutral
// terms, built by a pure function of the spec and the controller config, and
// the shapes platforms report back. Platforms and the controller both use it;
// it has no side effects, so it can be printed, diffed and tested without AWS.
package model

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/servingapp/servingapp/api/appenv"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// Tag keys put on every external resource the controller owns.
const (
	TagManagedBy = "servingapp.io/managed-by" // the controller id
	TagApp       = "servingapp.io/app"        // "<namespace>/<name>"
	TagUID       = "servingapp.io/uid"        // the ServingApp's uid
)

// Ref identifies an app across its lifetime.
type Ref struct {
	Namespace string
	Name      string
	UID       string
}

// String returns "<namespace>/<name>".
func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Key returns the store key "<namespace>.<name>".
func (r Ref) Key() string { return r.Namespace + "." + r.Name }

// App is everything a platform needs to run one ServingApp.
type App struct {
	Ref        Ref
	Generation int64

	Image  string
	CPU    int32
	Memory int32
	// Replicas is the desired count when not autoscaled; with Autoscaled it is
	// the count to start with, and platforms must not overwrite a running
	// service's desired count.
	Replicas    int32
	Autoscaled  bool
	MinReplicas int32
	MaxReplicas int32

	Host       string
	PathPrefix string
	// PathPatterns are the ALB-style patterns that select this app: "/" gives
	// "/*"; "/p" gives "/p" and "/p/*".
	PathPatterns []string
	// URL is the app's public URL, ending in "/".
	URL string
	// Allowlist holds the canonical source prefixes allowed in.
	Allowlist []netip.Prefix

	// Env is the container's plain environment, injected variables included.
	Env map[string]string
	// SecretEnv maps variable names to secret references (Secrets Manager
	// names or ARNs) the platform resolves at start. The session key and the
	// OAuth client secret are added by the platform and the OAuth step.
	SecretEnv map[string]string

	OAuth OAuth

	DeletionPolicy v1.DeletionPolicy
	Tags           map[string]string
}

// OAuth is how the app is registered with Databricks.
type OAuth struct {
	Mode            v1.IntegrationMode
	IntegrationID   string // existing mode: given; managed mode: filled in by registration
	ClientSecretRef string // existing mode: given; managed mode: the stored secret's reference
	ClientID        string // filled in by registration
	RedirectURL     string
	Scopes          []string
	DatabricksHost  string
}

// Config is the part of the controller config the model depends on.
type Config struct {
	// ControllerID names this controller in tags; resources tagged by another id are not ours.
	ControllerID string
	// DefaultImage is used when spec.image is empty.
	DefaultImage string
	// AppDomain derives hosts for apps without spec.route.host: <name>.<namespace>.<AppDomain>.
	AppDomain string
	// Scheme of app URLs: https in production, http in dev mode.
	Scheme string
	// Port is appended to app URLs when the gateway is not on the scheme's default port (dev mode).
	Port int
	// AppNATSURL is handed to the web apps for sessions and audit events.
	AppNATSURL string
	// AppNATSCA is the PEM of the NATS servers' CA, handed to the web apps.
	AppNATSCA string
	// TrustedProxies are the CIDRs whose X-Forwarded-* headers the web apps believe.
	TrustedProxies []string
	// HostOverrideSuffix, when set, serves every app at
	// <name>.<namespace>.<suffix> whatever spec.route.host says. Dev mode sets
	// "localhost": browsers resolve *.localhost to this machine, while the
	// specs' real hosts point at an ALB.
	HostOverrideSuffix string
	// DatabricksHostOverride, when set, replaces every spec.databricks.host (dev mode emulator).
	DatabricksHostOverride string
	// ExtraTags are added to every resource.
	ExtraTags map[string]string
}

// ErrInvalid marks a spec the model cannot be built from; retrying will not help.
var ErrInvalid = errors.New("invalid ServingApp")

// Build returns the desired model of app. It is pure: the same spec and
// config always give the same model.
func Build(app *v1.ServingApp, cfg Config) (*App, error) {
	s := app.Spec
	ref := Ref{Namespace: app.Metadata.Namespace, Name: app.Metadata.Name, UID: app.Metadata.UID}
	m := &App{
		Ref:            ref,
		Generation:     app.Metadata.Generation,
		Image:          s.Image,
		CPU:            s.Resources.CPU,
		Memory:         s.Resources.Memory,
		Host:           s.Route.Host,
		PathPrefix:     s.Route.PathPrefix,
		DeletionPolicy: s.DeletionPolicy,
	}
	if m.Image == "" {
		m.Image = cfg.DefaultImage
	}
	if m.Image == "" {
		return nil, fmt.Errorf("%w: spec.image is empty and the controller has no defaultImage", ErrInvalid)
	}
	if cfg.HostOverrideSuffix != "" {
		m.Host = ref.Name + "." + ref.Namespace + "." + cfg.HostOverrideSuffix
	}
	if m.Host == "" {
		if cfg.AppDomain == "" {
			return nil, fmt.Errorf("%w: spec.route.host is empty and the controller has no appDomain to derive one", ErrInvalid)
		}
		m.Host = ref.Name + "." + ref.Namespace + "." + cfg.AppDomain
	}
	if m.PathPrefix == "" {
		m.PathPrefix = "/"
	}
	if m.PathPrefix == "/" {
		m.PathPatterns = []string{"/*"}
	} else {
		m.PathPatterns = []string{m.PathPrefix, m.PathPrefix + "/*"}
	}
	scheme := cfg.Scheme
	if scheme == "" {
		scheme = "https"
	}
	hostPort := m.Host
	if cfg.Port != 0 && !(scheme == "https" && cfg.Port == 443) && !(scheme == "http" && cfg.Port == 80) {
		hostPort = fmt.Sprintf("%s:%d", m.Host, cfg.Port)
	}
	base := scheme + "://" + hostPort + strings.TrimSuffix(m.PathPrefix, "/")
	m.URL = base + "/"

	switch {
	case s.Autoscaling != nil:
		m.Autoscaled = true
		m.MinReplicas, m.MaxReplicas = s.Autoscaling.MinReplicas, s.Autoscaling.MaxReplicas
		m.Replicas = s.Autoscaling.MinReplicas
	case s.Replicas != nil:
		m.Replicas = *s.Replicas
	default:
		m.Replicas = v1.DefaultReplicas
	}

	for i, c := range s.Allowlist {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("%w: spec.allowlist[%d]: %v", ErrInvalid, i, err)
		}
		m.Allowlist = append(m.Allowlist, p.Masked())
	}

	dbHost := s.Databricks.Host
	if cfg.DatabricksHostOverride != "" {
		dbHost = cfg.DatabricksHostOverride
	}
	m.OAuth = OAuth{
		Mode:            s.Databricks.OAuth.Integration,
		IntegrationID:   s.Databricks.OAuth.IntegrationID,
		ClientSecretRef: s.Databricks.OAuth.ClientSecretRef,
		RedirectURL:     base + "/oauth/callback",
		Scopes:          slices.Clone(s.Databricks.OAuth.Scopes),
		DatabricksHost:  strings.TrimSuffix(dbHost, "/"),
	}

	m.Env = maps.Clone(s.Env)
	if m.Env == nil {
		m.Env = map[string]string{}
	}
	m.Env[appenv.DatabricksHost] = m.OAuth.DatabricksHost
	m.Env[appenv.ServingEndpoint] = s.Databricks.ServingEndpoint
	m.Env[appenv.RedirectURL] = m.OAuth.RedirectURL
	m.Env[appenv.Scopes] = strings.Join(m.OAuth.Scopes, " ")
	m.Env[appenv.AppNamespace] = ref.Namespace
	m.Env[appenv.AppName] = ref.Name
	m.Env[appenv.PathPrefix] = m.PathPrefix
	m.Env[appenv.SessionTTL] = s.Session.TTL.String()
	if cfg.AppNATSURL != "" {
		m.Env[appenv.NATSURL] = cfg.AppNATSURL
	}
	if cfg.AppNATSCA != "" {
		m.Env[appenv.NATSCA] = cfg.AppNATSCA
	}
	if s.Identity != nil && len(s.Identity.AllowedEmailDomains) > 0 {
		m.Env[appenv.AllowedEmailDomains] = strings.Join(s.Identity.AllowedEmailDomains, ",")
	}
	if len(cfg.TrustedProxies) > 0 {
		m.Env[appenv.TrustedProxies] = strings.Join(cfg.TrustedProxies, ",")
	}
	m.SecretEnv = maps.Clone(s.Secrets)
	if m.SecretEnv == nil {
		m.SecretEnv = map[string]string{}
	}
	if m.OAuth.Mode == v1.IntegrationExisting {
		m.SecretEnv[appenv.ClientSecret] = m.OAuth.ClientSecretRef
		m.Env[appenv.ClientID] = "" // filled in by registration, which reads the integration
	}

	m.Tags = maps.Clone(cfg.ExtraTags)
	if m.Tags == nil {
		m.Tags = map[string]string{}
	}
	m.Tags[TagManagedBy] = cfg.ControllerID
	m.Tags[TagApp] = ref.String()
	m.Tags[TagUID] = ref.UID
	return m, nil
}

// Observed is what a platform found (or left) for one app.
type Observed struct {
	// Exists is true when any owned resource exists.
	Exists bool
	// Resources names what exists.
	Resources v1.ResourceStatus
	// Replicas counts tasks.
	Replicas v1.ReplicaStatus
	// Available: the latest rollout completed and running equals desired.
	Available bool
	// Rollout is the state of the latest rollout: InProgress, Completed or Failed.
	Rollout string
	// Message explains, for people, why the app is not available.
	Message string
	// State is the platform's own record of what it read, passed from Observe
	// to Apply and Delete so they need not read again.
	State any
}

// Rollout states.
const (
	RolloutInProgress = "InProgress"
	RolloutCompleted  = "Completed"
	RolloutFailed     = "Failed"
)

// Recorder receives reconcile events for people (servingctl describe) and for
// the event stream. Reasons are CamelCase; messages never carry secrets.
type Recorder interface {
	Event(ctx context.Context, reason, message string)
	Warning(ctx context.Context, reason, message string)
}

// TerminalError is a failure that retrying soon will not fix (invalid
// parameters, access denied, quota exhausted). The controller reports Reason
// and backs off to its maximum delay instead of hot-looping.
type TerminalError struct {
	Reason string // CamelCase, e.g. AccessDenied, QuotaExceeded, InvalidParameter
	Err    error
}

func (e *TerminalError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

// ErrLockoutBudget is wrapped by the error a platform's SetBlocked returns
// when it blocked only some of the addresses asked for, because lockout
// rules have a budget (they share the load balancer's rule quota with allow
// rules). The rest are blocked; asking again with the same addresses gets
// the same answer, so callers report it instead of retrying.
var ErrLockoutBudget = errors.New("lockout rule budget reached")

// Terminal wraps err as a TerminalError with reason.
func Terminal(reason string, err error) error { return &TerminalError{Reason: reason, Err: err} }

// SortedKeys returns m's keys in order, so anything built from a map is deterministic.
func SortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
