package awsemu

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

const token1 = "00000000-0000-4000-8000-000000000001"

func TestSecretsCreateAndRead(t *testing.T) {
	_, c := newTestServer(t, Options{})
	key := bytes.Repeat([]byte{0xab}, 32)
	created := must(c.sm.CreateSecret(ctx(t), &sm.CreateSecretInput{
		Name:               aws.String("servingapp/default/summarizer/session-key"),
		SecretBinary:       key,
		ClientRequestToken: aws.String(token1),
		Tags:               []smtypes.Tag{{Key: aws.String("servingapp.io/app"), Value: aws.String("default/summarizer")}},
	}))(t)
	if !strings.HasPrefix(aws.ToString(created.ARN), "arn:aws:secretsmanager:us-east-1:123456789012:secret:servingapp/default/summarizer/session-key-") ||
		len(aws.ToString(created.ARN)) != len("arn:aws:secretsmanager:us-east-1:123456789012:secret:servingapp/default/summarizer/session-key-")+6 ||
		aws.ToString(created.VersionId) != token1 {
		t.Errorf("created = %s version %s", aws.ToString(created.ARN), aws.ToString(created.VersionId))
	}

	for _, id := range []string{"servingapp/default/summarizer/session-key", aws.ToString(created.ARN), "arn:aws:secretsmanager:us-east-1:123456789012:secret:servingapp/default/summarizer/session-key"} {
		v := must(c.sm.GetSecretValue(ctx(t), &sm.GetSecretValueInput{SecretId: aws.String(id)}))(t)
		if !bytes.Equal(v.SecretBinary, key) || v.SecretString != nil || !slices.Equal(v.VersionStages, []string{"AWSCURRENT"}) {
			t.Errorf("GetSecretValue(%s) = %x %v %v", id, v.SecretBinary, v.SecretString, v.VersionStages)
		}
	}
	d := must(c.sm.DescribeSecret(ctx(t), &sm.DescribeSecretInput{SecretId: created.ARN}))(t)
	if len(d.Tags) != 1 || aws.ToString(d.Tags[0].Value) != "default/summarizer" || !slices.Equal(d.VersionIdsToStages[token1], []string{"AWSCURRENT"}) || d.DeletedDate != nil {
		t.Errorf("DescribeSecret = tags %v stages %v deleted %v", d.Tags, d.VersionIdsToStages, d.DeletedDate)
	}

	tests := []struct {
		name string
		in   *sm.CreateSecretInput
		code string
	}{
		{"a retry with the same token and value is idempotent", &sm.CreateSecretInput{Name: aws.String("servingapp/default/summarizer/session-key"), SecretBinary: key, ClientRequestToken: aws.String(token1)}, ""},
		{"the same name with a new token", &sm.CreateSecretInput{Name: aws.String("servingapp/default/summarizer/session-key"), SecretBinary: key}, "ResourceExistsException"},
		{"the same token with another value", &sm.CreateSecretInput{Name: aws.String("servingapp/default/summarizer/session-key"), SecretString: aws.String("x"), ClientRequestToken: aws.String(token1)}, "ResourceExistsException"},
		{"both string and binary", &sm.CreateSecretInput{Name: aws.String("both"), SecretString: aws.String("x"), SecretBinary: key}, "InvalidParameterException"},
		{"invalid name", &sm.CreateSecretInput{Name: aws.String("bad name"), SecretString: aws.String("x")}, "InvalidParameterException"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.sm.CreateSecret(ctx(t), tc.in)
			wantCode(t, err, tc.code)
			if tc.code == "" && aws.ToString(out.ARN) != aws.ToString(created.ARN) {
				t.Errorf("retry returned %s", aws.ToString(out.ARN))
			}
		})
	}
	if _, err := c.sm.GetSecretValue(ctx(t), &sm.GetSecretValueInput{SecretId: aws.String("nope")}); !isErr[*smtypes.ResourceNotFoundException](err) {
		t.Errorf("missing secret: %v", err)
	}
}

func TestSecretsVersionsAndStages(t *testing.T) {
	_, c := newTestServer(t, Options{})
	must(c.sm.CreateSecret(ctx(t), &sm.CreateSecretInput{Name: aws.String("client-secret"), SecretString: aws.String("v1")}))(t)
	put := must(c.sm.PutSecretValue(ctx(t), &sm.PutSecretValueInput{SecretId: aws.String("client-secret"), SecretString: aws.String("v2"), ClientRequestToken: aws.String(token1)}))(t)
	if aws.ToString(put.VersionId) != token1 || !slices.Equal(put.VersionStages, []string{"AWSCURRENT"}) {
		t.Errorf("PutSecretValue = %s %v", aws.ToString(put.VersionId), put.VersionStages)
	}
	// The same put again is a no-op; the same token with another value fails.
	must(c.sm.PutSecretValue(ctx(t), &sm.PutSecretValueInput{SecretId: aws.String("client-secret"), SecretString: aws.String("v2"), ClientRequestToken: aws.String(token1)}))(t)
	_, err := c.sm.PutSecretValue(ctx(t), &sm.PutSecretValueInput{SecretId: aws.String("client-secret"), SecretString: aws.String("v3"), ClientRequestToken: aws.String(token1)})
	if !isErr[*smtypes.ResourceExistsException](err) {
		t.Errorf("changing an existing version: %v", err)
	}
	cur := must(c.sm.GetSecretValue(ctx(t), &sm.GetSecretValueInput{SecretId: aws.String("client-secret")}))(t)
	prev := must(c.sm.GetSecretValue(ctx(t), &sm.GetSecretValueInput{SecretId: aws.String("client-secret"), VersionStage: aws.String("AWSPREVIOUS")}))(t)
	if aws.ToString(cur.SecretString) != "v2" || aws.ToString(prev.SecretString) != "v1" {
		t.Errorf("current %q previous %q", aws.ToString(cur.SecretString), aws.ToString(prev.SecretString))
	}
	upd := must(c.sm.UpdateSecret(ctx(t), &sm.UpdateSecretInput{SecretId: aws.String("client-secret"), Description: aws.String("OAuth client secret")}))(t)
	if upd.VersionId != nil {
		t.Errorf("description-only UpdateSecret created version %s", aws.ToString(upd.VersionId))
	}
	d := must(c.sm.DescribeSecret(ctx(t), &sm.DescribeSecretInput{SecretId: aws.String("client-secret")}))(t)
	if aws.ToString(d.Description) != "OAuth client secret" || len(d.VersionIdsToStages) != 2 {
		t.Errorf("description %q, versions %v", aws.ToString(d.Description), d.VersionIdsToStages)
	}
}

func TestSecretsDeletionAndRecovery(t *testing.T) {
	srv, c := newTestServer(t, Options{})
	must(c.sm.CreateSecret(ctx(t), &sm.CreateSecretInput{Name: aws.String("s"), SecretString: aws.String("v")}))(t)

	tests := []struct {
		name string
		in   *sm.DeleteSecretInput
		code string
	}{
		{"window below 7 days", &sm.DeleteSecretInput{SecretId: aws.String("s"), RecoveryWindowInDays: aws.Int64(3)}, "InvalidParameterException"},
		{"window and force together", &sm.DeleteSecretInput{SecretId: aws.String("s"), RecoveryWindowInDays: aws.Int64(7), ForceDeleteWithoutRecovery: aws.Bool(true)}, "InvalidParameterException"},
		{"missing secret", &sm.DeleteSecretInput{SecretId: aws.String("nope")}, "ResourceNotFoundException"},
	}
	for _, tc := range tests {
		_, err := c.sm.DeleteSecret(ctx(t), tc.in)
		if errorCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}

	del := must(c.sm.DeleteSecret(ctx(t), &sm.DeleteSecretInput{SecretId: aws.String("s"), RecoveryWindowInDays: aws.Int64(7)}))(t)
	if got := del.DeletionDate.Sub(srv.Now()); got != 7*24*time.Hour {
		t.Errorf("deletion date in %v, want 7 days", got)
	}
	scheduled := []struct {
		name string
		call func() error
		code string
	}{
		{"GetSecretValue", func() error {
			_, err := c.sm.GetSecretValue(ctx(t), &sm.GetSecretValueInput{SecretId: aws.String("s")})
			return err
		}, "InvalidRequestException"},
		{"PutSecretValue", func() error {
			_, err := c.sm.PutSecretValue(ctx(t), &sm.PutSecretValueInput{SecretId: aws.String("s"), SecretString: aws.String("x")})
			return err
		}, "InvalidRequestException"},
		{"CreateSecret with the name", func() error {
			_, err := c.sm.CreateSecret(ctx(t), &sm.CreateSecretInput{Name: aws.String("s"), SecretString: aws.String("x")})
			return err
		}, "InvalidRequestException"},
		{"DeleteSecret again", func() error {
			_, err := c.sm.DeleteSecret(ctx(t), &sm.DeleteSecretInput{SecretId: aws.String("s")})
			return err
		}, "InvalidRequestException"},
		{"DescribeSecret", func() error {
			d, err := c.sm.DescribeSecret(ctx(t), &sm.DescribeSecretInput{SecretId: aws.String("s")})
			if err == nil && d.DeletedDate == nil {
				t.Errorf("DescribeSecret of a scheduled secret has no DeletedDate")
			}
			return err
		}, ""},
	}
	for _, tc := range scheduled {
		if err := tc.call(); errorCode(err) != tc.code {
			t.Errorf("%s on a secret scheduled for deletion: %v, want %q", tc.name, err, tc.code)
		}
	}

	must(c.sm.RestoreSecret(ctx(t), &sm.RestoreSecretInput{SecretId: aws.String("s")}))(t)
	if v := must(c.sm.GetSecretValue(ctx(t), &sm.GetSecretValueInput{SecretId: aws.String("s")}))(t); aws.ToString(v.SecretString) != "v" {
		t.Errorf("restored value %q", aws.ToString(v.SecretString))
	}

	must(c.sm.DeleteSecret(ctx(t), &sm.DeleteSecretInput{SecretId: aws.String("s"), RecoveryWindowInDays: aws.Int64(7)}))(t)
	srv.Advance(7*24*time.Hour - time.Second)
	if _, err := c.sm.DescribeSecret(ctx(t), &sm.DescribeSecretInput{SecretId: aws.String("s")}); err != nil {
		t.Errorf("secret gone before its recovery window ended: %v", err)
	}
	srv.Advance(time.Second)
	if _, err := c.sm.DescribeSecret(ctx(t), &sm.DescribeSecretInput{SecretId: aws.String("s")}); !isErr[*smtypes.ResourceNotFoundException](err) {
		t.Errorf("secret after its recovery window: %v", err)
	}
	must(c.sm.CreateSecret(ctx(t), &sm.CreateSecretInput{Name: aws.String("s"), SecretString: aws.String("new")}))(t)

	must(c.sm.DeleteSecret(ctx(t), &sm.DeleteSecretInput{SecretId: aws.String("s"), ForceDeleteWithoutRecovery: aws.Bool(true)}))(t)
	if _, err := c.sm.DescribeSecret(ctx(t), &sm.DescribeSecretInput{SecretId: aws.String("s")}); !isErr[*smtypes.ResourceNotFoundException](err) {
		t.Errorf("secret after forced deletion: %v", err)
	}
}

func TestSecretsTagsAndListFilters(t *testing.T) {
	_, c := newTestServer(t, Options{})
	tag := func(k, v string) smtypes.Tag { return smtypes.Tag{Key: aws.String(k), Value: aws.String(v)} }
	for _, s := range []struct {
		name string
		tags []smtypes.Tag
	}{
		{"ours-a", []smtypes.Tag{tag("servingapp.io/managed-by", "ctrl-1"), tag("servingapp.io/app", "default/a")}},
		{"ours-b", []smtypes.Tag{tag("servingapp.io/managed-by", "ctrl-1"), tag("servingapp.io/app", "team/b")}},
		{"theirs", []smtypes.Tag{tag("servingapp.io/managed-by", "ctrl-2")}},
		{"untagged", nil},
	} {
		must(c.sm.CreateSecret(ctx(t), &sm.CreateSecretInput{Name: aws.String(s.name), SecretString: aws.String("x"), Tags: s.tags}))(t)
	}
	must(c.sm.TagResource(ctx(t), &sm.TagResourceInput{SecretId: aws.String("untagged"), Tags: []smtypes.Tag{tag("servingapp.io/app", "default/c")}}))(t)
	must(c.sm.UntagResource(ctx(t), &sm.UntagResourceInput{SecretId: aws.String("ours-b"), TagKeys: []string{"servingapp.io/app"}}))(t)
	must(c.sm.DeleteSecret(ctx(t), &sm.DeleteSecretInput{SecretId: aws.String("ours-a")}))(t)

	tests := []struct {
		name    string
		filters []smtypes.Filter
		planned bool
		want    []string
	}{
		{"no filter excludes scheduled deletions", nil, false, []string{"ours-b", "theirs", "untagged"}},
		{"include planned deletion", nil, true, []string{"ours-a", "ours-b", "theirs", "untagged"}},
		{"tag key", []smtypes.Filter{{Key: smtypes.FilterNameStringTypeTagKey, Values: []string{"servingapp.io/managed-by"}}}, true, []string{"ours-a", "ours-b", "theirs"}},
		{"tag key and value", []smtypes.Filter{
			{Key: smtypes.FilterNameStringTypeTagKey, Values: []string{"servingapp.io/managed-by"}},
			{Key: smtypes.FilterNameStringTypeTagValue, Values: []string{"ctrl-1"}},
		}, true, []string{"ours-a", "ours-b"}},
		{"tag key prefix", []smtypes.Filter{{Key: smtypes.FilterNameStringTypeTagKey, Values: []string{"servingapp.io/"}}}, false, []string{"ours-b", "theirs", "untagged"}},
		{"negated name", []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"!ours"}}}, false, []string{"theirs", "untagged"}},
		{"values are ORed", []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"theirs", "untagged"}}}, false, []string{"theirs", "untagged"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			p := sm.NewListSecretsPaginator(c.sm, &sm.ListSecretsInput{Filters: tc.filters, IncludePlannedDeletion: aws.Bool(tc.planned), SortBy: smtypes.SortByTypeName, MaxResults: aws.Int32(2)})
			for p.HasMorePages() {
				for _, s := range must(p.NextPage(ctx(t)))(t).SecretList {
					got = append(got, aws.ToString(s.Name))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ListSecrets = %v, want %v", got, tc.want)
			}
		})
	}
}
