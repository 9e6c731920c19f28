package v1alpha1

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func validApp() *ServingApp {
	a := &ServingApp{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   ObjectMeta{Name: "summarizer", Namespace: "analytics", Labels: map[string]string{"team": "analytics"}},
		Spec: ServingAppSpec{
			Route:     Route{Host: "summarizer.apps.example.com"},
			Allowlist: []string{"203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"},
			Databricks: Databricks{
				Host:            "https://dbc-1234abcd.cloud.databricks.com",
				ServingEndpoint: "databricks-claude-sonnet-4",
			},
			Env:     map[string]string{"SUMMARY_LANGUAGE": "ja"},
			Secrets: map[string]string{"EXTRA_KEY": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:extra-AbCdEf"},
		},
	}
	SetDefaults(a)
	return a
}

func i32(v int32) *int32 { return &v }

func TestValidateAcceptsValidApps(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(a *ServingApp)
	}{
		{"defaults", func(*ServingApp) {}},
		{"path prefix", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/team-a/summarizer" }},
		{"no host derives one", func(a *ServingApp) { a.Spec.Route.Host = "" }},
		{"open to the world", func(a *ServingApp) { a.Spec.Allowlist = []string{"0.0.0.0/0", "::/0"} }},
		{"100 cidrs", func(a *ServingApp) { a.Spec.Allowlist = nCIDRs(100) }},
		{"zero replicas", func(a *ServingApp) { a.Spec.Replicas = i32(0) }},
		{"100 replicas", func(a *ServingApp) { a.Spec.Replicas = i32(100) }},
		{"autoscaling", func(a *ServingApp) {
			a.Spec.Autoscaling = &Autoscaling{MinReplicas: 1, MaxReplicas: 100, TargetInvocationsPerReplicaPerMinute: 60}
		}},
		{"autoscaling min equals max", func(a *ServingApp) {
			a.Spec.Autoscaling = &Autoscaling{MinReplicas: 3, MaxReplicas: 3, TargetInvocationsPerReplicaPerMinute: 60}
		}},
		{"fargate 512/4096", func(a *ServingApp) { a.Spec.Resources = Resources{CPU: 512, Memory: 4096} }},
		{"fargate 4096/30720", func(a *ServingApp) { a.Spec.Resources = Resources{CPU: 4096, Memory: 30720} }},
		{"fargate 8192/20480", func(a *ServingApp) { a.Spec.Resources = Resources{CPU: 8192, Memory: 20480} }},
		{"fargate 16384/122880", func(a *ServingApp) { a.Spec.Resources = Resources{CPU: 16384, Memory: 122880} }},
		{"existing integration", func(a *ServingApp) {
			a.Spec.Databricks.OAuth = OAuth{Integration: IntegrationExisting, IntegrationID: "abc", ClientSecretRef: "servingapp/shared/secret", Scopes: []string{"openid", "all-apis"}}
		}},
		{"ttl 5m", func(a *ServingApp) { a.Spec.Session.TTL.Duration = 5 * time.Minute }},
		{"ttl 7d", func(a *ServingApp) { a.Spec.Session.TTL.Duration = 7 * 24 * time.Hour }},
		{"retain", func(a *ServingApp) { a.Spec.DeletionPolicy = DeletionRetain }},
		{"prefixed label", func(a *ServingApp) { a.Metadata.Labels["example.com/owner"] = "jane.doe" }},
		{"identity", func(a *ServingApp) {
			a.Spec.Identity = &Identity{AllowedEmailDomains: []string{"example.com"}, Lockout: &Lockout{Failures: 5, Window: Duration{10 * time.Minute}, Duration: Duration{30 * time.Minute}}}
		}},
		{"secret by name", func(a *ServingApp) { a.Spec.Secrets = map[string]string{"TOKEN": "team/app-token"} }},
		// The limits themselves are allowed: each reject row below goes one past.
		{"host of 128 characters", func(a *ServingApp) {
			a.Spec.Route.Host = strings.Repeat("a", 63) + "." + strings.Repeat("b", 62) + ".c"
		}},
		{"path prefix of 126 characters", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/" + strings.Repeat("p", 125) }},
		{"label value of 63 characters", func(a *ServingApp) { a.Metadata.Labels["team"] = strings.Repeat("v", 63) }},
		{"annotation with a prefix", func(a *ServingApp) { a.Metadata.Annotations = map[string]string{"example.com/note": "any text at all"} }},
		{"endpoint of 63 characters", func(a *ServingApp) { a.Spec.Databricks.ServingEndpoint = strings.Repeat("e", 63) }},
		{"ipv6 cidr", func(a *ServingApp) { a.Spec.Allowlist = []string{"2001:db8:1::/48", "::1/128"} }},
		{"lockout at its limits", func(a *ServingApp) {
			a.Spec.Identity = &Identity{Lockout: &Lockout{Failures: 100, Window: Duration{24 * time.Hour}, Duration: Duration{30 * 24 * time.Hour}}}
		}},
		{"secret name of 2048 characters", func(a *ServingApp) { a.Spec.Secrets = map[string]string{"TOKEN": strings.Repeat("s", 2048)} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := validApp()
			tc.mutate(a)
			if errs := Validate(a); errs != nil {
				t.Fatalf("Validate: %v", errs)
			}
		})
	}
}

func TestValidateRejectsWithFieldPathAndReason(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(a *ServingApp)
		path   string
		reason string
	}{
		{"wrong apiVersion", func(a *ServingApp) { a.APIVersion = "v1" }, "apiVersion", `must be "servingapp.io/v1alpha1"`},
		{"wrong kind", func(a *ServingApp) { a.Kind = "Service" }, "kind", `must be "ServingApp"`},
		{"name missing", func(a *ServingApp) { a.Metadata.Name = "" }, "metadata.name", "is required"},
		{"name uppercase", func(a *ServingApp) { a.Metadata.Name = "Summarizer" }, "metadata.name", `did you mean "summarizer"`},
		{"name too long", func(a *ServingApp) { a.Metadata.Name = strings.Repeat("a", 64) }, "metadata.name", "longer than 63"},
		{"name ends with dash", func(a *ServingApp) { a.Metadata.Name = "app-" }, "metadata.name", "not a DNS label"},
		{"namespace underscore", func(a *ServingApp) { a.Metadata.Namespace = "my_ns" }, "metadata.namespace", "not a DNS label"},
		{"label value", func(a *ServingApp) { a.Metadata.Labels["team"] = "a b" }, "metadata.labels.team", "not a valid label value"},
		{"label key", func(a *ServingApp) { a.Metadata.Labels["-bad"] = "x" }, "metadata.labels.-bad", "is not valid"},
		{"image with space", func(a *ServingApp) { a.Spec.Image = "repo/app: latest" }, "spec.image", "not a container image"},
		{"replicas negative", func(a *ServingApp) { a.Spec.Replicas = i32(-1) }, "spec.replicas", "out of range"},
		{"replicas 101", func(a *ServingApp) { a.Spec.Replicas = i32(101) }, "spec.replicas", "out of range"},
		{"autoscaling min > max", func(a *ServingApp) {
			a.Spec.Autoscaling = &Autoscaling{MinReplicas: 5, MaxReplicas: 2, TargetInvocationsPerReplicaPerMinute: 60}
		}, "spec.autoscaling.maxReplicas", "less than minReplicas"},
		{"autoscaling max > 100", func(a *ServingApp) {
			a.Spec.Autoscaling = &Autoscaling{MinReplicas: 1, MaxReplicas: 101, TargetInvocationsPerReplicaPerMinute: 60}
		}, "spec.autoscaling.maxReplicas", "at most 100"},
		{"autoscaling min 0", func(a *ServingApp) {
			a.Spec.Autoscaling = &Autoscaling{MinReplicas: 0, MaxReplicas: 2, TargetInvocationsPerReplicaPerMinute: 60}
		}, "spec.autoscaling.minReplicas", "at least 1"},
		{"autoscaling target 0", func(a *ServingApp) {
			a.Spec.Autoscaling = &Autoscaling{MinReplicas: 1, MaxReplicas: 2}
		}, "spec.autoscaling.targetInvocationsPerReplicaPerMinute", "at least 1"},
		{"cpu not fargate", func(a *ServingApp) { a.Spec.Resources = Resources{CPU: 300, Memory: 512} }, "spec.resources.cpu", "not a Fargate CPU size"},
		{"memory too big for cpu", func(a *ServingApp) { a.Spec.Resources = Resources{CPU: 256, Memory: 4096} }, "spec.resources.memory", "512, 1024 or 2048"},
		{"memory off step", func(a *ServingApp) { a.Spec.Resources = Resources{CPU: 8192, Memory: 18432} }, "spec.resources.memory", "steps of 4096"},
		{"host uppercase", func(a *ServingApp) { a.Spec.Route.Host = "App.example.com" }, "spec.route.host", `did you mean "app.example.com"`},
		{"host wildcard", func(a *ServingApp) { a.Spec.Route.Host = "*.example.com" }, "spec.route.host", "wildcard"},
		{"host with port", func(a *ServingApp) { a.Spec.Route.Host = "app.example.com:443" }, "spec.route.host", "port"},
		{"host underscore", func(a *ServingApp) { a.Spec.Route.Host = "my_app.example.com" }, "spec.route.host", "not a valid host name"},
		{"path without slash", func(a *ServingApp) { a.Spec.Route.PathPrefix = "app" }, "spec.route.pathPrefix", `must start with "/"`},
		{"path query", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/app?x=1" }, "spec.route.pathPrefix", "query or fragment"},
		{"path fragment", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/app#x" }, "spec.route.pathPrefix", "query or fragment"},
		{"path wildcard", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/app/*" }, "spec.route.pathPrefix", "wildcard"},
		{"path trailing slash", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/app/" }, "spec.route.pathPrefix", `write "/app"`},
		{"path dot dot", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/a/../b" }, "spec.route.pathPrefix", "not a clean path"},
		{"path space", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/a b" }, "spec.route.pathPrefix", "characters ALB"},
		{"allowlist empty", func(a *ServingApp) { a.Spec.Allowlist = nil }, "spec.allowlist", "is required"},
		{"allowlist invalid", func(a *ServingApp) { a.Spec.Allowlist = []string{"1.2.3.0/24", "10.0.0.0/8", "10.0.0.300/8"} }, "spec.allowlist[2]", `"10.0.0.300/8" is not a valid CIDR`},
		{"allowlist host bits", func(a *ServingApp) { a.Spec.Allowlist = []string{"10.0.0.5/8"} }, "spec.allowlist[0]", `write "10.0.0.0/8"`},
		{"allowlist bare address", func(a *ServingApp) { a.Spec.Allowlist = []string{"10.0.0.5"} }, "spec.allowlist[0]", `write "10.0.0.5/32"`},
		{"allowlist non-canonical ipv6", func(a *ServingApp) { a.Spec.Allowlist = []string{"2001:DB8::/32"} }, "spec.allowlist[0]", `write "2001:db8::/32"`},
		{"allowlist duplicate", func(a *ServingApp) { a.Spec.Allowlist = []string{"10.0.0.0/8", "10.0.0.0/8"} }, "spec.allowlist[1]", "duplicates allowlist[0]"},
		{"allowlist 101", func(a *ServingApp) { a.Spec.Allowlist = nCIDRs(101) }, "spec.allowlist", "at most 100"},
		{"databricks host missing", func(a *ServingApp) { a.Spec.Databricks.Host = "" }, "spec.databricks.host", "is required"},
		{"databricks host http", func(a *ServingApp) { a.Spec.Databricks.Host = "http://dbc.cloud.databricks.com" }, "spec.databricks.host", "must use https"},
		{"databricks host path", func(a *ServingApp) { a.Spec.Databricks.Host = "https://dbc.cloud.databricks.com/api" }, "spec.databricks.host", `write "https://dbc.cloud.databricks.com"`},
		{"databricks host not url", func(a *ServingApp) { a.Spec.Databricks.Host = "dbc.cloud.databricks.com" }, "spec.databricks.host", "not a URL"},
		{"endpoint missing", func(a *ServingApp) { a.Spec.Databricks.ServingEndpoint = "" }, "spec.databricks.servingEndpoint", "is required"},
		{"endpoint bad", func(a *ServingApp) { a.Spec.Databricks.ServingEndpoint = "a/b" }, "spec.databricks.servingEndpoint", "not a serving endpoint name"},
		{"integration unknown", func(a *ServingApp) { a.Spec.Databricks.OAuth.Integration = "shared" }, "spec.databricks.oauth.integration", "not one of managed, existing"},
		{"existing without id", func(a *ServingApp) {
			a.Spec.Databricks.OAuth = OAuth{Integration: IntegrationExisting, ClientSecretRef: "x", Scopes: []string{"openid"}}
		}, "spec.databricks.oauth.integrationId", "is required"},
		{"existing without secret", func(a *ServingApp) {
			a.Spec.Databricks.OAuth = OAuth{Integration: IntegrationExisting, IntegrationID: "x", Scopes: []string{"openid"}}
		}, "spec.databricks.oauth.clientSecretRef", "is required"},
		{"managed with id", func(a *ServingApp) { a.Spec.Databricks.OAuth.IntegrationID = "x" }, "spec.databricks.oauth.integrationId", "must be empty"},
		{"scopes without openid", func(a *ServingApp) { a.Spec.Databricks.OAuth.Scopes = []string{"all-apis"} }, "spec.databricks.oauth.scopes", `must include "openid"`},
		{"scope duplicate", func(a *ServingApp) { a.Spec.Databricks.OAuth.Scopes = []string{"openid", "openid"} }, "spec.databricks.oauth.scopes[1]", "listed twice"},
		{"env name invalid", func(a *ServingApp) { a.Spec.Env = map[string]string{"1BAD": "x"} }, "spec.env.1BAD", "not a valid environment variable name"},
		{"env reserved", func(a *ServingApp) { a.Spec.Env = map[string]string{"SERVINGAPP_CLIENT_ID": "x"} }, "spec.env.SERVINGAPP_CLIENT_ID", "is reserved"},
		{"env PORT", func(a *ServingApp) { a.Spec.Env = map[string]string{"PORT": "80"} }, "spec.env.PORT", "is reserved"},
		{"secret reserved", func(a *ServingApp) { a.Spec.Secrets = map[string]string{"SERVINGAPP_SESSION_KEY": "x"} }, "spec.secrets.SERVINGAPP_SESSION_KEY", "is reserved"},
		{"secret also in env", func(a *ServingApp) { a.Spec.Secrets = map[string]string{"SUMMARY_LANGUAGE": "x"} }, "spec.secrets.SUMMARY_LANGUAGE", "also set in spec.env"},
		{"secret bad arn", func(a *ServingApp) { a.Spec.Secrets = map[string]string{"K": "arn:aws:s3:::bucket"} }, "spec.secrets.K", "not a Secrets Manager secret ARN"},
		{"ttl too short", func(a *ServingApp) { a.Spec.Session.TTL.Duration = 4 * time.Minute }, "spec.session.ttl", "5m to 7d"},
		{"ttl too long", func(a *ServingApp) { a.Spec.Session.TTL.Duration = 8 * 24 * time.Hour }, "spec.session.ttl", "5m to 7d"},
		{"deletion policy", func(a *ServingApp) { a.Spec.DeletionPolicy = "Orphan" }, "spec.deletionPolicy", "not one of Delete, Retain"},
		{"email domain", func(a *ServingApp) { a.Spec.Identity = &Identity{AllowedEmailDomains: []string{"@example.com"}} }, "spec.identity.allowedEmailDomains[0]", "not a domain name"},
		{"lockout failures", func(a *ServingApp) {
			a.Spec.Identity = &Identity{Lockout: &Lockout{Failures: 0, Window: Duration{time.Minute}, Duration: Duration{time.Minute}}}
		}, "spec.identity.lockout.failures", "out of range"},
		{"lockout failures 101", func(a *ServingApp) {
			a.Spec.Identity = &Identity{Lockout: &Lockout{Failures: 101, Window: Duration{time.Minute}, Duration: Duration{time.Minute}}}
		}, "spec.identity.lockout.failures", "must be 1 to 100"},
		{"lockout window zero", func(a *ServingApp) {
			a.Spec.Identity = &Identity{Lockout: &Lockout{Failures: 5, Duration: Duration{time.Minute}}}
		}, "spec.identity.lockout.window", "0s is out of range: must be more than 0 and at most 24h"},
		{"lockout window over a day", func(a *ServingApp) {
			a.Spec.Identity = &Identity{Lockout: &Lockout{Failures: 5, Window: Duration{24*time.Hour + time.Second}, Duration: Duration{time.Minute}}}
		}, "spec.identity.lockout.window", "at most 24h"},
		{"lockout duration zero", func(a *ServingApp) {
			a.Spec.Identity = &Identity{Lockout: &Lockout{Failures: 5, Window: Duration{time.Minute}}}
		}, "spec.identity.lockout.duration", "0s is out of range: must be more than 0 and at most 30d"},
		{"lockout duration negative", func(a *ServingApp) {
			a.Spec.Identity = &Identity{Lockout: &Lockout{Failures: 5, Window: Duration{time.Minute}, Duration: Duration{-time.Minute}}}
		}, "spec.identity.lockout.duration", "out of range"},
		{"lockout duration over 30 days", func(a *ServingApp) {
			a.Spec.Identity = &Identity{Lockout: &Lockout{Failures: 5, Window: Duration{time.Minute}, Duration: Duration{31 * 24 * time.Hour}}}
		}, "spec.identity.lockout.duration", "at most 30d"},
		{"email domain duplicate", func(a *ServingApp) {
			a.Spec.Identity = &Identity{AllowedEmailDomains: []string{"example.com", "example.org", "example.com"}}
		}, "spec.identity.allowedEmailDomains[2]", `"example.com" is listed twice`},
		{"label value too long", func(a *ServingApp) { a.Metadata.Labels["team"] = strings.Repeat("v", 64) }, "metadata.labels.team", "not a valid label value"},
		{"label key prefix not a subdomain", func(a *ServingApp) { a.Metadata.Labels["my_team.io/owner"] = "x" }, "metadata.labels.my_team.io/owner", `key prefix "my_team.io" is not a DNS subdomain`},
		{"label key prefix uppercase", func(a *ServingApp) { a.Metadata.Labels["Example.com/owner"] = "x" }, "metadata.labels.Example.com/owner", `key prefix "Example.com" is not a DNS subdomain`},
		{"label key prefix empty", func(a *ServingApp) { a.Metadata.Labels["/owner"] = "x" }, "metadata.labels./owner", `key prefix "" is not a DNS subdomain`},
		{"label key name too long", func(a *ServingApp) { a.Metadata.Labels["example.com/"+strings.Repeat("k", 64)] = "x" }, "metadata.labels.example.com/" + strings.Repeat("k", 64), "is not valid"},
		{"label key name empty after prefix", func(a *ServingApp) { a.Metadata.Labels["example.com/"] = "x" }, "metadata.labels.example.com/", "is not valid"},
		{"annotation key prefix not a subdomain", func(a *ServingApp) { a.Metadata.Annotations = map[string]string{"-example.com/note": "x"} }, "metadata.annotations.-example.com/note", `key prefix "-example.com" is not a DNS subdomain`},
		{"annotation key name", func(a *ServingApp) { a.Metadata.Annotations = map[string]string{"note!": "x"} }, `metadata.annotations["note!"]`, "is not valid"},
		{"image too long", func(a *ServingApp) { a.Spec.Image = strings.Repeat("i", 256) }, "spec.image", "not a container image"},
		{"host question mark", func(a *ServingApp) { a.Spec.Route.Host = "app?.example.com" }, "spec.route.host", "wildcard"},
		{"host too long", func(a *ServingApp) {
			a.Spec.Route.Host = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".c"
		}, "spec.route.host", "longer than 128 characters"},
		{"path too long", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/" + strings.Repeat("p", 126) }, "spec.route.pathPrefix", "longer than 126 characters"},
		{"path empty segment", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/a//b" }, "spec.route.pathPrefix", "not a clean path"},
		{"path dot segment", func(a *ServingApp) { a.Spec.Route.PathPrefix = "/a/./b" }, "spec.route.pathPrefix", "not a clean path"},
		{"allowlist ipv6 host bits", func(a *ServingApp) { a.Spec.Allowlist = []string{"2001:db8::1/32"} }, "spec.allowlist[0]", `"2001:db8::1/32" has host bits set: write "2001:db8::/32"`},
		{"allowlist ipv4-mapped ipv6", func(a *ServingApp) { a.Spec.Allowlist = []string{"::ffff:10.0.0.0/104"} }, "spec.allowlist[0]", "IPv4-mapped IPv6 prefix: write the IPv4 CIDR"},
		{"allowlist bare ipv6 address", func(a *ServingApp) { a.Spec.Allowlist = []string{"2001:db8::1"} }, "spec.allowlist[0]", `write "2001:db8::1/128"`},
		{"allowlist ipv6 duplicate", func(a *ServingApp) { a.Spec.Allowlist = []string{"2001:db8::/32", "10.0.0.0/8", "2001:db8::/32"} }, "spec.allowlist[2]", "duplicates allowlist[0]"},
		{"databricks host user info", func(a *ServingApp) { a.Spec.Databricks.Host = "https://token@dbc.cloud.databricks.com" }, "spec.databricks.host", "must not carry user information"},
		{"databricks host query", func(a *ServingApp) { a.Spec.Databricks.Host = "https://dbc.cloud.databricks.com/?o=1" }, "spec.databricks.host", `no path, query or fragment: write "https://dbc.cloud.databricks.com"`},
		{"databricks host fragment", func(a *ServingApp) { a.Spec.Databricks.Host = "https://dbc.cloud.databricks.com#x" }, "spec.databricks.host", "no path, query or fragment"},
		{"databricks host invalid name", func(a *ServingApp) { a.Spec.Databricks.Host = "https://dbc_1.cloud.databricks.com" }, "spec.databricks.host", "does not name a valid host"},
		{"endpoint too long", func(a *ServingApp) { a.Spec.Databricks.ServingEndpoint = strings.Repeat("e", 64) }, "spec.databricks.servingEndpoint", "not a serving endpoint name"},
		{"managed with client secret", func(a *ServingApp) { a.Spec.Databricks.OAuth.ClientSecretRef = "team/secret" }, "spec.databricks.oauth.clientSecretRef", "must be empty with integration: managed"},
		{"existing with a bad secret ref", func(a *ServingApp) {
			a.Spec.Databricks.OAuth = OAuth{Integration: IntegrationExisting, IntegrationID: "x", ClientSecretRef: "shared secret", Scopes: []string{"openid"}}
		}, "spec.databricks.oauth.clientSecretRef", `"shared secret" is not a Secrets Manager secret name`},
		{"scope invalid characters", func(a *ServingApp) { a.Spec.Databricks.OAuth.Scopes = []string{"openid", "all apis"} }, "spec.databricks.oauth.scopes[1]", `"all apis" is not a scope`},
		{"secret name invalid", func(a *ServingApp) { a.Spec.Secrets = map[string]string{"K": "team/app token"} }, "spec.secrets.K", `"team/app token" is not a Secrets Manager secret name`},
		{"secret name too long", func(a *ServingApp) { a.Spec.Secrets = map[string]string{"K": strings.Repeat("s", 2049)} }, "spec.secrets.K", "is not a Secrets Manager secret name"},
		{"secret ref empty", func(a *ServingApp) { a.Spec.Secrets = map[string]string{"K": ""} }, "spec.secrets.K", "is empty"},
		{"secret arn without a name", func(a *ServingApp) {
			a.Spec.Secrets = map[string]string{"K": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"}
		}, "spec.secrets.K", "not a Secrets Manager secret ARN"},
		{"secret arn of another resource type", func(a *ServingApp) {
			a.Spec.Secrets = map[string]string{"K": "arn:aws:secretsmanager:eu-west-1:123456789012:parameter:x"}
		}, "spec.secrets.K", "not a Secrets Manager secret ARN"},
		{"secret variable name invalid", func(a *ServingApp) { a.Spec.Secrets = map[string]string{"MY-KEY": "team/key"} }, "spec.secrets.MY-KEY", "not a valid environment variable name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := validApp()
			tc.mutate(a)
			errs := Validate(a)
			for _, e := range errs {
				if e.Path == tc.path && strings.Contains(e.Message, tc.reason) {
					return
				}
			}
			t.Fatalf("want %s: …%s…; got:\n%v", tc.path, tc.reason, errs)
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	a := validApp()
	a.Metadata.Name = "Bad_Name"
	a.Spec.Allowlist = []string{"10.0.0.5/8", "nope"}
	a.Spec.Resources.CPU = 3
	a.Spec.DeletionPolicy = "x"
	errs := Validate(a)
	want := []string{"metadata.name", "spec.resources.cpu", "spec.allowlist[0]", "spec.allowlist[1]", "spec.deletionPolicy"}
	if len(errs) != len(want) {
		t.Fatalf("want %d problems, got %d:\n%v", len(want), len(errs), errs)
	}
	for i, p := range want {
		if errs[i].Path != p {
			t.Errorf("problem %d: path %q, want %q", i, errs[i].Path, p)
		}
	}
	if got := errs.Error(); !strings.Contains(got, `spec.allowlist[1]: "nope" is not a valid CIDR`) {
		t.Errorf("error text lacks path and reason: %s", got)
	}
}

func TestSetDefaults(t *testing.T) {
	a := &ServingApp{Spec: ServingAppSpec{Resources: Resources{CPU: 1024}, Autoscaling: &Autoscaling{MinReplicas: 3, MaxReplicas: 5}}}
	SetDefaults(a)
	s := a.Spec
	switch {
	case a.Metadata.Namespace != "default":
		t.Errorf("namespace %q", a.Metadata.Namespace)
	case *s.Replicas != 3:
		t.Errorf("replicas %d, want autoscaling minimum 3", *s.Replicas)
	case s.Resources.Memory != 2048:
		t.Errorf("memory %d, want smallest for cpu 1024", s.Resources.Memory)
	case s.Route.PathPrefix != "/":
		t.Errorf("pathPrefix %q", s.Route.PathPrefix)
	case s.Databricks.OAuth.Integration != IntegrationManaged:
		t.Errorf("integration %q", s.Databricks.OAuth.Integration)
	case strings.Join(s.Databricks.OAuth.Scopes, " ") != "openid email profile offline_access all-apis":
		t.Errorf("scopes %v", s.Databricks.OAuth.Scopes)
	case s.Session.TTL.Duration != 8*time.Hour:
		t.Errorf("ttl %v", s.Session.TTL)
	case s.DeletionPolicy != DeletionDelete:
		t.Errorf("deletionPolicy %q", s.DeletionPolicy)
	}
}

func TestConditionTransitionTimeChangesOnlyOnFlip(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var s ServingAppStatus
	s.SetCondition(Condition{Type: ConditionReady, Status: ConditionFalse, Reason: "Progressing", LastTransitionTime: t0})
	if changed := s.SetCondition(Condition{Type: ConditionReady, Status: ConditionFalse, Reason: "Waiting", LastTransitionTime: t0.Add(time.Minute)}); !changed {
		t.Fatal("reason change not reported")
	}
	if got := s.FindCondition(ConditionReady).LastTransitionTime; !got.Equal(t0) {
		t.Fatalf("transition time moved without a flip: %v", got)
	}
	s.SetCondition(Condition{Type: ConditionReady, Status: ConditionTrue, Reason: "Ready", LastTransitionTime: t0.Add(2 * time.Minute)})
	if got := s.FindCondition(ConditionReady).LastTransitionTime; !got.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("transition time not moved on flip: %v", got)
	}
	if s.SetCondition(*s.FindCondition(ConditionReady)) {
		t.Fatal("identical condition reported as a change")
	}
}

func TestDurationRoundTrip(t *testing.T) {
	for in, want := range map[string]string{`"8h"`: `"8h"`, `"90m"`: `"1h30m"`, `"7d"`: `"168h"`, `"30s"`: `"30s"`, `"1h0m5s"`: `"1h0m5s"`} {
		var d Duration
		if err := d.UnmarshalJSON([]byte(in)); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if b, _ := d.MarshalJSON(); string(b) != want {
			t.Errorf("%s → %s, want %s", in, b, want)
		}
	}
}

func nCIDRs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
	}
	return out
}
