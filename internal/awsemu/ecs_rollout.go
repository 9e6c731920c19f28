package awsemu

import (
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// This file simulates ECS rolling deployments over simulated time. Each
// service advances in discrete steps of ECSOptions.RolloutStep:
//
//  1. tasks launched in the previous step start running, or fail if their
//     deployment is failing;
//  2. the primary deployment sheds tasks above its desired count, and older
//     deployments stop tasks as far as the minimum healthy percent allows;
//     emptied older deployments disappear;
//  3. the primary deployment launches tasks up to the maximum percent;
//  4. the deployment circuit breaker trips once enough tasks failed, and
//     rolls back to the last completed task definition if so configured;
//  5. a primary deployment that is alone and at its desired count becomes
//     COMPLETED, and the service reports a steady state.
//
// A DRAINING service turns INACTIVE once its last task stopped.

// syncLocked advances every service to now and expires INACTIVE services.
func (e *ecsEmulator) syncLocked(now time.Time) {
	for _, c := range e.clusters {
		kept := c.services[:0]
		for _, s := range c.services {
			e.advanceLocked(c, s, now)
			if s.status() == ecsStatusInactive && !now.Before(s.inactiveAt.Add(e.opts.InactiveRetention)) {
				continue
			}
			kept = append(kept, s)
		}
		clear(c.services[len(kept):])
		c.services = kept
	}
}

// advanceLocked runs the steps of one service due by now.
func (e *ecsEmulator) advanceLocked(c *ecsCluster, s *ecsService, now time.Time) {
	for e.needsStep(s) {
		next := s.lastStep.Add(e.opts.RolloutStep)
		if next.After(now) {
			return
		}
		s.lastStep = next
		e.stepLocked(c, s, next)
	}
	s.lastStep = now
}

// settleLocked runs every service to rest without moving time (for
// InstantRollout).
func (e *ecsEmulator) settleLocked(now time.Time) {
	for _, c := range e.clusters {
		for _, s := range c.services {
			for i := 0; i < 10000 && e.needsStep(s); i++ {
				e.stepLocked(c, s, now)
			}
			s.lastStep = now
		}
	}
}

// needsStep reports whether a step would change the service.
func (e *ecsEmulator) needsStep(s *ecsService) bool {
	switch s.status() {
	case ecsStatusInactive:
		return false
	case ecsStatusDraining:
		return true
	}
	if len(s.deployments) == 0 {
		return false
	}
	p := s.deployments[0]
	pending := false
	for _, d := range s.deployments {
		pending = pending || len(d.pending) > 0
	}
	if p.d.RolloutState == ecstypes.DeploymentRolloutStateFailed {
		return pending
	}
	return pending || len(s.deployments) > 1 || int32(len(p.running)) != p.d.DesiredCount ||
		p.d.RolloutState == ecstypes.DeploymentRolloutStateInProgress || !s.steady
}

// startDeploymentLocked makes a new PRIMARY deployment of the service's
// current configuration and launches its first tasks.
func (e *ecsEmulator) startDeploymentLocked(c *ecsCluster, s *ecsService, now time.Time) {
	id := fmt.Sprintf("ecs-svc/%019d", 1000000000000000000+e.nextID()*7919)
	tdArn := aws.ToString(s.svc.TaskDefinition)
	d := &ecsDeployment{d: ecstypes.Deployment{
		Id:                       aws.String(id),
		Status:                   aws.String(ecsStatusPrimary),
		TaskDefinition:           s.svc.TaskDefinition,
		DesiredCount:             s.svc.DesiredCount,
		CreatedAt:                aws.Time(now),
		UpdatedAt:                aws.Time(now),
		LaunchType:               s.svc.LaunchType,
		CapacityProviderStrategy: s.svc.CapacityProviderStrategy,
		NetworkConfiguration:     s.svc.NetworkConfiguration,
		RolloutState:             ecstypes.DeploymentRolloutStateInProgress,
		RolloutStateReason:       aws.String(fmt.Sprintf("ECS deployment %s in progress.", id)),
	}}
	if s.svc.LaunchType == ecstypes.LaunchTypeFargate {
		d.d.PlatformVersion = aws.String("1.4.0")
		d.d.PlatformFamily = aws.String("Linux")
	}
	if e.failer != nil {
		info := DeploymentInfo{
			Cluster:           aws.ToString(c.cluster.ClusterName),
			Service:           s.name(),
			DeploymentID:      id,
			TaskDefinitionArn: tdArn,
		}
		if td := e.lookupTaskDef(tdArn); td != nil {
			for _, cd := range td.td.ContainerDefinitions {
				info.Images = append(info.Images, aws.ToString(cd.Image))
			}
		}
		d.failing = e.failer(info)
	}
	for _, old := range s.deployments {
		if aws.ToString(old.d.Status) == ecsStatusPrimary {
			old.d.Status = aws.String(ecsStatusActive)
			old.d.UpdatedAt = aws.Time(now)
		}
	}
	s.deployments = append([]*ecsDeployment{d}, s.deployments...)
	s.steady = false
	e.launchLocked(s, now)
}

// stepLocked advances one service by one step, at simulated time t.
func (e *ecsEmulator) stepLocked(c *ecsCluster, s *ecsService, t time.Time) {
	name := s.name()

	// 1. Launched tasks run, or fail.
	var registered []string
	for _, d := range s.deployments {
		if len(d.pending) == 0 {
			continue
		}
		if d.failing {
			d.d.FailedTasks += int32(len(d.pending))
		} else {
			d.running = append(d.running, d.pending...)
			registered = append(registered, d.pending...)
		}
		d.pending = nil
		d.d.UpdatedAt = aws.Time(t)
	}
	if len(registered) > 0 {
		for _, lb := range s.svc.LoadBalancers {
			if lb.TargetGroupArn != nil {
				e.event(s, t, "(service %s) registered %d targets in (target-group %s)", name, len(registered), *lb.TargetGroupArn)
			}
		}
	}

	// 2. Scale down: the primary to its desired count, older deployments as
	// far as the minimum healthy percent allows.
	p := s.deployments[0]
	var stopped []string
	if excess := len(p.running) + len(p.pending) - int(p.d.DesiredCount); excess > 0 {
		n := min(excess, len(p.pending))
		p.pending = p.pending[:len(p.pending)-n]
		excess -= n
		stopped = append(stopped, p.running[len(p.running)-excess:]...)
		p.running = p.running[:len(p.running)-excess]
	}
	dc := s.svc.DeploymentConfiguration
	desired := int(s.svc.DesiredCount)
	minHealthy := ceilDiv(desired*int(aws.ToInt32(dc.MinimumHealthyPercent)), 100)
	total := 0
	for _, d := range s.deployments {
		total += len(d.running)
	}
	allow := total - minHealthy
	for i := len(s.deployments) - 1; i >= 1; i-- {
		d := s.deployments[i]
		d.pending = nil
		n := min(len(d.running), max(allow, 0))
		stopped = append(stopped, d.running[:n]...)
		d.running = d.running[n:]
		allow -= n
	}
	if len(stopped) > 0 {
		e.event(s, t, "(service %s) has stopped %d running tasks: %s.", name, len(stopped), taskList(stopped))
	}
	kept := s.deployments[:1]
	for _, d := range s.deployments[1:] {
		if len(d.running)+len(d.pending) > 0 {
			kept = append(kept, d)
		}
	}
	clear(s.deployments[len(kept):])
	s.deployments = kept

	// 3. Launch.
	e.launchLocked(s, t)

	// 4. Circuit breaker.
	cb := dc.DeploymentCircuitBreaker
	if p.failing && p.d.RolloutState == ecstypes.DeploymentRolloutStateInProgress && cb != nil && cb.Enable &&
		p.d.FailedTasks >= failureThreshold(p.d.DesiredCount) {
		p.d.RolloutState = ecstypes.DeploymentRolloutStateFailed
		p.d.RolloutStateReason = aws.String("ECS deployment circuit breaker: tasks failed to start.")
		p.d.UpdatedAt = aws.Time(t)
		p.pending = nil
		e.event(s, t, "(service %s) (deployment %s) deployment failed: tasks failed to start.", name, aws.ToString(p.d.Id))
		if cb.Rollback && s.lastGoodTD != "" {
			e.event(s, t, "(service %s) rolling back to deployment %s.", name, s.lastGoodID)
			s.svc.TaskDefinition = aws.String(s.lastGoodTD)
			e.startDeploymentLocked(c, s, t)
		}
	}

	// 5. Completion and steady state.
	p = s.deployments[0]
	if p.d.RolloutState == ecstypes.DeploymentRolloutStateInProgress && len(s.deployments) == 1 && !p.failing &&
		len(p.pending) == 0 && int32(len(p.running)) == p.d.DesiredCount {
		p.d.RolloutState = ecstypes.DeploymentRolloutStateCompleted
		p.d.RolloutStateReason = aws.String(fmt.Sprintf("ECS deployment %s completed.", aws.ToString(p.d.Id)))
		p.d.UpdatedAt = aws.Time(t)
		s.lastGoodTD = aws.ToString(p.d.TaskDefinition)
		s.lastGoodID = aws.ToString(p.d.Id)
		e.event(s, t, "(service %s) (deployment %s) deployment completed.", name, aws.ToString(p.d.Id))
	}
	if s.status() == ecsStatusActive && !s.steady && len(s.deployments) == 1 && len(p.pending) == 0 &&
		int32(len(p.running)) == s.svc.DesiredCount && p.d.RolloutState == ecstypes.DeploymentRolloutStateCompleted {
		s.steady = true
		e.event(s, t, "(service %s) has reached a steady state.", name)
	}

	if s.status() == ecsStatusDraining {
		left := 0
		for _, d := range s.deployments {
			left += len(d.running) + len(d.pending)
		}
		if left == 0 {
			s.svc.Status = aws.String(ecsStatusInactive)
			s.inactiveAt = t
		}
	}
}

// launchLocked starts tasks for the primary deployment up to its desired
// count, within the maximum percent.
func (e *ecsEmulator) launchLocked(s *ecsService, t time.Time) {
	if s.status() != ecsStatusActive {
		return
	}
	p := s.deployments[0]
	if p.d.RolloutState == ecstypes.DeploymentRolloutStateFailed {
		return
	}
	need := int(p.d.DesiredCount) - len(p.running) - len(p.pending)
	maxTotal := int(s.svc.DesiredCount) * int(aws.ToInt32(s.svc.DeploymentConfiguration.MaximumPercent)) / 100
	total := 0
	for _, d := range s.deployments {
		total += len(d.running) + len(d.pending)
	}
	n := min(need, maxTotal-total)
	if n <= 0 {
		return
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.taskID()
	}
	p.pending = append(p.pending, ids...)
	p.d.UpdatedAt = aws.Time(t)
	e.event(s, t, "(service %s) has started %d tasks: %s.", s.name(), n, taskList(ids))
}

// failureThreshold is the deployment circuit breaker's failed-task
// threshold: half the desired count, at least 3, at most 200.
func failureThreshold(desired int32) int32 {
	return min(max(int32(ceilDiv(int(desired), 2)), 3), 200)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// taskList renders task ids as ECS event messages do: "(task a) (task b)".
func taskList(ids []string) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = "(task " + id + ")"
	}
	return strings.Join(parts, " ")
}

// event prepends a service event, keeping the newest ecsMaxEvents.
func (e *ecsEmulator) event(s *ecsService, t time.Time, format string, args ...any) {
	ev := ecstypes.ServiceEvent{
		Id:        aws.String(e.eventID()),
		CreatedAt: aws.Time(t),
		Message:   aws.String(fmt.Sprintf(format, args...)),
	}
	s.events = append([]ecstypes.ServiceEvent{ev}, s.events...)
	if len(s.events) > ecsMaxEvents {
		s.events = s.events[:ecsMaxEvents]
	}
}
