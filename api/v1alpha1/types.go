// Package v1alpha1 defines the ServingApp API (servingapp.io/v1alpha1): its types,
// defaulting, validation with field paths, and strict YAML/JSON decoding. The
// store, the controller and servingctl all speak these types.
package v1alpha1

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// APIVersion and Kind identify a ServingApp document.
const (
	Group      = "servingapp.io"
	Version    = "v1alpha1"
	APIVersion = Group + "/" + Version
	Kind       = "ServingApp"
)

// FinalizerCleanup is the finalizer the controller adds before it creates any
// external resource, and removes once they are gone (or retained).
const FinalizerCleanup = "servingapp.io/cleanup"

// ServingApp declares one web app: its runtime, its route and allowlist, and
// the Databricks workspace and serving endpoint it talks to.
type ServingApp struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Metadata   ObjectMeta       `json:"metadata"`
	Spec       ServingAppSpec   `json:"spec"`
	Status     ServingAppStatus `json:"status,omitzero"`
}

// Key returns the store key "<namespace>.<name>".
func (a *ServingApp) Key() string { return a.Metadata.Namespace + "." + a.Metadata.Name }

// NamespacedName returns "<namespace>/<name>", the form people read and type.
func (a *ServingApp) NamespacedName() string {
	return a.Metadata.Namespace + "/" + a.Metadata.Name
}

// DeepCopy returns a copy that shares no memory with a.
func (a *ServingApp) DeepCopy() *ServingApp {
	b, err := json.Marshal(a)
	if err != nil {
		panic(fmt.Sprintf("deep copy ServingApp: %v", err)) // every field is JSON-safe
	}
	out := new(ServingApp)
	if err := json.Unmarshal(b, out); err != nil {
		panic(fmt.Sprintf("deep copy ServingApp: %v", err))
	}
	return out
}

// ObjectMeta is the metadata every stored object carries, after Kubernetes.
type ObjectMeta struct {
	// Name is a DNS label (RFC 1123), unique within the namespace.
	Name string `json:"name"`
	// Namespace is a DNS label; "default" when omitted.
	Namespace string `json:"namespace,omitempty"`
	// Labels are selectable with servingctl get -l.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are free-form notes; they count as a spec change.
	Annotations map[string]string `json:"annotations,omitempty"`

	// UID is set by the store when the object is created; it never changes.
	UID string `json:"uid,omitempty"`
	// Generation counts changes of spec, labels and annotations; set by the store.
	Generation int64 `json:"generation,omitempty"`
	// ResourceVersion is the store revision of the object. A write that carries a
	// stale ResourceVersion is rejected with a conflict.
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// CreationTimestamp is set by the store at creation.
	CreationTimestamp *time.Time `json:"creationTimestamp,omitempty"`
	// DeletionTimestamp is set when deletion was asked while finalizers remain.
	DeletionTimestamp *time.Time `json:"deletionTimestamp,omitempty"`
	// Finalizers block removal until the controller has cleaned up.
	Finalizers []string `json:"finalizers,omitempty"`
}

// ServingAppSpec is the desired state an admin writes.
type ServingAppSpec struct {
	// Image is the web app container image; empty means the controller's default.
	Image string `json:"image,omitempty"`
	// Replicas is the desired task count; ignored while Autoscaling is set.
	Replicas *int32 `json:"replicas,omitempty"`
	// Autoscaling lets the controller own the desired count from invocation rates.
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`
	// Resources are the Fargate task size.
	Resources Resources `json:"resources,omitzero"`
	// Route is where the load balancer sends this app's traffic.
	Route Route `json:"route,omitzero"`
	// Allowlist holds the source CIDRs allowed to reach the app. Required: an open
	// app must say "0.0.0.0/0" (and "::/0") explicitly.
	Allowlist []string `json:"allowlist"`
	// Databricks names the workspace, serving endpoint and OAuth registration.
	Databricks Databricks `json:"databricks"`
	// Identity is the login policy applied after the ID token is verified.
	Identity *Identity `json:"identity,omitempty"`
	// Session configures web sessions.
	Session Session `json:"session,omitzero"`
	// Env adds plain environment variables to the web app.
	Env map[string]string `json:"env,omitempty"`
	// Secrets adds environment variables read from Secrets Manager (name → ARN or name).
	Secrets map[string]string `json:"secrets,omitempty"`
	// DeletionPolicy says what happens to external resources on deletion.
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// Autoscaling bounds the controller's choice of desired count.
type Autoscaling struct {
	MinReplicas int32 `json:"minReplicas"`
	MaxReplicas int32 `json:"maxReplicas"`
	// TargetInvocationsPerReplicaPerMinute is the load one task should carry.
	TargetInvocationsPerReplicaPerMinute int32 `json:"targetInvocationsPerReplicaPerMinute"`
}

// Resources is a Fargate task size: CPU units and memory in MiB.
type Resources struct {
	CPU    int32 `json:"cpu,omitempty"`
	Memory int32 `json:"memory,omitempty"`
}

// Route selects requests by host and path prefix.
type Route struct {
	// Host is the request host; empty means the controller derives one from its app domain.
	Host string `json:"host,omitempty"`
	// PathPrefix is "/" or a path such as "/summarizer" (no trailing slash).
	PathPrefix string `json:"pathPrefix,omitempty"`
}

// Databricks is the workspace side of an app.
type Databricks struct {
	// Host is the workspace URL, https://<workspace>, without a path.
	Host string `json:"host"`
	// ServingEndpoint is the Model Serving endpoint users call with their own token.
	ServingEndpoint string `json:"servingEndpoint"`
	// OAuth is how the app is registered as an OAuth client.
	OAuth OAuth `json:"oauth,omitzero"`
}

// IntegrationMode says who owns the OAuth app integration.
type IntegrationMode string

// Integration modes.
const (
	// IntegrationManaged: the controller creates one custom app integration per app.
	IntegrationManaged IntegrationMode = "managed"
	// IntegrationExisting: the controller adds its redirect URL to IntegrationID.
	IntegrationExisting IntegrationMode = "existing"
)

// OAuth configures the app's OAuth client registration.
type OAuth struct {
	Integration IntegrationMode `json:"integration,omitempty"`
	// IntegrationID is the existing integration (existing mode only).
	IntegrationID string `json:"integrationId,omitempty"`
	// ClientSecretRef is the Secrets Manager name or ARN of the existing
	// integration's client secret (existing mode only).
	ClientSecretRef string `json:"clientSecretRef,omitempty"`
	// Scopes asked at login; must include openid.
	Scopes []string `json:"scopes,omitempty"`
}

// Identity is the login policy.
type Identity struct {
	// AllowedEmailDomains, when set, admits only users whose verified email is in one of them.
	AllowedEmailDomains []string `json:"allowedEmailDomains,omitempty"`
	// Lockout blocks a source address after repeated failed logins.
	Lockout *Lockout `json:"lockout,omitempty"`
}

// Lockout blocks a source address after Failures failed logins within Window, for Duration.
type Lockout struct {
	Failures int32    `json:"failures"`
	Window   Duration `json:"window"`
	Duration Duration `json:"duration"`
}

// Session configures web sessions.
type Session struct {
	// TTL is the absolute session lifetime, 5m to 7d.
	TTL Duration `json:"ttl,omitzero"`
}

// DeletionPolicy is Delete or Retain.
type DeletionPolicy string

// Deletion policies.
const (
	DeletionDelete DeletionPolicy = "Delete"
	// DeletionRetain leaves AWS and Databricks resources in place, untagged from us.
	DeletionRetain DeletionPolicy = "Retain"
)

// Phase summarizes status for people.
type Phase string

// Phases.
const (
	PhasePending     Phase = "Pending"
	PhaseProgressing Phase = "Progressing"
	PhaseReady       Phase = "Ready"
	PhaseDegraded    Phase = "Degraded"
	PhaseDeleting    Phase = "Deleting"
)

// ServingAppStatus is what the controller observed and did.
type ServingAppStatus struct {
	ObservedGeneration int64          `json:"observedGeneration,omitempty"`
	Phase              Phase          `json:"phase,omitempty"`
	Message            string         `json:"message,omitempty"`
	URL                string         `json:"url,omitempty"`
	Conditions         []Condition    `json:"conditions,omitempty"`
	Replicas           ReplicaStatus  `json:"replicas,omitzero"`
	Resources          ResourceStatus `json:"resources,omitzero"`
	Usage              Usage          `json:"usage,omitzero"`
}

// ConditionStatus is True, False or Unknown.
type ConditionStatus string

// Condition statuses.
const (
	ConditionTrue    ConditionStatus = "True"
	ConditionFalse   ConditionStatus = "False"
	ConditionUnknown ConditionStatus = "Unknown"
)

// Condition types.
const (
	ConditionSynced          = "Synced"
	ConditionAvailable       = "Available"
	ConditionOAuthRegistered = "OAuthRegistered"
	ConditionReady           = "Ready"
)

// Condition follows the shape of Kubernetes' metav1.Condition.
type Condition struct {
	Type               string          `json:"type"`
	Status             ConditionStatus `json:"status"`
	ObservedGeneration int64           `json:"observedGeneration,omitempty"`
	LastTransitionTime time.Time       `json:"lastTransitionTime"`
	Reason             string          `json:"reason"`
	Message            string          `json:"message,omitempty"`
}

// ReplicaStatus counts tasks.
type ReplicaStatus struct {
	Desired int32 `json:"desired"`
	Running int32 `json:"running"`
	Pending int32 `json:"pending"`
}

// ResourceStatus names the external resources the controller owns for the app.
type ResourceStatus struct {
	TaskDefinitionARN  string   `json:"taskDefinitionArn,omitempty"`
	ServiceARN         string   `json:"serviceArn,omitempty"`
	TargetGroupARN     string   `json:"targetGroupArn,omitempty"`
	RuleARNs           []string `json:"ruleArns,omitempty"`
	SecretARNs         []string `json:"secretArns,omitempty"`
	OAuthIntegrationID string   `json:"oauthIntegrationId,omitempty"`
}

// Usage aggregates audit events over a sliding 24 hours.
type Usage struct {
	Logins24h          int64      `json:"logins24h"`
	FailedLogins24h    int64      `json:"failedLogins24h"`
	Invocations24h     int64      `json:"invocations24h"`
	Errors24h          int64      `json:"errors24h"`
	LastInvocationTime *time.Time `json:"lastInvocationTime,omitempty"`
}

// FindCondition returns the condition of type t, or nil.
func (s *ServingAppStatus) FindCondition(t string) *Condition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

// SetCondition sets c, keeping LastTransitionTime unless the status flips.
// It reports whether anything changed.
func (s *ServingAppStatus) SetCondition(c Condition) bool {
	old := s.FindCondition(c.Type)
	if old == nil {
		s.Conditions = append(s.Conditions, c)
		return true
	}
	if old.Status == c.Status {
		c.LastTransitionTime = old.LastTransitionTime
	}
	if *old == c {
		return false
	}
	*old = c
	return true
}

// Duration is a time.Duration written as a Go duration string ("8h", "30m").
type Duration struct {
	time.Duration
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// String formats like time.Duration but drops zero trailing units ("8h", not "8h0m0s").
func (d Duration) String() string {
	s := d.Duration.String()
	s = trimZeroUnit(s, "m0s", "0s")
	return trimZeroUnit(s, "h0m", "0m")
}

func trimZeroUnit(s, suffix, drop string) string {
	if strings.HasSuffix(s, suffix) {
		return s[:len(s)-len(drop)]
	}
	return s
}

// UnmarshalJSON reads a Go duration string, also accepting a "d" suffix for days.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"8h\"")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// ParseDuration parses a Go duration, plus whole days written "7d".
func ParseDuration(s string) (time.Duration, error) {
	if n := len(s); n > 1 && s[n-1] == 'd' {
		var days int
		if _, err := fmt.Sscanf(s[:n-1], "%d", &days); err == nil && fmt.Sprint(days) == s[:n-1] {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"8h\" or \"30m\"", s)
	}
	return v, nil
}
