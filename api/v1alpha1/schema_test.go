package v1alpha1

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite manifests/servingapp.schema.json from the Go types")

const schemaFile = "../../manifests/servingapp.schema.json"

func TestSchemaFileIsInSyncWithTypes(t *testing.T) {
	want, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(schemaFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date: run go test ./api/v1alpha1 -run TestSchemaFileIsInSyncWithTypes -update", schemaFile)
	}
}

// TestExamplesAreValid checks every example against both the Go validation
// and the published JSON Schema, so editors and the server agree.
func TestExamplesAreValid(t *testing.T) {
	raw, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../../manifests/examples/*.yaml")
	if len(files) < 3 {
		t.Fatalf("want at least 3 examples, found %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			apps, err := Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range apps {
				b, _ := json.Marshal(a)
				var v map[string]any
				_ = json.Unmarshal(b, &v)
				delete(v, "status")
				if err := sch.Validate(v); err != nil {
					t.Errorf("schema: %v", err)
				}
				SetDefaults(a)
				if errs := Validate(a); errs != nil {
					t.Errorf("validate: %v", errs)
				}
			}
		})
	}
}

func TestSchemaRejectsUnknownField(t *testing.T) {
	raw, _ := JSONSchema()
	doc, _ := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	c := jsonschema.NewCompiler()
	_ = c.AddResource(SchemaID, doc)
	sch, err := c.Compile(SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]any{"apiVersion": APIVersion, "kind": Kind, "metadata": map[string]any{"name": "a"},
		"spec": map[string]any{"allowlist": []any{"10.0.0.0/8"}, "databricks": map[string]any{"host": "https://x", "servingEndpoint": "e"}, "replicaz": 1}}
	if err := sch.Validate(bad); err == nil {
		t.Fatal("schema accepted an unknown field")
	}
}
