package v1alpha1

import (
	"errors"
	"strings"
	"testing"
)

const goodDoc = `apiVersion: servingapp.io/v1alpha1
kind: ServingApp
metadata:
  name: summarizer
  namespace: analytics
spec:
  allowlist: [203.0.113.0/24]
  databricks:
    host: https://dbc-1234abcd.cloud.databricks.com
    servingEndpoint: databricks-claude-sonnet-4
`

func TestDecodeMultiDocumentYAMLAndJSON(t *testing.T) {
	cases := []struct {
		name  string
		input string
		names []string
	}{
		{"one yaml", goodDoc, []string{"summarizer"}},
		{"three yaml with empty and comment-only documents", "---\n# intro\n---\n" + goodDoc + "---\n" + strings.Replace(goodDoc, "summarizer", "b", 1) + "...\n---\n# end\n", []string{"summarizer", "b"}},
		{"json object", `{"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","metadata":{"name":"j"},"spec":{"allowlist":["10.0.0.0/8"],"databricks":{"host":"https://x.cloud.databricks.com","servingEndpoint":"e"}}}`, []string{"j"}},
		{"json stream", `{"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","metadata":{"name":"a"},"spec":{}}
{"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","metadata":{"name":"b"},"spec":{}}`, []string{"a", "b"}},
		{"json array", `[{"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","metadata":{"name":"a"},"spec":{}}]`, []string{"a"}},
		{"empty input", "", nil},
		{"yaml flow style starting with a brace", `{apiVersion: servingapp.io/v1alpha1, kind: ServingApp, metadata: {name: f}, spec: {}}`, []string{"f"}},
		{"content on the separator line", "--- {apiVersion: servingapp.io/v1alpha1, kind: ServingApp, metadata: {name: s}, spec: {}}\n---\n" + goodDoc, []string{"s", "summarizer"}},
		{"separator line with a comment", "--- # first\n" + goodDoc, []string{"summarizer"}},
		{"yaml flow style starting with a brace, then an end marker and more documents", "{apiVersion: servingapp.io/v1alpha1, kind: ServingApp, metadata: {name: f}, spec: {}}\n...\n---\n" + goodDoc + "...\n", []string{"f", "summarizer"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			apps, err := Decode([]byte(tc.input))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			var names []string
			for _, a := range apps {
				names = append(names, a.Metadata.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.names, ",") {
				t.Fatalf("names %v, want %v", names, tc.names)
			}
		})
	}
}

func TestDecodeRejectsWithDocumentAndPath(t *testing.T) {
	cases := []struct {
		name  string
		input string
		want  []string
	}{
		{"unknown field", strings.Replace(goodDoc, "  allowlist:", "  replicaz: 2\n  allowlist:", 1),
			[]string{`document 1: spec.replicaz: unknown field (did you mean "replicas"?)`}},
		{"unknown nested field", strings.Replace(goodDoc, "    servingEndpoint:", "    servingEndpont:", 1),
			[]string{`document 1: spec.databricks.servingEndpont: unknown field (did you mean "servingEndpoint"?)`}},
		{"wrong case is unknown", strings.Replace(goodDoc, "  allowlist:", "  Replicas: 2\n  allowlist:", 1),
			[]string{`document 1: spec.Replicas: unknown field (did you mean "replicas"? field names are case-sensitive)`}},
		{"wrong apiVersion", strings.Replace(goodDoc, "servingapp.io/v1alpha1", "servingapp.io/v1", 1),
			[]string{`document 1: apiVersion: must be "servingapp.io/v1alpha1", got string "servingapp.io/v1"`}},
		{"broken JSON", `{"apiVersion": "servingapp.io/v1alpha1", "kind": `,
			[]string{`document 1: invalid JSON: unexpected EOF`}},
		{"wrong kind", strings.Replace(goodDoc, "kind: ServingApp", "kind: Deployment", 1),
			[]string{`document 1: kind: must be "ServingApp", got string "Deployment"`}},
		{"missing kind", strings.Replace(goodDoc, "kind: ServingApp\n", "", 1),
			[]string{`document 1: kind: must be "ServingApp", got nothing`}},
		{"duplicate key in second document", goodDoc + "---\n" + strings.Replace(goodDoc, "  namespace: analytics", "  namespace: analytics\n  namespace: other", 1),
			[]string{`document 2: metadata.namespace: duplicate key "namespace" at line 17 (first at line 16)`}},
		{"duplicate key in a nested map", strings.Replace(goodDoc, "  allowlist:", "  route:\n    host: a.example.com\n    host: b.example.com\n  allowlist:", 1),
			[]string{`document 1: spec.route.host: duplicate key "host" at line 9 (first at line 8)`}},
		{"duplicate key in a flow map", strings.Replace(goodDoc, "  allowlist:", "  env: {A: x, B: y, A: z}\n  allowlist:", 1),
			[]string{`document 1: spec.env.A: duplicate key "A" at line 7`}},
		{"duplicate key in a map in a list", goodDoc + "status:\n  conditions:\n  - type: Synced\n    status: \"True\"\n  - type: Ready\n    status: \"True\"\n    type: Available\n",
			[]string{`document 1: status.conditions[1].type: duplicate key "type" at line 17 (first at line 15)`}},
		{"duplicate label key that needs quoting", strings.Replace(goodDoc, "  namespace: analytics", "  namespace: analytics\n  labels:\n    \"a b\": x\n    'a b': y", 1),
			[]string{`document 1: metadata.labels["a b"]: duplicate key "a b"`}},
		{"quoted and plain spellings of one key", strings.Replace(goodDoc, "  namespace: analytics", "  namespace: analytics\n  \"namespace\": other", 1),
			[]string{`document 1: metadata.namespace: duplicate key "namespace"`}},
		{"every duplicate key reported", strings.Replace(strings.Replace(goodDoc, "  name: summarizer", "  name: summarizer\n  name: again", 1), "    servingEndpoint:", "    host: https://y.cloud.databricks.com\n    servingEndpoint:", 1),
			[]string{`document 1: metadata.name: duplicate key "name" at line 5`, `document 1: spec.databricks.host: duplicate key "host" at line 11`}},
		{"duplicate key after a separator with a comment", "--- # first\n" + strings.Replace(goodDoc, "  namespace: analytics", "  namespace: analytics\n  namespace: other", 1),
			[]string{`document 1: metadata.namespace: duplicate key "namespace" at line 7 (first at line 6)`}},
		{"yaml 1.1 spellings of one key fall back to the line", strings.Replace(goodDoc, "  allowlist:", "  env:\n    yes: a\n    true: b\n  allowlist:", 1),
			[]string{`document 1:`, `already set`, "line 9"}},
		{"type mismatch", strings.Replace(goodDoc, "  allowlist:", "  replicas: \"2\"\n  allowlist:", 1),
			[]string{`document 1: spec.replicas: expected an integer, got string "2"`}},
		{"unquoted yes in env", strings.Replace(goodDoc, "  allowlist:", "  env: {DEBUG: yes}\n  allowlist:", 1),
			[]string{`document 1: spec.env.DEBUG: expected a string, got boolean true (quote it)`}},
		{"list where object", strings.Replace(goodDoc, "  allowlist:", "  route: [a]\n  allowlist:", 1),
			[]string{`document 1: spec.route: expected an object, got an array`}},
		{"bad duration", strings.Replace(goodDoc, "  allowlist:", "  session: {ttl: 8 hours}\n  allowlist:", 1),
			[]string{`document 1: spec.session.ttl: "8 hours" is not a duration`}},
		{"integer overflow", strings.Replace(goodDoc, "  allowlist:", "  replicas: 9999999999\n  allowlist:", 1),
			[]string{`document 1: spec.replicas: expected an integer that fits 32 bits`}},
		{"not an object", "- a\n- b\n", []string{"document 1: expected an object, got an array"}},
		{"yaml syntax", goodDoc + "---\nmetadata: {name: [\n", []string{"document 2:"}},
		{"json duplicate key", `{"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","kind":"ServingApp","metadata":{"name":"a"},"spec":{}}`,
			[]string{`document 1: kind: duplicate key "kind"`}},
		{"json nested duplicate key", `{"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","metadata":{"name":"a"},"spec":{"route":{"host":"a.example.com","pathPrefix":"/","host":"b.example.com"}}}`,
			[]string{`document 1: spec.route.host: duplicate key "host"`}},
		{"json duplicate key in an array's second object", `[{"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","metadata":{"name":"a"},"spec":{}},
 {"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","metadata":{"name":"b","namespace":"x","namespace":"y"},"spec":{}}]`,
			[]string{`document 2: metadata.namespace: duplicate key "namespace"`}},
		{"json unknown field", `{"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","metadata":{"name":"a","nmae":"b"},"spec":{}}`,
			[]string{`document 1: metadata.nmae: unknown field (did you mean "name"?)`}},
		{"every document reported", strings.Replace(goodDoc, "  allowlist:", "  foo: 1\n  allowlist:", 1) + "---\n" + strings.Replace(goodDoc, "  allowlist:", "  bar: 1\n  allowlist:", 1),
			[]string{"document 1: spec.foo: unknown field", "document 2: spec.bar: unknown field"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.input))
			var derrs DecodeErrors
			if !errors.As(err, &derrs) {
				t.Fatalf("want DecodeErrors, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadDefaultsAndValidatesEveryDocument(t *testing.T) {
	bad := strings.Replace(goodDoc, "203.0.113.0/24", "10.0.0.5/8", 1)
	_, err := Load([]byte(goodDoc + "---\n" + bad))
	if err == nil || !strings.Contains(err.Error(), `document 2: spec.allowlist[0]: "10.0.0.5/8" has host bits set: write "10.0.0.0/8"`) {
		t.Fatalf("Load: %v", err)
	}
	apps, err := Load([]byte(goodDoc))
	if err != nil {
		t.Fatal(err)
	}
	if got := apps[0].Spec.DeletionPolicy; got != DeletionDelete {
		t.Fatalf("not defaulted: deletionPolicy %q", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(goodDoc))
	f.Add([]byte(goodDoc + "---\n" + goodDoc))
	f.Add([]byte(`{"apiVersion":"servingapp.io/v1alpha1","kind":"ServingApp","metadata":{"name":"a"},"spec":{"replicas":1e99}}`))
	f.Add([]byte("[1, {\"a\": null}]"))
	f.Add([]byte("spec: {session: {ttl: 3d}, env: {A: [1]}, replicas: -0}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("base: &b {x: 1}\nm: {<<: *b, x: 2, ? [k]: v}\nl: [{a: 1, a: 2}]\n"))
	f.Add([]byte(`{"metadata":{"labels":{"a":"1","a":"2"}},"spec":[{"x":1,"x":2}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		apps, err := Load(data)
		if err == nil {
			for _, a := range apps {
				if errs := Validate(a); errs != nil {
					t.Fatalf("Load accepted an invalid object: %v", errs)
				}
			}
		}
	})
}
