package awsemu

import (
	"bytes"
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

const (
	smStageCurrent  = "AWSCURRENT"
	smStagePrevious = "AWSPREVIOUS"
	smMaxTags       = 50
	smMaxVersions   = 100
	smSuffixChars   = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)

var smNameRE = regexp.MustCompile(`^[a-zA-Z0-9/_+=.@-]{1,512}$`)

type secretsEmulator struct {
	mu      sync.Mutex
	region  string
	account string
	now     func() time.Time
	seq     uint64
	secrets map[string]*smSecret // by name
}

type smSecret struct {
	seq          uint64
	arn          string
	name         string
	description  *string
	kmsKeyID     *string
	tags         []smtypes.Tag
	versions     []*smVersion // oldest first
	created      time.Time
	lastChanged  time.Time
	lastAccessed *time.Time
	deletedAt    *time.Time
	deletionDate time.Time
}

type smVersion struct {
	id      string
	str     *string
	bin     []byte
	stages  []string
	created time.Time
}

func newSecretsEmulator(region, account string, now func() time.Time) *secretsEmulator {
	return &secretsEmulator{region: region, account: account, now: now, secrets: map[string]*smSecret{}}
}

type smHandler func(e *secretsEmulator, body []byte, now time.Time) (any, *apiError)

func smHandlerFor(op string) smHandler {
	switch op {
	case "CreateSecret":
		return (*secretsEmulator).createSecret
	case "DescribeSecret":
		return (*secretsEmulator).describeSecret
	case "GetSecretValue":
		return (*secretsEmulator).getSecretValue
	case "PutSecretValue":
		return (*secretsEmulator).putSecretValue
	case "UpdateSecret":
		return (*secretsEmulator).updateSecret
	case "DeleteSecret":
		return (*secretsEmulator).deleteSecret
	case "RestoreSecret":
		return (*secretsEmulator).restoreSecret
	case "TagResource":
		return (*secretsEmulator).tagResource
	case "UntagResource":
		return (*secretsEmulator).untagResource
	case "ListSecrets":
		return (*secretsEmulator).listSecrets
	}
	return nil
}

// serve runs one Secrets Manager operation and returns the encoded output.
func (e *secretsEmulator) serve(op string, body []byte) ([]byte, *apiError) {
	h := smHandlerFor(op)
	if h == nil {
		return nil, clientErr("UnknownOperationException", "Operation %s is not supported by this emulator.", op)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	e.purgeLocked(now)
	out, err := h(e, body, now)
	if err != nil {
		return nil, err
	}
	return encodeJSON(out, false), nil
}

// sync deletes, for good, the secrets whose recovery window has ended.
func (e *secretsEmulator) sync() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.purgeLocked(e.now())
}

func (e *secretsEmulator) purgeLocked(now time.Time) {
	for name, s := range e.secrets {
		if s.deletedAt != nil && !now.Before(s.deletionDate) {
			delete(e.secrets, name)
		}
	}
}

func decodeSM(body []byte, in any) *apiError {
	if err := decodeJSON(body, in); err != nil {
		return clientErr("SerializationException", "Unable to parse request body: %v", err)
	}
	return nil
}

func errSecretNotFound() *apiError {
	return clientErr("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
}

func errMarkedForDeletion() *apiError {
	return clientErr("InvalidRequestException", "You can't perform this operation on the secret because it was marked for deletion.")
}

// lookup finds a secret by name, full ARN, or partial ARN (without the
// random suffix).
func (e *secretsEmulator) lookup(id *string) (*smSecret, *apiError) {
	ref := aws.ToString(id)
	if ref == "" {
		return nil, clientErr("InvalidParameterException", "You must provide a value for the SecretId parameter.")
	}
	if s, ok := e.secrets[ref]; ok {
		return s, nil
	}
	for _, s := range e.secrets {
		if s.arn == ref || strings.TrimSuffix(s.arn, s.arn[len(s.arn)-7:]) == ref {
			return s, nil
		}
	}
	return nil, errSecretNotFound()
}

func validateSMTags(tags []smtypes.Tag) *apiError {
	seen := map[string]bool{}
	for _, t := range tags {
		k := aws.ToString(t.Key)
		switch {
		case k == "" || len(k) > 128:
			return clientErr("InvalidParameterException", "Tag keys must be between 1 and 128 characters.")
		case len(aws.ToString(t.Value)) > 256:
			return clientErr("InvalidParameterException", "Tag values must be at most 256 characters.")
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return clientErr("InvalidParameterException", "Tag keys starting with 'aws:' are reserved.")
		case seen[k]:
			return clientErr("InvalidParameterException", "Duplicate tag key %q.", k)
		}
		seen[k] = true
	}
	return nil
}

func mergeSMTags(current, add []smtypes.Tag) ([]smtypes.Tag, *apiError) {
	out := cloneSMTags(current)
	for _, t := range add {
		i := slices.IndexFunc(out, func(x smtypes.Tag) bool { return aws.ToString(x.Key) == aws.ToString(t.Key) })
		if i >= 0 {
			out[i].Value = t.Value
		} else {
			out = append(out, smtypes.Tag{Key: t.Key, Value: t.Value})
		}
	}
	if len(out) > smMaxTags {
		return nil, clientErr("LimitExceededException", "A secret can have at most %d tags.", smMaxTags)
	}
	return out, nil
}

func cloneSMTags(tags []smtypes.Tag) []smtypes.Tag {
	out := make([]smtypes.Tag, 0, len(tags))
	for _, t := range tags {
		out = append(out, smtypes.Tag{Key: aws.String(aws.ToString(t.Key)), Value: aws.String(aws.ToString(t.Value))})
	}
	return out
}

func validateValue(str *string, bin []byte, required bool) *apiError {
	switch {
	case str != nil && bin != nil:
		return clientErr("InvalidParameterException", "You can't specify both a binary secret value and a string secret value in the same secret.")
	case required && str == nil && bin == nil:
		return clientErr("InvalidRequestException", "You must provide either SecretString or SecretBinary.")
	case str != nil && len(*str) > 65536, len(bin) > 65536:
		return clientErr("InvalidParameterException", "The secret value exceeds the maximum size of 64 KB.")
	}
	return nil
}

func validateToken(token *string) *apiError {
	if token != nil && (len(*token) < 32 || len(*token) > 64) {
		return clientErr("InvalidParameterException", "ClientRequestToken must be 32-64 characters long.")
	}
	return nil
}

func (v *smVersion) sameValue(str *string, bin []byte) bool {
	return aws.ToString(v.str) == aws.ToString(str) && (v.str == nil) == (str == nil) && bytes.Equal(v.bin, bin)
}

func (s *smSecret) version(id string) *smVersion {
	for _, v := range s.versions {
		if v.id == id {
			return v
		}
	}
	return nil
}

func (s *smSecret) staged(stage string) *smVersion {
	for _, v := range s.versions {
		if slices.Contains(v.stages, stage) {
			return v
		}
	}
	return nil
}

// addVersion stores a new version and moves the given stages to it; when
// AWSCURRENT moves, the version that had it becomes AWSPREVIOUS.
func (s *smSecret) addVersion(id string, str *string, bin []byte, stages []string, now time.Time) *smVersion {
	if len(stages) == 0 {
		stages = []string{smStageCurrent}
	}
	if slices.Contains(stages, smStageCurrent) {
		if cur := s.staged(smStageCurrent); cur != nil {
			for _, v := range s.versions {
				v.stages = slices.DeleteFunc(v.stages, func(st string) bool { return st == smStagePrevious })
			}
			cur.stages = append(slices.DeleteFunc(cur.stages, func(st string) bool { return st == smStageCurrent }), smStagePrevious)
		}
	}
	for _, v := range s.versions {
		v.stages = slices.DeleteFunc(v.stages, func(st string) bool {
			return st != smStageCurrent && st != smStagePrevious && slices.Contains(stages, st)
		})
	}
	v := &smVersion{id: id, str: str, bin: slices.Clone(bin), stages: slices.Clone(stages), created: now}
	s.versions = append(s.versions, v)
	// Versions without a staging label are deprecated; AWS keeps at most 100.
	for len(s.versions) > smMaxVersions {
		i := slices.IndexFunc(s.versions, func(v *smVersion) bool { return len(v.stages) == 0 })
		if i < 0 {
			break
		}
		s.versions = slices.Delete(s.versions, i, i+1)
	}
	s.lastChanged = now
	return v
}

func (s *smSecret) versionStages() map[string][]string {
	out := map[string][]string{}
	for _, v := range s.versions {
		if len(v.stages) > 0 {
			out[v.id] = slices.Clone(v.stages)
		}
	}
	return out
}

func (e *secretsEmulator) newToken() string {
	e.seq++
	n := e.seq
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", uint32(n*2654435761), n&0xffff, (n>>4)&0xfff, (n>>8)&0xfff, n)
}

func (e *secretsEmulator) createSecret(body []byte, now time.Time) (any, *apiError) {
	var in sm.CreateSecretInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	name := aws.ToString(in.Name)
	if !smNameRE.MatchString(name) {
		return nil, clientErr("InvalidParameterException", "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!")
	}
	if err := validateValue(in.SecretString, in.SecretBinary, false); err != nil {
		return nil, err
	}
	if err := validateToken(in.ClientRequestToken); err != nil {
		return nil, err
	}
	if err := validateSMTags(in.Tags); err != nil {
		return nil, err
	}
	if len(in.Tags) > smMaxTags {
		return nil, clientErr("LimitExceededException", "A secret can have at most %d tags.", smMaxTags)
	}
	hasValue := in.SecretString != nil || in.SecretBinary != nil
	if s, ok := e.secrets[name]; ok {
		if s.deletedAt != nil {
			return nil, clientErr("InvalidRequestException", "You can't create this secret because a secret with this name is already scheduled for deletion.")
		}
		// A retry of the same request (same token, same value) succeeds.
		if in.ClientRequestToken != nil && hasValue {
			if v := s.version(*in.ClientRequestToken); v != nil && v.sameValue(in.SecretString, in.SecretBinary) {
				return &sm.CreateSecretOutput{ARN: aws.String(s.arn), Name: aws.String(s.name), VersionId: aws.String(v.id)}, nil
			}
		}
		return nil, clientErr("ResourceExistsException", "The operation failed because the secret %s already exists.", name)
	}
	e.seq++
	suffix := make([]byte, 6)
	for i, n := 0, e.seq*0x9e3779b97f4a7c15; i < len(suffix); i++ {
		suffix[i] = smSuffixChars[n%uint64(len(smSuffixChars))]
		n /= uint64(len(smSuffixChars))
	}
	s := &smSecret{
		seq:         e.seq,
		arn:         fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", e.region, e.account, name, suffix),
		name:        name,
		description: in.Description,
		kmsKeyID:    in.KmsKeyId,
		tags:        cloneSMTags(in.Tags),
		created:     now,
		lastChanged: now,
	}
	out := &sm.CreateSecretOutput{ARN: aws.String(s.arn), Name: aws.String(name)}
	if hasValue {
		id := aws.ToString(in.ClientRequestToken)
		if id == "" {
			id = e.newToken()
		}
		s.addVersion(id, in.SecretString, in.SecretBinary, nil, now)
		out.VersionId = aws.String(id)
	}
	e.secrets[name] = s
	return out, nil
}

func (e *secretsEmulator) describeSecret(body []byte, _ time.Time) (any, *apiError) {
	var in sm.DescribeSecretInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	s, err := e.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	out := &sm.DescribeSecretOutput{
		ARN:                aws.String(s.arn),
		Name:               aws.String(s.name),
		Description:        s.description,
		KmsKeyId:           s.kmsKeyID,
		CreatedDate:        aws.Time(s.created),
		LastChangedDate:    aws.Time(s.lastChanged),
		LastAccessedDate:   s.lastAccessed,
		DeletedDate:        s.deletedAt,
		VersionIdsToStages: s.versionStages(),
	}
	if len(s.tags) > 0 {
		out.Tags = cloneSMTags(s.tags)
	}
	return out, nil
}

func (e *secretsEmulator) getSecretValue(body []byte, now time.Time) (any, *apiError) {
	var in sm.GetSecretValueInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	s, err := e.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	if s.deletedAt != nil {
		return nil, errMarkedForDeletion()
	}
	var v *smVersion
	switch {
	case in.VersionId != nil:
		v = s.version(*in.VersionId)
		if v != nil && in.VersionStage != nil && !slices.Contains(v.stages, *in.VersionStage) {
			return nil, clientErr("InvalidRequestException", "The version %s doesn't have the staging label %s.", *in.VersionId, *in.VersionStage)
		}
		if v == nil {
			return nil, clientErr("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for VersionId: %s", *in.VersionId)
		}
	default:
		stage := smStageCurrent
		if in.VersionStage != nil {
			stage = *in.VersionStage
		}
		if v = s.staged(stage); v == nil {
			return nil, clientErr("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: %s", stage)
		}
	}
	day := now.Truncate(24 * time.Hour)
	s.lastAccessed = &day
	return &sm.GetSecretValueOutput{
		ARN:           aws.String(s.arn),
		Name:          aws.String(s.name),
		VersionId:     aws.String(v.id),
		SecretString:  v.str,
		SecretBinary:  slices.Clone(v.bin),
		VersionStages: slices.Clone(v.stages),
		CreatedDate:   aws.Time(v.created),
	}, nil
}

// putValue is PutSecretValue and the value part of UpdateSecret.
func (e *secretsEmulator) putValue(s *smSecret, token *string, str *string, bin []byte, stages []string, now time.Time) (*smVersion, *apiError) {
	if err := validateToken(token); err != nil {
		return nil, err
	}
	id := aws.ToString(token)
	if id == "" {
		id = e.newToken()
	}
	if v := s.version(id); v != nil {
		if !v.sameValue(str, bin) {
			return nil, clientErr("ResourceExistsException", "You can't modify an existing version, you can only create a new version.")
		}
		return v, nil
	}
	return s.addVersion(id, str, bin, stages, now), nil
}

func (e *secretsEmulator) putSecretValue(body []byte, now time.Time) (any, *apiError) {
	var in sm.PutSecretValueInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	s, err := e.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	if s.deletedAt != nil {
		return nil, errMarkedForDeletion()
	}
	if err := validateValue(in.SecretString, in.SecretBinary, true); err != nil {
		return nil, err
	}
	v, err := e.putValue(s, in.ClientRequestToken, in.SecretString, in.SecretBinary, in.VersionStages, now)
	if err != nil {
		return nil, err
	}
	return &sm.PutSecretValueOutput{ARN: aws.String(s.arn), Name: aws.String(s.name), VersionId: aws.String(v.id), VersionStages: slices.Clone(v.stages)}, nil
}

func (e *secretsEmulator) updateSecret(body []byte, now time.Time) (any, *apiError) {
	var in sm.UpdateSecretInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	s, err := e.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	if s.deletedAt != nil {
		return nil, errMarkedForDeletion()
	}
	if err := validateValue(in.SecretString, in.SecretBinary, false); err != nil {
		return nil, err
	}
	out := &sm.UpdateSecretOutput{ARN: aws.String(s.arn), Name: aws.String(s.name)}
	if in.SecretString != nil || in.SecretBinary != nil {
		v, err := e.putValue(s, in.ClientRequestToken, in.SecretString, in.SecretBinary, nil, now)
		if err != nil {
			return nil, err
		}
		out.VersionId = aws.String(v.id)
	}
	if in.Description != nil {
		s.description = in.Description
		s.lastChanged = now
	}
	if in.KmsKeyId != nil {
		s.kmsKeyID = in.KmsKeyId
		s.lastChanged = now
	}
	return out, nil
}

func (e *secretsEmulator) deleteSecret(body []byte, now time.Time) (any, *apiError) {
	var in sm.DeleteSecretInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	s, err := e.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	force := aws.ToBool(in.ForceDeleteWithoutRecovery)
	if force && in.RecoveryWindowInDays != nil {
		return nil, clientErr("InvalidParameterException", "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
	}
	if force {
		delete(e.secrets, s.name)
		return &sm.DeleteSecretOutput{ARN: aws.String(s.arn), Name: aws.String(s.name), DeletionDate: aws.Time(now)}, nil
	}
	if s.deletedAt != nil {
		return nil, clientErr("InvalidRequestException", "You can't perform this operation on the secret because it was already scheduled for deletion.")
	}
	days := int64(30)
	if in.RecoveryWindowInDays != nil {
		days = *in.RecoveryWindowInDays
		if days < 7 || days > 30 {
			return nil, clientErr("InvalidParameterException", "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
		}
	}
	deleted := now
	s.deletedAt = &deleted
	s.deletionDate = now.Add(time.Duration(days) * 24 * time.Hour)
	return &sm.DeleteSecretOutput{ARN: aws.String(s.arn), Name: aws.String(s.name), DeletionDate: aws.Time(s.deletionDate)}, nil
}

func (e *secretsEmulator) restoreSecret(body []byte, _ time.Time) (any, *apiError) {
	var in sm.RestoreSecretInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	s, err := e.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	s.deletedAt = nil
	s.deletionDate = time.Time{}
	return &sm.RestoreSecretOutput{ARN: aws.String(s.arn), Name: aws.String(s.name)}, nil
}

func (e *secretsEmulator) tagResource(body []byte, _ time.Time) (any, *apiError) {
	var in sm.TagResourceInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	s, err := e.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	if err := validateSMTags(in.Tags); err != nil {
		return nil, err
	}
	tags, err := mergeSMTags(s.tags, in.Tags)
	if err != nil {
		return nil, err
	}
	s.tags = tags
	return &sm.TagResourceOutput{}, nil
}

func (e *secretsEmulator) untagResource(body []byte, _ time.Time) (any, *apiError) {
	var in sm.UntagResourceInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	s, err := e.lookup(in.SecretId)
	if err != nil {
		return nil, err
	}
	s.tags = slices.DeleteFunc(cloneSMTags(s.tags), func(t smtypes.Tag) bool { return slices.Contains(in.TagKeys, aws.ToString(t.Key)) })
	return &sm.UntagResourceOutput{}, nil
}

func (e *secretsEmulator) listSecrets(body []byte, _ time.Time) (any, *apiError) {
	var in sm.ListSecretsInput
	if err := decodeSM(body, &in); err != nil {
		return nil, err
	}
	for _, f := range in.Filters {
		switch f.Key {
		case smtypes.FilterNameStringTypeDescription, smtypes.FilterNameStringTypeName, smtypes.FilterNameStringTypeTagKey,
			smtypes.FilterNameStringTypeTagValue, smtypes.FilterNameStringTypePrimaryRegion, smtypes.FilterNameStringTypeOwningService,
			smtypes.FilterNameStringTypeAll:
		default:
			return nil, clientErr("InvalidParameterException", "Invalid filter key: %s", f.Key)
		}
		if len(f.Values) == 0 || len(f.Values) > 10 {
			return nil, clientErr("InvalidParameterException", "A filter must have 1 to 10 values.")
		}
	}
	var list []*smSecret
	for _, s := range e.secrets {
		if s.deletedAt != nil && !aws.ToBool(in.IncludePlannedDeletion) {
			continue
		}
		if e.matchesFilters(s, in.Filters) {
			list = append(list, s)
		}
	}
	slices.SortFunc(list, func(a, b *smSecret) int {
		var c int
		switch in.SortBy {
		case smtypes.SortByTypeName:
			c = cmp.Compare(a.name, b.name)
		case smtypes.SortByTypeLastChangedDate:
			c = a.lastChanged.Compare(b.lastChanged)
		case smtypes.SortByTypeLastAccessedDate:
			c = aws.ToTime(a.lastAccessed).Compare(aws.ToTime(b.lastAccessed))
		default:
			c = a.created.Compare(b.created)
		}
		return cmp.Or(c, cmp.Compare(a.seq, b.seq))
	})
	if in.SortOrder == smtypes.SortOrderTypeDesc {
		slices.Reverse(list)
	}
	page, next, err := paginate(list, in.MaxResults, in.NextToken, 100, 100)
	if err != nil {
		err.Code = "InvalidNextTokenException"
		if in.MaxResults != nil && (*in.MaxResults < 1 || *in.MaxResults > 100) {
			err.Code = "InvalidParameterException"
		}
		return nil, err
	}
	out := &sm.ListSecretsOutput{SecretList: make([]smtypes.SecretListEntry, 0, len(page)), NextToken: next}
	for _, s := range page {
		entry := smtypes.SecretListEntry{
			ARN:                    aws.String(s.arn),
			Name:                   aws.String(s.name),
			Description:            s.description,
			KmsKeyId:               s.kmsKeyID,
			CreatedDate:            aws.Time(s.created),
			LastChangedDate:        aws.Time(s.lastChanged),
			LastAccessedDate:       s.lastAccessed,
			DeletedDate:            s.deletedAt,
			SecretVersionsToStages: s.versionStages(),
		}
		if len(s.tags) > 0 {
			entry.Tags = cloneSMTags(s.tags)
		}
		out.SecretList = append(out.SecretList, entry)
	}
	return out, nil
}

// matchesFilters applies ListSecrets filters: filters are ANDed, the values
// of one filter ORed; a value starting with "!" negates. Matching is by
// prefix, case-sensitive except for description and all.
func (e *secretsEmulator) matchesFilters(s *smSecret, filters []smtypes.Filter) bool {
	for _, f := range filters {
		matched := false
		for _, raw := range f.Values {
			negate := strings.HasPrefix(raw, "!")
			want := strings.TrimPrefix(raw, "!")
			if e.matchesFilter(s, f.Key, want) != negate {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	return true
}

func (e *secretsEmulator) matchesFilter(s *smSecret, key smtypes.FilterNameStringType, want string) bool {
	prefix := func(v string) bool { return strings.HasPrefix(v, want) }
	fold := func(v string) bool { return strings.HasPrefix(strings.ToLower(v), strings.ToLower(want)) }
	switch key {
	case smtypes.FilterNameStringTypeName:
		return prefix(s.name)
	case smtypes.FilterNameStringTypeDescription:
		return fold(aws.ToString(s.description))
	case smtypes.FilterNameStringTypeTagKey:
		return slices.ContainsFunc(s.tags, func(t smtypes.Tag) bool { return prefix(aws.ToString(t.Key)) })
	case smtypes.FilterNameStringTypeTagValue:
		return slices.ContainsFunc(s.tags, func(t smtypes.Tag) bool { return prefix(aws.ToString(t.Value)) })
	case smtypes.FilterNameStringTypePrimaryRegion, smtypes.FilterNameStringTypeOwningService:
		return false
	case smtypes.FilterNameStringTypeAll:
		for word := range strings.FieldsSeq(want) {
			w := strings.ToLower(word)
			hit := strings.HasPrefix(strings.ToLower(s.name), w) || strings.HasPrefix(strings.ToLower(aws.ToString(s.description)), w) ||
				slices.ContainsFunc(s.tags, func(t smtypes.Tag) bool {
					return strings.HasPrefix(strings.ToLower(aws.ToString(t.Key)), w) || strings.HasPrefix(strings.ToLower(aws.ToString(t.Value)), w)
				})
			if hit {
				return true
			}
		}
	}
	return false
}
