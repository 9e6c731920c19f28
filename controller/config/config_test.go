package config

import (
	"os"
	"strings"
	"testing"
)

func TestExampleConfigIsValid(t *testing.T) {
	c, err := Load("../../manifests/controller.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Platform != PlatformAWS || c.AWS.RulePriorities.Max != 49000 || c.Streams.Replicas != 3 {
		t.Fatalf("unexpected values: %+v", c)
	}
}

func TestParseRejectsWithFieldNames(t *testing.T) {
	base, err := os.ReadFile("../../manifests/controller.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, from, to, want string
	}{
		{"unknown field", "workers: 4", "workerz: 4", `unknown field "workerz"`},
		{"missing id", "controllerId: prod-eu-west-1", "controllerId: ''", "controllerId: is required"},
		{"bad platform", "platform: aws", "platform: k8s", `platform: "k8s" is not one of aws, local`},
		{"bad lease order", "renewDeadline: 10s", "renewDeadline: 20s", "leaderElection: need renewEvery < renewDeadline < leaseTTL"},
		{"bad priorities", "rulePriorities: {min: 1000, max: 49000}", "rulePriorities: {min: 0, max: 60000}", "aws.rulePriorities"},
		{"bad recovery window", "secretRecoveryWindowDays: 7", "secretRecoveryWindowDays: 3", "aws.secretRecoveryWindowDays"},
		{"missing listener", "  listenerArn: arn", "  listenerArnx: arn", `unknown field "listenerArnx"`},
		{"bad proxy", "10.20.1.0/24]", "10.20.1.0/33]", "trustedProxies[1]"},
		{"bad replicas", "replicas: 3", "replicas: 2", "streams.replicas"},
		{"bad lockout rules", "lockout: {rulesPerApp: 4", "lockout: {rulesPerApp: 500", "aws.lockout.rulesPerApp"},
		{"bad lockout reserve", "reserve: 10}", "reserve: -1}", "aws.lockout.reserve"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(string(base), tc.from, tc.to, 1)
			if in == string(base) {
				t.Fatalf("case does not change the example: %q", tc.from)
			}
			_, err := Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
		})
	}
}

func TestLocalPlatformNeedsNoAWS(t *testing.T) {
	c, err := Parse([]byte("controllerId: dev\nplatform: local\ndefaultImage: local\nnats: {url: nats://127.0.0.1:4222}\nleaderElection: {disabled: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != 4 || c.Resync.Duration.Minutes() != 10 {
		t.Fatalf("defaults not applied: %+v", c)
	}
}
