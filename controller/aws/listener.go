package aws

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
)

// ELBv2 limits of the API itself, and the default quotas of an ALB.
const (
	defaultRuleQuota        = 100
	defaultTargetGroupQuota = 100

	tagsPerDescribe = 20  // DescribeTags, AddTags, RemoveTags ARNs per call
	rulesPageSize   = 400 // DescribeRules and DescribeTargetGroups page size
)

// Tags of our own beyond the model's ownership tags.
const (
	// tagRuleKind says what a listener rule of ours does: allow (forward the
	// allowlist to the app) or block (answer 403 to locked-out addresses).
	tagRuleKind = "servingapp.io/rule"
	// tagSpec on a service holds the hash of the task definition spec this
	// platform last deployed to it. When the service runs another spec
	// while the tag names the desired one, ECS rolled the deployment back
	// (circuit breaker): it is reported, not deployed again.
	tagSpec = "servingapp.io/spec"
)

// Kinds of listener rules.
const (
	kindAllow = "allow"
	kindBlock = "block"
)

// ruleState is one listener rule as read (or as this platform left it).
type ruleState struct {
	ARN      string
	Priority int32
	Host     string
	Paths    []string
	Sources  []string // canonical CIDRs
	Target   string   // forward action's target group
	Fixed    string   // fixed-response status code
	Unusual  bool     // conditions or actions this platform never makes
	Tags     map[string]string
	tagsAt   time.Time
}

func (r *ruleState) clone() ruleState {
	c := *r
	c.Paths = slices.Clone(r.Paths)
	c.Sources = slices.Clone(r.Sources)
	c.Tags = maps.Clone(r.Tags)
	return c
}

// ours reports whether the rule carries this controller's ownership tag.
func (r *ruleState) ours(controllerID string) bool { return r.Tags[model.TagManagedBy] == controllerID }

func (r *ruleState) kind() string {
	if k := r.Tags[tagRuleKind]; k != "" {
		return k
	}
	if r.Fixed != "" {
		return kindBlock
	}
	return kindAllow
}

// targetGroupState is one target group as read.
type targetGroupState struct {
	ARN        string
	Name       string
	Port       int32
	Protocol   string
	TargetType string
	VPCID      string
	HealthPath string
	Attached   bool // referenced by an action of the load balancer
	Tags       map[string]string
	tagsAt     time.Time
}

func (t *targetGroupState) ours(controllerID string) bool {
	return t.Tags[model.TagManagedBy] == controllerID
}

// listenerSnapshot is what the platform knows of the shared load balancer.
type listenerSnapshot struct {
	at     time.Time
	rules  []*ruleState // non-default rules of our listener
	others int          // non-default rules on the load balancer's other listeners
	// lbTargetGroups are the distinct target groups the load balancer's
	// actions reference (the quota counts them).
	lbTargetGroups map[string]bool
	targetGroups   map[string]*targetGroupState // by name
}

// quotas are the load balancer limits DescribeAccountLimits reports.
type quotas struct {
	rules, targetGroups int
	at                  time.Time
}

// listenerCache keeps a snapshot of the listener's rules, their tags and the
// load balancer's target groups, read in bulk (a few calls for every app at
// once) and updated in place by this platform's own changes. mutate
// serializes every change of rules and target groups (priorities are
// allocated from the snapshot) and every refresh, so a refresh never
// overwrites a change made while it read.
type listenerCache struct {
	c        clients
	clk      clock.Clock
	log      *slog.Logger
	listener string
	maxAge   time.Duration
	tagAge   time.Duration

	mutate sync.Mutex
	mu     sync.Mutex // guards snap and lbARN for readers that do not hold mutate
	snap   *listenerSnapshot
	lbARN  string
	limits quotas
	// tags outlive snapshots: a rule's tags are read again only after tagAge.
	tags map[string]tagEntry
}

type tagEntry struct {
	tags map[string]string
	at   time.Time
}

func newListenerCache(c clients, clk clock.Clock, log *slog.Logger, listener string, maxAge, tagAge time.Duration) *listenerCache {
	return &listenerCache{c: c, clk: clk, log: log, listener: listener, maxAge: maxAge, tagAge: tagAge, tags: map[string]tagEntry{}}
}

func (l *listenerCache) freshLocked() bool {
	return l.snap != nil && l.clk.Now().Sub(l.snap.at) < l.maxAge
}

// ensureFresh refreshes the snapshot when it is older than maxAge.
func (l *listenerCache) ensureFresh(ctx context.Context) error {
	l.mu.Lock()
	fresh := l.freshLocked()
	l.mu.Unlock()
	if fresh {
		return nil
	}
	l.mutate.Lock()
	defer l.mutate.Unlock()
	return l.refreshIfStale(ctx)
}

// lock starts a change: it holds mutate until the returned func is called
// and makes sure the snapshot is fresh.
func (l *listenerCache) lock(ctx context.Context) (func(), error) {
	l.mutate.Lock()
	if err := l.refreshIfStale(ctx); err != nil {
		l.mutate.Unlock()
		return nil, err
	}
	return l.mutate.Unlock, nil
}

// invalidate makes the next use read everything again (after an error that
// suggests the snapshot is wrong).
func (l *listenerCache) invalidate() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.snap != nil {
		l.snap.at = time.Time{}
	}
}

// refreshIfStale reads the load balancer again unless the snapshot is
// fresh. The caller holds mutate.
func (l *listenerCache) refreshIfStale(ctx context.Context) error {
	l.mu.Lock()
	fresh := l.freshLocked()
	l.mu.Unlock()
	if fresh {
		return nil
	}
	snap, err := l.read(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.snap = snap
	l.mu.Unlock()
	return nil
}

// read takes a new snapshot: the listener's load balancer (once), its
// listeners, every listener's rules, the tags of our listener's rules and
// the load balancer's target groups with their tags.
func (l *listenerCache) read(ctx context.Context) (*listenerSnapshot, error) {
	now := l.clk.Now()
	if l.lbARN == "" {
		out, err := l.c.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{ListenerArns: []string{l.listener}})
		if err != nil {
			return nil, classify("describe listener "+l.listener, err)
		}
		if len(out.Listeners) != 1 {
			return nil, fmt.Errorf("describe listener %s: got %d listeners", l.listener, len(out.Listeners))
		}
		l.mu.Lock()
		l.lbARN = awssdk.ToString(out.Listeners[0].LoadBalancerArn)
		l.mu.Unlock()
	}
	snap := &listenerSnapshot{at: now, lbTargetGroups: map[string]bool{}, targetGroups: map[string]*targetGroupState{}}
	var listeners []elbtypes.Listener
	pl := elb.NewDescribeListenersPaginator(l.c.elb, &elb.DescribeListenersInput{LoadBalancerArn: awssdk.String(l.lbARN)})
	for pl.HasMorePages() {
		page, err := pl.NextPage(ctx)
		if err != nil {
			return nil, classify("list listeners of "+l.lbARN, err)
		}
		listeners = append(listeners, page.Listeners...)
	}
	for _, ln := range listeners {
		arn := awssdk.ToString(ln.ListenerArn)
		for _, tg := range actionTargetGroups(ln.DefaultActions) {
			snap.lbTargetGroups[tg] = true
		}
		rules, err := l.describeRules(ctx, arn)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			for _, tg := range actionTargetGroups(r.Actions) {
				snap.lbTargetGroups[tg] = true
			}
			if awssdk.ToBool(r.IsDefault) {
				continue
			}
			if arn != l.listener {
				snap.others++
				continue
			}
			snap.rules = append(snap.rules, parseRule(r))
		}
	}
	arns := make([]string, len(snap.rules))
	for i, r := range snap.rules {
		arns[i] = r.ARN
	}
	tags, err := l.cachedTags(ctx, arns, now)
	if err != nil {
		return nil, err
	}
	for _, r := range snap.rules {
		r.Tags, r.tagsAt = tags[r.ARN].tags, tags[r.ARN].at
	}

	pt := elb.NewDescribeTargetGroupsPaginator(l.c.elb, &elb.DescribeTargetGroupsInput{LoadBalancerArn: awssdk.String(l.lbARN), PageSize: awssdk.Int32(rulesPageSize)})
	var ourTGs []*targetGroupState
	for pt.HasMorePages() {
		page, err := pt.NextPage(ctx)
		if err != nil {
			return nil, classify("list target groups of "+l.lbARN, err)
		}
		for _, tg := range page.TargetGroups {
			t := parseTargetGroup(tg)
			t.Attached = true
			// Only target groups named like ours can be ours; the tags of
			// the others are none of this controller's business.
			if strings.HasPrefix(t.Name, "sa-") {
				ourTGs = append(ourTGs, t)
			}
		}
	}
	arns = arns[:0]
	for _, t := range ourTGs {
		arns = append(arns, t.ARN)
	}
	tags, err = l.cachedTags(ctx, arns, now)
	if err != nil {
		return nil, err
	}
	for _, t := range ourTGs {
		t.Tags, t.tagsAt = tags[t.ARN].tags, tags[t.ARN].at
		snap.targetGroups[t.Name] = t
	}
	return snap, nil
}

func (l *listenerCache) describeRules(ctx context.Context, listener string) ([]elbtypes.Rule, error) {
	var rules []elbtypes.Rule
	var marker *string
	for {
		out, err := l.c.elb.DescribeRules(ctx, &elb.DescribeRulesInput{ListenerArn: awssdk.String(listener), Marker: marker, PageSize: awssdk.Int32(rulesPageSize)})
		if err != nil {
			return nil, classify("list rules of listener "+listener, err)
		}
		rules = append(rules, out.Rules...)
		if out.NextMarker == nil || *out.NextMarker == "" {
			return rules, nil
		}
		marker = out.NextMarker
	}
}

// cachedTags returns the tags of arns, reading those not read within tagAge.
func (l *listenerCache) cachedTags(ctx context.Context, arns []string, now time.Time) (map[string]tagEntry, error) {
	out := make(map[string]tagEntry, len(arns))
	var missing []string
	l.mu.Lock()
	for _, a := range arns {
		if e, ok := l.tags[a]; ok && now.Sub(e.at) < l.tagAge {
			out[a] = e
		} else {
			missing = append(missing, a)
		}
	}
	l.mu.Unlock()
	read, err := l.readTags(ctx, missing)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, read)
	return out, nil
}

// readTags reads the tags of arns now, 20 at a time, and remembers them.
func (l *listenerCache) readTags(ctx context.Context, arns []string) (map[string]tagEntry, error) {
	out := make(map[string]tagEntry, len(arns))
	for i := 0; i < len(arns); i += tagsPerDescribe {
		chunk := arns[i:min(i+tagsPerDescribe, len(arns))]
		resp, err := l.c.elb.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: chunk})
		if err != nil {
			if isCode(err, "RuleNotFound", "TargetGroupNotFound") {
				l.invalidate() // gone since the snapshot was taken
			}
			return nil, classify("read tags of listener rules and target groups", err)
		}
		now := l.clk.Now()
		for _, d := range resp.TagDescriptions {
			tags := make(map[string]string, len(d.Tags))
			for _, t := range d.Tags {
				tags[awssdk.ToString(t.Key)] = awssdk.ToString(t.Value)
			}
			out[awssdk.ToString(d.ResourceArn)] = tagEntry{tags: tags, at: now}
		}
	}
	l.mu.Lock()
	maps.Copy(l.tags, out)
	l.mu.Unlock()
	return out, nil
}

// verifyOwned reads the tags of arns afresh and fails unless every one is
// tagged as this controller's: the last check before a change or deletion.
func (l *listenerCache) verifyOwned(ctx context.Context, controllerID string, arns []string) error {
	tags, err := l.readTags(ctx, arns)
	if err != nil {
		return err
	}
	for _, a := range arns {
		if tags[a].tags[model.TagManagedBy] != controllerID {
			l.invalidate()
			return fmt.Errorf("%s is no longer tagged %s=%s: leaving it alone", a, model.TagManagedBy, controllerID)
		}
	}
	return nil
}

// quotas returns the load balancer's rule and target group limits, read at
// most hourly (and again after a quota error).
func (l *listenerCache) quotas(ctx context.Context) (quotas, error) {
	l.mu.Lock()
	q := l.limits
	l.mu.Unlock()
	if !q.at.IsZero() && l.clk.Now().Sub(q.at) < time.Hour {
		return q, nil
	}
	q = quotas{rules: defaultRuleQuota, targetGroups: defaultTargetGroupQuota, at: l.clk.Now()}
	p := elb.NewDescribeAccountLimitsPaginator(l.c.elb, &elb.DescribeAccountLimitsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if isCode(err, "AccessDenied", "AccessDeniedException") {
			// Without elasticloadbalancing:DescribeAccountLimits the AWS
			// defaults stand; a raised quota then shows only as AWS accepting
			// more than the check would.
			l.log.Warn("cannot read the load balancer quotas (elasticloadbalancing:DescribeAccountLimits denied); checking against the AWS defaults",
				"rules", defaultRuleQuota, "targetGroups", defaultTargetGroupQuota)
			break
		}
		if err != nil {
			return quotas{}, classify("read load balancer quotas", err)
		}
		for _, lim := range page.Limits {
			n, err := strconv.Atoi(awssdk.ToString(lim.Max))
			if err != nil {
				continue
			}
			switch awssdk.ToString(lim.Name) {
			case "rules-per-application-load-balancer":
				q.rules = n
			case "target-groups-per-application-load-balancer":
				q.targetGroups = n
			}
		}
	}
	l.mu.Lock()
	l.limits = q
	l.mu.Unlock()
	return q, nil
}

// forgetQuotas makes the next quotas call read them again.
func (l *listenerCache) forgetQuotas() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limits = quotas{}
}

// appRules returns copies of the rules tagged as app's, by priority.
func (l *listenerCache) appRules(controllerID string, ref model.Ref) []ruleState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.snap == nil {
		return nil
	}
	var out []ruleState
	for _, r := range l.snap.rules {
		if r.ours(controllerID) && r.Tags[model.TagApp] == ref.String() {
			out = append(out, r.clone())
		}
	}
	slices.SortFunc(out, func(a, b ruleState) int { return int(a.Priority) - int(b.Priority) })
	return out
}

// targetGroup returns a copy of the target group named name, if known.
func (l *listenerCache) targetGroup(name string) (targetGroupState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.snap == nil {
		return targetGroupState{}, false
	}
	t, ok := l.snap.targetGroups[name]
	if !ok {
		return targetGroupState{}, false
	}
	c := *t
	c.Tags = maps.Clone(t.Tags)
	return c, true
}

// ---- changes recorded in the snapshot (callers hold mutate) ----

func (l *listenerCache) putRule(r ruleState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tags[r.ARN] = tagEntry{tags: maps.Clone(r.Tags), at: l.clk.Now()}
	if l.snap == nil {
		return
	}
	if r.Target != "" {
		l.snap.lbTargetGroups[r.Target] = true
	}
	for i, old := range l.snap.rules {
		if old.ARN == r.ARN {
			c := r.clone()
			l.snap.rules[i] = &c
			return
		}
	}
	c := r.clone()
	l.snap.rules = append(l.snap.rules, &c)
}

func (l *listenerCache) setPriority(arn string, prio int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.snap == nil {
		return
	}
	for _, r := range l.snap.rules {
		if r.ARN == arn {
			r.Priority = prio
		}
	}
}

func (l *listenerCache) removeRule(arn string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.tags, arn)
	if l.snap == nil {
		return
	}
	l.snap.rules = slices.DeleteFunc(l.snap.rules, func(r *ruleState) bool { return r.ARN == arn })
	l.recountTargetGroupsLocked()
}

func (l *listenerCache) recountTargetGroupsLocked() {
	// A target group stays counted while any rule of ours or another
	// listener may still reference it; only our listener's rules are known
	// in detail, so drop only those no rule of ours references any more.
	for tg := range l.snap.lbTargetGroups {
		used := false
		for _, r := range l.snap.rules {
			if r.Target == tg {
				used = true
				break
			}
		}
		if t := l.findTargetGroupLocked(tg); t != nil && !used {
			delete(l.snap.lbTargetGroups, tg)
			t.Attached = false
		}
	}
}

func (l *listenerCache) findTargetGroupLocked(arn string) *targetGroupState {
	for _, t := range l.snap.targetGroups {
		if t.ARN == arn {
			return t
		}
	}
	return nil
}

func (l *listenerCache) putTargetGroup(t targetGroupState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tags[t.ARN] = tagEntry{tags: maps.Clone(t.Tags), at: l.clk.Now()}
	if l.snap == nil {
		return
	}
	c := t
	c.Tags = maps.Clone(t.Tags)
	l.snap.targetGroups[t.Name] = &c
}

func (l *listenerCache) removeTargetGroup(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.snap == nil {
		return
	}
	if t, ok := l.snap.targetGroups[name]; ok {
		delete(l.tags, t.ARN)
		delete(l.snap.lbTargetGroups, t.ARN)
	}
	delete(l.snap.targetGroups, name)
}

// ---- parsing ----

func parseRule(r elbtypes.Rule) *ruleState {
	rs := &ruleState{ARN: awssdk.ToString(r.RuleArn)}
	if p, err := strconv.Atoi(awssdk.ToString(r.Priority)); err == nil {
		rs.Priority = int32(p)
	}
	for _, c := range r.Conditions {
		switch awssdk.ToString(c.Field) {
		case "host-header":
			vals := c.Values
			if c.HostHeaderConfig != nil && len(c.HostHeaderConfig.Values) > 0 {
				vals = c.HostHeaderConfig.Values
			}
			if len(vals) != 1 {
				rs.Unusual = true
			}
			if len(vals) > 0 {
				rs.Host = strings.ToLower(vals[0])
			}
		case "path-pattern":
			vals := c.Values
			if c.PathPatternConfig != nil && len(c.PathPatternConfig.Values) > 0 {
				vals = c.PathPatternConfig.Values
			}
			rs.Paths = slices.Clone(vals)
		case "source-ip":
			if c.SourceIpConfig != nil {
				for _, v := range c.SourceIpConfig.Values {
					rs.Sources = append(rs.Sources, canonicalCIDR(v))
				}
			}
		default:
			rs.Unusual = true
		}
	}
	if len(r.Actions) != 1 {
		rs.Unusual = true
	}
	for _, a := range r.Actions {
		switch a.Type {
		case elbtypes.ActionTypeEnumForward:
			tgs := actionTargetGroups([]elbtypes.Action{a})
			if len(tgs) == 1 {
				rs.Target = tgs[0]
			} else {
				rs.Unusual = true
			}
		case elbtypes.ActionTypeEnumFixedResponse:
			if a.FixedResponseConfig != nil {
				rs.Fixed = awssdk.ToString(a.FixedResponseConfig.StatusCode)
			}
		default:
			rs.Unusual = true
		}
	}
	return rs
}

func canonicalCIDR(v string) string {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return v
	}
	return p.Masked().String()
}

func actionTargetGroups(actions []elbtypes.Action) []string {
	var out []string
	for _, a := range actions {
		if a.TargetGroupArn != nil && !slices.Contains(out, *a.TargetGroupArn) {
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

func parseTargetGroup(tg elbtypes.TargetGroup) *targetGroupState {
	return &targetGroupState{
		ARN:        awssdk.ToString(tg.TargetGroupArn),
		Name:       awssdk.ToString(tg.TargetGroupName),
		Port:       awssdk.ToInt32(tg.Port),
		Protocol:   string(tg.Protocol),
		TargetType: string(tg.TargetType),
		VPCID:      awssdk.ToString(tg.VpcId),
		HealthPath: awssdk.ToString(tg.HealthCheckPath),
		Attached:   len(tg.LoadBalancerArns) > 0,
	}
}
