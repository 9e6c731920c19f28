package awsemu

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

func TestECSCreateServiceIdempotency(t *testing.T) {
	tests := []struct {
		name     string
		first    func(f fixture) *ecs.CreateServiceInput
		second   func(f fixture) *ecs.CreateServiceInput
		wantCode string // "" means the second call returns the first service
	}{
		{
			name:   "same clientToken and parameters returns the same service",
			first:  func(f fixture) *ecs.CreateServiceInput { return withToken(f.serviceInput("web", 2), "uid-1-gen-1") },
			second: func(f fixture) *ecs.CreateServiceInput { return withToken(f.serviceInput("web", 2), "uid-1-gen-1") },
		},
		{
			name:   "same parameters without clientToken returns the same service",
			first:  func(f fixture) *ecs.CreateServiceInput { return f.serviceInput("web", 2) },
			second: func(f fixture) *ecs.CreateServiceInput { return f.serviceInput("web", 2) },
		},
		{
			name:     "clientToken reused with different parameters",
			first:    func(f fixture) *ecs.CreateServiceInput { return withToken(f.serviceInput("web", 2), "uid-1-gen-1") },
			second:   func(f fixture) *ecs.CreateServiceInput { return withToken(f.serviceInput("web", 3), "uid-1-gen-1") },
			wantCode: "InvalidParameterException",
		},
		{
			name:     "clientToken reused for another service name",
			first:    func(f fixture) *ecs.CreateServiceInput { return withToken(f.serviceInput("web", 2), "uid-1-gen-1") },
			second:   func(f fixture) *ecs.CreateServiceInput { return withToken(f.serviceInput("other", 2), "uid-1-gen-1") },
			wantCode: "InvalidParameterException",
		},
		{
			name:     "existing name with a different clientToken",
			first:    func(f fixture) *ecs.CreateServiceInput { return withToken(f.serviceInput("web", 2), "uid-1-gen-1") },
			second:   func(f fixture) *ecs.CreateServiceInput { return withToken(f.serviceInput("web", 2), "uid-1-gen-2") },
			wantCode: "InvalidParameterException",
		},
		{
			name:     "existing name with different parameters",
			first:    func(f fixture) *ecs.CreateServiceInput { return f.serviceInput("web", 2) },
			second:   func(f fixture) *ecs.CreateServiceInput { return f.serviceInput("web", 1) },
			wantCode: "InvalidParameterException",
		},
		{
			name:  "clientToken longer than 36 characters",
			first: func(f fixture) *ecs.CreateServiceInput { return f.serviceInput("web", 2) },
			second: func(f fixture) *ecs.CreateServiceInput {
				return withToken(f.serviceInput("x", 2), strings.Repeat("t", 37))
			},
			wantCode: "InvalidParameterException",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newTestServer(t, Options{})
			f := newFixture(t, c, "idem")
			first := must(c.ecs.CreateService(ctx(t), tc.first(f)))(t)
			second, err := c.ecs.CreateService(ctx(t), tc.second(f))
			if tc.wantCode != "" {
				wantCode(t, err, tc.wantCode)
				var ipe *ecstypes.InvalidParameterException
				if !errors.As(err, &ipe) {
					t.Fatalf("error %T is not *ecstypes.InvalidParameterException", err)
				}
			} else {
				if err != nil {
					t.Fatalf("second CreateService: %v", err)
				}
				if a, b := aws.ToString(first.Service.ServiceArn), aws.ToString(second.Service.ServiceArn); a != b {
					t.Fatalf("second CreateService returned %s, want %s", b, a)
				}
			}
			list := must(c.ecs.ListServices(ctx(t), &ecs.ListServicesInput{Cluster: aws.String(f.cluster)}))(t)
			if len(list.ServiceArns) != 1 {
				t.Fatalf("ListServices = %v, want exactly the first service", list.ServiceArns)
			}
		})
	}
}

func withToken(in *ecs.CreateServiceInput, token string) *ecs.CreateServiceInput {
	in.ClientToken = aws.String(token)
	return in
}

func TestECSServiceNamesAreUniquePerClusterOnly(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "a")
	must(c.ecs.CreateCluster(ctx(t), &ecs.CreateClusterInput{ClusterName: aws.String("b")}))(t)
	must(c.ecs.CreateService(ctx(t), f.serviceInput("web", 1)))(t)
	in := f.serviceInput("web", 1)
	in.Cluster = aws.String("b")
	out := must(c.ecs.CreateService(ctx(t), in))(t)
	if got, want := aws.ToString(out.Service.ServiceArn), "arn:aws:ecs:us-east-1:123456789012:service/b/web"; got != want {
		t.Fatalf("service ARN = %s, want %s", got, want)
	}
}

func TestECSTypedErrors(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "errs")
	must(c.ecs.CreateService(ctx(t), f.serviceInput("draining", 0)))(t)
	must(c.ecs.CreateService(ctx(t), f.serviceInput("active", 0)))(t)
	must(c.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("draining")}))(t)
	elevenNames := make([]string, 11)
	for i := range elevenNames {
		elevenNames[i] = fmt.Sprintf("svc-%d", i)
	}

	tests := []struct {
		name  string
		call  func() error
		check func(error) bool
	}{
		{"UpdateService of an unknown service", func() error {
			_, err := c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("nope"), DesiredCount: aws.Int32(1)})
			return err
		}, isErr[*ecstypes.ServiceNotFoundException]},
		{"UpdateService of a draining service", func() error {
			_, err := c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("draining"), DesiredCount: aws.Int32(1)})
			return err
		}, isErr[*ecstypes.ServiceNotActiveException]},
		{"DeleteService of an unknown service", func() error {
			_, err := c.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("nope")})
			return err
		}, isErr[*ecstypes.ServiceNotFoundException]},
		{"DescribeServices in an unknown cluster", func() error {
			_, err := c.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Cluster: aws.String("nope"), Services: []string{"web"}})
			return err
		}, isErr[*ecstypes.ClusterNotFoundException]},
		{"CreateService in an unknown cluster", func() error {
			in := f.serviceInput("web", 1)
			in.Cluster = aws.String("arn:aws:ecs:us-east-1:123456789012:cluster/nope")
			_, err := c.ecs.CreateService(ctx(t), in)
			return err
		}, isErr[*ecstypes.ClusterNotFoundException]},
		{"DescribeServices with 11 names", func() error {
			_, err := c.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Cluster: aws.String(f.cluster), Services: elevenNames})
			return err
		}, isErr[*ecstypes.InvalidParameterException]},
		{"CreateService with an unknown task definition", func() error {
			in := f.serviceInput("web", 1)
			in.TaskDefinition = aws.String("nope:7")
			_, err := c.ecs.CreateService(ctx(t), in)
			return err
		}, isErr[*ecstypes.InvalidParameterException]},
		{"CreateService with a name still draining", func() error {
			_, err := c.ecs.CreateService(ctx(t), f.serviceInput("draining", 0))
			return err
		}, isErr[*ecstypes.InvalidParameterException]},
		{"DeleteService scaled above 0 without force", func() error {
			must(c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("active"), DesiredCount: aws.Int32(1)}))(t)
			_, err := c.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("active")})
			return err
		}, isErr[*ecstypes.InvalidParameterException]},
		{"DescribeTaskDefinition of an unknown family", func() error {
			_, err := c.ecs.DescribeTaskDefinition(ctx(t), &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("nope")})
			return err
		}, isErr[*ecstypes.ClientException]},
		{"RegisterTaskDefinition with an invalid Fargate size", func() error {
			in := taskDefInput("bad-size", testImage)
			in.Memory = aws.String("4096")
			_, err := c.ecs.RegisterTaskDefinition(ctx(t), in)
			return err
		}, isErr[*ecstypes.ClientException]},
		{"CreateService without network configuration for awsvpc", func() error {
			in := f.serviceInput("web", 1)
			in.NetworkConfiguration = nil
			_, err := c.ecs.CreateService(ctx(t), in)
			return err
		}, isErr[*ecstypes.InvalidParameterException]},
		{"CreateService with health check grace but no load balancer", func() error {
			in := f.serviceInput("web", 1)
			in.LoadBalancers = nil
			_, err := c.ecs.CreateService(ctx(t), in)
			return err
		}, isErr[*ecstypes.InvalidParameterException]},
		{"CreateService bound to a container port the task does not expose", func() error {
			in := f.serviceInput("web", 1)
			in.LoadBalancers[0].ContainerPort = aws.Int32(9999)
			_, err := c.ecs.CreateService(ctx(t), in)
			return err
		}, isErr[*ecstypes.InvalidParameterException]},
		{"ListServices with maxResults 101", func() error {
			_, err := c.ecs.ListServices(ctx(t), &ecs.ListServicesInput{Cluster: aws.String(f.cluster), MaxResults: aws.Int32(101)})
			return err
		}, isErr[*ecstypes.InvalidParameterException]},
		{"TagResource with a reserved aws: key", func() error {
			_, err := c.ecs.TagResource(ctx(t), &ecs.TagResourceInput{
				ResourceArn: aws.String("arn:aws:ecs:us-east-1:123456789012:service/errs/active"),
				Tags:        []ecstypes.Tag{{Key: aws.String("aws:x"), Value: aws.String("y")}},
			})
			return err
		}, isErr[*ecstypes.InvalidParameterException]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !tc.check(err) {
				t.Fatalf("error = %v (%T), want the typed error", err, err)
			}
		})
	}
}

func isErr[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

func TestECSTargetGroupMustBelongToALoadBalancer(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "tgcheck")
	loose := createTargetGroup(t, c, "loose")
	in := f.serviceInput("web", 1)
	in.LoadBalancers[0].TargetGroupArn = aws.String(loose)
	_, err := c.ecs.CreateService(ctx(t), in)
	wantCode(t, err, "InvalidParameterException")
	must(c.ecs.CreateService(ctx(t), f.serviceInput("web", 1)))(t)
}

func TestECSDescribeServicesReportsMissingServices(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "desc")
	var names []string
	for i := range 5 {
		name := fmt.Sprintf("svc-%d", i)
		must(c.ecs.CreateService(ctx(t), f.serviceInput(name, 1)))(t)
		names = append(names, name, "missing-"+name)
	}
	out := must(c.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Cluster: aws.String(f.cluster), Services: names, Include: []ecstypes.ServiceField{ecstypes.ServiceFieldTags}}))(t)
	if len(out.Services) != 5 || len(out.Failures) != 5 {
		t.Fatalf("got %d services and %d failures, want 5 and 5", len(out.Services), len(out.Failures))
	}
	for _, fl := range out.Failures {
		if aws.ToString(fl.Reason) != "MISSING" || !strings.Contains(aws.ToString(fl.Arn), ":service/desc/missing-") {
			t.Errorf("failure = %s %s, want MISSING with the service ARN", aws.ToString(fl.Arn), aws.ToString(fl.Reason))
		}
	}
	for _, s := range out.Services {
		if len(s.Tags) != 1 {
			t.Errorf("service %s tags = %v, want the creation tag (include TAGS)", aws.ToString(s.ServiceName), s.Tags)
		}
	}
	noTags := must(c.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Cluster: aws.String(f.cluster), Services: names[:1]}))(t)
	if len(noTags.Services[0].Tags) != 0 {
		t.Errorf("tags returned without include TAGS: %v", noTags.Services[0].Tags)
	}
}

func TestECSServiceDefaultsAndConfiguration(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "conf")
	in := f.serviceInput("web", 2)
	in.DeploymentConfiguration = nil
	must(c.ecs.CreateService(ctx(t), in))(t)
	s := f.describe(t, c, "web")
	dc := s.DeploymentConfiguration
	switch {
	case aws.ToInt32(dc.MaximumPercent) != 200 || aws.ToInt32(dc.MinimumHealthyPercent) != 100:
		t.Errorf("deployment percents = %d/%d, want 200/100", aws.ToInt32(dc.MaximumPercent), aws.ToInt32(dc.MinimumHealthyPercent))
	case dc.DeploymentCircuitBreaker == nil || dc.DeploymentCircuitBreaker.Enable:
		t.Errorf("circuit breaker = %+v, want present and disabled by default", dc.DeploymentCircuitBreaker)
	case s.LaunchType != ecstypes.LaunchTypeFargate || aws.ToString(s.PlatformVersion) != "LATEST":
		t.Errorf("launch type/platform = %s/%s", s.LaunchType, aws.ToString(s.PlatformVersion))
	case s.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp != ecstypes.AssignPublicIpDisabled:
		t.Errorf("assignPublicIp = %q, want DISABLED", s.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp)
	case aws.ToInt32(s.HealthCheckGracePeriodSeconds) != 30 || s.PropagateTags != ecstypes.PropagateTagsService || !s.EnableECSManagedTags:
		t.Errorf("grace/propagate/managed tags = %d/%s/%v", aws.ToInt32(s.HealthCheckGracePeriodSeconds), s.PropagateTags, s.EnableECSManagedTags)
	case len(s.LoadBalancers) != 1 || aws.ToString(s.LoadBalancers[0].TargetGroupArn) != f.tgArn:
		t.Errorf("load balancers = %+v", s.LoadBalancers)
	case aws.ToString(s.Status) != "ACTIVE" || s.DesiredCount != 2 || s.SchedulingStrategy != ecstypes.SchedulingStrategyReplica:
		t.Errorf("status/desired/strategy = %s/%d/%s", aws.ToString(s.Status), s.DesiredCount, s.SchedulingStrategy)
	}

	// A desired count change alone scales the current deployment.
	must(c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), DesiredCount: aws.Int32(3)}))(t)
	if s := f.describe(t, c, "web"); len(s.Deployments) != 1 || s.Deployments[0].DesiredCount != 3 {
		t.Errorf("after scaling: %d deployments, desired %d; want 1 deployment at 3", len(s.Deployments), s.Deployments[0].DesiredCount)
	}
	// Turning the circuit breaker on changes the configuration, not the tasks.
	must(c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"),
		DeploymentConfiguration: &ecstypes.DeploymentConfiguration{DeploymentCircuitBreaker: &ecstypes.DeploymentCircuitBreaker{Enable: true, Rollback: true}}}))(t)
	if s := f.describe(t, c, "web"); len(s.Deployments) != 1 || !s.DeploymentConfiguration.DeploymentCircuitBreaker.Rollback {
		t.Errorf("after enabling the circuit breaker: %d deployments, breaker %+v", len(s.Deployments), s.DeploymentConfiguration.DeploymentCircuitBreaker)
	}
	// forceNewDeployment redeploys the same task definition.
	must(c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), ForceNewDeployment: true}))(t)
	if s := f.describe(t, c, "web"); len(s.Deployments) != 2 {
		t.Errorf("after forceNewDeployment: %d deployments, want 2", len(s.Deployments))
	}
}

// rolloutState is what a test observes of a service after some simulated
// time.
type rolloutState struct {
	running, pending, deployments int
	primary                       ecstypes.DeploymentRolloutState
}

func observe(s ecstypes.Service) rolloutState {
	st := rolloutState{running: int(s.RunningCount), pending: int(s.PendingCount), deployments: len(s.Deployments)}
	for _, d := range s.Deployments {
		if aws.ToString(d.Status) == "PRIMARY" {
			st.primary = d.RolloutState
		}
	}
	return st
}

func TestECSRolloutOverSimulatedTime(t *testing.T) {
	srv, c := newTestServer(t, Options{ECS: ECSOptions{RolloutStep: 10 * time.Second}})
	f := newFixture(t, c, "roll")
	must(c.ecs.CreateService(ctx(t), f.serviceInput("web", 2)))(t)
	v2 := registerTaskDef(t, c, f.cluster, "public.ecr.aws/servingapp/webapp:2")

	steps := []struct {
		name    string
		act     func()
		advance time.Duration
		want    rolloutState
	}{
		{"created: tasks launched", nil, 0, rolloutState{running: 0, pending: 2, deployments: 1, primary: ecstypes.DeploymentRolloutStateInProgress}},
		{"not yet a full step later", nil, 9 * time.Second, rolloutState{running: 0, pending: 2, deployments: 1, primary: ecstypes.DeploymentRolloutStateInProgress}},
		{"one step: running and completed", nil, time.Second, rolloutState{running: 2, pending: 0, deployments: 1, primary: ecstypes.DeploymentRolloutStateCompleted}},
		{"new task definition: second deployment starts", func() {
			must(c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), TaskDefinition: aws.String(v2)}))(t)
		}, 0, rolloutState{running: 2, pending: 2, deployments: 2, primary: ecstypes.DeploymentRolloutStateInProgress}},
		{"one step: new tasks run, old drained", nil, 10 * time.Second, rolloutState{running: 2, pending: 0, deployments: 1, primary: ecstypes.DeploymentRolloutStateCompleted}},
		{"scale to 4", func() {
			must(c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), DesiredCount: aws.Int32(4)}))(t)
		}, 30 * time.Second, rolloutState{running: 4, pending: 0, deployments: 1, primary: ecstypes.DeploymentRolloutStateCompleted}},
	}
	for _, st := range steps {
		if st.act != nil {
			st.act()
		}
		srv.Advance(st.advance)
		if got := observe(f.describe(t, c, "web")); got != st.want {
			t.Fatalf("%s: got %+v, want %+v", st.name, got, st.want)
		}
	}
	s := f.describe(t, c, "web")
	if aws.ToString(s.TaskDefinition) != v2 || aws.ToString(s.Deployments[0].TaskDefinition) != v2 {
		t.Errorf("task definition = %s, want %s", aws.ToString(s.TaskDefinition), v2)
	}
	msgs := eventMessages(s)
	for _, want := range []string{"(service web) has reached a steady state.", "deployment completed.", "(service web) has started 2 tasks:", "(service web) has stopped 2 running tasks:", "(service web) registered 2 targets in (target-group " + f.tgArn + ")"} {
		if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("no event containing %q in %q", want, msgs)
		}
	}
	if !s.Events[0].CreatedAt.After(*s.Events[len(s.Events)-1].CreatedAt) {
		t.Errorf("events are not newest first")
	}
}

func eventMessages(s ecstypes.Service) []string {
	var out []string
	for _, e := range s.Events {
		out = append(out, aws.ToString(e.Message))
	}
	return out
}

func TestECSRolloutKeepsMinimumHealthyPercent(t *testing.T) {
	srv, c := newTestServer(t, Options{})
	f := newFixture(t, c, "minhealthy")
	in := f.serviceInput("web", 4)
	in.DeploymentConfiguration.MaximumPercent = aws.Int32(150)
	in.DeploymentConfiguration.MinimumHealthyPercent = aws.Int32(50)
	must(c.ecs.CreateService(ctx(t), in))(t)
	srv.Advance(time.Minute)
	v2 := registerTaskDef(t, c, f.cluster, "public.ecr.aws/servingapp/webapp:2")
	must(c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), TaskDefinition: aws.String(v2)}))(t)
	for step := 0; step < 10; step++ {
		s := f.describe(t, c, "web")
		if s.RunningCount < 2 {
			t.Fatalf("step %d: %d running tasks, below the 50%% minimum of 4", step, s.RunningCount)
		}
		if s.RunningCount+s.PendingCount > 6 {
			t.Fatalf("step %d: %d tasks, above the 150%% maximum of 4", step, s.RunningCount+s.PendingCount)
		}
		if observe(s) == (rolloutState{running: 4, deployments: 1, primary: ecstypes.DeploymentRolloutStateCompleted}) {
			return
		}
		srv.Advance(15 * time.Second)
	}
	t.Fatalf("rollout did not complete in 10 steps: %+v", observe(f.describe(t, c, "web")))
}

func TestECSCircuitBreakerRollsBackAFailingDeployment(t *testing.T) {
	srv, c := newTestServer(t, Options{})
	srv.SetDeploymentFailer(func(d DeploymentInfo) bool {
		return slices.Contains(d.Images, "public.ecr.aws/servingapp/webapp:broken")
	})
	f := newFixture(t, c, "cb")
	must(c.ecs.CreateService(ctx(t), f.serviceInput("web", 2)))(t)
	srv.Advance(time.Minute)
	broken := registerTaskDef(t, c, f.cluster, "public.ecr.aws/servingapp/webapp:broken")
	must(c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), TaskDefinition: aws.String(broken)}))(t)

	var failed bool
	for step := 0; step < 20 && !failed; step++ {
		srv.Advance(15 * time.Second)
		s := f.describe(t, c, "web")
		if s.RunningCount < 2 {
			t.Fatalf("step %d: running dropped to %d while the new tasks fail", step, s.RunningCount)
		}
		for _, d := range s.Deployments {
			if aws.ToString(d.TaskDefinition) == broken && d.RolloutState == ecstypes.DeploymentRolloutStateFailed {
				failed = true
				if d.FailedTasks < 3 || !strings.Contains(aws.ToString(d.RolloutStateReason), "circuit breaker") {
					t.Errorf("failed deployment: failedTasks %d, reason %q", d.FailedTasks, aws.ToString(d.RolloutStateReason))
				}
			}
		}
	}
	if !failed {
		t.Fatal("the broken deployment never turned FAILED")
	}
	srv.Advance(time.Minute)
	s := f.describe(t, c, "web")
	if aws.ToString(s.TaskDefinition) != f.taskDef {
		t.Errorf("service task definition = %s, want rolled back to %s", aws.ToString(s.TaskDefinition), f.taskDef)
	}
	if got := observe(s); got != (rolloutState{running: 2, deployments: 1, primary: ecstypes.DeploymentRolloutStateCompleted}) {
		t.Errorf("after rollback: %+v", got)
	}
	msgs := eventMessages(s)
	for _, want := range []string{"deployment failed: tasks failed to start.", "rolling back to deployment"} {
		if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("no event containing %q", want)
		}
	}
}

func TestECSDeleteServiceDrainsToInactive(t *testing.T) {
	srv, c := newTestServer(t, Options{ECS: ECSOptions{InactiveRetention: 30 * time.Minute}})
	f := newFixture(t, c, "del")
	must(c.ecs.CreateService(ctx(t), f.serviceInput("web", 2)))(t)
	srv.Advance(time.Minute)

	out := must(c.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), Force: aws.Bool(true)}))(t)
	if got := aws.ToString(out.Service.Status); got != "DRAINING" {
		t.Fatalf("DeleteService status = %s, want DRAINING", got)
	}
	if s := f.describe(t, c, "web"); aws.ToString(s.Status) != "DRAINING" || s.DesiredCount != 0 {
		t.Fatalf("after delete: %s desired %d", aws.ToString(s.Status), s.DesiredCount)
	}
	srv.Advance(15 * time.Second)
	s := f.describe(t, c, "web")
	if aws.ToString(s.Status) != "INACTIVE" || s.RunningCount != 0 {
		t.Fatalf("after draining: status %s running %d, want INACTIVE 0", aws.ToString(s.Status), s.RunningCount)
	}
	list := must(c.ecs.ListServices(ctx(t), &ecs.ListServicesInput{Cluster: aws.String(f.cluster)}))(t)
	if len(list.ServiceArns) != 0 {
		t.Errorf("ListServices lists INACTIVE services: %v", list.ServiceArns)
	}
	_, err := c.ecs.UpdateService(ctx(t), &ecs.UpdateServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), DesiredCount: aws.Int32(1)})
	if !isErr[*ecstypes.ServiceNotActiveException](err) {
		t.Errorf("UpdateService of INACTIVE service: %v, want ServiceNotActiveException", err)
	}
	_, err = c.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web")})
	if !isErr[*ecstypes.ServiceNotFoundException](err) {
		t.Errorf("DeleteService of INACTIVE service: %v, want ServiceNotFoundException", err)
	}

	// The name is free again; a new service replaces the INACTIVE one.
	recreated := must(c.ecs.CreateService(ctx(t), f.serviceInput("web", 1)))(t)
	if aws.ToString(recreated.Service.Status) != "ACTIVE" {
		t.Fatalf("recreated service status %s", aws.ToString(recreated.Service.Status))
	}
	must(c.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), Force: aws.Bool(true)}))(t)
	srv.Advance(29 * time.Minute)
	if s := f.describe(t, c, "web"); aws.ToString(s.Status) != "INACTIVE" {
		t.Fatalf("INACTIVE service not describable within retention: %s", aws.ToString(s.Status))
	}
	srv.Advance(2 * time.Minute)
	gone := must(c.ecs.DescribeServices(ctx(t), &ecs.DescribeServicesInput{Cluster: aws.String(f.cluster), Services: []string{"web"}}))(t)
	if len(gone.Services) != 0 || len(gone.Failures) != 1 || aws.ToString(gone.Failures[0].Reason) != "MISSING" {
		t.Fatalf("after retention: services %d, failures %v; want MISSING", len(gone.Services), failureReasons(gone.Failures))
	}
}

func TestECSInstantRollout(t *testing.T) {
	_, c := newTestServer(t, Options{ECS: ECSOptions{InstantRollout: true}})
	f := newFixture(t, c, "instant")
	out := must(c.ecs.CreateService(ctx(t), f.serviceInput("web", 3)))(t)
	if out.Service.PendingCount != 3 {
		t.Errorf("CreateService response pending = %d, want 3 (the state when the call started)", out.Service.PendingCount)
	}
	if got := observe(f.describe(t, c, "web")); got != (rolloutState{running: 3, deployments: 1, primary: ecstypes.DeploymentRolloutStateCompleted}) {
		t.Fatalf("after CreateService: %+v", got)
	}
	must(c.ecs.DeleteService(ctx(t), &ecs.DeleteServiceInput{Cluster: aws.String(f.cluster), Service: aws.String("web"), Force: aws.Bool(true)}))(t)
	if s := f.describe(t, c, "web"); aws.ToString(s.Status) != "INACTIVE" {
		t.Fatalf("after DeleteService: %s, want INACTIVE", aws.ToString(s.Status))
	}
}

func TestECSListServicesPaginates(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "page")
	for i := range 25 {
		in := f.serviceInput(fmt.Sprintf("svc-%02d", i), 0)
		must(c.ecs.CreateService(ctx(t), in))(t)
	}
	tests := []struct {
		maxResults *int32
		wantPages  []int
	}{
		{nil, []int{10, 10, 5}},
		{aws.Int32(100), []int{25}},
		{aws.Int32(7), []int{7, 7, 7, 4}},
	}
	for _, tc := range tests {
		var pages []int
		seen := map[string]bool{}
		p := ecs.NewListServicesPaginator(c.ecs, &ecs.ListServicesInput{Cluster: aws.String(f.cluster), MaxResults: tc.maxResults})
		for p.HasMorePages() {
			out := must(p.NextPage(ctx(t)))(t)
			pages = append(pages, len(out.ServiceArns))
			for _, arn := range out.ServiceArns {
				seen[arn] = true
			}
		}
		if !slices.Equal(pages, tc.wantPages) || len(seen) != 25 {
			t.Errorf("maxResults %v: pages %v (%d distinct), want %v (25)", aws.ToInt32(tc.maxResults), pages, len(seen), tc.wantPages)
		}
	}
	_, err := c.ecs.ListServices(ctx(t), &ecs.ListServicesInput{Cluster: aws.String(f.cluster), NextToken: aws.String("garbage")})
	wantCode(t, err, "InvalidParameterException")
}

func TestECSTaskDefinitions(t *testing.T) {
	_, c := newTestServer(t, Options{})
	in := taskDefInput("web", testImage)
	in.Tags = []ecstypes.Tag{{Key: aws.String("servingapp.io/app"), Value: aws.String("default/web")}}
	r1 := must(c.ecs.RegisterTaskDefinition(ctx(t), in))(t)
	r2 := must(c.ecs.RegisterTaskDefinition(ctx(t), taskDefInput("web", "img:2")))(t)
	must(c.ecs.RegisterTaskDefinition(ctx(t), taskDefInput("web-other", "img:1")))(t)

	if got := aws.ToString(r1.TaskDefinition.TaskDefinitionArn); got != "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1" {
		t.Errorf("first ARN = %s", got)
	}
	if r2.TaskDefinition.Revision != 2 || len(r1.Tags) != 1 {
		t.Errorf("second revision = %d, first tags = %v", r2.TaskDefinition.Revision, r1.Tags)
	}
	td := r1.TaskDefinition
	cd := td.ContainerDefinitions[0]
	if !aws.ToBool(cd.Essential) || aws.ToInt32(cd.PortMappings[0].HostPort) != 8080 || cd.PortMappings[0].Protocol != ecstypes.TransportProtocolTcp || cd.Environment == nil {
		t.Errorf("container not normalized like ECS: essential %v hostPort %v protocol %q environment %v", cd.Essential, cd.PortMappings[0].HostPort, cd.PortMappings[0].Protocol, cd.Environment)
	}
	if !slices.Contains(td.Compatibilities, ecstypes.CompatibilityFargate) || td.Status != ecstypes.TaskDefinitionStatusActive {
		t.Errorf("compatibilities %v status %s", td.Compatibilities, td.Status)
	}

	latest := must(c.ecs.DescribeTaskDefinition(ctx(t), &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("web"), Include: []ecstypes.TaskDefinitionField{ecstypes.TaskDefinitionFieldTags}}))(t)
	if latest.TaskDefinition.Revision != 2 || len(latest.Tags) != 0 {
		t.Errorf("DescribeTaskDefinition(web) revision %d tags %v, want 2 and none", latest.TaskDefinition.Revision, latest.Tags)
	}
	first := must(c.ecs.DescribeTaskDefinition(ctx(t), &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("web:1"), Include: []ecstypes.TaskDefinitionField{ecstypes.TaskDefinitionFieldTags}}))(t)
	if len(first.Tags) != 1 || aws.ToString(first.Tags[0].Value) != "default/web" {
		t.Errorf("DescribeTaskDefinition(web:1) tags = %v", first.Tags)
	}

	dereg := must(c.ecs.DeregisterTaskDefinition(ctx(t), &ecs.DeregisterTaskDefinitionInput{TaskDefinition: aws.String("web:2")}))(t)
	if dereg.TaskDefinition.Status != ecstypes.TaskDefinitionStatusInactive || dereg.TaskDefinition.DeregisteredAt == nil {
		t.Errorf("deregistered status %s", dereg.TaskDefinition.Status)
	}
	if got := must(c.ecs.DescribeTaskDefinition(ctx(t), &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String("web")}))(t); got.TaskDefinition.Revision != 1 {
		t.Errorf("family resolves to revision %d after deregistering 2, want 1", got.TaskDefinition.Revision)
	}
	r3 := must(c.ecs.RegisterTaskDefinition(ctx(t), taskDefInput("web", "img:3")))(t)
	if r3.TaskDefinition.Revision != 3 {
		t.Errorf("revision after deregistration = %d, want 3 (never reused)", r3.TaskDefinition.Revision)
	}

	list := func(in *ecs.ListTaskDefinitionsInput) []string {
		var out []string
		p := ecs.NewListTaskDefinitionsPaginator(c.ecs, in)
		for p.HasMorePages() {
			page := must(p.NextPage(ctx(t)))(t)
			for _, arn := range page.TaskDefinitionArns {
				out = append(out, arn[strings.LastIndex(arn, "/")+1:])
			}
		}
		return out
	}
	tests := []struct {
		name string
		in   *ecs.ListTaskDefinitionsInput
		want []string
	}{
		{"all active", &ecs.ListTaskDefinitionsInput{}, []string{"web:1", "web:3", "web-other:1"}},
		{"family is exact, not a prefix", &ecs.ListTaskDefinitionsInput{FamilyPrefix: aws.String("web")}, []string{"web:1", "web:3"}},
		{"newest first", &ecs.ListTaskDefinitionsInput{FamilyPrefix: aws.String("web"), Sort: ecstypes.SortOrderDesc}, []string{"web:3", "web:1"}},
		{"inactive", &ecs.ListTaskDefinitionsInput{Status: ecstypes.TaskDefinitionStatusInactive}, []string{"web:2"}},
		{"pages of one", &ecs.ListTaskDefinitionsInput{MaxResults: aws.Int32(1)}, []string{"web:1", "web:3", "web-other:1"}},
	}
	for _, tc := range tests {
		if got := list(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestECSTagging(t *testing.T) {
	_, c := newTestServer(t, Options{})
	f := newFixture(t, c, "tags")
	svc := must(c.ecs.CreateService(ctx(t), f.serviceInput("web", 1)))(t)
	resources := map[string]string{
		"service":         aws.ToString(svc.Service.ServiceArn),
		"task definition": f.taskDef,
		"cluster":         "arn:aws:ecs:us-east-1:123456789012:cluster/tags",
	}
	for kind, arn := range resources {
		t.Run(kind, func(t *testing.T) {
			must(c.ecs.TagResource(ctx(t), &ecs.TagResourceInput{ResourceArn: aws.String(arn), Tags: []ecstypes.Tag{
				{Key: aws.String("servingapp.io/managed-by"), Value: aws.String("ctrl-1")},
				{Key: aws.String("servingapp.io/uid"), Value: aws.String("u-1")},
			}}))(t)
			must(c.ecs.TagResource(ctx(t), &ecs.TagResourceInput{ResourceArn: aws.String(arn), Tags: []ecstypes.Tag{
				{Key: aws.String("servingapp.io/uid"), Value: aws.String("u-2")},
			}}))(t)
			must(c.ecs.UntagResource(ctx(t), &ecs.UntagResourceInput{ResourceArn: aws.String(arn), TagKeys: []string{"servingapp.io/managed-by"}}))(t)
			out := must(c.ecs.ListTagsForResource(ctx(t), &ecs.ListTagsForResourceInput{ResourceArn: aws.String(arn)}))(t)
			got := map[string]string{}
			for _, tag := range out.Tags {
				got[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
			}
			if got["servingapp.io/uid"] != "u-2" || got["servingapp.io/managed-by"] != "" {
				t.Errorf("tags = %v", got)
			}
		})
	}
	_, err := c.ecs.ListTagsForResource(ctx(t), &ecs.ListTagsForResourceInput{ResourceArn: aws.String("arn:aws:ecs:us-east-1:123456789012:service/tags/nope")})
	if !isErr[*ecstypes.ServiceNotFoundException](err) {
		t.Errorf("tags of a missing service: %v", err)
	}
}

func TestECSRolloutFollowsAnInjectedClock(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	srv, c := newTestServer(t, Options{Now: clock})
	f := newFixture(t, c, "clock")
	created := must(c.ecs.CreateService(ctx(t), f.serviceInput("web", 1)))(t)
	if !created.Service.CreatedAt.Equal(now) {
		t.Errorf("createdAt = %v, want the injected time %v", created.Service.CreatedAt, now)
	}
	mu.Lock()
	now = now.Add(15 * time.Second)
	mu.Unlock()
	if got := observe(f.describe(t, c, "web")); got.running != 1 || got.primary != ecstypes.DeploymentRolloutStateCompleted {
		t.Fatalf("after the injected clock moved one step: %+v", got)
	}
	srv.Advance(time.Hour)
	if got := srv.Now(); !got.Equal(now.Add(time.Hour)) {
		t.Errorf("Now = %v, want the injected time plus Advance", got)
	}
}

// BenchmarkDescribeServicesBatch measures one DescribeServices call of 10
// services on a cluster of 200, through the SDK and the router.
func BenchmarkDescribeServicesBatch(b *testing.B) {
	srv := New(Options{ECS: ECSOptions{InstantRollout: true}})
	defer srv.Close()
	c := newClients(b, srv.URL, nil)
	bctx := b.Context()
	must(c.ecs.CreateCluster(bctx, &ecs.CreateClusterInput{ClusterName: aws.String("bench")}))(b)
	must(c.ecs.RegisterTaskDefinition(bctx, taskDefInput("bench", testImage)))(b)
	var names []string
	for i := range 200 {
		name := fmt.Sprintf("svc-%03d", i)
		names = append(names, name)
		must(c.ecs.CreateService(bctx, &ecs.CreateServiceInput{
			Cluster: aws.String("bench"), ServiceName: aws.String(name), TaskDefinition: aws.String("bench"), DesiredCount: aws.Int32(2),
			LaunchType:           ecstypes.LaunchTypeFargate,
			NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{Subnets: []string{"subnet-a"}}},
		}))(b)
	}
	for i := 0; b.Loop(); i++ {
		batch := names[(i*10)%200 : (i*10)%200+10]
		must(c.ecs.DescribeServices(bctx, &ecs.DescribeServicesInput{Cluster: aws.String("bench"), Services: batch}))(b)
	}
}
