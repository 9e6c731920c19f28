package awsemu

import (
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// ---- actions ----

// actionTargetGroups lists the target groups an action list forwards to.
func actionTargetGroups(actions []elbtypes.Action) []string {
	var out []string
	for _, a := range actions {
		if a.TargetGroupArn != nil {
			out = append(out, *a.TargetGroupArn)
		}
		if a.ForwardConfig != nil {
			for _, t := range a.ForwardConfig.TargetGroups {
				if t.TargetGroupArn != nil && !slices.Contains(out, *t.TargetGroupArn) {
					out = append(out, *t.TargetGroupArn)
				}
			}
		}
	}
	return out
}

// normalizeActions validates actions for a listener or rule of load
// balancer lbArn and fills what AWS reports back: Order, and a forward
// action's TargetGroupArn and ForwardConfig forms.
func (e *elbEmulator) normalizeActions(actions []elbtypes.Action, lbArn string) ([]elbtypes.Action, *apiError) {
	if len(actions) == 0 {
		return nil, validationErr("At least one action must be specified")
	}
	if len(actions) > elbActionsPerRule {
		return nil, clientErr("TooManyActions", "You've reached the limit on the number of actions per rule")
	}
	out := make([]elbtypes.Action, len(actions))
	for i, a := range actions {
		if a.Order == nil {
			a.Order = aws.Int32(int32(i + 1))
		}
		switch a.Type {
		case elbtypes.ActionTypeEnumForward:
			fc := a.ForwardConfig
			switch {
			case fc == nil && a.TargetGroupArn == nil:
				return nil, validationErr("A target group ARN must be specified for a forward action")
			case fc == nil:
				a.ForwardConfig = &elbtypes.ForwardActionConfig{
					TargetGroups:                []elbtypes.TargetGroupTuple{{TargetGroupArn: a.TargetGroupArn, Weight: aws.Int32(1)}},
					TargetGroupStickinessConfig: &elbtypes.TargetGroupStickinessConfig{Enabled: aws.Bool(false)},
				}
			default:
				if len(fc.TargetGroups) == 0 {
					return nil, validationErr("A forward action must have at least one target group")
				}
				c := *fc
				c.TargetGroups = slices.Clone(fc.TargetGroups)
				for j := range c.TargetGroups {
					if c.TargetGroups[j].Weight == nil {
						c.TargetGroups[j].Weight = aws.Int32(1)
					}
				}
				if c.TargetGroupStickinessConfig == nil {
					c.TargetGroupStickinessConfig = &elbtypes.TargetGroupStickinessConfig{Enabled: aws.Bool(false)}
				}
				if a.TargetGroupArn != nil && (len(c.TargetGroups) != 1 || aws.ToString(c.TargetGroups[0].TargetGroupArn) != *a.TargetGroupArn) {
					return nil, validationErr("You cannot specify both a target group ARN and a forward config with different target groups")
				}
				if len(c.TargetGroups) == 1 {
					a.TargetGroupArn = c.TargetGroups[0].TargetGroupArn
				}
				a.ForwardConfig = &c
			}
			if len(a.ForwardConfig.TargetGroups) > elbTargetGroupsPerAction {
				return nil, validationErr("A forward action can have at most %d target groups", elbTargetGroupsPerAction)
			}
			for _, tg := range actionTargetGroups([]elbtypes.Action{a}) {
				if _, ok := e.tgs[tg]; !ok {
					return nil, clientErr("TargetGroupNotFound", "One or more target groups not found")
				}
				if other := e.targetGroupLB(tg); other != "" && other != lbArn {
					return nil, clientErr("TargetGroupAssociationLimit", "The following target groups cannot be associated with more than one load balancer: %s", tg)
				}
			}
		case elbtypes.ActionTypeEnumFixedResponse:
			if a.FixedResponseConfig == nil || a.FixedResponseConfig.StatusCode == nil {
				return nil, validationErr("A fixed-response action must have a status code")
			}
		case elbtypes.ActionTypeEnumRedirect:
			if a.RedirectConfig == nil || a.RedirectConfig.StatusCode == "" {
				return nil, validationErr("A redirect action must have a status code")
			}
		case "":
			return nil, validationErr("An action type must be specified")
		default:
			return nil, validationErr("Action type '%s' is not supported by this emulator", a.Type)
		}
		out[i] = a
	}
	return out, nil
}

// checkTargetGroupQuota enforces the distinct target groups per load
// balancer once actions would be added to it.
func (e *elbEmulator) checkTargetGroupQuota(lbArn string, actions []elbtypes.Action, excludeRule ...string) *apiError {
	seen := map[string]bool{}
	for arn, r := range e.rules {
		if slices.Contains(excludeRule, arn) || aws.ToString(e.listeners[r.listener].l.LoadBalancerArn) != lbArn {
			continue
		}
		for _, tg := range actionTargetGroups(r.r.Actions) {
			seen[tg] = true
		}
	}
	for _, tg := range actionTargetGroups(actions) {
		seen[tg] = true
	}
	if len(seen) > e.limits.TargetGroupsPerLoadBalancer {
		return clientErr("TooManyUniqueTargetGroupsPerLoadBalancer", "You've reached the limit on the number of unique target groups per load balancer across all listeners (%d)", e.limits.TargetGroupsPerLoadBalancer)
	}
	return nil
}

// ---- conditions ----

// normalizeConditions validates rule conditions against the ALB limits and
// returns them as AWS reports them: host-header and path-pattern values both
// in Values and in their config, other fields in their config only.
func (e *elbEmulator) normalizeConditions(conds []elbtypes.RuleCondition) ([]elbtypes.RuleCondition, *apiError) {
	if len(conds) == 0 {
		return nil, validationErr("A rule must have at least one condition")
	}
	out := make([]elbtypes.RuleCondition, 0, len(conds))
	seen := map[string]bool{}
	values, wildcards := 0, 0
	for _, c := range conds {
		field := aws.ToString(c.Field)
		once := field != "http-header" && field != "query-string"
		if once && seen[field] {
			return nil, validationErr("A rule can only have one '%s' condition", field)
		}
		seen[field] = true
		n := elbtypes.RuleCondition{Field: aws.String(field)}
		switch field {
		case "host-header", "path-pattern":
			var cfgValues []string
			if field == "host-header" && c.HostHeaderConfig != nil {
				cfgValues = c.HostHeaderConfig.Values
			}
			if field == "path-pattern" && c.PathPatternConfig != nil {
				cfgValues = c.PathPatternConfig.Values
			}
			vals := cfgValues
			if len(c.Values) > 0 {
				if len(cfgValues) > 0 && !slices.Equal(cfgValues, c.Values) {
					return nil, validationErr("You cannot specify both 'Values' and '%s' with different values", configName(field))
				}
				vals = c.Values
			}
			if len(vals) == 0 {
				return nil, validationErr("A '%s' condition must have at least one value", field)
			}
			for _, v := range vals {
				if v == "" || len(v) > 128 {
					return nil, validationErr("Condition value '%s' must be between 1 and 128 characters", v)
				}
				wildcards += strings.Count(v, "*") + strings.Count(v, "?")
			}
			values += len(vals)
			n.Values = slices.Clone(vals)
			if field == "host-header" {
				n.HostHeaderConfig = &elbtypes.HostHeaderConditionConfig{Values: slices.Clone(vals)}
			} else {
				n.PathPatternConfig = &elbtypes.PathPatternConditionConfig{Values: slices.Clone(vals)}
			}
		case "source-ip":
			if c.SourceIpConfig == nil || len(c.SourceIpConfig.Values) == 0 {
				return nil, validationErr("A 'source-ip' condition must have a SourceIpConfig with at least one value")
			}
			for _, v := range c.SourceIpConfig.Values {
				if _, err := netip.ParsePrefix(v); err != nil {
					return nil, validationErr("The source IP '%s' is not a valid CIDR block", v)
				}
			}
			values += len(c.SourceIpConfig.Values)
			cfg := *c.SourceIpConfig
			cfg.Values = slices.Clone(c.SourceIpConfig.Values)
			n.SourceIpConfig = &cfg
		case "http-request-method":
			if c.HttpRequestMethodConfig == nil || len(c.HttpRequestMethodConfig.Values) == 0 {
				return nil, validationErr("An 'http-request-method' condition must have at least one value")
			}
			values += len(c.HttpRequestMethodConfig.Values)
			n.HttpRequestMethodConfig = c.HttpRequestMethodConfig
		case "http-header":
			if c.HttpHeaderConfig == nil || len(c.HttpHeaderConfig.Values) == 0 {
				return nil, validationErr("An 'http-header' condition must have at least one value")
			}
			values += len(c.HttpHeaderConfig.Values)
			n.HttpHeaderConfig = c.HttpHeaderConfig
		case "query-string":
			if c.QueryStringConfig == nil || len(c.QueryStringConfig.Values) == 0 {
				return nil, validationErr("A 'query-string' condition must have at least one value")
			}
			values += len(c.QueryStringConfig.Values)
			n.QueryStringConfig = c.QueryStringConfig
		default:
			return nil, validationErr("Condition field '%s' must be one of '[http-header, http-request-method, host-header, path-pattern, query-string, source-ip]'", field)
		}
		out = append(out, n)
	}
	if values > e.limits.ConditionValuesPerRule {
		return nil, validationErr("A rule can only have '%d' condition values", e.limits.ConditionValuesPerRule)
	}
	if wildcards > elbMaxWildcards {
		return nil, validationErr("A rule can only have '%d' wildcards", elbMaxWildcards)
	}
	return out, nil
}

func configName(field string) string {
	if field == "host-header" {
		return "HostHeaderConfig"
	}
	return "PathPatternConfig"
}

// ---- rules ----

func errRuleNotFound() *apiError { return clientErr("RuleNotFound", "One or more rules not found") }

func (e *elbEmulator) createRule(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.CreateRuleInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	listenerArn := aws.ToString(in.ListenerArn)
	l, ok := e.listeners[listenerArn]
	if !ok {
		return nil, clientErr("ListenerNotFound", "One or more listeners not found")
	}
	lbArn := aws.ToString(l.l.LoadBalancerArn)
	prio := int(aws.ToInt32(in.Priority))
	if in.Priority == nil || prio < 1 || prio > 50000 {
		return nil, validationErr("Priority must be between 1 and 50000")
	}
	conds, err := e.normalizeConditions(in.Conditions)
	if err != nil {
		return nil, err
	}
	actions, err := e.normalizeActions(in.Actions, lbArn)
	if err != nil {
		return nil, err
	}
	if err := validateELBTags(in.Tags); err != nil {
		return nil, err
	}
	for _, r := range e.rules {
		if r.listener == listenerArn && r.priority == prio {
			return nil, clientErr("PriorityInUse", "Priority '%d' is currently in use", prio)
		}
	}
	count := 0
	for _, r := range e.rules {
		if r.priority > 0 && aws.ToString(e.listeners[r.listener].l.LoadBalancerArn) == lbArn {
			count++
		}
	}
	if count >= e.limits.RulesPerLoadBalancer {
		return nil, clientErr("TooManyRules", "You've reached the limit on the number of rules per load balancer (%d)", e.limits.RulesPerLoadBalancer)
	}
	if err := e.checkTargetGroupQuota(lbArn, actions); err != nil {
		return nil, err
	}
	seq, id := e.newID()
	arn := strings.Replace(listenerArn, ":listener/", ":listener-rule/", 1) + "/" + id
	r := &elbRule{seq: seq, listener: listenerArn, priority: prio, r: elbtypes.Rule{
		RuleArn:    aws.String(arn),
		Priority:   aws.String(strconv.Itoa(prio)),
		IsDefault:  aws.Bool(false),
		Conditions: conds,
		Actions:    actions,
	}}
	e.rules[arn] = r
	e.tags[arn] = cloneELBTags(in.Tags)
	return &elb.CreateRuleOutput{Rules: []elbtypes.Rule{r.r}}, nil
}

func (e *elbEmulator) describeRules(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DescribeRulesInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	var out []*elbRule
	switch {
	case in.ListenerArn != nil && len(in.RuleArns) > 0:
		return nil, validationErr("Listener ARN and rule ARNs cannot be specified at the same time")
	case in.ListenerArn != nil:
		if _, ok := e.listeners[*in.ListenerArn]; !ok {
			return nil, clientErr("ListenerNotFound", "One or more listeners not found")
		}
		out = e.listenerRulesLocked(*in.ListenerArn)
	case len(in.RuleArns) > 0:
		for _, arn := range in.RuleArns {
			r, ok := e.rules[arn]
			if !ok {
				return nil, errRuleNotFound()
			}
			out = append(out, r)
		}
	default:
		return nil, validationErr("You must specify either listener ARN or rule ARNs")
	}
	page, next, err := pageMarker(out, in.PageSize, in.Marker)
	if err != nil {
		return nil, err
	}
	rules := make([]elbtypes.Rule, len(page))
	for i, r := range page {
		rules[i] = r.r
	}
	return &elb.DescribeRulesOutput{Rules: rules, NextMarker: next}, nil
}

// listenerRulesLocked returns a listener's rules by priority, the default
// rule last.
func (e *elbEmulator) listenerRulesLocked(listenerArn string) []*elbRule {
	var out []*elbRule
	for _, r := range e.rules {
		if r.listener == listenerArn {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *elbRule) int {
		pa, pb := a.priority, b.priority
		if pa == 0 {
			pa = 1 << 30
		}
		if pb == 0 {
			pb = 1 << 30
		}
		return pa - pb
	})
	return out
}

func (e *elbEmulator) modifyRule(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.ModifyRuleInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	arn := aws.ToString(in.RuleArn)
	r, ok := e.rules[arn]
	if !ok {
		return nil, errRuleNotFound()
	}
	lbArn := aws.ToString(e.listeners[r.listener].l.LoadBalancerArn)
	next := r.r
	if in.Conditions != nil {
		if r.priority == 0 {
			return nil, clientErr("OperationNotPermitted", "The conditions of a default rule cannot be modified")
		}
		conds, err := e.normalizeConditions(in.Conditions)
		if err != nil {
			return nil, err
		}
		next.Conditions = conds
	}
	if in.Actions != nil {
		actions, err := e.normalizeActions(in.Actions, lbArn)
		if err != nil {
			return nil, err
		}
		if err := e.checkTargetGroupQuota(lbArn, actions, arn); err != nil {
			return nil, err
		}
		next.Actions = actions
	}
	r.r = next
	if r.priority == 0 {
		e.listeners[r.listener].l.DefaultActions = next.Actions
	}
	return &elb.ModifyRuleOutput{Rules: []elbtypes.Rule{r.r}}, nil
}

func (e *elbEmulator) setRulePriorities(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.SetRulePrioritiesInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	if len(in.RulePriorities) == 0 {
		return nil, validationErr("Rule priorities must not be empty")
	}
	next := map[string]int{}
	for _, p := range in.RulePriorities {
		arn := aws.ToString(p.RuleArn)
		r, ok := e.rules[arn]
		if !ok {
			return nil, errRuleNotFound()
		}
		if r.priority == 0 {
			return nil, clientErr("OperationNotPermitted", "The default rule priority cannot be changed")
		}
		prio := int(aws.ToInt32(p.Priority))
		if p.Priority == nil || prio < 1 || prio > 50000 {
			return nil, validationErr("Priority must be between 1 and 50000")
		}
		next[arn] = prio
	}
	// The new priorities must not collide with each other or with the rules
	// left unchanged.
	used := map[string]map[int]bool{}
	for arn, r := range e.rules {
		if r.priority == 0 {
			continue
		}
		prio := r.priority
		if p, ok := next[arn]; ok {
			prio = p
		}
		if used[r.listener] == nil {
			used[r.listener] = map[int]bool{}
		}
		if used[r.listener][prio] {
			return nil, clientErr("PriorityInUse", "Priority '%d' is currently in use", prio)
		}
		used[r.listener][prio] = true
	}
	out := make([]elbtypes.Rule, 0, len(in.RulePriorities))
	for _, p := range in.RulePriorities {
		r := e.rules[aws.ToString(p.RuleArn)]
		r.priority = next[aws.ToString(p.RuleArn)]
		r.r.Priority = aws.String(strconv.Itoa(r.priority))
		out = append(out, r.r)
	}
	return &elb.SetRulePrioritiesOutput{Rules: out}, nil
}

func (e *elbEmulator) deleteRule(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DeleteRuleInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	arn := aws.ToString(in.RuleArn)
	r, ok := e.rules[arn]
	if !ok {
		return nil, errRuleNotFound()
	}
	if r.priority == 0 {
		return nil, clientErr("OperationNotPermitted", "The default rule cannot be deleted")
	}
	delete(e.rules, arn)
	delete(e.tags, arn)
	return &elb.DeleteRuleOutput{}, nil
}

// ---- tags ----

func validateELBTags(tags []elbtypes.Tag) *apiError {
	if len(tags) > elbMaxTags {
		return clientErr("TooManyTags", "You've reached the limit on the number of tags for this resource")
	}
	seen := map[string]bool{}
	for _, t := range tags {
		k := aws.ToString(t.Key)
		switch {
		case k == "" || len(k) > 128:
			return validationErr("Tag keys must be between 1 and 128 characters")
		case len(aws.ToString(t.Value)) > 256:
			return validationErr("Tag values must be at most 256 characters")
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return validationErr("Tag keys starting with 'aws:' are reserved")
		case seen[k]:
			return clientErr("DuplicateTagKeys", "Tag key '%s' is duplicated", k)
		}
		seen[k] = true
	}
	return nil
}

func cloneELBTags(tags []elbtypes.Tag) []elbtypes.Tag {
	out := make([]elbtypes.Tag, 0, len(tags))
	for _, t := range tags {
		out = append(out, elbtypes.Tag{Key: aws.String(aws.ToString(t.Key)), Value: t.Value})
	}
	return out
}

// taggedResource checks that an ARN names an existing resource and returns
// the resource kind's not-found error otherwise.
func (e *elbEmulator) taggedResource(arn string) *apiError {
	var exists bool
	var code, what string
	switch {
	case strings.Contains(arn, ":loadbalancer/"):
		_, exists = e.lbs[arn]
		code, what = "LoadBalancerNotFound", "load balancers"
	case strings.Contains(arn, ":listener/"):
		_, exists = e.listeners[arn]
		code, what = "ListenerNotFound", "listeners"
	case strings.Contains(arn, ":listener-rule/"):
		_, exists = e.rules[arn]
		code, what = "RuleNotFound", "rules"
	case strings.Contains(arn, ":targetgroup/"):
		_, exists = e.tgs[arn]
		code, what = "TargetGroupNotFound", "target groups"
	default:
		return validationErr("'%s' is not a valid taggable resource ARN", arn)
	}
	if !exists {
		return clientErr(code, "One or more %s not found", what)
	}
	return nil
}

func (e *elbEmulator) checkTagArns(arns []string) *apiError {
	if len(arns) == 0 {
		return validationErr("Resource ARNs must not be empty")
	}
	if len(arns) > elbTagsArnsPerCall {
		return validationErr("A maximum of %d resource ARNs can be specified", elbTagsArnsPerCall)
	}
	for _, arn := range arns {
		if err := e.taggedResource(arn); err != nil {
			return err
		}
	}
	return nil
}

func (e *elbEmulator) addTags(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.AddTagsInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	if err := e.checkTagArns(in.ResourceArns); err != nil {
		return nil, err
	}
	if len(in.Tags) == 0 {
		return nil, validationErr("Tags must not be empty")
	}
	if err := validateELBTags(in.Tags); err != nil {
		return nil, err
	}
	merged := map[string][]elbtypes.Tag{}
	for _, arn := range in.ResourceArns {
		tags := cloneELBTags(e.tags[arn])
		for _, t := range in.Tags {
			i := slices.IndexFunc(tags, func(x elbtypes.Tag) bool { return aws.ToString(x.Key) == aws.ToString(t.Key) })
			if i >= 0 {
				tags[i].Value = t.Value
			} else {
				tags = append(tags, elbtypes.Tag{Key: t.Key, Value: t.Value})
			}
		}
		if len(tags) > elbMaxTags {
			return nil, clientErr("TooManyTags", "You've reached the limit on the number of tags for %s", arn)
		}
		merged[arn] = tags
	}
	for arn, tags := range merged {
		e.tags[arn] = tags
	}
	return &elb.AddTagsOutput{}, nil
}

func (e *elbEmulator) removeTags(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.RemoveTagsInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	if err := e.checkTagArns(in.ResourceArns); err != nil {
		return nil, err
	}
	for _, arn := range in.ResourceArns {
		e.tags[arn] = slices.DeleteFunc(cloneELBTags(e.tags[arn]), func(t elbtypes.Tag) bool {
			return slices.Contains(in.TagKeys, aws.ToString(t.Key))
		})
	}
	return &elb.RemoveTagsOutput{}, nil
}

func (e *elbEmulator) describeTags(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DescribeTagsInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	if err := e.checkTagArns(in.ResourceArns); err != nil {
		return nil, err
	}
	out := &elb.DescribeTagsOutput{TagDescriptions: []elbtypes.TagDescription{}}
	for _, arn := range in.ResourceArns {
		out.TagDescriptions = append(out.TagDescriptions, elbtypes.TagDescription{
			ResourceArn: aws.String(arn),
			Tags:        cloneELBTags(e.tags[arn]),
		})
	}
	return out, nil
}

func (e *elbEmulator) describeAccountLimits(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DescribeAccountLimitsInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	limit := func(name string, n int) elbtypes.Limit {
		return elbtypes.Limit{Name: aws.String(name), Max: aws.String(strconv.Itoa(n))}
	}
	limits := []elbtypes.Limit{
		limit("application-load-balancers", elbLoadBalancers),
		limit("condition-values-per-alb-rule", e.limits.ConditionValuesPerRule),
		limit("condition-wildcards-per-alb-rule", elbMaxWildcards),
		limit("listeners-per-application-load-balancer", elbListenersPerLB),
		limit("rules-per-application-load-balancer", e.limits.RulesPerLoadBalancer),
		limit("target-groups", e.limits.TargetGroups),
		limit("target-groups-per-action-on-application-load-balancer", elbTargetGroupsPerAction),
		limit("target-groups-per-application-load-balancer", e.limits.TargetGroupsPerLoadBalancer),
	}
	page, next, err := pageMarker(limits, in.PageSize, in.Marker)
	if err != nil {
		return nil, err
	}
	return &elb.DescribeAccountLimitsOutput{Limits: page, NextMarker: next}, nil
}
