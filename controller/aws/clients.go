package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Service labels of the metrics: the services' SigV4 signing names.
const (
	serviceECS     = "ecs"
	serviceELBv2   = "elasticloadbalancing"
	serviceSecrets = "secretsmanager"
)

// Operation classes, rate-limited separately.
const (
	classDescribe = "describe"
	classMutate   = "mutate"
)

// Call outcomes in servingapp_aws_calls_total.
const (
	outcomeOK          = "ok"
	outcomeThrottled   = "throttled"
	outcomeClientError = "client_error"
	outcomeServerError = "server_error"
	outcomeNetwork     = "network_error"
	outcomeCanceled    = "canceled"
)

// operationClass is describe for operations that only read (Describe*,
// List*, Get*) and mutate for everything else.
func operationClass(op string) string {
	for _, p := range []string{"Describe", "List", "Get"} {
		if strings.HasPrefix(op, p) {
			return classDescribe
		}
	}
	return classMutate
}

// clients are the SDK clients, each with its rate limiters and call counting.
type clients struct {
	ecs *ecs.Client
	elb *elb.Client
	sm  *secretsmanager.Client
}

// instrumentation rate-limits and counts every attempt of every call.
type instrumentation struct {
	calls    *prometheus.CounterVec
	wait     *prometheus.HistogramVec
	limiters map[string]*rate.Limiter // "<service>/<class>"
}

func newInstrumentation(cfg Config, reg prometheus.Registerer) (*instrumentation, error) {
	in := &instrumentation{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "servingapp_aws_calls_total",
			Help: "AWS API call attempts by service, operation and outcome (ok, throttled, client_error, server_error, network_error, canceled); SDK retries count again.",
		}, []string{"service", "operation", "outcome"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "servingapp_aws_rate_limit_wait_seconds",
			Help:    "Time calls waited for the client-side rate limiter, by service and operation class.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"service", "class"}),
		limiters: map[string]*rate.Limiter{},
	}
	for _, svc := range []string{serviceECS, serviceELBv2, serviceSecrets} {
		in.limiters[svc+"/"+classDescribe] = rate.NewLimiter(rate.Limit(cfg.DescribePerSecond), cfg.Burst)
		in.limiters[svc+"/"+classMutate] = rate.NewLimiter(rate.Limit(cfg.MutatePerSecond), cfg.Burst)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{in.calls, in.wait} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register AWS call metrics: %w", err)
			}
		}
	}
	return in, nil
}

// apiOption returns the middleware installer for one service's client. The
// middleware runs once per attempt, inside the SDK's retry loop and before
// signing: every attempt waits for the limiter and is counted.
func (in *instrumentation) apiOption(service string) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		mw := middleware.FinalizeMiddlewareFunc("servingapp/RateLimitAndCount", func(ctx context.Context, input middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			op := middleware.GetOperationName(ctx)
			class := operationClass(op)
			start := time.Now()
			if err := in.limiters[service+"/"+class].Wait(ctx); err != nil {
				in.calls.WithLabelValues(service, op, outcomeCanceled).Inc()
				return middleware.FinalizeOutput{}, middleware.Metadata{}, err
			}
			in.wait.WithLabelValues(service, class).Observe(time.Since(start).Seconds())
			out, md, err := next.HandleFinalize(ctx, input)
			in.calls.WithLabelValues(service, op, outcome(ctx, err)).Inc()
			return out, md, err
		})
		if err := stack.Finalize.Insert(mw, "Retry", middleware.After); err != nil {
			return stack.Finalize.Add(mw, middleware.After)
		}
		return nil
	}
}

func outcome(ctx context.Context, err error) string {
	if err == nil {
		return outcomeOK
	}
	if (retry.ThrottleErrorCode{Codes: retry.DefaultThrottleErrorCodes}).IsErrorThrottle(err) == awssdk.TrueTernary {
		return outcomeThrottled
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return outcomeServerError
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return outcomeClientError
	}
	if ctx.Err() != nil {
		return outcomeCanceled
	}
	return outcomeNetwork
}

// newClients loads the SDK configuration (default credential chain and
// AWS_ENDPOINT_URL unless opts override them) with the adaptive retry mode
// and builds the three clients.
func newClients(ctx context.Context, cfg Config, opts Options, in *instrumentation) (clients, error) {
	loadOpts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(cfg.Region),
		awsconfig.WithRetryer(func() awssdk.Retryer {
			return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
				o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) {
					so.MaxAttempts = cfg.MaxAttempts
					if opts.RetryBackoff != nil {
						so.Backoff = retry.BackoffDelayerFunc(opts.RetryBackoff)
					}
				})
			})
		}),
	}
	if opts.Retryer != nil {
		loadOpts = append(loadOpts, awsconfig.WithRetryer(opts.Retryer))
	}
	if opts.BaseEndpoint != "" {
		loadOpts = append(loadOpts, awsconfig.WithBaseEndpoint(opts.BaseEndpoint))
	}
	if opts.Credentials != nil {
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(opts.Credentials))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return clients{}, fmt.Errorf("load AWS SDK configuration: %w", err)
	}
	return clients{
		ecs: ecs.NewFromConfig(awsCfg, func(o *ecs.Options) {
			o.APIOptions = append(o.APIOptions, in.apiOption(serviceECS))
		}),
		elb: elb.NewFromConfig(awsCfg, func(o *elb.Options) {
			o.APIOptions = append(o.APIOptions, in.apiOption(serviceELBv2))
		}),
		sm: secretsmanager.NewFromConfig(awsCfg, func(o *secretsmanager.Options) {
			o.APIOptions = append(o.APIOptions, in.apiOption(serviceSecrets))
		}),
	}, nil
}
