package awsemu

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

func TestELBv2TargetGroups(t *testing.T) {
	_, c := newTestServer(t, Options{})
	in := &elb.CreateTargetGroupInput{
		Name:                       aws.String("sa-default-summarizer-1a2b3c4d"),
		Protocol:                   elbtypes.ProtocolEnumHttp,
		Port:                       aws.Int32(8080),
		VpcId:                      aws.String(testVPC),
		TargetType:                 elbtypes.TargetTypeEnumIp,
		HealthCheckPath:            aws.String("/healthz"),
		HealthCheckIntervalSeconds: aws.Int32(15),
		HealthyThresholdCount:      aws.Int32(2),
		Matcher:                    &elbtypes.Matcher{HttpCode: aws.String("200-299")},
		Tags:                       []elbtypes.Tag{{Key: aws.String("servingapp.io/app"), Value: aws.String("default/summarizer")}},
	}
	created := must(c.elb.CreateTargetGroup(ctx(t), in))(t).TargetGroups[0]
	arn := aws.ToString(created.TargetGroupArn)
	if !strings.HasPrefix(arn, "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/sa-default-summarizer-1a2b3c4d/") {
		t.Errorf("ARN = %s", arn)
	}
	if aws.ToString(created.HealthCheckPath) != "/healthz" || aws.ToInt32(created.HealthCheckIntervalSeconds) != 15 ||
		aws.ToInt32(created.HealthCheckTimeoutSeconds) != 5 || aws.ToInt32(created.UnhealthyThresholdCount) != 2 ||
		aws.ToString(created.HealthCheckPort) != "traffic-port" || created.HealthCheckProtocol != elbtypes.ProtocolEnumHttp ||
		aws.ToString(created.Matcher.HttpCode) != "200-299" || created.TargetType != elbtypes.TargetTypeEnumIp {
		t.Errorf("created target group fields: %+v", created)
	}

	again := must(c.elb.CreateTargetGroup(ctx(t), in))(t).TargetGroups[0]
	if aws.ToString(again.TargetGroupArn) != arn {
		t.Errorf("identical CreateTargetGroup returned %s, want %s (idempotent)", aws.ToString(again.TargetGroupArn), arn)
	}
	changed := *in
	changed.Port = aws.Int32(9090)
	_, err := c.elb.CreateTargetGroup(ctx(t), &changed)
	if !isErr[*elbtypes.DuplicateTargetGroupNameException](err) {
		t.Errorf("same name, different settings: %v", err)
	}
	long := *in
	long.Name = aws.String(strings.Repeat("n", 33))
	_, err = c.elb.CreateTargetGroup(ctx(t), &long)
	wantCode(t, err, "ValidationError")

	byName := must(c.elb.DescribeTargetGroups(ctx(t), &elb.DescribeTargetGroupsInput{Names: []string{"sa-default-summarizer-1a2b3c4d"}}))(t)
	byArn := must(c.elb.DescribeTargetGroups(ctx(t), &elb.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}))(t)
	if len(byName.TargetGroups) != 1 || len(byArn.TargetGroups) != 1 || aws.ToString(byName.TargetGroups[0].TargetGroupArn) != arn {
		t.Errorf("describe by name %d, by ARN %d", len(byName.TargetGroups), len(byArn.TargetGroups))
	}
	_, err = c.elb.DescribeTargetGroups(ctx(t), &elb.DescribeTargetGroupsInput{Names: []string{"nope"}})
	if !isErr[*elbtypes.TargetGroupNotFoundException](err) {
		t.Errorf("describe missing: %v", err)
	}

	attrs := must(c.elb.ModifyTargetGroupAttributes(ctx(t), &elb.ModifyTargetGroupAttributesInput{
		TargetGroupArn: aws.String(arn),
		Attributes:     []elbtypes.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("30")}},
	}))(t)
	if got := attr(attrs.Attributes, "deregistration_delay.timeout_seconds"); got != "30" {
		t.Errorf("modified deregistration delay = %q", got)
	}
	described := must(c.elb.DescribeTargetGroupAttributes(ctx(t), &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(arn)}))(t)
	if got := attr(described.Attributes, "deregistration_delay.timeout_seconds"); got != "30" {
		t.Errorf("described deregistration delay = %q", got)
	}
	for _, bad := range []elbtypes.TargetGroupAttribute{
		{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("3601")},
		{Key: aws.String("no.such.attribute"), Value: aws.String("1")},
	} {
		_, err := c.elb.ModifyTargetGroupAttributes(ctx(t), &elb.ModifyTargetGroupAttributesInput{TargetGroupArn: aws.String(arn), Attributes: []elbtypes.TargetGroupAttribute{bad}})
		if !isErr[*elbtypes.InvalidConfigurationRequestException](err) {
			t.Errorf("attribute %s=%s: %v", aws.ToString(bad.Key), aws.ToString(bad.Value), err)
		}
	}

	must(c.elb.DeleteTargetGroup(ctx(t), &elb.DeleteTargetGroupInput{TargetGroupArn: aws.String(arn)}))(t)
	must(c.elb.DeleteTargetGroup(ctx(t), &elb.DeleteTargetGroupInput{TargetGroupArn: aws.String(arn)}))(t)
	if _, err := c.elb.DescribeTargetGroups(ctx(t), &elb.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}); !isErr[*elbtypes.TargetGroupNotFoundException](err) {
		t.Errorf("describe deleted: %v", err)
	}
}

func attr(attrs []elbtypes.TargetGroupAttribute, key string) string {
	for _, a := range attrs {
		if aws.ToString(a.Key) == key {
			return aws.ToString(a.Value)
		}
	}
	return ""
}

func TestELBv2TargetGroupInUse(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "inuse")
	_, err := c.elb.DeleteTargetGroup(ctx(t), &elb.DeleteTargetGroupInput{TargetGroupArn: aws.String(f.tgArn)})
	if !isErr[*elbtypes.ResourceInUseException](err) {
		t.Fatalf("deleting a target group a rule forwards to: %v", err)
	}
	tg := must(c.elb.DescribeTargetGroups(ctx(t), &elb.DescribeTargetGroupsInput{LoadBalancerArn: aws.String(f.lbArn)}))(t)
	if len(tg.TargetGroups) != 1 || !slices.Equal(tg.TargetGroups[0].LoadBalancerArns, []string{f.lbArn}) {
		t.Fatalf("target groups of the load balancer: %+v", tg.TargetGroups)
	}
}

func TestELBv2CreateRuleValidation(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "rules")
	host := hostCondition("summarizer.apps.example.com")
	path := pathCondition("/p", "/p/*")
	tests := []struct {
		name       string
		priority   int32
		conditions []elbtypes.RuleCondition
		actions    []elbtypes.Action
		check      func(error) bool
	}{
		{"host + 2 paths + 2 source IPs is 5 values", 10, []elbtypes.RuleCondition{host, path, sourceIPCondition("203.0.113.0/24", "198.51.100.7/32")}, forwardTo(f.tgArn), nil},
		{"6 condition values", 11, []elbtypes.RuleCondition{host, path, sourceIPCondition("203.0.113.0/24", "198.51.100.7/32", "192.0.2.1/32")}, forwardTo(f.tgArn), hasCode("ValidationError")},
		{"duplicate priority", 10, []elbtypes.RuleCondition{host}, forwardTo(f.tgArn), isErr[*elbtypes.PriorityInUseException]},
		{"priority 0", 0, []elbtypes.RuleCondition{host}, forwardTo(f.tgArn), hasCode("ValidationError")},
		{"priority 50001", 50001, []elbtypes.RuleCondition{host}, forwardTo(f.tgArn), hasCode("ValidationError")},
		{"invalid CIDR", 12, []elbtypes.RuleCondition{host, sourceIPCondition("203.0.113.0/33")}, forwardTo(f.tgArn), hasCode("ValidationError")},
		{"two host-header conditions", 13, []elbtypes.RuleCondition{host, hostCondition("other.example.com")}, forwardTo(f.tgArn), hasCode("ValidationError")},
		{"no conditions", 14, []elbtypes.RuleCondition{}, forwardTo(f.tgArn), hasCode("ValidationError")},
		{"unknown target group", 15, []elbtypes.RuleCondition{host}, forwardTo(strings.Replace(f.tgArn, "rules-tg", "nope", 1)), isErr[*elbtypes.TargetGroupNotFoundException]},
		{"legacy Values form", 16, []elbtypes.RuleCondition{{Field: aws.String("path-pattern"), Values: []string{"/legacy/*"}}}, forwardTo(f.tgArn), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.elb.CreateRule(ctx(t), &elb.CreateRuleInput{
				ListenerArn: aws.String(f.listenerArn), Priority: aws.Int32(tc.priority), Conditions: tc.conditions, Actions: tc.actions,
			})
			if tc.check == nil {
				if err != nil {
					t.Fatalf("CreateRule: %v", err)
				}
				if aws.ToString(out.Rules[0].Priority) != fmt.Sprint(tc.priority) {
					t.Errorf("priority = %s", aws.ToString(out.Rules[0].Priority))
				}
				return
			}
			if err == nil || !tc.check(err) {
				t.Fatalf("CreateRule error = %v", err)
			}
		})
	}
}

func hasCode(code string) func(error) bool {
	return func(err error) bool { return errorCode(err) == code }
}

func TestELBv2RulesLifecycle(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "life")
	var arns []string
	for _, prio := range []int32{30, 10, 20} {
		out := must(c.elb.CreateRule(ctx(t), &elb.CreateRuleInput{
			ListenerArn: aws.String(f.listenerArn),
			Priority:    aws.Int32(prio),
			Conditions:  []elbtypes.RuleCondition{hostCondition(fmt.Sprintf("app%d.example.com", prio)), pathCondition("/"), sourceIPCondition("203.0.113.0/24")},
			Actions:     forwardTo(f.tgArn),
			Tags:        []elbtypes.Tag{{Key: aws.String("servingapp.io/managed-by"), Value: aws.String("ctrl")}},
		}))(t)
		arns = append(arns, aws.ToString(out.Rules[0].RuleArn))
	}

	// Pages of two, by priority, the default rule last.
	var prios []string
	p := elb.NewDescribeRulesPaginator(c.elb, &elb.DescribeRulesInput{ListenerArn: aws.String(f.listenerArn), PageSize: aws.Int32(2)})
	pages := 0
	for p.HasMorePages() {
		page := must(p.NextPage(ctx(t)))(t)
		pages++
		for _, r := range page.Rules {
			prios = append(prios, aws.ToString(r.Priority))
		}
	}
	if want := []string{"10", "20", "30", "1000", "default"}; !slices.Equal(prios, want) || pages != 3 {
		t.Fatalf("priorities %v in %d pages, want %v in 3", prios, pages, want)
	}

	got := must(c.elb.DescribeRules(ctx(t), &elb.DescribeRulesInput{RuleArns: arns[:1]}))(t).Rules[0]
	if len(got.Conditions) != 3 || aws.ToString(got.Conditions[2].Field) != "source-ip" || !slices.Equal(got.Conditions[2].SourceIpConfig.Values, []string{"203.0.113.0/24"}) {
		t.Errorf("conditions = %+v", got.Conditions)
	}
	if !slices.Equal(got.Conditions[0].Values, []string{"app30.example.com"}) || !slices.Equal(got.Conditions[0].HostHeaderConfig.Values, got.Conditions[0].Values) {
		t.Errorf("host-header condition not reported in both forms: %+v", got.Conditions[0])
	}
	a := got.Actions[0]
	if aws.ToString(a.TargetGroupArn) != f.tgArn || a.ForwardConfig == nil || aws.ToString(a.ForwardConfig.TargetGroups[0].TargetGroupArn) != f.tgArn || aws.ToInt32(a.Order) != 1 {
		t.Errorf("forward action = %+v", a)
	}

	// ModifyRule replaces the conditions in place.
	mod := must(c.elb.ModifyRule(ctx(t), &elb.ModifyRuleInput{RuleArn: aws.String(arns[0]), Conditions: []elbtypes.RuleCondition{
		hostCondition("app30.example.com"), pathCondition("/"), sourceIPCondition("203.0.113.0/24", "198.51.100.0/24"),
	}}))(t)
	if n := len(mod.Rules[0].Conditions[2].SourceIpConfig.Values); n != 2 || aws.ToString(mod.Rules[0].Priority) != "30" {
		t.Errorf("modified rule: %d source IPs, priority %s", n, aws.ToString(mod.Rules[0].Priority))
	}

	// SetRulePriorities applies all pairs at once: a swap is not a conflict.
	must(c.elb.SetRulePriorities(ctx(t), &elb.SetRulePrioritiesInput{RulePriorities: []elbtypes.RulePriorityPair{
		{RuleArn: aws.String(arns[0]), Priority: aws.Int32(10)},
		{RuleArn: aws.String(arns[1]), Priority: aws.Int32(30)},
	}}))(t)
	swapped := must(c.elb.DescribeRules(ctx(t), &elb.DescribeRulesInput{RuleArns: arns[:2]}))(t)
	if aws.ToString(swapped.Rules[0].Priority) != "10" || aws.ToString(swapped.Rules[1].Priority) != "30" {
		t.Errorf("after swap: %s, %s", aws.ToString(swapped.Rules[0].Priority), aws.ToString(swapped.Rules[1].Priority))
	}
	_, err := c.elb.SetRulePriorities(ctx(t), &elb.SetRulePrioritiesInput{RulePriorities: []elbtypes.RulePriorityPair{
		{RuleArn: aws.String(arns[0]), Priority: aws.Int32(20)},
	}})
	if !isErr[*elbtypes.PriorityInUseException](err) {
		t.Errorf("moving onto an untouched rule's priority: %v", err)
	}

	// Tags on rules.
	must(c.elb.AddTags(ctx(t), &elb.AddTagsInput{ResourceArns: arns[:1], Tags: []elbtypes.Tag{{Key: aws.String("servingapp.io/app"), Value: aws.String("default/a")}}}))(t)
	must(c.elb.RemoveTags(ctx(t), &elb.RemoveTagsInput{ResourceArns: arns[:1], TagKeys: []string{"servingapp.io/managed-by"}}))(t)
	tags := must(c.elb.DescribeTags(ctx(t), &elb.DescribeTagsInput{ResourceArns: arns}))(t)
	if len(tags.TagDescriptions) != 3 || len(tags.TagDescriptions[0].Tags) != 1 || aws.ToString(tags.TagDescriptions[0].Tags[0].Key) != "servingapp.io/app" || len(tags.TagDescriptions[1].Tags) != 1 {
		t.Errorf("tag descriptions = %+v", tags.TagDescriptions)
	}

	// The default rule cannot be deleted; deleted rules are gone.
	all := must(c.elb.DescribeRules(ctx(t), &elb.DescribeRulesInput{ListenerArn: aws.String(f.listenerArn)}))(t).Rules
	def := all[len(all)-1]
	if _, err := c.elb.DeleteRule(ctx(t), &elb.DeleteRuleInput{RuleArn: def.RuleArn}); !isErr[*elbtypes.OperationNotPermittedException](err) {
		t.Errorf("deleting the default rule: %v", err)
	}
	must(c.elb.DeleteRule(ctx(t), &elb.DeleteRuleInput{RuleArn: aws.String(arns[2])}))(t)
	if _, err := c.elb.DescribeRules(ctx(t), &elb.DescribeRulesInput{RuleArns: arns[2:]}); !isErr[*elbtypes.RuleNotFoundException](err) {
		t.Errorf("describing a deleted rule: %v", err)
	}
	if _, err := c.elb.DescribeTags(ctx(t), &elb.DescribeTagsInput{ResourceArns: arns[2:]}); !isErr[*elbtypes.RuleNotFoundException](err) {
		t.Errorf("tags of a deleted rule: %v", err)
	}
}

func TestELBv2Quotas(t *testing.T) {
	_, c := newTestServer(t, Options{ELBv2: ELBv2Options{RulesPerLoadBalancer: 3, TargetGroupsPerLoadBalancer: 2}})
	f := newFixture(t, c, "quota")
	tg2 := createTargetGroup(t, c, "quota-tg2")
	tg3 := createTargetGroup(t, c, "quota-tg3")
	create := func(prio int32, tg string) error {
		_, err := c.elb.CreateRule(ctx(t), &elb.CreateRuleInput{
			ListenerArn: aws.String(f.listenerArn), Priority: aws.Int32(prio),
			Conditions: []elbtypes.RuleCondition{hostCondition(fmt.Sprintf("h%d.example.com", prio))}, Actions: forwardTo(tg),
		})
		return err
	}
	if err := create(1, tg2); err != nil {
		t.Fatal(err)
	}
	if err := create(2, tg3); !isErr[*elbtypes.TooManyUniqueTargetGroupsPerLoadBalancerException](err) {
		t.Errorf("third target group on the load balancer: %v", err)
	}
	if err := create(3, f.tgArn); err != nil {
		t.Fatal(err)
	}
	if err := create(4, f.tgArn); !isErr[*elbtypes.TooManyRulesException](err) {
		t.Errorf("fourth rule: %v", err)
	}
	limits := must(c.elb.DescribeAccountLimits(ctx(t), &elb.DescribeAccountLimitsInput{}))(t)
	got := map[string]string{}
	for _, l := range limits.Limits {
		got[aws.ToString(l.Name)] = aws.ToString(l.Max)
	}
	if got["rules-per-application-load-balancer"] != "3" || got["condition-values-per-alb-rule"] != "5" || got["target-groups-per-application-load-balancer"] != "2" {
		t.Errorf("account limits = %v", got)
	}

	// A target group serves one load balancer only.
	other := must(c.elb.CreateLoadBalancer(ctx(t), &elb.CreateLoadBalancerInput{Name: aws.String("other"), Subnets: []string{"subnet-a", "subnet-b"}}))(t)
	_, err := c.elb.CreateListener(ctx(t), &elb.CreateListenerInput{
		LoadBalancerArn: other.LoadBalancers[0].LoadBalancerArn, Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(80), DefaultActions: forwardTo(f.tgArn),
	})
	if !isErr[*elbtypes.TargetGroupAssociationLimitException](err) {
		t.Errorf("target group on a second load balancer: %v", err)
	}
}

func TestELBv2LoadBalancersAndListeners(t *testing.T) {
	_, c := newTestServer(t, Options{})
	in := &elb.CreateLoadBalancerInput{Name: aws.String("shared"), Subnets: []string{"subnet-a", "subnet-b"}, Tags: []elbtypes.Tag{{Key: aws.String("k"), Value: aws.String("v")}}}
	lb := must(c.elb.CreateLoadBalancer(ctx(t), in))(t).LoadBalancers[0]
	if again := must(c.elb.CreateLoadBalancer(ctx(t), in))(t).LoadBalancers[0]; aws.ToString(again.LoadBalancerArn) != aws.ToString(lb.LoadBalancerArn) {
		t.Errorf("identical CreateLoadBalancer is not idempotent")
	}
	if lb.Type != elbtypes.LoadBalancerTypeEnumApplication || lb.Scheme != elbtypes.LoadBalancerSchemeEnumInternetFacing || lb.State.Code != elbtypes.LoadBalancerStateEnumActive || aws.ToString(lb.VpcId) != DefaultVPCID {
		t.Errorf("load balancer = %+v", lb)
	}
	_, err := c.elb.CreateListener(ctx(t), &elb.CreateListenerInput{LoadBalancerArn: lb.LoadBalancerArn, Protocol: elbtypes.ProtocolEnumHttps, Port: aws.Int32(443),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{StatusCode: aws.String("403")}}}})
	wantCode(t, err, "ValidationError")
	l := must(c.elb.CreateListener(ctx(t), &elb.CreateListenerInput{LoadBalancerArn: lb.LoadBalancerArn, Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(80),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{StatusCode: aws.String("403")}}}}))(t).Listeners[0]
	listed := must(c.elb.DescribeListeners(ctx(t), &elb.DescribeListenersInput{LoadBalancerArn: lb.LoadBalancerArn}))(t)
	if len(listed.Listeners) != 1 || aws.ToString(listed.Listeners[0].ListenerArn) != aws.ToString(l.ListenerArn) || aws.ToString(listed.Listeners[0].DefaultActions[0].FixedResponseConfig.StatusCode) != "403" {
		t.Errorf("listeners = %+v", listed.Listeners)
	}
	must(c.elb.DeleteLoadBalancer(ctx(t), &elb.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancerArn}))(t)
	if _, err := c.elb.DescribeListeners(ctx(t), &elb.DescribeListenersInput{ListenerArns: []string{aws.ToString(l.ListenerArn)}}); !isErr[*elbtypes.ListenerNotFoundException](err) {
		t.Errorf("listener after load balancer deletion: %v", err)
	}
	var unsupported interface{ ErrorCode() string }
	_, err = c.elb.DescribeSSLPolicies(ctx(t), &elb.DescribeSSLPoliciesInput{})
	if !errors.As(err, &unsupported) || unsupported.ErrorCode() != "InvalidAction" {
		t.Errorf("unsupported operation: %v", err)
	}
}
