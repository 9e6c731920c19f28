package aws

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/servingapp/servingapp/controller/model"
)

// Defaults of the lockout budget (Config.BlockRulesPerApp and
// Config.BlockRuleReserve).
const (
	defaultBlockRulesPerApp = 4
	defaultBlockRuleReserve = 10
)

// ErrBlockBudget is wrapped by the error SetBlocked returns when it blocked
// fewer addresses than it was asked to: the app's lockout rules reached the
// lockout budget (see BlockBudgetError). It is model.ErrLockoutBudget, which
// the usage engine recognises without knowing this platform.
var ErrBlockBudget = model.ErrLockoutBudget

// BlockBudgetError says how many of the addresses SetBlocked was given are
// not blocked, and why. The most recently blocked addresses that fit are
// blocked; calling again with the same addresses changes nothing and makes
// no AWS call, so a caller that retries every second costs nothing.
type BlockBudgetError struct {
	App       model.Ref
	Blocked   int // addresses blocked
	Unblocked int // addresses asked for and not blocked
	Rules     int // lockout rules the app may have now
	// Limit names what bounds Rules: the per-app limit, or the rules (or
	// priorities) the load balancer must keep free for allow rules.
	Limit string
}

func (e *BlockBudgetError) Error() string {
	return fmt.Sprintf("block addresses for %s: %d address(es) not blocked, %d blocked: %s (%s)",
		e.App, e.Unblocked, e.Blocked, ErrBlockBudget, e.Limit)
}

func (e *BlockBudgetError) Unwrap() error { return ErrBlockBudget }

// blockBudget is how many lockout rules app may have now, and what limits
// it. Lockout rules count against the load balancer's rule quota and the
// configured priority range like allow rules, so they are bounded twice:
// at most BlockRulesPerApp per app, and never into the last
// BlockRuleReserve rules (or priorities) left, which are kept for allow
// rules. When allow rules have eaten into that reserve, the app's existing
// lockout rules shrink to give it back. The caller holds the listener lock.
func (p *Platform) blockBudget(ctx context.Context, existing int) (int, string, error) {
	q, err := p.listener.quotas(ctx)
	if err != nil {
		return 0, "", err
	}
	lo, hi := p.cfg.PriorityMin, p.cfg.PriorityMax
	used, inRange := 0, 0
	p.listener.mu.Lock()
	if s := p.listener.snap; s != nil {
		used = len(s.rules) + s.others
		for _, r := range s.rules {
			if r.Priority >= lo && r.Priority <= hi {
				inRange++
			}
		}
	}
	p.listener.mu.Unlock()
	reserve := p.cfg.BlockRuleReserve
	quotaRoom := q.rules - used - reserve
	prioRoom := int(hi-lo+1) - inRange - reserve

	limit, why := p.cfg.BlockRulesPerApp, fmt.Sprintf("at most %d lockout rules per app (BlockRulesPerApp)", p.cfg.BlockRulesPerApp)
	if n := existing + quotaRoom; n < limit {
		limit, why = n, fmt.Sprintf("the load balancer takes %d rules and lockout leaves the last %d free for allow rules (BlockRuleReserve)", q.rules, reserve)
	}
	if n := existing + prioRoom; n < limit {
		limit, why = n, fmt.Sprintf("of the priorities %d–%d lockout leaves the last %d free for allow rules (BlockRuleReserve)", lo, hi, reserve)
	}
	return max(0, limit), why, nil
}

// chooseBlocked orders want (canonical host CIDRs) most recently blocked
// first and returns the first n. The platform learns when an address was
// first asked for from its own calls (the usage engine gives a sorted list,
// no times): the addresses of the first call for an app in this process are
// of unknown age and count as older than any that arrive later, so after a
// restart the lockout rules in place are kept until newer addresses need
// the room. inRules gives the position of each address already blocked
// (rules by priority, then sources in order); ties go to those, in that
// order, so shrinking keeps the first rules as they are, then by address:
// the same list always gives the same choice and repeated calls change
// nothing.
func (p *Platform) chooseBlocked(app model.Ref, want []string, inRules map[string]int, n int) []string {
	now := p.clk.Now()
	p.mu.Lock()
	since, known := p.blockedSince[app.String()]
	next := make(map[string]time.Time, len(want))
	for _, v := range want {
		t, ok := since[v]
		if !ok && known {
			t = now
		}
		next[v] = t
	}
	if len(next) == 0 {
		delete(p.blockedSince, app.String())
	} else {
		p.blockedSince[app.String()] = next
	}
	p.mu.Unlock()

	rank := func(v string) int {
		if i, ok := inRules[v]; ok {
			return i
		}
		return math.MaxInt
	}
	order := slices.Clone(want)
	slices.SortFunc(order, func(a, b string) int {
		return cmp.Or(next[b].Compare(next[a]), cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b))
	})
	return order[:min(n, len(order))]
}

// hostPrefixes turns addresses into the canonical CIDRs of rule sources,
// each once, sorted.
func hostPrefixes(addrs []netip.Addr) []string {
	var out []string
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() {
			continue
		}
		if v := netip.PrefixFrom(a, a.BitLen()).String(); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// planBlocks plans the app's lockout rules to carry want with at most
// maxRules rules: when the app has more, the ones after the first maxRules
// (by priority) are deleted and what they held that stays wanted moves to
// the others first (modify before delete, so it stays blocked throughout).
// want must fit: at most maxRules times the route's capacity.
func planBlocks(want []string, have []ruleState, rt route, tags map[string]string, maxRules int) ruleChanges {
	var drop []ruleState
	if len(have) > maxRules {
		have, drop = have[:maxRules], have[maxRules:]
	}
	plan := planRules(kindBlock, want, have, rt, tags)
	plan.Delete = append(plan.Delete, drop...)
	return plan
}
