// Package audit defines the events servingapp publishes on NATS JetStream:
// the CloudEvents 1.0 envelope, the audit events of the web apps (logins,
// invocations) and the controller's reconcile events, their subjects, and the
// stream configurations. Publishers, the controller and servingctl use it.
package audit

import (
	"encoding/json"
	"time"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// CloudEvent is a CloudEvents 1.0 envelope in structured JSON mode.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	DataSchema      string          `json:"dataschema,omitempty"`
	Data            json.RawMessage `json:"data"`
}
