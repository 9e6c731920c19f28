package aws

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/awsemu"
)

func TestLongAllowlistIsSplitWithinTheConditionValueLimit(t *testing.T) {
	tests := []struct {
		prefix string
		rules  int // 12 CIDRs, 5 values a rule minus host and paths
	}{
		{"/", 4},     // host + "/*" leave 3 per rule
		{"/chat", 6}, // host + "/chat" + "/chat/*" leave 2 per rule
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			e := newEnv(t)
			p := e.platform()
			a := app(t, "wide", func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(12); s.Spec.Route.PathPrefix = tc.prefix })
			obs := e.converge(p, a)
			rules := e.appRules(a.Ref)
			if len(rules) != tc.rules {
				t.Fatalf("rules = %d, want %d", len(rules), tc.rules)
			}
			for _, r := range rules {
				if n := conditionValues(r); n > 5 {
					t.Errorf("rule %s has %d condition values", awssdk.ToString(r.RuleArn), n)
				}
				if forwardsTo(r) != obs.Resources.TargetGroupARN {
					t.Errorf("rule forwards to %q, want %s", forwardsTo(r), obs.Resources.TargetGroupARN)
				}
			}
			all := e.rules()
			for _, c := range cidrs(12) {
				addr := netip.MustParsePrefix(c).Addr().Next()
				if got := forwardsTo(routeOf(all, "wide.apps.example.com", tc.prefix+"/x", addr)); got != obs.Resources.TargetGroupARN {
					t.Errorf("request from %s goes to %q", addr, got)
				}
			}
			if got := routeOf(all, "wide.apps.example.com", tc.prefix+"/x", netip.MustParseAddr("8.8.8.8")); !awssdk.ToBool(got.IsDefault) {
				t.Errorf("a request from outside the allowlist matched rule %s", awssdk.ToString(got.RuleArn))
			}
		})
	}
}

// TestAllowlistChangeNeverCutsOffRemainingAddress checks, before every AWS
// answer of the reconcile that applies an allowlist edit, that every address
// allowed before and after the edit is routed to the app.
func TestAllowlistChangeNeverCutsOffRemainingAddress(t *testing.T) {
	tests := []struct {
		name        string
		prefix      string
		before, now []string
	}{
		{"remove one from the middle", "/", cidrs(12), slices.Delete(cidrs(12), 4, 5)},
		{"add one", "/", cidrs(5), cidrs(6)},
		{"replace one", "/", cidrs(6), append(cidrs(5), "203.0.113.0/24")},
		{"replace half", "/chat", cidrs(8), append(cidrs(12)[4:], "203.0.113.0/24", "203.0.114.0/24")},
		{"shrink 12 to 3", "/", cidrs(12), cidrs(12)[9:]},
		{"grow 2 to 12", "/chat", cidrs(2), cidrs(12)},
		{"reverse order", "/", cidrs(9), reversed(cidrs(9))},
		{"move every address to other rules", "/", []string{"10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"}, []string{"10.3.0.0/16", "10.9.0.0/16", "10.8.0.0/16", "10.0.0.0/8"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.platform()
			host := "edit.apps.example.com"
			a := app(t, "edit", func(s *v1.ServingApp) { s.Spec.Allowlist = tc.before; s.Spec.Route.PathPrefix = tc.prefix })
			obs := e.converge(p, a)
			tg := obs.Resources.TargetGroupARN
			var staying []netip.Addr
			for _, c := range tc.before {
				if slices.Contains(tc.now, c) {
					staying = append(staying, netip.MustParsePrefix(c).Addr().Next())
				}
			}
			var mu sync.Mutex
			var problems []string
			steps := 0
			e.srv.SetCallHook(func(k awsemu.CallKey) {
				if k.Service != awsemu.ServiceELBv2 {
					return
				}
				rules, err := e.srv.ListenerRules(e.listenerARN)
				if err != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				steps++
				for _, addr := range staying {
					if got := forwardsTo(routeOf(rules, host, tc.prefix+"/page", addr)); got != tg {
						problems = append(problems, fmt.Sprintf("after %s: %s is routed to %q", k.Operation, addr, got))
					}
				}
			})
			e.later()
			b := app(t, "edit", func(s *v1.ServingApp) {
				s.Spec.Allowlist = tc.now
				s.Spec.Route.PathPrefix = tc.prefix
				s.Metadata.Generation = 2
			})
			before := e.srv.Calls()
			if _, err := reconcile(context.Background(), p, b, &events{}); err != nil {
				t.Fatal(err)
			}
			e.srv.SetCallHook(nil)
			calls := e.srv.Calls().Since(before)
			mu.Lock()
			defer mu.Unlock()
			for _, pr := range problems {
				t.Error(pr)
			}
			if steps == 0 {
				t.Fatal("the hook saw no ELBv2 call")
			}
			// The end state carries exactly the new allowlist.
			var got []string
			for _, r := range e.appRules(b.Ref) {
				if conditionValues(r) > 5 || forwardsTo(r) != tg {
					t.Errorf("rule %s: %d values, forwards to %s", awssdk.ToString(r.RuleArn), conditionValues(r), forwardsTo(r))
				}
				for _, c := range r.Conditions {
					if c.SourceIpConfig != nil {
						got = append(got, c.SourceIpConfig.Values...)
					}
				}
			}
			want := slices.Clone(tc.now)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("sources after the edit = %v, want %v", got, want)
			}
			t.Logf("%d ELBv2 steps; rule calls: create %d, modify %d, delete %d, priorities %d", steps,
				calls.Operation(awsemu.ServiceELBv2, "CreateRule"), calls.Operation(awsemu.ServiceELBv2, "ModifyRule"),
				calls.Operation(awsemu.ServiceELBv2, "DeleteRule"), calls.Operation(awsemu.ServiceELBv2, "SetRulePriorities"))
		})
	}
}

func TestPrioritiesAreStableAcrossRestartsAndAvoidOtherRules(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	apps := []*model.App{
		app(t, "root", func(s *v1.ServingApp) {
			s.Spec.Route.Host = "shared.example.com"
			s.Spec.Allowlist = append(cidrs(6), "10.0.0.0/8")
		}),
		app(t, "api", func(s *v1.ServingApp) { s.Spec.Route.Host = "shared.example.com"; s.Spec.Route.PathPrefix = "/api" }),
		app(t, "apiv2", func(s *v1.ServingApp) { s.Spec.Route.Host = "shared.example.com"; s.Spec.Route.PathPrefix = "/api/v2" }),
		app(t, "alone", func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(5) }),
	}
	for _, a := range apps {
		e.converge(p, a)
	}
	priorities := func() map[string]string {
		out := map[string]string{}
		for _, r := range e.rules() {
			out[awssdk.ToString(r.RuleArn)] = awssdk.ToString(r.Priority)
		}
		return out
	}
	first := priorities()
	seen := map[string]bool{}
	for arn, pr := range first {
		if seen[pr] {
			t.Errorf("priority %s used twice", pr)
		}
		seen[pr] = true
		if arn == e.foreignRule && pr != fmt.Sprint(foreignPrio) {
			t.Errorf("the foreign rule moved to %s", pr)
		}
	}
	checkOrder(t, e)

	for round := range 3 {
		e.later()
		q := e.platform() // a restarted controller
		before := e.srv.Calls()
		for _, a := range apps {
			if _, err := reconcile(context.Background(), q, a, &events{}); err != nil {
				t.Fatal(err)
			}
		}
		if m := e.srv.Calls().Since(before).Mutating(); m != 0 {
			t.Errorf("restart %d: %d mutating calls", round, m)
		}
		if got := priorities(); !mapsEqual(got, first) {
			t.Fatalf("restart %d: priorities changed:\n%v\nwas\n%v", round, got, first)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkOrder verifies that on the shared host every request reaches the app
// with the longest matching path prefix.
func checkOrder(t *testing.T, e *env) {
	t.Helper()
	rules := e.rules()
	tgOf := func(name string) string {
		for _, g := range e.targetGroups() {
			if awssdk.ToString(g.TargetGroupName) == targetGroupName(testController, model.Ref{Namespace: "team", Name: name}) {
				return awssdk.ToString(g.TargetGroupArn)
			}
		}
		return ""
	}
	addr := netip.MustParseAddr("10.1.2.3")
	for path, want := range map[string]string{"/": "root", "/x": "root", "/api": "api", "/api/x": "api", "/api/v2": "apiv2", "/api/v2/x": "apiv2", "/apiary": "root"} {
		if got := forwardsTo(routeOf(rules, "shared.example.com", path, addr)); got != tgOf(want) {
			t.Errorf("%s goes to %s, want %s's target group", path, got, want)
		}
	}
}

func TestMoreSpecificPathAddedLaterIsOrderedFirst(t *testing.T) {
	e := newEnv(t)
	// A range of three priorities: the root app's rule lands in the middle,
	// "/api" below it, and "/api/v2" finds no room below "/api" without
	// moving the others.
	e.cfg.PriorityMin, e.cfg.PriorityMax = 1000, 1002
	p := e.platform()
	root := app(t, "root", func(s *v1.ServingApp) { s.Spec.Route.Host = "shared.example.com" })
	e.converge(p, root)
	api := app(t, "api", func(s *v1.ServingApp) { s.Spec.Route.Host = "shared.example.com"; s.Spec.Route.PathPrefix = "/api" })
	e.converge(p, api)
	v2 := app(t, "apiv2", func(s *v1.ServingApp) { s.Spec.Route.Host = "shared.example.com"; s.Spec.Route.PathPrefix = "/api/v2" })
	before := e.srv.Calls()
	e.converge(p, v2)
	rules := e.rules()
	tg := map[string]string{}
	for _, a := range []*model.App{root, api, v2} {
		tg[a.Ref.Name] = forwardsTo(e.appRules(a.Ref)[0])
	}
	addr := netip.MustParseAddr("10.1.2.3")
	for path, want := range map[string]string{"/x": "root", "/api/x": "api", "/api/v2/x": "apiv2"} {
		if got := forwardsTo(routeOf(rules, "shared.example.com", path, addr)); got != tg[want] {
			t.Errorf("%s goes to %s, want %s", path, got, tg[want])
		}
	}
	if n := e.srv.Calls().Since(before).Operation(awsemu.ServiceELBv2, "SetRulePriorities"); n != 1 {
		t.Errorf("SetRulePriorities called %d times for one app, want one relayout", n)
	}
}

func TestQuotaIsCheckedBeforeCallingAWS(t *testing.T) {
	tests := []struct {
		name   string
		limits awsemu.ELBv2Options
	}{
		{"rules", awsemu.ELBv2Options{RulesPerLoadBalancer: 3}},
		{"target groups", awsemu.ELBv2Options{TargetGroupsPerLoadBalancer: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withELBLimits(tc.limits))
			p := e.platform()
			e.converge(p, app(t, "first"))
			before := e.srv.Calls()
			_, err := reconcile(context.Background(), p, app(t, "second", func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(6) }), &events{})
			var term *model.TerminalError
			if !errors.As(err, &term) || term.Reason != "QuotaExceeded" {
				t.Fatalf("err = %v, want a QuotaExceeded TerminalError", err)
			}
			if m := e.srv.Calls().Since(before).Mutating(); m != 0 {
				t.Errorf("%d mutating calls before the quota error", m)
			}
			t.Log(err)
		})
	}
}

func TestSetBlockedAnswers403BeforeTheAllowRulesAndKeepsBlockedAddressesBlocked(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	host := "locked.apps.example.com"
	a := app(t, "locked", func(s *v1.ServingApp) { s.Spec.Allowlist = []string{"10.0.0.0/8"} })
	obs := e.converge(p, a)
	ctx := context.Background()
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, v := range s {
			out = append(out, netip.MustParseAddr(v))
		}
		return out
	}
	steps := []struct {
		blocked []string
		rules   int // block rules: 3 source values fit beside host and "/*"
	}{
		{[]string{"10.0.0.1", "10.0.0.2"}, 1},
		{[]string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"}, 2},
		{[]string{"10.0.0.5", "10.0.0.6"}, 1},
		{nil, 0},
	}
	prev := []string{}
	for _, step := range steps {
		// Every address blocked before and after the change stays blocked
		// at every step; every other address of the allowlist reaches the app.
		var mu sync.Mutex
		var problems []string
		e.srv.SetCallHook(func(k awsemu.CallKey) {
			rules, err := e.srv.ListenerRules(e.listenerARN)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, b := range step.blocked {
				if slices.Contains(prev, b) {
					r := routeOf(rules, host, "/x", netip.MustParseAddr(b))
					if len(r.Actions) != 1 || r.Actions[0].Type != elbtypes.ActionTypeEnumFixedResponse {
						problems = append(problems, fmt.Sprintf("after %s %s is not blocked", k.Operation, b))
					}
				}
			}
		})
		if err := p.SetBlocked(ctx, a.Ref, addrs(step.blocked...)); err != nil {
			t.Fatal(err)
		}
		e.srv.SetCallHook(nil)
		for _, pr := range problems {
			t.Error(pr)
		}
		rules := e.rules()
		blockRules := 0
		for _, r := range e.appRules(a.Ref) {
			if forwardsTo(r) == "" {
				blockRules++
			}
		}
		if blockRules != step.rules {
			t.Errorf("blocked %v: %d block rules, want %d", step.blocked, blockRules, step.rules)
		}
		for _, b := range step.blocked {
			r := routeOf(rules, host, "/x", netip.MustParseAddr(b))
			if len(r.Actions) != 1 || r.Actions[0].Type != elbtypes.ActionTypeEnumFixedResponse || awssdk.ToString(r.Actions[0].FixedResponseConfig.StatusCode) != "403" {
				t.Errorf("blocked %s reaches %+v", b, r.Actions)
			}
		}
		if got := forwardsTo(routeOf(rules, host, "/x", netip.MustParseAddr("10.9.9.9"))); got != obs.Resources.TargetGroupARN {
			t.Errorf("an address not blocked goes to %q", got)
		}
		// A reconcile leaves the lockout alone.
		e.later()
		before := e.srv.Calls()
		if _, err := reconcile(ctx, p, a, &events{}); err != nil {
			t.Fatal(err)
		}
		if m := e.srv.Calls().Since(before).Mutating(); m != 0 {
			t.Errorf("reconcile after SetBlocked(%v) made %d mutating calls", step.blocked, m)
		}
		prev = step.blocked
	}
	if err := p.SetBlocked(ctx, model.Ref{Namespace: "team", Name: "missing"}, addrs("10.0.0.1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetBlocked of an app without rules: %v, want ErrNotFound", err)
	}
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}
