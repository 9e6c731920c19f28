package usage

import (
	"strings"
	"testing"
	"time"
)

// TestAutoscalerDecisionTable is the autoscaler's specification: one row per
// evaluation of an app, in order, each starting from the state the previous
// one left (min 1, max 10, 120 invocations per replica per minute).
func TestAutoscalerDecisionTable(t *testing.T) {
	p := ScalePolicy{Min: 1, Max: 10, Target: 120}
	type step struct {
		at        time.Duration
		perMinute int64
		action    string
		desired   int32
	}
	steps := []step{
		{0, 0, "", 1},                                       // idle at min
		{15 * time.Second, 100, "", 1},                      // ceil(100/120) = 1
		{30 * time.Second, 121, ActionScaledUp, 2},          // ceil(121/120) = 2, at once
		{45 * time.Second, 1000, ActionScaledUp, 9},         // ceil(1000/120) = 9, at once
		{time.Minute, 5000, ActionScaledUp, 10},             // clamped to max
		{2 * time.Minute, 5000, "", 10},                     // steady
		{3 * time.Minute, 600, ActionScaleDownDeferred, 10}, // wants 5: wait
		{5 * time.Minute, 800, "", 10},                      // wants 7: still waiting, peak 7
		{7*time.Minute + 59*time.Second, 100, "", 10},       // 4m59s of lower demand
		{8 * time.Minute, 100, ActionScaledDown, 7},         // 5m: down to the peak of those 5m
		{8*time.Minute + 15*time.Second, 100, ActionScaleDownDeferred, 7},
		{10 * time.Minute, 900, ActionScaledUp, 8},        // wants 8: up at once, the wait ends
		{11 * time.Minute, 0, ActionScaleDownDeferred, 8}, // wants 1: wait
		{13 * time.Minute, 960, "", 8},                    // wants exactly 8: the lower period is interrupted
		{14 * time.Minute, 0, ActionScaleDownDeferred, 8}, // a new lower period starts
		{18*time.Minute + 59*time.Second, 0, "", 8},       // not yet
		{19 * time.Minute, 0, ActionScaledDown, 1},        // 5m after 14m
	}
	s := ScaleState{Desired: 1}
	for _, st := range steps {
		d := Decide(p, s, st.perMinute, t0.Add(st.at))
		if d.Action != st.action || d.Next.Desired != st.desired {
			t.Fatalf("at %s with %d/min from %d: %q to %d; want %q to %d (%s)", st.at, st.perMinute, s.Desired,
				d.Action, d.Next.Desired, st.action, st.desired, d.Message())
		}
		if d.From != s.Desired || d.To != d.Next.Desired {
			t.Fatalf("at %s: from %d to %d, state %d→%d", st.at, d.From, d.To, s.Desired, d.Next.Desired)
		}
		s = d.Next
	}
}

func TestAutoscalerHonoursChangedBounds(t *testing.T) {
	tests := []struct {
		name      string
		p         ScalePolicy
		desired   int32
		perMinute int64
		action    string
		want      int32
	}{
		{"above a lowered max: down at once", ScalePolicy{Min: 1, Max: 4, Target: 60}, 9, 6000, ActionScaledDown, 4},
		{"below a raised min: up at once", ScalePolicy{Min: 3, Max: 10, Target: 60}, 1, 0, ActionScaledUp, 3},
		{"min equals max pins the count", ScalePolicy{Min: 3, Max: 3, Target: 60}, 3, 100000, "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.p, ScaleState{Desired: tt.desired}, tt.perMinute, t0)
			if d.Action != tt.action || d.Next.Desired != tt.want {
				t.Fatalf("%q to %d; want %q to %d", d.Action, d.Next.Desired, tt.action, tt.want)
			}
		})
	}
}

func TestAutoscalerMessagesCarryTheInputs(t *testing.T) {
	p := ScalePolicy{Min: 1, Max: 10, Target: 120}
	d := Decide(p, ScaleState{Desired: 2}, 530, t0)
	want := "scaled up from 2 to 5 replicas: 530 invocations/min at a target of 120 per replica recommends 5 (min 1, max 10)"
	if d.Message() != want {
		t.Fatalf("%q\nwant %q", d.Message(), want)
	}
	d = Decide(p, ScaleState{Desired: 5, LowSince: t0, LowPeak: 2}, 100, t0.Add(6*time.Minute))
	if !strings.Contains(d.Message(), "scaled down from 5 to 2 replicas after 6m0s of lower demand") {
		t.Fatal(d.Message())
	}
}
