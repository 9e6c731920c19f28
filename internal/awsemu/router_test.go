package awsemu

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func TestClassifyByTargetAndCredentialScope(t *testing.T) {
	const scope = "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/%s/aws4_request, SignedHeaders=host, Signature=x"
	tests := []struct {
		name, method, path, target, contentType, auth, body string
		wantService, wantOp                                 string
		wantProto                                           protocol
	}{
		{"ECS by target", "POST", "/", "AmazonEC2ContainerServiceV20141113.DescribeServices", "application/x-amz-json-1.1", "", "{}", ServiceECS, "DescribeServices", protoJSON},
		{"Secrets Manager by target", "POST", "/", "secretsmanager.GetSecretValue", "application/x-amz-json-1.1", "", "{}", ServiceSecretsManager, "GetSecretValue", protoJSONPascal},
		{"ELBv2 by credential scope", "POST", "/", "", "application/x-www-form-urlencoded; charset=utf-8", strings.ReplaceAll(scope, "%s", "elasticloadbalancing"), "Action=CreateRule&Version=2015-12-01", ServiceELBv2, "CreateRule", protoQuery},
		{"unsigned ELBv2 by API version", "POST", "/", "", "application/x-www-form-urlencoded", "", "Action=DescribeRules&Version=2015-12-01", ServiceELBv2, "DescribeRules", protoQuery},
		{"another Query service by scope", "POST", "/", "", "application/x-www-form-urlencoded", strings.ReplaceAll(scope, "%s", "sts"), "Action=GetCallerIdentity&Version=2011-06-15", "sts", "GetCallerIdentity", protoQuery},
		{"another JSON service by scope", "POST", "/", "DynamoDB_20120810.GetItem", "application/x-amz-json-1.0", strings.ReplaceAll(scope, "%s", "dynamodb"), "{}", "dynamodb", "GetItem", protoJSON},
		{"the path does not matter", "POST", "/some/path", "AmazonEC2ContainerServiceV20141113.ListServices", "application/x-amz-json-1.1", "", "{}", ServiceECS, "ListServices", protoJSON},
		{"REST request", "GET", "/bucket/key", "", "", strings.ReplaceAll(scope, "%s", "s3"), "", "s3", "GET /bucket/key", protoREST},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.target != "" {
				r.Header.Set("X-Amz-Target", tc.target)
			}
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			got := classify(r, []byte(tc.body))
			if got.service != tc.wantService || got.operation != tc.wantOp || got.proto != tc.wantProto {
				t.Errorf("classify = %s %s %d, want %s %s %d", got.service, got.operation, got.proto, tc.wantService, tc.wantOp, tc.wantProto)
			}
		})
	}
}

func TestOtherServicesAreForwardedToKumo(t *testing.T) {
	srv, c := newTestServer(t, Options{})
	out := must(sts.NewFromConfig(c.cfg).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{}))(t)
	if aws.ToString(out.Account) == "" {
		t.Errorf("GetCallerIdentity through kumo returned no account")
	}
	if got := srv.Calls()[CallKey{"sts", "GetCallerIdentity", OutcomeOK}]; got != 1 {
		t.Errorf("calls = %v, want one successful sts GetCallerIdentity", srv.Calls())
	}
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := srv.Calls().Operation("unknown", "GET /"); got != 1 {
		t.Errorf("unsigned REST request counted %d times under unknown/GET /", got)
	}
}

func TestCallAccounting(t *testing.T) {
	srv, c := newTestServer(t, Options{})
	must(c.ecs.CreateCluster(ctx(t), &ecs.CreateClusterInput{ClusterName: aws.String("c")}))(t)
	must(c.sm.CreateSecret(ctx(t), &sm.CreateSecretInput{Name: aws.String("s"), SecretString: aws.String("v")}))(t)
	before := srv.Calls()

	// A "second reconcile": reads only, one of them failing.
	must(c.ecs.DescribeClusters(ctx(t), &ecs.DescribeClustersInput{Clusters: []string{"c"}}))(t)
	must(c.sm.DescribeSecret(ctx(t), &sm.DescribeSecretInput{SecretId: aws.String("s")}))(t)
	_, err := c.sm.GetSecretValue(ctx(t), &sm.GetSecretValueInput{SecretId: aws.String("missing")})
	wantCode(t, err, "ResourceNotFoundException")

	delta := srv.Calls().Since(before)
	if delta.Mutating() != 0 || delta.Reads() != 3 || delta.Total() != 3 {
		t.Errorf("delta = %v: want 0 mutating and 3 reads", delta)
	}
	if got := delta[CallKey{ServiceSecretsManager, "GetSecretValue", OutcomeClientError}]; got != 1 {
		t.Errorf("failed GetSecretValue counted %d times as a client error", got)
	}
	all := srv.Calls()
	if all.Operation(ServiceECS, "CreateCluster") != 1 || all.Mutating() != 2 || all.Outcome(OutcomeOK) != 4 {
		t.Errorf("all calls = %v", all)
	}
	if n := all.Where(func(k CallKey) bool { return k.Service == ServiceECS }).Total(); n != 2 {
		t.Errorf("ECS calls = %d, want 2", n)
	}
	srv.ResetCalls()
	if n := srv.Calls().Total(); n != 0 {
		t.Errorf("after ResetCalls: %d calls", n)
	}
}

func TestIsReadOperation(t *testing.T) {
	tests := map[string]bool{
		"DescribeServices": true, "ListTagsForResource": true, "GetSecretValue": true, "DescribeTags": true,
		"CreateService": false, "UpdateService": false, "RegisterTaskDefinition": false, "DeregisterTaskDefinition": false,
		"TagResource": false, "UntagResource": false, "AddTags": false, "ModifyRule": false, "SetRulePriorities": false,
		"PutSecretValue": false, "RestoreSecret": false, "DeleteSecret": false,
	}
	for op, read := range tests {
		if IsReadOperation(op) != read || IsMutatingOperation(op) == read {
			t.Errorf("IsReadOperation(%s) = %v, want %v", op, IsReadOperation(op), read)
		}
	}
}

// allowed evaluates listener rules like the ALB for a request from addr to
// host: the first matching rule by priority decides; it must forward.
func allowed(rules []elbtypes.Rule, host string, addr netip.Addr) bool {
	for _, r := range rules {
		if aws.ToBool(r.IsDefault) {
			return false
		}
		match := true
		for _, c := range r.Conditions {
			switch aws.ToString(c.Field) {
			case "host-header":
				match = match && slices.Contains(c.HostHeaderConfig.Values, host)
			case "source-ip":
				match = match && slices.ContainsFunc(c.SourceIpConfig.Values, func(cidr string) bool {
					return netip.MustParsePrefix(cidr).Contains(addr)
				})
			}
		}
		if match {
			return r.Actions[0].Type == elbtypes.ActionTypeEnumForward
		}
	}
	return false
}

func TestCallHookObservesEveryIntermediateState(t *testing.T) {
	const host = "app.example.com"
	stays := netip.MustParseAddr("198.51.100.7")
	tests := []struct {
		name           string
		createFirst    bool
		wantViolations int32
	}{
		{"create the new rule before deleting the old one", true, 0},
		{"delete the old rule before creating the new one", false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := newTestServer(t, Options{})
			f := newFixture(t, c, "hook")
			old := must(c.elb.CreateRule(ctx(t), &elb.CreateRuleInput{ListenerArn: aws.String(f.listenerArn), Priority: aws.Int32(10),
				Conditions: []elbtypes.RuleCondition{hostCondition(host), sourceIPCondition("203.0.113.0/24", "198.51.100.7/32")}, Actions: forwardTo(f.tgArn)}))(t)

			var violations, observed atomic.Int32
			srv.SetCallHook(func(k CallKey) {
				if k.Service != ServiceELBv2 || !IsMutatingOperation(k.Operation) {
					return
				}
				observed.Add(1)
				rules, err := srv.ListenerRules(f.listenerArn)
				if err != nil {
					t.Errorf("ListenerRules: %v", err)
				}
				if !allowed(rules, host, stays) {
					violations.Add(1)
				}
			})
			create := func() {
				must(c.elb.CreateRule(ctx(t), &elb.CreateRuleInput{ListenerArn: aws.String(f.listenerArn), Priority: aws.Int32(11),
					Conditions: []elbtypes.RuleCondition{hostCondition(host), sourceIPCondition("198.51.100.7/32", "192.0.2.0/24")}, Actions: forwardTo(f.tgArn)}))(t)
			}
			remove := func() {
				must(c.elb.DeleteRule(ctx(t), &elb.DeleteRuleInput{RuleArn: old.Rules[0].RuleArn}))(t)
			}
			if tc.createFirst {
				create()
				remove()
			} else {
				remove()
				create()
			}
			if observed.Load() != 2 || violations.Load() != tc.wantViolations {
				t.Errorf("observed %d mutating calls with %d violations, want 2 with %d", observed.Load(), violations.Load(), tc.wantViolations)
			}
			srv.SetCallHook(nil)
		})
	}
}
