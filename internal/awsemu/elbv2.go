package awsemu

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// ELBv2Options sets the Application Load Balancer quotas the emulator
// enforces. Zero fields take the AWS defaults.
type ELBv2Options struct {
	// RulesPerLoadBalancer caps non-default listener rules per load balancer
	// across its listeners (TooManyRules). Default 100.
	RulesPerLoadBalancer int
	// TargetGroupsPerLoadBalancer caps distinct target groups referenced by a
	// load balancer's actions (TooManyUniqueTargetGroupsPerLoadBalancer).
	// Default 100.
	TargetGroupsPerLoadBalancer int
	// ConditionValuesPerRule caps host-header + path-pattern + source-ip (and
	// other) condition values per rule (ValidationError). Default 5.
	ConditionValuesPerRule int
	// TargetGroups caps target groups per account (TooManyTargetGroups).
	// Default 3000.
	TargetGroups int
	// VpcID is the VPC reported for load balancers. Default DefaultVPCID.
	VpcID string
}

// DefaultVPCID is the VPC id the ELBv2 emulator reports for load balancers.
const DefaultVPCID = "vpc-0a1b2c3d4e5f60718"

const (
	elbv2XMLNS               = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
	elbMaxTags               = 50
	elbMaxWildcards          = 5
	elbListenersPerLB        = 50
	elbLoadBalancers         = 50
	elbActionsPerRule        = 5
	elbTargetGroupsPerAction = 5
	elbTagsArnsPerCall       = 20
	elbDefaultPageSize       = 400
)

var elbNameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?$`)

type elbEmulator struct {
	mu        sync.Mutex
	region    string
	account   string
	now       func() time.Time
	limits    ELBv2Options
	seq       uint64
	lbs       map[string]*elbLB
	listeners map[string]*elbListener
	tgs       map[string]*elbTG
	rules     map[string]*elbRule
	tags      map[string][]elbtypes.Tag
}

type elbLB struct {
	seq uint64
	lb  elbtypes.LoadBalancer
}

type elbListener struct {
	seq         uint64
	l           elbtypes.Listener
	defaultRule string
}

type elbTG struct {
	seq   uint64
	tg    elbtypes.TargetGroup
	attrs map[string]string
}

type elbRule struct {
	seq      uint64
	listener string
	priority int // 0 for the default rule
	r        elbtypes.Rule
}

func newELBEmulator(region, account string, now func() time.Time, limits ELBv2Options) *elbEmulator {
	if limits.RulesPerLoadBalancer <= 0 {
		limits.RulesPerLoadBalancer = 100
	}
	if limits.TargetGroupsPerLoadBalancer <= 0 {
		limits.TargetGroupsPerLoadBalancer = 100
	}
	if limits.ConditionValuesPerRule <= 0 {
		limits.ConditionValuesPerRule = 5
	}
	if limits.TargetGroups <= 0 {
		limits.TargetGroups = 3000
	}
	if limits.VpcID == "" {
		limits.VpcID = DefaultVPCID
	}
	return &elbEmulator{
		region:    region,
		account:   account,
		now:       now,
		limits:    limits,
		lbs:       map[string]*elbLB{},
		listeners: map[string]*elbListener{},
		tgs:       map[string]*elbTG{},
		rules:     map[string]*elbRule{},
		tags:      map[string][]elbtypes.Tag{},
	}
}

type elbHandler func(e *elbEmulator, form url.Values, now time.Time) (any, *apiError)

// elbHandlerFor returns the handler of an operation, nil if unsupported.
func elbHandlerFor(op string) elbHandler {
	switch op {
	case "CreateLoadBalancer":
		return (*elbEmulator).createLoadBalancer
	case "DescribeLoadBalancers":
		return (*elbEmulator).describeLoadBalancers
	case "DeleteLoadBalancer":
		return (*elbEmulator).deleteLoadBalancer
	case "CreateListener":
		return (*elbEmulator).createListener
	case "DescribeListeners":
		return (*elbEmulator).describeListeners
	case "DeleteListener":
		return (*elbEmulator).deleteListener
	case "CreateTargetGroup":
		return (*elbEmulator).createTargetGroup
	case "DescribeTargetGroups":
		return (*elbEmulator).describeTargetGroups
	case "ModifyTargetGroupAttributes":
		return (*elbEmulator).modifyTargetGroupAttributes
	case "DescribeTargetGroupAttributes":
		return (*elbEmulator).describeTargetGroupAttributes
	case "DeleteTargetGroup":
		return (*elbEmulator).deleteTargetGroup
	case "CreateRule":
		return (*elbEmulator).createRule
	case "DescribeRules":
		return (*elbEmulator).describeRules
	case "ModifyRule":
		return (*elbEmulator).modifyRule
	case "SetRulePriorities":
		return (*elbEmulator).setRulePriorities
	case "DeleteRule":
		return (*elbEmulator).deleteRule
	case "AddTags":
		return (*elbEmulator).addTags
	case "RemoveTags":
		return (*elbEmulator).removeTags
	case "DescribeTags":
		return (*elbEmulator).describeTags
	case "DescribeAccountLimits":
		return (*elbEmulator).describeAccountLimits
	}
	return nil
}

// serve runs one ELBv2 operation and returns the encoded <OpResult> content.
func (e *elbEmulator) serve(op string, form url.Values) ([]byte, *apiError) {
	h := elbHandlerFor(op)
	if h == nil {
		return nil, clientErr("InvalidAction", "The action %s is not valid for this web service.", op)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out, err := h(e, form, e.now())
	if err != nil {
		return nil, err
	}
	return encodeQueryResult(out), nil
}

func decodeELB(form url.Values, in any) *apiError {
	if err := decodeQuery(form, in); err != nil {
		return clientErr("ValidationError", "%v", err)
	}
	return nil
}

func validationErr(format string, args ...any) *apiError {
	return clientErr("ValidationError", format, args...)
}

func (e *elbEmulator) arn(resource string) string {
	return fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:%s", e.region, e.account, resource)
}

// newID returns the next sequence number and a 16-hex-digit id from it.
func (e *elbEmulator) newID() (uint64, string) {
	e.seq++
	return e.seq, fmt.Sprintf("%016x", e.seq*0x9e3779b97f4a7c15)
}

// ---- load balancers ----

func validELBName(name string) bool {
	return elbNameRE.MatchString(name) && !strings.HasPrefix(name, "internal-")
}

func (e *elbEmulator) createLoadBalancer(form url.Values, now time.Time) (any, *apiError) {
	var in elb.CreateLoadBalancerInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	name := aws.ToString(in.Name)
	if !validELBName(name) {
		return nil, validationErr("Load balancer name '%s' must be 1-32 alphanumeric characters or hyphens, and must not begin or end with a hyphen or begin with 'internal-'.", name)
	}
	if in.Type == "" {
		in.Type = elbtypes.LoadBalancerTypeEnumApplication
	}
	if in.Type != elbtypes.LoadBalancerTypeEnumApplication {
		return nil, validationErr("Only application load balancers are supported by this emulator.")
	}
	subnets := in.Subnets
	for _, m := range in.SubnetMappings {
		subnets = append(subnets, aws.ToString(m.SubnetId))
	}
	if len(subnets) < 2 {
		return nil, validationErr("At least two subnets in two different Availability Zones must be specified")
	}
	if in.Scheme == "" {
		in.Scheme = elbtypes.LoadBalancerSchemeEnumInternetFacing
	}
	if in.IpAddressType == "" {
		in.IpAddressType = elbtypes.IpAddressTypeIpv4
	}
	if err := validateELBTags(in.Tags); err != nil {
		return nil, err
	}
	azs := make([]elbtypes.AvailabilityZone, len(subnets))
	for i, sn := range subnets {
		azs[i] = elbtypes.AvailabilityZone{SubnetId: aws.String(sn), ZoneName: aws.String(fmt.Sprintf("%s%c", e.region, 'a'+i%6)), LoadBalancerAddresses: []elbtypes.LoadBalancerAddress{}}
	}
	want := elbtypes.LoadBalancer{
		LoadBalancerName:      aws.String(name),
		Type:                  in.Type,
		Scheme:                in.Scheme,
		IpAddressType:         in.IpAddressType,
		SecurityGroups:        nonNil(in.SecurityGroups),
		AvailabilityZones:     azs,
		VpcId:                 aws.String(e.limits.VpcID),
		CanonicalHostedZoneId: aws.String("Z35SXDOTRQ7X7K"),
		State:                 &elbtypes.LoadBalancerState{Code: elbtypes.LoadBalancerStateEnumActive},
	}
	for _, l := range e.lbs {
		if aws.ToString(l.lb.LoadBalancerName) != name {
			continue
		}
		got := l.lb
		got.LoadBalancerArn, got.DNSName, got.CreatedTime = nil, nil, nil
		if !bytes.Equal(encodeJSON(&got, false), encodeJSON(&want, false)) {
			return nil, clientErr("DuplicateLoadBalancerName", "A load balancer with the same name '%s' exists, but with different settings", name)
		}
		return &elb.CreateLoadBalancerOutput{LoadBalancers: []elbtypes.LoadBalancer{l.lb}}, nil
	}
	if len(e.lbs) >= elbLoadBalancers {
		return nil, clientErr("TooManyLoadBalancers", "The maximum number of load balancers has been reached")
	}
	seq, id := e.newID()
	lb := want
	lb.LoadBalancerArn = aws.String(e.arn(fmt.Sprintf("loadbalancer/app/%s/%s", name, id)))
	lb.DNSName = aws.String(fmt.Sprintf("%s-%d.%s.elb.amazonaws.com", name, 1000000000+seq*7919%1000000000, e.region))
	lb.CreatedTime = aws.Time(now)
	e.lbs[*lb.LoadBalancerArn] = &elbLB{seq: seq, lb: lb}
	e.tags[*lb.LoadBalancerArn] = cloneELBTags(in.Tags)
	return &elb.CreateLoadBalancerOutput{LoadBalancers: []elbtypes.LoadBalancer{lb}}, nil
}

func (e *elbEmulator) describeLoadBalancers(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DescribeLoadBalancersInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	var out []*elbLB
	switch {
	case len(in.LoadBalancerArns) > 0:
		for _, arn := range in.LoadBalancerArns {
			l, ok := e.lbs[arn]
			if !ok {
				return nil, clientErr("LoadBalancerNotFound", "One or more load balancers not found")
			}
			out = append(out, l)
		}
	case len(in.Names) > 0:
		for _, name := range in.Names {
			found := false
			for _, l := range e.lbs {
				if aws.ToString(l.lb.LoadBalancerName) == name {
					out = append(out, l)
					found = true
				}
			}
			if !found {
				return nil, clientErr("LoadBalancerNotFound", "Load balancers '[%s]' not found", name)
			}
		}
	default:
		for _, l := range e.lbs {
			out = append(out, l)
		}
		sortBySeq(out, func(l *elbLB) uint64 { return l.seq })
	}
	page, next, err := pageMarker(out, in.PageSize, in.Marker)
	if err != nil {
		return nil, err
	}
	lbs := make([]elbtypes.LoadBalancer, len(page))
	for i, l := range page {
		lbs[i] = l.lb
	}
	return &elb.DescribeLoadBalancersOutput{LoadBalancers: lbs, NextMarker: next}, nil
}

func (e *elbEmulator) deleteLoadBalancer(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DeleteLoadBalancerInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	arn := aws.ToString(in.LoadBalancerArn)
	if _, ok := e.lbs[arn]; !ok {
		return &elb.DeleteLoadBalancerOutput{}, nil
	}
	for larn, l := range e.listeners {
		if aws.ToString(l.l.LoadBalancerArn) == arn {
			e.removeListenerLocked(larn)
		}
	}
	delete(e.lbs, arn)
	delete(e.tags, arn)
	return &elb.DeleteLoadBalancerOutput{}, nil
}

// ---- listeners ----

func (e *elbEmulator) createListener(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.CreateListenerInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	lbArn := aws.ToString(in.LoadBalancerArn)
	lb, ok := e.lbs[lbArn]
	if !ok {
		return nil, clientErr("LoadBalancerNotFound", "One or more load balancers not found")
	}
	switch in.Protocol {
	case elbtypes.ProtocolEnumHttp:
	case elbtypes.ProtocolEnumHttps:
		if len(in.Certificates) == 0 {
			return nil, validationErr("A certificate must be specified for HTTPS listeners")
		}
		if in.SslPolicy == nil {
			in.SslPolicy = aws.String("ELBSecurityPolicy-2016-08")
		}
	default:
		return nil, clientErr("UnsupportedProtocol", "Protocol '%s' is not supported by application load balancers", in.Protocol)
	}
	port := aws.ToInt32(in.Port)
	if port < 1 || port > 65535 {
		return nil, validationErr("Port must be between 1 and 65535")
	}
	actions, err := e.normalizeActions(in.DefaultActions, lbArn)
	if err != nil {
		return nil, err
	}
	if err := validateELBTags(in.Tags); err != nil {
		return nil, err
	}
	want := elbtypes.Listener{
		LoadBalancerArn: in.LoadBalancerArn,
		Port:            in.Port,
		Protocol:        in.Protocol,
		Certificates:    in.Certificates,
		SslPolicy:       in.SslPolicy,
		AlpnPolicy:      in.AlpnPolicy,
		DefaultActions:  actions,
	}
	count := 0
	for _, l := range e.listeners {
		if aws.ToString(l.l.LoadBalancerArn) != lbArn {
			continue
		}
		count++
		if aws.ToInt32(l.l.Port) == port {
			got := l.l
			got.ListenerArn = nil
			if !bytes.Equal(encodeJSON(&got, false), encodeJSON(&want, false)) {
				return nil, clientErr("DuplicateListener", "A listener already exists on this port for this load balancer")
			}
			return &elb.CreateListenerOutput{Listeners: []elbtypes.Listener{l.l}}, nil
		}
	}
	if count >= elbListenersPerLB {
		return nil, clientErr("TooManyListeners", "You've reached the limit on the number of listeners per load balancer")
	}
	if err := e.checkTargetGroupQuota(lbArn, actions); err != nil {
		return nil, err
	}
	seq, id := e.newID()
	lbName := aws.ToString(lb.lb.LoadBalancerName)
	lbID := lastSegment(lbArn)
	l := want
	l.ListenerArn = aws.String(e.arn(fmt.Sprintf("listener/app/%s/%s/%s", lbName, lbID, id)))
	_, rid := e.newID()
	ruleArn := e.arn(fmt.Sprintf("listener-rule/app/%s/%s/%s/%s", lbName, lbID, id, rid))
	e.listeners[*l.ListenerArn] = &elbListener{seq: seq, l: l, defaultRule: ruleArn}
	e.rules[ruleArn] = &elbRule{seq: seq, listener: *l.ListenerArn, r: elbtypes.Rule{
		RuleArn:    aws.String(ruleArn),
		Priority:   aws.String("default"),
		IsDefault:  aws.Bool(true),
		Conditions: []elbtypes.RuleCondition{},
		Actions:    actions,
	}}
	e.tags[*l.ListenerArn] = cloneELBTags(in.Tags)
	e.tags[ruleArn] = []elbtypes.Tag{}
	return &elb.CreateListenerOutput{Listeners: []elbtypes.Listener{l}}, nil
}

func (e *elbEmulator) describeListeners(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DescribeListenersInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	var out []*elbListener
	switch {
	case len(in.ListenerArns) > 0:
		for _, arn := range in.ListenerArns {
			l, ok := e.listeners[arn]
			if !ok {
				return nil, clientErr("ListenerNotFound", "One or more listeners not found")
			}
			out = append(out, l)
		}
	case in.LoadBalancerArn != nil:
		if _, ok := e.lbs[*in.LoadBalancerArn]; !ok {
			return nil, clientErr("LoadBalancerNotFound", "One or more load balancers not found")
		}
		for _, l := range e.listeners {
			if aws.ToString(l.l.LoadBalancerArn) == *in.LoadBalancerArn {
				out = append(out, l)
			}
		}
		sortBySeq(out, func(l *elbListener) uint64 { return l.seq })
	default:
		return nil, validationErr("You must specify either listener ARNs or a load balancer ARN")
	}
	page, next, err := pageMarker(out, in.PageSize, in.Marker)
	if err != nil {
		return nil, err
	}
	ls := make([]elbtypes.Listener, len(page))
	for i, l := range page {
		ls[i] = l.l
	}
	return &elb.DescribeListenersOutput{Listeners: ls, NextMarker: next}, nil
}

func (e *elbEmulator) deleteListener(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DeleteListenerInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	arn := aws.ToString(in.ListenerArn)
	if _, ok := e.listeners[arn]; !ok {
		return nil, clientErr("ListenerNotFound", "One or more listeners not found")
	}
	e.removeListenerLocked(arn)
	return &elb.DeleteListenerOutput{}, nil
}

func (e *elbEmulator) removeListenerLocked(arn string) {
	for rarn, r := range e.rules {
		if r.listener == arn {
			delete(e.rules, rarn)
			delete(e.tags, rarn)
		}
	}
	delete(e.listeners, arn)
	delete(e.tags, arn)
}

// ---- target groups ----

// targetGroupDefaultAttributes are the attributes AWS reports for a new
// ip/instance target group of an Application Load Balancer.
func targetGroupDefaultAttributes() map[string]string {
	return map[string]string{
		"deregistration_delay.timeout_seconds":                                           "300",
		"stickiness.enabled":                                                             "false",
		"stickiness.type":                                                                "lb_cookie",
		"stickiness.lb_cookie.duration_seconds":                                          "86400",
		"stickiness.app_cookie.cookie_name":                                              "",
		"stickiness.app_cookie.duration_seconds":                                         "86400",
		"slow_start.duration_seconds":                                                    "0",
		"load_balancing.algorithm.type":                                                  "round_robin",
		"load_balancing.algorithm.anomaly_mitigation":                                    "off",
		"load_balancing.cross_zone.enabled":                                              "use_load_balancer_configuration",
		"target_group_health.dns_failover.minimum_healthy_targets.count":                 "1",
		"target_group_health.dns_failover.minimum_healthy_targets.percentage":            "off",
		"target_group_health.unhealthy_state_routing.minimum_healthy_targets.count":      "1",
		"target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage": "off",
	}
}

func (e *elbEmulator) createTargetGroup(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.CreateTargetGroupInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	tg, err := buildTargetGroup(&in)
	if err != nil {
		return nil, err
	}
	if err := validateELBTags(in.Tags); err != nil {
		return nil, err
	}
	name := aws.ToString(tg.TargetGroupName)
	for _, t := range e.tgs {
		if aws.ToString(t.tg.TargetGroupName) != name {
			continue
		}
		got := t.tg
		got.TargetGroupArn, got.LoadBalancerArns = nil, nil
		if !bytes.Equal(encodeJSON(&got, false), encodeJSON(tg, false)) {
			return nil, clientErr("DuplicateTargetGroupName", "A target group with the same name '%s' exists, but with different settings", name)
		}
		return &elb.CreateTargetGroupOutput{TargetGroups: []elbtypes.TargetGroup{e.targetGroupView(t)}}, nil
	}
	if len(e.tgs) >= e.limits.TargetGroups {
		return nil, clientErr("TooManyTargetGroups", "You've reached the limit on the number of target groups for your AWS account")
	}
	seq, id := e.newID()
	tg.TargetGroupArn = aws.String(e.arn(fmt.Sprintf("targetgroup/%s/%s", name, id)))
	t := &elbTG{seq: seq, tg: *tg, attrs: targetGroupDefaultAttributes()}
	e.tgs[*tg.TargetGroupArn] = t
	e.tags[*tg.TargetGroupArn] = cloneELBTags(in.Tags)
	return &elb.CreateTargetGroupOutput{TargetGroups: []elbtypes.TargetGroup{e.targetGroupView(t)}}, nil
}

// buildTargetGroup validates a CreateTargetGroup request and fills the AWS
// defaults.
func buildTargetGroup(in *elb.CreateTargetGroupInput) (*elbtypes.TargetGroup, *apiError) {
	name := aws.ToString(in.Name)
	if len(name) > 32 {
		return nil, validationErr("Target group name '%s' cannot be longer than '32' characters", name)
	}
	if !validELBName(name) {
		return nil, validationErr("Target group name '%s' can only contain characters that are alphanumeric characters or hyphens(-), must not begin or end with a hyphen, and must not begin with 'internal-'", name)
	}
	tt := in.TargetType
	if tt == "" {
		tt = elbtypes.TargetTypeEnumInstance
	}
	if tt != elbtypes.TargetTypeEnumInstance && tt != elbtypes.TargetTypeEnumIp {
		return nil, validationErr("Only 'instance' and 'ip' target types are supported by this emulator.")
	}
	switch {
	case in.Protocol == "":
		return nil, validationErr("A protocol must be specified")
	case in.Protocol != elbtypes.ProtocolEnumHttp && in.Protocol != elbtypes.ProtocolEnumHttps:
		return nil, validationErr("Only HTTP and HTTPS target groups are supported by this emulator.")
	case in.Port == nil:
		return nil, validationErr("A port must be specified")
	case *in.Port < 1 || *in.Port > 65535:
		return nil, validationErr("Port must be between 1 and 65535")
	case aws.ToString(in.VpcId) == "":
		return nil, validationErr("A VPC ID must be specified")
	}
	tg := &elbtypes.TargetGroup{
		TargetGroupName:            aws.String(name),
		Protocol:                   in.Protocol,
		ProtocolVersion:            in.ProtocolVersion,
		Port:                       in.Port,
		VpcId:                      in.VpcId,
		TargetType:                 tt,
		IpAddressType:              in.IpAddressType,
		HealthCheckEnabled:         in.HealthCheckEnabled,
		HealthCheckProtocol:        in.HealthCheckProtocol,
		HealthCheckPort:            in.HealthCheckPort,
		HealthCheckPath:            in.HealthCheckPath,
		HealthCheckIntervalSeconds: in.HealthCheckIntervalSeconds,
		HealthCheckTimeoutSeconds:  in.HealthCheckTimeoutSeconds,
		HealthyThresholdCount:      in.HealthyThresholdCount,
		UnhealthyThresholdCount:    in.UnhealthyThresholdCount,
		Matcher:                    in.Matcher,
	}
	if tg.ProtocolVersion == nil {
		tg.ProtocolVersion = aws.String("HTTP1")
	}
	if tg.IpAddressType == "" {
		tg.IpAddressType = elbtypes.TargetGroupIpAddressTypeEnumIpv4
	}
	if tg.HealthCheckEnabled == nil {
		tg.HealthCheckEnabled = aws.Bool(true)
	}
	if tg.HealthCheckProtocol == "" {
		tg.HealthCheckProtocol = in.Protocol
	}
	if tg.HealthCheckPort == nil {
		tg.HealthCheckPort = aws.String("traffic-port")
	}
	if tg.HealthCheckPath == nil {
		tg.HealthCheckPath = aws.String("/")
	}
	if tg.HealthCheckIntervalSeconds == nil {
		tg.HealthCheckIntervalSeconds = aws.Int32(30)
	}
	if tg.HealthCheckTimeoutSeconds == nil {
		tg.HealthCheckTimeoutSeconds = aws.Int32(5)
	}
	if tg.HealthyThresholdCount == nil {
		tg.HealthyThresholdCount = aws.Int32(5)
	}
	if tg.UnhealthyThresholdCount == nil {
		tg.UnhealthyThresholdCount = aws.Int32(2)
	}
	if tg.Matcher == nil || (tg.Matcher.HttpCode == nil && tg.Matcher.GrpcCode == nil) {
		tg.Matcher = &elbtypes.Matcher{HttpCode: aws.String("200")}
	}
	path := aws.ToString(tg.HealthCheckPath)
	interval, timeout := *tg.HealthCheckIntervalSeconds, *tg.HealthCheckTimeoutSeconds
	switch {
	case !strings.HasPrefix(path, "/") || len(path) > 1024:
		return nil, validationErr("Health check path must begin with '/' and be at most 1024 characters")
	case interval < 5 || interval > 300:
		return nil, validationErr("Health check interval must be between 5 and 300 seconds")
	case timeout < 2 || timeout > 120:
		return nil, validationErr("Health check timeout must be between 2 and 120 seconds")
	case timeout >= interval:
		return nil, validationErr("Health check interval must be greater than the timeout.")
	case *tg.HealthyThresholdCount < 2 || *tg.HealthyThresholdCount > 10:
		return nil, validationErr("Healthy threshold count must be between 2 and 10")
	case *tg.UnhealthyThresholdCount < 2 || *tg.UnhealthyThresholdCount > 10:
		return nil, validationErr("Unhealthy threshold count must be between 2 and 10")
	}
	if p := aws.ToString(tg.HealthCheckPort); p != "traffic-port" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, validationErr("Health check port '%s' must be 'traffic-port' or between 1 and 65535", p)
		}
	}
	return tg, nil
}

// targetGroupView renders a target group with the load balancers whose
// actions reference it.
func (e *elbEmulator) targetGroupView(t *elbTG) elbtypes.TargetGroup {
	v := t.tg
	v.LoadBalancerArns = []string{}
	if lb := e.targetGroupLB(aws.ToString(t.tg.TargetGroupArn)); lb != "" {
		v.LoadBalancerArns = append(v.LoadBalancerArns, lb)
	}
	return v
}

// targetGroupLB returns the load balancer whose listener or rule actions
// reference the target group, or "".
func (e *elbEmulator) targetGroupLB(tgArn string) string {
	for _, r := range e.rules {
		if slices.Contains(actionTargetGroups(r.r.Actions), tgArn) {
			return aws.ToString(e.listeners[r.listener].l.LoadBalancerArn)
		}
	}
	return ""
}

func (e *elbEmulator) describeTargetGroups(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DescribeTargetGroupsInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	var out []*elbTG
	switch {
	case len(in.TargetGroupArns) > 0:
		for _, arn := range in.TargetGroupArns {
			t, ok := e.tgs[arn]
			if !ok {
				return nil, clientErr("TargetGroupNotFound", "One or more target groups not found")
			}
			out = append(out, t)
		}
	case len(in.Names) > 0:
		for _, name := range in.Names {
			found := false
			for _, t := range e.tgs {
				if aws.ToString(t.tg.TargetGroupName) == name {
					out = append(out, t)
					found = true
				}
			}
			if !found {
				return nil, clientErr("TargetGroupNotFound", "Target groups '[%s]' not found", name)
			}
		}
	case in.LoadBalancerArn != nil:
		if _, ok := e.lbs[*in.LoadBalancerArn]; !ok {
			return nil, clientErr("LoadBalancerNotFound", "One or more load balancers not found")
		}
		for arn, t := range e.tgs {
			if e.targetGroupLB(arn) == *in.LoadBalancerArn {
				out = append(out, t)
			}
		}
		sortBySeq(out, func(t *elbTG) uint64 { return t.seq })
	default:
		for _, t := range e.tgs {
			out = append(out, t)
		}
		sortBySeq(out, func(t *elbTG) uint64 { return t.seq })
	}
	page, next, err := pageMarker(out, in.PageSize, in.Marker)
	if err != nil {
		return nil, err
	}
	tgs := make([]elbtypes.TargetGroup, len(page))
	for i, t := range page {
		tgs[i] = e.targetGroupView(t)
	}
	return &elb.DescribeTargetGroupsOutput{TargetGroups: tgs, NextMarker: next}, nil
}

func (e *elbEmulator) modifyTargetGroupAttributes(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.ModifyTargetGroupAttributesInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	t, ok := e.tgs[aws.ToString(in.TargetGroupArn)]
	if !ok {
		return nil, clientErr("TargetGroupNotFound", "One or more target groups not found")
	}
	if len(in.Attributes) == 0 {
		return nil, validationErr("Attributes must not be empty")
	}
	next := maps.Clone(t.attrs)
	for _, a := range in.Attributes {
		k, v := aws.ToString(a.Key), aws.ToString(a.Value)
		if _, known := next[k]; !known {
			return nil, clientErr("InvalidConfigurationRequest", "Target group attribute key '%s' is not recognized", k)
		}
		if err := validateTargetGroupAttribute(k, v); err != nil {
			return nil, err
		}
		next[k] = v
	}
	t.attrs = next
	return &elb.ModifyTargetGroupAttributesOutput{Attributes: attributeList(t.attrs)}, nil
}

func validateTargetGroupAttribute(k, v string) *apiError {
	intRange := func(lo, hi int) *apiError {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return clientErr("InvalidConfigurationRequest", "Target group attribute '%s' must be an integer between %d and %d, got '%s'", k, lo, hi, v)
		}
		return nil
	}
	switch k {
	case "deregistration_delay.timeout_seconds":
		return intRange(0, 3600)
	case "slow_start.duration_seconds":
		if v != "0" {
			return intRange(30, 900)
		}
	case "stickiness.lb_cookie.duration_seconds", "stickiness.app_cookie.duration_seconds":
		return intRange(1, 604800)
	case "stickiness.enabled":
		if v != "true" && v != "false" {
			return clientErr("InvalidConfigurationRequest", "Target group attribute '%s' must be 'true' or 'false'", k)
		}
	case "stickiness.type":
		if v != "lb_cookie" && v != "app_cookie" {
			return clientErr("InvalidConfigurationRequest", "Target group attribute '%s' must be 'lb_cookie' or 'app_cookie'", k)
		}
	}
	return nil
}

func (e *elbEmulator) describeTargetGroupAttributes(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DescribeTargetGroupAttributesInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	t, ok := e.tgs[aws.ToString(in.TargetGroupArn)]
	if !ok {
		return nil, clientErr("TargetGroupNotFound", "One or more target groups not found")
	}
	return &elb.DescribeTargetGroupAttributesOutput{Attributes: attributeList(t.attrs)}, nil
}

func attributeList(attrs map[string]string) []elbtypes.TargetGroupAttribute {
	out := make([]elbtypes.TargetGroupAttribute, 0, len(attrs))
	for _, k := range sortedKeys(attrs) {
		out = append(out, elbtypes.TargetGroupAttribute{Key: aws.String(k), Value: aws.String(attrs[k])})
	}
	return out
}

func (e *elbEmulator) deleteTargetGroup(form url.Values, _ time.Time) (any, *apiError) {
	var in elb.DeleteTargetGroupInput
	if err := decodeELB(form, &in); err != nil {
		return nil, err
	}
	arn := aws.ToString(in.TargetGroupArn)
	if _, ok := e.tgs[arn]; !ok {
		return &elb.DeleteTargetGroupOutput{}, nil
	}
	if e.targetGroupLB(arn) != "" {
		return nil, clientErr("ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
	}
	delete(e.tgs, arn)
	delete(e.tags, arn)
	return &elb.DeleteTargetGroupOutput{}, nil
}

// checkTargetGroupForService is what ECS asks before binding a service to a
// target group: it must exist, be ip-typed for awsvpc tasks, and be
// associated with a load balancer.
func (e *elbEmulator) checkTargetGroupForService(arn string, mode ecstypes.NetworkMode) *apiError {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tgs[arn]
	if !ok {
		return clientErr("InvalidParameterException", "Unable to describe target group %s: target group not found.", arn)
	}
	if mode == ecstypes.NetworkModeAwsvpc && t.tg.TargetType != elbtypes.TargetTypeEnumIp {
		return clientErr("InvalidParameterException", "The provided target group %s has target type %s, which is incompatible with the awsvpc network mode specified in the task definition.", arn, t.tg.TargetType)
	}
	if e.targetGroupLB(arn) == "" {
		return clientErr("InvalidParameterException", "The target group with targetGroupArn %s does not have an associated load balancer.", arn)
	}
	return nil
}

// ListenerRules returns the rules of a listener as DescribeRules would (by
// priority, the default rule last), read directly rather than through an API
// call, so it is neither counted nor subject to faults. It is meant for call
// hooks (see SetCallHook).
func (s *Server) ListenerRules(listenerArn string) ([]elbtypes.Rule, error) {
	e := s.elb
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.listeners[listenerArn]; !ok {
		return nil, fmt.Errorf("listener %s not found", listenerArn)
	}
	rules := e.listenerRulesLocked(listenerArn)
	out := make([]elbtypes.Rule, len(rules))
	for i, r := range rules {
		out[i] = r.r
	}
	return out, nil
}

// ---- helpers ----

func lastSegment(arn string) string {
	return arn[strings.LastIndex(arn, "/")+1:]
}

func sortBySeq[T any](items []T, seq func(T) uint64) {
	slices.SortFunc(items, func(a, b T) int { return cmp.Compare(seq(a), seq(b)) })
}

// pageMarker pages with ELBv2's Marker/PageSize (1-400, default 400).
func pageMarker[T any](items []T, pageSize *int32, marker *string) ([]T, *string, *apiError) {
	size := elbDefaultPageSize
	if pageSize != nil {
		size = int(*pageSize)
		if size < 1 || size > 400 {
			return nil, nil, validationErr("Page size must be between 1 and 400")
		}
	}
	start := 0
	if m := aws.ToString(marker); m != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(m, "page-"))
		if err != nil || !strings.HasPrefix(m, "page-") || n < 0 || n > len(items) {
			return nil, nil, validationErr("Invalid marker '%s'", m)
		}
		start = n
	}
	end := min(start+size, len(items))
	page := items[start:end]
	if end < len(items) {
		return page, aws.String("page-" + strconv.Itoa(end)), nil
	}
	return page, nil, nil
}
