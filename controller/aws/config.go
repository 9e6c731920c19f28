package aws

import (
	"errors"
	"io"
	"log/slog"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/controller/config"
	"github.com/servingapp/servingapp/internal/clock"
)

// Config is what the platform needs of the controller configuration.
type Config struct {
	// ControllerID is the value of the servingapp.io/managed-by tag; resources
	// tagged with another id, or untagged, are never changed.
	ControllerID string
	Region       string
	// Cluster is the ECS cluster the services run in.
	Cluster string
	// ListenerARN is the shared ALB's HTTPS listener the rules go on.
	ListenerARN string
	VPCID       string
	// Subnets and SecurityGroups are the tasks' awsvpc network configuration.
	Subnets        []string
	SecurityGroups []string
	AssignPublicIP bool
	// ExecutionRoleARN lets ECS pull the image, read the secrets and write
	// logs; TaskRoleARN (optional) is the web app's own role.
	ExecutionRoleARN string
	TaskRoleARN      string
	// LogGroup receives the containers' awslogs streams.
	LogGroup string
	// PriorityMin and PriorityMax bound the listener rule priorities used.
	PriorityMin, PriorityMax int32
	// SecretPrefix starts every secret name ("servingapp/").
	SecretPrefix string
	// SecretRecoveryWindowDays is how long a deleted secret can be restored (7–30).
	SecretRecoveryWindowDays int
	// HealthCheckGracePeriodSeconds lets new tasks start before ALB health checks count.
	HealthCheckGracePeriodSeconds int32
	// DescribePerSecond and MutatePerSecond are client-side call rates per
	// service and operation class; Burst is the bucket size of each.
	DescribePerSecond float64
	MutatePerSecond   float64
	Burst             int
	// MaxAttempts bounds the SDK's attempts per call (adaptive retry mode).
	MaxAttempts int
	// BlockRulesPerApp is the most lockout rules (SetBlocked) one app may
	// have; each holds up to three addresses (two under a path prefix).
	// 0 takes the default, 4.
	BlockRulesPerApp int
	// BlockRuleReserve is how many of the load balancer's rules, and of the
	// configured priorities, lockout rules leave free for allow rules: an
	// attacker's addresses must not use up the room new apps and longer
	// allowlists need. 0 takes the default, 10.
	BlockRuleReserve int
	// AppCredsSecret, when set, is the Secrets Manager name or ARN of the
	// web apps' NATS credentials, injected as SERVINGAPP_NATS_CREDS.
	AppCredsSecret string
}

// ConfigFrom takes the platform's settings from a loaded (defaulted and
// validated) controller configuration.
func ConfigFrom(c *config.Config) Config {
	a := c.AWS
	return Config{
		ControllerID:                  c.ControllerID,
		Region:                        a.Region,
		Cluster:                       a.Cluster,
		ListenerARN:                   a.ListenerARN,
		VPCID:                         a.VPCID,
		Subnets:                       a.Subnets,
		SecurityGroups:                a.SecurityGroups,
		AssignPublicIP:                a.AssignPublicIP,
		ExecutionRoleARN:              a.ExecutionRoleARN,
		TaskRoleARN:                   a.TaskRoleARN,
		LogGroup:                      a.LogGroup,
		PriorityMin:                   a.RulePriorities.Min,
		PriorityMax:                   a.RulePriorities.Max,
		SecretPrefix:                  a.SecretPrefix,
		SecretRecoveryWindowDays:      a.SecretRecoveryWindowDays,
		HealthCheckGracePeriodSeconds: a.HealthCheckGracePeriodSeconds,
		DescribePerSecond:             a.RateLimits.DescribePerSecond,
		MutatePerSecond:               a.RateLimits.MutatePerSecond,
		Burst:                         a.RateLimits.Burst,
		MaxAttempts:                   a.MaxAttempts,
		BlockRulesPerApp:              a.Lockout.RulesPerApp,
		BlockRuleReserve:              a.Lockout.Reserve,
		AppCredsSecret:                c.NATS.AppCredsSecret,
	}
}

// withDefaults fills what the controller config would have defaulted.
func (c Config) withDefaults() Config {
	if c.PriorityMin == 0 && c.PriorityMax == 0 {
		c.PriorityMin, c.PriorityMax = 1000, 49000
	}
	if c.SecretPrefix == "" {
		c.SecretPrefix = "servingapp/"
	}
	if c.SecretRecoveryWindowDays == 0 {
		c.SecretRecoveryWindowDays = 7
	}
	if c.HealthCheckGracePeriodSeconds == 0 {
		c.HealthCheckGracePeriodSeconds = 60
	}
	if c.DescribePerSecond == 0 {
		c.DescribePerSecond = 20
	}
	if c.MutatePerSecond == 0 {
		c.MutatePerSecond = 5
	}
	if c.Burst == 0 {
		c.Burst = 10
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	if c.BlockRulesPerApp == 0 {
		c.BlockRulesPerApp = defaultBlockRulesPerApp
	}
	if c.BlockRuleReserve == 0 {
		c.BlockRuleReserve = defaultBlockRuleReserve
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	for field, v := range map[string]string{
		"ControllerID": c.ControllerID, "Region": c.Region, "Cluster": c.Cluster, "ListenerARN": c.ListenerARN,
		"VPCID": c.VPCID, "ExecutionRoleARN": c.ExecutionRoleARN, "LogGroup": c.LogGroup,
	} {
		if v == "" {
			errs = append(errs, errors.New("aws platform: "+field+" is required"))
		}
	}
	if len(c.Subnets) == 0 {
		errs = append(errs, errors.New("aws platform: at least one subnet is required"))
	}
	if c.BlockRulesPerApp < 0 || c.BlockRuleReserve < 0 {
		errs = append(errs, errors.New("aws platform: BlockRulesPerApp and BlockRuleReserve must not be negative"))
	}
	if c.PriorityMin < 1 || c.PriorityMax > 50000 || c.PriorityMin > c.PriorityMax {
		errs = append(errs, errors.New("aws platform: rule priorities must lie within 1–50000 with min ≤ max"))
	}
	return errors.Join(errs...)
}

// Options are the platform's dependencies and tuning. The zero value is
// production: default credential chain, AWS_ENDPOINT_URL honoured by the SDK,
// real clock, crypto/rand.
type Options struct {
	// Registerer receives the AWS call metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Log receives warnings the platform cannot return (nil discards them).
	Log *slog.Logger
	// Clock ages the read caches; nil is the real clock.
	Clock clock.Clock
	// Rand generates session keys; nil is crypto/rand.
	Rand io.Reader

	// BaseEndpoint, when set, sends every call there (tests and emulators;
	// AWS_ENDPOINT_URL does the same without code).
	BaseEndpoint string
	// Credentials replaces the default credential chain (tests).
	Credentials awssdk.CredentialsProvider
	// RetryBackoff replaces the SDK's exponential backoff between attempts
	// (tests keep it short); the retry mode stays adaptive.
	RetryBackoff func(attempt int, err error) (time.Duration, error)
	// Retryer, when set, replaces the adaptive retry mode. Only for tests
	// that throttle many calls on purpose: adaptive mode then slows the
	// client to as little as half a call per second, as it should in
	// production, which would only make such tests slow.
	Retryer func() awssdk.Retryer

	// ServiceMaxAge is how long a DescribeServices answer serves Observe
	// (default 5s): rollouts are seen at most this late.
	ServiceMaxAge time.Duration
	// SnapshotMaxAge is how long the listener and secrets snapshots serve
	// Observe (default 20s). Changes made by this platform update them at once.
	SnapshotMaxAge time.Duration
	// TagMaxAge is how long the tags of a listener rule or target group are
	// trusted to classify it (default 1h). Tags are read again right before
	// a rule or target group is changed or deleted, whatever their age.
	TagMaxAge time.Duration
	// OrphanPasses is how many consecutive CollectOrphans calls must find an
	// app's resources orphaned before they are deleted (default 2): an app
	// created while a resync was listing is never mistaken for a deleted one.
	OrphanPasses int
}

func (o Options) withDefaults() Options {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.ServiceMaxAge == 0 {
		o.ServiceMaxAge = 5 * time.Second
	}
	if o.SnapshotMaxAge == 0 {
		o.SnapshotMaxAge = 20 * time.Second
	}
	if o.TagMaxAge == 0 {
		o.TagMaxAge = time.Hour
	}
	if o.OrphanPasses == 0 {
		o.OrphanPasses = 2
	}
	return o
}
