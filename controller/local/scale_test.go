package local

import (
	"context"
	"testing"
)

func TestAutoscaledAppFollowsTheDesiredCountWithinItsBounds(t *testing.T) {
	runner := &echoRunner{}
	p := &Platform{Gateway: &Gateway{}, Runner: runner, Secrets: &Secrets{}}
	m := testModel(1, "hi", "127.0.0.1/32")
	m.Autoscaled, m.MinReplicas, m.MaxReplicas = true, 1, 4
	converge(t, p, m)
	ctx := context.Background()
	steps := []struct {
		set, want int32
	}{
		{3, 3}, // up
		{9, 4}, // above max: max
		{2, 2}, // down
	}
	for _, st := range steps {
		if err := p.SetDesiredCount(ctx, m.Ref, st.set); err != nil {
			t.Fatal(err)
		}
		obs, err := p.Observe(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if obs.Replicas.Desired != st.want || obs.Available {
			t.Fatalf("after SetDesiredCount(%d): desired %d available %v; want %d, not yet available", st.set, obs.Replicas.Desired, obs.Available, st.want)
		}
		converge(t, p, m)
		if n := runner.count(); n != int(st.want) {
			t.Fatalf("after SetDesiredCount(%d): %d instances, want %d", st.set, n, st.want)
		}
	}
	if err := p.SetDesiredCount(ctx, m.Ref, -1); err == nil {
		t.Fatal("a negative count was accepted")
	}

	// Without autoscaling, spec.replicas rules.
	fixed := testModel(1, "hi", "127.0.0.1/32")
	converge(t, p, fixed)
	if n := runner.count(); n != 1 {
		t.Fatalf("non-autoscaled app runs %d instances, want its 1 replica", n)
	}
}
