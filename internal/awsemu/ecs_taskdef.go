package awsemu

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// fargateMemory lists the valid Fargate memory sizes (MiB) per CPU units.
func fargateMemory(cpu int) []int {
	span := func(from, to, step int) []int {
		var out []int
		for m := from; m <= to; m += step {
			out = append(out, m)
		}
		return out
	}
	switch cpu {
	case 256:
		return []int{512, 1024, 2048}
	case 512:
		return span(1024, 4096, 1024)
	case 1024:
		return span(2048, 8192, 1024)
	case 2048:
		return span(4096, 16384, 1024)
	case 4096:
		return span(8192, 30720, 1024)
	case 8192:
		return span(16384, 61440, 4096)
	case 16384:
		return span(32768, 122880, 8192)
	}
	return nil
}

// normalizeUnits turns "1 vCPU" / "2 GB" into CPU units / MiB as ECS does;
// plain numbers pass through.
func normalizeUnits(v *string, unit string) (*string, bool) {
	if v == nil {
		return nil, true
	}
	s := strings.TrimSpace(*v)
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return aws.String(strconv.Itoa(n)), true
	}
	num, u, ok := strings.Cut(s, " ")
	if !ok || !strings.EqualFold(strings.TrimSpace(u), unit) {
		return nil, false
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 {
		return nil, false
	}
	return aws.String(strconv.Itoa(int(f * 1024))), true
}

func (e *ecsEmulator) registerTaskDefinition(body []byte, now time.Time) (any, *apiError) {
	var in ecs.RegisterTaskDefinitionInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	family := aws.ToString(in.Family)
	if !ecsFamilyRE.MatchString(family) {
		return nil, clientErr("ClientException", "Family must be 1-255 letters, numbers, hyphens and underscores.")
	}
	if len(in.ContainerDefinitions) == 0 {
		return nil, clientErr("ClientException", "Container list cannot be empty.")
	}
	if err := validateECSTags(in.Tags); err != nil {
		return nil, err
	}
	cpu, ok := normalizeUnits(in.Cpu, "vcpu")
	if !ok {
		return nil, clientErr("ClientException", "Invalid 'cpu' setting for task.")
	}
	memory, ok := normalizeUnits(in.Memory, "gb")
	if !ok {
		return nil, clientErr("ClientException", "Invalid 'memory' setting for task.")
	}
	in.Cpu, in.Memory = cpu, memory
	names := map[string]bool{}
	for i := range in.ContainerDefinitions {
		c := &in.ContainerDefinitions[i]
		name := aws.ToString(c.Name)
		switch {
		case name == "":
			return nil, clientErr("ClientException", "Container.name should not be null or empty.")
		case names[name]:
			return nil, clientErr("ClientException", "Duplicate container name %q.", name)
		case aws.ToString(c.Image) == "":
			return nil, clientErr("ClientException", "Container.image should not be null or empty.")
		}
		names[name] = true
		normalizeContainer(c, in.NetworkMode)
	}
	fargateOK := in.NetworkMode == ecstypes.NetworkModeAwsvpc && fargateSizeOK(in.Cpu, in.Memory)
	if slices.Contains(in.RequiresCompatibilities, ecstypes.CompatibilityFargate) {
		switch {
		case in.NetworkMode != ecstypes.NetworkModeAwsvpc:
			return nil, clientErr("ClientException", "Fargate only supports network mode 'awsvpc'.")
		case in.Cpu == nil:
			return nil, clientErr("ClientException", "Fargate requires that 'cpu' be defined at the task level.")
		case in.Memory == nil:
			return nil, clientErr("ClientException", "Fargate requires that 'memory' be defined at the task level.")
		case !fargateOK:
			return nil, clientErr("ClientException", "No Fargate configuration exists for given values: %s CPU, %s memory. See the Amazon ECS documentation for the valid values.", aws.ToString(in.Cpu), aws.ToString(in.Memory))
		}
	}

	revision := int32(len(e.families[family]) + 1)
	td := ecstypes.TaskDefinition{}
	copyMatchingFields(&td, &in)
	td.TaskDefinitionArn = aws.String(e.arn(fmt.Sprintf("task-definition/%s:%d", family, revision)))
	td.Revision = revision
	td.Status = ecstypes.TaskDefinitionStatusActive
	td.RegisteredAt = aws.Time(now)
	td.RegisteredBy = aws.String(fmt.Sprintf("arn:aws:iam::%s:root", e.account))
	td.Compatibilities = []ecstypes.Compatibility{ecstypes.CompatibilityEc2}
	if fargateOK {
		td.Compatibilities = append(td.Compatibilities, ecstypes.CompatibilityFargate)
	}
	if td.Volumes == nil {
		td.Volumes = []ecstypes.Volume{}
	}
	if td.PlacementConstraints == nil {
		td.PlacementConstraints = []ecstypes.TaskDefinitionPlacementConstraint{}
	}
	if td.RequiresCompatibilities == nil {
		td.RequiresCompatibilities = []ecstypes.Compatibility{}
	}
	t := &ecsTaskDef{td: td, tags: cloneECSTags(in.Tags)}
	e.families[family] = append(e.families[family], t)
	view := t.td
	out := &ecs.RegisterTaskDefinitionOutput{TaskDefinition: &view}
	if len(t.tags) > 0 {
		out.Tags = cloneECSTags(t.tags)
	}
	return out, nil
}

// normalizeContainer applies the defaults ECS fills into a registered
// container definition, so that a client comparing what it sent with what
// DescribeTaskDefinition returns faces the same differences as on AWS.
func normalizeContainer(c *ecstypes.ContainerDefinition, mode ecstypes.NetworkMode) {
	if c.Essential == nil {
		c.Essential = aws.Bool(true)
	}
	for i := range c.PortMappings {
		pm := &c.PortMappings[i]
		if pm.Protocol == "" {
			pm.Protocol = ecstypes.TransportProtocolTcp
		}
		if pm.HostPort == nil && pm.ContainerPort != nil && (mode == ecstypes.NetworkModeAwsvpc || mode == ecstypes.NetworkModeHost) {
			pm.HostPort = aws.Int32(*pm.ContainerPort)
		}
	}
	if c.PortMappings == nil {
		c.PortMappings = []ecstypes.PortMapping{}
	}
	if c.Environment == nil {
		c.Environment = []ecstypes.KeyValuePair{}
	}
	if c.MountPoints == nil {
		c.MountPoints = []ecstypes.MountPoint{}
	}
	if c.VolumesFrom == nil {
		c.VolumesFrom = []ecstypes.VolumeFrom{}
	}
	if c.SystemControls == nil {
		c.SystemControls = []ecstypes.SystemControl{}
	}
}

func fargateSizeOK(cpu, memory *string) bool {
	if cpu == nil || memory == nil {
		return false
	}
	c, err1 := strconv.Atoi(*cpu)
	m, err2 := strconv.Atoi(*memory)
	return err1 == nil && err2 == nil && slices.Contains(fargateMemory(c), m)
}

// lookupTaskDef resolves "family", "family:revision" or a task definition
// ARN. A bare family resolves to its latest ACTIVE revision.
func (e *ecsEmulator) lookupTaskDef(ref string) *ecsTaskDef {
	if _, res, ok := strings.Cut(ref, ":task-definition/"); ok && strings.HasPrefix(ref, "arn:") {
		ref = res
	}
	family, rev, hasRev := strings.Cut(ref, ":")
	revs := e.families[family]
	if !hasRev {
		for i := len(revs) - 1; i >= 0; i-- {
			if revs[i].td.Status == ecstypes.TaskDefinitionStatusActive {
				return revs[i]
			}
		}
		return nil
	}
	n, err := strconv.Atoi(rev)
	if err != nil || n < 1 || n > len(revs) {
		return nil
	}
	return revs[n-1]
}

func (e *ecsEmulator) describeTaskDefinition(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.DescribeTaskDefinitionInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	t := e.lookupTaskDef(aws.ToString(in.TaskDefinition))
	if t == nil {
		return nil, clientErr("ClientException", "Unable to describe task definition.")
	}
	td := t.td
	out := &ecs.DescribeTaskDefinitionOutput{TaskDefinition: &td}
	if includes(in.Include, string(ecstypes.TaskDefinitionFieldTags)) {
		out.Tags = cloneECSTags(t.tags)
	}
	return out, nil
}

func (e *ecsEmulator) deregisterTaskDefinition(body []byte, now time.Time) (any, *apiError) {
	var in ecs.DeregisterTaskDefinitionInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	ref := aws.ToString(in.TaskDefinition)
	short := ref
	if _, res, ok := strings.Cut(ref, ":task-definition/"); ok {
		short = res
	}
	if !strings.Contains(short, ":") {
		return nil, clientErr("ClientException", "Invalid revision number. Number: %s", short)
	}
	t := e.lookupTaskDef(ref)
	if t == nil {
		return nil, clientErr("ClientException", "The specified task definition does not exist.")
	}
	if t.td.Status == ecstypes.TaskDefinitionStatusActive {
		t.td.Status = ecstypes.TaskDefinitionStatusInactive
		t.td.DeregisteredAt = aws.Time(now)
	}
	td := t.td
	return &ecs.DeregisterTaskDefinitionOutput{TaskDefinition: &td}, nil
}

func (e *ecsEmulator) listTaskDefinitions(body []byte, _ time.Time) (any, *apiError) {
	var in ecs.ListTaskDefinitionsInput
	if err := decodeECS(body, &in); err != nil {
		return nil, err
	}
	status := in.Status
	if status == "" {
		status = ecstypes.TaskDefinitionStatusActive
	}
	var tds []*ecsTaskDef
	for family, revs := range e.families {
		if p := aws.ToString(in.FamilyPrefix); p != "" && family != p {
			continue
		}
		for _, t := range revs {
			if t.td.Status == status {
				tds = append(tds, t)
			}
		}
	}
	slices.SortFunc(tds, func(a, b *ecsTaskDef) int {
		return cmp.Or(cmp.Compare(aws.ToString(a.td.Family), aws.ToString(b.td.Family)), cmp.Compare(a.td.Revision, b.td.Revision))
	})
	if in.Sort == ecstypes.SortOrderDesc {
		slices.Reverse(tds)
	}
	arns := make([]string, len(tds))
	for i, t := range tds {
		arns[i] = aws.ToString(t.td.TaskDefinitionArn)
	}
	page, next, err := paginate(arns, in.MaxResults, in.NextToken, 100, 100)
	if err != nil {
		return nil, err
	}
	return &ecs.ListTaskDefinitionsOutput{TaskDefinitionArns: page, NextToken: next}, nil
}
