package aws

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/servingapp/servingapp/controller/model"
)

// blockMessage is the body of the lockout rules' fixed response.
const blockMessage = "Forbidden: access to this app from your address is blocked."

func ruleTags(appTags map[string]string, kind string) map[string]string {
	t := maps.Clone(appTags)
	if t == nil {
		t = map[string]string{}
	}
	t[tagRuleKind] = kind
	return t
}

func allowlistValues(prefixes []netip.Prefix) []string {
	out := make([]string, 0, len(prefixes))
	for _, p := range prefixes {
		out = append(out, p.Masked().String())
	}
	return out
}

func splitKinds(rules []ruleState) (allow, block []ruleState) {
	for _, r := range rules {
		if r.kind() == kindBlock {
			block = append(block, r)
		} else {
			allow = append(allow, r)
		}
	}
	return allow, block
}

// blockedSources returns the addresses lockout rules hold, each once, in
// rule order (rules by priority, then sources in order).
func blockedSources(block []ruleState) []string {
	var out []string
	for _, r := range block {
		for _, s := range r.Sources {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// planAppRules plans the app's rules: allow rules carrying the allowlist to
// the target group, and block rules (owned by SetBlocked) kept but moved
// along when the route changes, at most maxBlock of them (a new route with
// more path patterns holds fewer addresses per rule: the ones that no
// longer fit are let go, and SetBlocked reports them at its next call).
func planAppRules(app *model.App, have []ruleState, target string, maxBlock int) (allow, block ruleChanges) {
	allowHave, blockHave := splitKinds(have)
	rt := route{Host: app.Host, Paths: app.PathPatterns, Target: target}
	allow = planRules(kindAllow, allowlistValues(app.Allowlist), allowHave, rt, ruleTags(app.Tags, kindAllow))
	blocked := blockedSources(blockHave)
	brt := route{Host: app.Host, Paths: app.PathPatterns}
	blocked = blocked[:min(len(blocked), maxBlock*brt.capacity())]
	block = planBlocks(blocked, blockHave, brt, ruleTags(app.Tags, kindBlock), maxBlock)
	return allow, block
}

// ensureRouting makes the app's target group and listener rules match. It
// holds the listener lock throughout: rule priorities are allocated from
// the snapshot, which only this section changes.
func (p *Platform) ensureRouting(ctx context.Context, app *model.App, n names, rec model.Recorder) (targetGroupState, error) {
	unlock, err := p.listener.lock(ctx)
	if err != nil {
		return targetGroupState{}, fmt.Errorf("read listener rules for %s: %w", app.Ref, err)
	}
	defer unlock()
	have := p.listener.appRules(p.cfg.ControllerID, app.Ref)
	tg, known := p.listener.targetGroup(n.TargetGroup)
	target := ""
	if known {
		target = tg.ARN
	}
	allow, block := planAppRules(app, have, target, p.cfg.BlockRulesPerApp)
	if err := p.checkQuotas(ctx, app.Ref, !known || !tg.Attached, len(allow.Create)+len(block.Create)); err != nil {
		return targetGroupState{}, err
	}
	tg, err = p.ensureTargetGroup(ctx, app, n, rec)
	if err != nil {
		return targetGroupState{}, err
	}
	allow, block = planAppRules(app, have, tg.ARN, p.cfg.BlockRulesPerApp)
	if err := p.applyRules(ctx, app.Ref, app.Host, []ruleChanges{block, allow}, rec); err != nil {
		return targetGroupState{}, err
	}
	tg.Attached = true
	return tg, nil
}

// applyRules carries out plans for one app's rules on host: new priorities
// first (one SetRulePriorities call when the order forces a relayout), then
// creates, then modifies, then deletes, so that an address that stays
// allowed is allowed at every step. The caller holds the listener lock.
func (p *Platform) applyRules(ctx context.Context, app model.Ref, host string, plans []ruleChanges, rec model.Recorder) error {
	var final, creates, modifies, deletes []ruleState
	for _, c := range plans {
		final = append(final, c.Keep...)
		final = append(final, c.Modify...)
		creates = append(creates, c.Create...)
		modifies = append(modifies, c.Modify...)
		deletes = append(deletes, c.Delete...)
	}
	if len(creates)+len(modifies)+len(deletes) == 0 && p.rulesOrdered(app, host, final) {
		return nil
	}
	prios, moves, err := p.placeRules(app, host, final, creates, deletes)
	if err != nil {
		return model.Terminal(reasonQuotaExceeded, fmt.Errorf("listener rule priorities for %s: %w (range %d–%d)", app, err, p.cfg.PriorityMin, p.cfg.PriorityMax))
	}
	var touched []string
	for arn := range moves {
		touched = append(touched, arn)
	}
	for _, r := range modifies {
		touched = append(touched, r.ARN)
	}
	for _, r := range deletes {
		touched = append(touched, r.ARN)
	}
	slices.Sort(touched)
	if len(touched) > 0 {
		if err := p.listener.verifyOwned(ctx, p.cfg.ControllerID, touched); err != nil {
			return fmt.Errorf("change listener rules of %s: %w", app, err)
		}
	}
	if len(moves) > 0 {
		if err := p.setPriorities(ctx, app, moves); err != nil {
			return err
		}
	}
	for i, r := range creates {
		r.Priority = prios[i]
		if err := p.createRule(ctx, app, r); err != nil {
			return err
		}
	}
	for _, r := range modifies {
		if err := p.modifyRule(ctx, app, r); err != nil {
			return err
		}
	}
	for _, r := range deletes {
		if err := p.deleteRule(ctx, app, r.ARN); err != nil {
			return err
		}
	}
	if len(creates)+len(modifies)+len(deletes)+len(moves) > 0 {
		rec.Event(ctx, "ListenerRulesChanged", fmt.Sprintf("listener rules for %s: %d created, %d modified, %d deleted, %d reprioritized",
			host, len(creates), len(modifies), len(deletes), len(moves)))
	}
	return nil
}

// rulesOrdered reports whether the app's rules are already ordered right
// among the rules of ours on host (nothing to move).
func (p *Platform) rulesOrdered(app model.Ref, host string, final []ruleState) bool {
	_, moves, err := p.placeRules(app, host, final, nil, nil)
	return err == nil && len(moves) == 0
}

// placeRules allocates priorities for creates and says which existing rules
// of ours on host must move: final are the app's rules that stay (with
// their planned content), deletes those about to go (their priorities stay
// taken until then).
func (p *Platform) placeRules(app model.Ref, host string, final, creates, deletes []ruleState) ([]int32, map[string]int32, error) {
	host = strings.ToLower(host)
	p.listener.mu.Lock()
	var all []ruleState
	if s := p.listener.snap; s != nil {
		for _, r := range s.rules {
			all = append(all, r.clone())
		}
	}
	p.listener.mu.Unlock()

	mine := map[string]bool{}
	for _, r := range final {
		mine[r.ARN] = true
	}
	for _, r := range deletes {
		mine[r.ARN] = false
	}
	var set []placement
	var arns []string
	var used []int32
	for _, r := range all {
		isApp := r.ours(p.cfg.ControllerID) && r.Tags[model.TagApp] == app.String()
		switch {
		case isApp && mine[r.ARN]:
			continue // placed below with its planned content
		case !isApp && r.ours(p.cfg.ControllerID) && r.Host == host && !r.Unusual:
			set = append(set, placement{Key: keyOf(r, r.Tags[model.TagApp]), Priority: r.Priority})
			arns = append(arns, r.ARN)
		default:
			used = append(used, r.Priority)
		}
	}
	for _, r := range final {
		set = append(set, placement{Key: keyOf(r, app.String()), Priority: r.Priority})
		arns = append(arns, r.ARN)
	}
	first := len(set)
	for _, r := range creates {
		set = append(set, placement{Key: keyOf(r, app.String())})
	}
	slices.Sort(used)
	used = slices.Compact(used)
	prios, err := allocatePriorities(p.cfg.PriorityMin, p.cfg.PriorityMax, used, set)
	if err != nil {
		return nil, nil, err
	}
	moves := map[string]int32{}
	for i := range first {
		if prios[i] != set[i].Priority {
			moves[arns[i]] = prios[i]
		}
	}
	return prios[first:], moves, nil
}

func keyOf(r ruleState, app string) orderKey {
	return orderKey{Host: r.Host, Path: routePrefix(r.Paths), App: app, Kind: r.kind()}
}

func (p *Platform) setPriorities(ctx context.Context, app model.Ref, moves map[string]int32) error {
	in := &elb.SetRulePrioritiesInput{}
	for _, arn := range slices.Sorted(maps.Keys(moves)) {
		in.RulePriorities = append(in.RulePriorities, elbtypes.RulePriorityPair{RuleArn: awssdk.String(arn), Priority: awssdk.Int32(moves[arn])})
	}
	if _, err := p.c.elb.SetRulePriorities(ctx, in); err != nil {
		p.listener.invalidate()
		return classify(fmt.Sprintf("reorder %d listener rules for %s", len(moves), app), err)
	}
	for arn, prio := range moves {
		p.listener.setPriority(arn, prio)
	}
	return nil
}

func ruleConditions(r ruleState) []elbtypes.RuleCondition {
	return []elbtypes.RuleCondition{
		{Field: awssdk.String("host-header"), HostHeaderConfig: &elbtypes.HostHeaderConditionConfig{Values: []string{r.Host}}},
		{Field: awssdk.String("path-pattern"), PathPatternConfig: &elbtypes.PathPatternConditionConfig{Values: slices.Clone(r.Paths)}},
		{Field: awssdk.String("source-ip"), SourceIpConfig: &elbtypes.SourceIpConditionConfig{Values: slices.Clone(r.Sources)}},
	}
}

func ruleActions(r ruleState) []elbtypes.Action {
	if r.Fixed != "" {
		return []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{
			StatusCode: awssdk.String(r.Fixed), ContentType: awssdk.String("text/plain"), MessageBody: awssdk.String(blockMessage),
		}}}
	}
	return []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: awssdk.String(r.Target)}}
}

func (p *Platform) createRule(ctx context.Context, app model.Ref, r ruleState) error {
	out, err := p.c.elb.CreateRule(ctx, &elb.CreateRuleInput{
		ListenerArn: awssdk.String(p.cfg.ListenerARN),
		Priority:    awssdk.Int32(r.Priority),
		Conditions:  ruleConditions(r),
		Actions:     ruleActions(r),
		Tags:        elbTags(r.Tags),
	})
	if err != nil {
		switch {
		case isCode(err, "PriorityInUse"):
			// CreateRule has no client token: after a lost answer the
			// SDK's retry finds the priority taken by the rule the first
			// attempt made. That one is adopted; any other rule not known
			// to the snapshot means reading everything again.
			made, ok, aerr := p.findCreatedRule(ctx, r)
			if aerr != nil {
				p.listener.invalidate()
				return fmt.Errorf("create listener rule for %s at priority %d: %w (then: %w)", app, r.Priority, err, aerr)
			}
			if ok {
				p.listener.putRule(made)
				return nil
			}
			p.listener.invalidate()
			return fmt.Errorf("create listener rule for %s at priority %d: %w", app, r.Priority, err)
		case isCode(err, "TooManyRules", "TooManyUniqueTargetGroupsPerLoadBalancer"):
			p.listener.forgetQuotas()
		}
		return classify(fmt.Sprintf("create listener rule for %s at priority %d", app, r.Priority), err)
	}
	if len(out.Rules) != 1 {
		return fmt.Errorf("create listener rule for %s: got %d rules", app, len(out.Rules))
	}
	r.ARN = awssdk.ToString(out.Rules[0].RuleArn)
	p.listener.putRule(r)
	return nil
}

// findCreatedRule looks for the rule at want's priority and reports it
// when it is exactly want: tagged as want (so ours, the app's, the same
// kind), with its conditions and action. Such a rule can only be the one an
// earlier attempt of the same CreateRule made.
func (p *Platform) findCreatedRule(ctx context.Context, want ruleState) (ruleState, bool, error) {
	rules, err := p.listener.describeRules(ctx, p.cfg.ListenerARN)
	if err != nil {
		return ruleState{}, false, err
	}
	for _, raw := range rules {
		got := parseRule(raw)
		if awssdk.ToBool(raw.IsDefault) || got.Priority != want.Priority {
			continue
		}
		tags, err := p.listener.readTags(ctx, []string{got.ARN})
		if err != nil {
			return ruleState{}, false, err
		}
		got.Tags, got.tagsAt = tags[got.ARN].tags, tags[got.ARN].at
		w := want.clone()
		w.Host = strings.ToLower(w.Host) // as parseRule reads it
		if !got.ours(p.cfg.ControllerID) || !tagsCover(got.Tags, w.Tags) || changesConditions(*got, w) {
			return ruleState{}, false, nil
		}
		return *got, true, nil
	}
	return ruleState{}, false, nil
}

func (p *Platform) modifyRule(ctx context.Context, app model.Ref, r ruleState) error {
	p.listener.mu.Lock()
	var old ruleState
	if s := p.listener.snap; s != nil {
		for _, o := range s.rules {
			if o.ARN == r.ARN {
				old = o.clone()
			}
		}
	}
	p.listener.mu.Unlock()
	if old.ARN == "" || changesConditions(old, r) {
		_, err := p.c.elb.ModifyRule(ctx, &elb.ModifyRuleInput{
			RuleArn:    awssdk.String(r.ARN),
			Conditions: ruleConditions(r),
			Actions:    ruleActions(r),
		})
		if err != nil {
			p.listener.invalidate()
			return classify("modify listener rule "+r.ARN+" of "+app.String(), err)
		}
	}
	if !tagsCover(old.Tags, r.Tags) {
		if _, err := p.c.elb.AddTags(ctx, &elb.AddTagsInput{ResourceArns: []string{r.ARN}, Tags: elbTags(r.Tags)}); err != nil {
			return classify("tag listener rule "+r.ARN+" of "+app.String(), err)
		}
	}
	r.Unusual = false
	p.listener.putRule(r)
	return nil
}

func (p *Platform) deleteRule(ctx context.Context, app model.Ref, arn string) error {
	_, err := p.c.elb.DeleteRule(ctx, &elb.DeleteRuleInput{RuleArn: awssdk.String(arn)})
	if err != nil && !isCode(err, "RuleNotFound") {
		return classify("delete listener rule "+arn+" of "+app.String(), err)
	}
	p.listener.removeRule(arn)
	return nil
}

// deleteAppRules deletes every rule of ours for app (allow and block).
func (p *Platform) deleteAppRules(ctx context.Context, app model.Ref) ([]string, error) {
	unlock, err := p.listener.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rules := p.listener.appRules(p.cfg.ControllerID, app)
	if len(rules) == 0 {
		return nil, nil
	}
	arns := make([]string, len(rules))
	for i, r := range rules {
		arns[i] = r.ARN
	}
	if err := p.listener.verifyOwned(ctx, p.cfg.ControllerID, arns); err != nil {
		return nil, fmt.Errorf("delete listener rules of %s: %w", app, err)
	}
	for _, arn := range arns {
		if err := p.deleteRule(ctx, app, arn); err != nil {
			return nil, err
		}
	}
	return arns, nil
}

// untagELB removes our tags from listener rules and target groups.
func (p *Platform) untagELB(ctx context.Context, arns []string) error {
	for i := 0; i < len(arns); i += tagsPerDescribe {
		chunk := arns[i:min(i+tagsPerDescribe, len(arns))]
		if _, err := p.c.elb.RemoveTags(ctx, &elb.RemoveTagsInput{ResourceArns: chunk, TagKeys: ownershipTagKeys()}); err != nil {
			return classify("untag "+strings.Join(chunk, ", "), err)
		}
		for _, arn := range chunk {
			p.listener.mu.Lock()
			e := p.listener.tags[arn]
			tags := maps.Clone(e.tags)
			for _, k := range ownershipTagKeys() {
				delete(tags, k)
			}
			p.listener.tags[arn] = tagEntry{tags: tags, at: e.at}
			if s := p.listener.snap; s != nil {
				for _, r := range s.rules {
					if r.ARN == arn {
						r.Tags = maps.Clone(tags)
					}
				}
				for _, t := range s.targetGroups {
					if t.ARN == arn {
						t.Tags = maps.Clone(tags)
					}
				}
			}
			p.listener.mu.Unlock()
		}
	}
	return nil
}

// SetBlocked makes the app answer 403 to addrs (lockout): rules of ours on
// the app's host and path with the blocked addresses as source-ip, ordered
// before the app's allow rules (and after the rules of more specific paths
// on the same host). An empty addrs removes them. Addresses blocked before
// and after a change stay blocked at every step. It returns an error
// wrapping ErrNotFound when the app has no listener rules yet.
//
// Lockout rules are bounded (see blockBudget): at most
// Config.BlockRulesPerApp per app, never taking the last
// Config.BlockRuleReserve rules or priorities the allow rules of every app
// need. When addrs do not fit, the most recently blocked ones that do are
// blocked and the error is a *BlockBudgetError (wrapping ErrBlockBudget)
// naming how many are not; another call with the same addrs then makes no
// AWS call and returns the same error.
func (p *Platform) SetBlocked(ctx context.Context, app model.Ref, addrs []netip.Addr) error {
	unlock, err := p.listener.lock(ctx)
	if err != nil {
		return fmt.Errorf("block addresses for %s: %w", app, err)
	}
	defer unlock()
	allow, block := splitKinds(p.listener.appRules(p.cfg.ControllerID, app))
	want := hostPrefixes(addrs)
	if len(allow) == 0 {
		if len(want) == 0 && len(block) == 0 {
			return nil
		}
		return fmt.Errorf("block addresses for %s: %w: the app has no listener rules of controller %s yet", app, ErrNotFound, p.cfg.ControllerID)
	}
	rt := route{Host: allow[0].Host, Paths: allow[0].Paths}
	maxRules, why, err := p.blockBudget(ctx, len(block))
	if err != nil {
		return fmt.Errorf("block addresses for %s: %w", app, err)
	}
	inRules := map[string]int{}
	for i, s := range blockedSources(block) {
		inRules[s] = i
	}
	chosen := p.chooseBlocked(app, want, inRules, maxRules*rt.capacity())
	slices.Sort(chosen)
	tags := ruleTags(allow[0].Tags, kindBlock)
	plan := planBlocks(chosen, block, rt, tags, maxRules)
	if err := p.applyRules(ctx, app, rt.Host, []ruleChanges{plan, {Keep: allow}}, discardRecorder{}); err != nil {
		return fmt.Errorf("block %d address(es) for %s: %w", len(chosen), app, err)
	}
	if len(chosen) < len(want) {
		return &BlockBudgetError{App: app, Blocked: len(chosen), Unblocked: len(want) - len(chosen), Rules: maxRules, Limit: why}
	}
	return nil
}
