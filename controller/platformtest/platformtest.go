// Package platformtest is an in-memory controller.Platform for tests of the
// controller runtime: it keeps resources like a cloud would, records every
// call, and can fail or crash the calling process on the Kth call so tests
// can prove the reconcile converges after a crash at any point.
package platformtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
)

// Resource kinds, in dependency order.
const (
	KindSecret         = "Secret"
	KindTaskDefinition = "TaskDefinition"
	KindTargetGroup    = "TargetGroup"
	KindService        = "Service"
	KindRule           = "Rule"
)

var createOrder = []string{KindSecret, KindTaskDefinition, KindTargetGroup, KindService, KindRule}

// ErrCrash is the value the call chosen with CrashAt panics with, after its
// effect took place: like a process that died after the cloud accepted a
// request. It is a panic and not a returned error so that nothing the
// controller would do after the call (write status, record an event, retry)
// can run, exactly as after a real crash. Recover it with Crashed.
var ErrCrash = errors.New("platformtest: simulated crash")

// Crashed runs f, which stands for the work of one controller process, and
// reports whether a CrashAt crash ended it. Other panics propagate.
func Crashed(f func()) (crashed bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != ErrCrash { // the panic value itself, never wrapped
				panic(r)
			}
			crashed = true
		}
	}()
	f()
	return false
}

// Resource is one thing the platform holds.
type Resource struct {
	ID   string
	Kind string
	App  string // owner "<ns>/<name>", from tags; empty once released (Retain)
	Spec string // what it was created with, for diffs
	// Running is the task count of a Service; it reaches Desired one Observe
	// after a change, so rollouts take one poll.
	Desired, Running int32
}

// Call is one recorded platform call.
type Call struct {
	Op   string // Observe, Create, Update, Delete, Untag
	Kind string
	App  string
}

// cloud is what outlives a controller process: the resources and the log of
// calls made to them. Every view of one cloud shares it.
type cloud struct {
	mu        sync.Mutex
	nextID    int
	resources map[string]*Resource
	calls     []Call
}

// Platform is one controller process's view of an in-memory cloud. Its zero
// value is not usable; use New, and Restart for the view of a process that
// starts after a crash.
type Platform struct {
	*cloud // the mutex guards the fields below too

	crashAt int   // 1-based index (in the cloud's call log) of the call to crash at; 0 = never
	crashed bool  // the crash happened: this view's process is dead
	crashes int   // how many times a crash was triggered through this view
	failAt  int   // 1-based index of the call to fail at; 0 = never
	failErr error // returned at failAt (before any effect)
	failAll error // returned by every call while set

	// BeforeCall, when set before the platform is used, sees every call
	// before it is recorded or takes effect: tests check what the world
	// looked like at that moment (for example that the finalizer was already
	// stored before the first Create). It runs with the platform locked and
	// must not call the platform.
	BeforeCall func(Call)
	// OnCrash, when set before the platform is used, sees the crashing call
	// after its effect and just before the crash: tests record what the store
	// and the event stream held at the moment the process died. It runs with
	// the platform locked and must not call the platform.
	OnCrash func(Call)
}

// New returns an empty platform.
func New() *Platform {
	return &Platform{cloud: &cloud{resources: map[string]*Resource{}}}
}

// Restart returns the view of a new controller process over the same
// resources and call log: nothing scheduled to crash or fail, no hooks.
func (p *Platform) Restart() *Platform {
	return &Platform{cloud: p.cloud}
}

// CrashAt makes the kth call from now (counted over every view of the cloud)
// take effect and then panic with ErrCrash. After the crash, any further call
// through this view panics too: a dead process makes no calls.
func (p *Platform) CrashAt(k int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.crashAt = len(p.calls) + k
}

// Crashes reports how many times a CrashAt crash happened through this view.
func (p *Platform) Crashes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crashes
}

// FailAt makes the kth call from now return err without taking effect.
func (p *Platform) FailAt(k int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failAt, p.failErr = len(p.calls)+k, err
}

// FailAll makes every call return err until FailAll(nil).
func (p *Platform) FailAll(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failAll = err
}

// Calls returns a copy of the recorded calls.
func (p *Platform) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// Resources returns copies of every resource, in creation order.
func (p *Platform) Resources() []Resource {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Resource, 0, len(p.resources))
	for _, r := range p.resources {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Resource) int { return compareIDs(a.ID, b.ID) })
	return out
}

func compareIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// call records one call and decides whether it fails before or crashes after
// its effect. A crashing caller makes its effect and then calls p.crash.
func (p *Platform) call(op, kind, app string) (crash bool, err error) {
	if p.crashed {
		panic(fmt.Sprintf("platformtest: %s %s of %s through the view of a process that crashed; use Restart", op, kind, app))
	}
	if p.BeforeCall != nil {
		p.BeforeCall(Call{Op: op, Kind: kind, App: app})
	}
	p.calls = append(p.calls, Call{Op: op, Kind: kind, App: app})
	n := len(p.calls)
	switch {
	case p.failAll != nil:
		return false, p.failAll
	case n == p.failAt:
		return false, p.failErr
	}
	return n == p.crashAt, nil
}

// crash ends the calling process; the caller holds the lock, which the
// deferred unlocks release as the panic unwinds.
func (p *Platform) crash() {
	p.crashed = true
	p.crashes++
	if p.OnCrash != nil {
		p.OnCrash(p.calls[len(p.calls)-1])
	}
	panic(ErrCrash)
}

// state is what Observe read, handed to Apply and Delete.
type state struct {
	byKind map[string][]*Resource
}

// Observe finds every resource owned by app.
func (p *Platform) Observe(_ context.Context, app *model.App) (*model.Observed, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	owner := app.Ref.String()
	crash, err := p.call("Observe", "", owner)
	if err != nil {
		return nil, err
	}
	st := state{byKind: map[string][]*Resource{}}
	for _, r := range p.resources {
		if r.App == owner {
			cp := *r
			st.byKind[r.Kind] = append(st.byKind[r.Kind], &cp)
		}
	}
	for _, rs := range st.byKind {
		slices.SortFunc(rs, func(a, b *Resource) int { return compareIDs(a.ID, b.ID) })
	}
	// A rollout advances one step per observation.
	for _, svc := range st.byKind[KindService] {
		if real := p.resources[svc.ID]; real.Running != real.Desired {
			real.Running = real.Desired
		}
	}
	obs := p.observed(st)
	if crash {
		p.crash()
	}
	return obs, nil
}

func (p *Platform) observed(st state) *model.Observed {
	obs := &model.Observed{State: st}
	for _, rs := range st.byKind {
		if len(rs) > 0 {
			obs.Exists = true
		}
	}
	if td := st.byKind[KindTaskDefinition]; len(td) > 0 {
		obs.Resources.TaskDefinitionARN = td[len(td)-1].ID
	}
	if tg := st.byKind[KindTargetGroup]; len(tg) > 0 {
		obs.Resources.TargetGroupARN = tg[0].ID
	}
	for _, s := range st.byKind[KindSecret] {
		obs.Resources.SecretARNs = append(obs.Resources.SecretARNs, s.ID)
	}
	for _, r := range st.byKind[KindRule] {
		obs.Resources.RuleARNs = append(obs.Resources.RuleARNs, r.ID)
	}
	if svcs := st.byKind[KindService]; len(svcs) > 0 {
		svc := svcs[0]
		obs.Resources.ServiceARN = svc.ID
		obs.Replicas = v1.ReplicaStatus{Desired: svc.Desired, Running: svc.Running}
		if svc.Running == svc.Desired {
			obs.Available, obs.Rollout = true, model.RolloutCompleted
		} else {
			obs.Rollout = model.RolloutInProgress
			obs.Message = fmt.Sprintf("%d of %d tasks running", svc.Running, svc.Desired)
		}
	} else {
		obs.Message = "no service yet"
	}
	return obs
}

// desiredSpecs is the app's desired resources by kind: one secret, one task
// definition (spec = its content hash), one target group, one service, and
// one rule per chunk of the allowlist.
func desiredSpecs(app *model.App) map[string][]string {
	td, _ := json.Marshal(struct {
		Image     string
		CPU, Mem  int32
		Env       map[string]string
		SecretEnv map[string]string
	}{app.Image, app.CPU, app.Memory, app.Env, app.SecretEnv})
	sum := sha256.Sum256(td)
	var rules []string
	for i := 0; i < len(app.Allowlist); i += 3 {
		chunk := app.Allowlist[i:min(i+3, len(app.Allowlist))]
		rules = append(rules, fmt.Sprintf("%s%s %v", app.Host, app.PathPrefix, chunk))
	}
	return map[string][]string{
		KindSecret:         {"session-key"},
		KindTaskDefinition: {hex.EncodeToString(sum[:8])},
		KindTargetGroup:    {"tg"},
		KindService:        {"service"},
		KindRule:           rules,
	}
}

// Apply creates what is missing, in dependency order, replaces task
// definitions and rules whose spec changed, and deletes rules no longer wanted.
func (p *Platform) Apply(ctx context.Context, app *model.App, obs *model.Observed, rec model.Recorder) (*model.Observed, error) {
	st, ok := obs.State.(state)
	if !ok {
		return nil, errors.New("platformtest: Apply needs an observation from Observe")
	}
	owner := app.Ref.String()
	want := desiredSpecs(app)
	for _, kind := range createOrder {
		have := st.byKind[kind]
		var keep []*Resource
		for _, spec := range want[kind] {
			if i := slices.IndexFunc(have, func(r *Resource) bool { return r.Spec == spec }); i >= 0 {
				keep = append(keep, have[i])
				have = slices.Delete(have, i, i+1)
				continue
			}
			if kind == KindService && len(have) > 0 {
				keep = append(keep, have[0])
				have = have[1:]
				continue
			}
			r, err := p.create(kind, owner, spec, app.Replicas)
			if err != nil {
				return nil, err
			}
			rec.Event(ctx, kind+"Created", kind+" "+r.ID+" created")
			keep = append(keep, r)
		}
		if kind == KindService {
			for _, svc := range keep {
				if svc.Desired != app.Replicas && !app.Autoscaled {
					if err := p.update(svc.ID, app.Replicas); err != nil {
						return nil, err
					}
					svc.Desired = app.Replicas
				}
			}
		}
		// Old task definition revisions stay (like ECS keeps them); other leftovers go, after the new ones exist.
		if kind != KindTaskDefinition {
			for _, r := range have {
				if err := p.delete(r.ID); err != nil {
					return nil, err
				}
				rec.Event(ctx, kind+"Deleted", kind+" "+r.ID+" deleted")
			}
		} else {
			keep = append(have, keep...)
		}
		st.byKind[kind] = keep
	}
	return p.Observe(ctx, app)
}

// Delete removes the app's resources in reverse dependency order, or with
// retain releases them (removes our ownership) and leaves them.
func (p *Platform) Delete(_ context.Context, app *model.App, obs *model.Observed, retain bool, _ model.Recorder) error {
	st, ok := obs.State.(state)
	if !ok {
		return errors.New("platformtest: Delete needs an observation from Observe")
	}
	for i := len(createOrder) - 1; i >= 0; i-- {
		for _, r := range st.byKind[createOrder[i]] {
			var err error
			if retain {
				err = p.untag(r.ID)
			} else {
				err = p.delete(r.ID)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// CollectOrphans deletes resources whose owner is not among live.
func (p *Platform) CollectOrphans(ctx context.Context, live []model.Ref, rec model.Recorder) error {
	alive := map[string]bool{}
	for _, r := range live {
		alive[r.String()] = true
	}
	for _, r := range p.Resources() {
		if r.App != "" && !alive[r.App] {
			if err := p.delete(r.ID); err != nil {
				return err
			}
			rec.Event(ctx, "OrphanDeleted", fmt.Sprintf("%s %s of deleted app %s removed", r.Kind, r.ID, r.App))
		}
	}
	return nil
}

func (p *Platform) create(kind, owner, spec string, desired int32) (*Resource, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	crash, err := p.call("Create", kind, owner)
	if err != nil {
		return nil, err
	}
	p.nextID++
	r := &Resource{ID: fmt.Sprintf("%s-%d", kind, p.nextID), Kind: kind, App: owner, Spec: spec}
	if kind == KindService {
		r.Desired = desired
	}
	p.resources[r.ID] = r
	if crash {
		p.crash()
	}
	cp := *r
	return &cp, nil
}

func (p *Platform) update(id string, desired int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.resources[id]
	crash, err := p.call("Update", r.Kind, r.App)
	if err != nil {
		return err
	}
	r.Desired = desired
	if crash {
		p.crash()
	}
	return nil
}

func (p *Platform) delete(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.resources[id]
	if !ok {
		return nil
	}
	crash, err := p.call("Delete", r.Kind, r.App)
	if err != nil {
		return err
	}
	delete(p.resources, id)
	if crash {
		p.crash()
	}
	return nil
}

func (p *Platform) untag(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.resources[id]
	if !ok {
		return nil
	}
	crash, err := p.call("Untag", r.Kind, r.App)
	if err != nil {
		return err
	}
	r.App = ""
	if crash {
		p.crash()
	}
	return nil
}
