// Package config is the controller's configuration file: its schema,
// defaults, strict loading and validation. servingapp-controller reads it;
// terraform renders it; manifests/controller.example.yaml documents it.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// Platforms the controller can run apps on.
const (
	PlatformAWS   = "aws"
	PlatformLocal = "local"
)

// Config is the whole controller configuration.
type Config struct {
	// ControllerID names this controller installation in resource tags;
	// resources tagged with another id are never touched.
	ControllerID string `json:"controllerId"`
	// Platform is "aws" (ECS + ELBv2) or "local" (dev mode, in-process).
	Platform string `json:"platform"`
	// DefaultImage is the web app image for apps that leave spec.image empty.
	DefaultImage string `json:"defaultImage"`
	// AppDomain derives hosts for apps without spec.route.host: <name>.<namespace>.<appDomain>.
	AppDomain string `json:"appDomain,omitempty"`
	// TrustedProxies are the CIDRs (the ALB's subnets) whose X-Forwarded-* the web apps believe.
	TrustedProxies []string `json:"trustedProxies,omitempty"`

	NATS           NATS           `json:"nats"`
	Workers        int            `json:"workers,omitempty"`
	Resync         v1.Duration    `json:"resync,omitzero"`
	LeaderElection LeaderElection `json:"leaderElection,omitzero"`
	Streams        Streams        `json:"streams,omitzero"`
	// Listen is the address of /healthz, /readyz and /metrics.
	Listen string `json:"listen,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel,omitempty"`

	AWS        AWS        `json:"aws,omitzero"`
	Databricks Databricks `json:"databricks,omitzero"`
}

// NATS is where the API store, leases and event streams live.
type NATS struct {
	URL   string `json:"url"`
	Creds string `json:"creds,omitempty"`
	// AppURL is the NATS URL handed to the web apps (sessions, audit); defaults to URL.
	AppURL string `json:"appUrl,omitempty"`
	// AppCredsSecret is the Secrets Manager name or ARN of the web apps' NATS credentials.
	AppCredsSecret string `json:"appCredsSecret,omitempty"`
	// AppCA is the PEM of the CA that signed the NATS servers' certificates,
	// handed to the web apps (SERVINGAPP_NATS_CA).
	AppCA string `json:"appCA,omitempty"`
}

// LeaderElection configures the KV lease.
type LeaderElection struct {
	// Disabled runs without a lease: only for a single controller (dev mode).
	Disabled      bool        `json:"disabled,omitempty"`
	LeaseTTL      v1.Duration `json:"leaseTTL,omitzero"`
	RenewEvery    v1.Duration `json:"renewEvery,omitzero"`
	RenewDeadline v1.Duration `json:"renewDeadline,omitzero"`
}

// Streams sizes the audit and event streams the controller creates.
type Streams struct {
	Replicas      int         `json:"replicas,omitempty"`
	AuditMaxAge   v1.Duration `json:"auditMaxAge,omitzero"`
	AuditMaxBytes int64       `json:"auditMaxBytes,omitempty"`
	EventsMaxAge  v1.Duration `json:"eventsMaxAge,omitzero"`
}

// AWS configures the ECS + ELBv2 + Secrets Manager platform.
type AWS struct {
	Region           string            `json:"region,omitempty"`
	Cluster          string            `json:"cluster,omitempty"`
	ListenerARN      string            `json:"listenerArn,omitempty"`
	VPCID            string            `json:"vpcId,omitempty"`
	Subnets          []string          `json:"subnets,omitempty"`
	SecurityGroups   []string          `json:"securityGroups,omitempty"`
	AssignPublicIP   bool              `json:"assignPublicIp,omitempty"`
	ExecutionRoleARN string            `json:"executionRoleArn,omitempty"`
	TaskRoleARN      string            `json:"taskRoleArn,omitempty"`
	LogGroup         string            `json:"logGroup,omitempty"`
	RulePriorities   PriorityRange     `json:"rulePriorities,omitzero"`
	ExtraTags        map[string]string `json:"extraTags,omitempty"`
	// SecretPrefix starts the name of every secret the controller creates.
	SecretPrefix string `json:"secretPrefix,omitempty"`
	// SecretRecoveryWindowDays is how long deleted secrets can be restored (7–30).
	SecretRecoveryWindowDays int `json:"secretRecoveryWindowDays,omitempty"`
	// HealthCheckGracePeriodSeconds lets new tasks start before ALB health checks count.
	HealthCheckGracePeriodSeconds int32      `json:"healthCheckGracePeriodSeconds,omitempty"`
	RateLimits                    RateLimits `json:"rateLimits,omitzero"`
	// MaxAttempts bounds the SDK's retries per call (adaptive mode).
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// Lockout bounds the listener rules that block addresses (spec.identity.lockout).
	Lockout LockoutRules `json:"lockout,omitzero"`
}

// LockoutRules bound the listener rules lockout may use, so that addresses
// an attacker sprays from cannot use up the rules apps need to be reached.
type LockoutRules struct {
	// RulesPerApp is the most lockout rules one app may have (three
	// addresses each, two under a path prefix). Default 4.
	RulesPerApp int `json:"rulesPerApp,omitempty"`
	// Reserve is how many of the listener's rules and of the priority range
	// lockout leaves free for allow rules. Default 10.
	Reserve int `json:"reserve,omitempty"`
}

// PriorityRange is the band of listener rule priorities the controller may use.
type PriorityRange struct {
	Min int32 `json:"min"`
	Max int32 `json:"max"`
}

// RateLimits are client-side calls per second, per service and operation class.
type RateLimits struct {
	DescribePerSecond float64 `json:"describePerSecond,omitempty"`
	MutatePerSecond   float64 `json:"mutatePerSecond,omitempty"`
	Burst             int     `json:"burst,omitempty"`
}

// Databricks configures OAuth registration through the account API.
type Databricks struct {
	// AccountHost is e.g. https://accounts.cloud.databricks.com.
	AccountHost string `json:"accountHost,omitempty"`
	AccountID   string `json:"accountId,omitempty"`
	// CredentialsSecret is the Secrets Manager name or ARN of a JSON secret
	// {"client_id": ..., "client_secret": ...} of the account service principal.
	CredentialsSecret string `json:"credentialsSecret,omitempty"`
	// AccessTokenTTLMinutes and RefreshTokenTTLMinutes set managed integrations' token policy.
	AccessTokenTTLMinutes  int `json:"accessTokenTTLMinutes,omitempty"`
	RefreshTokenTTLMinutes int `json:"refreshTokenTTLMinutes,omitempty"`
}

// Load reads, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read controller config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("controller config %s: %w", path, err)
	}
	return c, nil
}

// Parse strictly decodes YAML (unknown fields are errors), applies defaults
// and validates, reporting every problem.
func Parse(b []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, err
	}
	c.SetDefaults()
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// SetDefaults fills what was left out.
func (c *Config) SetDefaults() {
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.Resync.Duration == 0 {
		c.Resync.Duration = 10 * time.Minute
	}
	if c.Listen == "" {
		c.Listen = ":9090"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.NATS.AppURL == "" {
		c.NATS.AppURL = c.NATS.URL
	}
	le := &c.LeaderElection
	if le.LeaseTTL.Duration == 0 {
		le.LeaseTTL.Duration = 15 * time.Second
	}
	if le.RenewEvery.Duration == 0 {
		le.RenewEvery.Duration = 5 * time.Second
	}
	if le.RenewDeadline.Duration == 0 {
		le.RenewDeadline.Duration = 10 * time.Second
	}
	if c.Streams.Replicas == 0 {
		c.Streams.Replicas = 1
	}
	a := &c.AWS
	if a.RulePriorities == (PriorityRange{}) {
		a.RulePriorities = PriorityRange{Min: 1000, Max: 49000}
	}
	if a.SecretPrefix == "" {
		a.SecretPrefix = "servingapp/"
	}
	if a.SecretRecoveryWindowDays == 0 {
		a.SecretRecoveryWindowDays = 7
	}
	if a.HealthCheckGracePeriodSeconds == 0 {
		a.HealthCheckGracePeriodSeconds = 60
	}
	if a.RateLimits.DescribePerSecond == 0 {
		a.RateLimits.DescribePerSecond = 20
	}
	if a.RateLimits.MutatePerSecond == 0 {
		a.RateLimits.MutatePerSecond = 5
	}
	if a.RateLimits.Burst == 0 {
		a.RateLimits.Burst = 10
	}
	if a.Lockout.RulesPerApp == 0 {
		a.Lockout.RulesPerApp = 4
	}
	if a.Lockout.Reserve == 0 {
		a.Lockout.Reserve = 10
	}
	if a.MaxAttempts == 0 {
		a.MaxAttempts = 8
	}
	d := &c.Databricks
	if d.AccessTokenTTLMinutes == 0 {
		d.AccessTokenTTLMinutes = 60
	}
	if d.RefreshTokenTTLMinutes == 0 {
		d.RefreshTokenTTLMinutes = 7 * 24 * 60
	}
}

// Validate returns one error per problem, each naming its field.
func (c *Config) Validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.ControllerID == "" {
		bad("controllerId", "is required: it marks the resources this controller owns")
	} else if len(c.ControllerID) > 64 || strings.ContainsAny(c.ControllerID, " /,") {
		bad("controllerId", "%q must be at most 64 characters without spaces, '/' or ','", c.ControllerID)
	}
	if c.NATS.URL == "" {
		bad("nats.url", "is required")
	}
	if c.DefaultImage == "" {
		bad("defaultImage", "is required: the web app image apps run by default")
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("trustedProxies[%d]", i), "%q is not a CIDR", p)
		}
	}
	if c.Workers < 1 || c.Workers > 64 {
		bad("workers", "%d is out of range 1–64", c.Workers)
	}
	if c.Resync.Duration < time.Minute {
		bad("resync", "%s is too short: at least 1m", c.Resync)
	}
	le := c.LeaderElection
	if !le.Disabled && !(le.RenewEvery.Duration < le.RenewDeadline.Duration && le.RenewDeadline.Duration < le.LeaseTTL.Duration) {
		bad("leaderElection", "need renewEvery < renewDeadline < leaseTTL (got %s, %s, %s) so a leader stops before its lease can expire", le.RenewEvery, le.RenewDeadline, le.LeaseTTL)
	}
	if c.Streams.Replicas != 1 && c.Streams.Replicas != 3 && c.Streams.Replicas != 5 {
		bad("streams.replicas", "%d must be 1, 3 or 5", c.Streams.Replicas)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("logLevel", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.Platform {
	case PlatformAWS:
		errs = append(errs, c.AWS.validate()...)
	case PlatformLocal:
	default:
		bad("platform", "%q is not one of aws, local", c.Platform)
	}
	if d := c.Databricks; d.AccountID != "" || d.AccountHost != "" || d.CredentialsSecret != "" {
		if d.AccountHost == "" || !strings.HasPrefix(d.AccountHost, "https://") && !strings.HasPrefix(d.AccountHost, "http://127.0.0.1") {
			bad("databricks.accountHost", "%q must be an https URL such as https://accounts.cloud.databricks.com", d.AccountHost)
		}
		if d.AccountID == "" {
			bad("databricks.accountId", "is required for OAuth registration")
		}
		if d.CredentialsSecret == "" && c.Platform == PlatformAWS {
			bad("databricks.credentialsSecret", "is required: the Secrets Manager secret holding the account service principal's client_id and client_secret")
		}
	}
	return errs
}

func (a AWS) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("aws.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	req := map[string]string{"region": a.Region, "cluster": a.Cluster, "listenerArn": a.ListenerARN, "vpcId": a.VPCID, "executionRoleArn": a.ExecutionRoleARN, "logGroup": a.LogGroup}
	for _, k := range []string{"region", "cluster", "listenerArn", "vpcId", "executionRoleArn", "logGroup"} {
		if req[k] == "" {
			bad(k, "is required with platform: aws")
		}
	}
	if a.ListenerARN != "" && !strings.HasPrefix(a.ListenerARN, "arn:") {
		bad("listenerArn", "%q is not an ARN", a.ListenerARN)
	}
	if len(a.Subnets) == 0 {
		bad("subnets", "at least one subnet is required")
	}
	if len(a.SecurityGroups) == 0 {
		bad("securityGroups", "at least one security group is required")
	}
	if r := a.RulePriorities; r.Min < 1 || r.Max > 50000 || r.Min > r.Max {
		bad("rulePriorities", "%d–%d must lie within 1–50000 with min ≤ max", r.Min, r.Max)
	}
	if l := a.Lockout; l.RulesPerApp < 1 || l.RulesPerApp > 100 {
		bad("lockout.rulesPerApp", "%d must be 1 to 100 (the listener's rule quota)", l.RulesPerApp)
	}
	if l := a.Lockout; l.Reserve < 0 || l.Reserve > 100 {
		bad("lockout.reserve", "%d must be 0 to 100 (the listener's rule quota)", l.Reserve)
	}
	if a.SecretRecoveryWindowDays < 7 || a.SecretRecoveryWindowDays > 30 {
		bad("secretRecoveryWindowDays", "%d must be 7 to 30 (Secrets Manager's limits)", a.SecretRecoveryWindowDays)
	}
	if a.RateLimits.DescribePerSecond <= 0 || a.RateLimits.MutatePerSecond <= 0 || a.RateLimits.Burst < 1 {
		bad("rateLimits", "rates must be positive and burst at least 1")
	}
	return errs
}
