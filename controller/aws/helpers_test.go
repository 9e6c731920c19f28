package aws

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/awsemu"
	"github.com/servingapp/servingapp/internal/clock"
)

const (
	testController = "test"
	testCluster    = "apps"
	foreignHost    = "legacy.example.com"
	foreignPrio    = 25000 // inside our range: the platform must avoid it
)

var testStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// env is one emulated AWS account with the base infrastructure terraform
// makes: an ALB with an HTTPS listener (default action 404), an ECS cluster,
// and a listener rule that is not ours, in the middle of our priority range.
type env struct {
	t           testing.TB
	srv         *awsemu.Server
	raw         rawClients // unmetered, unlimited clients to look at the account
	clk         *clock.Manual
	listenerARN string
	lbARN       string
	foreignRule string
	cfg         Config
}

type rawClients struct {
	ecs *ecs.Client
	elb *elb.Client
	sm  *sm.Client
}

type envOption func(*awsemu.Options)

func withELBLimits(l awsemu.ELBv2Options) envOption {
	return func(o *awsemu.Options) { o.ELBv2 = l }
}

func instantRollout(o *awsemu.Options) { o.ECS.InstantRollout = true }

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	o := awsemu.Options{Seed: 7}
	for _, f := range opts {
		f(&o)
	}
	srv := awsemu.New(o)
	t.Cleanup(srv.Close)
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background(),
		awsconfig.WithRegion(awsemu.DefaultRegion),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")),
		awsconfig.WithBaseEndpoint(srv.URL),
	)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, clk: clock.NewManual(testStart),
		raw: rawClients{ecs: ecs.NewFromConfig(awsCfg), elb: elb.NewFromConfig(awsCfg), sm: sm.NewFromConfig(awsCfg)}}
	ctx := context.Background()
	lb := must(e.raw.elb.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: awssdk.String("servingapp"), Subnets: []string{"subnet-a", "subnet-b"}}))(t)
	e.lbARN = awssdk.ToString(lb.LoadBalancers[0].LoadBalancerArn)
	l := must(e.raw.elb.CreateListener(ctx, &elb.CreateListenerInput{
		LoadBalancerArn: awssdk.String(e.lbARN), Protocol: elbtypes.ProtocolEnumHttps, Port: awssdk.Int32(443),
		Certificates: []elbtypes.Certificate{{CertificateArn: awssdk.String("arn:aws:acm:us-east-1:123456789012:certificate/test")}},
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{
			StatusCode: awssdk.String("404"), ContentType: awssdk.String("text/plain"), MessageBody: awssdk.String("no such app"),
		}}},
	}))(t)
	e.listenerARN = awssdk.ToString(l.Listeners[0].ListenerArn)
	rule := must(e.raw.elb.CreateRule(ctx, &elb.CreateRuleInput{
		ListenerArn: awssdk.String(e.listenerARN), Priority: awssdk.Int32(foreignPrio),
		Conditions: []elbtypes.RuleCondition{{Field: awssdk.String("host-header"), HostHeaderConfig: &elbtypes.HostHeaderConditionConfig{Values: []string{foreignHost}}}},
		Actions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{
			StatusCode: awssdk.String("503"), ContentType: awssdk.String("text/plain"), MessageBody: awssdk.String("maintenance"),
		}}},
	}))(t)
	e.foreignRule = awssdk.ToString(rule.Rules[0].RuleArn)
	must(e.raw.ecs.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: awssdk.String(testCluster)}))(t)
	e.cfg = Config{
		ControllerID:      testController,
		Region:            awsemu.DefaultRegion,
		Cluster:           testCluster,
		ListenerARN:       e.listenerARN,
		VPCID:             awsemu.DefaultVPCID,
		Subnets:           []string{"subnet-a", "subnet-b"},
		SecurityGroups:    []string{"sg-apps"},
		ExecutionRoleARN:  "arn:aws:iam::123456789012:role/exec",
		TaskRoleARN:       "arn:aws:iam::123456789012:role/webapp",
		LogGroup:          "/servingapp/apps",
		PriorityMin:       1000,
		PriorityMax:       49000,
		DescribePerSecond: 10000,
		MutatePerSecond:   10000,
		Burst:             1000,
		MaxAttempts:       8,
		AppCredsSecret:    "servingapp/nats/webapp-creds",
	}
	return e
}

// platform returns a new platform instance (a controller process) for e.
func (e *env) platform() *Platform {
	return e.platformWith(func(*Options) {})
}

func (e *env) platformWith(change func(*Options)) *Platform {
	e.t.Helper()
	opts := Options{
		Registerer:   prometheus.NewRegistry(),
		Clock:        e.clk,
		BaseEndpoint: e.srv.URL,
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryBackoff: func(int, error) (time.Duration, error) { return time.Millisecond, nil },
	}
	change(&opts)
	p, err := New(context.Background(), e.cfg, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// later moves both clocks past every cache age and one ECS rollout step.
func (e *env) later() {
	e.clk.Advance(time.Minute)
	e.srv.Advance(time.Minute)
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

// spec is a valid ServingApp; change edits it before the model is built.
func spec(name string, change ...func(*v1.ServingApp)) *v1.ServingApp {
	r := int32(2)
	a := &v1.ServingApp{
		APIVersion: v1.APIVersion, Kind: v1.Kind,
		Metadata: v1.ObjectMeta{Name: name, Namespace: "team", UID: "uid-" + name, Generation: 1},
		Spec: v1.ServingAppSpec{
			Image:     "registry.example.com/webapp:1",
			Replicas:  &r,
			Route:     v1.Route{Host: name + ".apps.example.com"},
			Allowlist: []string{"10.0.0.0/8", "192.0.2.0/24"},
			Databricks: v1.Databricks{
				Host: "https://dbc-1.cloud.databricks.com", ServingEndpoint: "chat",
			},
			Env:     map[string]string{"SUMMARY_LANGUAGE": "ja"},
			Secrets: map[string]string{"EXTRA_KEY": "arn:aws:secretsmanager:us-east-1:123456789012:secret:extra-AbCdEf"},
		},
	}
	for _, c := range change {
		c(a)
	}
	v1.SetDefaults(a)
	return a
}

func modelConfig() model.Config {
	return model.Config{ControllerID: testController, DefaultImage: "registry.example.com/webapp:default", AppDomain: "apps.example.com",
		ExtraTags: map[string]string{"cost-center": "platform"}}
}

func build(t testing.TB, a *v1.ServingApp) *model.App {
	t.Helper()
	if errs := v1.Validate(a); len(errs) > 0 {
		t.Fatalf("invalid test spec: %v", errs)
	}
	m, err := model.Build(a, modelConfig())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func app(t testing.TB, name string, change ...func(*v1.ServingApp)) *model.App {
	return build(t, spec(name, change...))
}

func cidrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("198.51.%d.0/24", i)
	}
	return out
}

// events records events for assertions.
type events struct {
	mu   sync.Mutex
	list []string
}

func (r *events) Event(_ context.Context, reason, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, reason+": "+msg)
}

func (r *events) Warning(_ context.Context, reason, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, "WARNING "+reason+": "+msg)
}

func (r *events) reasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.list {
		reason, _, _ := strings.Cut(strings.TrimPrefix(e, "WARNING "), ":")
		out = append(out, reason)
	}
	return out
}

// reconcile observes and applies once.
func reconcile(ctx context.Context, p *Platform, a *model.App, rec model.Recorder) (*model.Observed, error) {
	obs, err := p.Observe(ctx, a)
	if err != nil {
		return nil, err
	}
	return p.Apply(ctx, a, obs, rec)
}

// converge reconciles until the app is available, moving time on between
// attempts so ECS rolls out and caches expire.
func (e *env) converge(p *Platform, a *model.App) *model.Observed {
	e.t.Helper()
	var last error
	for range 12 {
		obs, err := reconcile(context.Background(), p, a, &events{})
		if err == nil && obs.Available {
			return obs
		}
		last = err
		if err == nil {
			last = fmt.Errorf("not available: %s", obs.Message)
		}
		e.later()
	}
	e.t.Fatalf("%s did not converge: %v", a.Ref, last)
	return nil
}

// ---- looking at the account ----

func (e *env) rules() []elbtypes.Rule {
	e.t.Helper()
	rules, err := e.srv.ListenerRules(e.listenerARN)
	if err != nil {
		e.t.Fatal(err)
	}
	return rules
}

func (e *env) tags(arns ...string) map[string]map[string]string {
	e.t.Helper()
	out := map[string]map[string]string{}
	for i := 0; i < len(arns); i += 20 {
		resp := must(e.raw.elb.DescribeTags(context.Background(), &elb.DescribeTagsInput{ResourceArns: arns[i:min(i+20, len(arns))]}))(e.t)
		for _, d := range resp.TagDescriptions {
			m := map[string]string{}
			for _, t := range d.Tags {
				m[awssdk.ToString(t.Key)] = awssdk.ToString(t.Value)
			}
			out[awssdk.ToString(d.ResourceArn)] = m
		}
	}
	return out
}

// appRules returns the non-default rules tagged as app's, by priority.
func (e *env) appRules(ref model.Ref) []elbtypes.Rule {
	e.t.Helper()
	var all []elbtypes.Rule
	var arns []string
	for _, r := range e.rules() {
		if !awssdk.ToBool(r.IsDefault) {
			all = append(all, r)
			arns = append(arns, awssdk.ToString(r.RuleArn))
		}
	}
	tags := e.tags(arns...)
	var out []elbtypes.Rule
	for _, r := range all {
		tg := tags[awssdk.ToString(r.RuleArn)]
		if tg[model.TagManagedBy] == testController && tg[model.TagApp] == ref.String() {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) service(name string) (ecstypes.Service, bool) {
	e.t.Helper()
	out := must(e.raw.ecs.DescribeServices(context.Background(), &ecs.DescribeServicesInput{
		Cluster: awssdk.String(testCluster), Services: []string{name}, Include: []ecstypes.ServiceField{ecstypes.ServiceFieldTags},
	}))(e.t)
	if len(out.Services) == 0 {
		return ecstypes.Service{}, false
	}
	return out.Services[0], true
}

func (e *env) activeRevisions(family string) []string {
	e.t.Helper()
	out := must(e.raw.ecs.ListTaskDefinitions(context.Background(), &ecs.ListTaskDefinitionsInput{FamilyPrefix: awssdk.String(family), Status: ecstypes.TaskDefinitionStatusActive}))(e.t)
	return out.TaskDefinitionArns
}

func (e *env) targetGroups() []elbtypes.TargetGroup {
	e.t.Helper()
	return must(e.raw.elb.DescribeTargetGroups(context.Background(), &elb.DescribeTargetGroupsInput{}))(e.t).TargetGroups
}

func (e *env) secrets() []string {
	e.t.Helper()
	out := must(e.raw.sm.ListSecrets(context.Background(), &sm.ListSecretsInput{IncludePlannedDeletion: awssdk.Bool(false)}))(e.t)
	var names []string
	for _, s := range out.SecretList {
		names = append(names, awssdk.ToString(s.Name))
	}
	sort.Strings(names)
	return names
}

func (e *env) secretValue(name string) string {
	e.t.Helper()
	out := must(e.raw.sm.GetSecretValue(context.Background(), &sm.GetSecretValueInput{SecretId: awssdk.String(name)}))(e.t)
	return awssdk.ToString(out.SecretString)
}

func decodesTo32Bytes(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

// matches reports whether rule r sends a request from addr to host/path
// (a path under prefix) to target ("" for any forward).
func ruleMatches(r elbtypes.Rule, host, path string, addr netip.Addr) bool {
	hostOK, pathOK, srcOK := false, false, false
	for _, c := range r.Conditions {
		switch awssdk.ToString(c.Field) {
		case "host-header":
			hostOK = slices.Contains(c.HostHeaderConfig.Values, host)
		case "path-pattern":
			for _, p := range c.PathPatternConfig.Values {
				if p == path || (strings.HasSuffix(p, "/*") && strings.HasPrefix(path, strings.TrimSuffix(p, "*"))) {
					pathOK = true
				}
			}
		case "source-ip":
			for _, v := range c.SourceIpConfig.Values {
				if pre, err := netip.ParsePrefix(v); err == nil && pre.Contains(addr) {
					srcOK = true
				}
			}
		}
	}
	return hostOK && pathOK && srcOK
}

// routeOf returns what the listener does with a request: the first matching
// rule by priority (rules come sorted, default last).
func routeOf(rules []elbtypes.Rule, host, path string, addr netip.Addr) elbtypes.Rule {
	for _, r := range rules {
		if awssdk.ToBool(r.IsDefault) || ruleMatches(r, host, path, addr) {
			return r
		}
	}
	return elbtypes.Rule{}
}

func forwardsTo(r elbtypes.Rule) string {
	if len(r.Actions) == 1 && r.Actions[0].Type == elbtypes.ActionTypeEnumForward {
		return awssdk.ToString(r.Actions[0].TargetGroupArn)
	}
	return ""
}

func conditionValues(r elbtypes.Rule) int {
	n := 0
	for _, c := range r.Conditions {
		switch awssdk.ToString(c.Field) {
		case "host-header":
			n += len(c.HostHeaderConfig.Values)
		case "path-pattern":
			n += len(c.PathPatternConfig.Values)
		case "source-ip":
			n += len(c.SourceIpConfig.Values)
		}
	}
	return n
}

func prio(r elbtypes.Rule) int {
	var n int
	fmt.Sscan(awssdk.ToString(r.Priority), &n)
	return n
}
