package awsemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/sivchari/kumo"
)

// This file checks, through the real SDK clients, how faithfully an endpoint
// implements the ECS, ELBv2 and Secrets Manager behaviour the AWS platform
// relies on. Every case runs against this package's Server, which must pass all of
// them, and against a bare kumo v0.33.1 server, whose result must match the
// recorded verdict. The verdicts are the evidence behind the divergence list
// in the package documentation: when a kumo upgrade changes one, this test
// says which, and the list (and maybe the router) must change with it.

// conformanceEnv is what a case runs against.
type conformanceEnv struct {
	c clients
	// fresh starts a second, independent endpoint of the same kind.
	fresh func() clients
	// prefix makes names unique: kumo's state is process-wide.
	prefix string
}

func (e conformanceEnv) name(s string) string { return e.prefix + s }

type conformanceCase struct {
	name string
	// kumoDiverges is "" when kumo v0.33.1 behaves like AWS, else what it
	// does instead.
	kumoDiverges string
	run          func(ctx context.Context, e conformanceEnv) error
}

func TestConformance(t *testing.T) {
	// Names must be unique across runs in one process (go test -count=n):
	// kumo keeps its state for the life of the process.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	run = run[len(run)-6:]
	var seq atomic.Int64
	for _, target := range []string{"awsemu", "kumo"} {
		t.Run(target, func(t *testing.T) {
			newEndpoint := func() clients {
				if target == "kumo" {
					k := kumo.NewServer()
					t.Cleanup(k.Close)
					return newClients(t, k.URL, noRetry)
				}
				srv := New(Options{})
				t.Cleanup(srv.Close)
				return newClients(t, srv.URL, noRetry)
			}
			c := newEndpoint()
			for _, tc := range conformanceCases() {
				t.Run(tc.name, func(t *testing.T) {
					env := conformanceEnv{c: c, fresh: newEndpoint, prefix: fmt.Sprintf("c%s%d-", run, seq.Add(1))}
					err := tc.run(t.Context(), env)
					if err != nil {
						t.Logf("%s: %v", target, err)
					}
					switch {
					case target == "awsemu" && err != nil:
						t.Errorf("diverges from AWS: %v", err)
					case target == "kumo" && tc.kumoDiverges == "" && err != nil:
						t.Errorf("kumo now diverges from AWS (%v); record it and handle it in the router", err)
					case target == "kumo" && tc.kumoDiverges != "" && err == nil:
						t.Errorf("kumo no longer diverges (%s); update the verdict and the package documentation", tc.kumoDiverges)
					}
				})
			}
		})
	}
}

// setupALB creates a load balancer, an HTTPS listener and an ip target group.
func setupALB(ctx context.Context, e conformanceEnv) (listenerArn, tgArn string, err error) {
	lb, err := e.c.elb.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: aws.String(e.name("alb")), Subnets: []string{"subnet-a", "subnet-b"}})
	if err != nil {
		return "", "", fmt.Errorf("CreateLoadBalancer: %w", err)
	}
	l, err := e.c.elb.CreateListener(ctx, &elb.CreateListenerInput{
		LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn,
		Protocol:        elbtypes.ProtocolEnumHttps,
		Port:            aws.Int32(443),
		Certificates:    []elbtypes.Certificate{{CertificateArn: aws.String("arn:aws:acm:us-east-1:123456789012:certificate/test")}},
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{
			StatusCode: aws.String("403"), ContentType: aws.String("text/plain"),
		}}},
	})
	if err != nil {
		return "", "", fmt.Errorf("CreateListener: %w", err)
	}
	tgArn, err = createTG(ctx, e, "tg")
	return aws.ToString(l.Listeners[0].ListenerArn), tgArn, err
}

func createTG(ctx context.Context, e conformanceEnv, name string) (string, error) {
	out, err := e.c.elb.CreateTargetGroup(ctx, tgInput(e.name(name)))
	if err != nil {
		return "", fmt.Errorf("CreateTargetGroup: %w", err)
	}
	return aws.ToString(out.TargetGroups[0].TargetGroupArn), nil
}

func tgInput(name string) *elb.CreateTargetGroupInput {
	return &elb.CreateTargetGroupInput{
		Name: aws.String(name), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(8080), VpcId: aws.String(testVPC),
		TargetType: elbtypes.TargetTypeEnumIp, HealthCheckPath: aws.String("/healthz"), HealthCheckIntervalSeconds: aws.Int32(15),
		HealthyThresholdCount: aws.Int32(2), Matcher: &elbtypes.Matcher{HttpCode: aws.String("200")},
	}
}

func createRule(ctx context.Context, e conformanceEnv, listenerArn, tgArn string, prio int32, conds ...elbtypes.RuleCondition) (string, error) {
	if len(conds) == 0 {
		conds = []elbtypes.RuleCondition{hostCondition(fmt.Sprintf("%sh%d.example.com", e.prefix, prio))}
	}
	out, err := e.c.elb.CreateRule(ctx, &elb.CreateRuleInput{ListenerArn: aws.String(listenerArn), Priority: aws.Int32(prio), Conditions: conds, Actions: forwardTo(tgArn)})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.Rules[0].RuleArn), nil
}

// wantErr turns "the call should have failed with code" into a verdict.
func wantErr(err error, code string) error {
	if got := errorCode(err); got != code {
		if err == nil {
			return fmt.Errorf("accepted, want %s", code)
		}
		return fmt.Errorf("error %q (%v), want %s", got, err, code)
	}
	return nil
}

func conformanceCases() []conformanceCase {
	return []conformanceCase{
		// ---- ELBv2 ----
		{name: "ELBv2 load balancer and listener round trip", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, _, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			out, err := e.c.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{ListenerArns: []string{listenerArn}})
			if err != nil {
				return err
			}
			if l := out.Listeners[0]; aws.ToInt32(l.Port) != 443 || l.Protocol != elbtypes.ProtocolEnumHttps || len(l.DefaultActions) != 1 {
				return fmt.Errorf("listener read back as %+v", l)
			}
			return nil
		}},
		{name: "ELBv2 target group fields round trip by name and ARN", run: func(ctx context.Context, e conformanceEnv) error {
			arn, err := createTG(ctx, e, "fields")
			if err != nil {
				return err
			}
			for _, in := range []*elb.DescribeTargetGroupsInput{{Names: []string{e.name("fields")}}, {TargetGroupArns: []string{arn}}} {
				out, err := e.c.elb.DescribeTargetGroups(ctx, in)
				if err != nil {
					return err
				}
				if len(out.TargetGroups) != 1 {
					return fmt.Errorf("%d target groups", len(out.TargetGroups))
				}
				tg := out.TargetGroups[0]
				if tg.TargetType != elbtypes.TargetTypeEnumIp || aws.ToString(tg.HealthCheckPath) != "/healthz" || aws.ToInt32(tg.HealthCheckIntervalSeconds) != 15 ||
					aws.ToInt32(tg.HealthyThresholdCount) != 2 || aws.ToInt32(tg.Port) != 8080 || aws.ToString(tg.Matcher.HttpCode) != "200" {
					return fmt.Errorf("target group read back as %+v", tg)
				}
			}
			return nil
		}},
		{name: "ELBv2 CreateTargetGroup is idempotent for identical settings", kumoDiverges: "answers DuplicateTargetGroupName", run: func(ctx context.Context, e conformanceEnv) error {
			a, err := createTG(ctx, e, "idem")
			if err != nil {
				return err
			}
			b, err := createTG(ctx, e, "idem")
			if err != nil {
				return fmt.Errorf("second identical create: %w", err)
			}
			if a != b {
				return fmt.Errorf("two target groups %s and %s", a, b)
			}
			return nil
		}},
		{name: "ELBv2 target group names longer than 32 are rejected", kumoDiverges: "accepts a 33-character name", run: func(ctx context.Context, e conformanceEnv) error {
			_, err := e.c.elb.CreateTargetGroup(ctx, tgInput(e.name(strings.Repeat("x", 33))))
			return wantErr(err, "ValidationError")
		}},
		{name: "ELBv2 deregistration delay attribute round trip", run: func(ctx context.Context, e conformanceEnv) error {
			arn, err := createTG(ctx, e, "attrs")
			if err != nil {
				return err
			}
			if _, err := e.c.elb.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{TargetGroupArn: aws.String(arn),
				Attributes: []elbtypes.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("30")}}}); err != nil {
				return err
			}
			out, err := e.c.elb.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(arn)})
			if err != nil {
				return err
			}
			if got := attr(out.Attributes, "deregistration_delay.timeout_seconds"); got != "30" {
				return fmt.Errorf("deregistration delay read back as %q", got)
			}
			return nil
		}},
		{name: "ELBv2 a target group in use cannot be deleted", kumoDiverges: "deletes a target group a rule forwards to", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			if _, err := createRule(ctx, e, listenerArn, tgArn, 10); err != nil {
				return err
			}
			_, err = e.c.elb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: aws.String(tgArn)})
			return wantErr(err, "ResourceInUse")
		}},
		{name: "ELBv2 host + path + source-ip forward rule round trip", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			arn, err := createRule(ctx, e, listenerArn, tgArn, 10, hostCondition("a.example.com"), pathCondition("/p", "/p/*"), sourceIPCondition("203.0.113.0/24", "198.51.100.7/32"))
			if err != nil {
				return err
			}
			out, err := e.c.elb.DescribeRules(ctx, &elb.DescribeRulesInput{RuleArns: []string{arn}})
			if err != nil {
				return err
			}
			r := out.Rules[0]
			var ips, paths []string
			for _, c := range r.Conditions {
				if c.SourceIpConfig != nil {
					ips = c.SourceIpConfig.Values
				}
				if c.PathPatternConfig != nil {
					paths = c.PathPatternConfig.Values
				}
			}
			if !slices.Equal(ips, []string{"203.0.113.0/24", "198.51.100.7/32"}) || !slices.Equal(paths, []string{"/p", "/p/*"}) ||
				aws.ToString(r.Actions[0].TargetGroupArn) != tgArn || aws.ToString(r.Priority) != "10" {
				return fmt.Errorf("rule read back as %+v", r)
			}
			return nil
		}},
		{name: "ELBv2 a duplicate rule priority is PriorityInUse", kumoDiverges: "accepts two rules with the same priority", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			if _, err := createRule(ctx, e, listenerArn, tgArn, 10); err != nil {
				return err
			}
			_, err = createRule(ctx, e, listenerArn, tgArn, 10, hostCondition("other.example.com"))
			return wantErr(err, "PriorityInUse")
		}},
		{name: "ELBv2 more than 5 condition values per rule are rejected", kumoDiverges: "accepts 6 condition values", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			_, err = createRule(ctx, e, listenerArn, tgArn, 10, hostCondition("a.example.com"), pathCondition("/p", "/p/*"),
				sourceIPCondition("203.0.113.0/24", "198.51.100.7/32", "192.0.2.0/24"))
			return wantErr(err, "ValidationError")
		}},
		{name: "ELBv2 DescribeRules pages with PageSize and NextMarker", kumoDiverges: "ignores PageSize, returns every rule with no NextMarker", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			for _, p := range []int32{10, 20, 30} {
				if _, err := createRule(ctx, e, listenerArn, tgArn, p); err != nil {
					return err
				}
			}
			out, err := e.c.elb.DescribeRules(ctx, &elb.DescribeRulesInput{ListenerArn: aws.String(listenerArn), PageSize: aws.Int32(2)})
			if err != nil {
				return err
			}
			if len(out.Rules) != 2 || out.NextMarker == nil {
				return fmt.Errorf("page of %d rules, next marker %v", len(out.Rules), out.NextMarker)
			}
			return nil
		}},
		{name: "ELBv2 DescribeRules lists by priority with the default rule last", kumoDiverges: "lists the default rule first, then creation order", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			for _, p := range []int32{30, 10, 20} {
				if _, err := createRule(ctx, e, listenerArn, tgArn, p); err != nil {
					return err
				}
			}
			out, err := e.c.elb.DescribeRules(ctx, &elb.DescribeRulesInput{ListenerArn: aws.String(listenerArn)})
			if err != nil {
				return err
			}
			var prios []string
			for _, r := range out.Rules {
				prios = append(prios, aws.ToString(r.Priority))
			}
			if !slices.Equal(prios, []string{"10", "20", "30", "default"}) {
				return fmt.Errorf("priorities in order %v", prios)
			}
			return nil
		}},
		{name: "ELBv2 ModifyRule conditions round trip", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			arn, err := createRule(ctx, e, listenerArn, tgArn, 10, hostCondition("a.example.com"), sourceIPCondition("203.0.113.0/24"))
			if err != nil {
				return err
			}
			if _, err := e.c.elb.ModifyRule(ctx, &elb.ModifyRuleInput{RuleArn: aws.String(arn), Conditions: []elbtypes.RuleCondition{
				hostCondition("a.example.com"), sourceIPCondition("203.0.113.0/24", "198.51.100.0/24")}}); err != nil {
				return err
			}
			out, err := e.c.elb.DescribeRules(ctx, &elb.DescribeRulesInput{RuleArns: []string{arn}})
			if err != nil {
				return err
			}
			for _, c := range out.Rules[0].Conditions {
				if c.SourceIpConfig != nil && len(c.SourceIpConfig.Values) == 2 {
					return nil
				}
			}
			return fmt.Errorf("conditions read back as %+v", out.Rules[0].Conditions)
		}},
		{name: "ELBv2 SetRulePriorities swaps two rules", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			a, err := createRule(ctx, e, listenerArn, tgArn, 10)
			if err != nil {
				return err
			}
			b, err := createRule(ctx, e, listenerArn, tgArn, 20)
			if err != nil {
				return err
			}
			if _, err := e.c.elb.SetRulePriorities(ctx, &elb.SetRulePrioritiesInput{RulePriorities: []elbtypes.RulePriorityPair{
				{RuleArn: aws.String(a), Priority: aws.Int32(20)}, {RuleArn: aws.String(b), Priority: aws.Int32(10)}}}); err != nil {
				return err
			}
			out, err := e.c.elb.DescribeRules(ctx, &elb.DescribeRulesInput{RuleArns: []string{a}})
			if err != nil {
				return err
			}
			if aws.ToString(out.Rules[0].Priority) != "20" {
				return fmt.Errorf("rule a has priority %s after the swap", aws.ToString(out.Rules[0].Priority))
			}
			return nil
		}},
		{name: "ELBv2 SetRulePriorities onto a taken priority is PriorityInUse", kumoDiverges: "accepts the collision", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			a, err := createRule(ctx, e, listenerArn, tgArn, 10)
			if err != nil {
				return err
			}
			if _, err := createRule(ctx, e, listenerArn, tgArn, 20); err != nil {
				return err
			}
			_, err = e.c.elb.SetRulePriorities(ctx, &elb.SetRulePrioritiesInput{RulePriorities: []elbtypes.RulePriorityPair{{RuleArn: aws.String(a), Priority: aws.Int32(20)}}})
			return wantErr(err, "PriorityInUse")
		}},
		{name: "ELBv2 a deleted rule is RuleNotFound", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			arn, err := createRule(ctx, e, listenerArn, tgArn, 10)
			if err != nil {
				return err
			}
			if _, err := e.c.elb.DeleteRule(ctx, &elb.DeleteRuleInput{RuleArn: aws.String(arn)}); err != nil {
				return err
			}
			_, err = e.c.elb.DeleteRule(ctx, &elb.DeleteRuleInput{RuleArn: aws.String(arn)})
			return wantErr(err, "RuleNotFound")
		}},
		{name: "ELBv2 AddTags, DescribeTags, RemoveTags on a rule", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			arn, err := createRule(ctx, e, listenerArn, tgArn, 10)
			if err != nil {
				return err
			}
			return tagRoundTrip(ctx, e, arn)
		}},
		{name: "ELBv2 AddTags, DescribeTags, RemoveTags on a target group", run: func(ctx context.Context, e conformanceEnv) error {
			arn, err := createTG(ctx, e, "tags")
			if err != nil {
				return err
			}
			return tagRoundTrip(ctx, e, arn)
		}},
		{name: "ELBv2 tags given to CreateRule are stored", run: func(ctx context.Context, e conformanceEnv) error {
			listenerArn, tgArn, err := setupALB(ctx, e)
			if err != nil {
				return err
			}
			out, err := e.c.elb.CreateRule(ctx, &elb.CreateRuleInput{ListenerArn: aws.String(listenerArn), Priority: aws.Int32(10),
				Conditions: []elbtypes.RuleCondition{hostCondition("a.example.com")}, Actions: forwardTo(tgArn),
				Tags: []elbtypes.Tag{{Key: aws.String("servingapp.io/managed-by"), Value: aws.String("ctrl")}}})
			if err != nil {
				return err
			}
			tags, err := e.c.elb.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: []string{aws.ToString(out.Rules[0].RuleArn)}})
			if err != nil {
				return err
			}
			if len(tags.TagDescriptions) != 1 || len(tags.TagDescriptions[0].Tags) != 1 {
				return fmt.Errorf("tags read back as %+v", tags.TagDescriptions)
			}
			return nil
		}},
		{name: "ELBv2 state is per endpoint", kumoDiverges: "state is process-wide: every kumo server in a test binary shares it", run: func(ctx context.Context, e conformanceEnv) error {
			if _, err := createTG(ctx, e, "isolated"); err != nil {
				return err
			}
			_, err := e.fresh().elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{e.name("isolated")}})
			return wantErr(err, "TargetGroupNotFound")
		}},

		// ---- ECS ----
		{name: "ECS CreateService then DescribeServices", kumoDiverges: "has no DescribeServices", run: func(ctx context.Context, e conformanceEnv) error {
			cluster, err := newECSService(ctx, e, "web", "")
			if err != nil {
				return err
			}
			out, err := e.c.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(cluster), Services: []string{"web", "missing"}})
			if err != nil {
				return err
			}
			if len(out.Services) != 1 || len(out.Failures) != 1 || aws.ToString(out.Failures[0].Reason) != "MISSING" {
				return fmt.Errorf("%d services, failures %v", len(out.Services), failureReasons(out.Failures))
			}
			return nil
		}},
		{name: "ECS CreateService retried with the same clientToken returns the same service", kumoDiverges: "answers ServiceAlreadyExistsException, an error ECS does not have", run: func(ctx context.Context, e conformanceEnv) error {
			cluster, err := newECSService(ctx, e, "web", "token-1")
			if err != nil {
				return err
			}
			_, err = ecsServiceIn(ctx, e, cluster, "web", "token-1")
			return err
		}},
		{name: "ECS UpdateService of a missing service is ServiceNotFoundException", run: func(ctx context.Context, e conformanceEnv) error {
			cluster, err := newECSService(ctx, e, "web", "")
			if err != nil {
				return err
			}
			_, err = e.c.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(cluster), Service: aws.String("missing"), DesiredCount: aws.Int32(1)})
			return wantErr(err, "ServiceNotFoundException")
		}},
		{name: "ECS ListServices", kumoDiverges: "has no ListServices", run: func(ctx context.Context, e conformanceEnv) error {
			cluster, err := newECSService(ctx, e, "web", "")
			if err != nil {
				return err
			}
			out, err := e.c.ecs.ListServices(ctx, &ecs.ListServicesInput{Cluster: aws.String(cluster)})
			if err != nil {
				return err
			}
			if len(out.ServiceArns) != 1 {
				return fmt.Errorf("listed %v", out.ServiceArns)
			}
			return nil
		}},
		{name: "ECS DescribeTaskDefinition with tags", kumoDiverges: "has no DescribeTaskDefinition", run: func(ctx context.Context, e conformanceEnv) error {
			in := taskDefInput(e.name("td"), testImage)
			in.Tags = []ecstypes.Tag{{Key: aws.String("k"), Value: aws.String("v")}}
			if _, err := e.c.ecs.RegisterTaskDefinition(ctx, in); err != nil {
				return err
			}
			out, err := e.c.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(e.name("td")), Include: []ecstypes.TaskDefinitionField{ecstypes.TaskDefinitionFieldTags}})
			if err != nil {
				return err
			}
			if out.TaskDefinition.Revision != 1 || len(out.Tags) != 1 {
				return fmt.Errorf("revision %d, tags %v", out.TaskDefinition.Revision, out.Tags)
			}
			return nil
		}},
		{name: "ECS ListTaskDefinitions of a family", kumoDiverges: "has no ListTaskDefinitions", run: func(ctx context.Context, e conformanceEnv) error {
			for range 2 {
				if _, err := e.c.ecs.RegisterTaskDefinition(ctx, taskDefInput(e.name("fam"), testImage)); err != nil {
					return err
				}
			}
			out, err := e.c.ecs.ListTaskDefinitions(ctx, &ecs.ListTaskDefinitionsInput{FamilyPrefix: aws.String(e.name("fam"))})
			if err != nil {
				return err
			}
			if len(out.TaskDefinitionArns) != 2 {
				return fmt.Errorf("listed %v", out.TaskDefinitionArns)
			}
			return nil
		}},
		{name: "ECS TagResource and ListTagsForResource on a service", kumoDiverges: "has no TagResource", run: func(ctx context.Context, e conformanceEnv) error {
			cluster, err := newECSService(ctx, e, "web", "")
			if err != nil {
				return err
			}
			arn := aws.String(fmt.Sprintf("arn:aws:ecs:us-east-1:%s:service/%s/web", DefaultAccountID, cluster))
			if _, err := e.c.ecs.TagResource(ctx, &ecs.TagResourceInput{ResourceArn: arn, Tags: []ecstypes.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}); err != nil {
				return err
			}
			out, err := e.c.ecs.ListTagsForResource(ctx, &ecs.ListTagsForResourceInput{ResourceArn: arn})
			if err != nil {
				return err
			}
			if len(out.Tags) != 2 {
				return fmt.Errorf("tags %v, want the creation tag and k", out.Tags)
			}
			return nil
		}},

		// ---- Secrets Manager ----
		{name: "Secrets Manager CreateSecret with tags and DescribeSecret", run: func(ctx context.Context, e conformanceEnv) error {
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String(e.name("s")), SecretString: aws.String("v"),
				Tags: []smtypes.Tag{{Key: aws.String("servingapp.io/app"), Value: aws.String("default/a")}}}); err != nil {
				return err
			}
			d, err := e.c.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(e.name("s"))})
			if err != nil {
				return err
			}
			if len(d.Tags) != 1 || aws.ToString(d.Tags[0].Value) != "default/a" {
				return fmt.Errorf("tags read back as %v", d.Tags)
			}
			return nil
		}},
		{name: "Secrets Manager SecretBinary round trip", run: func(ctx context.Context, e conformanceEnv) error {
			key := bytes.Repeat([]byte{1, 2, 3, 4}, 8)
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String(e.name("bin")), SecretBinary: key}); err != nil {
				return err
			}
			v, err := e.c.sm.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: aws.String(e.name("bin"))})
			if err != nil {
				return err
			}
			if !bytes.Equal(v.SecretBinary, key) || v.SecretString != nil {
				return fmt.Errorf("value read back as %x / %v", v.SecretBinary, v.SecretString)
			}
			return nil
		}},
		{name: "Secrets Manager a CreateSecret retry with the same ClientRequestToken succeeds", kumoDiverges: "answers the retry with ResourceExistsException", run: func(ctx context.Context, e conformanceEnv) error {
			in := &sm.CreateSecretInput{Name: aws.String(e.name("retry")), SecretString: aws.String("v"), ClientRequestToken: aws.String(token1)}
			if _, err := e.c.sm.CreateSecret(ctx, in); err != nil {
				return err
			}
			_, err := e.c.sm.CreateSecret(ctx, in)
			return err
		}},
		{name: "Secrets Manager CreateSecret of an existing name with a new token is ResourceExists", run: func(ctx context.Context, e conformanceEnv) error {
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String(e.name("dup")), SecretString: aws.String("v")}); err != nil {
				return err
			}
			_, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String(e.name("dup")), SecretString: aws.String("v")})
			return wantErr(err, "ResourceExistsException")
		}},
		{name: "Secrets Manager PutSecretValue moves AWSCURRENT and keeps AWSPREVIOUS", run: func(ctx context.Context, e conformanceEnv) error {
			id := aws.String(e.name("stages"))
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v1")}); err != nil {
				return err
			}
			if _, err := e.c.sm.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: id, SecretString: aws.String("v2")}); err != nil {
				return err
			}
			prev, err := e.c.sm.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: id, VersionStage: aws.String("AWSPREVIOUS")})
			if err != nil {
				return err
			}
			if aws.ToString(prev.SecretString) != "v1" {
				return fmt.Errorf("AWSPREVIOUS is %q", aws.ToString(prev.SecretString))
			}
			return nil
		}},
		{name: "Secrets Manager a secret scheduled for deletion cannot be read", run: func(ctx context.Context, e conformanceEnv) error {
			id := aws.String(e.name("sched"))
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")}); err != nil {
				return err
			}
			if _, err := e.c.sm.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: id, RecoveryWindowInDays: aws.Int64(7)}); err != nil {
				return err
			}
			d, err := e.c.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: id})
			if err != nil || d.DeletedDate == nil {
				return fmt.Errorf("DescribeSecret of a scheduled secret: %v, deleted date %v", err, d)
			}
			_, err = e.c.sm.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: id})
			return wantErr(err, "InvalidRequestException")
		}},
		{name: "Secrets Manager CreateSecret of a name scheduled for deletion is InvalidRequest", kumoDiverges: "answers ResourceExistsException", run: func(ctx context.Context, e conformanceEnv) error {
			id := aws.String(e.name("recreate"))
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")}); err != nil {
				return err
			}
			if _, err := e.c.sm.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: id, RecoveryWindowInDays: aws.Int64(7)}); err != nil {
				return err
			}
			_, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")})
			return wantErr(err, "InvalidRequestException")
		}},
		{name: "Secrets Manager DeleteSecret of a secret already scheduled is InvalidRequest", kumoDiverges: "accepts it and moves the deletion date", run: func(ctx context.Context, e conformanceEnv) error {
			id := aws.String(e.name("twice"))
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")}); err != nil {
				return err
			}
			if _, err := e.c.sm.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: id, RecoveryWindowInDays: aws.Int64(7)}); err != nil {
				return err
			}
			_, err := e.c.sm.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: id, RecoveryWindowInDays: aws.Int64(7)})
			return wantErr(err, "InvalidRequestException")
		}},
		{name: "Secrets Manager RecoveryWindowInDays outside 7-30 is InvalidParameter", kumoDiverges: "accepts a 3-day window", run: func(ctx context.Context, e conformanceEnv) error {
			id := aws.String(e.name("window"))
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")}); err != nil {
				return err
			}
			_, err := e.c.sm.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: id, RecoveryWindowInDays: aws.Int64(3)})
			return wantErr(err, "InvalidParameterException")
		}},
		{name: "Secrets Manager RestoreSecret cancels the deletion", kumoDiverges: "has no RestoreSecret", run: func(ctx context.Context, e conformanceEnv) error {
			id := aws.String(e.name("restore"))
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")}); err != nil {
				return err
			}
			if _, err := e.c.sm.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: id, RecoveryWindowInDays: aws.Int64(7)}); err != nil {
				return err
			}
			if _, err := e.c.sm.RestoreSecret(ctx, &sm.RestoreSecretInput{SecretId: id}); err != nil {
				return err
			}
			_, err := e.c.sm.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: id})
			return err
		}},
		{name: "Secrets Manager ForceDeleteWithoutRecovery frees the name", run: func(ctx context.Context, e conformanceEnv) error {
			id := aws.String(e.name("force"))
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")}); err != nil {
				return err
			}
			if _, err := e.c.sm.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: id, ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
				return err
			}
			_, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")})
			return err
		}},
		{name: "Secrets Manager TagResource", kumoDiverges: "has no TagResource", run: func(ctx context.Context, e conformanceEnv) error {
			id := aws.String(e.name("tagged"))
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")}); err != nil {
				return err
			}
			if _, err := e.c.sm.TagResource(ctx, &sm.TagResourceInput{SecretId: id, Tags: []smtypes.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}); err != nil {
				return err
			}
			d, err := e.c.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: id})
			if err != nil {
				return err
			}
			if len(d.Tags) != 1 {
				return fmt.Errorf("tags read back as %v", d.Tags)
			}
			return nil
		}},
		{name: "Secrets Manager ListSecrets filters by tag key", kumoDiverges: "ignores Filters and lists every secret", run: func(ctx context.Context, e conformanceEnv) error {
			key := e.name("owner")
			for _, s := range []struct {
				name string
				tags []smtypes.Tag
			}{{"mine", []smtypes.Tag{{Key: aws.String(key), Value: aws.String("me")}}}, {"other", nil}} {
				if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String(e.name(s.name)), SecretString: aws.String("v"), Tags: s.tags}); err != nil {
					return err
				}
			}
			out, err := e.c.sm.ListSecrets(ctx, &sm.ListSecretsInput{Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeTagKey, Values: []string{key}}}})
			if err != nil {
				return err
			}
			if len(out.SecretList) != 1 || aws.ToString(out.SecretList[0].Name) != e.name("mine") {
				var names []string
				for _, s := range out.SecretList {
					names = append(names, aws.ToString(s.Name))
				}
				return fmt.Errorf("listed %d secrets (%v)", len(names), names[:min(len(names), 5)])
			}
			return nil
		}},
		{name: "Secrets Manager ListSecrets hides secrets scheduled for deletion", run: func(ctx context.Context, e conformanceEnv) error {
			id := aws.String(e.name("hidden"))
			if _, err := e.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{Name: id, SecretString: aws.String("v")}); err != nil {
				return err
			}
			if _, err := e.c.sm.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: id, RecoveryWindowInDays: aws.Int64(7)}); err != nil {
				return err
			}
			p := sm.NewListSecretsPaginator(e.c.sm, &sm.ListSecretsInput{})
			for p.HasMorePages() {
				out, err := p.NextPage(ctx)
				if err != nil {
					return err
				}
				for _, s := range out.SecretList {
					if aws.ToString(s.Name) == *id {
						return errors.New("a secret scheduled for deletion is listed")
					}
				}
			}
			return nil
		}},
	}
}

// newECSService creates a cluster and a Fargate service without a load
// balancer in it, and returns the cluster name.
func newECSService(ctx context.Context, e conformanceEnv, name, token string) (string, error) {
	cluster := e.name("cluster")
	if _, err := e.c.ecs.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(cluster)}); err != nil {
		return "", err
	}
	if _, err := e.c.ecs.RegisterTaskDefinition(ctx, taskDefInput(cluster, testImage)); err != nil {
		return "", err
	}
	_, err := ecsServiceIn(ctx, e, cluster, name, token)
	return cluster, err
}

func ecsServiceIn(ctx context.Context, e conformanceEnv, cluster, name, token string) (*ecs.CreateServiceOutput, error) {
	in := &ecs.CreateServiceInput{
		Cluster: aws.String(cluster), ServiceName: aws.String(name), TaskDefinition: aws.String(cluster + ":1"), DesiredCount: aws.Int32(1),
		LaunchType:           ecstypes.LaunchTypeFargate,
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{Subnets: []string{"subnet-a"}}},
		Tags:                 []ecstypes.Tag{{Key: aws.String("servingapp.io/app"), Value: aws.String("default/" + name)}},
	}
	if token != "" {
		in.ClientToken = aws.String(token)
	}
	return e.c.ecs.CreateService(ctx, in)
}

func tagRoundTrip(ctx context.Context, e conformanceEnv, arn string) error {
	if _, err := e.c.elb.AddTags(ctx, &elb.AddTagsInput{ResourceArns: []string{arn}, Tags: []elbtypes.Tag{
		{Key: aws.String("a"), Value: aws.String("1")}, {Key: aws.String("b"), Value: aws.String("2")}}}); err != nil {
		return err
	}
	if _, err := e.c.elb.RemoveTags(ctx, &elb.RemoveTagsInput{ResourceArns: []string{arn}, TagKeys: []string{"a"}}); err != nil {
		return err
	}
	out, err := e.c.elb.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: []string{arn}})
	if err != nil {
		return err
	}
	if len(out.TagDescriptions) != 1 || len(out.TagDescriptions[0].Tags) != 1 || aws.ToString(out.TagDescriptions[0].Tags[0].Key) != "b" {
		return fmt.Errorf("tags read back as %+v", out.TagDescriptions)
	}
	return nil
}
