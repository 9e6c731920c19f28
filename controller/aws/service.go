package aws

import (
	"context"
	"fmt"
	"slices"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/servingapp/servingapp/api/appenv"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
)

// ECS service states.
const (
	statusActive   = "ACTIVE"
	statusDraining = "DRAINING"
	statusInactive = "INACTIVE"
)

// Deployment settings of every service.
const (
	maximumPercent        = 200
	minimumHealthyPercent = 100
)

// recentEvents is how many ECS service events go into status messages.
const recentEvents = 3

// describeServices is the service cache's read: one DescribeServices call
// with tags for up to 10 names. INACTIVE services count as gone.
func (p *Platform) describeServices(ctx context.Context, names []string) (map[string]*ecstypes.Service, error) {
	out, err := p.c.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{
		Cluster:  awssdk.String(p.cfg.Cluster),
		Services: names,
		Include:  []ecstypes.ServiceField{ecstypes.ServiceFieldTags},
	})
	if err != nil {
		return nil, classify("describe services "+strings.Join(names, ", "), err)
	}
	got := make(map[string]*ecstypes.Service, len(out.Services))
	for i := range out.Services {
		s := &out.Services[i]
		if awssdk.ToString(s.Status) == statusInactive {
			continue
		}
		got[awssdk.ToString(s.ServiceName)] = s
	}
	return got, nil
}

func serviceOurs(s *ecstypes.Service, controllerID string) bool {
	return fromECSTags(s.Tags)[model.TagManagedBy] == controllerID
}

func (p *Platform) networkConfiguration() *ecstypes.NetworkConfiguration {
	assign := ecstypes.AssignPublicIpDisabled
	if p.cfg.AssignPublicIP {
		assign = ecstypes.AssignPublicIpEnabled
	}
	return &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
		Subnets:        slices.Clone(p.cfg.Subnets),
		SecurityGroups: slices.Clone(p.cfg.SecurityGroups),
		AssignPublicIp: assign,
	}}
}

func loadBalancers(targetGroup string) []ecstypes.LoadBalancer {
	return []ecstypes.LoadBalancer{{
		TargetGroupArn: awssdk.String(targetGroup),
		ContainerName:  awssdk.String(containerName),
		ContainerPort:  awssdk.Int32(appenv.Port),
	}}
}

func deploymentConfiguration() *ecstypes.DeploymentConfiguration {
	return &ecstypes.DeploymentConfiguration{
		MaximumPercent:           awssdk.Int32(maximumPercent),
		MinimumHealthyPercent:    awssdk.Int32(minimumHealthyPercent),
		DeploymentCircuitBreaker: &ecstypes.DeploymentCircuitBreaker{Enable: true, Rollback: true},
	}
}

// createService creates the app's service with the desired count of the
// spec (for autoscaled apps their minimum): the only time this platform
// sets the count of an autoscaled app.
func (p *Platform) createService(ctx context.Context, app *model.App, n names, taskDefinition, specHash, targetGroup string, rec model.Recorder) (*ecstypes.Service, error) {
	out, err := p.c.ecs.CreateService(ctx, &ecs.CreateServiceInput{
		Cluster:                       awssdk.String(p.cfg.Cluster),
		ServiceName:                   awssdk.String(n.Service),
		TaskDefinition:                awssdk.String(taskDefinition),
		DesiredCount:                  awssdk.Int32(app.Replicas),
		LaunchType:                    ecstypes.LaunchTypeFargate,
		NetworkConfiguration:          p.networkConfiguration(),
		LoadBalancers:                 loadBalancers(targetGroup),
		HealthCheckGracePeriodSeconds: awssdk.Int32(p.cfg.HealthCheckGracePeriodSeconds),
		DeploymentConfiguration:       deploymentConfiguration(),
		PropagateTags:                 ecstypes.PropagateTagsService,
		EnableECSManagedTags:          true,
		ClientToken:                   awssdk.String(clientToken(app.Ref.UID, app.Generation)),
		Tags:                          ecsTags(mergeTags(app.Tags, map[string]string{tagSpec: specHash})),
	})
	if err != nil {
		return nil, classify("create service for "+app.Ref.String(), err)
	}
	withTags(out.Service, ecsTags(mergeTags(app.Tags, map[string]string{tagSpec: specHash})))
	p.services.put(n.Service, out.Service)
	rec.Event(ctx, "ServiceCreated", fmt.Sprintf("ECS service %s created with %d task(s)", awssdk.ToString(out.Service.ServiceArn), app.Replicas))
	return out.Service, nil
}

// serviceUpdate is what UpdateService must change on svc, nil when nothing.
func (p *Platform) serviceUpdate(app *model.App, svc *ecstypes.Service, taskDefinition, targetGroup string) (*ecs.UpdateServiceInput, []string) {
	in := &ecs.UpdateServiceInput{Cluster: awssdk.String(p.cfg.Cluster), Service: svc.ServiceName}
	var what []string
	if taskDefinition != "" && awssdk.ToString(svc.TaskDefinition) != taskDefinition {
		in.TaskDefinition = awssdk.String(taskDefinition)
		what = append(what, "task definition "+taskDefinition)
	}
	// While autoscaling owns the count, only SetDesiredCount changes it.
	if !app.Autoscaled && svc.DesiredCount != app.Replicas {
		in.DesiredCount = awssdk.Int32(app.Replicas)
		what = append(what, fmt.Sprintf("desired count %d → %d", svc.DesiredCount, app.Replicas))
	}
	if !sameNetwork(svc.NetworkConfiguration, p.networkConfiguration()) {
		in.NetworkConfiguration = p.networkConfiguration()
		what = append(what, "network configuration")
	}
	if targetGroup != "" && !sameLoadBalancers(svc.LoadBalancers, targetGroup) {
		in.LoadBalancers = loadBalancers(targetGroup)
		what = append(what, "load balancer binding")
	}
	if awssdk.ToInt32(svc.HealthCheckGracePeriodSeconds) != p.cfg.HealthCheckGracePeriodSeconds {
		in.HealthCheckGracePeriodSeconds = awssdk.Int32(p.cfg.HealthCheckGracePeriodSeconds)
		what = append(what, "health check grace period")
	}
	if dc := svc.DeploymentConfiguration; dc == nil || dc.DeploymentCircuitBreaker == nil || !dc.DeploymentCircuitBreaker.Enable ||
		!dc.DeploymentCircuitBreaker.Rollback || awssdk.ToInt32(dc.MaximumPercent) != maximumPercent || awssdk.ToInt32(dc.MinimumHealthyPercent) != minimumHealthyPercent {
		in.DeploymentConfiguration = deploymentConfiguration()
		what = append(what, "deployment configuration")
	}
	if svc.PropagateTags != ecstypes.PropagateTagsService {
		in.PropagateTags = ecstypes.PropagateTagsService
		what = append(what, "tag propagation")
	}
	if len(what) == 0 {
		return nil, nil
	}
	return in, what
}

func sameNetwork(have, want *ecstypes.NetworkConfiguration) bool {
	if have == nil || have.AwsvpcConfiguration == nil {
		return false
	}
	h, w := have.AwsvpcConfiguration, want.AwsvpcConfiguration
	assign := h.AssignPublicIp
	if assign == "" {
		assign = ecstypes.AssignPublicIpDisabled
	}
	return sameSet(h.Subnets, w.Subnets) && sameSet(h.SecurityGroups, w.SecurityGroups) && assign == w.AssignPublicIp
}

func sameLoadBalancers(have []ecstypes.LoadBalancer, targetGroup string) bool {
	return len(have) == 1 && awssdk.ToString(have[0].TargetGroupArn) == targetGroup &&
		awssdk.ToString(have[0].ContainerName) == containerName && awssdk.ToInt32(have[0].ContainerPort) == appenv.Port
}

// primaryDeployment returns the service's PRIMARY deployment, nil if none.
func primaryDeployment(svc *ecstypes.Service) *ecstypes.Deployment {
	for i := range svc.Deployments {
		if awssdk.ToString(svc.Deployments[i].Status) == "PRIMARY" {
			return &svc.Deployments[i]
		}
	}
	return nil
}

// serviceStatus maps a service to replicas, rollout state and a message.
// current tells whether the service runs the desired task definition;
// failed is the reason of a failed deployment of the desired spec, if any.
func serviceStatus(svc *ecstypes.Service, current bool, failed string) (v1.ReplicaStatus, string, bool, string) {
	reps := v1.ReplicaStatus{Desired: svc.DesiredCount, Running: svc.RunningCount, Pending: svc.PendingCount}
	counts := fmt.Sprintf("%d of %d tasks running, %d pending.", reps.Running, reps.Desired, reps.Pending)
	events := recentServiceEvents(svc)
	if awssdk.ToString(svc.Status) == statusDraining {
		return reps, "", false, "The service is being deleted. " + counts
	}
	if failed != "" {
		return reps, model.RolloutFailed, false, strings.TrimSpace(failed + " " + counts + events)
	}
	p := primaryDeployment(svc)
	rollout := model.RolloutInProgress
	if p != nil {
		switch p.RolloutState {
		case ecstypes.DeploymentRolloutStateCompleted:
			rollout = model.RolloutCompleted
		case ecstypes.DeploymentRolloutStateFailed:
			return reps, model.RolloutFailed, false, strings.TrimSpace(awssdk.ToString(p.RolloutStateReason) + " " + counts + events)
		case "":
			if len(svc.Deployments) == 1 && reps.Running == reps.Desired && reps.Pending == 0 {
				rollout = model.RolloutCompleted
			}
		}
	}
	available := rollout == model.RolloutCompleted && len(svc.Deployments) == 1 && reps.Running == reps.Desired && current
	if available {
		return reps, rollout, true, ""
	}
	msg := counts
	if !current {
		msg = "A new task definition is about to be deployed. " + counts
	}
	return reps, rollout, false, strings.TrimSpace(msg + events)
}

func recentServiceEvents(svc *ecstypes.Service) string {
	var msgs []string
	for i := 0; i < len(svc.Events) && i < recentEvents; i++ {
		msgs = append(msgs, awssdk.ToString(svc.Events[i].Message))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " Recent ECS events: " + strings.Join(msgs, " | ")
}

// recordServiceEvents passes ECS service events this platform has not
// reported yet to rec, oldest first; failures are warnings. The first
// sighting of a service after a start only remembers where its events are.
func (p *Platform) recordServiceEvents(ctx context.Context, app model.Ref, svc *ecstypes.Service, rec model.Recorder) {
	if len(svc.Events) == 0 {
		return
	}
	newest := awssdk.ToString(svc.Events[0].Id)
	p.mu.Lock()
	last, seen := p.lastEvent[app.String()]
	p.lastEvent[app.String()] = newest
	p.mu.Unlock()
	if !seen || last == newest {
		return
	}
	var fresh []ecstypes.ServiceEvent
	for _, e := range svc.Events {
		if awssdk.ToString(e.Id) == last {
			break
		}
		fresh = append(fresh, e)
	}
	for i := min(len(fresh), 5) - 1; i >= 0; i-- {
		msg := awssdk.ToString(fresh[i].Message)
		low := strings.ToLower(msg)
		if strings.Contains(low, "fail") || strings.Contains(low, "unhealthy") || strings.Contains(low, "unable") || strings.Contains(low, "error") {
			rec.Warning(ctx, "ECSServiceEvent", msg)
		} else {
			rec.Event(ctx, "ECSServiceEvent", msg)
		}
	}
}

// withTags gives svc tags when a mutation's answer came without them
// (only DescribeServices includes them on request), so cached answers can
// always tell whose a service is.
func withTags(svc *ecstypes.Service, tags []ecstypes.Tag) {
	if svc != nil && len(svc.Tags) == 0 {
		svc.Tags = tags
	}
}
