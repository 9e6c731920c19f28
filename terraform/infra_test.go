package terraform

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// The settings issue 9 asks of the base infrastructure, read from the parsed
// .tf files. Values are evaluated the way a plan would see them: variables
// from terraform.tfvars.example and the defaults, locals resolved, anything
// that depends on a resource unknown.

// pinCheck checks one attribute expression; ctx evaluates it.
type pinCheck func(expr hclsyntax.Expression, ctx *hcl.EvalContext) error

// infraPins are the settings, one attribute each. path goes through nested
// blocks ("default_action.redirect.status_code"); a segment "block[attr=v]"
// picks the block of that type whose attr is the literal v. A resource
// "local.x" is the local's own expression (path "").
var infraPins = []struct {
	why, resource, path string
	check               pinCheck
}{
	{"the HTTPS listener serves HTTPS on 443", "aws_lb_listener.https", "protocol", is("HTTPS")},
	{"the HTTPS listener serves HTTPS on 443", "aws_lb_listener.https", "port", is(443)},
	{"the HTTPS listener negotiates with a modern TLS 1.3 policy", "aws_lb_listener.https", "ssl_policy", hasPrefix("ELBSecurityPolicy-TLS13-")},
	{"what no app rule matches gets a fixed 404", "aws_lb_listener.https", "default_action.type", is("fixed-response")},
	{"what no app rule matches gets a fixed 404", "aws_lb_listener.https", "default_action.fixed_response.status_code", is("404")},
	{"a requested certificate is served only once validated", "local.certificate_arn", "", refersTo("aws_acm_certificate_validation.apps")},
	{"the HTTP listener redirects to HTTPS (301)", "aws_lb_listener.http", "port", is(80)},
	{"the HTTP listener redirects to HTTPS (301)", "aws_lb_listener.http", "default_action.type", is("redirect")},
	{"the HTTP listener redirects to HTTPS (301)", "aws_lb_listener.http", "default_action.redirect.protocol", is("HTTPS")},
	{"the HTTP listener redirects to HTTPS (301)", "aws_lb_listener.http", "default_action.redirect.port", is("443")},
	{"the HTTP listener redirects to HTTPS (301)", "aws_lb_listener.http", "default_action.redirect.status_code", is("HTTP_301")},

	{"the cluster has Container Insights", "aws_ecs_cluster.this", "setting[name=containerInsights].value", oneOf("enabled", "enhanced")},
	{"the cluster offers FARGATE and FARGATE_SPOT", "aws_ecs_cluster_capacity_providers.this", "capacity_providers", includes("FARGATE", "FARGATE_SPOT")},
	{"the cluster offers FARGATE and FARGATE_SPOT", "aws_ecs_cluster_capacity_providers.this", "cluster_name", refersTo("aws_ecs_cluster.this")},

	{"two repositories, controller and web app", "aws_ecr_repository.this", "for_each", hasKeys("controller", "webapp")},
	{"both repositories scan on push", "aws_ecr_repository.this", "image_scanning_configuration.scan_on_push", is(true)},
	{"every repository has a lifecycle policy", "aws_ecr_lifecycle_policy.this", "for_each", isReference("aws_ecr_repository.this")},
	{"every repository has a lifecycle policy", "aws_ecr_lifecycle_policy.this", "policy", jsonWithRules()},

	{"admins reach NATS through an internal load balancer", "aws_lb.nats", "internal", is(true)},
	{"admins reach NATS through an internal load balancer", "aws_lb.nats", "load_balancer_type", is("network")},
	{"the NATS load balancer is behind the admin security group", "aws_lb.nats", "security_groups", refersTo("aws_security_group.nats_nlb")},

	{"NATS storage is encrypted at rest", "aws_efs_file_system.nats", "encrypted", is(true)},
	{"NATS storage is encrypted in transit", "aws_ecs_task_definition.nats", "volume.efs_volume_configuration.transit_encryption", is("ENABLED")},

	{"each NATS node has a Cloud Map name", "aws_service_discovery_service.nats", "for_each", hasKeys("nats-0", "nats-1", "nats-2")},
	{"each NATS node has a Cloud Map name", "aws_service_discovery_service.nats", "dns_config.namespace_id", refersTo("aws_service_discovery_private_dns_namespace.this")},
	{"each NATS node has a Cloud Map name", "aws_ecs_service.nats", "service_registries.registry_arn", refersTo("aws_service_discovery_service.nats")},

	{"the app records point at the app load balancer", "aws_route53_record.apps", "alias.name", refersTo("aws_lb.apps")},
	{"validation records exist only for a requested certificate", "aws_route53_record.certificate_validation", "for_each", refersTo("aws_acm_certificate.apps")},
	{"the certificate is validated through the given zone", "aws_route53_record.certificate_validation", "zone_id", refersTo("var.route53_zone_id")},
	{"the certificate is validated through its validation records", "aws_acm_certificate_validation.apps", "validation_record_fqdns", refersTo("aws_route53_record.certificate_validation")},
}

// TestInfrastructureHasTheSettingsTheIssueAsksFor checks each of infraPins.
func TestInfrastructureHasTheSettingsTheIssueAsksFor(t *testing.T) {
	m := loadModule(t)
	ctx := m.planContext(t, variableValues(t, m))
	for _, p := range infraPins {
		t.Run(p.resource+"."+p.path, func(t *testing.T) {
			expr, err := m.attr(p.resource, p.path)
			if err != nil {
				t.Fatalf("%s: %v", p.why, err)
			}
			if err := p.check(expr, ctx); err != nil {
				t.Errorf("%s: %s: %v", p.why, expr.Range(), err)
			}
		})
	}
}

// TestDNSAndCertificateFollowTheZone plans the conditional DNS resources for
// each way of providing the listener's certificate.
func TestDNSAndCertificateFollowTheZone(t *testing.T) {
	m := loadModule(t)
	const zone, arn = "Z0123456789ABCDEFGHIJ", "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d"
	for _, tc := range []struct {
		name         string
		zone, cert   string
		records      []string // aws_route53_record.apps instances
		certificates int      // aws_acm_certificate.apps and its validation
		planFails    bool     // the HTTPS listener's precondition
	}{
		{"a zone and no certificate: records and a validated wildcard certificate", zone, "", []string{"*.apps.example.com", "apps.example.com"}, 1, false},
		{"a zone and a certificate: records, the given certificate", zone, arn, []string{"*.apps.example.com", "apps.example.com"}, 0, false},
		{"a certificate and no zone: nothing in Route 53", "", arn, nil, 0, false},
		{"neither: the plan stops", "", "", nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := m.planContext(t, withVars(variableValues(t, m), map[string]cty.Value{
				"app_domain":      cty.StringVal("apps.example.com"),
				"route53_zone_id": cty.StringVal(tc.zone),
				"certificate_arn": cty.StringVal(tc.cert),
			}))
			if got := m.instances(t, ctx, "aws_route53_record.apps"); !slices.Equal(got, tc.records) {
				t.Errorf("aws_route53_record.apps: %q, want %q", got, tc.records)
			}
			for _, r := range []string{"aws_acm_certificate.apps", "aws_acm_certificate_validation.apps"} {
				if got := len(m.instances(t, ctx, r)); got != tc.certificates {
					t.Errorf("%s: %d instances, want %d", r, got, tc.certificates)
				}
			}
			if tc.certificates > 0 {
				names := m.mustAttr(t, "aws_acm_certificate.apps", "subject_alternative_names")
				if err := includes("*.apps.example.com")(names, ctx); err != nil {
					t.Errorf("the certificate does not cover the app hosts: %v", err)
				}
			}
			ok := m.mustAttr(t, "aws_lb_listener.https", "lifecycle.precondition.condition")
			if v, diags := ok.Value(ctx); diags.HasErrors() || !v.IsKnown() || v.True() == tc.planFails {
				t.Errorf("the HTTPS listener's precondition is %#v (%s), want %v", v, diags.Error(), !tc.planFails)
			}
		})
	}
}

// TestNATSAdminLoadBalancerAdmitsOnlyTheAdminAllowlist: the admin NLB's
// security group takes ingress only from var.admin_allowlist, one rule per
// CIDR on 4222, and the variable refuses the whole internet.
func TestNATSAdminLoadBalancerAdmitsOnlyTheAdminAllowlist(t *testing.T) {
	m := loadModule(t)
	if b := m.resources["aws_security_group.nats_nlb"]; b == nil {
		t.Fatal("aws_security_group.nats_nlb is missing")
	} else if slices.ContainsFunc(b.Body.Blocks, func(b *hclsyntax.Block) bool { return b.Type == "ingress" }) {
		t.Errorf("%s: inline ingress on the admin NLB's security group", b.DefRange())
	}
	allowlist := []string{"10.8.0.0/16", "2001:db8:8::/48"}
	ctx := m.planContext(t, withVars(variableValues(t, m), map[string]cty.Value{
		"admin_allowlist": cty.ListVal([]cty.Value{cty.StringVal(allowlist[0]), cty.StringVal(allowlist[1])}),
	}))
	rules := 0
	for _, key := range sortedKeys(m.resources) {
		b := m.resources[key]
		typ := b.Labels[0]
		if typ != "aws_vpc_security_group_ingress_rule" && typ != "aws_security_group_rule" {
			continue
		}
		if sg := b.Body.Attributes["security_group_id"]; sg == nil || refersTo("aws_security_group.nats_nlb")(sg.Expr, nil) != nil {
			continue
		}
		if kind := b.Body.Attributes["type"]; typ == "aws_security_group_rule" && (kind == nil || literalString(kind.Expr) != "ingress") {
			continue
		}
		rules++
		fe := b.Body.Attributes["for_each"]
		if fe == nil || !onlyRefersTo(fe.Expr, "var.admin_allowlist") {
			t.Errorf("%s: %s must have one instance per var.admin_allowlist entry (for_each over it alone)", b.DefRange(), key)
			continue
		}
		if got := m.instances(t, ctx, key); !slices.Equal(got, allowlist) {
			t.Errorf("%s: %s: instances %q for admin_allowlist %q", fe.SrcRange, key, got, allowlist)
		}
		for name, a := range b.Body.Attributes {
			switch name {
			case "cidr_ipv4", "cidr_ipv6", "cidr_blocks", "ipv6_cidr_blocks":
				if !onlyRefersTo(a.Expr, "each.value") {
					t.Errorf("%s: %s.%s must come from the allowlist entry (each.value) alone", a.SrcRange, key, name)
				}
			case "referenced_security_group_id", "source_security_group_id", "prefix_list_id", "self":
				t.Errorf("%s: %s.%s admits more than the allowlist", a.SrcRange, key, name)
			}
		}
		for _, tc := range []struct{ cidr, attr, other string }{
			{allowlist[0], "cidr_ipv4", "cidr_ipv6"},
			{allowlist[1], "cidr_ipv6", "cidr_ipv4"},
		} {
			ctx := &hcl.EvalContext{Variables: maps.Clone(ctx.Variables), Functions: ctx.Functions}
			ctx.Variables["each"] = cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal(tc.cidr), "value": cty.StringVal(tc.cidr)})
			for attr, want := range map[string]cty.Value{tc.attr: cty.StringVal(tc.cidr), tc.other: cty.NullVal(cty.String), "from_port": cty.NumberIntVal(4222), "to_port": cty.NumberIntVal(4222)} {
				if err := isValue(want)(m.mustAttr(t, key, attr), ctx); err != nil {
					t.Errorf("%s for allowlist entry %s: %s: %v", key, tc.cidr, attr, err)
				}
			}
		}
	}
	if rules == 0 {
		t.Fatal("no ingress rules on aws_security_group.nats_nlb: admins cannot reach NATS")
	}

	v := m.variables["admin_allowlist"]
	for _, tc := range []struct {
		allowlist []string
		accepted  bool
	}{
		{[]string{"10.8.0.0/16"}, true},
		{[]string{"10.8.0.0/16", "2001:db8:8::/48"}, true},
		{[]string{"0.0.0.0/0"}, false},
		{[]string{"::/0"}, false},
		{[]string{"10.8.0.0/16", "0.0.0.0/0"}, false},
		{[]string{"vpn.example.com"}, false},
		{nil, false},
	} {
		list := cty.ListValEmpty(cty.String)
		if len(tc.allowlist) > 0 {
			var vals []cty.Value
			for _, c := range tc.allowlist {
				vals = append(vals, cty.StringVal(c))
			}
			list = cty.ListVal(vals)
		}
		ctx := &hcl.EvalContext{
			Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{"admin_allowlist": list})},
			Functions: planFunctions(),
		}
		accepted := true
		for _, b := range v.Body.Blocks {
			if b.Type != "validation" {
				continue
			}
			ok, diags := b.Body.Attributes["condition"].Expr.Value(ctx)
			if diags.HasErrors() {
				t.Fatalf("%s: %s", b.DefRange(), diags.Error())
			}
			accepted = accepted && ok.True()
		}
		if accepted != tc.accepted {
			t.Errorf("admin_allowlist = %q: accepted %v, want %v", tc.allowlist, accepted, tc.accepted)
		}
	}
}

// --- evaluation --------------------------------------------------------------------

// planContext is what a plan knows for the given var values: var, path, the
// locals that depend only on those, and unknown values for every resource
// and data source.
func (m *module) planContext(t *testing.T, vars cty.Value) *hcl.EvalContext {
	t.Helper()
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":  vars,
			"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(".")}),
			"data": cty.DynamicVal,
		},
		Functions: planFunctions(),
	}
	for key := range m.resources {
		ctx.Variables[key[:strings.IndexByte(key, '.')]] = cty.DynamicVal
	}
	// Each pass evaluates the locals whose inputs are known by now; the rest
	// (other functions, file contents) stay out of local.
	locals := map[string]cty.Value{}
	for progress := true; progress; {
		progress = false
		ctx.Variables["local"] = cty.ObjectVal(locals)
		for _, name := range sortedKeys(m.locals) {
			if _, done := locals[name]; done {
				continue
			}
			if v, diags := m.locals[name].Expr.Value(ctx); !diags.HasErrors() {
				locals[name] = v
				progress = true
			}
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx
}

// planFunctions are the Terraform functions the evaluated expressions use,
// where go-cty's implementation is Terraform's (or, for cidrhost, enough of
// it for a validation).
func planFunctions() map[string]function.Function {
	return map[string]function.Function{
		"alltrue":    allTrueFunc,
		"can":        tryfunc.CanFunc,
		"cidrhost":   cidrHostFunc,
		"concat":     stdlib.ConcatFunc,
		"contains":   stdlib.ContainsFunc,
		"flatten":    stdlib.FlattenFunc,
		"join":       stdlib.JoinFunc,
		"jsonencode": stdlib.JSONEncodeFunc,
		"length":     stdlib.LengthFunc,
		"regex":      stdlib.RegexFunc,
		"toset":      stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"trimprefix": stdlib.TrimPrefixFunc,
	}
}

var allTrueFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		all := cty.True
		for it := args[0].ElementIterator(); it.Next(); {
			_, v := it.Element()
			if v.IsNull() {
				return cty.False, nil
			}
			all = all.And(v)
		}
		return all, nil
	},
})

// cidrHostFunc is cidrhost for host number 0, which is how the variable
// validations use it: it fails for anything but a CIDR.
var cidrHostFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "prefix", Type: cty.String}, {Name: "hostnum", Type: cty.Number}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if !args[1].RawEquals(cty.Zero) {
			return cty.NilVal, fmt.Errorf("this test's cidrhost supports host number 0 only")
		}
		p, err := netip.ParsePrefix(args[0].AsString())
		if err != nil {
			return cty.NilVal, err
		}
		return cty.StringVal(p.Masked().Addr().String()), nil
	},
})

func withVars(vars cty.Value, set map[string]cty.Value) cty.Value {
	all := vars.AsValueMap()
	for k, v := range set {
		all[k] = v
	}
	return cty.ObjectVal(all)
}

var blockSelector = regexp.MustCompile(`^(\w+)\[(\w+)=([^\]]+)\]$`)

// attr finds an attribute's expression: see infraPins for the path syntax.
func (m *module) attr(resource, path string) (hclsyntax.Expression, error) {
	if name, ok := strings.CutPrefix(resource, "local."); ok {
		if m.locals[name] == nil {
			return nil, fmt.Errorf("%s is not declared", resource)
		}
		return m.locals[name].Expr, nil
	}
	b := m.resources[resource]
	if b == nil {
		return nil, fmt.Errorf("resource %s is not declared", resource)
	}
	body := b.Body
	segs := strings.Split(path, ".")
	for _, seg := range segs[:len(segs)-1] {
		typ, key, want := seg, "", ""
		if s := blockSelector.FindStringSubmatch(seg); s != nil {
			typ, key, want = s[1], s[2], s[3]
		}
		var found []*hclsyntax.Block
		for _, nb := range body.Blocks {
			if nb.Type != typ {
				continue
			}
			if a := nb.Body.Attributes[key]; key == "" || a != nil && literalString(a.Expr) == want {
				found = append(found, nb)
			}
		}
		if len(found) != 1 {
			return nil, fmt.Errorf("%s: %d %s blocks, want 1", resource, len(found), seg)
		}
		body = found[0].Body
	}
	a := body.Attributes[segs[len(segs)-1]]
	if a == nil {
		return nil, fmt.Errorf("%s has no %s", resource, path)
	}
	return a.Expr, nil
}

// mustAttr is attr, failing the test if the attribute is missing.
func (m *module) mustAttr(t *testing.T, resource, path string) hclsyntax.Expression {
	t.Helper()
	expr, err := m.attr(resource, path)
	if err != nil {
		t.Fatal(err)
	}
	return expr
}

// instances returns the instance keys a plan would create for a resource:
// for_each keys, count indexes, or one instance.
func (m *module) instances(t *testing.T, ctx *hcl.EvalContext, resource string) []string {
	t.Helper()
	b := m.resources[resource]
	if b == nil {
		t.Fatalf("resource %s is not declared", resource)
	}
	if a := b.Body.Attributes["count"]; a != nil {
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() || !v.IsKnown() {
			t.Fatalf("%s: count is not known at plan time: %s", a.SrcRange, diags.Error())
		}
		n, _ := v.AsBigFloat().Int64()
		var keys []string
		for i := range n {
			keys = append(keys, fmt.Sprint(i))
		}
		return keys
	}
	if a := b.Body.Attributes["for_each"]; a != nil {
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() || !v.IsWhollyKnown() {
			t.Fatalf("%s: for_each is not known at plan time: %s", a.SrcRange, diags.Error())
		}
		return keysOf(v)
	}
	return []string{""}
}

// keysOf returns a for_each value's instance keys, sorted.
func keysOf(v cty.Value) []string {
	var keys []string
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if v.Type().IsSetType() {
			k = e
		}
		keys = append(keys, k.AsString())
	}
	slices.Sort(keys)
	return keys
}

// --- checks ----------------------------------------------------------------------

// known evaluates expr to a wholly known value.
func known(expr hclsyntax.Expression, ctx *hcl.EvalContext) (cty.Value, error) {
	v, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return cty.NilVal, fmt.Errorf("cannot evaluate: %s", diags.Error())
	}
	if !v.IsWhollyKnown() {
		return cty.NilVal, fmt.Errorf("not known at plan time")
	}
	return v, nil
}

// is: the value equals want (a string, number or bool).
func is(want any) pinCheck {
	switch w := want.(type) {
	case string:
		return isValue(cty.StringVal(w))
	case int:
		return isValue(cty.NumberIntVal(int64(w)))
	case bool:
		return isValue(cty.BoolVal(w))
	}
	panic(fmt.Sprintf("is(%T)", want))
}

func isValue(want cty.Value) pinCheck {
	return func(expr hclsyntax.Expression, ctx *hcl.EvalContext) error {
		v, err := known(expr, ctx)
		if err != nil {
			return err
		}
		if !v.RawEquals(want) {
			return fmt.Errorf("is %#v, want %#v", v, want)
		}
		return nil
	}
}

func str(expr hclsyntax.Expression, ctx *hcl.EvalContext) (string, error) {
	v, err := known(expr, ctx)
	if err != nil {
		return "", err
	}
	if v.IsNull() || v.Type() != cty.String {
		return "", fmt.Errorf("is %#v, want a string", v)
	}
	return v.AsString(), nil
}

func hasPrefix(prefix string) pinCheck {
	return func(expr hclsyntax.Expression, ctx *hcl.EvalContext) error {
		s, err := str(expr, ctx)
		if err == nil && !strings.HasPrefix(s, prefix) {
			err = fmt.Errorf("is %q, want %s…", s, prefix)
		}
		return err
	}
}

func oneOf(vals ...string) pinCheck {
	return func(expr hclsyntax.Expression, ctx *hcl.EvalContext) error {
		s, err := str(expr, ctx)
		if err == nil && !slices.Contains(vals, s) {
			err = fmt.Errorf("is %q, want one of %q", s, vals)
		}
		return err
	}
}

// includes: a list, set or tuple of strings holding each of vals.
func includes(vals ...string) pinCheck {
	return func(expr hclsyntax.Expression, ctx *hcl.EvalContext) error {
		v, err := known(expr, ctx)
		if err != nil {
			return err
		}
		if !v.CanIterateElements() {
			return fmt.Errorf("is %#v, want a collection", v)
		}
		var got []string
		for it := v.ElementIterator(); it.Next(); {
			if _, e := it.Element(); e.Type() == cty.String && !e.IsNull() {
				got = append(got, e.AsString())
			}
		}
		for _, want := range vals {
			if !slices.Contains(got, want) {
				return fmt.Errorf("is %q, which lacks %q", got, want)
			}
		}
		return nil
	}
}

// hasKeys: a for_each value with exactly these instance keys.
func hasKeys(keys ...string) pinCheck {
	return func(expr hclsyntax.Expression, ctx *hcl.EvalContext) error {
		v, err := known(expr, ctx)
		if err != nil {
			return err
		}
		if !v.CanIterateElements() {
			return fmt.Errorf("is %#v, want a map or set", v)
		}
		want := slices.Sorted(slices.Values(keys))
		if got := keysOf(v); !slices.Equal(got, want) {
			return fmt.Errorf("instances %q, want %q", got, want)
		}
		return nil
	}
}

// jsonWithRules: a JSON document (a lifecycle policy) with at least one rule.
func jsonWithRules() pinCheck {
	return func(expr hclsyntax.Expression, ctx *hcl.EvalContext) error {
		s, err := str(expr, ctx)
		if err != nil {
			return err
		}
		var doc struct{ Rules []json.RawMessage }
		if err := json.Unmarshal([]byte(s), &doc); err != nil {
			return err
		}
		if len(doc.Rules) == 0 {
			return fmt.Errorf("no rules in %s", s)
		}
		return nil
	}
}

// isReference: the expression is addr itself, such as a for_each over
// another resource's instances.
func isReference(addr string) pinCheck {
	return func(expr hclsyntax.Expression, _ *hcl.EvalContext) error {
		st, ok := expr.(*hclsyntax.ScopeTraversalExpr)
		if !ok || len(st.Traversal) != len(strings.Split(addr, ".")) || !traversalHasPrefix(st.Traversal, addr) {
			return fmt.Errorf("is not %s", addr)
		}
		return nil
	}
}

// refersTo: the expression references addr ("aws_lb.apps", "var.x").
func refersTo(addr string) pinCheck {
	return func(expr hclsyntax.Expression, _ *hcl.EvalContext) error {
		for _, tr := range expr.Variables() {
			if traversalHasPrefix(tr, addr) {
				return nil
			}
		}
		return fmt.Errorf("does not refer to %s", addr)
	}
}

// onlyRefersTo reports whether every reference in expr is to addr.
func onlyRefersTo(expr hclsyntax.Expression, addr string) bool {
	refs := expr.Variables()
	for _, tr := range refs {
		if !traversalHasPrefix(tr, addr) {
			return false
		}
	}
	return len(refs) > 0
}

func traversalHasPrefix(tr hcl.Traversal, addr string) bool {
	parts := strings.Split(addr, ".")
	if len(tr) < len(parts) || tr.RootName() != parts[0] {
		return false
	}
	for i, p := range parts[1:] {
		a, ok := tr[i+1].(hcl.TraverseAttr)
		if !ok || a.Name != p {
			return false
		}
	}
	return true
}
