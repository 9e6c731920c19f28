package audit

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The JSON Schemas of the audit events, one per event type plus
// schemas/common.json, which they share. docs/audit-events.md explains them.
//
//go:embed schemas/*.json
var schemaFiles embed.FS

// SchemaBaseURL is where the schemas' $id values live; the schema of type t
// is SchemaBaseURL + string(t) + ".json". The "v1" changes only with an
// incompatible change of the events (docs/audit-events.md, "Evolution").
const SchemaBaseURL = "https://servingapp.io/schemas/audit/v1/"

// SchemaID returns the $id of the JSON Schema of t.
func SchemaID(t EventType) string { return SchemaBaseURL + string(t) + ".json" }

// SchemaFS returns the schema files: common.json and <type>.json for every
// type in EventTypes.
func SchemaFS() fs.FS {
	sub, err := fs.Sub(schemaFiles, "schemas")
	if err != nil {
		panic(fmt.Sprintf("audit schemas: %v", err)) // the directory is embedded at build time
	}
	return sub
}

// Schema returns the JSON Schema document of t. It describes the whole
// CloudEvent; its "$defs/ocsf" describes the data alone, which is what
// servingctl audit export writes.
func Schema(t EventType) ([]byte, error) {
	if !t.Valid() {
		return nil, fmt.Errorf("audit schema: unknown event type %q", t)
	}
	b, err := fs.ReadFile(SchemaFS(), string(t)+".json")
	if err != nil {
		return nil, fmt.Errorf("audit schema of %s: %w", t, err)
	}
	return b, nil
}

// SchemaValidator checks audit events against the JSON Schemas. It is safe
// for concurrent use.
type SchemaValidator struct {
	envelope map[EventType]*jsonschema.Schema
	ocsf     map[EventType]*jsonschema.Schema
}

// NewSchemaValidator compiles the schemas of every event type, with format
// assertions on (date-time, uri, ipv4, ipv6).
func NewSchemaValidator() (*SchemaValidator, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	files, err := fs.ReadDir(SchemaFS(), ".")
	if err != nil {
		return nil, fmt.Errorf("read audit schemas: %w", err)
	}
	for _, f := range files {
		raw, err := fs.ReadFile(SchemaFS(), f.Name())
		if err != nil {
			return nil, fmt.Errorf("read audit schema %s: %w", f.Name(), err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("parse audit schema %s: %w", f.Name(), err)
		}
		if err := c.AddResource(SchemaBaseURL+f.Name(), doc); err != nil {
			return nil, fmt.Errorf("load audit schema %s: %w", f.Name(), err)
		}
	}
	v := &SchemaValidator{envelope: map[EventType]*jsonschema.Schema{}, ocsf: map[EventType]*jsonschema.Schema{}}
	for _, t := range EventTypes {
		if v.envelope[t], err = c.Compile(SchemaID(t)); err != nil {
			return nil, fmt.Errorf("compile audit schema of %s: %w", t, err)
		}
		if v.ocsf[t], err = c.Compile(SchemaID(t) + "#/$defs/ocsf"); err != nil {
			return nil, fmt.Errorf("compile OCSF schema of %s: %w", t, err)
		}
	}
	return v, nil
}

// ValidateCloudEvent checks one message of the audit stream: a CloudEvent
// whose type names the schema to use.
func (v *SchemaValidator) ValidateCloudEvent(msg []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("validate audit event: %w", err)
	}
	obj, _ := doc.(map[string]any)
	typ, _ := obj["type"].(string)
	short, ok := strings.CutPrefix(typ, AuditEventTypePrefix)
	t := EventType(short)
	if !ok || !t.Valid() {
		return fmt.Errorf("validate audit event: type %q: %w", typ, ErrNotAuditEvent)
	}
	if err := v.envelope[t].Validate(doc); err != nil {
		return fmt.Errorf("validate audit event %v of type %s: %w", obj["id"], t, err)
	}
	return nil
}

// ValidateOCSF checks the OCSF event of an audit event of type t: the data
// of its CloudEvent, or one line of servingctl audit export.
func (v *SchemaValidator) ValidateOCSF(t EventType, event []byte) error {
	s, ok := v.ocsf[t]
	if !ok {
		return fmt.Errorf("validate OCSF event: unknown event type %q", t)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(event))
	if err != nil {
		return fmt.Errorf("validate OCSF event of type %s: %w", t, err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("validate OCSF event of type %s: %w", t, err)
	}
	return nil
}
