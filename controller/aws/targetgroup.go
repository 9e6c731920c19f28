package aws

import (
	"context"
	"fmt"
	"maps"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/servingapp/servingapp/api/appenv"
	"github.com/servingapp/servingapp/controller/model"
)

// Target group settings of every app.
const (
	healthCheckPath     = "/healthz"
	deregistrationDelay = "30"
	attrDeregistration  = "deregistration_delay.timeout_seconds"
)

func elbTags(tags map[string]string) []elbtypes.Tag {
	out := make([]elbtypes.Tag, 0, len(tags))
	for _, k := range model.SortedKeys(tags) {
		out = append(out, elbtypes.Tag{Key: awssdk.String(k), Value: awssdk.String(tags[k])})
	}
	return out
}

// ensureTargetGroup makes the app's target group exist with our settings
// and tags, and returns it. The caller holds the listener lock.
func (p *Platform) ensureTargetGroup(ctx context.Context, app *model.App, n names, rec model.Recorder) (targetGroupState, error) {
	tg, ok := p.listener.targetGroup(n.TargetGroup)
	if !ok {
		created, err := p.createTargetGroup(ctx, app, n, rec)
		if err != nil {
			return targetGroupState{}, err
		}
		tg = created
	}
	if !tg.ours(p.cfg.ControllerID) {
		return targetGroupState{}, model.Terminal(reasonNameConflict, fmt.Errorf("target group %s exists but is not tagged %s=%s (retained from a deleted app, or made by hand): delete it or rename the app",
			n.TargetGroup, model.TagManagedBy, p.cfg.ControllerID))
	}
	if tg.Port != appenv.Port || tg.Protocol != string(elbtypes.ProtocolEnumHttp) || tg.TargetType != string(elbtypes.TargetTypeEnumIp) || tg.VPCID != p.cfg.VPCID {
		return targetGroupState{}, model.Terminal(reasonNameConflict, fmt.Errorf("target group %s of %s is %s:%d, target type %s, in %s; it must be HTTP:%d, ip, in %s: delete it so it is created again",
			tg.ARN, app.Ref, tg.Protocol, tg.Port, tg.TargetType, tg.VPCID, appenv.Port, p.cfg.VPCID))
	}
	if err := p.ensureTargetGroupAttributes(ctx, app, tg); err != nil {
		return targetGroupState{}, err
	}
	if !tagsCover(tg.Tags, app.Tags) {
		if _, err := p.c.elb.AddTags(ctx, &elb.AddTagsInput{ResourceArns: []string{tg.ARN}, Tags: elbTags(app.Tags)}); err != nil {
			return targetGroupState{}, classify("tag target group "+tg.ARN+" of "+app.Ref.String(), err)
		}
		tg.Tags = mergeTags(tg.Tags, app.Tags)
		p.listener.putTargetGroup(tg)
	}
	return tg, nil
}

func (p *Platform) createTargetGroup(ctx context.Context, app *model.App, n names, rec model.Recorder) (targetGroupState, error) {
	out, err := p.c.elb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
		Name:                awssdk.String(n.TargetGroup),
		Protocol:            elbtypes.ProtocolEnumHttp,
		Port:                awssdk.Int32(appenv.Port),
		VpcId:               awssdk.String(p.cfg.VPCID),
		TargetType:          elbtypes.TargetTypeEnumIp,
		HealthCheckProtocol: elbtypes.ProtocolEnumHttp,
		HealthCheckPath:     awssdk.String(healthCheckPath),
		Matcher:             &elbtypes.Matcher{HttpCode: awssdk.String("200")},
		Tags:                elbTags(app.Tags),
	})
	var tg *targetGroupState
	switch {
	case err == nil && len(out.TargetGroups) == 1:
		tg = parseTargetGroup(out.TargetGroups[0])
	case isCode(err, "DuplicateTargetGroupName"):
		found, ok, lerr := p.lookupTargetGroup(ctx, n.TargetGroup)
		if lerr != nil {
			return targetGroupState{}, lerr
		}
		if !ok {
			return targetGroupState{}, classify("create target group "+n.TargetGroup+" for "+app.Ref.String(), err)
		}
		p.listener.putTargetGroup(found)
		return found, nil
	case err != nil:
		if isCode(err, "TooManyTargetGroups") {
			p.listener.forgetQuotas()
		}
		return targetGroupState{}, classify("create target group "+n.TargetGroup+" for "+app.Ref.String(), err)
	default:
		return targetGroupState{}, fmt.Errorf("create target group %s for %s: got %d target groups", n.TargetGroup, app.Ref, len(out.TargetGroups))
	}
	// CreateTargetGroup answers an existing group of the same name and
	// settings as if it had created it; only its tags tell whose it is.
	tags, err := p.listener.readTags(ctx, []string{tg.ARN})
	if err != nil {
		return targetGroupState{}, err
	}
	tg.Tags, tg.tagsAt = tags[tg.ARN].tags, tags[tg.ARN].at
	p.listener.putTargetGroup(*tg)
	if !tg.ours(p.cfg.ControllerID) {
		return *tg, nil // a conflict the caller reports
	}
	// Fresh from CreateTargetGroup (or an identical one returned by it):
	// set the attributes without reading them first.
	if err := p.setTargetGroupAttributes(ctx, app, *tg); err != nil {
		return targetGroupState{}, err
	}
	rec.Event(ctx, "TargetGroupCreated", "target group "+tg.ARN+" created")
	return *tg, nil
}

// ensureTargetGroupAttributes sets the deregistration delay. It reads the
// attributes once per target group and process: after that the only
// writer of them is this platform.
func (p *Platform) ensureTargetGroupAttributes(ctx context.Context, app *model.App, tg targetGroupState) error {
	p.mu.Lock()
	done := p.tgChecked[tg.ARN]
	p.mu.Unlock()
	if done {
		return nil
	}
	out, err := p.c.elb.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: awssdk.String(tg.ARN)})
	if err != nil {
		return classify("read attributes of target group "+tg.ARN+" of "+app.Ref.String(), err)
	}
	current := ""
	for _, a := range out.Attributes {
		if awssdk.ToString(a.Key) == attrDeregistration {
			current = awssdk.ToString(a.Value)
		}
	}
	if current != deregistrationDelay {
		return p.setTargetGroupAttributes(ctx, app, tg)
	}
	p.mu.Lock()
	p.tgChecked[tg.ARN] = true
	p.mu.Unlock()
	return nil
}

func (p *Platform) setTargetGroupAttributes(ctx context.Context, app *model.App, tg targetGroupState) error {
	_, err := p.c.elb.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{
		TargetGroupArn: awssdk.String(tg.ARN),
		Attributes:     []elbtypes.TargetGroupAttribute{{Key: awssdk.String(attrDeregistration), Value: awssdk.String(deregistrationDelay)}},
	})
	if err != nil {
		return classify("set the deregistration delay of target group "+tg.ARN+" of "+app.Ref.String(), err)
	}
	p.mu.Lock()
	p.tgChecked[tg.ARN] = true
	p.mu.Unlock()
	return nil
}

// lookupTargetGroup finds a target group by name, attached or not, with
// its tags.
func (p *Platform) lookupTargetGroup(ctx context.Context, name string) (targetGroupState, bool, error) {
	out, err := p.c.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{name}})
	if isCode(err, "TargetGroupNotFound") {
		return targetGroupState{}, false, nil
	}
	if err != nil {
		return targetGroupState{}, false, classify("describe target group "+name, err)
	}
	if len(out.TargetGroups) != 1 {
		return targetGroupState{}, false, nil
	}
	tg := parseTargetGroup(out.TargetGroups[0])
	tags, err := p.listener.readTags(ctx, []string{tg.ARN})
	if err != nil {
		return targetGroupState{}, false, err
	}
	tg.Tags, tg.tagsAt = maps.Clone(tags[tg.ARN].tags), tags[tg.ARN].at
	return *tg, true, nil
}

// appTargetGroup returns the app's target group from the snapshot, or by
// name when it is not attached to the load balancer (then it is not in the
// snapshot).
func (p *Platform) appTargetGroup(ctx context.Context, n names) (targetGroupState, bool, error) {
	if tg, ok := p.listener.targetGroup(n.TargetGroup); ok {
		return tg, true, nil
	}
	return p.lookupTargetGroup(ctx, n.TargetGroup)
}

// deleteTargetGroup deletes a target group of ours after checking its tags
// afresh. The caller holds the listener lock.
func (p *Platform) deleteTargetGroup(ctx context.Context, tg targetGroupState) error {
	if err := p.listener.verifyOwned(ctx, p.cfg.ControllerID, []string{tg.ARN}); err != nil {
		return err
	}
	_, err := p.c.elb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: awssdk.String(tg.ARN)})
	if err != nil && !isCode(err, "TargetGroupNotFound") {
		if isCode(err, "ResourceInUse") {
			return fmt.Errorf("delete target group %s: a listener rule not of this controller still forwards to it: %w", tg.ARN, err)
		}
		return classify("delete target group "+tg.ARN, err)
	}
	p.listener.removeTargetGroup(tg.Name)
	p.mu.Lock()
	delete(p.tgChecked, tg.ARN)
	p.mu.Unlock()
	return nil
}

// checkQuotas fails with QuotaExceeded, before any call that would, when
// the load balancer cannot take newRules more rules or, with newTargetGroup,
// one more target group.
func (p *Platform) checkQuotas(ctx context.Context, app model.Ref, newTargetGroup bool, newRules int) error {
	if !newTargetGroup && newRules == 0 {
		return nil
	}
	q, err := p.listener.quotas(ctx)
	if err != nil {
		return err
	}
	p.listener.mu.Lock()
	rules, tgs := 0, 0
	if s := p.listener.snap; s != nil {
		rules, tgs = len(s.rules)+s.others, len(s.lbTargetGroups)
	}
	p.listener.mu.Unlock()
	if newRules > 0 && rules+newRules > q.rules {
		return model.Terminal(reasonQuotaExceeded, fmt.Errorf("listener rules for %s: the load balancer has %d of its %d rules and the app needs %d more; shorten the allowlist, remove apps or raise the quota",
			app, rules, q.rules, newRules))
	}
	if newTargetGroup && tgs+1 > q.targetGroups {
		return model.Terminal(reasonQuotaExceeded, fmt.Errorf("target group for %s: the load balancer already uses %d of its %d target groups; remove apps or raise the quota",
			app, tgs, q.targetGroups))
	}
	return nil
}
