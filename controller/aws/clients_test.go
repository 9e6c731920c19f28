package aws

import (
	"context"
	"math"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/servingapp/servingapp/internal/awsemu"
)

// standardRetries replaces adaptive mode, whose own client-side slowdown
// after a throttle would only make these tests wait.
func standardRetries(maxAttempts int) func() awssdk.Retryer {
	return func() awssdk.Retryer {
		return retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = maxAttempts
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			so.RateLimiter = ratelimit.None
		})
	}
}

// slowPlatform is a platform whose limiters refill so slowly (one token
// per 1000s) that a test sees exactly the tokens its calls took.
func (e *env) slowPlatform(reg *prometheus.Registry) *Platform {
	e.t.Helper()
	e.cfg.DescribePerSecond, e.cfg.MutatePerSecond, e.cfg.Burst = 0.001, 0.001, 5
	return e.platformWith(func(o *Options) {
		o.Registerer = reg
		o.Retryer = standardRetries(e.cfg.MaxAttempts)
	})
}

var limiterKeys = []string{
	serviceECS + "/" + classDescribe, serviceECS + "/" + classMutate,
	serviceELBv2 + "/" + classDescribe, serviceELBv2 + "/" + classMutate,
	serviceSecrets + "/" + classDescribe, serviceSecrets + "/" + classMutate,
}

func tokens(p *Platform) map[string]float64 {
	out := map[string]float64{}
	for _, k := range limiterKeys {
		out[k] = p.in.limiters[k].Tokens()
	}
	return out
}

// TestEveryAttemptWaitsForItsServiceAndClassLimiter: each call attempt
// takes one token from the limiter of its service and operation class, and
// only from that one; an SDK retry takes another.
func TestEveryAttemptWaitsForItsServiceAndClassLimiter(t *testing.T) {
	missing := awssdk.String("arn:aws:ecs:us-east-1:123456789012:service/apps/missing")
	tests := []struct {
		name     string
		call     func(ctx context.Context, c clients, listener string) error
		limiter  string
		throttle string // operation throttled once, so the SDK retries it
		attempts int
	}{
		{"ECS DescribeServices", func(ctx context.Context, c clients, listener string) error {
			_, err := c.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: awssdk.String(testCluster), Services: []string{"x"}})
			return err
		}, serviceECS + "/" + classDescribe, "", 1},
		{"ECS TagResource (answered with an error)", func(ctx context.Context, c clients, listener string) error {
			_, err := c.ecs.TagResource(ctx, &ecs.TagResourceInput{ResourceArn: missing, Tags: ecsTags(map[string]string{"k": "v"})})
			if err == nil {
				t.Error("tagging a missing service succeeded")
			}
			return nil
		}, serviceECS + "/" + classMutate, "", 1},
		{"ELBv2 DescribeRules, throttled once", func(ctx context.Context, c clients, listener string) error {
			_, err := c.elb.DescribeRules(ctx, &elb.DescribeRulesInput{ListenerArn: awssdk.String(listener)})
			return err
		}, serviceELBv2 + "/" + classDescribe, "DescribeRules", 2},
		{"ELBv2 CreateRule", func(ctx context.Context, c clients, listener string) error {
			_, err := c.elb.CreateRule(ctx, &elb.CreateRuleInput{
				ListenerArn: awssdk.String(listener), Priority: awssdk.Int32(33000),
				Conditions: []elbtypes.RuleCondition{{Field: awssdk.String("host-header"), HostHeaderConfig: &elbtypes.HostHeaderConditionConfig{Values: []string{"x.example.com"}}}},
				Actions:    ruleActions(ruleState{Fixed: blockStatus}),
			})
			return err
		}, serviceELBv2 + "/" + classMutate, "", 1},
		{"Secrets Manager ListSecrets", func(ctx context.Context, c clients, listener string) error {
			_, err := c.sm.ListSecrets(ctx, &sm.ListSecretsInput{})
			return err
		}, serviceSecrets + "/" + classDescribe, "", 1},
		{"Secrets Manager CreateSecret, throttled once", func(ctx context.Context, c clients, listener string) error {
			_, err := c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: awssdk.String("servingapp/x"), SecretString: awssdk.String("v")})
			return err
		}, serviceSecrets + "/" + classMutate, "CreateSecret", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.slowPlatform(prometheus.NewRegistry())
			if tc.throttle != "" {
				if err := e.srv.SetFaults(awsemu.Fault{Operation: tc.throttle, Kind: awsemu.FaultThrottle, Fraction: 1, Limit: 1}); err != nil {
					t.Fatal(err)
				}
			}
			before := tokens(p)
			if err := tc.call(context.Background(), p.c, e.listenerARN); err != nil {
				t.Fatal(err)
			}
			after := tokens(p)
			for _, k := range limiterKeys {
				want := before[k]
				if k == tc.limiter {
					want -= float64(tc.attempts)
				}
				// 1000s a token: the test's own duration refills nothing
				// that shows at this precision.
				if math.Abs(after[k]-want) > 0.01 {
					t.Errorf("limiter %s: %.3f tokens, want %.3f", k, after[k], want)
				}
			}
		})
	}
}

// TestARateLimitedCallWaitsAndIsCountedCanceledWhenItCannot: once a
// limiter's burst is used up a call must wait for a token; when its
// context ends before that (here: its deadline is nearer than the next
// token), it is refused without reaching AWS and counted as canceled.
func TestARateLimitedCallWaitsAndIsCountedCanceledWhenItCannot(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	p := e.slowPlatform(reg)
	ctx := context.Background()
	for range e.cfg.Burst {
		if _, err := p.c.sm.ListSecrets(ctx, &sm.ListSecretsInput{}); err != nil {
			t.Fatal(err)
		}
	}
	lim := p.in.limiters[serviceSecrets+"/"+classDescribe]
	r := lim.Reserve()
	if d := r.Delay(); d < 900*time.Second {
		t.Errorf("after the burst the next call waits %s, want about 1000s (one token at 0.001/s)", d)
	}
	r.Cancel()
	before := e.srv.Calls()
	short, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := p.c.sm.ListSecrets(short, &sm.ListSecretsInput{}); err == nil {
		t.Fatal("a call that cannot get a token before its deadline succeeded")
	}
	if n := e.srv.Calls().Since(before).Total(); n != 0 {
		t.Errorf("the refused call reached AWS %d times", n)
	}
	got := callCounts(t, reg)
	if got[callLabel{serviceSecrets, "ListSecrets", outcomeCanceled}] != 1 || got[callLabel{serviceSecrets, "ListSecrets", outcomeOK}] != float64(e.cfg.Burst) {
		t.Errorf("calls counted %v, want %d ok and 1 canceled", got, e.cfg.Burst)
	}
	// Other limiters are untouched: ECS reads go on.
	if _, err := p.c.ecs.ListClusters(short, &ecs.ListClustersInput{}); err != nil {
		t.Errorf("an ECS read after Secrets Manager's limit was used up: %v", err)
	}
}

// callLabel is one series of servingapp_aws_calls_total.
type callLabel struct{ service, operation, outcome string }

func callCounts(t *testing.T, reg *prometheus.Registry) map[callLabel]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[callLabel]float64{}
	for _, f := range families {
		if f.GetName() != "servingapp_aws_calls_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var l callLabel
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "service":
					l.service = lp.GetValue()
				case "operation":
					l.operation = lp.GetValue()
				case "outcome":
					l.outcome = lp.GetValue()
				}
			}
			out[l] = m.GetCounter().GetValue()
		}
	}
	return out
}

// TestCallsAreCountedByOutcome: every attempt is counted with the outcome
// its answer had, so a throttled, failed or lost attempt and the retry
// after it are two calls with different labels.
func TestCallsAreCountedByOutcome(t *testing.T) {
	get := func(name string) func(context.Context, *Platform) error {
		return func(ctx context.Context, p *Platform) error {
			_, err := p.c.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String(name)})
			return err
		}
	}
	tests := []struct {
		name   string
		fault  awsemu.FaultKind // hits the first attempt
		secret string
		cancel bool // the caller gives up after a moment
		want   map[string]float64
	}{
		{"ok", 0, "servingapp/present", false, map[string]float64{outcomeOK: 1}},
		{"throttled, then ok", awsemu.FaultThrottle, "servingapp/present", false, map[string]float64{outcomeThrottled: 1, outcomeOK: 1}},
		{"server error, then ok", awsemu.FaultServerError, "servingapp/present", false, map[string]float64{outcomeServerError: 1, outcomeOK: 1}},
		{"answer lost, then ok", awsemu.FaultResponseLost, "servingapp/present", false, map[string]float64{outcomeServerError: 1, outcomeOK: 1}},
		{"connection dropped, then ok", awsemu.FaultConnectionDropped, "servingapp/present", false, map[string]float64{outcomeNetwork: 1, outcomeOK: 1}},
		{"client error", 0, "servingapp/absent", false, map[string]float64{outcomeClientError: 1}},
		// Held by the emulator until the caller gives up.
		{"canceled while waiting for the answer", awsemu.FaultDelay, "servingapp/present", true, map[string]float64{outcomeCanceled: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			must(e.raw.sm.CreateSecret(context.Background(), &sm.CreateSecretInput{Name: awssdk.String("servingapp/present"), SecretString: awssdk.String("v")}))(t)
			reg := prometheus.NewRegistry()
			p := e.platformWith(func(o *Options) { o.Registerer = reg; o.Retryer = standardRetries(e.cfg.MaxAttempts) })
			if tc.fault != 0 {
				if err := e.srv.SetFaults(awsemu.Fault{Kind: tc.fault, Fraction: 1, Limit: 1, Delay: time.Hour}); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				var stop context.CancelFunc
				ctx, stop = context.WithTimeout(ctx, 20*time.Millisecond)
				defer stop()
			}
			err := get(tc.secret)(ctx, p)
			if wantErr := tc.cancel || tc.secret == "servingapp/absent"; (err != nil) != wantErr {
				t.Fatalf("call: %v", err)
			}
			got := map[string]float64{}
			for l, n := range callCounts(t, reg) {
				if l.service != serviceSecrets || l.operation != "DescribeSecret" {
					t.Errorf("counted %+v", l)
				}
				got[l.outcome] += n
			}
			if len(got) != len(tc.want) {
				t.Errorf("counted %v, want %v", got, tc.want)
			}
			for o, n := range tc.want {
				if got[o] != n {
					t.Errorf("counted %v, want %v", got, tc.want)
				}
			}
		})
	}
}
