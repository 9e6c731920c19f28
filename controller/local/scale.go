package local

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/servingapp/servingapp/controller/model"
)

// SetDesiredCount sets the instance count of an autoscaled app, for the
// controller's autoscaler (controller/usage.Scaler). It only records the
// count: the next Apply starts or stops instances to match it, within the
// app's bounds, as ECS does after UpdateService; the autoscaler asks the
// controller to reconcile the app right after. Apps without autoscaling
// keep spec.replicas and ignore it. Zero clears it.
func (p *Platform) SetDesiredCount(_ context.Context, app model.Ref, n int32) error {
	if n < 0 {
		return fmt.Errorf("set desired count of %s: %d is negative", app, n)
	}
	st := p.appState(app)
	p.mu.Lock()
	st.scaled = n
	p.mu.Unlock()
	return nil
}

// scaledCount is the count SetDesiredCount set for ref, or 0.
func (p *Platform) scaledCount(ref model.Ref) int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.apps[ref.String()]; ok {
		return st.scaled
	}
	return 0
}

// SetBlocked replaces the addresses the gateway refuses for app, for the
// controller's lockout (controller/usage.Blocker); an empty list lifts every
// block. Apply keeps the list when it rewrites the route.
func (p *Platform) SetBlocked(_ context.Context, app model.Ref, blocked []netip.Addr) error {
	r, ok := p.Gateway.Route(app.String())
	if !ok {
		return fmt.Errorf("block addresses for %s: no route", app)
	}
	r.Blocked = blocked
	return p.Gateway.SetRoute(r)
}
