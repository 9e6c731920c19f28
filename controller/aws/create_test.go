package aws

import (
	"context"
	"slices"
	"strings"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/servingapp/servingapp/api/appenv"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/awsemu"
)

func TestCreateMakesEveryResourceWithItsFieldsAndTags(t *testing.T) {
	tests := []struct {
		name      string
		change    func(*v1.ServingApp)
		paths     []string
		rules     int
		desired   int32
		cpu, mem  string
		wantImage string
	}{
		{name: "root path", change: func(*v1.ServingApp) {}, paths: []string{"/*"}, rules: 1, desired: 2, cpu: "256", mem: "512", wantImage: "registry.example.com/webapp:1"},
		{name: "path prefix", change: func(a *v1.ServingApp) {
			a.Spec.Route.PathPrefix = "/chat"
			a.Spec.Allowlist = []string{"10.0.0.0/8", "192.0.2.0/24", "203.0.113.7/32"}
		}, paths: []string{"/chat", "/chat/*"}, rules: 2, desired: 2, cpu: "256", mem: "512", wantImage: "registry.example.com/webapp:1"},
		{name: "autoscaled, default image, larger task", change: func(a *v1.ServingApp) {
			a.Spec.Image = ""
			a.Spec.Replicas = nil
			a.Spec.Autoscaling = &v1.Autoscaling{MinReplicas: 3, MaxReplicas: 6, TargetInvocationsPerReplicaPerMinute: 100}
			a.Spec.Resources = v1.Resources{CPU: 1024, Memory: 4096}
		}, paths: []string{"/*"}, rules: 1, desired: 3, cpu: "1024", mem: "4096", wantImage: "registry.example.com/webapp:default"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			a := app(t, "summarizer", tc.change)
			p := e.platform()
			rec := &events{}
			obs, err := reconcile(ctx, p, a, rec)
			if err != nil {
				t.Fatalf("first reconcile: %v", err)
			}
			n := p.names(a.Ref)
			wantTags := map[string]string{
				model.TagManagedBy: testController, model.TagApp: "team/summarizer", model.TagUID: "uid-summarizer", "cost-center": "platform",
			}
			hasTags := func(what string, got map[string]string) {
				t.Helper()
				for k, v := range wantTags {
					if got[k] != v {
						t.Errorf("%s: tag %s = %q, want %q (tags %v)", what, k, got[k], v, got)
					}
				}
			}

			// Session key secret.
			sec := must(e.raw.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String("servingapp/team/summarizer/session-key")}))(t)
			hasTags("session key secret", smTags(sec.Tags))
			if v := e.secretValue("servingapp/team/summarizer/session-key"); !decodesTo32Bytes(v) {
				t.Errorf("session key is not 32 bytes of base64: %d characters", len(v))
			}

			// Task definition.
			revs := e.activeRevisions(n.Service)
			if len(revs) != 1 {
				t.Fatalf("task definition revisions = %v, want one", revs)
			}
			td := must(e.raw.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: awssdk.String(revs[0]), Include: []ecstypes.TaskDefinitionField{ecstypes.TaskDefinitionFieldTags}}))(t)
			hasTags("task definition", fromECSTags(td.Tags))
			def := td.TaskDefinition
			if awssdk.ToString(def.Family) != "test_team_summarizer" || def.NetworkMode != ecstypes.NetworkModeAwsvpc ||
				!slices.Contains(def.RequiresCompatibilities, ecstypes.CompatibilityFargate) ||
				awssdk.ToString(def.Cpu) != tc.cpu || awssdk.ToString(def.Memory) != tc.mem ||
				awssdk.ToString(def.ExecutionRoleArn) != e.cfg.ExecutionRoleARN || awssdk.ToString(def.TaskRoleArn) != e.cfg.TaskRoleARN {
				t.Errorf("task definition = family %s, %s, %v, cpu %s, memory %s, roles %s %s",
					awssdk.ToString(def.Family), def.NetworkMode, def.RequiresCompatibilities, awssdk.ToString(def.Cpu), awssdk.ToString(def.Memory),
					awssdk.ToString(def.ExecutionRoleArn), awssdk.ToString(def.TaskRoleArn))
			}
			if len(def.ContainerDefinitions) != 1 {
				t.Fatalf("containers = %d", len(def.ContainerDefinitions))
			}
			c := def.ContainerDefinitions[0]
			if awssdk.ToString(c.Name) != "webapp" || awssdk.ToString(c.Image) != tc.wantImage || len(c.PortMappings) != 1 || awssdk.ToInt32(c.PortMappings[0].ContainerPort) != 8080 {
				t.Errorf("container = %s %s %v", awssdk.ToString(c.Name), awssdk.ToString(c.Image), c.PortMappings)
			}
			env := map[string]string{}
			for _, kv := range c.Environment {
				env[awssdk.ToString(kv.Name)] = awssdk.ToString(kv.Value)
			}
			for k, v := range a.Env {
				if env[k] != v {
					t.Errorf("env %s = %q, want %q", k, env[k], v)
				}
			}
			secrets := map[string]string{}
			for _, s := range c.Secrets {
				secrets[awssdk.ToString(s.Name)] = awssdk.ToString(s.ValueFrom)
			}
			if secrets[appenv.SessionKey] != awssdk.ToString(sec.ARN) || secrets["EXTRA_KEY"] != a.SecretEnv["EXTRA_KEY"] || secrets[appenv.NATSCreds] != e.cfg.AppCredsSecret {
				t.Errorf("secrets = %v, want the session key ARN %s, EXTRA_KEY and the NATS credentials", secrets, awssdk.ToString(sec.ARN))
			}
			if _, leaked := env[appenv.SessionKey]; leaked {
				t.Error("the session key is in the plain environment")
			}
			lc := c.LogConfiguration
			if lc == nil || lc.LogDriver != ecstypes.LogDriverAwslogs || lc.Options["awslogs-group"] != e.cfg.LogGroup || lc.Options["awslogs-stream-prefix"] != "team/summarizer" {
				t.Errorf("log configuration = %+v", lc)
			}

			// Target group.
			var tg elbtypes.TargetGroup
			for _, g := range e.targetGroups() {
				if awssdk.ToString(g.TargetGroupName) == n.TargetGroup {
					tg = g
				}
			}
			if len(n.TargetGroup) > 32 || tg.TargetGroupArn == nil {
				t.Fatalf("target group %q (%d characters) not found", n.TargetGroup, len(n.TargetGroup))
			}
			tgARN := awssdk.ToString(tg.TargetGroupArn)
			if tg.TargetType != elbtypes.TargetTypeEnumIp || tg.Protocol != elbtypes.ProtocolEnumHttp || awssdk.ToInt32(tg.Port) != 8080 || awssdk.ToString(tg.HealthCheckPath) != "/healthz" {
				t.Errorf("target group = %s %s:%d %s", tg.TargetType, tg.Protocol, awssdk.ToInt32(tg.Port), awssdk.ToString(tg.HealthCheckPath))
			}
			attrs := must(e.raw.elb.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: tg.TargetGroupArn}))(t)
			for _, at := range attrs.Attributes {
				if awssdk.ToString(at.Key) == "deregistration_delay.timeout_seconds" && awssdk.ToString(at.Value) != "30" {
					t.Errorf("deregistration delay = %s, want 30", awssdk.ToString(at.Value))
				}
			}
			hasTags("target group", e.tags(tgARN)[tgARN])

			// Listener rules.
			rules := e.appRules(a.Ref)
			if len(rules) != tc.rules {
				t.Fatalf("rules = %d, want %d", len(rules), tc.rules)
			}
			var sources []string
			for _, r := range rules {
				arn := awssdk.ToString(r.RuleArn)
				hasTags("rule", e.tags(arn)[arn])
				if p := prio(r); p < 1000 || p > 49000 || p == foreignPrio {
					t.Errorf("rule priority %d outside 1000–49000 or on the foreign rule's", p)
				}
				if forwardsTo(r) != tgARN {
					t.Errorf("rule forwards to %q, want %s", forwardsTo(r), tgARN)
				}
				if conditionValues(r) > 5 {
					t.Errorf("rule has %d condition values", conditionValues(r))
				}
				for _, cond := range r.Conditions {
					switch awssdk.ToString(cond.Field) {
					case "host-header":
						if !slices.Equal(cond.HostHeaderConfig.Values, []string{"summarizer.apps.example.com"}) {
							t.Errorf("host = %v", cond.HostHeaderConfig.Values)
						}
					case "path-pattern":
						if !slices.Equal(cond.PathPatternConfig.Values, tc.paths) {
							t.Errorf("paths = %v, want %v", cond.PathPatternConfig.Values, tc.paths)
						}
					case "source-ip":
						sources = append(sources, cond.SourceIpConfig.Values...)
					}
				}
			}
			slices.Sort(sources)
			wantSources := allowlistValues(a.Allowlist)
			slices.Sort(wantSources)
			if !slices.Equal(sources, wantSources) {
				t.Errorf("rule sources = %v, want %v", sources, wantSources)
			}

			// Service.
			svc, ok := e.service(n.Service)
			if !ok {
				t.Fatal("service not found")
			}
			hasTags("service", fromECSTags(svc.Tags))
			dc := svc.DeploymentConfiguration
			if svc.LaunchType != ecstypes.LaunchTypeFargate || svc.DesiredCount != tc.desired || awssdk.ToString(svc.TaskDefinition) != revs[0] ||
				svc.PropagateTags != ecstypes.PropagateTagsService || awssdk.ToInt32(svc.HealthCheckGracePeriodSeconds) != 60 ||
				dc == nil || dc.DeploymentCircuitBreaker == nil || !dc.DeploymentCircuitBreaker.Enable || !dc.DeploymentCircuitBreaker.Rollback {
				t.Errorf("service = %s desired %d td %s propagate %s grace %d deployment %+v", svc.LaunchType, svc.DesiredCount,
					awssdk.ToString(svc.TaskDefinition), svc.PropagateTags, awssdk.ToInt32(svc.HealthCheckGracePeriodSeconds), dc)
			}
			if len(svc.LoadBalancers) != 1 || awssdk.ToString(svc.LoadBalancers[0].TargetGroupArn) != tgARN || awssdk.ToString(svc.LoadBalancers[0].ContainerName) != "webapp" {
				t.Errorf("load balancers = %+v", svc.LoadBalancers)
			}
			vpc := svc.NetworkConfiguration.AwsvpcConfiguration
			if !slices.Equal(vpc.Subnets, e.cfg.Subnets) || !slices.Equal(vpc.SecurityGroups, e.cfg.SecurityGroups) || vpc.AssignPublicIp != ecstypes.AssignPublicIpDisabled {
				t.Errorf("network = %+v", vpc)
			}

			// What Apply reported.
			if obs.Resources.ServiceARN != awssdk.ToString(svc.ServiceArn) || obs.Resources.TargetGroupARN != tgARN ||
				obs.Resources.TaskDefinitionARN != revs[0] || len(obs.Resources.RuleARNs) != tc.rules || len(obs.Resources.SecretARNs) != 1 {
				t.Errorf("observed resources = %+v", obs.Resources)
			}
			if obs.Available || obs.Rollout != model.RolloutInProgress || obs.Replicas.Desired != tc.desired {
				t.Errorf("observed right after create: available %v rollout %q replicas %+v", obs.Available, obs.Rollout, obs.Replicas)
			}
			for _, want := range []string{"SecretCreated", "TaskDefinitionRegistered", "TargetGroupCreated", "ListenerRulesChanged", "ServiceCreated"} {
				if !slices.Contains(rec.reasons(), want) {
					t.Errorf("events %v lack %s", rec.reasons(), want)
				}
			}

			// The rollout completes over (simulated) time.
			obs = e.converge(p, a)
			if obs.Replicas.Running != tc.desired || obs.Rollout != model.RolloutCompleted {
				t.Errorf("after rollout: %+v %s", obs.Replicas, obs.Rollout)
			}
		})
	}
}

func TestSecondReconcileMakesNoMutatingCall(t *testing.T) {
	tests := []struct {
		name    string
		restart bool // a fresh platform instance (cold caches) does the second reconcile
	}{
		{"same process, caches expired", false},
		{"restarted controller", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.platform()
			apps := []*model.App{
				app(t, "alpha"),
				app(t, "beta", func(a *v1.ServingApp) { a.Spec.Allowlist = cidrs(12); a.Spec.Route.PathPrefix = "/beta" }),
				app(t, "gamma", func(a *v1.ServingApp) {
					a.Spec.Replicas = nil
					a.Spec.Autoscaling = &v1.Autoscaling{MinReplicas: 1, MaxReplicas: 4, TargetInvocationsPerReplicaPerMinute: 60}
				}),
			}
			for _, a := range apps {
				e.converge(p, a)
			}
			e.later()
			if tc.restart {
				p = e.platform()
			}
			before := e.srv.Calls()
			for _, a := range apps {
				obs, err := reconcile(context.Background(), p, a, &events{})
				if err != nil || !obs.Available {
					t.Fatalf("reconcile %s: %v (available %v)", a.Ref, err, obs != nil && obs.Available)
				}
			}
			calls := e.srv.Calls().Since(before)
			if n := calls.Mutating(); n != 0 {
				t.Errorf("second reconcile made %d mutating calls: %v", n, calls.Where(func(k awsemu.CallKey) bool { return awsemu.IsMutatingOperation(k.Operation) }))
			}
			t.Logf("reads for %d apps: %d (%v)", len(apps), calls.Reads(), calls)
		})
	}
}

func TestImageChangeRegistersOneRevisionAndUpdatesTheServiceOnce(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	a := app(t, "summarizer")
	e.converge(p, a)
	e.later()
	before := e.srv.Calls()
	b := app(t, "summarizer", func(s *v1.ServingApp) { s.Spec.Image = "registry.example.com/webapp:2"; s.Metadata.Generation = 2 })
	obs := e.converge(p, b)
	calls := e.srv.Calls().Since(before)
	if n := calls.Operation(awsemu.ServiceECS, "RegisterTaskDefinition"); n != 1 {
		t.Errorf("RegisterTaskDefinition calls = %d, want 1", n)
	}
	if n := calls.Operation(awsemu.ServiceECS, "UpdateService"); n != 1 {
		t.Errorf("UpdateService calls = %d, want 1", n)
	}
	// Besides: the service's spec tag (what was deployed, see tagSpec).
	if m := calls.Mutating(); m != 3 {
		t.Errorf("mutating calls = %d, want 3 (register, update, tag): %v", m, calls)
	}
	n := p.names(b.Ref)
	svc, _ := e.service(n.Service)
	revs := e.activeRevisions(n.Service)
	if len(revs) != 2 || awssdk.ToString(svc.TaskDefinition) != obs.Resources.TaskDefinitionARN || !strings.HasSuffix(obs.Resources.TaskDefinitionARN, ":2") {
		t.Errorf("revisions %v, service runs %s, observed %s", revs, awssdk.ToString(svc.TaskDefinition), obs.Resources.TaskDefinitionARN)
	}
}
