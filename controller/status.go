package controller

import (
	"errors"
	"fmt"
	"time"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
)

// maxMessage bounds condition messages so a verbose AWS error cannot bloat status.
const maxMessage = 1024

// outcome is what one reconcile found and did, from which status is derived.
type outcome struct {
	generation         int64
	url                string
	obs                *model.Observed // nil when the platform was not reached
	oauth              *v1.Condition   // nil without a registrar
	oauthIntegrationID string
	err                error
}

// apply writes the outcome into s. Conditions keep their transition time
// unless their status flips; usage (written by the audit consumer) is left alone.
func (o outcome) apply(s *v1.ServingAppStatus, now time.Time) {
	gen := o.generation
	set := func(t string, st v1.ConditionStatus, reason, msg string) {
		s.SetCondition(v1.Condition{Type: t, Status: st, ObservedGeneration: gen, LastTransitionTime: now.UTC(), Reason: reason, Message: truncate(msg)})
	}
	s.ObservedGeneration = gen
	if o.url != "" {
		s.URL = o.url
	}

	var terminal *model.TerminalError
	isTerminal := errors.As(o.err, &terminal)
	switch {
	case o.err == nil:
		set(v1.ConditionSynced, v1.ConditionTrue, "Synced", "Every resource matches the spec.")
	case isTerminal:
		set(v1.ConditionSynced, v1.ConditionFalse, terminal.Reason, o.err.Error())
	default:
		set(v1.ConditionSynced, v1.ConditionFalse, "ReconcileError", o.err.Error())
	}

	if o.oauth != nil {
		set(v1.ConditionOAuthRegistered, o.oauth.Status, o.oauth.Reason, o.oauth.Message)
	}

	if o.obs != nil {
		s.Replicas = o.obs.Replicas
		s.Resources = o.obs.Resources
		if o.oauthIntegrationID != "" {
			s.Resources.OAuthIntegrationID = o.oauthIntegrationID
		}
		switch {
		case o.obs.Available:
			set(v1.ConditionAvailable, v1.ConditionTrue, "RolloutCompleted",
				fmt.Sprintf("%d of %d tasks running.", o.obs.Replicas.Running, o.obs.Replicas.Desired))
		case o.obs.Rollout == model.RolloutFailed:
			set(v1.ConditionAvailable, v1.ConditionFalse, "RolloutFailed", o.obs.Message)
		case o.obs.Rollout == model.RolloutInProgress:
			set(v1.ConditionAvailable, v1.ConditionFalse, "RolloutInProgress", o.obs.Message)
		default:
			set(v1.ConditionAvailable, v1.ConditionFalse, "TasksNotRunning", o.obs.Message)
		}
	} else if s.FindCondition(v1.ConditionAvailable) == nil {
		set(v1.ConditionAvailable, v1.ConditionUnknown, "NotObserved", "The platform has not been observed yet.")
	}

	synced := s.FindCondition(v1.ConditionSynced)
	avail := s.FindCondition(v1.ConditionAvailable)
	oauth := s.FindCondition(v1.ConditionOAuthRegistered)
	switch {
	case synced.Status != v1.ConditionTrue:
		set(v1.ConditionReady, v1.ConditionFalse, "NotSynced", "Resources do not match the spec yet.")
	case avail.Status != v1.ConditionTrue:
		set(v1.ConditionReady, v1.ConditionFalse, "NotAvailable", "The deployment is not available yet.")
	case o.oauth != nil && oauth.Status != v1.ConditionTrue:
		set(v1.ConditionReady, v1.ConditionFalse, "OAuthNotRegistered", "The redirect URL is not registered with Databricks yet.")
	default:
		set(v1.ConditionReady, v1.ConditionTrue, "Ready", "The app is serving.")
	}

	switch {
	case s.FindCondition(v1.ConditionReady).Status == v1.ConditionTrue:
		s.Phase = v1.PhaseReady
		s.Message = "Serving at " + s.URL
	case isTerminal:
		s.Phase = v1.PhaseDegraded
		s.Message = truncate(fmt.Sprintf("%s: %v. Fix the cause (spec, permissions or quota) and re-apply; until then the controller retries only every few minutes.", terminal.Reason, terminal.Err))
	case o.err != nil:
		s.Phase = v1.PhaseDegraded
		s.Message = truncate(fmt.Sprintf("Reconcile failed and is retried with backoff: %v", o.err))
	case avail.Status == v1.ConditionFalse && avail.Reason == "RolloutFailed":
		s.Phase = v1.PhaseDegraded
		s.Message = truncate("The latest deployment failed and was rolled back: " + avail.Message + " Check the image and the task logs, then re-apply.")
	case avail.Status != v1.ConditionTrue:
		s.Phase = v1.PhaseProgressing
		s.Message = truncate("Rolling out: " + avail.Message)
	default:
		s.Phase = v1.PhaseProgressing
		s.Message = truncate(oauth.Message)
	}
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-len("…")] + "…"
}
