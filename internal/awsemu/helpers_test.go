package awsemu

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"
)

// clients are real SDK clients pointed at one endpoint.
type clients struct {
	ecs *ecs.Client
	elb *elb.Client
	sm  *secretsmanager.Client
	cfg aws.Config
}

// newTestServer starts a Server for one test and returns SDK clients for it.
func newTestServer(t *testing.T, opts Options) (*Server, clients) {
	t.Helper()
	srv := New(opts)
	t.Cleanup(srv.Close)
	return srv, newClients(t, srv.URL, nil)
}

// newClients builds SDK clients for url. retryer nil keeps the SDK default
// (standard mode, 3 attempts).
func newClients(t testing.TB, url string, retryer func() aws.Retryer) clients {
	t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion(DefaultRegion),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "SECRETEXAMPLE", "")),
		config.WithBaseEndpoint(url),
	)
	if err != nil {
		t.Fatalf("load AWS config: %v", err)
	}
	if retryer != nil {
		cfg.Retryer = retryer
	}
	return clients{ecs: ecs.NewFromConfig(cfg), elb: elb.NewFromConfig(cfg), sm: secretsmanager.NewFromConfig(cfg), cfg: cfg}
}

// noRetry makes clients that give up after the first attempt.
func noRetry() aws.Retryer { return retry.AddWithMaxAttempts(retry.NewStandard(), 1) }

// fastRetry is the SDK's standard retryer with short backoffs, so that
// retries under injected throttling do not slow the tests down.
func fastRetry() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 8
		o.MaxBackoff = 5 * time.Millisecond
	})
}

func ctx(t *testing.T) context.Context { return t.Context() }

// must returns v, failing the test if err is not nil:
// out := must(client.Call(ctx, in))(t).
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

// errorCode returns the AWS error code of err, "" for nil.
func errorCode(err error) string {
	if err == nil {
		return ""
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return "not an API error: " + err.Error()
}

// wantCode fails the test unless err carries the AWS error code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := errorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

// ---- fixtures ----

const (
	testImage = "public.ecr.aws/servingapp/webapp:1"
	testVPC   = DefaultVPCID
)

// fixture is an ALB with an HTTPS listener, a target group bound to it by a
// rule, an ECS cluster and a Fargate task definition: what a service needs.
type fixture struct {
	cluster     string
	listenerArn string
	lbArn       string
	tgArn       string
	taskDef     string
}

func newFixture(t *testing.T, c clients, name string) fixture {
	t.Helper()
	lb := must(c.elb.CreateLoadBalancer(ctx(t), &elb.CreateLoadBalancerInput{
		Name:    aws.String(name + "-alb"),
		Subnets: []string{"subnet-a", "subnet-b"},
	}))(t)
	lbArn := aws.ToString(lb.LoadBalancers[0].LoadBalancerArn)
	l := must(c.elb.CreateListener(ctx(t), &elb.CreateListenerInput{
		LoadBalancerArn: aws.String(lbArn),
		Protocol:        elbtypes.ProtocolEnumHttps,
		Port:            aws.Int32(443),
		Certificates:    []elbtypes.Certificate{{CertificateArn: aws.String("arn:aws:acm:us-east-1:123456789012:certificate/test")}},
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{
			StatusCode: aws.String("404"), ContentType: aws.String("text/plain"), MessageBody: aws.String("not found"),
		}}},
	}))(t)
	listenerArn := aws.ToString(l.Listeners[0].ListenerArn)
	tgArn := createTargetGroup(t, c, name+"-tg")
	must(c.elb.CreateRule(ctx(t), &elb.CreateRuleInput{
		ListenerArn: aws.String(listenerArn),
		Priority:    aws.Int32(1000),
		Conditions:  []elbtypes.RuleCondition{hostCondition(name + ".apps.example.com")},
		Actions:     forwardTo(tgArn),
	}))(t)
	must(c.ecs.CreateCluster(ctx(t), &ecs.CreateClusterInput{ClusterName: aws.String(name)}))(t)
	return fixture{
		cluster:     name,
		listenerArn: listenerArn,
		lbArn:       lbArn,
		tgArn:       tgArn,
		taskDef:     registerTaskDef(t, c, name, testImage),
	}
}

func createTargetGroup(t *testing.T, c clients, name string) string {
	t.Helper()
	out := must(c.elb.CreateTargetGroup(ctx(t), &elb.CreateTargetGroupInput{
		Name:            aws.String(name),
		Protocol:        elbtypes.ProtocolEnumHttp,
		Port:            aws.Int32(8080),
		VpcId:           aws.String(testVPC),
		TargetType:      elbtypes.TargetTypeEnumIp,
		HealthCheckPath: aws.String("/healthz"),
	}))(t)
	return aws.ToString(out.TargetGroups[0].TargetGroupArn)
}

func hostCondition(hosts ...string) elbtypes.RuleCondition {
	return elbtypes.RuleCondition{Field: aws.String("host-header"), HostHeaderConfig: &elbtypes.HostHeaderConditionConfig{Values: hosts}}
}

func pathCondition(paths ...string) elbtypes.RuleCondition {
	return elbtypes.RuleCondition{Field: aws.String("path-pattern"), PathPatternConfig: &elbtypes.PathPatternConditionConfig{Values: paths}}
}

func sourceIPCondition(cidrs ...string) elbtypes.RuleCondition {
	return elbtypes.RuleCondition{Field: aws.String("source-ip"), SourceIpConfig: &elbtypes.SourceIpConditionConfig{Values: cidrs}}
}

func forwardTo(tgArn string) []elbtypes.Action {
	return []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(tgArn)}}
}

func registerTaskDef(t *testing.T, c clients, family, image string) string {
	t.Helper()
	out := must(c.ecs.RegisterTaskDefinition(ctx(t), taskDefInput(family, image)))(t)
	return aws.ToString(out.TaskDefinition.TaskDefinitionArn)
}

func taskDefInput(family, image string) *ecs.RegisterTaskDefinitionInput {
	return &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(family),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode:             ecstypes.NetworkModeAwsvpc,
		Cpu:                     aws.String("256"),
		Memory:                  aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name:         aws.String("webapp"),
			Image:        aws.String(image),
			PortMappings: []ecstypes.PortMapping{{ContainerPort: aws.Int32(8080)}},
		}},
	}
}

// serviceInput is a CreateService request for a Fargate service behind the
// fixture's target group.
func (f fixture) serviceInput(name string, desired int32) *ecs.CreateServiceInput {
	return &ecs.CreateServiceInput{
		Cluster:        aws.String(f.cluster),
		ServiceName:    aws.String(name),
		TaskDefinition: aws.String(f.taskDef),
		DesiredCount:   aws.Int32(desired),
		LaunchType:     ecstypes.LaunchTypeFargate,
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
			Subnets: []string{"subnet-a", "subnet-b"}, SecurityGroups: []string{"sg-1"},
		}},
		LoadBalancers: []ecstypes.LoadBalancer{{
			TargetGroupArn: aws.String(f.tgArn), ContainerName: aws.String("webapp"), ContainerPort: aws.Int32(8080),
		}},
		HealthCheckGracePeriodSeconds: aws.Int32(30),
		DeploymentConfiguration: &ecstypes.DeploymentConfiguration{
			DeploymentCircuitBreaker: &ecstypes.DeploymentCircuitBreaker{Enable: true, Rollback: true},
		},
		PropagateTags:        ecstypes.PropagateTagsService,
		EnableECSManagedTags: true,
		Tags:                 []ecstypes.Tag{{Key: aws.String("servingapp.io/app"), Value: aws.String("default/" + name)}},
	}
}

func (f fixture) describe(t *testing.T, c clients, name string) ecstypes.Service {
	t.Helper()
	out := must(c.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Cluster: aws.String(f.cluster), Services: []string{name}}))(t)
	if len(out.Services) != 1 {
		t.Fatalf("DescribeServices(%s): %d services, failures %v", name, len(out.Services), failureReasons(out.Failures))
	}
	return out.Services[0]
}

func failureReasons(fs []ecstypes.Failure) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = fmt.Sprintf("%s:%s", aws.ToString(f.Arn), aws.ToString(f.Reason))
	}
	return out
}
