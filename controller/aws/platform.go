package aws

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
)

// errNotObserved is returned by Apply and Delete given an observation that
// did not come from this platform's Observe.
var errNotObserved = errors.New("aws platform: the observation does not come from Observe")

// Platform runs ServingApps on ECS Fargate behind the shared ALB listener.
// It implements controller.Platform, controller.OrphanCollector and
// oauth.SecretStore; SetDesiredCount and SetBlocked serve autoscaling and
// lockout. Create it with New; it is safe for concurrent use (the
// controller never reconciles one app twice at once).
type Platform struct {
	cfg  Config
	opts Options
	clk  clock.Clock
	rand io.Reader
	log  *slog.Logger
	c    clients
	in   *instrumentation // the clients' rate limiters and call metrics

	services *serviceCache
	listener *listenerCache
	secrets  *secretCache
	taskDefs *taskDefCache

	mu         sync.Mutex
	lastEvent  map[string]string // app → newest ECS service event reported
	tgChecked  map[string]bool   // target group ARN → attributes verified
	cleaned    map[string]int    // family → revision up to which old revisions were deregistered
	orphanSeen map[string]int    // app → consecutive CollectOrphans passes that found it orphaned
	// warnedFailed remembers the failed spec last reported per app, so the
	// RolloutFailed warning is recorded once, not at every reconcile.
	warnedFailed map[string]string
	// blockedSince is, per app, when SetBlocked was first asked to block
	// each address (zero: in the first call of this process, age unknown),
	// so the most recent ones are kept when not all fit.
	blockedSince map[string]map[string]time.Time
}

// New builds the platform: SDK clients with adaptive retries, client-side
// rate limits and call metrics. It makes no AWS call.
func New(ctx context.Context, cfg Config, opts Options) (*Platform, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	in, err := newInstrumentation(cfg, opts.Registerer)
	if err != nil {
		return nil, err
	}
	c, err := newClients(ctx, cfg, opts, in)
	if err != nil {
		return nil, err
	}
	p := &Platform{
		cfg: cfg, opts: opts, clk: opts.Clock, rand: opts.Rand, log: opts.Log, c: c, in: in,
		taskDefs:   &taskDefCache{},
		lastEvent:  map[string]string{},
		tgChecked:  map[string]bool{},
		cleaned:    map[string]int{},
		orphanSeen: map[string]int{},

		warnedFailed: map[string]string{},
		blockedSince: map[string]map[string]time.Time{},
	}
	if p.rand == nil {
		p.rand = rand.Reader
	}
	p.services = newServiceCache(opts.Clock, opts.ServiceMaxAge, p.describeServices)
	p.listener = newListenerCache(c, opts.Clock, opts.Log, cfg.ListenerARN, opts.SnapshotMaxAge, opts.TagMaxAge)
	p.secrets = newSecretCache(c, opts.Clock, cfg.SecretPrefix, opts.SnapshotMaxAge)
	return p, nil
}

func (p *Platform) names(ref model.Ref) names {
	return namesFor(p.cfg.ControllerID, p.cfg.SecretPrefix, ref)
}

// state is what Observe read for one app, handed to Apply and Delete.
type state struct {
	n          names
	sessionKey *secretEntry  // the session key secret, whoever owns it
	secrets    []secretEntry // every secret tagged as the app's
	service    *ecstypes.Service
	current    *taskDef // the service's task definition, when the service is ours
	tg         *targetGroupState
	rules      []ruleState

	desired     *ecs.RegisterTaskDefinitionInput // nil until the session key exists
	desiredHash string
	failed      string // why the deployment of the desired spec failed, if it did
}

func (st *state) serviceOurs(controllerID string) bool {
	return st.service != nil && serviceOurs(st.service, controllerID)
}

// Observe reads what exists for app, from reads shared across apps (see the
// package documentation): the secrets listing, the listener snapshot and a
// batched DescribeServices, plus the service's task definition (described
// once per revision and process). It never changes anything.
func (p *Platform) Observe(ctx context.Context, app *model.App) (*model.Observed, error) {
	n := p.names(app.Ref)
	st := &state{n: n}
	if err := p.secrets.ensureFresh(ctx); err != nil {
		return nil, fmt.Errorf("observe secrets of %s: %w", app.Ref, err)
	}
	if e, ok := p.secrets.lookup(n.SessionKey); ok {
		st.sessionKey = &e
	}
	st.secrets = p.secrets.owned(p.cfg.ControllerID, app.Ref.String())
	svc, err := p.services.get(ctx, n.Service)
	if err != nil {
		return nil, fmt.Errorf("observe service of %s: %w", app.Ref, err)
	}
	st.service = svc
	if err := p.listener.ensureFresh(ctx); err != nil {
		return nil, fmt.Errorf("observe listener rules of %s: %w", app.Ref, err)
	}
	st.rules = p.listener.appRules(p.cfg.ControllerID, app.Ref)
	if tg, ok := p.listener.targetGroup(n.TargetGroup); ok {
		st.tg = &tg
	}
	p.computeDesired(app, st)
	if st.serviceOurs(p.cfg.ControllerID) {
		cur, err := p.describeTaskDefinition(ctx, awssdk.ToString(svc.TaskDefinition))
		if err != nil {
			return nil, fmt.Errorf("observe %s: %w", app.Ref, err)
		}
		st.current = &cur
		if err := p.detectFailure(ctx, st); err != nil {
			return nil, fmt.Errorf("observe %s: %w", app.Ref, err)
		}
	}
	return p.observed(st), nil
}

// computeDesired fills the desired task definition once the session key's
// ARN is known (the definition refers to it).
func (p *Platform) computeDesired(app *model.App, st *state) {
	k := st.sessionKey
	if app.Image == "" || k == nil || k.Deleted || !k.ours(p.cfg.ControllerID) {
		return
	}
	in, spec := p.desiredTaskDefinition(app, st.n, k.ARN)
	st.desired, st.desiredHash = in, spec.hash()
}

// detectFailure finds out whether a deployment of the desired spec failed:
// ECS rolled it back (circuit breaker), and deploying it again would fail
// the same way, so it is reported instead until the spec changes. Two
// signals: a deployment of the desired spec in state FAILED (visible while
// the rollback runs), and, durably, a service tagged with the desired spec
// (we deployed it) that runs another one.
func (p *Platform) detectFailure(ctx context.Context, st *state) error {
	if st.desiredHash == "" || st.current.Hash == st.desiredHash {
		return nil
	}
	svc := st.service
	if fromECSTags(svc.Tags)[tagSpec] == st.desiredHash {
		st.failed = "ECS no longer runs the spec this controller deployed: its deployment failed and the circuit breaker rolled it back (or someone changed the service by hand). It is not deployed again until the spec changes."
	}
	for _, d := range svc.Deployments {
		if d.RolloutState != ecstypes.DeploymentRolloutStateFailed {
			continue
		}
		t, err := p.describeTaskDefinition(ctx, awssdk.ToString(d.TaskDefinition))
		if err != nil {
			return err
		}
		if t.Hash == st.desiredHash {
			st.failed = "The deployment failed and ECS rolled it back: " + awssdk.ToString(d.RolloutStateReason) + " It is not deployed again until the spec changes."
		}
	}
	return nil
}

// observed derives the model's view from st.
func (p *Platform) observed(st *state) *model.Observed {
	ctl := p.cfg.ControllerID
	obs := &model.Observed{State: st}
	for _, e := range st.secrets {
		if !e.Deleted {
			obs.Resources.SecretARNs = append(obs.Resources.SecretARNs, e.ARN)
		}
	}
	if st.tg != nil && st.tg.ours(ctl) {
		obs.Resources.TargetGroupARN = st.tg.ARN
	}
	for _, r := range st.rules {
		obs.Resources.RuleARNs = append(obs.Resources.RuleARNs, r.ARN)
	}
	svcOurs := st.serviceOurs(ctl)
	obs.Exists = len(obs.Resources.SecretARNs) > 0 || obs.Resources.TargetGroupARN != "" || len(st.rules) > 0 || svcOurs
	switch {
	case svcOurs:
		svc := st.service
		obs.Resources.ServiceARN = awssdk.ToString(svc.ServiceArn)
		obs.Resources.TaskDefinitionARN = awssdk.ToString(svc.TaskDefinition)
		current := st.current != nil && st.desiredHash != "" && st.current.Hash == st.desiredHash
		obs.Replicas, obs.Rollout, obs.Available, obs.Message = serviceStatus(svc, current, st.failed)
	case st.service != nil:
		obs.Message = fmt.Sprintf("ECS service %s exists but is not tagged %s=%s; it is left alone.", st.n.Service, model.TagManagedBy, ctl)
	default:
		obs.Message = "The ECS service does not exist yet."
	}
	return obs
}

// Apply makes AWS match app, creating in dependency order (secrets, task
// definition, target group, listener rules, service) and changing only what
// differs from obs. Without changes it makes no mutating call.
func (p *Platform) Apply(ctx context.Context, app *model.App, obs *model.Observed, rec model.Recorder) (*model.Observed, error) {
	st, ok := obs.State.(*state)
	if !ok {
		return nil, errNotObserved
	}
	ctl := p.cfg.ControllerID
	if st.service != nil && !st.serviceOurs(ctl) {
		return nil, model.Terminal(reasonNameConflict, fmt.Errorf("ECS service %s exists in cluster %s but is not tagged %s=%s (retained from a deleted app, or made by hand): delete it or rename the app",
			st.n.Service, p.cfg.Cluster, model.TagManagedBy, ctl))
	}
	// Quotas first, from what Observe read: an app that cannot get its
	// rules gets nothing, rather than a secret and a task definition.
	if len(st.rules) == 0 {
		need := len(planRules(kindAllow, allowlistValues(app.Allowlist), nil, route{Host: app.Host, Paths: app.PathPatterns}, nil).Create)
		if err := p.checkQuotas(ctx, app.Ref, st.tg == nil || !st.tg.Attached, need); err != nil {
			return nil, err
		}
	}

	if _, err := p.ensureSessionKey(ctx, app, st.n, rec); err != nil {
		return nil, err
	}
	if e, ok := p.secrets.lookup(st.n.SessionKey); ok {
		st.sessionKey = &e
	}
	p.computeDesired(app, st)
	if st.desired == nil {
		return nil, fmt.Errorf("task definition of %s: the session key secret %s is not usable", app.Ref, st.n.SessionKey)
	}
	st.secrets = p.secrets.owned(ctl, app.Ref.String())

	taskDefinition := ""
	switch {
	case st.current != nil && st.current.Hash == st.desiredHash:
		taskDefinition = st.current.ARN
	case st.failed != "":
		// Leave the rolled-back service alone until the spec changes.
	default:
		var inUse []string
		if st.service != nil {
			for _, d := range st.service.Deployments {
				inUse = append(inUse, awssdk.ToString(d.TaskDefinition))
			}
		}
		var err error
		if taskDefinition, err = p.resolveTaskDefinition(ctx, app, st.desired, st.desiredHash, inUse, rec); err != nil {
			return nil, err
		}
	}

	tg, err := p.ensureRouting(ctx, app, st.n, rec)
	if err != nil {
		return nil, err
	}
	st.tg = &tg
	st.rules = p.listener.appRules(ctl, app.Ref)

	if err := p.ensureService(ctx, app, st, taskDefinition, tg.ARN, rec); err != nil {
		return nil, err
	}
	obs = p.observed(st)
	if obs.Available {
		var inUse []string
		for _, d := range st.service.Deployments {
			inUse = append(inUse, awssdk.ToString(d.TaskDefinition))
		}
		if err := p.cleanupRevisions(ctx, app, st.n.Service, awssdk.ToString(st.service.TaskDefinition), inUse, rec); err != nil {
			return nil, err
		}
	}
	return obs, nil
}

// ensureService creates the service or updates what differs, tags it, and
// records its new ECS events.
func (p *Platform) ensureService(ctx context.Context, app *model.App, st *state, taskDefinition, targetGroup string, rec model.Recorder) error {
	svc := st.service
	if svc == nil {
		if taskDefinition == "" {
			return fmt.Errorf("create service for %s: no task definition", app.Ref)
		}
		created, err := p.createService(ctx, app, st.n, taskDefinition, st.desiredHash, targetGroup, rec)
		if err != nil {
			return err
		}
		st.service = created
		if t, ok := p.taskDefs.get(taskDefinition); ok {
			st.current = &t
		}
		p.recordServiceEvents(ctx, app.Ref, created, rec)
		return nil
	}
	if awssdk.ToString(svc.Status) == statusDraining {
		return fmt.Errorf("service %s of %s is still draining after a deletion; it is created again once ECS has removed it", st.n.Service, app.Ref)
	}
	if in, what := p.serviceUpdate(app, svc, taskDefinition, targetGroup); in != nil {
		out, err := p.c.ecs.UpdateService(ctx, in)
		if err != nil {
			if isCode(err, "ServiceNotActiveException", "ServiceNotFoundException") {
				p.services.put(st.n.Service, nil)
			}
			return classify("update service of "+app.Ref.String(), err)
		}
		withTags(out.Service, svc.Tags)
		svc = out.Service
		st.service = svc
		p.services.put(st.n.Service, svc)
		if t, ok := p.taskDefs.get(awssdk.ToString(svc.TaskDefinition)); ok {
			st.current = &t
		}
		rec.Event(ctx, "ServiceUpdated", "ECS service updated: "+strings.Join(what, ", "))
	}
	want := maps.Clone(app.Tags)
	if want == nil {
		want = map[string]string{}
	}
	if taskDefinition != "" {
		want[tagSpec] = st.desiredHash
	}
	if !tagsCover(fromECSTags(svc.Tags), want) {
		if _, err := p.c.ecs.TagResource(ctx, &ecs.TagResourceInput{ResourceArn: svc.ServiceArn, Tags: ecsTags(want)}); err != nil {
			return classify("tag service of "+app.Ref.String(), err)
		}
		cp := *svc
		cp.Tags = ecsTags(mergeTags(fromECSTags(svc.Tags), want))
		st.service = &cp
		p.services.put(st.n.Service, &cp)
	}
	if st.failed != "" {
		p.mu.Lock()
		warned := p.warnedFailed[app.Ref.String()] == st.desiredHash
		p.warnedFailed[app.Ref.String()] = st.desiredHash
		p.mu.Unlock()
		if !warned {
			rec.Warning(ctx, "RolloutFailed", st.failed)
		}
	}
	p.recordServiceEvents(ctx, app.Ref, st.service, rec)
	return nil
}

// Delete removes what the app owns in reverse dependency order: listener
// rules, the service (deleted with force, so ECS drains its tasks), the
// target group, the task definition revisions, and the secrets (scheduled
// for deletion with the recovery window). With retain it leaves everything in place and
// removes only this controller's tags, so nothing is ours any more.
func (p *Platform) Delete(ctx context.Context, app *model.App, obs *model.Observed, retain bool, rec model.Recorder) error {
	st, ok := obs.State.(*state)
	if !ok {
		return errNotObserved
	}
	if retain {
		return p.release(ctx, app.Ref, st, rec)
	}
	return p.remove(ctx, app.Ref, st, func(kind, what string) {
		rec.Event(ctx, kind+"Deleted", what)
	})
}

// remove deletes every resource of ref, reporting each kind through done.
func (p *Platform) remove(ctx context.Context, ref model.Ref, st *state, done func(kind, what string)) error {
	ctl := p.cfg.ControllerID
	arns, err := p.deleteAppRules(ctx, ref)
	if err != nil {
		return err
	}
	if len(arns) > 0 {
		done("ListenerRules", fmt.Sprintf("%d listener rule(s) deleted", len(arns)))
	}
	if st.serviceOurs(ctl) && awssdk.ToString(st.service.Status) == statusActive {
		if err := p.deleteService(ctx, ref, st); err != nil {
			return err
		}
		done("Service", "ECS service "+awssdk.ToString(st.service.ServiceArn)+" deleted (ECS stops its tasks)")
	}
	if err := func() error {
		unlock, err := p.listener.lock(ctx)
		if err != nil {
			return err
		}
		defer unlock()
		tg, ok, err := p.appTargetGroup(ctx, st.n)
		if err != nil || !ok || !tg.ours(ctl) {
			return err
		}
		if err := p.deleteTargetGroup(ctx, tg); err != nil {
			return err
		}
		done("TargetGroup", "target group "+tg.ARN+" deleted")
		return nil
	}(); err != nil {
		return err
	}
	revs, err := p.ownedRevisions(ctx, st.n.Service)
	if err != nil {
		return err
	}
	for _, t := range revs {
		if _, err := p.c.ecs.DeregisterTaskDefinition(ctx, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: awssdk.String(t.ARN)}); err != nil {
			return classify("deregister task definition "+t.ARN+" of "+ref.String(), err)
		}
	}
	if len(revs) > 0 {
		done("TaskDefinitions", fmt.Sprintf("%d task definition revision(s) of family %s deregistered", len(revs), st.n.Service))
	}
	p.taskDefs.forgetFamily(st.n.Service)
	if err := p.secrets.ensureFresh(ctx); err != nil {
		return err
	}
	for _, e := range p.secrets.owned(ctl, ref.String()) {
		if e.Deleted {
			continue
		}
		if err := p.deleteSecret(ctx, e); err != nil {
			return fmt.Errorf("delete secrets of %s: %w", ref, err)
		}
		done("Secret", fmt.Sprintf("secret %s scheduled for deletion (recoverable for %d days)", e.Name, p.cfg.SecretRecoveryWindowDays))
	}
	p.mu.Lock()
	delete(p.lastEvent, ref.String())
	delete(p.cleaned, st.n.Service)
	delete(p.blockedSince, ref.String())
	p.mu.Unlock()
	p.services.forget(st.n.Service)
	return nil
}

// deleteService deletes the service with force, which ECS documents as
// deleting it even when it is not scaled down to zero: ECS then drains and
// stops its tasks. Scaling to zero first and deleting without force would
// trust the observed desired count, which comes from a cache and can be
// stale (the autoscaler or a person scaled it up meanwhile); the non-forced
// delete then fails with "The service cannot be stopped while it is scaled
// above 0" until the cache expires.
func (p *Platform) deleteService(ctx context.Context, ref model.Ref, st *state) error {
	svc := st.service
	out, err := p.c.ecs.DeleteService(ctx, &ecs.DeleteServiceInput{Cluster: awssdk.String(p.cfg.Cluster), Service: svc.ServiceName, Force: awssdk.Bool(true)})
	switch {
	case isCode(err, "ServiceNotFoundException", "ServiceNotActiveException"):
		p.services.put(st.n.Service, nil)
	case err != nil:
		return classify("delete the service of "+ref.String(), err)
	default:
		withTags(out.Service, svc.Tags)
		p.services.put(st.n.Service, out.Service)
	}
	return nil
}

// release removes this controller's tags from everything of ref
// (deletionPolicy Retain): the resources stay and are no longer ours.
func (p *Platform) release(ctx context.Context, ref model.Ref, st *state, rec model.Recorder) error {
	ctl := p.cfg.ControllerID
	keys := ownershipTagKeys()
	if err := func() error {
		unlock, err := p.listener.lock(ctx)
		if err != nil {
			return err
		}
		defer unlock()
		var arns []string
		for _, r := range p.listener.appRules(ctl, ref) {
			arns = append(arns, r.ARN)
		}
		tg, ok, err := p.appTargetGroup(ctx, st.n)
		if err != nil {
			return err
		}
		if ok && tg.ours(ctl) {
			arns = append(arns, tg.ARN)
		}
		return p.untagELB(ctx, arns)
	}(); err != nil {
		return err
	}
	if st.serviceOurs(ctl) {
		if _, err := p.c.ecs.UntagResource(ctx, &ecs.UntagResourceInput{ResourceArn: st.service.ServiceArn, TagKeys: keys}); err != nil {
			return classify("untag the service of "+ref.String(), err)
		}
		p.services.forget(st.n.Service)
	}
	revs, err := p.ownedRevisions(ctx, st.n.Service)
	if err != nil {
		return err
	}
	for _, t := range revs {
		if _, err := p.c.ecs.UntagResource(ctx, &ecs.UntagResourceInput{ResourceArn: awssdk.String(t.ARN), TagKeys: keys}); err != nil {
			return classify("untag task definition "+t.ARN+" of "+ref.String(), err)
		}
	}
	p.taskDefs.forgetFamily(st.n.Service)
	if err := p.secrets.ensureFresh(ctx); err != nil {
		return err
	}
	for _, e := range p.secrets.owned(ctl, ref.String()) {
		if err := p.untagSecret(ctx, e); err != nil {
			return err
		}
	}
	rec.Event(ctx, "ResourcesReleased", "deletionPolicy Retain: every AWS resource of the app stays, without the servingapp.io ownership tags")
	return nil
}

// SetDesiredCount sets the desired task count of the app's service (the
// autoscaler's lever; Apply never changes the count of an autoscaled app).
// It returns an error wrapping ErrNotFound when the app has no active
// service of this controller.
func (p *Platform) SetDesiredCount(ctx context.Context, app model.Ref, n int32) error {
	name := p.names(app).Service
	svc, err := p.services.get(ctx, name)
	if err != nil {
		return fmt.Errorf("set desired count of %s: %w", app, err)
	}
	if svc == nil || !serviceOurs(svc, p.cfg.ControllerID) || awssdk.ToString(svc.Status) != statusActive {
		return fmt.Errorf("set desired count of %s: %w: no active ECS service %s of controller %s", app, ErrNotFound, name, p.cfg.ControllerID)
	}
	if svc.DesiredCount == n {
		return nil
	}
	out, err := p.c.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: awssdk.String(p.cfg.Cluster), Service: awssdk.String(name), DesiredCount: awssdk.Int32(n)})
	if err != nil {
		return classify(fmt.Sprintf("set desired count of %s to %d", app, n), err)
	}
	withTags(out.Service, svc.Tags)
	p.services.put(name, out.Service)
	return nil
}
