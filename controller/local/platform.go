// Package local is the platform for dev mode: each replica of an app is a web
// app instance in this process on a loopback port, a Gateway routes to them
// by host and path and enforces allowlists, and secrets live in memory. It
// implements controller.Platform like controller/aws, with the same status,
// conditions and events, so servingctl dev shows the whole product on one machine.
package local

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/servingapp/servingapp/api/appenv"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
)

// Runner starts app instances. Dev mode starts real web apps; tests may start
// anything that serves HTTP.
type Runner interface {
	// Start starts one instance of app with env (secrets resolved) and returns
	// once it accepts connections.
	Start(ctx context.Context, app model.Ref, env map[string]string) (Instance, error)
}

// Instance is one running replica.
type Instance interface {
	// URL is the instance's base URL, e.g. http://127.0.0.1:41234.
	URL() string
	// Stop shuts the instance down gracefully.
	Stop(ctx context.Context) error
}

// Platform runs apps in this process.
type Platform struct {
	Gateway *Gateway
	Runner  Runner
	Secrets *Secrets
	// HTTP checks instance health (GET /healthz); default http.Client with a short timeout.
	HTTP *http.Client

	mu   sync.Mutex
	apps map[string]*appState // by "<ns>/<name>"
}

type appState struct {
	uid       string
	instances []*instance
	// scaled is the desired count the autoscaler set with SetDesiredCount
	// (scale.go); 0 until it does.
	scaled int32
}

type instance struct {
	inst Instance
	hash string
}

// state is what Observe hands to Apply and Delete.
type state struct {
	app       *appState
	healthy   []*instance
	secretRef string
}

// SessionKeySecret is the name of an app's session key secret.
func SessionKeySecret(ref model.Ref) string {
	return "servingapp/" + ref.Namespace + "/" + ref.Name + "/session-key"
}

func (p *Platform) appState(ref model.Ref) *appState {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.apps == nil {
		p.apps = map[string]*appState{}
	}
	st, ok := p.apps[ref.String()]
	if !ok {
		st = &appState{uid: ref.UID}
		p.apps[ref.String()] = st
	}
	return st
}

// Observe reports the app's instances and whether they are all healthy and current.
func (p *Platform) Observe(ctx context.Context, app *model.App) (*model.Observed, error) {
	st := p.appState(app.Ref)
	p.mu.Lock()
	insts := slices.Clone(st.instances)
	p.mu.Unlock()
	s := state{app: st, secretRef: SessionKeySecret(app.Ref)}
	for _, in := range insts {
		if p.healthy(ctx, in.inst) {
			s.healthy = append(s.healthy, in)
		}
	}
	obs := &model.Observed{State: s}
	_, secretErr := p.Secrets.Get(s.secretRef)
	if secretErr == nil {
		obs.Exists = true
		obs.Resources.SecretARNs = []string{s.secretRef}
	}
	if r, ok := p.Gateway.Route(app.Ref.String()); ok {
		obs.Exists = true
		obs.Resources.TargetGroupARN = "local:" + r.Host + r.PathPrefix
		obs.Resources.RuleARNs = []string{"local:" + app.Ref.String()}
	}
	if len(insts) > 0 {
		obs.Exists = true
		obs.Resources.ServiceARN = "local:" + app.Ref.String()
	}
	want := p.desiredCount(app, len(insts))
	hash := ""
	if env, err := p.env(app, s.secretRef); err == nil {
		hash = envHash(env)
		obs.Resources.TaskDefinitionARN = "local:" + app.Ref.String() + ":" + hash[:12]
	}
	current := 0
	for _, in := range s.healthy {
		if in.hash == hash {
			current++
		}
	}
	obs.Replicas = v1.ReplicaStatus{Desired: want, Running: int32(len(s.healthy)), Pending: int32(len(insts) - len(s.healthy))}
	switch {
	case int32(current) == want && len(insts) == int(want):
		obs.Available, obs.Rollout = true, model.RolloutCompleted
	default:
		obs.Rollout = model.RolloutInProgress
		obs.Message = fmt.Sprintf("%d of %d instances running the current configuration.", current, want)
	}
	return obs, nil
}

func (p *Platform) desiredCount(app *model.App, running int) int32 {
	if !app.Autoscaled {
		return app.Replicas
	}
	// While autoscaling owns the count: the autoscaler's, else what runs,
	// within the bounds.
	n := int32(running)
	if scaled := p.scaledCount(app.Ref); scaled > 0 {
		n = scaled
	}
	return max(app.MinReplicas, min(n, app.MaxReplicas))
}

func (p *Platform) healthy(ctx context.Context, in Instance) bool {
	client := p.HTTP
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL()+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// env is the instance environment: the model's plain env plus every secret resolved.
func (p *Platform) env(app *model.App, sessionKeyRef string) (map[string]string, error) {
	env := make(map[string]string, len(app.Env)+len(app.SecretEnv)+1)
	for k, v := range app.Env {
		env[k] = v
	}
	refs := make(map[string]string, len(app.SecretEnv)+1)
	for k, v := range app.SecretEnv {
		refs[k] = v
	}
	refs[appenv.SessionKey] = sessionKeyRef
	for _, k := range model.SortedKeys(refs) {
		v, err := p.Secrets.Get(refs[k])
		if err != nil {
			return nil, fmt.Errorf("resolve %s from secret %q: %w", k, refs[k], err)
		}
		env[k] = string(v)
	}
	return env, nil
}

func envHash(env map[string]string) string {
	h := sha256.New()
	for _, k := range model.SortedKeys(env) {
		fmt.Fprintf(h, "%s=%s\x00", k, env[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Apply makes the app's secrets, instances and route match app, starting new
// instances before stopping old ones so a config change never drops traffic.
func (p *Platform) Apply(ctx context.Context, app *model.App, obs *model.Observed, rec model.Recorder) (*model.Observed, error) {
	s, ok := obs.State.(state)
	if !ok {
		return nil, errors.New("local platform: Apply needs an observation from Observe")
	}
	if _, err := p.Secrets.Get(s.secretRef); errors.Is(err, ErrSecretNotFound) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("generate session key: %w", err)
		}
		if err := p.Secrets.Create(s.secretRef, []byte(base64.StdEncoding.EncodeToString(key)), app.Ref.String()); err != nil && !errors.Is(err, ErrSecretExists) {
			return nil, err
		}
		rec.Event(ctx, "SecretCreated", "session key secret "+s.secretRef+" created")
	}
	env, err := p.env(app, s.secretRef)
	if err != nil {
		return nil, model.Terminal("SecretNotFound", err)
	}
	hash := envHash(env)
	p.mu.Lock()
	all := slices.Clone(s.app.instances)
	p.mu.Unlock()
	want := int(p.desiredCount(app, len(all)))

	var keep, stop []*instance
	for _, in := range all {
		if in.hash == hash && len(keep) < want && slices.Contains(s.healthy, in) {
			keep = append(keep, in)
		} else {
			stop = append(stop, in)
		}
	}
	started := 0
	for len(keep) < want {
		inst, err := p.Runner.Start(ctx, app.Ref, env)
		if err != nil {
			return nil, fmt.Errorf("start instance of %s: %w", app.Ref, err)
		}
		in := &instance{inst: inst, hash: hash}
		keep = append(keep, in)
		p.mu.Lock()
		s.app.instances = append(s.app.instances, in)
		p.mu.Unlock()
		started++
	}
	if started > 0 {
		rec.Event(ctx, "InstancesStarted", fmt.Sprintf("started %d instance(s) of configuration %s", started, hash[:12]))
	}
	var backends []string
	for _, in := range keep {
		backends = append(backends, in.inst.URL())
	}
	old, hadRoute := p.Gateway.Route(app.Ref.String())
	r := Route{App: app.Ref.String(), Host: app.Host, PathPrefix: app.PathPrefix, Allowlist: app.Allowlist, Backends: backends, Blocked: old.Blocked}
	if err := p.Gateway.SetRoute(r); err != nil {
		return nil, err
	}
	if !hadRoute || old.Host != r.Host || old.PathPrefix != r.PathPrefix || !slices.Equal(old.Allowlist, r.Allowlist) {
		rec.Event(ctx, "RulesChanged", fmt.Sprintf("gateway routes %s%s with %d allowed prefixes", r.Host, r.PathPrefix, len(r.Allowlist)))
	}
	// The route no longer points at the old instances: stop them now.
	if len(stop) > 0 {
		p.mu.Lock()
		s.app.instances = slices.DeleteFunc(s.app.instances, func(in *instance) bool { return slices.Contains(stop, in) })
		p.mu.Unlock()
		for _, in := range stop {
			_ = in.inst.Stop(ctx)
		}
		rec.Event(ctx, "InstancesStopped", fmt.Sprintf("stopped %d outdated or surplus instance(s)", len(stop)))
	}
	return p.Observe(ctx, app)
}

// Delete removes the route, stops the instances and, unless retain, deletes the secrets.
func (p *Platform) Delete(ctx context.Context, app *model.App, obs *model.Observed, retain bool, rec model.Recorder) error {
	p.Gateway.RemoveRoute(app.Ref.String())
	p.mu.Lock()
	st := p.apps[app.Ref.String()]
	delete(p.apps, app.Ref.String())
	p.mu.Unlock()
	if st != nil {
		for _, in := range st.instances {
			_ = in.inst.Stop(ctx)
		}
	}
	if retain {
		p.Secrets.Release(app.Ref.String())
		return nil
	}
	p.Secrets.DeleteOwned(app.Ref.String())
	return nil
}

// Shutdown stops every instance, for a clean exit of dev mode.
func (p *Platform) Shutdown(ctx context.Context) {
	p.mu.Lock()
	apps := p.apps
	p.apps = nil
	p.mu.Unlock()
	for ref, st := range apps {
		p.Gateway.RemoveRoute(ref)
		for _, in := range st.instances {
			_ = in.inst.Stop(ctx)
		}
	}
}

// DescribeSecret implements oauth.SecretStore; in dev mode a secret's
// reference is its name.
func (p *Platform) DescribeSecret(_ context.Context, name string) (string, map[string]string, bool, error) {
	tags, err := p.Secrets.Tags(name)
	if errors.Is(err, ErrSecretNotFound) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, err
	}
	return name, tags, true, nil
}

// PutSecret implements oauth.SecretStore.
func (p *Platform) PutSecret(_ context.Context, app *model.App, name string, value []byte, tags map[string]string) (string, error) {
	p.Secrets.Put(name, value, app.Ref.String())
	return name, p.Secrets.SetTags(name, tags)
}

// TagSecret implements oauth.SecretStore.
func (p *Platform) TagSecret(_ context.Context, ref string, tags map[string]string) error {
	return p.Secrets.SetTags(ref, tags)
}

// GetSecret returns a secret's value by reference.
func (p *Platform) GetSecret(_ context.Context, ref string) ([]byte, error) {
	return p.Secrets.Get(ref)
}
