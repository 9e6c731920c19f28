package audit_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
)

var updateExamples = flag.Bool("update-examples", false, "rewrite api/audit/schemas/examples/*.json")

const examplesDir = "schemas/examples"

// schemaExamples are the documented example events, one per type: what a
// web app publishes, with every attribute it fills in.
func schemaExamples() map[audit.EventType][]byte {
	app := audit.AppRef{Namespace: "analytics", Name: "summarizer"}
	at := time.Date(2026, 12, 3, 11, 58, 12, 345_000_000, time.UTC)
	alice := &audit.User{UID: "8d3b5a61-2f0c-4c1e-9a57-0b5f2c9d7e41", EmailAddr: "alice@example.com", Name: "Alice Example"}
	session := &audit.Session{UID: "6f1c0e5a9b2d4c7e8f3a1b6d5e9c2a47", ExpirationTime: at.Add(8 * time.Hour).UnixMilli()}
	src := &audit.NetEndpoint{IP: "203.0.113.7"}
	ua := "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
	out := map[audit.EventType][]byte{}
	add := func(id string, t audit.EventType, fill func(*audit.AuditEvent)) {
		ev := audit.NewAuditEvent(t, app, at)
		fill(&ev)
		b, err := audit.EncodeAuditEvent(id, t, ev)
		if err != nil {
			panic(err)
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, b, "", "  "); err != nil {
			panic(err)
		}
		buf.WriteByte('\n')
		out[t] = buf.Bytes()
	}
	add("3f2a9c1e7b6d4e58a0c1d2e3f4a5b6c7", audit.LoginSucceeded, func(ev *audit.AuditEvent) {
		ev.Message = "alice@example.com signed in"
		ev.Duration = 212
		ev.User = alice
		s := *session
		s.IsNew = true
		ev.Session = &s
		ev.SrcEndpoint = src
		ev.DstEndpoint = &audit.NetEndpoint{Hostname: "dbc-1234abcd.cloud.databricks.com", SvcName: "oidc"}
		ev.HTTPRequest = &audit.HTTPRequest{HTTPMethod: "GET", URL: &audit.URL{Path: "/oauth/callback"}, UserAgent: ua, UID: "req-01JEV8Q3M2"}
		ev.HTTPResponse = &audit.HTTPResponse{Code: 302}
		ev.Metadata.CorrelationUID = "req-01JEV8Q3M2"
	})
	add("9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e", audit.LoginFailed, func(ev *audit.AuditEvent) {
		ev.StatusDetail = audit.ReasonPolicyDenied
		ev.Message = "the email domain example.org is not allowed to sign in to this app"
		ev.User = &audit.User{UID: "c41e0d7a-5b9f-4f2e-8a13-6d0b7e2f9c55", EmailAddr: "mallory@example.org"}
		ev.SrcEndpoint = &audit.NetEndpoint{IP: "198.51.100.23"}
		ev.HTTPRequest = &audit.HTTPRequest{HTTPMethod: "GET", URL: &audit.URL{Path: "/oauth/callback"}, UserAgent: ua, UID: "req-01JEV8R7TX"}
		ev.HTTPResponse = &audit.HTTPResponse{Code: 403}
		ev.Metadata.CorrelationUID = "req-01JEV8R7TX"
	})
	add("0a1b2c3d4e5f60718293a4b5c6d7e8f9", audit.Logout, func(ev *audit.AuditEvent) {
		ev.Message = "alice@example.com signed out"
		ev.User = alice
		ev.Session = session
		ev.SrcEndpoint = src
		ev.HTTPRequest = &audit.HTTPRequest{HTTPMethod: "POST", URL: &audit.URL{Path: "/logout"}, UserAgent: ua, UID: "req-01JEV9A0BC"}
		ev.HTTPResponse = &audit.HTTPResponse{Code: 303}
		ev.Metadata.CorrelationUID = "req-01JEV9A0BC"
	})
	add("5e4d3c2b1a09f8e7d6c5b4a392817060", audit.SessionExpired, func(ev *audit.AuditEvent) {
		ev.StatusDetail = audit.ExpiryIdle
		ev.Message = "the session was idle for longer than 1h"
		ev.User = alice
		ev.Session = session
	})
	add("7c6b5a4938271605f4e3d2c1b0a99887", audit.SessionRefreshed, func(ev *audit.AuditEvent) {
		ev.Duration = 143
		ev.User = alice
		ev.Session = session
		ev.SrcEndpoint = src
		ev.DstEndpoint = &audit.NetEndpoint{Hostname: "dbc-1234abcd.cloud.databricks.com", SvcName: "oidc"}
		ev.Metadata.CorrelationUID = "req-01JEVA1DEF"
	})
	add("d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9", audit.InvocationCompleted, func(ev *audit.AuditEvent) {
		ev.Duration = 1840
		ev.Actor = &audit.Actor{User: alice, Session: &audit.Session{UID: session.UID}}
		ev.API = &audit.API{Operation: "invocations", Service: audit.Service{Name: "databricks-claude-sonnet-4"},
			Request: &audit.APIRequest{UID: "req-01JEVB2GHJ"}, Response: &audit.APIResponse{Code: 200}}
		ev.SrcEndpoint = src
		ev.DstEndpoint = &audit.NetEndpoint{Hostname: "dbc-1234abcd.cloud.databricks.com", SvcName: "serving-endpoints"}
		ev.HTTPRequest = &audit.HTTPRequest{HTTPMethod: "POST", URL: &audit.URL{Path: "/api/summarize"}, UserAgent: ua, Length: 5120, UID: "req-01JEVB2GHJ"}
		ev.HTTPResponse = &audit.HTTPResponse{Code: 200, Length: 1733}
		ev.Metadata.CorrelationUID = "req-01JEVB2GHJ"
		ev.Unmapped.PromptSHA256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
		ev.Unmapped.Usage = &audit.TokenUsage{PromptTokens: 1210, CompletionTokens: 312, TotalTokens: 1522}
		ev.Unmapped.ServedModel = "claude-sonnet-4"
		ev.Unmapped.Form = "summarizer"
	})
	add("e5f4d3c2b1a0918273645546372819a0", audit.InvocationFailed, func(ev *audit.AuditEvent) {
		ev.StatusCode = "REQUEST_LIMIT_EXCEEDED"
		ev.Message = "the serving endpoint refused the call: rate limit exceeded"
		ev.Duration = 95
		ev.Actor = &audit.Actor{User: alice, Session: &audit.Session{UID: session.UID}}
		ev.API = &audit.API{Operation: "invocations", Service: audit.Service{Name: "databricks-claude-sonnet-4"},
			Request:  &audit.APIRequest{UID: "req-01JEVC3KLM"},
			Response: &audit.APIResponse{Code: 429, Error: "REQUEST_LIMIT_EXCEEDED", ErrorMessage: "Exceeded the workspace rate limit for this endpoint."}}
		ev.SrcEndpoint = src
		ev.DstEndpoint = &audit.NetEndpoint{Hostname: "dbc-1234abcd.cloud.databricks.com", SvcName: "serving-endpoints"}
		ev.HTTPRequest = &audit.HTTPRequest{HTTPMethod: "POST", URL: &audit.URL{Path: "/api/invoke"}, UserAgent: "curl/8.11.0", Length: 388, UID: "req-01JEVC3KLM"}
		ev.HTTPResponse = &audit.HTTPResponse{Code: 429, Length: 121}
		ev.Metadata.CorrelationUID = "req-01JEVC3KLM"
		ev.Unmapped.PromptSHA256 = "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"
		ev.Unmapped.Stream = true
		ev.Unmapped.Form = "api"
	})
	return out
}

func newSchemaValidator(t *testing.T) *audit.SchemaValidator {
	t.Helper()
	v, err := audit.NewSchemaValidator()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestEveryEventTypeHasASchemaNamedForIt(t *testing.T) {
	files, err := fs.Glob(audit.SchemaFS(), "*.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"common.json"}
	for _, typ := range audit.EventTypes {
		want = append(want, string(typ)+".json")
		raw, err := audit.Schema(typ)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			ID         string `json:"$id"`
			Properties struct {
				Type struct {
					Const string `json:"const"`
				} `json:"type"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if doc.ID != audit.SchemaID(typ) || doc.Properties.Type.Const != typ.CloudEventType() {
			t.Errorf("%s: $id %q, type %q", typ, doc.ID, doc.Properties.Type.Const)
		}
	}
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Fatalf("schema files %v, want %v", files, want)
	}
	if _, err := audit.Schema("bogus"); err == nil {
		t.Fatal("schema of an unknown type")
	}
}

// TestSchemaExamplesValidateAndMatchTheGoTypes checks every example against
// its schema, and that it is exactly what EncodeAuditEvent produces, so the
// examples in the docs are real. -update-examples rewrites them.
func TestSchemaExamplesValidateAndMatchTheGoTypes(t *testing.T) {
	v := newSchemaValidator(t)
	examples := schemaExamples()
	if len(examples) != len(audit.EventTypes) {
		t.Fatalf("%d examples for %d types", len(examples), len(audit.EventTypes))
	}
	for typ, want := range examples {
		path := filepath.Join(examplesDir, string(typ)+".json")
		if *updateExamples {
			if err := os.MkdirAll(examplesDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./api/audit -run Examples -update-examples)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what EncodeAuditEvent produces; run with -update-examples", path)
		}
		if err := v.ValidateCloudEvent(got); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		_, decodedType, ev, err := audit.DecodeAuditEvent(got)
		if err != nil || decodedType != typ {
			t.Fatalf("%s: decoded as %s: %v", path, decodedType, err)
		}
		data, _ := json.Marshal(ev)
		if err := v.ValidateOCSF(typ, data); err != nil {
			t.Errorf("%s data: %v", path, err)
		}
	}
}

func TestSchemasRejectEventsThatBreakTheContract(t *testing.T) {
	v := newSchemaValidator(t)
	examples := schemaExamples()
	tests := []struct {
		name   string
		typ    audit.EventType
		mutate func(ce, data map[string]any)
	}{
		{"login.failed without a source address", audit.LoginFailed, func(_, d map[string]any) { delete(d, "src_endpoint") }},
		{"login.failed with an unknown reason", audit.LoginFailed, func(_, d map[string]any) { d["status_detail"] = "bad_luck" }},
		{"login.failed marked as success", audit.LoginFailed, func(_, d map[string]any) { d["status_id"] = 1 }},
		{"login.succeeded without a user", audit.LoginSucceeded, func(_, d map[string]any) { delete(d, "user") }},
		{"a login carrying an api object", audit.LoginSucceeded, func(_, d map[string]any) {
			d["api"] = map[string]any{"operation": "invocations", "service": map[string]any{"name": "x"}}
		}},
		{"an invocation in the Authentication class", audit.InvocationCompleted, func(_, d map[string]any) { d["class_uid"] = 3002 }},
		{"invocation.failed without a status code", audit.InvocationFailed, func(_, d map[string]any) { delete(d, "status_code") }},
		{"an attribute the schema does not know", audit.InvocationCompleted, func(_, d map[string]any) { d["prompt"] = "the user's text" }},
		{"a nested attribute the schema does not know", audit.InvocationCompleted, func(_, d map[string]any) {
			d["actor"].(map[string]any)["user"].(map[string]any)["token"] = "secret"
		}},
		{"a source address that is not an IP", audit.Logout, func(_, d map[string]any) {
			d["src_endpoint"] = map[string]any{"ip": "not-an-ip"}
		}},
		{"a time that is not RFC 3339", audit.Logout, func(ce, _ map[string]any) { ce["time"] = "yesterday" }},
		{"the wrong CloudEvents type", audit.Logout, func(ce, _ map[string]any) { ce["type"] = "io.servingapp.audit.login.succeeded" }},
		{"a subject that is not namespace/name", audit.Logout, func(ce, _ map[string]any) { ce["subject"] = "summarizer" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ce map[string]any
			if err := json.Unmarshal(examples[tt.typ], &ce); err != nil {
				t.Fatal(err)
			}
			data := ce["data"].(map[string]any)
			tt.mutate(ce, data)
			b, _ := json.Marshal(ce)
			if err := v.ValidateCloudEvent(b); err == nil {
				t.Fatalf("accepted:\n%s", b)
			}
		})
	}
}

// TestSchemaDescribesEveryFieldOfTheGoTypes compares the attributes of
// AuditEvent (by their JSON names, recursively) with the properties of the
// schema's event definition, so neither can gain a field the other lacks.
func TestSchemaDescribesEveryFieldOfTheGoTypes(t *testing.T) {
	raw, err := fs.ReadFile(audit.SchemaFS(), "common.json")
	if err != nil {
		t.Fatal(err)
	}
	var common struct {
		Defs map[string]any `json:"$defs"`
	}
	if err := json.Unmarshal(raw, &common); err != nil {
		t.Fatal(err)
	}
	var fromSchema []string
	var walkSchema func(prefix string, node map[string]any)
	walkSchema = func(prefix string, node map[string]any) {
		if ref, ok := node["$ref"].(string); ok {
			walkSchema(prefix, common.Defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any))
			return
		}
		props, _ := node["properties"].(map[string]any)
		for name, p := range props {
			fromSchema = append(fromSchema, prefix+name)
			walkSchema(prefix+name+".", p.(map[string]any))
		}
	}
	walkSchema("", common.Defs["event"].(map[string]any))

	var fromGo []string
	var walkType func(prefix string, typ reflect.Type)
	walkType = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				t.Fatalf("%s%s has no JSON name", prefix, f.Name)
			}
			fromGo = append(fromGo, prefix+name)
			walkType(prefix+name+".", f.Type)
		}
	}
	walkType("", reflect.TypeFor[audit.AuditEvent]())

	slices.Sort(fromSchema)
	slices.Sort(fromGo)
	for _, p := range fromGo {
		if !slices.Contains(fromSchema, p) {
			t.Errorf("AuditEvent has %s; schemas/common.json does not describe it", p)
		}
	}
	for _, p := range fromSchema {
		if !slices.Contains(fromGo, p) {
			t.Errorf("schemas/common.json describes %s; AuditEvent has no such field", p)
		}
	}
}

// TestDocsShowEveryExample keeps docs/audit-events.md honest: it shows each
// example file verbatim and links each schema.
func TestDocsShowEveryExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/audit-events.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range audit.EventTypes {
		ex, err := os.ReadFile(filepath.Join(examplesDir, string(typ)+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(doc, ex) {
			t.Errorf("docs/audit-events.md does not show %s/%s.json verbatim", examplesDir, typ)
		}
		if !bytes.Contains(doc, []byte("api/audit/schemas/"+string(typ)+".json")) {
			t.Errorf("docs/audit-events.md does not link the schema of %s", typ)
		}
	}
}
