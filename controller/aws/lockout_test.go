package aws

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/awsemu"
)

// sprayed is n addresses an attacker logs in from.
func sprayed(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
	}
	return out
}

// addFillers creates n rules that are not ours on other hosts, at
// priorities from first on.
func (e *env) addFillers(first int32, n int) {
	e.t.Helper()
	for i := range n {
		must(e.raw.elb.CreateRule(context.Background(), &elb.CreateRuleInput{
			ListenerArn: awssdk.String(e.listenerARN), Priority: awssdk.Int32(first + int32(i)),
			Conditions: []elbtypes.RuleCondition{{Field: awssdk.String("host-header"),
				HostHeaderConfig: &elbtypes.HostHeaderConditionConfig{Values: []string{fmt.Sprintf("filler-%d.example.com", first+int32(i))}}}},
			Actions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{
				StatusCode: awssdk.String("404"), ContentType: awssdk.String("text/plain"), MessageBody: awssdk.String("no"),
			}}},
		}))(e.t)
	}
}

func (e *env) blockRules(a string) (rules int, sources []string) {
	e.t.Helper()
	for _, r := range e.appRules(app(e.t, a).Ref) {
		if forwardsTo(r) != "" {
			continue
		}
		rules++
		for _, c := range r.Conditions {
			if c.SourceIpConfig != nil {
				sources = append(sources, c.SourceIpConfig.Values...)
			}
		}
	}
	return rules, sources
}

// TestLockoutStaysWithinItsBudget: an attacker spraying logins from many
// addresses gets at most BlockRulesPerApp lockout rules for the app, and
// never the last BlockRuleReserve rules or priorities the allow rules of
// every app need; what does not fit is reported, the most recent addresses
// are the ones blocked, and asking again (the usage engine retries every
// second) costs no AWS call.
func TestLockoutStaysWithinItsBudget(t *testing.T) {
	const asked = 40
	tests := []struct {
		name      string
		limits    awsemu.ELBv2Options
		config    func(*Config)
		fillers   func(e *env)
		wantRules int
		wantWhy   string
	}{
		{"per-app limit", awsemu.ELBv2Options{}, func(*Config) {}, func(*env) {}, 4, "lockout rules per app"},
		{"rule quota keeps room for allow rules", awsemu.ELBv2Options{RulesPerLoadBalancer: 20}, func(*Config) {},
			// 2 allow rules of the app, the foreign rule and 5 others: 8
			// of 20 in use, 10 kept free, 2 for lockout.
			func(e *env) { e.addFillers(40000, 5) }, 2, "takes 20 rules and lockout leaves the last 10 free"},
		{"priority range keeps room for allow rules", awsemu.ELBv2Options{}, func(c *Config) { c.PriorityMin, c.PriorityMax = 1000, 1014 },
			// 15 priorities: the app's 2 allow rules and 1 other in use, 10 kept free.
			func(e *env) { e.addFillers(1014, 1) }, 2, "priorities 1000–1014 lockout leaves the last 10 free"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withELBLimits(tc.limits))
			tc.config(&e.cfg)
			p := e.platform()
			a := app(t, "sprayed", func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(4) })
			e.converge(p, a)
			tc.fillers(e)
			e.later()
			ctx := context.Background()

			addrs := sprayed(asked)
			err := p.SetBlocked(ctx, a.Ref, addrs)
			var budget *BlockBudgetError
			if !errors.As(err, &budget) || !errors.Is(err, ErrBlockBudget) {
				t.Fatalf("SetBlocked(%d addresses): %v, want a BlockBudgetError", asked, err)
			}
			wantBlocked := tc.wantRules * 3
			if budget.Rules != tc.wantRules || budget.Blocked != wantBlocked || budget.Unblocked != asked-wantBlocked || !strings.Contains(err.Error(), tc.wantWhy) {
				t.Errorf("error %q: %+v, want %d rules, %d blocked, %d not, because %q", err, budget, tc.wantRules, wantBlocked, asked-wantBlocked, tc.wantWhy)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%d address(es) not blocked", asked-wantBlocked)) {
				t.Errorf("error %q does not say how many are not blocked", err)
			}
			if rules, sources := e.blockRules("sprayed"); rules != tc.wantRules || len(sources) != wantBlocked {
				t.Errorf("%d lockout rules with %d addresses, want %d with %d", rules, len(sources), tc.wantRules, wantBlocked)
			}
			if free := e.freeRules(tc.limits); free < p.cfg.BlockRuleReserve {
				t.Errorf("%d rules left free, want at least the reserve of %d", free, p.cfg.BlockRuleReserve)
			}

			// The usage engine asks again every second: nothing to do.
			before := e.srv.Calls()
			if err := p.SetBlocked(ctx, a.Ref, addrs); !errors.Is(err, ErrBlockBudget) {
				t.Errorf("again: %v", err)
			}
			if n := e.srv.Calls().Since(before).Total(); n != 0 {
				t.Errorf("asking again made %d AWS calls", n)
			}

			// A new address is the most recent: it is blocked, an older one
			// makes room.
			newest := netip.MustParseAddr("192.0.2.99")
			addrs = append(addrs, newest)
			if err := p.SetBlocked(ctx, a.Ref, addrs); !errors.As(err, &budget) || budget.Unblocked != asked+1-wantBlocked {
				t.Errorf("with one more address: %v", err)
			}
			if r := routeOf(e.rules(), a.Host, "/x", newest); forwardsTo(r) != "" {
				t.Errorf("the newest blocked address reaches the app")
			}
			if rules, _ := e.blockRules("sprayed"); rules != tc.wantRules {
				t.Errorf("%d lockout rules after a new address, want %d", rules, tc.wantRules)
			}

			// A restarted controller keeps what is blocked.
			e.later()
			q := e.platform()
			before = e.srv.Calls()
			if err := q.SetBlocked(ctx, a.Ref, addrs); !errors.Is(err, ErrBlockBudget) {
				t.Errorf("after a restart: %v", err)
			}
			if m := e.srv.Calls().Since(before).Mutating(); m != 0 {
				t.Errorf("after a restart the same addresses made %d mutating calls", m)
			}
			if r := routeOf(e.rules(), a.Host, "/x", newest); forwardsTo(r) != "" {
				t.Errorf("after a restart the newest blocked address reaches the app")
			}
		})
	}
}

// TestLockoutYieldsToAllowRules: when other rules eat into the reserve the
// lockout rules leave free, the app's lockout rules shrink to give it back,
// and the addresses that stay blocked are blocked throughout.
func TestLockoutYieldsToAllowRules(t *testing.T) {
	limits := awsemu.ELBv2Options{RulesPerLoadBalancer: 20}
	e := newEnv(t, withELBLimits(limits))
	p := e.platform()
	a := app(t, "sprayed", func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(4) })
	e.converge(p, a)
	e.addFillers(40000, 5) // 8 of 20 rules in use: room for 2 lockout rules
	e.later()
	ctx := context.Background()
	addrs := sprayed(6)
	if err := p.SetBlocked(ctx, a.Ref, addrs); err != nil {
		t.Fatalf("6 addresses in 2 rules: %v", err)
	}
	e.addFillers(41000, 1) // 11 in use: 9 free, one less than the reserve
	e.later()
	var mu sync.Mutex
	var steps [][]elbtypes.Rule
	e.srv.SetCallHook(func(awsemu.CallKey) {
		if rules, err := e.srv.ListenerRules(e.listenerARN); err == nil {
			mu.Lock()
			defer mu.Unlock()
			steps = append(steps, rules)
		}
	})
	_, before := e.blockRules("sprayed")
	callsBefore := e.srv.Calls()
	err := p.SetBlocked(ctx, a.Ref, addrs)
	calls := e.srv.Calls().Since(callsBefore)
	e.srv.SetCallHook(nil)
	_, after := e.blockRules("sprayed")
	mu.Lock()
	defer mu.Unlock()
	if calls.Mutating() != 1 || calls.Operation(awsemu.ServiceELBv2, "DeleteRule") != 1 {
		t.Errorf("shrinking made %d mutating calls, want one DeleteRule (the first rule is kept as it is)", calls.Mutating())
	}
	for i, rules := range steps {
		for _, s := range after {
			if b := netip.MustParsePrefix(s).Addr(); slices.Contains(before, s) && forwardsTo(routeOf(rules, a.Host, "/x", b)) != "" {
				t.Errorf("after call %d %s, blocked before and after, is not blocked", i+1, b)
			}
		}
	}
	var budget *BlockBudgetError
	if !errors.As(err, &budget) || budget.Rules != 1 || budget.Unblocked != 3 {
		t.Fatalf("after the reserve shrank: %v, want 1 rule and 3 addresses not blocked", err)
	}
	if rules, sources := e.blockRules("sprayed"); rules != 1 || len(sources) != 3 {
		t.Errorf("%d lockout rules with %v, want 1 with 3", rules, sources)
	}
	if free := e.freeRules(limits); free != p.cfg.BlockRuleReserve {
		t.Errorf("%d rules free, want the reserve of %d", free, p.cfg.BlockRuleReserve)
	}
}

// freeRules is how many more rules the load balancer takes.
func (e *env) freeRules(limits awsemu.ELBv2Options) int {
	e.t.Helper()
	quota := limits.RulesPerLoadBalancer
	if quota == 0 {
		quota = defaultRuleQuota
	}
	used := 0
	for _, r := range e.rules() {
		if !awssdk.ToBool(r.IsDefault) {
			used++
		}
	}
	return quota - used
}
