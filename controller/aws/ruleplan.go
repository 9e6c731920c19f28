package aws

import (
	"cmp"
	"errors"
	"maps"
	"slices"
	"strings"
)

// maxConditionValues is the ALB limit of condition values per rule: host,
// path and source-ip values together.
const maxConditionValues = 5

// blockStatus is the fixed response of lockout rules.
const blockStatus = "403"

// route is where an app's rules send traffic: one host, its path patterns,
// and (allow rules) the target group.
type route struct {
	Host   string
	Paths  []string
	Target string // "" while the target group is not known yet: not compared
}

// capacity is how many source CIDRs fit one rule of rt.
func (rt route) capacity() int {
	return max(1, maxConditionValues-1-len(rt.Paths))
}

// routePrefix is the path prefix a rule's patterns stand for: "/*" is "/",
// ["/p", "/p/*"] is "/p".
func routePrefix(paths []string) string {
	if len(paths) == 0 {
		return "/"
	}
	p := slices.MinFunc(paths, func(a, b string) int { return cmp.Compare(len(a), len(b)) })
	p = strings.TrimSuffix(strings.TrimSuffix(p, "*"), "/")
	if p == "" {
		return "/"
	}
	return p
}

// ruleChanges is the plan for one kind of an app's rules: rules to create
// (priority still 0), rules to modify in place (their new content), rules to
// delete, and rules left as they are.
type ruleChanges struct {
	Create []ruleState
	Modify []ruleState
	Delete []ruleState
	Keep   []ruleState
}

// planRules makes have (the app's rules of kind, by priority) carry exactly
// the sources want with route rt, at most capacity sources per rule.
//
// Every source that stays wanted stays in the first rule that already holds
// it, so carrying out the plan in the order create, modify, delete never
// stops an address that stays allowed (or blocked) from matching: a modify
// is atomic and keeps it, and only rules keeping none of their sources are
// deleted. Free room in existing rules is filled before rules are created,
// and a rule losing all its sources is reused for new ones, so an edit of a
// few addresses is a ModifyRule, not a create and a delete.
func planRules(kind string, want []string, have []ruleState, rt route, tags map[string]string) ruleChanges {
	c := rt.capacity()
	wanted := map[string]bool{}
	for _, v := range want {
		wanted[v] = true
	}
	assigned := map[string]bool{}
	keep := make([][]string, len(have))
	for i, r := range have {
		for _, v := range r.Sources {
			if wanted[v] && !assigned[v] && len(keep[i]) < c {
				keep[i] = append(keep[i], v)
				assigned[v] = true
			}
		}
	}
	var missing []string
	for _, v := range want {
		if !assigned[v] {
			missing = append(missing, v)
			assigned[v] = true
		}
	}
	for i := range have {
		for len(keep[i]) < c && len(missing) > 0 {
			keep[i] = append(keep[i], missing[0])
			missing = missing[1:]
		}
	}
	var out ruleChanges
	for i, r := range have {
		switch {
		case len(keep[i]) == 0:
			out.Delete = append(out.Delete, r)
		case sameSet(keep[i], r.Sources) && sameRoute(r, kind, rt) && tagsCover(r.Tags, tags):
			out.Keep = append(out.Keep, r)
		default:
			m := r.clone()
			m.Sources = keep[i]
			m.Host, m.Paths = rt.Host, slices.Clone(rt.Paths)
			setAction(&m, kind, rt)
			m.Tags = mergeTags(r.Tags, tags)
			out.Modify = append(out.Modify, m)
		}
	}
	for len(missing) > 0 {
		n := min(c, len(missing))
		r := ruleState{Host: rt.Host, Paths: slices.Clone(rt.Paths), Sources: slices.Clone(missing[:n]), Tags: maps.Clone(tags)}
		setAction(&r, kind, rt)
		out.Create = append(out.Create, r)
		missing = missing[n:]
	}
	return out
}

func setAction(r *ruleState, kind string, rt route) {
	if kind == kindBlock {
		r.Target, r.Fixed = "", blockStatus
		return
	}
	r.Fixed = ""
	if rt.Target != "" {
		r.Target = rt.Target
	}
}

func sameHostAndPaths(r ruleState, rt route) bool {
	return r.Host == strings.ToLower(rt.Host) && slices.Equal(r.Paths, rt.Paths)
}

// sameRoute reports whether r already matches rt and does what kind does.
func sameRoute(r ruleState, kind string, rt route) bool {
	if r.Unusual || !sameHostAndPaths(r, rt) {
		return false
	}
	if kind == kindBlock {
		return r.Fixed == blockStatus && r.Target == ""
	}
	return r.Fixed == "" && (rt.Target == "" || r.Target == rt.Target)
}

// changesConditions reports whether m differs from old in what ModifyRule
// sets (conditions and actions), as opposed to tags only.
func changesConditions(old, m ruleState) bool {
	return !sameSet(old.Sources, m.Sources) || old.Host != m.Host || !slices.Equal(old.Paths, m.Paths) ||
		old.Target != m.Target || old.Fixed != m.Fixed || old.Unusual
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	sa, sb := slices.Clone(a), slices.Clone(b)
	slices.Sort(sa)
	slices.Sort(sb)
	return slices.Equal(sa, sb)
}

// tagsCover reports whether have holds every tag of want with its value.
func tagsCover(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

func mergeTags(have, want map[string]string) map[string]string {
	out := maps.Clone(have)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, want)
	return out
}

// ---- priorities ----

// orderKey places a rule among the rules of ours with the same host: ALB
// evaluates rules by priority, so a more specific path must come before a
// less specific one ("/api/*" before "/*"), and an app's block rules before
// its allow rules. Rules with equal keys may come in any order.
type orderKey struct {
	Host string
	Path string // route prefix
	App  string
	Kind string
}

func kindRank(k string) int {
	if k == kindBlock {
		return 0
	}
	return 1
}

// compareKeys orders keys of one host: longer (more specific) prefixes
// first, then by prefix and app for determinism, block before allow.
func compareKeys(a, b orderKey) int {
	return cmp.Or(
		-cmp.Compare(len(a.Path), len(b.Path)),
		cmp.Compare(a.Path, b.Path),
		cmp.Compare(a.App, b.App),
		cmp.Compare(kindRank(a.Kind), kindRank(b.Kind)),
	)
}

// placement is one rule of a host to give a priority: an existing rule
// (Priority > 0) keeps its priority unless the order forces a relayout.
type placement struct {
	Key      orderKey
	Priority int32
}

// errNoPriority means the configured range has no room left.
var errNoPriority = errors.New("no free listener rule priority left in the configured range")

// allocatePriorities returns a priority for each of set (the rules of ours
// with one host, existing and new) within [lo, hi], avoiding used (the
// priorities of every other rule on the listener, sorted), such that rules
// are ordered by compareKeys.
//
// Existing rules keep their priorities whenever the order allows, so
// priorities are stable across reconciles and restarts (they are derived
// from the rules that exist). A new rule goes in the middle of the largest
// free gap between its neighbours in that order, which leaves room for
// later rules on either side. Only when no free priority lies between its
// neighbours, or the existing rules are out of order, are all of set laid
// out again, evenly spread over the free priorities; the caller moves the
// existing ones with one SetRulePriorities call.
func allocatePriorities(lo, hi int32, used []int32, set []placement) ([]int32, error) {
	out := make([]int32, len(set))
	var existing, fresh []int
	for i, p := range set {
		if p.Priority > 0 {
			existing = append(existing, i)
			out[i] = p.Priority
		} else {
			fresh = append(fresh, i)
		}
	}
	slices.SortFunc(existing, func(a, b int) int { return cmp.Compare(set[a].Priority, set[b].Priority) })
	ordered := true
	for j := 1; j < len(existing); j++ {
		if compareKeys(set[existing[j-1]].Key, set[existing[j]].Key) > 0 {
			ordered = false
		}
	}
	if ordered {
		slices.SortStableFunc(fresh, func(a, b int) int { return compareKeys(set[a].Key, set[b].Key) })
		taken := slices.Clone(used)
		for _, i := range existing {
			taken = insertSorted(taken, out[i])
		}
		ok := true
		for _, i := range fresh {
			below, above := lo-1, hi+1
			for j, p := range set {
				if out[j] == 0 || j == i {
					continue
				}
				switch c := compareKeys(p.Key, set[i].Key); {
				case c < 0 && out[j] > below:
					below = out[j]
				case c > 0 && out[j] < above:
					above = out[j]
				}
			}
			prio, found := middleOfLargestGap(max(below, lo-1), min(above, hi+1), taken)
			if !found {
				ok = false
				break
			}
			out[i] = prio
			taken = insertSorted(taken, prio)
		}
		if ok {
			return out, nil
		}
	}
	return relayout(lo, hi, used, set)
}

// middleOfLargestGap finds the free priority in (below, above) farthest from
// any taken one.
func middleOfLargestGap(below, above int32, taken []int32) (int32, bool) {
	walls := []int32{below}
	for _, t := range taken {
		if t > below && t < above {
			walls = append(walls, t)
		}
	}
	walls = append(walls, above)
	var best, bestGap int32 = 0, 1
	for j := 1; j < len(walls); j++ {
		if gap := walls[j] - walls[j-1]; gap > bestGap {
			best, bestGap = walls[j-1]+gap/2, gap
		}
	}
	return best, best != 0
}

func insertSorted(s []int32, v int32) []int32 {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

// relayout spreads all of set over the free priorities in key order.
func relayout(lo, hi int32, used []int32, set []placement) ([]int32, error) {
	order := make([]int, len(set))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		pa, pb := set[a].Priority, set[b].Priority
		if pa == 0 {
			pa = 1 << 30
		}
		if pb == 0 {
			pb = 1 << 30
		}
		return cmp.Or(compareKeys(set[a].Key, set[b].Key), cmp.Compare(pa, pb))
	})
	var free []int32
	for p := lo; p <= hi; p++ {
		if _, taken := slices.BinarySearch(used, p); !taken {
			free = append(free, p)
		}
	}
	n, m := len(set), len(free)
	if m < n {
		return nil, errNoPriority
	}
	out := make([]int32, n)
	for rank, i := range order {
		if m == n {
			out[i] = free[rank]
		} else {
			out[i] = free[(rank+1)*m/(n+1)]
		}
	}
	return out, nil
}
