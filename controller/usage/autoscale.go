package usage

import (
	"fmt"
	"time"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// Stabilization is how long demand must call for fewer replicas before the
// autoscaler scales down. Scaling up never waits.
const Stabilization = 5 * time.Minute

// Autoscaler actions, also the reasons of the events that record them.
const (
	ActionScaledUp          = "ScaledUp"
	ActionScaledDown        = "ScaledDown"
	ActionScaleDownDeferred = "ScaleDownDeferred"
)

// ScalePolicy is spec.autoscaling.
type ScalePolicy struct {
	Min, Max int32
	// Target is the invocations per minute one replica should carry.
	Target int32
}

func scalePolicy(app *v1.ServingApp) (ScalePolicy, bool) {
	if app == nil || app.Spec.Autoscaling == nil {
		return ScalePolicy{}, false
	}
	as := app.Spec.Autoscaling
	p := ScalePolicy{Min: as.MinReplicas, Max: as.MaxReplicas, Target: as.TargetInvocationsPerReplicaPerMinute}
	return p, p.Target > 0 && p.Min <= p.Max
}

// ScaleState is what the autoscaler remembers of one app between decisions.
type ScaleState struct {
	// Desired is the count it last set through the platform.
	Desired int32 `json:"desired"`
	// LowSince is when demand started to call for fewer than Desired
	// replicas without interruption; zero when it does not.
	LowSince time.Time `json:"lowSince,omitzero"`
	// LowPeak is the highest count demand called for since LowSince.
	LowPeak int32 `json:"lowPeak,omitempty"`
}

// Decision is one evaluation of the autoscaler, with its inputs.
type Decision struct {
	// Action is ActionScaledUp, ActionScaledDown, ActionScaleDownDeferred,
	// or "" when the desired count stays and nothing new happened.
	Action string
	// PerMinute is the demand in invocations per minute.
	PerMinute int64
	Policy    ScalePolicy
	// Recommended is clamp(ceil(PerMinute / Target), Min, Max).
	Recommended int32
	// From and To are the desired count before and after.
	From, To int32
	// Next is the state to remember.
	Next ScaleState
	// Held is how long demand has been lower when scaling down waits.
	Held time.Duration
}

// Recommend returns clamp(ceil(perMinute / Target), Min, Max).
func (p ScalePolicy) Recommend(perMinute int64) int32 {
	need := (perMinute + int64(p.Target) - 1) / int64(p.Target)
	return int32(max(int64(p.Min), min(need, int64(p.Max))))
}

// Decide evaluates demand against s at now: scale up at once to the
// recommendation; scale down only when the recommendation has been lower
// than the desired count for Stabilization without interruption, and then to
// the highest recommendation of that time; a desired count above Max (the
// bounds changed) comes down to Max at once.
func Decide(p ScalePolicy, s ScaleState, perMinute int64, now time.Time) Decision {
	rec := p.Recommend(perMinute)
	d := Decision{PerMinute: perMinute, Policy: p, Recommended: rec, From: s.Desired, To: s.Desired, Next: ScaleState{Desired: s.Desired}}
	switch {
	case s.Desired > p.Max:
		d.Action, d.To, d.Next.Desired = ActionScaledDown, p.Max, p.Max
	case rec > s.Desired:
		d.Action, d.To, d.Next.Desired = ActionScaledUp, rec, rec
	case rec == s.Desired:
	case s.LowSince.IsZero():
		d.Action = ActionScaleDownDeferred
		d.Next.LowSince, d.Next.LowPeak = now, rec
	default:
		peak := max(s.LowPeak, rec)
		d.Held = now.Sub(s.LowSince)
		if d.Held >= Stabilization {
			d.Action, d.To, d.Next.Desired = ActionScaledDown, peak, peak
		} else {
			d.Next.LowSince, d.Next.LowPeak = s.LowSince, peak
		}
	}
	return d
}

// Message says what was decided and on what inputs, for the event that
// records it.
func (d Decision) Message() string {
	inputs := fmt.Sprintf("%d invocations/min at a target of %d per replica recommends %d (min %d, max %d)",
		d.PerMinute, d.Policy.Target, d.Recommended, d.Policy.Min, d.Policy.Max)
	switch d.Action {
	case ActionScaledUp:
		return fmt.Sprintf("scaled up from %d to %d replicas: %s", d.From, d.To, inputs)
	case ActionScaledDown:
		if d.From > d.Policy.Max {
			return fmt.Sprintf("scaled down from %d to %d replicas: maxReplicas is %d; %s", d.From, d.To, d.Policy.Max, inputs)
		}
		return fmt.Sprintf("scaled down from %d to %d replicas after %s of lower demand (%d is the highest count it called for); now %s",
			d.From, d.To, d.Held.Round(time.Second), d.To, inputs)
	case ActionScaleDownDeferred:
		return fmt.Sprintf("keeping %d replicas: %s; scaling down only after %s of lower demand", d.From, inputs, Stabilization)
	}
	return fmt.Sprintf("keeping %d replicas: %s", d.From, inputs)
}
