package usage

import (
	"strings"
	"testing"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// TestLockoutOverThePlatformsBudgetIsReportedOnceNotRetried: when the
// platform blocks only the addresses that fit its lockout budget, the engine
// records why and does not ask again every tick; a changed list is asked for.
func TestLockoutOverThePlatformsBudgetIsReportedOnceNotRetried(t *testing.T) {
	f := newFixture(t)
	f.blocker.budget = 2
	f.apply("platform", "chat", func(a *v1.ServingApp) {
		a.Spec.Identity = &v1.Identity{Lockout: &v1.Lockout{Failures: 1, Window: v1.Duration{Duration: 10 * time.Minute}, Duration: v1.Duration{Duration: 30 * time.Minute}}}
	})
	e, _ := f.start(f.options(f.js, nil))
	at := f.base.Add(-time.Minute)
	for _, ip := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		f.publish(event{ns: "platform", name: "chat", typ: audit.LoginFailed, at: at, ip: ip})
	}
	f.waitRead(e)
	waitFor(t, "the budget reported", func() bool { _, ok := f.rec.find("platform/chat", "LockoutIncomplete"); return ok })
	if ev, _ := f.rec.find("platform/chat", "LockoutIncomplete"); ev.severity != "Warning" || !strings.Contains(ev.message, "1 address(es) not blocked") {
		t.Fatalf("recorded %+v", ev)
	}
	calls := f.blocker.callCount()
	for range 5 {
		f.tick(time.Second)
	}
	if n := f.blocker.callCount(); n != calls {
		t.Fatalf("SetBlocked called %d more times with the same addresses", n-calls)
	}
	f.publish(event{ns: "platform", name: "chat", typ: audit.LoginFailed, at: at, ip: "198.51.100.4"})
	f.waitRead(e)
	f.tick(time.Second)
	waitFor(t, "the new list asked for", func() bool { return f.blocker.callCount() > calls })
}
