package aws

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/awsemu"
)

// ours summarizes what of an app exists in the account.
type inventory struct {
	services      int // ACTIVE
	targetGroups  int
	rules         int
	revisions     int // ACTIVE task definition revisions
	sessionKeys   int // not scheduled for deletion
	taggedSecrets int
}

func (e *env) inventory(p *Platform, ref model.Ref) inventory {
	e.t.Helper()
	n := p.names(ref)
	var inv inventory
	if svc, ok := e.service(n.Service); ok && awssdk.ToString(svc.Status) == "ACTIVE" {
		inv.services = 1
	}
	for _, g := range e.targetGroups() {
		if awssdk.ToString(g.TargetGroupName) == n.TargetGroup {
			inv.targetGroups++
		}
	}
	inv.rules = len(e.appRules(ref))
	inv.revisions = len(e.activeRevisions(n.Service))
	for _, s := range e.secrets() {
		if s == n.SessionKey {
			inv.sessionKeys++
		}
	}
	out := must(e.raw.sm.ListSecrets(context.Background(), &sm.ListSecretsInput{}))(e.t)
	for _, s := range out.SecretList {
		if smTags(s.Tags)[model.TagApp] == ref.String() && smTags(s.Tags)[model.TagManagedBy] == testController {
			inv.taggedSecrets++
		}
	}
	return inv
}

func TestDeleteRemovesEverythingOursAndLeavesOtherRules(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	ctx := context.Background()
	a := app(t, "gone", func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(7) })
	keep := app(t, "kept")
	e.converge(p, a)
	e.converge(p, keep)
	if err := p.SetBlocked(ctx, a.Ref, nil); err != nil {
		t.Fatal(err)
	}
	foreignBefore := findRule(e, e.foreignRule)
	keptBefore := e.inventory(p, keep.Ref)

	e.later()
	obs := must(p.Observe(ctx, a))(t)
	rec := &events{}
	if err := p.Delete(ctx, a, obs, false, rec); err != nil {
		t.Fatal(err)
	}
	if got := e.inventory(p, a.Ref); got != (inventory{}) {
		t.Errorf("after delete: %+v, want nothing", got)
	}
	n := p.names(a.Ref)
	svc, _ := e.service(n.Service)
	if s := awssdk.ToString(svc.Status); s != "DRAINING" && s != "INACTIVE" {
		t.Errorf("service status %s", s)
	}
	sec := must(e.raw.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String(n.SessionKey)}))(t)
	if sec.DeletedDate == nil {
		t.Error("the session key is not scheduled for deletion")
	}
	e.srv.Advance(6 * 24 * time.Hour)
	if _, err := e.raw.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String(n.SessionKey)}); err != nil {
		t.Errorf("the session key is gone before its 7-day recovery window ended: %v", err)
	}
	if got := findRule(e, e.foreignRule); awssdk.ToString(got.Priority) != awssdk.ToString(foreignBefore.Priority) || len(got.Conditions) != len(foreignBefore.Conditions) {
		t.Errorf("the foreign rule changed: %+v", got)
	}
	if got := e.inventory(p, keep.Ref); got != keptBefore {
		t.Errorf("the other app changed: %+v, was %+v", got, keptBefore)
	}
	for _, want := range []string{"ListenerRulesDeleted", "ServiceDeleted", "TargetGroupDeleted", "TaskDefinitionsDeleted", "SecretDeleted"} {
		if !slices.Contains(rec.reasons(), want) {
			t.Errorf("events %v lack %s", rec.reasons(), want)
		}
	}

	// Deleting again finds nothing to do.
	e.later()
	before := e.srv.Calls()
	obs = must(p.Observe(ctx, a))(t)
	if obs.Exists {
		t.Errorf("observed after delete: %+v", obs.Resources)
	}
	if err := p.Delete(ctx, a, obs, false, &events{}); err != nil {
		t.Fatal(err)
	}
	if m := e.srv.Calls().Since(before).Mutating(); m != 0 {
		t.Errorf("a second delete made %d mutating calls", m)
	}

	// The app can come back (its session key is restored, not recreated).
	e.srv.Advance(time.Hour) // the INACTIVE service expires
	e.later()
	e.converge(p, a)
	if v := e.secretValue(n.SessionKey); !decodesTo32Bytes(v) {
		t.Error("session key unusable after the app came back")
	}
}

func findRule(e *env, arn string) ruleView {
	for _, r := range e.rules() {
		if awssdk.ToString(r.RuleArn) == arn {
			return ruleView(r)
		}
	}
	e.t.Fatalf("rule %s not found", arn)
	return ruleView{}
}

// TestDeleteWorksWhenTheObservedDesiredCountIsStale: the observed service
// comes from a cache; when it says 0 tasks but someone scaled the service up
// meanwhile, deletion must still succeed (real ECS refuses a non-forced
// DeleteService of a service scaled above 0).
func TestDeleteWorksWhenTheObservedDesiredCountIsStale(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	ctx := context.Background()
	a := app(t, "stale", func(s *v1.ServingApp) { s.Spec.Replicas = awssdk.Int32(0) })
	e.converge(p, a)
	n := p.names(a.Ref)
	// Scaled up behind the platform's back, within the cache's lifetime.
	must(e.raw.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: awssdk.String(testCluster), Service: awssdk.String(n.Service), DesiredCount: awssdk.Int32(3)}))(t)
	obs := must(p.Observe(ctx, a))(t)
	if st := obs.State.(*state); st.service == nil || st.service.DesiredCount != 0 {
		t.Fatalf("test premise: the observed service should be the cached one with 0 tasks, got %+v", st.service)
	}
	if err := p.Delete(ctx, a, obs, false, &events{}); err != nil {
		t.Fatalf("delete with a stale desired count: %v", err)
	}
	svc, _ := e.service(n.Service)
	if s := awssdk.ToString(svc.Status); s != "DRAINING" && s != "INACTIVE" {
		t.Errorf("service status %s, want DRAINING or INACTIVE", s)
	}
	if got := e.inventory(p, a.Ref); got != (inventory{}) {
		t.Errorf("after delete: %+v, want nothing", got)
	}
}

func TestRetainLeavesEverythingWithoutOurTags(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	ctx := context.Background()
	a := app(t, "kept", func(s *v1.ServingApp) { s.Spec.DeletionPolicy = v1.DeletionRetain })
	e.converge(p, a)
	e.later()
	n := p.names(a.Ref)
	rulesBefore := len(e.appRules(a.Ref))
	obs := must(p.Observe(ctx, a))(t)
	if err := p.Delete(ctx, a, obs, true, &events{}); err != nil {
		t.Fatal(err)
	}
	// Everything is still there...
	svc, ok := e.service(n.Service)
	if !ok || awssdk.ToString(svc.Status) != "ACTIVE" || svc.DesiredCount != 2 {
		t.Errorf("service after retain: %v %s %d", ok, awssdk.ToString(svc.Status), svc.DesiredCount)
	}
	var tgARN string
	for _, g := range e.targetGroups() {
		if awssdk.ToString(g.TargetGroupName) == n.TargetGroup {
			tgARN = awssdk.ToString(g.TargetGroupArn)
		}
	}
	if tgARN == "" {
		t.Fatal("target group deleted")
	}
	if len(e.activeRevisions(n.Service)) != 1 || !slices.Contains(e.secrets(), n.SessionKey) {
		t.Error("task definition or session key gone")
	}
	nonDefault := 0
	var arns []string
	for _, r := range e.rules() {
		if !awssdk.ToBool(r.IsDefault) {
			nonDefault++
			arns = append(arns, awssdk.ToString(r.RuleArn))
		}
	}
	if nonDefault != rulesBefore+1 {
		t.Errorf("rules after retain: %d, want %d", nonDefault, rulesBefore+1)
	}
	// ...and nothing carries our ownership tags, while the others stay.
	owned := func(tags map[string]string) bool {
		return tags[model.TagManagedBy] != "" || tags[model.TagApp] != "" || tags[model.TagUID] != ""
	}
	for arn, tags := range e.tags(append(arns, tgARN)...) {
		if owned(tags) {
			t.Errorf("%s still tagged %v", arn, tags)
		}
		if arn == tgARN && tags["cost-center"] != "platform" {
			t.Errorf("retain removed the extra tags of the target group: %v", tags)
		}
	}
	if owned(fromECSTags(svc.Tags)) {
		t.Errorf("service still tagged %v", fromECSTags(svc.Tags))
	}
	td := must(e.raw.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: awssdk.String(e.activeRevisions(n.Service)[0]), Include: []ecstypes.TaskDefinitionField{ecstypes.TaskDefinitionFieldTags}}))(t)
	if owned(fromECSTags(td.Tags)) {
		t.Errorf("task definition still tagged %v", fromECSTags(td.Tags))
	}
	sec := must(e.raw.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String(n.SessionKey)}))(t)
	if owned(smTags(sec.Tags)) || sec.DeletedDate != nil {
		t.Errorf("session key tagged %v, deleted %v", smTags(sec.Tags), sec.DeletedDate)
	}

	// A new controller no longer sees any of it as the app's, and the
	// garbage collector leaves it alone.
	e.later()
	q := e.platform()
	obs = must(q.Observe(ctx, a))(t)
	if len(obs.Resources.RuleARNs) != 0 || obs.Resources.TargetGroupARN != "" || len(obs.Resources.SecretARNs) != 0 || obs.Resources.ServiceARN != "" {
		t.Errorf("retained resources still observed as ours: %+v", obs.Resources)
	}
	before := e.srv.Calls()
	for range 2 {
		if err := q.CollectOrphans(ctx, nil, &events{}); err != nil {
			t.Fatal(err)
		}
	}
	if m := e.srv.Calls().Since(before).Mutating(); m != 0 {
		t.Errorf("garbage collection touched retained resources: %d mutating calls", m)
	}
	// Re-creating the app under the same name is a conflict, not an adoption.
	_, err := q.Apply(ctx, a, obs, &events{})
	var term *model.TerminalError
	if !errors.As(err, &term) || term.Reason != "NameConflict" {
		t.Errorf("re-create over retained resources: %v, want NameConflict", err)
	}
}

func TestOrphanedResourcesAreCollectedWithAnEvent(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	ctx := context.Background()
	live := app(t, "live")
	orphan := app(t, "orphan", func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(4) })
	e.converge(p, live)
	e.converge(p, orphan)
	liveBefore := e.inventory(p, live.Ref)

	q := e.platform() // the next controller process
	rec := &events{}
	if err := q.CollectOrphans(ctx, []model.Ref{live.Ref}, rec); err != nil {
		t.Fatal(err)
	}
	if got := e.inventory(q, orphan.Ref); got.services != 1 || got.rules == 0 {
		t.Fatalf("the first pass already deleted: %+v", got)
	}
	e.later()
	if err := q.CollectOrphans(ctx, []model.Ref{live.Ref}, rec); err != nil {
		t.Fatal(err)
	}
	if got := e.inventory(q, orphan.Ref); got != (inventory{}) {
		t.Errorf("orphan after collection: %+v", got)
	}
	if got := e.inventory(q, live.Ref); got != liveBefore {
		t.Errorf("live app changed: %+v, was %+v", got, liveBefore)
	}
	orphanEvents := 0
	for _, ev := range rec.list {
		if strings.HasPrefix(ev, "OrphanDeleted:") && strings.Contains(ev, "team/orphan") {
			orphanEvents++
		}
	}
	if orphanEvents < 4 {
		t.Errorf("orphan events: %v", rec.list)
	}
	if got := findRule(e, e.foreignRule); awssdk.ToString(got.Priority) == "" {
		t.Error("foreign rule gone")
	}
}

// TestThrottlingConverges throttles a fifth of all calls while three apps
// are created. The SDK's standard retry mode stands in for adaptive mode
// here: adaptive mode would add its client-side slowdown (down to half a
// call per second) and make the test slow without testing the platform
// more; TestClientsUseAdaptiveRetries checks the production retryer.
func TestThrottlingConverges(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.SetFaults(awsemu.Fault{Kind: awsemu.FaultThrottle, Fraction: 0.2}); err != nil {
		t.Fatal(err)
	}
	p := e.platformWith(func(o *Options) { o.Retryer = standardRetries(e.cfg.MaxAttempts) })
	apps := []*model.App{
		app(t, "one", func(s *v1.ServingApp) { s.Spec.Allowlist = cidrs(8) }),
		app(t, "two", func(s *v1.ServingApp) { s.Spec.Route.PathPrefix = "/two" }),
		app(t, "three"),
	}
	for _, a := range apps {
		e.converge(p, a)
	}
	calls := e.srv.Calls()
	if calls.Outcome(awsemu.OutcomeThrottled) == 0 {
		t.Fatal("no call was throttled")
	}
	e.srv.ClearFaults()
	for _, a := range apps {
		want := inventory{services: 1, targetGroups: 1, rules: len(e.appRules(a.Ref)), revisions: 1, sessionKeys: 1, taggedSecrets: 1}
		if got := e.inventory(p, a.Ref); got != want || got.rules == 0 {
			t.Errorf("%s: %+v", a.Ref, got)
		}
	}
	t.Logf("%d calls, %d throttled", calls.Total(), calls.Outcome(awsemu.OutcomeThrottled))
}

func TestClientsUseAdaptiveRetries(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	for name, r := range map[string]awssdk.Retryer{"ecs": p.c.ecs.Options().Retryer, "elbv2": p.c.elb.Options().Retryer, "secretsmanager": p.c.sm.Options().Retryer} {
		if !isAdaptive(r) || r.MaxAttempts() != e.cfg.MaxAttempts {
			t.Errorf("%s retryer %T with %d attempts, want adaptive mode with %d", name, r, r.MaxAttempts(), e.cfg.MaxAttempts)
		}
	}
}

func TestAutoscaledDesiredCountIsLeftToSetDesiredCount(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	ctx := context.Background()
	a := app(t, "scaled", func(s *v1.ServingApp) {
		s.Spec.Replicas = nil
		s.Spec.Autoscaling = &v1.Autoscaling{MinReplicas: 2, MaxReplicas: 8, TargetInvocationsPerReplicaPerMinute: 60}
	})
	e.converge(p, a)
	if err := p.SetDesiredCount(ctx, a.Ref, 5); err != nil {
		t.Fatal(err)
	}
	obs := e.converge(p, a)
	if obs.Replicas.Desired != 5 || obs.Replicas.Running != 5 {
		t.Errorf("replicas %+v, want 5 desired and running", obs.Replicas)
	}
	e.later()
	before := e.srv.Calls()
	if _, err := reconcile(ctx, p, a, &events{}); err != nil {
		t.Fatal(err)
	}
	if m := e.srv.Calls().Since(before).Mutating(); m != 0 {
		t.Errorf("reconcile of an autoscaled app made %d mutating calls", m)
	}
	// A fixed-size app is set back to its spec.
	fixed := app(t, "scaled", func(s *v1.ServingApp) { s.Metadata.Generation = 2 })
	if obs := e.converge(p, fixed); obs.Replicas.Desired != 2 {
		t.Errorf("fixed app desired %d, want 2", obs.Replicas.Desired)
	}
	if err := p.SetDesiredCount(ctx, model.Ref{Namespace: "team", Name: "missing"}, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetDesiredCount of a missing app: %v", err)
	}
}

func TestFailedRolloutIsReportedAndNotRetriedUntilTheSpecChanges(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	ctx := context.Background()
	a := app(t, "fragile")
	e.converge(p, a)
	e.srv.SetDeploymentFailer(func(d awsemu.DeploymentInfo) bool {
		return slices.Contains(d.Images, "registry.example.com/webapp:broken")
	})
	bad := app(t, "fragile", func(s *v1.ServingApp) { s.Spec.Image = "registry.example.com/webapp:broken"; s.Metadata.Generation = 2 })
	var obs *model.Observed
	rec := &events{}
	for range 10 {
		var err error
		if obs, err = reconcile(ctx, p, bad, rec); err != nil {
			t.Fatal(err)
		}
		if obs.Rollout == model.RolloutFailed {
			break
		}
		e.later()
	}
	if obs.Rollout != model.RolloutFailed || obs.Available {
		t.Fatalf("rollout %s available %v: %s", obs.Rollout, obs.Available, obs.Message)
	}
	if !slices.Contains(rec.reasons(), "RolloutFailed") {
		t.Errorf("events %v lack RolloutFailed", rec.reasons())
	}
	// Later reconciles, by this controller or a restarted one, report the
	// failure and leave the rolled-back service alone.
	for _, q := range []*Platform{p, e.platform()} {
		for range 3 {
			e.later()
			before := e.srv.Calls()
			obs, err := reconcile(ctx, q, bad, &events{})
			if err != nil {
				t.Fatal(err)
			}
			if obs.Rollout != model.RolloutFailed {
				t.Errorf("rollout %s: %s", obs.Rollout, obs.Message)
			}
			if n := e.srv.Calls().Since(before).Operation(awsemu.ServiceECS, "UpdateService"); n != 0 {
				t.Errorf("the failed spec was deployed again")
			}
		}
	}
	fixed := app(t, "fragile", func(s *v1.ServingApp) { s.Spec.Image = "registry.example.com/webapp:3"; s.Metadata.Generation = 3 })
	if obs := e.converge(p, fixed); !strings.HasSuffix(obs.Resources.TaskDefinitionARN, ":3") {
		t.Errorf("after the fix the service runs %s", obs.Resources.TaskDefinitionARN)
	}
}

func TestOldRevisionsAreDeregisteredKeepingThree(t *testing.T) {
	e := newEnv(t)
	p := e.platform()
	var last *model.App
	for i := 1; i <= 6; i++ {
		last = app(t, "busy", func(s *v1.ServingApp) {
			s.Spec.Env = map[string]string{"VERSION": string(rune('0' + i))}
			s.Metadata.Generation = int64(i)
		})
		e.converge(p, last)
	}
	revs := e.activeRevisions(p.names(last.Ref).Service)
	if len(revs) != 3 {
		t.Errorf("active revisions %v, want the newest 3", revs)
	}
	for _, r := range revs {
		if revisionOf(r) < 4 {
			t.Errorf("kept old revision %s", r)
		}
	}
}

// ruleView is a listener rule as the tests compare it.
type ruleView = elbtypes.Rule

// isAdaptive unwraps the retryer the SDK clients keep and reports whether
// adaptive mode is inside.
func isAdaptive(r awssdk.Retryer) bool {
	for {
		switch v := r.(type) {
		case *retry.AdaptiveMode:
			return true
		case interface{ Unwrap() awssdk.Retryer }:
			r = v.Unwrap()
		default:
			return false
		}
	}
}
