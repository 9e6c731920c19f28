package v1alpha1

import "time"

// Default values applied by SetDefaults.
const (
	DefaultNamespace  = "default"
	DefaultReplicas   = int32(2) // two tasks, so losing one task or zone keeps the app up
	DefaultCPU        = int32(256)
	DefaultMemory     = int32(512)
	DefaultPathPrefix = "/"
	DefaultSessionTTL = 8 * time.Hour
)

// DefaultScopes are asked at login when spec.databricks.oauth.scopes is empty:
// identity, a refresh token, and the workspace APIs serving needs.
func DefaultScopes() []string {
	return []string{"openid", "email", "profile", "offline_access", "all-apis"}
}

// SetDefaults fills every optional field an admin left out, so the stored object
// says exactly what the controller will build.
func SetDefaults(a *ServingApp) {
	if a.Metadata.Namespace == "" {
		a.Metadata.Namespace = DefaultNamespace
	}
	s := &a.Spec
	if s.Replicas == nil {
		r := DefaultReplicas
		if s.Autoscaling != nil && s.Autoscaling.MinReplicas > r {
			r = s.Autoscaling.MinReplicas
		}
		s.Replicas = &r
	}
	if s.Resources.CPU == 0 {
		s.Resources.CPU = DefaultCPU
	}
	if s.Resources.Memory == 0 {
		s.Resources.Memory = smallestMemory(s.Resources.CPU)
	}
	if s.Route.PathPrefix == "" {
		s.Route.PathPrefix = DefaultPathPrefix
	}
	if s.Databricks.OAuth.Integration == "" {
		s.Databricks.OAuth.Integration = IntegrationManaged
	}
	if len(s.Databricks.OAuth.Scopes) == 0 {
		s.Databricks.OAuth.Scopes = DefaultScopes()
	}
	if s.Session.TTL.Duration == 0 {
		s.Session.TTL.Duration = DefaultSessionTTL
	}
	if s.DeletionPolicy == "" {
		s.DeletionPolicy = DeletionDelete
	}
}

// smallestMemory is the least memory Fargate accepts with cpu, or the default
// when cpu itself is not a Fargate size (validation reports that).
func smallestMemory(cpu int32) int32 {
	if r, ok := fargateSizes[cpu]; ok {
		return r.min
	}
	return DefaultMemory
}
