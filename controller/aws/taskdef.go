package aws

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/servingapp/servingapp/api/appenv"
	"github.com/servingapp/servingapp/controller/model"
)

// containerName is the web app's container in every task definition.
const containerName = "webapp"

// keepRevisions is how many ACTIVE revisions of a family stay registered
// after a rollout completes (the running one included), for rollbacks.
const keepRevisions = 3

// taskSpec is the part of a task definition this platform decides, in a
// normal form: environment and secrets sorted, units as numbers, the
// defaults ECS fills in made explicit. Two definitions with equal specs run
// the same app, so a new revision is registered only when specs differ.
type taskSpec struct {
	Family        string
	CPU           string
	Memory        string
	NetworkMode   string
	Fargate       bool
	ExecutionRole string
	TaskRole      string
	Containers    []containerSpec
}

type containerSpec struct {
	Name       string
	Image      string
	Essential  bool
	Ports      []string // "containerPort:hostPort/protocol"
	Env        []nameValue
	Secrets    []nameValue
	LogDriver  string
	LogOptions []nameValue
}

type nameValue struct{ Name, Value string }

// hash identifies a spec (tags and comparisons).
func (s taskSpec) hash() string {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

func sortedPairs(m map[string]string) []nameValue {
	out := make([]nameValue, 0, len(m))
	for _, k := range model.SortedKeys(m) {
		out = append(out, nameValue{k, m[k]})
	}
	return out
}

// desiredTaskDefinition is the registration request for app, and its spec.
func (p *Platform) desiredTaskDefinition(app *model.App, n names, sessionKeyARN string) (*ecs.RegisterTaskDefinitionInput, taskSpec) {
	secrets := maps.Clone(app.SecretEnv)
	if secrets == nil {
		secrets = map[string]string{}
	}
	secrets[appenv.SessionKey] = sessionKeyARN
	if p.cfg.AppCredsSecret != "" {
		secrets[appenv.NATSCreds] = p.cfg.AppCredsSecret
	}
	env := sortedPairs(app.Env)
	sec := sortedPairs(secrets)
	logOpts := map[string]string{
		"awslogs-group":         p.cfg.LogGroup,
		"awslogs-region":        p.cfg.Region,
		"awslogs-stream-prefix": n.LogPrefix,
	}
	cd := ecstypes.ContainerDefinition{
		Name:         awssdk.String(containerName),
		Image:        awssdk.String(app.Image),
		Essential:    awssdk.Bool(true),
		PortMappings: []ecstypes.PortMapping{{ContainerPort: awssdk.Int32(appenv.Port), Protocol: ecstypes.TransportProtocolTcp}},
		LogConfiguration: &ecstypes.LogConfiguration{
			LogDriver: ecstypes.LogDriverAwslogs,
			Options:   logOpts,
		},
	}
	for _, kv := range env {
		cd.Environment = append(cd.Environment, ecstypes.KeyValuePair{Name: awssdk.String(kv.Name), Value: awssdk.String(kv.Value)})
	}
	for _, kv := range sec {
		cd.Secrets = append(cd.Secrets, ecstypes.Secret{Name: awssdk.String(kv.Name), ValueFrom: awssdk.String(kv.Value)})
	}
	in := &ecs.RegisterTaskDefinitionInput{
		Family:                  awssdk.String(n.Service),
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode:             ecstypes.NetworkModeAwsvpc,
		Cpu:                     awssdk.String(strconv.Itoa(int(app.CPU))),
		Memory:                  awssdk.String(strconv.Itoa(int(app.Memory))),
		ExecutionRoleArn:        awssdk.String(p.cfg.ExecutionRoleARN),
		ContainerDefinitions:    []ecstypes.ContainerDefinition{cd},
		Tags:                    ecsTags(app.Tags),
	}
	if p.cfg.TaskRoleARN != "" {
		in.TaskRoleArn = awssdk.String(p.cfg.TaskRoleARN)
	}
	td := &ecstypes.TaskDefinition{
		Family:                  in.Family,
		RequiresCompatibilities: in.RequiresCompatibilities,
		NetworkMode:             in.NetworkMode,
		Cpu:                     in.Cpu,
		Memory:                  in.Memory,
		ExecutionRoleArn:        in.ExecutionRoleArn,
		TaskRoleArn:             in.TaskRoleArn,
		ContainerDefinitions:    in.ContainerDefinitions,
	}
	return in, specOf(td)
}

// specOf normalizes a task definition as registered (or as about to be).
func specOf(td *ecstypes.TaskDefinition) taskSpec {
	s := taskSpec{
		Family:        awssdk.ToString(td.Family),
		CPU:           normalizeUnits(awssdk.ToString(td.Cpu), "vcpu"),
		Memory:        normalizeUnits(awssdk.ToString(td.Memory), "gb"),
		NetworkMode:   string(td.NetworkMode),
		Fargate:       slices.Contains(td.RequiresCompatibilities, ecstypes.CompatibilityFargate),
		ExecutionRole: awssdk.ToString(td.ExecutionRoleArn),
		TaskRole:      awssdk.ToString(td.TaskRoleArn),
	}
	for _, c := range td.ContainerDefinitions {
		cs := containerSpec{
			Name:      awssdk.ToString(c.Name),
			Image:     awssdk.ToString(c.Image),
			Essential: c.Essential == nil || *c.Essential,
		}
		for _, pm := range c.PortMappings {
			cp := awssdk.ToInt32(pm.ContainerPort)
			hp := awssdk.ToInt32(pm.HostPort)
			if hp == 0 && td.NetworkMode == ecstypes.NetworkModeAwsvpc {
				hp = cp
			}
			proto := string(pm.Protocol)
			if proto == "" {
				proto = string(ecstypes.TransportProtocolTcp)
			}
			cs.Ports = append(cs.Ports, fmt.Sprintf("%d:%d/%s", cp, hp, proto))
		}
		slices.Sort(cs.Ports)
		for _, e := range c.Environment {
			cs.Env = append(cs.Env, nameValue{awssdk.ToString(e.Name), awssdk.ToString(e.Value)})
		}
		for _, e := range c.Secrets {
			cs.Secrets = append(cs.Secrets, nameValue{awssdk.ToString(e.Name), awssdk.ToString(e.ValueFrom)})
		}
		byName := func(a, b nameValue) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Value, b.Value)) }
		slices.SortFunc(cs.Env, byName)
		slices.SortFunc(cs.Secrets, byName)
		if lc := c.LogConfiguration; lc != nil {
			cs.LogDriver = string(lc.LogDriver)
			cs.LogOptions = sortedPairs(lc.Options)
		}
		s.Containers = append(s.Containers, cs)
	}
	slices.SortFunc(s.Containers, func(a, b containerSpec) int { return cmp.Compare(a.Name, b.Name) })
	return s
}

// normalizeUnits turns "1 vCPU" or "2 GB" into CPU units or MiB, as ECS
// stores them; numbers stay as they are.
func normalizeUnits(v, unit string) string {
	v = strings.TrimSpace(v)
	if _, err := strconv.Atoi(v); err == nil || v == "" {
		return v
	}
	num, u, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(strings.TrimSpace(u), unit) {
		return v
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return v
	}
	return strconv.Itoa(int(f * 1024))
}

func ecsTags(tags map[string]string) []ecstypes.Tag {
	out := make([]ecstypes.Tag, 0, len(tags))
	for _, k := range model.SortedKeys(tags) {
		out = append(out, ecstypes.Tag{Key: awssdk.String(k), Value: awssdk.String(tags[k])})
	}
	return out
}

func fromECSTags(tags []ecstypes.Tag) map[string]string {
	out := make(map[string]string, len(tags))
	for _, t := range tags {
		out[awssdk.ToString(t.Key)] = awssdk.ToString(t.Value)
	}
	return out
}

// revisionOf returns the revision number at the end of a task definition ARN.
func revisionOf(arn string) int {
	i := strings.LastIndexByte(arn, ':')
	if i < 0 {
		return 0
	}
	n, _ := strconv.Atoi(arn[i+1:])
	return n
}

// taskDef is a described task definition. Revisions never change, so they
// are described once per process (status and tags may; this platform
// updates them when it changes them).
type taskDef struct {
	ARN    string
	Family string
	Status string
	Spec   taskSpec
	Hash   string
	Tags   map[string]string
}

type taskDefCache struct {
	mu    sync.Mutex
	byARN map[string]*taskDef
}

func (c *taskDefCache) get(arn string) (taskDef, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.byARN[arn]
	if !ok {
		return taskDef{}, false
	}
	return *t, true
}

func (c *taskDefCache) put(t taskDef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byARN == nil {
		c.byARN = map[string]*taskDef{}
	}
	c.byARN[t.ARN] = &t
}

// forgetFamily drops every cached revision of family (its app is gone).
func (c *taskDefCache) forgetFamily(family string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for arn, t := range c.byARN {
		if t.Family == family {
			delete(c.byARN, arn)
		}
	}
}

// describeTaskDefinition returns a task definition with its tags, from the
// cache when it was described before.
func (p *Platform) describeTaskDefinition(ctx context.Context, arn string) (taskDef, error) {
	if t, ok := p.taskDefs.get(arn); ok {
		return t, nil
	}
	out, err := p.c.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{
		TaskDefinition: awssdk.String(arn),
		Include:        []ecstypes.TaskDefinitionField{ecstypes.TaskDefinitionFieldTags},
	})
	if err != nil {
		return taskDef{}, classify("describe task definition "+arn, err)
	}
	t := taskDefOf(out.TaskDefinition, fromECSTags(out.Tags))
	p.taskDefs.put(t)
	return t, nil
}

func taskDefOf(td *ecstypes.TaskDefinition, tags map[string]string) taskDef {
	spec := specOf(td)
	return taskDef{
		ARN:    awssdk.ToString(td.TaskDefinitionArn),
		Family: awssdk.ToString(td.Family),
		Status: string(td.Status),
		Spec:   spec,
		Hash:   spec.hash(),
		Tags:   tags,
	}
}

// activeRevisions lists the ACTIVE revisions of family, newest first; limit
// 0 lists them all.
func (p *Platform) activeRevisions(ctx context.Context, family string, limit int) ([]string, error) {
	var out []string
	in := &ecs.ListTaskDefinitionsInput{
		FamilyPrefix: awssdk.String(family),
		Status:       ecstypes.TaskDefinitionStatusActive,
		Sort:         ecstypes.SortOrderDesc,
	}
	if limit > 0 {
		in.MaxResults = awssdk.Int32(int32(limit))
	}
	pg := ecs.NewListTaskDefinitionsPaginator(p.c.ecs, in)
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, classify("list task definitions of family "+family, err)
		}
		out = append(out, page.TaskDefinitionArns...)
		if limit > 0 && len(out) >= limit {
			return out[:limit], nil
		}
	}
	return out, nil
}

// resolveTaskDefinition returns the ARN of an ACTIVE revision of ours with
// the desired spec: the newest few revisions are checked first (a crash can
// fall between registering and deploying), and only when none matches is a
// new revision registered. inUse are the task definitions of the service's
// deployments.
//
// RegisterTaskDefinition has no client token: when its answer is lost, the
// SDK's retry registers a second identical revision. So after a
// registration that took more than one attempt the newest revisions are
// read again and identical ones of ours are deregistered, and the check
// before registering does the same when a crash came in between: an app
// never keeps two revisions of one spec.
func (p *Platform) resolveTaskDefinition(ctx context.Context, app *model.App, in *ecs.RegisterTaskDefinitionInput, wantHash string, inUse []string, rec model.Recorder) (string, error) {
	family := awssdk.ToString(in.Family)
	arns, err := p.activeRevisions(ctx, family, keepRevisions)
	if err != nil {
		return "", fmt.Errorf("find task definition for %s: %w", app.Ref, err)
	}
	matches, err := p.matchingRevisions(ctx, arns, wantHash)
	if err != nil {
		return "", err
	}
	if len(matches) > 0 {
		keep := matches[0] // the newest
		for _, arn := range matches {
			if slices.Contains(inUse, arn) {
				keep = arn
				break
			}
		}
		if err := p.dropDuplicates(ctx, app, keep, matches, inUse, rec); err != nil {
			return "", err
		}
		return keep, nil
	}
	out, err := p.c.ecs.RegisterTaskDefinition(ctx, in)
	if err != nil {
		return "", classify("register task definition for "+app.Ref.String(), err)
	}
	t := taskDefOf(out.TaskDefinition, fromECSTags(out.Tags))
	if len(t.Tags) == 0 {
		t.Tags = maps.Clone(app.Tags)
	}
	p.taskDefs.put(t)
	rec.Event(ctx, "TaskDefinitionRegistered", fmt.Sprintf("task definition %s registered (image %s)", t.ARN, app.Image))
	if t.Hash != wantHash {
		// ECS stored something else than this platform's normal form
		// expects: every reconcile would register another revision.
		return "", model.Terminal("TaskDefinitionMismatch", fmt.Errorf("task definition %s of %s reads back differently from what was registered (%s): not registering again; this is a bug of the platform's normalization",
			t.ARN, app.Ref, strings.Join(specDiff(t.Spec, in), ", ")))
	}
	if attempts(out.ResultMetadata) > 1 {
		// Each attempt may have registered a revision; they are the newest.
		arns, err := p.activeRevisions(ctx, family, p.cfg.MaxAttempts+1)
		if err != nil {
			return "", fmt.Errorf("look for duplicate task definitions of %s: %w", app.Ref, err)
		}
		matches, err := p.matchingRevisions(ctx, arns, wantHash)
		if err != nil {
			return "", err
		}
		if err := p.dropDuplicates(ctx, app, t.ARN, matches, inUse, rec); err != nil {
			return "", err
		}
	}
	return t.ARN, nil
}

// matchingRevisions returns those of arns (newest first) that are ours and
// have the spec hash want.
func (p *Platform) matchingRevisions(ctx context.Context, arns []string, want string) ([]string, error) {
	var out []string
	for _, arn := range arns {
		t, err := p.describeTaskDefinition(ctx, arn)
		if err != nil {
			return nil, err
		}
		if t.Hash == want && t.Tags[model.TagManagedBy] == p.cfg.ControllerID {
			out = append(out, arn)
		}
	}
	return out, nil
}

// dropDuplicates deregisters the revisions of matches (all with one spec)
// but keep, leaving those a deployment of the service uses.
func (p *Platform) dropDuplicates(ctx context.Context, app *model.App, keep string, matches, inUse []string, rec model.Recorder) error {
	var dropped []string
	for _, arn := range matches {
		if arn == keep || slices.Contains(inUse, arn) {
			continue
		}
		if _, err := p.c.ecs.DeregisterTaskDefinition(ctx, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: awssdk.String(arn)}); err != nil {
			return classify("deregister duplicate task definition "+arn+" of "+app.Ref.String(), err)
		}
		if t, ok := p.taskDefs.get(arn); ok {
			t.Status = string(ecstypes.TaskDefinitionStatusInactive)
			p.taskDefs.put(t)
		}
		dropped = append(dropped, arn)
	}
	if len(dropped) > 0 {
		rec.Event(ctx, "TaskDefinitionsDeregistered", fmt.Sprintf("deregistered %d duplicate task definition revision(s) of %s (a registration retried after a lost answer): %s",
			len(dropped), keep, strings.Join(dropped, ", ")))
	}
	return nil
}

// attempts is how many attempts the SDK made for a call that succeeded.
func attempts(md middleware.Metadata) int {
	if r, ok := retry.GetAttemptResults(md); ok {
		return len(r.Results)
	}
	return 1
}

// specDiff names the fields in which got differs from the spec of in.
func specDiff(got taskSpec, in *ecs.RegisterTaskDefinitionInput) []string {
	want := specOf(&ecstypes.TaskDefinition{
		Family: in.Family, Cpu: in.Cpu, Memory: in.Memory, NetworkMode: in.NetworkMode,
		RequiresCompatibilities: in.RequiresCompatibilities, ExecutionRoleArn: in.ExecutionRoleArn,
		TaskRoleArn: in.TaskRoleArn, ContainerDefinitions: in.ContainerDefinitions,
	})
	var out []string
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			out = append(out, gv.Type().Field(i).Name)
		}
	}
	return out
}

// cleanupRevisions deregisters the ACTIVE revisions of ours beyond the
// newest keepRevisions, never the running one. It runs after a rollout
// completed, at most once per family and revision in this process.
func (p *Platform) cleanupRevisions(ctx context.Context, app *model.App, family, running string, inUse []string, rec model.Recorder) error {
	rev := revisionOf(running)
	p.mu.Lock()
	done := p.cleaned[family] >= rev
	p.mu.Unlock()
	if rev <= keepRevisions || done {
		return nil
	}
	arns, err := p.activeRevisions(ctx, family, 0)
	if err != nil {
		return err
	}
	var dropped []string
	for i, arn := range arns {
		if i < keepRevisions || arn == running || slices.Contains(inUse, arn) {
			continue
		}
		t, err := p.describeTaskDefinition(ctx, arn)
		if err != nil {
			return err
		}
		if t.Tags[model.TagManagedBy] != p.cfg.ControllerID {
			continue
		}
		if _, err := p.c.ecs.DeregisterTaskDefinition(ctx, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: awssdk.String(arn)}); err != nil {
			return classify("deregister old task definition "+arn+" of "+app.Ref.String(), err)
		}
		t.Status = string(ecstypes.TaskDefinitionStatusInactive)
		p.taskDefs.put(t)
		dropped = append(dropped, arn)
	}
	if len(dropped) > 0 {
		rec.Event(ctx, "TaskDefinitionsDeregistered", fmt.Sprintf("deregistered %d old task definition revision(s), keeping the newest %d", len(dropped), keepRevisions))
	}
	p.mu.Lock()
	p.cleaned[family] = rev
	p.mu.Unlock()
	return nil
}

// ownedRevisions lists the ACTIVE revisions of family tagged as ours.
func (p *Platform) ownedRevisions(ctx context.Context, family string) ([]taskDef, error) {
	arns, err := p.activeRevisions(ctx, family, 0)
	if err != nil {
		return nil, err
	}
	var out []taskDef
	for _, arn := range arns {
		t, err := p.describeTaskDefinition(ctx, arn)
		if err != nil {
			return nil, err
		}
		if t.Tags[model.TagManagedBy] == p.cfg.ControllerID {
			out = append(out, t)
		}
	}
	return out, nil
}
