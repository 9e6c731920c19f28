package awsemu

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// ecsService is one service: its configuration in svc (counts, deployments
// and events are filled in by the view), plus the emulator's bookkeeping.
type ecsService struct {
	svc         ecstypes.Service
	tags        []ecstypes.Tag
	clientToken string
	createHash  []byte // canonical encoding of the CreateService request
	deployments []*ecsDeployment
	events      []ecstypes.ServiceEvent // newest first
	lastStep    time.Time
	inactiveAt  time.Time
	steady      bool // the steady-state event was emitted for the current state
	lastGoodTD  string
	lastGoodID  string
}

type ecsDeployment struct {
	d       ecstypes.Deployment
	pending []string // task ids
	running []string
	failing bool
}

func (s *ecsService) name() string   { return aws.ToString(s.svc.ServiceName) }
func (s *ecsService) status() string { return aws.ToString(s.svc.Status) }

func errServiceNotFound() *apiError {
	return clientErr("ServiceNotFoundException", "Service not found.")
}

func errServiceNotActive() *apiError {
	return clientErr("ServiceNotActiveException", "Service was not ACTIVE.")
}

// serviceRef splits a service reference (name, long ARN
// ".../service/cluster/name" or old ARN ".../service/name") into cluster (may
// be empty) and name.
func serviceRef(ref string) (cluster, name string) {
	if !strings.HasPrefix(ref, "arn:") {
		return "", ref
	}
	_, res, ok := strings.Cut(ref, ":service/")
	if !ok {
		return "", ref
	}
	if c, n, ok := strings.Cut(res, "/"); ok {
		return c, n
	}
	return "", res
}

// findService returns the live (ACTIVE or DRAINING) service with the name,
// else the most recently deleted INACTIVE one still retained, else nil.
func (c *ecsCluster) findService(ref string) *ecsService {
	cl, name := serviceRef(ref)
	if cl != "" && cl != aws.ToString(c.cluster.ClusterName) {
		return nil
	}
	var inactive *ecsService
	for _, s := range c.services {
		if s.name() != name {
			continue
		}
		if s.status() != ecsStatusInactive {
			return s
		}
		inactive = s
	}
	return inactive
}

func (c *ecsCluster) liveService(name string) *ecsService {
	if s := c.findService(name); s != nil && s.status() != ecsStatusInactive {
		return s
	}
	return nil
}

func errNotIdempotent() *apiError {
	return clientErr("InvalidParameterException", "Creation of service was not idempotent.")
}

func (e *ecsEmulator) createService(body []byte, now time.Time) (any, *apiError) {
	var in ecs.CreateServiceInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	c, err := e.cluster(in.Cluster)
	if err != nil {
		return nil, err
	}
	name := aws.ToString(in.ServiceName)
	if !ecsNameRE.MatchString(name) {
		return nil, clientErr("InvalidParameterException", "Service name must be 1-255 letters, numbers, hyphens and underscores.")
	}
	token := aws.ToString(in.ClientToken)
	if len(token) > 36 || strings.IndexFunc(token, func(r rune) bool { return r < 33 || r > 126 }) >= 0 {
		return nil, clientErr("InvalidParameterException", "clientToken must be at most 36 ASCII characters in the range 33-126.")
	}

	// Idempotency: the same request (clientToken included) returns the
	// service it created; anything else that collides is refused.
	hash := encodeJSON(&in, true)
	if token != "" {
		for _, s := range c.services {
			if s.status() != ecsStatusInactive && s.clientToken == token {
				if !bytes.Equal(s.createHash, hash) {
					return nil, errNotIdempotent()
				}
				return &ecs.CreateServiceOutput{Service: e.serviceView(s, true)}, nil
			}
		}
	}
	if s := c.liveService(name); s != nil {
		if s.status() == ecsStatusDraining {
			return nil, clientErr("InvalidParameterException", "Unable to Start a service that is still Draining.")
		}
		if !bytes.Equal(s.createHash, hash) {
			return nil, errNotIdempotent()
		}
		return &ecs.CreateServiceOutput{Service: e.serviceView(s, true)}, nil
	}

	td, apiErr := e.activeTaskDef(aws.ToString(in.TaskDefinition))
	if apiErr != nil {
		return nil, apiErr
	}
	launchType := in.LaunchType
	if launchType == "" && len(in.CapacityProviderStrategy) == 0 {
		launchType = ecstypes.LaunchTypeEc2
	}
	if launchType == ecstypes.LaunchTypeFargate && !slices.Contains(td.td.Compatibilities, ecstypes.CompatibilityFargate) {
		return nil, clientErr("InvalidParameterException", "Task definition does not support launch_type FARGATE.")
	}
	netConf, apiErr := validateNetwork(in.NetworkConfiguration, td)
	if apiErr != nil {
		return nil, apiErr
	}
	if apiErr := e.validateLoadBalancers(in.LoadBalancers, td); apiErr != nil {
		return nil, apiErr
	}
	if in.HealthCheckGracePeriodSeconds != nil && len(in.LoadBalancers) == 0 {
		return nil, clientErr("InvalidParameterException", "Health check grace period is only valid for services configured to use load balancers")
	}
	desired := aws.ToInt32(in.DesiredCount)
	if desired < 0 {
		return nil, clientErr("InvalidParameterException", "desiredCount must be non-negative.")
	}
	dc, apiErr := normalizeDeploymentConfig(in.DeploymentConfiguration)
	if apiErr != nil {
		return nil, apiErr
	}
	if apiErr := validateECSTags(in.Tags); apiErr != nil {
		return nil, apiErr
	}
	propagate := in.PropagateTags
	if propagate == "" {
		propagate = ecstypes.PropagateTagsNone
	}
	controller := in.DeploymentController
	if controller == nil {
		controller = &ecstypes.DeploymentController{Type: ecstypes.DeploymentControllerTypeEcs}
	}
	if controller.Type != ecstypes.DeploymentControllerTypeEcs {
		return nil, clientErr("InvalidParameterException", "Only the ECS deployment controller is supported by this emulator.")
	}
	clusterName := aws.ToString(c.cluster.ClusterName)
	svc := ecstypes.Service{
		ServiceArn:                    aws.String(e.arn("service/" + clusterName + "/" + name)),
		ServiceName:                   aws.String(name),
		ClusterArn:                    c.cluster.ClusterArn,
		Status:                        aws.String(ecsStatusActive),
		DesiredCount:                  desired,
		LaunchType:                    launchType,
		CapacityProviderStrategy:      in.CapacityProviderStrategy,
		TaskDefinition:                td.td.TaskDefinitionArn,
		DeploymentConfiguration:       dc,
		DeploymentController:          controller,
		LoadBalancers:                 nonNil(in.LoadBalancers),
		ServiceRegistries:             nonNil(in.ServiceRegistries),
		NetworkConfiguration:          netConf,
		HealthCheckGracePeriodSeconds: in.HealthCheckGracePeriodSeconds,
		PlacementConstraints:          nonNil(in.PlacementConstraints),
		PlacementStrategy:             nonNil(in.PlacementStrategy),
		SchedulingStrategy:            ecstypes.SchedulingStrategyReplica,
		PropagateTags:                 propagate,
		EnableECSManagedTags:          in.EnableECSManagedTags,
		EnableExecuteCommand:          in.EnableExecuteCommand,
		RoleArn:                       in.Role,
		CreatedAt:                     aws.Time(now),
		CreatedBy:                     aws.String(fmt.Sprintf("arn:aws:iam::%s:root", e.account)),
	}
	if launchType == ecstypes.LaunchTypeFargate {
		svc.PlatformVersion = aws.String("LATEST")
		if in.PlatformVersion != nil {
			svc.PlatformVersion = in.PlatformVersion
		}
		svc.PlatformFamily = aws.String("Linux")
	}
	s := &ecsService{
		svc:         svc,
		tags:        cloneECSTags(in.Tags),
		clientToken: token,
		createHash:  hash,
		lastStep:    now,
	}
	c.services = append(c.services, s)
	e.startDeploymentLocked(c, s, now)
	return &ecs.CreateServiceOutput{Service: e.serviceView(s, true)}, nil
}

// activeTaskDef resolves a task definition for a service.
func (e *ecsEmulator) activeTaskDef(ref string) (*ecsTaskDef, *apiError) {
	td := e.lookupTaskDef(ref)
	if td == nil {
		return nil, clientErr("InvalidParameterException", "TaskDefinition not found.")
	}
	if td.td.Status != ecstypes.TaskDefinitionStatusActive {
		return nil, clientErr("ClientException", "TaskDefinition is inactive")
	}
	return td, nil
}

// validateNetwork checks the network configuration against the task
// definition's network mode and fills ECS's defaults.
func validateNetwork(nc *ecstypes.NetworkConfiguration, td *ecsTaskDef) (*ecstypes.NetworkConfiguration, *apiError) {
	if td.td.NetworkMode != ecstypes.NetworkModeAwsvpc {
		if nc != nil {
			return nil, clientErr("InvalidParameterException", "Network Configuration is not valid for the given networkMode of this task definition.")
		}
		return nil, nil
	}
	if nc == nil || nc.AwsvpcConfiguration == nil {
		return nil, clientErr("InvalidParameterException", "Network Configuration must be provided when networkMode 'awsvpc' is specified.")
	}
	if len(nc.AwsvpcConfiguration.Subnets) == 0 {
		return nil, clientErr("InvalidParameterException", "subnets can not be empty.")
	}
	if len(nc.AwsvpcConfiguration.Subnets) > 16 || len(nc.AwsvpcConfiguration.SecurityGroups) > 5 {
		return nil, clientErr("InvalidParameterException", "An awsvpcConfiguration takes at most 16 subnets and 5 security groups.")
	}
	out := *nc
	vpc := *nc.AwsvpcConfiguration
	if vpc.AssignPublicIp == "" {
		vpc.AssignPublicIp = ecstypes.AssignPublicIpDisabled
	}
	vpc.SecurityGroups = nonNil(vpc.SecurityGroups)
	out.AwsvpcConfiguration = &vpc
	return &out, nil
}

// validateLoadBalancers checks load balancer bindings against the task
// definition and, through the ELBv2 emulator, the target groups.
func (e *ecsEmulator) validateLoadBalancers(lbs []ecstypes.LoadBalancer, td *ecsTaskDef) *apiError {
	if len(lbs) > 5 {
		return clientErr("InvalidParameterException", "A service can have at most 5 load balancers.")
	}
	for _, lb := range lbs {
		if lb.TargetGroupArn == nil && lb.LoadBalancerName == nil {
			return clientErr("InvalidParameterException", "Either targetGroupArn or loadBalancerName must be specified.")
		}
		cname := aws.ToString(lb.ContainerName)
		if cname == "" || lb.ContainerPort == nil {
			return clientErr("InvalidParameterException", "containerName and containerPort must be specified for a load balancer.")
		}
		var container *ecstypes.ContainerDefinition
		for i := range td.td.ContainerDefinitions {
			if aws.ToString(td.td.ContainerDefinitions[i].Name) == cname {
				container = &td.td.ContainerDefinitions[i]
			}
		}
		if container == nil {
			return clientErr("InvalidParameterException", "The container %s does not exist in the task definition.", cname)
		}
		hasPort := slices.ContainsFunc(container.PortMappings, func(pm ecstypes.PortMapping) bool {
			return aws.ToInt32(pm.ContainerPort) == *lb.ContainerPort
		})
		if !hasPort {
			return clientErr("InvalidParameterException", "The container %s did not have a container port %d defined.", cname, *lb.ContainerPort)
		}
		if lb.TargetGroupArn != nil && e.targetGroups != nil {
			if apiErr := e.targetGroups(*lb.TargetGroupArn, td.td.NetworkMode); apiErr != nil {
				return apiErr
			}
		}
	}
	return nil
}

// normalizeDeploymentConfig validates a deployment configuration and fills
// the defaults ECS reports back.
func normalizeDeploymentConfig(in *ecstypes.DeploymentConfiguration) (*ecstypes.DeploymentConfiguration, *apiError) {
	dc := ecstypes.DeploymentConfiguration{}
	if in != nil {
		dc = *in
	}
	if dc.MaximumPercent == nil {
		dc.MaximumPercent = aws.Int32(200)
	}
	if dc.MinimumHealthyPercent == nil {
		dc.MinimumHealthyPercent = aws.Int32(100)
	}
	if minPct := *dc.MinimumHealthyPercent; minPct < 0 || minPct > 100 {
		return nil, clientErr("InvalidParameterException", "minimumHealthyPercent must be between 0 and 100.")
	}
	if *dc.MaximumPercent < 100 {
		return nil, clientErr("InvalidParameterException", "maximumPercent must be at least 100.")
	}
	if dc.DeploymentCircuitBreaker == nil {
		dc.DeploymentCircuitBreaker = &ecstypes.DeploymentCircuitBreaker{}
	}
	if dc.Alarms == nil {
		dc.Alarms = &ecstypes.DeploymentAlarms{AlarmNames: []string{}}
	}
	if dc.Strategy == "" {
		dc.Strategy = ecstypes.DeploymentStrategyRolling
	}
	if dc.Strategy != ecstypes.DeploymentStrategyRolling {
		return nil, clientErr("InvalidParameterException", "Only the ROLLING deployment strategy is supported by this emulator.")
	}
	return &dc, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (e *ecsEmulator) updateService(body []byte, now time.Time) (any, *apiError) {
	var in ecs.UpdateServiceInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	c, err := e.cluster(in.Cluster)
	if err != nil {
		return nil, err
	}
	s := c.findService(aws.ToString(in.Service))
	if s == nil {
		return nil, errServiceNotFound()
	}
	if s.status() != ecsStatusActive {
		return nil, errServiceNotActive()
	}

	// Validate everything before changing anything.
	td, _ := e.activeTaskDef(aws.ToString(s.svc.TaskDefinition))
	newTD := false
	if in.TaskDefinition != nil {
		t, apiErr := e.activeTaskDef(*in.TaskDefinition)
		if apiErr != nil {
			return nil, apiErr
		}
		newTD = aws.ToString(t.td.TaskDefinitionArn) != aws.ToString(s.svc.TaskDefinition)
		td = t
	}
	if td == nil {
		// The running revision was deregistered and no new one was given.
		td = e.lookupTaskDef(aws.ToString(s.svc.TaskDefinition))
	}
	netConf := s.svc.NetworkConfiguration
	if in.NetworkConfiguration != nil || newTD {
		nc := in.NetworkConfiguration
		if nc == nil {
			nc = s.svc.NetworkConfiguration
		}
		var apiErr *apiError
		if netConf, apiErr = validateNetwork(nc, td); apiErr != nil {
			return nil, apiErr
		}
	}
	lbs := s.svc.LoadBalancers
	if in.LoadBalancers != nil {
		lbs = in.LoadBalancers
	}
	if in.LoadBalancers != nil || newTD {
		if apiErr := e.validateLoadBalancers(lbs, td); apiErr != nil {
			return nil, apiErr
		}
	}
	grace := s.svc.HealthCheckGracePeriodSeconds
	if in.HealthCheckGracePeriodSeconds != nil {
		grace = in.HealthCheckGracePeriodSeconds
	}
	if in.HealthCheckGracePeriodSeconds != nil && len(lbs) == 0 {
		return nil, clientErr("InvalidParameterException", "Health check grace period is only valid for services configured to use load balancers")
	}
	dc := s.svc.DeploymentConfiguration
	if in.DeploymentConfiguration != nil {
		var apiErr *apiError
		if dc, apiErr = normalizeDeploymentConfig(in.DeploymentConfiguration); apiErr != nil {
			return nil, apiErr
		}
	}
	if in.DesiredCount != nil && *in.DesiredCount < 0 {
		return nil, clientErr("InvalidParameterException", "desiredCount must be non-negative.")
	}

	redeploy := in.ForceNewDeployment || newTD ||
		!bytes.Equal(encodeJSON(netConf, true), encodeJSON(s.svc.NetworkConfiguration, true)) ||
		!bytes.Equal(encodeJSON(lbs, true), encodeJSON(s.svc.LoadBalancers, true)) ||
		(in.PlatformVersion != nil && aws.ToString(in.PlatformVersion) != aws.ToString(s.svc.PlatformVersion))

	s.svc.TaskDefinition = td.td.TaskDefinitionArn
	s.svc.NetworkConfiguration = netConf
	s.svc.LoadBalancers = nonNil(lbs)
	s.svc.HealthCheckGracePeriodSeconds = grace
	s.svc.DeploymentConfiguration = dc
	if in.PlatformVersion != nil {
		s.svc.PlatformVersion = in.PlatformVersion
	}
	if in.PropagateTags != "" {
		s.svc.PropagateTags = in.PropagateTags
	}
	if in.EnableECSManagedTags != nil {
		s.svc.EnableECSManagedTags = *in.EnableECSManagedTags
	}
	if in.EnableExecuteCommand != nil {
		s.svc.EnableExecuteCommand = *in.EnableExecuteCommand
	}
	if in.DesiredCount != nil && *in.DesiredCount != s.svc.DesiredCount {
		s.svc.DesiredCount = *in.DesiredCount
		s.deployments[0].d.DesiredCount = *in.DesiredCount
		s.deployments[0].d.UpdatedAt = aws.Time(now)
		s.steady = false
	}
	if redeploy {
		e.startDeploymentLocked(c, s, now)
	}
	return &ecs.UpdateServiceOutput{Service: e.serviceView(s, false)}, nil
}

func (e *ecsEmulator) deleteService(body []byte, now time.Time) (any, *apiError) {
	var in ecs.DeleteServiceInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	c, err := e.cluster(in.Cluster)
	if err != nil {
		return nil, err
	}
	s := c.findService(aws.ToString(in.Service))
	if s == nil || s.status() == ecsStatusInactive {
		return nil, errServiceNotFound()
	}
	if s.status() == ecsStatusActive {
		if s.svc.DesiredCount > 0 && !aws.ToBool(in.Force) {
			return nil, clientErr("InvalidParameterException", "The service cannot be stopped while it is scaled above 0.")
		}
		s.svc.Status = aws.String(ecsStatusDraining)
		s.svc.DesiredCount = 0
		for _, d := range s.deployments {
			d.d.DesiredCount = 0
			d.d.UpdatedAt = aws.Time(now)
		}
		s.steady = false
	}
	return &ecs.DeleteServiceOutput{Service: e.serviceView(s, false)}, nil
}

func (e *ecsEmulator) describeServices(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.DescribeServicesInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	c, err := e.cluster(in.Cluster)
	if err != nil {
		return nil, err
	}
	switch {
	case len(in.Services) == 0:
		return nil, clientErr("InvalidParameterException", "Services cannot be empty.")
	case len(in.Services) > 10:
		return nil, clientErr("InvalidParameterException", "The services parameter accepts at most 10 services per call.")
	}
	withTags := includes(in.Include, string(ecstypes.ServiceFieldTags))
	out := &ecs.DescribeServicesOutput{Services: []ecstypes.Service{}, Failures: []ecstypes.Failure{}}
	for _, ref := range in.Services {
		if s := c.findService(ref); s != nil {
			out.Services = append(out.Services, *e.serviceView(s, withTags))
			continue
		}
		arn := ref
		if !strings.HasPrefix(ref, "arn:") {
			arn = e.arn("service/" + aws.ToString(c.cluster.ClusterName) + "/" + ref)
		}
		out.Failures = append(out.Failures, ecstypes.Failure{Arn: aws.String(arn), Reason: aws.String("MISSING")})
	}
	return out, nil
}

func (e *ecsEmulator) listServices(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.ListServicesInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	c, err := e.cluster(in.Cluster)
	if err != nil {
		return nil, err
	}
	var arns []string
	for _, s := range c.services {
		if s.status() == ecsStatusInactive {
			continue
		}
		if in.LaunchType != "" && s.svc.LaunchType != in.LaunchType {
			continue
		}
		if in.SchedulingStrategy != "" && s.svc.SchedulingStrategy != in.SchedulingStrategy {
			continue
		}
		arns = append(arns, aws.ToString(s.svc.ServiceArn))
	}
	page, next, apiErr := paginate(arns, in.MaxResults, in.NextToken, 10, 100)
	if apiErr != nil {
		return nil, apiErr
	}
	return &ecs.ListServicesOutput{ServiceArns: page, NextToken: next}, nil
}

// serviceView renders a service as DescribeServices shows it.
func (e *ecsEmulator) serviceView(s *ecsService, withTags bool) *ecstypes.Service {
	v := s.svc
	v.Deployments = make([]ecstypes.Deployment, 0, len(s.deployments))
	for _, d := range s.deployments {
		dv := d.d
		dv.PendingCount = int32(len(d.pending))
		dv.RunningCount = int32(len(d.running))
		v.Deployments = append(v.Deployments, dv)
		v.PendingCount += dv.PendingCount
		v.RunningCount += dv.RunningCount
	}
	v.Events = slices.Clone(nonNil(s.events))
	if withTags {
		v.Tags = cloneECSTags(s.tags)
	}
	return &v
}
