package v1alpha1

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
)

// SchemaID is the $id of the generated JSON Schema.
const SchemaID = "https://servingapp.io/schemas/v1alpha1/servingapp.schema.json"

// fieldDocs describe fields in the generated schema, for editor completion and
// hover text. Keys are JSON paths with "*" for map values and "[]" for items.
var fieldDocs = map[string]string{
	"apiVersion":                            "Always " + APIVersion + ".",
	"kind":                                  "Always " + Kind + ".",
	"metadata.name":                         "DNS label, unique within the namespace.",
	"metadata.namespace":                    "DNS label; \"default\" when omitted.",
	"spec.image":                            "Web app container image; empty means the controller's default.",
	"spec.replicas":                         "Desired task count (0–100); ignored while autoscaling is set.",
	"spec.autoscaling":                      "Let the controller set the task count from the invocation rate.",
	"spec.resources":                        "Fargate task size; only valid Fargate cpu/memory pairs are accepted.",
	"spec.resources.cpu":                    "CPU units: 256, 512, 1024, 2048, 4096, 8192 or 16384.",
	"spec.resources.memory":                 "Memory in MiB, valid for the chosen cpu.",
	"spec.route.host":                       "Request host; empty means the controller derives one from its app domain.",
	"spec.route.pathPrefix":                 "\"/\" or a path such as \"/summarizer\", without trailing slash or wildcards.",
	"spec.allowlist":                        "Source CIDRs allowed to reach the app (canonical form). Write 0.0.0.0/0 to open the app.",
	"spec.databricks.host":                  "Workspace URL, https://<workspace>, without a path.",
	"spec.databricks.servingEndpoint":       "Model Serving endpoint users call with their own token.",
	"spec.databricks.oauth.integration":     "managed: one integration per app; existing: add our redirect URL to integrationId.",
	"spec.databricks.oauth.scopes":          "Scopes asked at login; must include openid.",
	"spec.identity.allowedEmailDomains":     "Admit only users whose verified email is in one of these domains.",
	"spec.session.ttl":                      "Absolute session lifetime, 5m to 7d.",
	"spec.env":                              "Plain environment variables; SERVINGAPP_* and PORT are reserved.",
	"spec.secrets":                          "Environment variables read from Secrets Manager: NAME: secret name or ARN.",
	"spec.deletionPolicy":                   "Delete removes AWS and Databricks resources with the app; Retain leaves them.",
	"spec.databricks.oauth.clientSecretRef": "existing only: Secrets Manager name or ARN of the client secret.",
}

// fieldEnums and fieldRequired add what reflection cannot see.
var (
	fieldEnums = map[string][]any{
		"apiVersion":                        {APIVersion},
		"kind":                              {Kind},
		"spec.databricks.oauth.integration": {string(IntegrationManaged), string(IntegrationExisting)},
		"spec.deletionPolicy":               {string(DeletionDelete), string(DeletionRetain)},
		"spec.resources.cpu":                {256, 512, 1024, 2048, 4096, 8192, 16384},
	}
	fieldRequired = map[string][]string{
		"":                      {"apiVersion", "kind", "metadata", "spec"},
		"metadata":              {"name"},
		"spec":                  {"allowlist", "databricks"},
		"spec.databricks":       {"host", "servingEndpoint"},
		"spec.autoscaling":      {"minReplicas", "maxReplicas", "targetInvocationsPerReplicaPerMinute"},
		"spec.identity.lockout": {"failures", "window", "duration"},
	}
	fieldPatterns = map[string]string{
		"metadata.name":      dnsLabelRE.String(),
		"metadata.namespace": dnsLabelRE.String(),
		"spec.env":           envNameRE.String(),
		"spec.secrets":       envNameRE.String(),
	}
)

// JSONSchema returns the JSON Schema (draft 2020-12) of a ServingApp document,
// generated from the Go types so the two cannot drift. Status is left out: it
// is written by the controller, not by people.
func JSONSchema() ([]byte, error) {
	root := schemaFor("", reflect.TypeFor[ServingApp]())
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = SchemaID
	root["title"] = "ServingApp"
	root["description"] = "A web app on ECS Fargate behind the shared ALB, logging users in with Databricks OAuth."
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func schemaFor(p string, t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := map[string]any{}
	if d, ok := fieldDocs[p]; ok {
		s["description"] = d
	}
	if e, ok := fieldEnums[p]; ok {
		s["enum"] = e
	}
	switch {
	case t == durationType:
		s["type"] = "string"
		s["pattern"] = `^([0-9]+d|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`
		return s
	case t == timeType:
		s["type"] = "string"
		s["format"] = "date-time"
		return s
	}
	switch t.Kind() {
	case reflect.Struct:
		s["type"] = "object"
		s["additionalProperties"] = false
		props := map[string]any{}
		for name, f := range jsonFields(t) {
			if p == "" && name == "status" {
				continue
			}
			props[name] = schemaFor(joinPath(p, name), f.Type)
		}
		s["properties"] = props
		if req, ok := fieldRequired[p]; ok {
			s["required"] = slices.Sorted(slices.Values(req))
		}
	case reflect.Map:
		s["type"] = "object"
		s["additionalProperties"] = schemaFor(p+".*", t.Elem())
		if pat, ok := fieldPatterns[p]; ok {
			s["propertyNames"] = map[string]any{"pattern": pat}
		}
	case reflect.Slice:
		s["type"] = "array"
		s["items"] = schemaFor(p+"[]", t.Elem())
	case reflect.String:
		s["type"] = "string"
		if pat, ok := fieldPatterns[p]; ok {
			s["pattern"] = pat
		}
	case reflect.Bool:
		s["type"] = "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s["type"] = "integer"
	}
	return s
}

func joinPath(p, name string) string {
	if p == "" {
		return name
	}
	return strings.Join([]string{p, name}, ".")
}
