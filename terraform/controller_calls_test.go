package terraform

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The controller task role must allow exactly what the controller calls. The
// calls are read from the source of the AWS platform rather than kept by
// hand, so a new SDK call without its grant (or a grant left behind by a
// removed call) fails here instead of in production.

// controllerAWSPackage holds every AWS SDK call the controller makes;
// TestOnlyTheAWSPlatformCallsAWSFromTheController keeps it that way.
const controllerAWSPackage = "github.com/servingapp/servingapp/controller/aws"

// sdkServices are the SDK packages the controller uses, with their IAM
// service prefixes. For these services every IAM action is named after its
// API operation, which is the client method's name.
var sdkServices = map[string]string{
	"github.com/aws/aws-sdk-go-v2/service/ecs":                    "ecs",
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2": "elasticloadbalancing",
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager":         "secretsmanager",
}

// impliedActions are authorized as part of a call the code makes, although
// the code never calls them itself; each says why.
var impliedActions = map[string]map[string]string{
	"ecs:CreateService": {
		"ecs:TagResource": "tags in the request are authorized as ecs:TagResource (ecs:CreateAction = CreateService)",
	},
	"ecs:RegisterTaskDefinition": {
		"ecs:TagResource": "tags in the request are authorized as ecs:TagResource (ecs:CreateAction = RegisterTaskDefinition)",
		"iam:PassRole":    "the task definition names the app execution role and the web app task role",
	},
	"elasticloadbalancing:CreateTargetGroup": {
		"elasticloadbalancing:AddTags": "tags in the request are authorized as AddTags (elasticloadbalancing:CreateAction = CreateTargetGroup)",
	},
	"elasticloadbalancing:CreateRule": {
		"elasticloadbalancing:AddTags": "tags in the request are authorized as AddTags (elasticloadbalancing:CreateAction = CreateRule)",
	},
	"secretsmanager:CreateSecret": {
		"secretsmanager:TagResource": "tags in the request are authorized as secretsmanager:TagResource",
	},
}

var (
	// The SDK's constructors that take a client and call it later.
	paginatorCtor = regexp.MustCompile(`^New(\w+)Paginator$`)
	waiterCtor    = regexp.MustCompile(`^New\w+Waiter$`)
)

// controllerActions is every IAM action the AWS platform needs: the SDK
// operations its non-test code calls (scanAWSCalls), plus what those calls
// imply. Each action maps to the first call site found.
func controllerActions(t *testing.T) map[string]string {
	t.Helper()
	actions, problems := scanAWSCalls(filepath.Join("..", "controller", "aws"))
	for _, p := range problems {
		t.Error(p)
	}
	called := map[string]bool{}
	for a := range actions {
		called[a[:strings.IndexByte(a, ':')]] = true
	}
	for _, svc := range sdkServices {
		if !called[svc] {
			t.Fatalf("no %s calls found in controller/aws: is scanAWSCalls out of date?", svc)
		}
	}
	for call, implied := range impliedActions {
		if site, ok := actions[call]; ok {
			for a := range implied {
				if _, ok := actions[a]; !ok {
					actions[a] = site + " (implied by " + call + ")"
				}
			}
		}
	}
	return actions
}

// scanAWSCalls returns the IAM actions of the SDK operations the non-test Go
// files of dir call on the fields of their clients struct (see
// controller/aws/clients.go), directly (p.c.ecs.DescribeServices) or through
// a paginator (ecs.NewListServicesPaginator(p.c.ecs, ...)), each with its
// first call site. problems lists whatever would make the result incomplete:
// a client used any other way (stored, passed on, a method value), a waiter,
// or no clients struct.
func scanAWSCalls(dir string) (actions map[string]string, problems []string) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, []string{err.Error()}
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, []string{fmt.Sprintf("parse %s: %v", p, err)}
		}
		files = append(files, f)
	}
	problem := func(pos token.Pos, format string, args ...any) {
		problems = append(problems, fset.Position(pos).String()+": "+fmt.Sprintf(format, args...))
	}

	// The clients struct's fields, by IAM service prefix.
	fields := map[string]string{} // field name → service prefix
	for _, f := range files {
		imports := sdkImports(f)
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || ts.Name.Name != "clients" {
				return true
			}
			if st, ok := ts.Type.(*ast.StructType); ok {
				for _, fld := range st.Fields.List {
					if svc := clientService(fld.Type, imports); svc != "" {
						for _, name := range fld.Names {
							fields[name.Name] = svc
						}
					}
				}
			}
			return false
		})
	}
	if len(fields) == 0 {
		return nil, []string{fmt.Sprintf("%s: no clients struct with SDK clients (*ecs.Client, ...): is scanAWSCalls out of date?", dir)}
	}

	actions = map[string]string{}
	add := func(action string, pos token.Pos) {
		if _, ok := actions[action]; !ok {
			actions[action] = fset.Position(pos).String()
		}
	}
	// client returns the service of a client field selector such as p.c.ecs.
	client := func(e ast.Expr) (*ast.SelectorExpr, string) {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return nil, ""
		}
		return sel, fields[sel.Sel.Name]
	}
	for _, f := range files {
		imports := sdkImports(f)
		accounted := map[*ast.SelectorExpr]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			fun, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if sel, svc := client(fun.X); svc != "" {
				add(svc+":"+fun.Sel.Name, call.Pos())
				accounted[sel] = true
				return true
			}
			pkg, ok := fun.X.(*ast.Ident)
			if !ok || imports[pkg.Name] == "" || len(call.Args) == 0 {
				return true
			}
			sel, svc := client(call.Args[0])
			if svc == "" {
				return true
			}
			switch {
			case paginatorCtor.MatchString(fun.Sel.Name):
				if svc != imports[pkg.Name] {
					problem(call.Pos(), "a %s paginator over the %s client", imports[pkg.Name], svc)
				}
				add(imports[pkg.Name]+":"+paginatorCtor.FindStringSubmatch(fun.Sel.Name)[1], call.Pos())
				accounted[sel] = true
			case waiterCtor.MatchString(fun.Sel.Name):
				problem(call.Pos(), "%s.%s: teach scanAWSCalls which operations this waiter calls", pkg.Name, fun.Sel.Name)
				accounted[sel] = true
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, svc := client(asExpr(n)); svc != "" && !accounted[sel] {
				problem(sel.Pos(), "the %s client is used in a way scanAWSCalls cannot follow: call its methods (or a paginator) where it is used", svc)
			}
			return true
		})
	}
	return actions, problems
}

// sdkImports maps a file's names for the sdkServices packages to their IAM
// service prefixes.
func sdkImports(f *ast.File) map[string]string {
	out := map[string]string{}
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			continue // the parser accepted it, so this cannot happen
		}
		svc, ok := sdkServices[path]
		if !ok {
			continue
		}
		name := path[strings.LastIndexByte(path, '/')+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		out[name] = svc
	}
	return out
}

// clientService returns the service prefix of a *<sdk package>.Client type.
func clientService(typ ast.Expr, imports map[string]string) string {
	star, ok := typ.(*ast.StarExpr)
	if !ok {
		return ""
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Client" {
		return ""
	}
	pkg, ok := sel.X.(*ast.Ident)
	if !ok {
		return ""
	}
	return imports[pkg.Name]
}

func asExpr(n ast.Node) ast.Expr {
	e, _ := n.(ast.Expr)
	return e
}

// TestOnlyTheAWSPlatformCallsAWSFromTheController keeps controllerActions
// complete: no other package linked into the controller may use an AWS
// service client, and the AWS platform may use only the services above.
func TestOnlyTheAWSPlatformCallsAWSFromTheController(t *testing.T) {
	out, err := exec.Command("go", "list", "-e", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../cmd/servingapp-controller").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sawPlatform := false
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "github.com/servingapp/servingapp/") {
			continue
		}
		pkg := fields[0]
		sawPlatform = sawPlatform || pkg == controllerAWSPackage
		for _, imp := range fields[1:] {
			// A service's client is its package; subpackages (types,
			// document) hold no calls.
			svc, isService := strings.CutPrefix(imp, "github.com/aws/aws-sdk-go-v2/service/")
			if !isService || strings.Contains(svc, "/") {
				continue
			}
			switch _, known := sdkServices[imp]; {
			case pkg != controllerAWSPackage:
				t.Errorf("%s imports %s: the controller's AWS calls belong in controller/aws, where controllerActions finds them for the IAM policy", pkg, imp)
			case !known:
				t.Errorf("controller/aws imports %s: add it to sdkServices so its calls are checked against the controller's IAM policy", imp)
			}
		}
	}
	if !sawPlatform {
		t.Fatalf("the controller does not link %s: update this test", controllerAWSPackage)
	}
}

// TestScanAWSCallsFindsEveryCallOrSaysWhyItCannot runs the scan on small
// packages: it must find calls however the SDK is imported, and refuse uses
// of a client it cannot follow rather than miss their calls.
func TestScanAWSCallsFindsEveryCallOrSaysWhyItCannot(t *testing.T) {
	const clients = `package aws

import (
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

type clients struct {
	ecs *ecs.Client
	lb  *elb.Client
}

type platform struct{ c clients }
`
	for _, tc := range []struct {
		name, src   string
		wantActions []string
		wantProblem string
	}{
		{"a direct call", `p.c.ecs.DescribeServices(ctx, nil)`, []string{"ecs:DescribeServices"}, ""},
		{"a call on an aliased package's client", `p.c.lb.CreateRule(ctx, nil)`, []string{"elasticloadbalancing:CreateRule"}, ""},
		{"a paginator", `elbv2.NewDescribeRulesPaginator(p.c.lb, nil)`, []string{"elasticloadbalancing:DescribeRules"}, ""},
		{"a waiter", `ecs.NewServicesStableWaiter(p.c.ecs, nil)`, nil, "teach scanAWSCalls"},
		{"a client passed on", `use(p.c.ecs)`, nil, "cannot follow"},
		{"a client stored", `x := p.c.ecs; _ = x`, nil, "cannot follow"},
		{"a method value", `f := p.c.ecs.DeleteService; _ = f`, nil, "cannot follow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := `package aws

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

var _ = ecs.NewFromConfig
var _ = elbv2.NewFromConfig

func use(any) {}

func (p *platform) run(ctx context.Context) {
	` + tc.src + `
}
`
			for name, content := range map[string]string{
				"clients.go": clients,
				"run.go":     src,
				// Tests may call anything: their calls need no grant.
				"run_test.go": "package aws\n\nfunc (p *platform) test() { p.c.ecs.DeleteCluster(nil, nil); use(p.c.lb) }\n",
			} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			actions, problems := scanAWSCalls(dir)
			if got := sortedKeys(actions); !slices.Equal(got, tc.wantActions) {
				t.Errorf("actions %q, want %q", got, tc.wantActions)
			}
			switch {
			case tc.wantProblem == "" && len(problems) > 0:
				t.Errorf("unexpected problems: %q", problems)
			case tc.wantProblem != "" && (len(problems) != 1 || !strings.Contains(problems[0], tc.wantProblem)):
				t.Errorf("problems %q, want one saying %q", problems, tc.wantProblem)
			}
		})
	}
}
