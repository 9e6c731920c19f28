package aws

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/awsemu"
)

// crash is how a reconcile or a deletion is cut off at its call k+1.
type crash struct {
	name string
	// faults cut the work off at call k+1 (After counts the calls let through).
	faults func(k int) []awsemu.Fault
	// restart says the process dies: a fresh platform carries on. Without
	// it the same platform carries on (the SDK's retry of the lost call
	// got through).
	restart bool
	// lastK is the last k to try given the number of calls of the work.
	lastK func(total int) int
}

// lostKind alternates how an answer is lost, so both kinds are covered
// without trying every call twice.
func lostKind(k int) awsemu.FaultKind {
	if k%2 == 0 {
		return awsemu.FaultResponseLost
	}
	return awsemu.FaultConnectionDropped
}

var crashes = []crash{
	// Every call from the (k+1)th on fails before it takes effect.
	{"cut off", func(k int) []awsemu.Fault {
		return []awsemu.Fault{{Kind: awsemu.FaultServerError, Fraction: 1, After: k}}
	}, true, func(total int) int { return total }},
	// Call k+1 takes effect, its answer is lost, and the process dies: its
	// SDK retries and every later call fail.
	{"answer lost then dead", func(k int) []awsemu.Fault {
		return []awsemu.Fault{
			{Kind: lostKind(k), Fraction: 1, After: k, Limit: 1},
			{Kind: awsemu.FaultServerError, Fraction: 1, After: k + 1},
		}
	}, true, func(total int) int { return total - 1 }},
	// Call k+1 takes effect, its answer is lost, and the SDK's retry sends
	// it again in the same process.
	{"answer lost and retried", func(k int) []awsemu.Fault {
		return []awsemu.Fault{{Kind: lostKind(k), Fraction: 1, After: k, Limit: 1}}
	}, false, func(total int) int { return total - 1 }},
}

// eachCrash runs check in a parallel subtest for every crash and every call
// it can cut off. Each subtest has an emulator of its own.
func eachCrash(t *testing.T, total int, check func(t *testing.T, c crash, k int)) {
	for _, c := range crashes {
		for k := range c.lastK(total) + 1 {
			t.Run(fmt.Sprintf("%s at call %d", c.name, k+1), func(t *testing.T) {
				t.Parallel()
				check(t, c, k)
			})
		}
	}
}

// wantOutcome checks how the work cut off by c at call k+1 of total ended:
// a crash that cut a call off must fail; a lost answer the SDK retried must
// not, because every call is idempotent or recognises what its lost first
// attempt did.
func wantOutcome(t *testing.T, c crash, k, total int, err error) {
	t.Helper()
	switch {
	case c.restart && k < total && err == nil:
		t.Fatal("succeeded although calls failed")
	case !c.restart && err != nil:
		t.Errorf("failed after the SDK's retry of the lost call: %v", err)
	}
}

func TestCrashAfterAnyCallConvergesToExactlyOneOfEach(t *testing.T) {
	original := func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(5) }
	changed := func(s *v1.ServingApp) {
		s.Spec.Allowlist = append(cidrs(7)[2:], "203.0.113.0/24")
		s.Spec.Image = "registry.example.com/webapp:2"
		s.Metadata.Generation = 2
	}
	tests := []struct {
		name   string
		before []func(*v1.ServingApp) // converged before the crash, if any
		spec   []func(*v1.ServingApp) // applied when the crash comes
		want   inventory
	}{
		{"cold create", nil, []func(*v1.ServingApp){original},
			inventory{services: 1, targetGroups: 1, rules: 2, revisions: 1, sessionKeys: 1, taggedSecrets: 1}},
		{"image and allowlist change", []func(*v1.ServingApp){original}, []func(*v1.ServingApp){original, changed},
			inventory{services: 1, targetGroups: 1, rules: 2, revisions: 2, sessionKeys: 1, taggedSecrets: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setup := func(t *testing.T) (*env, *model.App) {
				e := newEnv(t)
				if tc.before != nil {
					e.converge(e.platform(), app(t, "crashy", tc.before...))
					e.later()
				}
				return e, app(t, "crashy", tc.spec...)
			}
			// Count the calls of the reconcile that crashes.
			probe, a := setup(t)
			before := probe.srv.Calls()
			if _, err := reconcile(context.Background(), probe.platform(), a, &events{}); err != nil {
				t.Fatal(err)
			}
			total := probe.srv.Calls().Since(before).Total()
			t.Logf("crashing at each of %d calls", total)
			eachCrash(t, total, func(t *testing.T, c crash, k int) {
				e, a := setup(t)
				if err := e.srv.SetFaults(c.faults(k)...); err != nil {
					t.Fatal(err)
				}
				p := e.platform()
				_, err := reconcile(context.Background(), p, a, &events{})
				wantOutcome(t, c, k, total, err)
				e.srv.ClearFaults()
				e.later()
				if c.restart {
					p = e.platform()
				}
				obs := e.converge(p, a)
				if got := e.inventory(p, a.Ref); got != tc.want {
					t.Errorf("%+v, want %+v", got, tc.want)
				}
				var sources []string
				for _, r := range e.appRules(a.Ref) {
					for _, c := range r.Conditions {
						if c.SourceIpConfig != nil {
							sources = append(sources, c.SourceIpConfig.Values...)
						}
					}
				}
				if want := allowlistValues(a.Allowlist); !sameSet(sources, want) {
					t.Errorf("sources %v, want %v", sources, want)
				}
				if svc, _ := e.service(p.names(a.Ref).Service); awssdk.ToString(svc.TaskDefinition) != obs.Resources.TaskDefinitionARN {
					t.Errorf("service runs %s, want %s", awssdk.ToString(svc.TaskDefinition), obs.Resources.TaskDefinitionARN)
				}
			})
		})
	}
}

// finalize is what the controller's finalizer does with the platform:
// observe, then delete.
func finalize(ctx context.Context, p *Platform, a *model.App) error {
	obs, err := p.Observe(ctx, a)
	if err != nil {
		return err
	}
	return p.Delete(ctx, a, obs, false, &events{})
}

func TestCrashDuringDeleteConvergesToNothingOfOurs(t *testing.T) {
	ctx := context.Background()
	// An app with allow and block rules and two task definition revisions,
	// beside a rule on its host that is not ours (and the env's foreign
	// rule on another host).
	setup := func(t *testing.T) (e *env, a *model.App, theirs string) {
		e = newEnv(t)
		p := e.platform()
		e.converge(p, app(t, "doomed", func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(5) }))
		a = app(t, "doomed", func(s *v1.ServingApp) {
			s.Spec.Allowlist = cidrs(5)
			s.Spec.Image = "registry.example.com/webapp:2"
			s.Metadata.Generation = 2
		})
		e.converge(p, a)
		if err := p.SetBlocked(ctx, a.Ref, []netip.Addr{netip.MustParseAddr("198.51.0.7"), netip.MustParseAddr("198.51.1.7")}); err != nil {
			t.Fatal(err)
		}
		rule := must(e.raw.elb.CreateRule(ctx, &elb.CreateRuleInput{
			ListenerArn: awssdk.String(e.listenerARN), Priority: awssdk.Int32(30000),
			Conditions: []elbtypes.RuleCondition{
				{Field: awssdk.String("host-header"), HostHeaderConfig: &elbtypes.HostHeaderConditionConfig{Values: []string{a.Host}}},
				{Field: awssdk.String("path-pattern"), PathPatternConfig: &elbtypes.PathPatternConditionConfig{Values: []string{"/legacy/*"}}},
			},
			Actions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{
				StatusCode: awssdk.String("410"), ContentType: awssdk.String("text/plain"), MessageBody: awssdk.String("gone"),
			}}},
		}))(t)
		e.later()
		return e, a, awssdk.ToString(rule.Rules[0].RuleArn)
	}
	probe, a, _ := setup(t)
	if inv := probe.inventory(probe.platform(), a.Ref); inv.revisions != 2 || inv.rules != 3 {
		t.Fatalf("test premise: %+v, want 2 revisions and 3 rules (2 allow, 1 block)", inv)
	}
	before := probe.srv.Calls()
	if err := finalize(ctx, probe.platform(), a); err != nil {
		t.Fatal(err)
	}
	total := probe.srv.Calls().Since(before).Total()
	t.Logf("crashing at each of %d calls", total)
	eachCrash(t, total, func(t *testing.T, c crash, k int) {
		e, a, theirs := setup(t)
		untouched := []ruleView{findRule(e, e.foreignRule), findRule(e, theirs)}
		if err := e.srv.SetFaults(c.faults(k)...); err != nil {
			t.Fatal(err)
		}
		p := e.platform()
		wantOutcome(t, c, k, total, finalize(ctx, p, a))
		e.srv.ClearFaults()
		if c.restart {
			p = e.platform()
		}
		// The finalizer calls again until Delete returns nil.
		var err error
		for range 3 {
			e.later()
			if err = finalize(ctx, p, a); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("delete never returned nil: %v", err)
		}
		if got := e.inventory(p, a.Ref); got != (inventory{}) {
			t.Errorf("left %+v", got)
		}
		for _, was := range untouched {
			got := findRule(e, awssdk.ToString(was.RuleArn))
			if awssdk.ToString(got.Priority) != awssdk.ToString(was.Priority) || len(got.Conditions) != len(was.Conditions) ||
				len(got.Actions) != 1 || got.Actions[0].Type != was.Actions[0].Type {
				t.Errorf("a rule not ours changed: %+v, was %+v", got, was)
			}
		}
	})
}

// TestRevisionsDuplicatedByALostAnswerAreDeregistered: the SDK's retry of a
// RegisterTaskDefinition whose answer was lost registers the spec twice;
// when the controller dies before it cleans that up, the next one finds two
// identical revisions of ours and keeps one.
func TestRevisionsDuplicatedByALostAnswerAreDeregistered(t *testing.T) {
	e := newEnv(t)
	a := app(t, "twice")
	if err := e.srv.SetFaults(
		awsemu.Fault{Service: awsemu.ServiceECS, Operation: "RegisterTaskDefinition", Kind: awsemu.FaultResponseLost, Fraction: 1, Limit: 1},
		// The look-up before registering passes; the look for duplicates
		// after it, and everything else, fails: the controller is dead.
		awsemu.Fault{Service: awsemu.ServiceECS, Operation: "ListTaskDefinitions", Kind: awsemu.FaultServerError, Fraction: 1, After: 1},
	); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile(context.Background(), e.platform(), a, &events{}); err == nil {
		t.Fatal("the reconcile succeeded although it could not look for duplicates")
	}
	e.srv.ClearFaults()
	family := e.platform().names(a.Ref).Service
	if n := len(e.activeRevisions(family)); n != 2 {
		t.Fatalf("test premise: %d revisions, want the two identical ones", n)
	}
	e.later()
	p := e.platform()
	rec := &events{}
	obs, err := reconcile(context.Background(), p, a, rec)
	if err != nil {
		t.Fatal(err)
	}
	revs := e.activeRevisions(family)
	if len(revs) != 1 || revs[0] != obs.Resources.TaskDefinitionARN {
		t.Errorf("revisions %v, service runs %s: want the one it runs", revs, obs.Resources.TaskDefinitionARN)
	}
	if !slices.Contains(rec.reasons(), "TaskDefinitionsDeregistered") {
		t.Errorf("events %v lack TaskDefinitionsDeregistered", rec.reasons())
	}
}
