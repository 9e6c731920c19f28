package aws

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/model"
	"github.com/servingapp/servingapp/internal/awsemu"
	"github.com/servingapp/servingapp/internal/clock"
)

// The fleet benchmarks run 200 apps against the emulator on loopback, the
// way the controller drives the platform: 4 workers (the default) reconcile
// the apps of a resync while CollectOrphans runs beside them. They report
// figures, not timings to assert:
//
//	go test -run '^$' -bench Fleet -benchtime 1x ./controller/aws/

const (
	fleetSize    = 200
	fleetWorkers = 4
)

// fleetEnv is an account with room for 200 apps: the ALB quotas raised to
// 1000 rules and target groups (the defaults are 100 each), ECS rollouts
// settled within the call that starts them.
func fleetEnv(b *testing.B) *env {
	e := newEnv(b, instantRollout, withELBLimits(awsemu.ELBv2Options{RulesPerLoadBalancer: 1000, TargetGroupsPerLoadBalancer: 1000}))
	return e
}

// fleet is 200 apps with allowlists of 1 to 6 CIDRs (one or two rules) and
// every fourth one under a path prefix.
func fleet(b *testing.B) []*model.App {
	apps := make([]*model.App, fleetSize)
	for i := range apps {
		apps[i] = app(b, fmt.Sprintf("app-%03d", i), func(s *v1.ServingApp) {
			s.Spec.Allowlist = cidrs(1 + i%6)
			if i%4 == 0 {
				s.Spec.Route.PathPrefix = "/ui"
			}
		})
	}
	return apps
}

// resync reconciles every app once with fleetWorkers workers while
// CollectOrphans runs, as a controller resync does; it returns how many
// apps ended available.
func resync(b *testing.B, p *Platform, apps []*model.App) int {
	ctx := context.Background()
	live := make([]model.Ref, len(apps))
	for i, a := range apps {
		live[i] = a.Ref
	}
	keys := make(chan *model.App, len(apps))
	for _, a := range apps {
		keys <- a
	}
	close(keys)
	var mu sync.Mutex
	available := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := p.CollectOrphans(ctx, live, &events{}); err != nil {
			b.Error(err)
		}
	})
	for range fleetWorkers {
		wg.Go(func() {
			for a := range keys {
				obs, err := reconcile(ctx, p, a, &events{})
				if err != nil {
					b.Errorf("%s: %v", a.Ref, err)
					continue
				}
				if obs.Available {
					mu.Lock()
					available++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return available
}

func perApp(n int) float64 { return float64(n) / fleetSize }

// BenchmarkFleetColdCreate reports the AWS calls one app costs on creation.
// Rate limits are lifted: at the defaults (5 mutations a second per
// service) creating 200 apps takes about two minutes of ELBv2 mutations.
func BenchmarkFleetColdCreate(b *testing.B) {
	for range b.N {
		b.StopTimer()
		e := fleetEnv(b)
		apps := fleet(b)
		p := e.platform()
		before := e.srv.Calls()
		b.StartTimer()
		start := time.Now()
		resync(b, p, apps)
		elapsed := time.Since(start)
		b.StopTimer()
		calls := e.srv.Calls().Since(before)
		e.later()
		if n := resync(b, p, apps); n != fleetSize {
			b.Fatalf("%d of %d apps available after create", n, fleetSize)
		}
		b.Logf("create calls by operation: %v", calls)
		b.ReportMetric(perApp(calls.Total()), "calls/app")
		b.ReportMetric(perApp(calls.Reads()), "reads/app")
		b.ReportMetric(perApp(calls.Mutating()), "mutations/app")
		b.ReportMetric(elapsed.Seconds(), "s/fleet")
		b.StartTimer()
	}
}

// BenchmarkFleetSteadyResync reports what a resync of 200 converged apps
// costs when every cache has expired (a resync runs every 10 minutes).
func BenchmarkFleetSteadyResync(b *testing.B) {
	e := fleetEnv(b)
	apps := fleet(b)
	p := e.platform()
	resync(b, p, apps)
	e.later()
	resync(b, p, apps)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		e.later()
		before := e.srv.Calls()
		b.StartTimer()
		if n := resync(b, p, apps); n != fleetSize {
			b.Fatalf("%d of %d apps available", n, fleetSize)
		}
		b.StopTimer()
		calls := e.srv.Calls().Since(before)
		if m := calls.Mutating(); m != 0 {
			b.Errorf("steady-state resync made %d mutating calls: %v", m, calls)
		}
		b.ReportMetric(perApp(calls.Reads()), "reads/app")
		b.ReportMetric(float64(calls.Mutating()), "mutations")
		b.ReportMetric(float64(calls.Operation(awsemu.ServiceECS, "DescribeServices")), "DescribeServices")
		b.StartTimer()
	}
}

// BenchmarkFleetRestartVerify reports how long a restarted controller takes
// to verify 200 converged apps: production settings (real clock, the
// default rate limits of 20 describes and 5 mutations a second per
// service), every cache cold.
func BenchmarkFleetRestartVerify(b *testing.B) {
	e := fleetEnv(b)
	apps := fleet(b)
	resync(b, e.platform(), apps)
	e.later()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		e.cfg.DescribePerSecond, e.cfg.MutatePerSecond, e.cfg.Burst = 0, 0, 0 // defaults
		p := e.platformWith(func(o *Options) { o.Clock = clock.Real{} })
		before := e.srv.Calls()
		b.StartTimer()
		start := time.Now()
		n := resync(b, p, apps)
		elapsed := time.Since(start)
		b.StopTimer()
		if n != fleetSize {
			b.Fatalf("%d of %d apps verified available", n, fleetSize)
		}
		calls := e.srv.Calls().Since(before)
		b.Logf("verify calls: %v", calls)
		b.ReportMetric(elapsed.Seconds(), "s/verify")
		b.ReportMetric(perApp(calls.Reads()), "reads/app")
		b.ReportMetric(float64(calls.Mutating()), "mutations")
		b.StartTimer()
	}
}
