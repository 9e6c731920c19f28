package awsemu

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// ECSOptions tunes the ECS emulator.
type ECSOptions struct {
	// RolloutStep is the simulated time one deployment step takes. In a step
	// the tasks launched in the previous step start running (or fail), old
	// deployments stop tasks down to the minimum healthy percent, and the
	// primary deployment launches tasks up to the maximum percent. Default 15s.
	RolloutStep time.Duration

	// InstantRollout completes every deployment (and every service deletion)
	// within the call that started it, as if all steps had elapsed. Use it
	// for benchmarks; leave it off to observe IN_PROGRESS states.
	InstantRollout bool

	// InactiveRetention is how long a deleted (INACTIVE) service stays
	// visible to DescribeServices before it is reported MISSING. Default 1h.
	InactiveRetention time.Duration

	// FailDeployment, when set, is asked once per new deployment whether its
	// tasks fail to start. See Server.SetDeploymentFailer.
	FailDeployment func(DeploymentInfo) bool
}

// DeploymentInfo describes a new ECS deployment to a deployment failer.
type DeploymentInfo struct {
	Cluster           string
	Service           string
	DeploymentID      string
	TaskDefinitionArn string
	// Images are the container images of the task definition, in order.
	Images []string
}

// SetDeploymentFailer replaces the hook deciding whether a new deployment's
// tasks fail to start (nil: none fail). A failing deployment launches tasks
// that never run; with the deployment circuit breaker enabled it turns FAILED
// once the failed-task threshold is reached (half the desired count, at least
// 3, at most 200) and, with rollback, ECS starts a new deployment of the last
// completed task definition. Deployments already started keep their verdict.
func (s *Server) SetDeploymentFailer(fail func(DeploymentInfo) bool) {
	s.ecs.mu.Lock()
	defer s.ecs.mu.Unlock()
	s.ecs.failer = fail
}

const (
	ecsStatusActive   = "ACTIVE"
	ecsStatusDraining = "DRAINING"
	ecsStatusInactive = "INACTIVE"
	ecsStatusPrimary  = "PRIMARY"
	ecsMaxTags        = 50
	ecsMaxEvents      = 100
)

var (
	ecsNameRE   = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)
	ecsFamilyRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)
)

type ecsEmulator struct {
	mu      sync.Mutex
	region  string
	account string
	now     func() time.Time
	opts    ECSOptions
	failer  func(DeploymentInfo) bool
	seq     uint64
	// targetGroups validates a target group a service binds to (set by the
	// Server to ask the ELBv2 emulator); nil skips the check.
	targetGroups func(arn string, mode ecstypes.NetworkMode) *apiError
	clusters     map[string]*ecsCluster
	families     map[string][]*ecsTaskDef
}

type ecsCluster struct {
	cluster  ecstypes.Cluster
	tags     []ecstypes.Tag
	services []*ecsService // in creation order, INACTIVE ones until they expire
}

type ecsTaskDef struct {
	td   ecstypes.TaskDefinition
	tags []ecstypes.Tag
}

func newECSEmulator(region, account string, now func() time.Time, opts ECSOptions) *ecsEmulator {
	if opts.RolloutStep <= 0 {
		opts.RolloutStep = 15 * time.Second
	}
	if opts.InactiveRetention <= 0 {
		opts.InactiveRetention = time.Hour
	}
	return &ecsEmulator{
		region:   region,
		account:  account,
		now:      now,
		opts:     opts,
		failer:   opts.FailDeployment,
		clusters: map[string]*ecsCluster{},
		families: map[string][]*ecsTaskDef{},
	}
}

// serve runs one ECS operation and returns the encoded ecs.*Output. The
// output is encoded under the lock, so views may share state with the model.
func (e *ecsEmulator) serve(op string, body []byte) ([]byte, *apiError) {
	h := ecsHandlerFor(op)
	if h == nil {
		return nil, clientErr("UnknownOperationException", "Operation %s is not supported by this emulator.", op)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	e.syncLocked(now)
	out, err := h(e, body, now)
	if err != nil {
		return nil, err
	}
	if e.opts.InstantRollout && IsMutatingOperation(op) {
		e.settleLocked(now)
	}
	return encodeJSON(out, true), nil
}

// sync applies the simulated time that has passed.
func (e *ecsEmulator) sync() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.syncLocked(e.now())
}

type ecsHandler func(e *ecsEmulator, body []byte, now time.Time) (any, *apiError)

// ecsHandlerFor returns the handler of an operation, nil if unsupported.
func ecsHandlerFor(op string) ecsHandler {
	switch op {
	case "CreateCluster":
		return (*ecsEmulator).createCluster
	case "DescribeClusters":
		return (*ecsEmulator).describeClusters
	case "ListClusters":
		return (*ecsEmulator).listClusters
	case "DeleteCluster":
		return (*ecsEmulator).deleteCluster
	case "RegisterTaskDefinition":
		return (*ecsEmulator).registerTaskDefinition
	case "DescribeTaskDefinition":
		return (*ecsEmulator).describeTaskDefinition
	case "DeregisterTaskDefinition":
		return (*ecsEmulator).deregisterTaskDefinition
	case "ListTaskDefinitions":
		return (*ecsEmulator).listTaskDefinitions
	case "CreateService":
		return (*ecsEmulator).createService
	case "UpdateService":
		return (*ecsEmulator).updateService
	case "DescribeServices":
		return (*ecsEmulator).describeServices
	case "ListServices":
		return (*ecsEmulator).listServices
	case "DeleteService":
		return (*ecsEmulator).deleteService
	case "TagResource":
		return (*ecsEmulator).tagResource
	case "UntagResource":
		return (*ecsEmulator).untagResource
	case "ListTagsForResource":
		return (*ecsEmulator).listTagsForResource
	}
	return nil
}

// decodeECS decodes a request body into an SDK input struct.
func decodeECS(body []byte, in any) *apiError {
	if err := decodeJSON(body, in); err != nil {
		return clientErr("SerializationException", "Unable to parse request body: %v", err)
	}
	return nil
}

func (e *ecsEmulator) arn(resource string) string {
	return fmt.Sprintf("arn:aws:ecs:%s:%s:%s", e.region, e.account, resource)
}

// nextID returns a fresh sequence number for ids.
func (e *ecsEmulator) nextID() uint64 {
	e.seq++
	return e.seq
}

// taskID mints a task id shaped like ECS's 32 hex digits.
func (e *ecsEmulator) taskID() string {
	n := e.nextID()
	return fmt.Sprintf("%016x%016x", n*0x9e3779b97f4a7c15, n)
}

func (e *ecsEmulator) eventID() string {
	n := e.nextID()
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(n*2654435761), n&0xffff, n&0xfff, (n>>12)&0xfff, n)
}

// ---- clusters ----

func errClusterNotFound() *apiError {
	return clientErr("ClusterNotFoundException", "Cluster not found.")
}

// clusterName returns the short name of a cluster reference (name or ARN),
// "default" when empty.
func clusterName(ref *string) string {
	name := aws.ToString(ref)
	if name == "" {
		return "default"
	}
	if strings.HasPrefix(name, "arn:") {
		if _, res, ok := strings.Cut(name, ":cluster/"); ok {
			return res
		}
	}
	return name
}

func (e *ecsEmulator) cluster(ref *string) (*ecsCluster, *apiError) {
	c, ok := e.clusters[clusterName(ref)]
	if !ok {
		return nil, errClusterNotFound()
	}
	return c, nil
}

func (e *ecsEmulator) createCluster(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.CreateClusterInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	name := aws.ToString(in.ClusterName)
	if name == "" {
		name = "default"
	}
	if !ecsNameRE.MatchString(name) {
		return nil, clientErr("InvalidParameterException", "Cluster name can only contain letters, numbers, hyphens and underscores, up to 255 characters.")
	}
	if err := validateECSTags(in.Tags); err != nil {
		return nil, err
	}
	c, ok := e.clusters[name]
	if !ok {
		c = &ecsCluster{cluster: ecstypes.Cluster{
			ClusterArn:        aws.String(e.arn("cluster/" + name)),
			ClusterName:       aws.String(name),
			Status:            aws.String(ecsStatusActive),
			CapacityProviders: in.CapacityProviders,
			Settings:          in.Settings,
			Configuration:     in.Configuration,
			Statistics:        []ecstypes.KeyValuePair{},
		}, tags: in.Tags}
		if c.cluster.CapacityProviders == nil {
			c.cluster.CapacityProviders = []string{}
		}
		e.clusters[name] = c
	}
	return &ecs.CreateClusterOutput{Cluster: e.clusterView(c, true)}, nil
}

func (e *ecsEmulator) clusterView(c *ecsCluster, withTags bool) *ecstypes.Cluster {
	v := c.cluster
	for _, s := range c.services {
		if aws.ToString(s.svc.Status) == ecsStatusActive {
			v.ActiveServicesCount++
		}
		if aws.ToString(s.svc.Status) != ecsStatusInactive {
			for _, d := range s.deployments {
				v.RunningTasksCount += d.d.RunningCount
				v.PendingTasksCount += d.d.PendingCount
			}
		}
	}
	if withTags {
		v.Tags = cloneECSTags(c.tags)
	}
	return &v
}

func (e *ecsEmulator) describeClusters(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.DescribeClustersInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	refs := in.Clusters
	if len(refs) == 0 {
		refs = []string{"default"}
	}
	if len(refs) > 100 {
		return nil, clientErr("InvalidParameterException", "Clusters cannot have more than 100 elements.")
	}
	out := &ecs.DescribeClustersOutput{Clusters: []ecstypes.Cluster{}, Failures: []ecstypes.Failure{}}
	withTags := includes(in.Include, string(ecstypes.ClusterFieldTags))
	for _, ref := range refs {
		name := clusterName(&ref)
		c, ok := e.clusters[name]
		if !ok {
			out.Failures = append(out.Failures, ecstypes.Failure{Arn: aws.String(e.arn("cluster/" + name)), Reason: aws.String("MISSING")})
			continue
		}
		out.Clusters = append(out.Clusters, *e.clusterView(c, withTags))
	}
	return out, nil
}

func (e *ecsEmulator) listClusters(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.ListClustersInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	arns := make([]string, 0, len(e.clusters))
	for _, name := range sortedKeys(e.clusters) {
		arns = append(arns, aws.ToString(e.clusters[name].cluster.ClusterArn))
	}
	page, next, err := paginate(arns, in.MaxResults, in.NextToken, 100, 100)
	if err != nil {
		return nil, err
	}
	return &ecs.ListClustersOutput{ClusterArns: page, NextToken: next}, nil
}

func (e *ecsEmulator) deleteCluster(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.DeleteClusterInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	c, err := e.cluster(in.Cluster)
	if err != nil {
		return nil, err
	}
	for _, s := range c.services {
		if aws.ToString(s.svc.Status) != ecsStatusInactive {
			return nil, clientErr("ClusterContainsServicesException", "The Cluster cannot be deleted while Services are active.")
		}
	}
	delete(e.clusters, aws.ToString(c.cluster.ClusterName))
	v := e.clusterView(c, false)
	v.Status = aws.String(ecsStatusInactive)
	return &ecs.DeleteClusterOutput{Cluster: v}, nil
}

// ---- tags ----

func validateECSTags(tags []ecstypes.Tag) *apiError {
	if len(tags) > ecsMaxTags {
		return clientErr("InvalidParameterException", "The number of tags exceeds the limit of %d.", ecsMaxTags)
	}
	seen := map[string]bool{}
	for _, t := range tags {
		k := aws.ToString(t.Key)
		switch {
		case k == "" || len(k) > 128:
			return clientErr("InvalidParameterException", "Tag keys must be between 1 and 128 characters.")
		case len(aws.ToString(t.Value)) > 256:
			return clientErr("InvalidParameterException", "Tag values must be at most 256 characters.")
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return clientErr("InvalidParameterException", "Tag keys with the prefix 'aws:' are reserved.")
		case seen[k]:
			return clientErr("InvalidParameterException", "Duplicate tag key %q.", k)
		}
		seen[k] = true
	}
	return nil
}

// mergeECSTags adds or overwrites tags, enforcing the per-resource limit.
func mergeECSTags(current, add []ecstypes.Tag) ([]ecstypes.Tag, *apiError) {
	out := cloneECSTags(current)
	for _, t := range add {
		replaced := false
		for i := range out {
			if aws.ToString(out[i].Key) == aws.ToString(t.Key) {
				out[i].Value = t.Value
				replaced = true
			}
		}
		if !replaced {
			out = append(out, ecstypes.Tag{Key: t.Key, Value: t.Value})
		}
	}
	if len(out) > ecsMaxTags {
		return nil, clientErr("InvalidParameterException", "The number of tags exceeds the limit of %d.", ecsMaxTags)
	}
	return out, nil
}

func cloneECSTags(tags []ecstypes.Tag) []ecstypes.Tag {
	out := make([]ecstypes.Tag, 0, len(tags))
	for _, t := range tags {
		out = append(out, ecstypes.Tag{Key: aws.String(aws.ToString(t.Key)), Value: aws.String(aws.ToString(t.Value))})
	}
	return out
}

// taggable resolves an ECS ARN to the tags slot of a cluster, service or
// task definition.
func (e *ecsEmulator) taggable(resourceArn string) (*[]ecstypes.Tag, *apiError) {
	prefix := e.arn("")
	if !strings.HasPrefix(resourceArn, prefix) {
		return nil, clientErr("InvalidParameterException", "The ARN provided is invalid: %s", resourceArn)
	}
	res := strings.TrimPrefix(resourceArn, prefix)
	kind, rest, _ := strings.Cut(res, "/")
	switch kind {
	case "cluster":
		c, ok := e.clusters[rest]
		if !ok {
			return nil, errClusterNotFound()
		}
		return &c.tags, nil
	case "service":
		clusterPart, name, ok := strings.Cut(rest, "/")
		if !ok {
			return nil, clientErr("InvalidParameterException", "Long arn format must be used for tagging operations")
		}
		c, ok := e.clusters[clusterPart]
		if !ok {
			return nil, errClusterNotFound()
		}
		s := c.findService(name)
		if s == nil {
			return nil, errServiceNotFound()
		}
		return &s.tags, nil
	case "task-definition":
		td := e.lookupTaskDef(rest)
		if td == nil {
			return nil, clientErr("ClientException", "The specified task definition does not exist.")
		}
		return &td.tags, nil
	}
	return nil, clientErr("InvalidParameterException", "The ARN provided is invalid: %s", resourceArn)
}

func (e *ecsEmulator) tagResource(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.TagResourceInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	if err := validateECSTags(in.Tags); err != nil {
		return nil, err
	}
	slot, err := e.taggable(aws.ToString(in.ResourceArn))
	if err != nil {
		return nil, err
	}
	merged, err := mergeECSTags(*slot, in.Tags)
	if err != nil {
		return nil, err
	}
	*slot = merged
	return &ecs.TagResourceOutput{}, nil
}

func (e *ecsEmulator) untagResource(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.UntagResourceInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	slot, err := e.taggable(aws.ToString(in.ResourceArn))
	if err != nil {
		return nil, err
	}
	kept := (*slot)[:0]
	for _, t := range *slot {
		if !includes(in.TagKeys, aws.ToString(t.Key)) {
			kept = append(kept, t)
		}
	}
	*slot = kept
	return &ecs.UntagResourceOutput{}, nil
}

func (e *ecsEmulator) listTagsForResource(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.ListTagsForResourceInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	slot, err := e.taggable(aws.ToString(in.ResourceArn))
	if err != nil {
		return nil, err
	}
	return &ecs.ListTagsForResourceOutput{Tags: cloneECSTags(*slot)}, nil
}

// ---- helpers shared by the emulators ----

func includes[T ~string](list []T, want string) bool {
	for _, v := range list {
		if string(v) == want {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// paginate pages a list with ECS-style maxResults/nextToken. Tokens are
// opaque offsets.
func paginate[T any](items []T, maxResults *int32, nextToken *string, def, limit int) ([]T, *string, *apiError) {
	n := def
	if maxResults != nil {
		n = int(*maxResults)
		if n < 1 || n > limit {
			return nil, nil, clientErr("InvalidParameterException", "maxResults must be between 1 and %d.", limit)
		}
	}
	start := 0
	if tok := aws.ToString(nextToken); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		off, convErr := strconv.Atoi(strings.TrimPrefix(string(raw), "offset:"))
		if err != nil || convErr != nil || off < 0 || off > len(items) {
			return nil, nil, clientErr("InvalidParameterException", "Invalid nextToken.")
		}
		start = off
	}
	end := min(start+n, len(items))
	page := append(make([]T, 0, end-start), items[start:end]...)
	if end < len(items) {
		tok := base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(end)))
		return page, &tok, nil
	}
	return page, nil, nil
}

// copyMatchingFields copies every field of src whose name and type also
// exist on dst (both pointers to structs).
func copyMatchingFields(dst, src any) {
	dv := reflect.ValueOf(dst).Elem()
	sv := reflect.ValueOf(src).Elem()
	st := sv.Type()
	for i := range st.NumField() {
		f := st.Field(i)
		if !f.IsExported() {
			continue
		}
		df := dv.FieldByName(f.Name)
		if df.IsValid() && df.CanSet() && df.Type() == f.Type {
			df.Set(sv.Field(i))
		}
	}
}
