package aws

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/clock"
)

// sessionKeyBytes is the size of a web app's session key.
const sessionKeyBytes = 32

// secretEntry is one secret as listed.
type secretEntry struct {
	ARN     string
	Name    string
	Tags    map[string]string
	Deleted bool // scheduled for deletion, restorable until its recovery window ends
}

func (e secretEntry) ours(controllerID string) bool {
	return e.Tags[model.TagManagedBy] == controllerID
}

// secretCache lists the secrets under the secret prefix (one ListSecrets
// page per 100 secrets, tags included) and serves lookups from that list
// for maxAge; this platform's own changes update it at once. mutate
// serializes changes and refreshes, so a listing never drops a change.
type secretCache struct {
	c      clients
	clk    clock.Clock
	prefix string
	maxAge time.Duration

	mutate sync.Mutex
	mu     sync.Mutex
	at     time.Time
	byName map[string]secretEntry
}

func newSecretCache(c clients, clk clock.Clock, prefix string, maxAge time.Duration) *secretCache {
	return &secretCache{c: c, clk: clk, prefix: prefix, maxAge: maxAge, byName: map[string]secretEntry{}}
}

func (s *secretCache) freshLocked() bool { return !s.at.IsZero() && s.clk.Now().Sub(s.at) < s.maxAge }

func (s *secretCache) ensureFresh(ctx context.Context) error {
	s.mu.Lock()
	fresh := s.freshLocked()
	s.mu.Unlock()
	if fresh {
		return nil
	}
	s.mutate.Lock()
	defer s.mutate.Unlock()
	return s.refreshIfStale(ctx)
}

func (s *secretCache) lock(ctx context.Context) (func(), error) {
	s.mutate.Lock()
	if err := s.refreshIfStale(ctx); err != nil {
		s.mutate.Unlock()
		return nil, err
	}
	return s.mutate.Unlock, nil
}

func (s *secretCache) refreshIfStale(ctx context.Context) error {
	s.mu.Lock()
	fresh := s.freshLocked()
	s.mu.Unlock()
	if fresh {
		return nil
	}
	now := s.clk.Now()
	byName := map[string]secretEntry{}
	p := sm.NewListSecretsPaginator(s.c.sm, &sm.ListSecretsInput{
		Filters:                []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{s.prefix}}},
		IncludePlannedDeletion: awssdk.Bool(true),
		MaxResults:             awssdk.Int32(100),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return classify("list secrets under "+s.prefix, err)
		}
		for _, e := range page.SecretList {
			name := awssdk.ToString(e.Name)
			if !strings.HasPrefix(name, s.prefix) {
				continue
			}
			byName[name] = secretEntry{ARN: awssdk.ToString(e.ARN), Name: name, Tags: smTags(e.Tags), Deleted: e.DeletedDate != nil}
		}
	}
	s.mu.Lock()
	s.byName, s.at = byName, now
	s.mu.Unlock()
	return nil
}

func (s *secretCache) lookup(name string) (secretEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byName[name]
	if ok {
		e.Tags = maps.Clone(e.Tags)
	}
	return e, ok
}

// lookupARN finds a listed secret by ARN.
func (s *secretCache) lookupARN(arn string) (secretEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.byName {
		if e.ARN == arn {
			e.Tags = maps.Clone(e.Tags)
			return e, true
		}
	}
	return secretEntry{}, false
}

// owned lists the secrets tagged as app's by this controller.
func (s *secretCache) owned(controllerID string, app string) []secretEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []secretEntry
	for _, e := range s.byName {
		if e.ours(controllerID) && e.Tags[model.TagApp] == app {
			e.Tags = maps.Clone(e.Tags)
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b secretEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// all lists every listed secret tagged by this controller.
func (s *secretCache) all(controllerID string) []secretEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []secretEntry
	for _, e := range s.byName {
		if e.ours(controllerID) {
			e.Tags = maps.Clone(e.Tags)
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b secretEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *secretCache) put(e secretEntry) {
	if !strings.HasPrefix(e.Name, s.prefix) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Tags = maps.Clone(e.Tags)
	s.byName[e.Name] = e
}

func smTags(tags []smtypes.Tag) map[string]string {
	out := make(map[string]string, len(tags))
	for _, t := range tags {
		out[awssdk.ToString(t.Key)] = awssdk.ToString(t.Value)
	}
	return out
}

func toSMTags(tags map[string]string) []smtypes.Tag {
	out := make([]smtypes.Tag, 0, len(tags))
	for _, k := range model.SortedKeys(tags) {
		out = append(out, smtypes.Tag{Key: awssdk.String(k), Value: awssdk.String(tags[k])})
	}
	return out
}

// describeSecret reads one secret by name or ARN; ok is false when it does
// not exist.
func (p *Platform) describeSecret(ctx context.Context, ref string) (secretEntry, bool, error) {
	out, err := p.c.sm.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: awssdk.String(ref)})
	if isCode(err, "ResourceNotFoundException") {
		return secretEntry{}, false, nil
	}
	if err != nil {
		return secretEntry{}, false, classify("describe secret "+ref, err)
	}
	e := secretEntry{ARN: awssdk.ToString(out.ARN), Name: awssdk.ToString(out.Name), Tags: smTags(out.Tags), Deleted: out.DeletedDate != nil}
	p.secrets.put(e)
	return e, true, nil
}

// findSecret looks name up in the listing (names under the prefix) or asks
// Secrets Manager (other names).
func (p *Platform) findSecret(ctx context.Context, name string) (secretEntry, bool, error) {
	if p.listed(name) {
		if err := p.secrets.ensureFresh(ctx); err != nil {
			return secretEntry{}, false, err
		}
	}
	return p.findListed(ctx, name)
}

// listed reports whether name is one the secrets listing covers.
func (p *Platform) listed(name string) bool {
	return strings.HasPrefix(name, p.cfg.SecretPrefix) && !strings.HasPrefix(name, "arn:")
}

// findListed is findSecret for callers that hold the secrets lock (which
// refreshed the listing).
func (p *Platform) findListed(ctx context.Context, name string) (secretEntry, bool, error) {
	if p.listed(name) {
		e, ok := p.secrets.lookup(name)
		return e, ok, nil
	}
	if strings.HasPrefix(name, "arn:") {
		if e, ok := p.secrets.lookupARN(name); ok {
			return e, true, nil
		}
	}
	return p.describeSecret(ctx, name)
}

// ensureSecret makes the secret name exist, tagged with tags, and returns
// its ARN. A missing secret is created with the value from newValue (called
// only then); a secret of ours scheduled for deletion is restored with its
// value; a secret of that name that is not ours is a conflict. With
// replace, the value is set to newValue even when the secret exists.
func (p *Platform) ensureSecret(ctx context.Context, app model.Ref, name string, tags map[string]string, newValue func() (string, error), replace bool, rec model.Recorder) (string, error) {
	unlock, err := p.secrets.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	e, ok, err := p.findListed(ctx, name)
	if err != nil {
		return "", err
	}
	if !ok {
		value, err := newValue()
		if err != nil {
			return "", err
		}
		out, err := p.c.sm.CreateSecret(ctx, &sm.CreateSecretInput{
			Name:         awssdk.String(name),
			Description:  awssdk.String("servingapp " + app.String() + ", managed by controller " + p.cfg.ControllerID),
			SecretString: awssdk.String(value),
			Tags:         toSMTags(tags),
		})
		switch {
		case err == nil:
			e = secretEntry{ARN: awssdk.ToString(out.ARN), Name: name, Tags: maps.Clone(tags)}
			p.secrets.put(e)
			rec.Event(ctx, "SecretCreated", "secret "+name+" created")
			return e.ARN, nil
		case isCode(err, "ResourceExistsException", "InvalidRequestException"):
			// Created meanwhile (a listing that lagged, a lost response) or
			// scheduled for deletion: look at what is there.
			if e, ok, err = p.describeSecret(ctx, name); err != nil {
				return "", err
			}
			if !ok {
				return "", classify("create secret "+name+" for "+app.String(), err)
			}
		default:
			return "", classify("create secret "+name+" for "+app.String(), err)
		}
	}
	if !e.ours(p.cfg.ControllerID) {
		return "", model.Terminal(reasonNameConflict, fmt.Errorf("secret %s exists but is not tagged %s=%s (retained from a deleted app, or made by hand): delete or rename it, or rename the app",
			name, model.TagManagedBy, p.cfg.ControllerID))
	}
	if e.Deleted {
		if _, err := p.c.sm.RestoreSecret(ctx, &sm.RestoreSecretInput{SecretId: awssdk.String(e.ARN)}); err != nil {
			return "", classify("restore secret "+name+" of "+app.String(), err)
		}
		e.Deleted = false
		p.secrets.put(e)
		rec.Event(ctx, "SecretRestored", "secret "+name+" was scheduled for deletion and has been restored")
	}
	if replace {
		value, err := newValue()
		if err != nil {
			return "", err
		}
		if _, err := p.c.sm.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: awssdk.String(e.ARN), SecretString: awssdk.String(value)}); err != nil {
			return "", classify("store a new value in secret "+name+" of "+app.String(), err)
		}
	}
	if !tagsCover(e.Tags, tags) {
		if _, err := p.c.sm.TagResource(ctx, &sm.TagResourceInput{SecretId: awssdk.String(e.ARN), Tags: toSMTags(tags)}); err != nil {
			return "", classify("tag secret "+name+" of "+app.String(), err)
		}
		e.Tags = mergeTags(e.Tags, tags)
		p.secrets.put(e)
	}
	return e.ARN, nil
}

// ensureSessionKey makes the app's session key secret exist: 32 random
// bytes, base64, created once and kept for the app's lifetime.
func (p *Platform) ensureSessionKey(ctx context.Context, app *model.App, n names, rec model.Recorder) (string, error) {
	arn, err := p.ensureSecret(ctx, app.Ref, n.SessionKey, app.Tags, func() (string, error) {
		key := make([]byte, sessionKeyBytes)
		if _, err := io.ReadFull(p.rand, key); err != nil {
			return "", fmt.Errorf("generate session key for %s: %w", app.Ref, err)
		}
		return base64.StdEncoding.EncodeToString(key), nil
	}, false, rec)
	if err != nil {
		return "", fmt.Errorf("session key secret of %s: %w", app.Ref, err)
	}
	return arn, nil
}

// deleteSecret schedules a secret of ours for deletion with the configured
// recovery window.
func (p *Platform) deleteSecret(ctx context.Context, e secretEntry) error {
	unlock, err := p.secrets.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if e.Deleted {
		return nil
	}
	_, err = p.c.sm.DeleteSecret(ctx, &sm.DeleteSecretInput{
		SecretId:             awssdk.String(e.ARN),
		RecoveryWindowInDays: awssdk.Int64(int64(p.cfg.SecretRecoveryWindowDays)),
	})
	switch {
	case isCode(err, "ResourceNotFoundException"):
		p.secrets.remove(e.Name)
		return nil
	case isCode(err, "InvalidRequestException"):
		// Already scheduled for deletion.
	case err != nil:
		return classify("delete secret "+e.Name, err)
	}
	e.Deleted = true
	p.secrets.put(e)
	return nil
}

// untagSecret removes our tags from a secret (deletionPolicy Retain).
func (p *Platform) untagSecret(ctx context.Context, e secretEntry) error {
	unlock, err := p.secrets.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := p.c.sm.UntagResource(ctx, &sm.UntagResourceInput{SecretId: awssdk.String(e.ARN), TagKeys: ownershipTagKeys()}); err != nil {
		return classify("untag secret "+e.Name, err)
	}
	for _, k := range ownershipTagKeys() {
		delete(e.Tags, k)
	}
	p.secrets.put(e)
	return nil
}

func (s *secretCache) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byName, name)
}

// ownershipTagKeys are the tags Retain removes: every tag this controller
// reads to decide what is its own.
func ownershipTagKeys() []string {
	return []string{model.TagManagedBy, model.TagApp, model.TagUID, tagRuleKind, tagSpec}
}

// ---- oauth.SecretStore ----

// DescribeSecret implements oauth.SecretStore: the secret's ARN and tags;
// ok is false when it does not exist or is scheduled for deletion.
func (p *Platform) DescribeSecret(ctx context.Context, name string) (string, map[string]string, bool, error) {
	e, ok, err := p.findSecret(ctx, name)
	if err != nil {
		return "", nil, false, fmt.Errorf("describe secret %s: %w", name, err)
	}
	if !ok || e.Deleted {
		return "", nil, false, nil
	}
	return e.ARN, e.Tags, true, nil
}

// PutSecret implements oauth.SecretStore: it creates the secret tagged with
// app.Tags and tags, or stores value as its new current version and adds
// the tags. A secret of that name not tagged as ours is left alone and
// reported as a conflict. It returns the secret's ARN.
func (p *Platform) PutSecret(ctx context.Context, app *model.App, name string, value []byte, tags map[string]string) (string, error) {
	all := mergeTags(app.Tags, tags)
	return p.ensureSecret(ctx, app.Ref, name, all, func() (string, error) { return string(value), nil }, true, discardRecorder{})
}

// TagSecret implements oauth.SecretStore: it adds or replaces tags of the
// secret ref (name or ARN).
func (p *Platform) TagSecret(ctx context.Context, ref string, tags map[string]string) error {
	unlock, err := p.secrets.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := p.c.sm.TagResource(ctx, &sm.TagResourceInput{SecretId: awssdk.String(ref), Tags: toSMTags(tags)}); err != nil {
		return classify("tag secret "+ref, err)
	}
	if e, ok := p.secrets.lookupARN(ref); ok {
		e.Tags = mergeTags(e.Tags, tags)
		p.secrets.put(e)
	} else if e, ok := p.secrets.lookup(ref); ok {
		e.Tags = mergeTags(e.Tags, tags)
		p.secrets.put(e)
	}
	return nil
}

// GetSecret returns the current value of the secret ref (name or ARN).
func (p *Platform) GetSecret(ctx context.Context, ref string) ([]byte, error) {
	out, err := p.c.sm.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: awssdk.String(ref)})
	if err != nil {
		return nil, classify("read secret "+ref, err)
	}
	if out.SecretString != nil {
		return []byte(*out.SecretString), nil
	}
	return out.SecretBinary, nil
}

// discardRecorder drops events (secret store calls come without a recorder).
type discardRecorder struct{}

func (discardRecorder) Event(context.Context, string, string)   {}
func (discardRecorder) Warning(context.Context, string, string) {}
