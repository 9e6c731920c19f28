package terraform

import (
	"cmp"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/servingapp/servingapp/controller/config"
)

// module is every .tf file of this directory, parsed, with what it declares.
type module struct {
	files     map[string]*hclsyntax.Body
	variables map[string]*hclsyntax.Block
	locals    map[string]*hclsyntax.Attribute
	resources map[string]*hclsyntax.Block // "aws_lb.apps"
	data      map[string]*hclsyntax.Block // "aws_iam_policy_document.x"
	modules   map[string]*hclsyntax.Block
	outputs   map[string]*hclsyntax.Block
}

func loadModule(t *testing.T) *module {
	t.Helper()
	paths, err := filepath.Glob("*.tf")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no .tf files: %v", err)
	}
	m := &module{
		files:     map[string]*hclsyntax.Body{},
		variables: map[string]*hclsyntax.Block{},
		locals:    map[string]*hclsyntax.Attribute{},
		resources: map[string]*hclsyntax.Block{},
		data:      map[string]*hclsyntax.Block{},
		modules:   map[string]*hclsyntax.Block{},
		outputs:   map[string]*hclsyntax.Block{},
	}
	p := hclparse.NewParser()
	for _, path := range paths {
		f, diags := p.ParseHCLFile(path)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %s", path, diags.Error())
		}
		body := f.Body.(*hclsyntax.Body)
		m.files[path] = body
		declare := func(kind string, into map[string]*hclsyntax.Block, key string, b *hclsyntax.Block) {
			if prev, dup := into[key]; dup {
				t.Errorf("%s %s declared twice: %s and %s", kind, key, prev.DefRange(), b.DefRange())
			}
			into[key] = b
		}
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				declare("variable", m.variables, b.Labels[0], b)
			case "locals":
				for name, a := range b.Body.Attributes {
					if prev, dup := m.locals[name]; dup {
						t.Errorf("local %s declared twice: %s and %s", name, prev.SrcRange, a.SrcRange)
					}
					m.locals[name] = a
				}
			case "resource":
				declare("resource", m.resources, b.Labels[0]+"."+b.Labels[1], b)
			case "data":
				declare("data source", m.data, b.Labels[0]+"."+b.Labels[1], b)
			case "module":
				declare("module", m.modules, b.Labels[0], b)
			case "output":
				declare("output", m.outputs, b.Labels[0], b)
			case "terraform", "provider", "check", "moved", "import":
			default:
				t.Errorf("%s: unknown top-level block %q", b.DefRange(), b.Type)
			}
		}
	}
	return m
}

// expressions calls f for every attribute expression in the module, nested
// blocks included, except variable type constraints (type syntax, not
// references).
func (m *module) expressions(f func(file string, expr hclsyntax.Expression)) {
	var walk func(file, blockType string, b *hclsyntax.Body)
	walk = func(file, blockType string, b *hclsyntax.Body) {
		for name, a := range b.Attributes {
			if blockType == "variable" && name == "type" {
				continue
			}
			f(file, a.Expr)
		}
		for _, blk := range b.Blocks {
			walk(file, blk.Type, blk.Body)
		}
	}
	for _, file := range sortedKeys(m.files) {
		walk(file, "", m.files[file])
	}
}

// Roots that name no declaration: iteration symbols, meta-arguments and
// Terraform's own objects.
var nonDeclarationRoots = map[string]bool{"each": true, "count": true, "path": true, "self": true, "terraform": true}

func TestEveryReferenceResolves(t *testing.T) {
	m := loadModule(t)
	used := map[string]bool{}
	usedLocals := map[string]bool{}
	m.expressions(func(file string, expr hclsyntax.Expression) {
		for _, tr := range expr.Variables() {
			root := tr.RootName()
			rng := tr.SourceRange()
			attr := func(i int) string {
				if i < len(tr) {
					if a, ok := tr[i].(hcl.TraverseAttr); ok {
						return a.Name
					}
				}
				return ""
			}
			switch {
			case nonDeclarationRoots[root]:
			case root == "var":
				if m.variables[attr(1)] == nil {
					t.Errorf("%s: var.%s is not declared in variables.tf", rng, attr(1))
				}
				used[attr(1)] = true
			case root == "local":
				if m.locals[attr(1)] == nil {
					t.Errorf("%s: local.%s is not declared", rng, attr(1))
				}
				usedLocals[attr(1)] = true
			case root == "data":
				if key := attr(1) + "." + attr(2); m.data[key] == nil {
					t.Errorf("%s: data.%s is not declared", rng, key)
				}
			case root == "module":
				if m.modules[attr(1)] == nil {
					t.Errorf("%s: module.%s is not declared", rng, attr(1))
				}
			case strings.Contains(root, "_") || root == "random" || root == "tls":
				if key := root + "." + attr(1); m.resources[key] == nil {
					t.Errorf("%s: resource %s is not declared", rng, key)
				}
			default:
				t.Errorf("%s: reference to unknown object %q", rng, root)
			}
		}
	})
	for name, b := range m.variables {
		if !used[name] {
			t.Errorf("%s: variable %q is declared but never used", b.DefRange(), name)
		}
	}
	for name, a := range m.locals {
		if !usedLocals[name] {
			t.Errorf("%s: local %q is declared but never used", a.SrcRange, name)
		}
	}
}

func TestEveryVariableIsDescribedTypedAndValidated(t *testing.T) {
	m := loadModule(t)
	for name, b := range m.variables {
		attrs := b.Body.Attributes
		if d, ok := attrs["description"]; !ok || literalString(d.Expr) == "" {
			t.Errorf("%s: variable %q has no description", b.DefRange(), name)
		}
		typ, ok := attrs["type"]
		if !ok {
			t.Errorf("%s: variable %q has no type", b.DefRange(), name)
			continue
		}
		// A bool cannot hold a wrong value; anything else can.
		if hcl.ExprAsKeyword(typ.Expr) == "bool" {
			continue
		}
		if !slices.ContainsFunc(b.Body.Blocks, func(v *hclsyntax.Block) bool { return v.Type == "validation" }) {
			t.Errorf("%s: variable %q has no validation block", b.DefRange(), name)
		}
	}
	for name, b := range m.outputs {
		if d, ok := b.Body.Attributes["description"]; !ok || literalString(d.Expr) == "" {
			t.Errorf("%s: output %q has no description", b.DefRange(), name)
		}
	}
}

func TestTfvarsExampleSetsOnlyDeclaredVariablesAndEveryRequiredOne(t *testing.T) {
	m := loadModule(t)
	vals := tfvarsExample(t)
	for name := range vals {
		if m.variables[name] == nil {
			t.Errorf("terraform.tfvars.example sets %q, which is not a variable", name)
		}
	}
	for name, b := range m.variables {
		_, hasDefault := b.Body.Attributes["default"]
		// image_tag is set by deploy.sh on the command line.
		if _, set := vals[name]; !hasDefault && !set && name != "image_tag" {
			t.Errorf("terraform.tfvars.example does not set required variable %q", name)
		}
	}
}

// TestTemplatesGetExactlyTheirVariables checks each templatefile() call
// against the variables its template reads: a missing one fails at plan
// time, an extra one is dead code.
func TestTemplatesGetExactlyTheirVariables(t *testing.T) {
	m := loadModule(t)
	calls := 0
	for _, file := range sortedKeys(m.files) {
		hclsyntax.VisitAll(m.files[file], func(n hclsyntax.Node) hcl.Diagnostics {
			call, ok := n.(*hclsyntax.FunctionCallExpr)
			if !ok || call.Name != "templatefile" {
				return nil
			}
			calls++
			pathVal, diags := call.Args[0].Value(&hcl.EvalContext{Variables: map[string]cty.Value{
				"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(".")}),
			}})
			if diags.HasErrors() {
				t.Errorf("%s: template path must be static under path.module: %s", call.Range(), diags.Error())
				return nil
			}
			src, err := os.ReadFile(pathVal.AsString())
			if err != nil {
				t.Errorf("%s: %v", call.Range(), err)
				return nil
			}
			tmpl, diags := hclsyntax.ParseTemplate(src, pathVal.AsString(), hcl.InitialPos)
			if diags.HasErrors() {
				t.Errorf("%s: %s", pathVal.AsString(), diags.Error())
				return nil
			}
			want := map[string]bool{}
			for _, tr := range tmpl.Variables() {
				want[tr.RootName()] = true
			}
			obj, ok := call.Args[1].(*hclsyntax.ObjectConsExpr)
			if !ok {
				t.Errorf("%s: template variables must be an object literal", call.Range())
				return nil
			}
			got := map[string]bool{}
			for _, item := range obj.Items {
				got[keyOf(item.KeyExpr)] = true
			}
			for k := range want {
				if !got[k] {
					t.Errorf("%s: %s reads %q, which the call does not pass", call.Range(), pathVal.AsString(), k)
				}
			}
			for k := range got {
				if !want[k] {
					t.Errorf("%s: passes %q, which %s never reads", call.Range(), k, pathVal.AsString())
				}
			}
			return nil
		})
	}
	if calls == 0 {
		t.Fatal("no templatefile() calls found: the NATS config is rendered from templates/nats.conf.tftpl")
	}
}

// --- IAM -------------------------------------------------------------------

// wildcardResourceActions are the only actions an Allow statement may grant
// on Resource "*": AWS offers nothing narrower for them. Each one says why.
var wildcardResourceActions = map[string]string{
	"ecr:GetAuthorizationToken":                          "the registry login token is account-wide; ECR has no resource-level permission for it",
	"ecs:RegisterTaskDefinition":                         "no resource-level permission; limited by the aws:RequestTag managed-by condition instead",
	"ecs:DeregisterTaskDefinition":                       "no resource-level permission and no condition key; it only marks a revision INACTIVE, running tasks are unaffected",
	"ecs:DescribeTaskDefinition":                         "read-only; no resource-level permission",
	"ecs:ListTaskDefinitions":                            "read-only; no resource-level permission",
	"ecs:ListServices":                                   "read-only; no resource-level permission, limited by the ecs:cluster condition instead",
	"elasticloadbalancing:DescribeAccountLimits":         "read-only; ELBv2 Describe* actions have no resource-level permissions",
	"elasticloadbalancing:DescribeListeners":             "read-only; ELBv2 Describe* actions have no resource-level permissions",
	"elasticloadbalancing:DescribeRules":                 "read-only; ELBv2 Describe* actions have no resource-level permissions",
	"elasticloadbalancing:DescribeTargetGroups":          "read-only; ELBv2 Describe* actions have no resource-level permissions",
	"elasticloadbalancing:DescribeTargetGroupAttributes": "read-only; ELBv2 Describe* actions have no resource-level permissions",
	"elasticloadbalancing:DescribeTags":                  "read-only; ELBv2 Describe* actions have no resource-level permissions",
	"secretsmanager:ListSecrets":                         "read-only (names and tags, never values); no resource-level permission",
}

// untaggableMutations are controller actions that change something yet can
// carry no condition, because AWS defines no condition key for them.
var untaggableMutations = map[string]string{
	"ecs:DeregisterTaskDefinition": "no condition keys exist for it",
}

// statement is one statement block of an aws_iam_policy_document.
type statement struct {
	doc, sid      string
	rng           hcl.Range
	effect        string
	actions       []string
	wildcard      bool // Resource "*"
	hasResources  bool
	hasPrincipals bool
	conditions    int
	block         *hclsyntax.Block
}

func policyStatements(t *testing.T, m *module) []statement {
	t.Helper()
	var out []statement
	for _, key := range sortedKeys(m.data) {
		b := m.data[key]
		if b.Labels[0] != "aws_iam_policy_document" {
			continue
		}
		for _, sb := range b.Body.Blocks {
			if sb.Type != "statement" {
				t.Errorf("%s: %s: only statement blocks are expected", sb.DefRange(), key)
				continue
			}
			s := statement{doc: b.Labels[1], rng: sb.DefRange(), effect: "Allow", block: sb}
			a := sb.Body.Attributes
			if v, ok := a["sid"]; ok {
				s.sid = literalString(v.Expr)
			}
			if v, ok := a["effect"]; ok {
				s.effect = literalString(v.Expr)
			}
			for _, banned := range []string{"not_actions", "not_resources"} {
				if _, ok := a[banned]; ok {
					t.Errorf("%s: %s: %s grants by exclusion; list what is granted", s.rng, key, banned)
				}
			}
			if v, ok := a["actions"]; ok {
				val, diags := v.Expr.Value(nil)
				if diags.HasErrors() || !val.Type().IsTupleType() {
					t.Errorf("%s: %s: actions must be a literal list of strings", s.rng, key)
				} else {
					for it := val.ElementIterator(); it.Next(); {
						_, e := it.Element()
						s.actions = append(s.actions, e.AsString())
					}
				}
			} else {
				t.Errorf("%s: %s: statement without actions", s.rng, key)
			}
			if v, ok := a["resources"]; ok {
				s.hasResources = true
				hclsyntax.VisitAll(v.Expr, func(n hclsyntax.Node) hcl.Diagnostics {
					if e, ok := n.(hclsyntax.Expression); ok && literalString(e) == "*" {
						s.wildcard = true
					}
					return nil
				})
			}
			for _, nb := range sb.Body.Blocks {
				switch nb.Type {
				case "principals":
					s.hasPrincipals = true
				case "condition":
					s.conditions++
				}
			}
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		t.Fatal("no aws_iam_policy_document statements found: write IAM policies as data sources")
	}
	return out
}

func TestIAMGrantsNoWildcardActionsAndNoWildcardResourcesBeyondTheExceptions(t *testing.T) {
	m := loadModule(t)
	usedExceptions := map[string]bool{}
	for _, s := range policyStatements(t, m) {
		if s.effect != "Allow" && s.effect != "Deny" {
			t.Errorf("%s: %s: effect %q", s.rng, s.doc, s.effect)
		}
		if s.effect == "Deny" {
			continue
		}
		for _, a := range s.actions {
			if strings.Contains(a, "*") {
				t.Errorf("%s: %s/%s grants wildcard action %q", s.rng, s.doc, s.sid, a)
			}
		}
		if !s.hasResources && !s.hasPrincipals {
			t.Errorf("%s: %s/%s: an identity policy statement needs resources", s.rng, s.doc, s.sid)
		}
		if !s.wildcard {
			continue
		}
		for _, a := range s.actions {
			if _, ok := wildcardResourceActions[a]; !ok {
				t.Errorf(`%s: %s/%s grants %s on Resource "*"; scope it, or add it to wildcardResourceActions with the reason AWS offers nothing narrower`, s.rng, s.doc, s.sid, a)
			}
			usedExceptions[a] = true
		}
	}
	for a := range wildcardResourceActions {
		if !usedExceptions[a] {
			t.Errorf("wildcardResourceActions lists %s, which no statement grants on \"*\": remove it", a)
		}
	}
}

// TestControllerPolicyCoversTheAWSPlatformAndScopesEveryChangeByTagOrCondition
// holds the controller task role to what controller/aws calls
// (controllerActions, read from its source): every call granted, nothing
// else granted, every change limited by a condition.
func TestControllerPolicyCoversTheAWSPlatformAndScopesEveryChangeByTagOrCondition(t *testing.T) {
	m := loadModule(t)
	controllerActions := controllerActions(t)
	granted := map[string]bool{}
	for _, s := range policyStatements(t, m) {
		if s.doc != "controller_task" || s.effect != "Allow" {
			continue
		}
		for _, a := range s.actions {
			granted[a] = true
			if _, called := controllerActions[a]; !called {
				t.Errorf("%s: controller_task/%s grants %s, which the AWS platform does not call (controller/aws, non-test code)", s.rng, s.sid, a)
			}
			if isRead(a) || s.conditions > 0 {
				continue
			}
			if _, ok := untaggableMutations[a]; !ok {
				t.Errorf("%s: controller_task/%s grants %s without a condition (tag, cluster or service)", s.rng, s.sid, a)
			}
		}
	}
	for _, a := range sortedKeys(controllerActions) {
		if !granted[a] {
			t.Errorf("the controller's policy does not grant %s, which the AWS platform calls at %s", a, controllerActions[a])
		}
	}
}

func TestWebappTaskRoleHasNoPermissions(t *testing.T) {
	m := loadModule(t)
	if m.resources["aws_iam_role.webapp_task"] == nil {
		t.Fatal("aws_iam_role.webapp_task is missing (the controller config's taskRoleArn)")
	}
	for key, b := range m.resources {
		typ := strings.SplitN(key, ".", 2)[0]
		if !strings.HasPrefix(typ, "aws_iam_") || typ == "aws_iam_role" {
			continue
		}
		for _, a := range b.Body.Attributes {
			for _, tr := range a.Expr.Variables() {
				if tr.RootName() == "aws_iam_role" && len(tr) > 1 && tr[1].(hcl.TraverseAttr).Name == "webapp_task" {
					t.Errorf("%s: %s gives the web app task role permissions; it needs none", b.DefRange(), key)
				}
			}
		}
	}
}

// TestPoliciesAreDocumentsAndNotManagedPolicies makes every policy
// readable by the tests above: inline JSON or AWS managed policies would
// escape them.
func TestPoliciesAreDocumentsAndNotManagedPolicies(t *testing.T) {
	m := loadModule(t)
	policyAttrs := map[string][]string{
		"aws_iam_role":                     {"assume_role_policy"},
		"aws_iam_role_policy":              {"policy"},
		"aws_iam_policy":                   {"policy"},
		"aws_efs_file_system_policy":       {"policy"},
		"aws_secretsmanager_secret_policy": {"policy"},
		"aws_ecr_repository_policy":        {"policy"},
		"aws_s3_bucket_policy":             {"policy"},
		"aws_kms_key":                      {"policy"},
	}
	for key, b := range m.resources {
		typ := strings.SplitN(key, ".", 2)[0]
		switch typ {
		case "aws_iam_role_policy_attachment", "aws_iam_policy_attachment", "aws_iam_user_policy", "aws_iam_group_policy":
			t.Errorf("%s: %s: attach document-based inline policies to roles instead", b.DefRange(), key)
		}
		if _, ok := b.Body.Attributes["managed_policy_arns"]; ok {
			t.Errorf("%s: %s: managed policies escape the least-privilege tests", b.DefRange(), key)
		}
		for _, name := range policyAttrs[typ] {
			a, ok := b.Body.Attributes[name]
			if !ok {
				continue
			}
			st, ok := a.Expr.(*hclsyntax.ScopeTraversalExpr)
			if !ok || st.Traversal.RootName() != "data" || len(st.Traversal) != 4 ||
				st.Traversal[1].(hcl.TraverseAttr).Name != "aws_iam_policy_document" ||
				st.Traversal[3].(hcl.TraverseAttr).Name != "json" {
				t.Errorf("%s: %s.%s must be data.aws_iam_policy_document.<name>.json", a.SrcRange, key, name)
			}
		}
	}
}

func isRead(action string) bool {
	op := action[strings.IndexByte(action, ':')+1:]
	for _, p := range []string{"Describe", "List", "Get", "BatchGet", "BatchCheck"} {
		if strings.HasPrefix(op, p) {
			return true
		}
	}
	return false
}

// --- Controller config ------------------------------------------------------------

// configPlaceholders stand in for values known only after apply, so the
// rendered config can be run through controller/config's own validation.
var configPlaceholders = map[string]any{
	"defaultImage":                 "123456789012.dkr.ecr.eu-west-1.amazonaws.com/servingapp-webapp:v1.0.0",
	"trustedProxies":               []string{"10.20.0.0/24", "10.20.1.0/24", "10.20.2.0/24"},
	"nats.url":                     "tls://nats-0.servingapp.internal:4222,tls://nats-1.servingapp.internal:4222,tls://nats-2.servingapp.internal:4222",
	"nats.appUrl":                  "tls://nats-0.servingapp.internal:4222,tls://nats-1.servingapp.internal:4222,tls://nats-2.servingapp.internal:4222",
	"nats.appCredsSecret":          "arn:aws:secretsmanager:eu-west-1:123456789012:secret:servingapp/nats/webapp-creds-AbCdEf",
	"streams.replicas":             3,
	"aws.cluster":                  "servingapp",
	"aws.listenerArn":              "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/servingapp-apps/50dc6c495c0c9188/f2f7dc8efc522ab2",
	"aws.vpcId":                    "vpc-0abc1234def567890",
	"aws.subnets":                  []string{"subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"},
	"aws.securityGroups":           []string{"sg-0123456789abcdef0"},
	"aws.executionRoleArn":         "arn:aws:iam::123456789012:role/servingapp-app-execution",
	"aws.taskRoleArn":              "arn:aws:iam::123456789012:role/servingapp-webapp-task",
	"aws.logGroup":                 "/servingapp/apps",
	"databricks.credentialsSecret": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:servingapp/databricks/account-sp-AbCdEf",
}

// TestControllerConfigIsWhatTheControllerAccepts renders local.controller_config
// — variables from terraform.tfvars.example and defaults, locals resolved,
// placeholders for what only apply knows — and parses it with
// controller/config, which rejects unknown fields and invalid values.
func TestControllerConfigIsWhatTheControllerAccepts(t *testing.T) {
	m := loadModule(t)
	a := m.locals["controller_config"]
	if a == nil {
		t.Fatal("local.controller_config is missing")
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": variableValues(t, m)}}
	usedPlaceholders := map[string]bool{}
	var render func(path string, typ reflect.Type, expr hclsyntax.Expression) any
	render = func(path string, typ reflect.Type, expr hclsyntax.Expression) any {
		expr = m.resolveLocal(expr)
		if fields := jsonFields(typ); fields != nil {
			obj, ok := expr.(*hclsyntax.ObjectConsExpr)
			if !ok {
				t.Errorf("%s: %s must be an object", expr.Range(), path)
				return nil
			}
			out := map[string]any{}
			for _, item := range obj.Items {
				k := keyOf(item.KeyExpr)
				ft, known := fields[k]
				if !known {
					t.Errorf("%s: %s has no field %q (controller/config would reject the file)", item.KeyExpr.Range(), cmp.Or(path, "the config"), k)
					continue
				}
				out[k] = render(strings.TrimPrefix(path+"."+k, "."), ft, item.ValueExpr)
			}
			return out
		}
		if v, ok := configPlaceholders[path]; ok {
			usedPlaceholders[path] = true
			return v
		}
		val, diags := expr.Value(ctx)
		if diags.HasErrors() {
			t.Errorf("%s: %s depends on something only apply knows; add a placeholder to configPlaceholders (%s)", expr.Range(), path, diags.Error())
			return nil
		}
		return toGo(t, val)
	}
	tree := render("", reflect.TypeFor[config.Config](), a.Expr)
	for p := range configPlaceholders {
		if !usedPlaceholders[p] {
			t.Errorf("configPlaceholders has %q, which controller_config does not compute: remove it", p)
		}
	}
	doc, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(doc)
	if err != nil {
		t.Fatalf("controller/config rejects the rendered config:\n%v\n%s", err, doc)
	}
	if c.Platform != config.PlatformAWS || c.Streams.Replicas != 3 || c.AWS.AssignPublicIP {
		t.Errorf("unexpected config: platform %q, stream replicas %d, public IPs %v", c.Platform, c.Streams.Replicas, c.AWS.AssignPublicIP)
	}
}

// resolveLocal follows local.X references to X's expression.
func (m *module) resolveLocal(expr hclsyntax.Expression) hclsyntax.Expression {
	for range 10 {
		st, ok := expr.(*hclsyntax.ScopeTraversalExpr)
		if !ok || st.Traversal.RootName() != "local" || len(st.Traversal) != 2 {
			return expr
		}
		a := m.locals[st.Traversal[1].(hcl.TraverseAttr).Name]
		if a == nil {
			return expr
		}
		expr = a.Expr
	}
	return expr
}

// jsonFields returns the JSON field names of a struct type that decodes field
// by field, or nil for a leaf (scalars, slices, maps, custom unmarshalers).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return nil
	}
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = f.Type
		}
	}
	return out
}

// variableValues is var.* as terraform.tfvars.example and the defaults set it.
func variableValues(t *testing.T, m *module) cty.Value {
	t.Helper()
	vals := map[string]cty.Value{"image_tag": cty.StringVal("v1.0.0")}
	for name, b := range m.variables {
		if d, ok := b.Body.Attributes["default"]; ok {
			v, diags := d.Expr.Value(nil)
			if diags.HasErrors() {
				t.Fatalf("%s: default of %s is not a literal", d.SrcRange, name)
			}
			vals[name] = v
		}
	}
	for name, v := range tfvarsExample(t) {
		vals[name] = v
	}
	return cty.ObjectVal(vals)
}

func tfvarsExample(t *testing.T) map[string]cty.Value {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile("terraform.tfvars.example")
	if diags.HasErrors() {
		t.Fatalf("terraform.tfvars.example: %s", diags.Error())
	}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		t.Fatalf("terraform.tfvars.example: %s", diags.Error())
	}
	out := map[string]cty.Value{}
	for name, a := range attrs {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("terraform.tfvars.example: %s is not a literal: %s", name, diags.Error())
		}
		out[name] = v
	}
	return out
}

func toGo(t *testing.T, v cty.Value) any {
	t.Helper()
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// --- helpers ---------------------------------------------------------------------

func literalString(expr hclsyntax.Expression) string {
	switch e := expr.(type) {
	case *hclsyntax.LiteralValueExpr:
		if e.Val.Type() == cty.String {
			return e.Val.AsString()
		}
	case *hclsyntax.TemplateExpr:
		if len(e.Parts) == 1 {
			return literalString(e.Parts[0])
		}
	}
	return ""
}

func keyOf(expr hclsyntax.Expression) string {
	if k := hcl.ExprAsKeyword(expr); k != "" {
		return k
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() || v.Type() != cty.String {
		return ""
	}
	return v.AsString()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
