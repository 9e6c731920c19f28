package aws

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/servingapp/servingapp/controller/model"
)

func TestNamesFitAWSLimitsAndAreDeterministic(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		controller string
		ref        model.Ref
	}{
		{"prod", model.Ref{Namespace: "analytics", Name: "summarizer"}},
		{"prod-eu-west-1", model.Ref{Namespace: long, Name: long}},
		{strings.Repeat("c", 64), model.Ref{Namespace: long, Name: long}},
		{"odd.id:with*chars", model.Ref{Namespace: "a", Name: "b"}},
	}
	tgRE := regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?$`)
	ecsRE := regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)
	seen := map[string]bool{}
	for _, tc := range tests {
		n := namesFor(tc.controller, "servingapp/", tc.ref)
		if !tgRE.MatchString(n.TargetGroup) || len(n.TargetGroup) > 32 {
			t.Errorf("target group name %q (%d) is not a valid ELBv2 name", n.TargetGroup, len(n.TargetGroup))
		}
		if !ecsRE.MatchString(n.Service) {
			t.Errorf("service name %q (%d) is not a valid ECS name", n.Service, len(n.Service))
		}
		if again := namesFor(tc.controller, "servingapp/", tc.ref); again != n {
			t.Errorf("names differ between calls: %+v, %+v", n, again)
		}
		if seen[n.TargetGroup] || seen[n.Service] {
			t.Errorf("names collide: %+v", n)
		}
		seen[n.TargetGroup], seen[n.Service] = true, true
	}
	// Namespace and name are separated unambiguously.
	a := namesFor("prod", "p/", model.Ref{Namespace: "a-b", Name: "c"})
	b := namesFor("prod", "p/", model.Ref{Namespace: "a", Name: "b-c"})
	if a.Service == b.Service || a.TargetGroup == b.TargetGroup || a.SessionKey == b.SessionKey {
		t.Errorf("a-b/c and a/b-c share names: %+v %+v", a, b)
	}
	if got := namesFor("prod", "servingapp/", model.Ref{Namespace: "analytics", Name: "summarizer"}); got.Service != "prod_analytics_summarizer" ||
		!strings.HasPrefix(got.TargetGroup, "sa-analytics-summarizer-") || got.SessionKey != "servingapp/analytics/summarizer/session-key" {
		t.Errorf("readable names: %+v", got)
	}
	for _, gen := range []int64{1, 2, 1 << 40} {
		tok := clientToken("0d26daa6-5e44-4c97-a497-ef015f91254a", gen)
		if len(tok) > 36 || tok == clientToken("0d26daa6-5e44-4c97-a497-ef015f91254a", gen+1) || tok != clientToken("0d26daa6-5e44-4c97-a497-ef015f91254a", gen) {
			t.Errorf("client token %q for generation %d", tok, gen)
		}
	}
}

func TestPlanRules(t *testing.T) {
	root := route{Host: "h.example.com", Paths: []string{"/*"}, Target: "tg"}
	sub := route{Host: "h.example.com", Paths: []string{"/p", "/p/*"}, Target: "tg"}
	rule := func(arn string, rt route, sources ...string) ruleState {
		return ruleState{ARN: arn, Host: rt.Host, Paths: rt.Paths, Sources: sources, Target: rt.Target, Tags: map[string]string{"k": "v"}}
	}
	tags := map[string]string{"k": "v"}
	tests := []struct {
		name                   string
		want                   []string
		have                   []ruleState
		rt                     route
		create, modify, delete int
		keep                   int
	}{
		{"nothing yet, 7 into 3s", []string{"a", "b", "c", "d", "e", "f", "g"}, nil, root, 3, 0, 0, 0},
		{"nothing yet, 5 into 2s", []string{"a", "b", "c", "d", "e"}, nil, sub, 3, 0, 0, 0},
		{"unchanged", []string{"a", "b", "c", "d"}, []ruleState{rule("r1", root, "a", "b", "c"), rule("r2", root, "d")}, root, 0, 0, 0, 2},
		{"unchanged in another order", []string{"d", "c", "b", "a"}, []ruleState{rule("r1", root, "a", "b", "c"), rule("r2", root, "d")}, root, 0, 0, 0, 2},
		{"one added fills free room", []string{"a", "b", "c", "d", "e"}, []ruleState{rule("r1", root, "a", "b", "c"), rule("r2", root, "d")}, root, 0, 1, 0, 1},
		{"one replaced in place", []string{"a", "x", "c", "d"}, []ruleState{rule("r1", root, "a", "b", "c"), rule("r2", root, "d")}, root, 0, 1, 0, 1},
		{"rule emptied is reused", []string{"a", "b", "c", "x"}, []ruleState{rule("r1", root, "a", "b", "c"), rule("r2", root, "d")}, root, 0, 1, 0, 1},
		{"rule emptied and nothing new: deleted", []string{"a", "b", "c"}, []ruleState{rule("r1", root, "a", "b", "c"), rule("r2", root, "d")}, root, 0, 0, 1, 1},
		{"duplicate sources collapse", []string{"a", "b"}, []ruleState{rule("r1", root, "a", "b"), rule("r2", root, "a")}, root, 0, 0, 1, 1},
		{"new target group", []string{"a"}, []ruleState{rule("r1", route{Host: root.Host, Paths: root.Paths, Target: "old"}, "a")}, root, 0, 1, 0, 0},
		{"path change shrinks capacity", []string{"a", "b", "c"}, []ruleState{rule("r1", root, "a", "b", "c")}, sub, 1, 1, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := planRules(kindAllow, tc.want, tc.have, tc.rt, tags)
			if len(got.Create) != tc.create || len(got.Modify) != tc.modify || len(got.Delete) != tc.delete || len(got.Keep) != tc.keep {
				t.Fatalf("create %d modify %d delete %d keep %d, want %d %d %d %d", len(got.Create), len(got.Modify), len(got.Delete), len(got.Keep),
					tc.create, tc.modify, tc.delete, tc.keep)
			}
			var all []string
			for _, r := range slices.Concat(got.Keep, got.Modify, got.Create) {
				if len(r.Sources)+1+len(tc.rt.Paths) > maxConditionValues {
					t.Errorf("rule %v has too many values", r.Sources)
				}
				if r.Target != tc.rt.Target || r.Host != tc.rt.Host || !slices.Equal(r.Paths, tc.rt.Paths) {
					t.Errorf("rule %+v does not follow the route", r)
				}
				all = append(all, r.Sources...)
			}
			want := slices.Clone(tc.want)
			slices.Sort(all)
			slices.Sort(want)
			if !slices.Equal(all, want) {
				t.Errorf("sources %v, want %v", all, want)
			}
			// A source that stays never leaves the first rule holding it.
			for _, h := range tc.have {
				for _, s := range h.Sources {
					if !slices.Contains(tc.want, s) || !sameRoute(h, kindAllow, tc.rt) {
						continue
					}
					first := slices.IndexFunc(tc.have, func(r ruleState) bool { return slices.Contains(r.Sources, s) })
					if tc.have[first].ARN != h.ARN {
						continue
					}
					kept := slices.ContainsFunc(slices.Concat(got.Keep, got.Modify), func(r ruleState) bool { return r.ARN == h.ARN && slices.Contains(r.Sources, s) })
					if !kept {
						t.Errorf("source %s moved out of rule %s", s, h.ARN)
					}
				}
			}
		})
	}
}

func TestAllocatePriorities(t *testing.T) {
	k := func(path, app, kind string) orderKey { return orderKey{Host: "h", Path: path, App: app, Kind: kind} }
	tests := []struct {
		name     string
		lo, hi   int32
		used     []int32
		set      []placement
		relayout bool // existing rules move
	}{
		{"first rule lands mid-range", 1000, 2000, nil, []placement{{Key: k("/", "a", kindAllow)}}, false},
		{"avoids used", 1000, 1002, []int32{1001}, []placement{{Key: k("/", "a", kindAllow)}}, false},
		{"existing kept", 1000, 2000, nil, []placement{{Key: k("/", "a", kindAllow), Priority: 1500}, {Key: k("/", "a", kindAllow)}}, false},
		{"specific path goes first", 1000, 2000, nil, []placement{{Key: k("/", "a", kindAllow), Priority: 1500}, {Key: k("/api", "b", kindAllow)}}, false},
		{"block goes before allow", 1000, 2000, nil, []placement{{Key: k("/", "a", kindAllow), Priority: 1001}, {Key: k("/", "a", kindBlock)}}, false},
		{"no room below: relayout", 1000, 1002, nil, []placement{{Key: k("/", "a", kindAllow), Priority: 1000}, {Key: k("/api", "b", kindAllow)}}, true},
		{"out of order: relayout", 1000, 2000, nil, []placement{{Key: k("/", "a", kindAllow), Priority: 1100}, {Key: k("/api", "b", kindAllow), Priority: 1900}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := allocatePriorities(tc.lo, tc.hi, tc.used, tc.set)
			if err != nil {
				t.Fatal(err)
			}
			moved := false
			for i, p := range got {
				if p < tc.lo || p > tc.hi || slices.Contains(tc.used, p) {
					t.Errorf("priority %d outside %d–%d or used", p, tc.lo, tc.hi)
				}
				if tc.set[i].Priority > 0 && tc.set[i].Priority != p {
					moved = true
				}
				for j, q := range got {
					if i != j && p == q {
						t.Errorf("priority %d given twice", p)
					}
					if c := compareKeys(tc.set[i].Key, tc.set[j].Key); c < 0 && p > q {
						t.Errorf("%+v (%d) should come before %+v (%d)", tc.set[i].Key, p, tc.set[j].Key, q)
					}
				}
			}
			if moved != tc.relayout {
				t.Errorf("existing rules moved: %v, want %v (%v)", moved, tc.relayout, got)
			}
		})
	}
	if _, err := allocatePriorities(1, 2, []int32{1}, []placement{{}, {}}); err != errNoPriority {
		t.Errorf("full range: %v, want errNoPriority", err)
	}
}

// TestTaskSpecIgnoresWhatECSFillsIn registers nothing: it compares the spec
// of a request with the spec of the definition as ECS describes it back.
func TestTaskSpecIgnoresWhatECSFillsIn(t *testing.T) {
	sent := &ecstypes.TaskDefinition{
		Family: awssdk.String("f"), Cpu: awssdk.String("1024"), Memory: awssdk.String("2048"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: awssdk.String("webapp"), Image: awssdk.String("img"),
			PortMappings: []ecstypes.PortMapping{{ContainerPort: awssdk.Int32(8080)}},
			Environment:  []ecstypes.KeyValuePair{{Name: awssdk.String("B"), Value: awssdk.String("2")}, {Name: awssdk.String("A"), Value: awssdk.String("1")}},
			Secrets:      []ecstypes.Secret{{Name: awssdk.String("S"), ValueFrom: awssdk.String("arn:s")}},
		}},
	}
	described := &ecstypes.TaskDefinition{
		Family: awssdk.String("f"), Cpu: awssdk.String("1 vCPU"), Memory: awssdk.String("2 GB"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		ContainerDefinitions: []ecstypes.ContainerDefinition{{
			Name: awssdk.String("webapp"), Image: awssdk.String("img"), Essential: awssdk.Bool(true),
			PortMappings: []ecstypes.PortMapping{{ContainerPort: awssdk.Int32(8080), HostPort: awssdk.Int32(8080), Protocol: ecstypes.TransportProtocolTcp}},
			Environment:  []ecstypes.KeyValuePair{{Name: awssdk.String("A"), Value: awssdk.String("1")}, {Name: awssdk.String("B"), Value: awssdk.String("2")}},
			Secrets:      []ecstypes.Secret{{Name: awssdk.String("S"), ValueFrom: awssdk.String("arn:s")}},
			MountPoints:  []ecstypes.MountPoint{}, VolumesFrom: []ecstypes.VolumeFrom{},
		}},
	}
	if a, b := specOf(sent), specOf(described); a.hash() != b.hash() {
		t.Errorf("specs differ:\n%+v\n%+v", a, b)
	}
	changed := *described
	changed.ContainerDefinitions = slices.Clone(described.ContainerDefinitions)
	changed.ContainerDefinitions[0].Image = awssdk.String("img:2")
	if specOf(sent).hash() == specOf(&changed).hash() {
		t.Error("an image change does not change the spec")
	}
	for _, tc := range []struct{ in, unit, want string }{{"0.25 vCPU", "vcpu", "256"}, {"512", "vcpu", "512"}, {"0.5 GB", "gb", "512"}} {
		if got := normalizeUnits(tc.in, tc.unit); got != tc.want {
			t.Errorf("normalizeUnits(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
