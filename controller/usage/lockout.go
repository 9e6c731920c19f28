package usage

import (
	"net/netip"
	"slices"
	"time"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// LockoutPolicy is spec.identity.lockout: block a source address for
// Duration after Failures failed logins from it within Window.
type LockoutPolicy struct {
	Failures int
	Window   time.Duration
	Duration time.Duration
}

// lockoutPolicy returns the app's policy, or false when it has none.
func lockoutPolicy(app *v1.ServingApp) (LockoutPolicy, bool) {
	if app == nil || app.Spec.Identity == nil || app.Spec.Identity.Lockout == nil {
		return LockoutPolicy{}, false
	}
	lo := app.Spec.Identity.Lockout
	p := LockoutPolicy{Failures: int(lo.Failures), Window: lo.Window.Duration, Duration: lo.Duration.Duration}
	return p, p.Failures > 0 && p.Window > 0 && p.Duration > 0
}

// maxTrackedAddrs bounds the addresses with failed logins one app
// remembers, so a spray from many addresses cannot grow the stored state
// without bound; beyond it the address whose last failure is oldest is
// forgotten.
const maxTrackedAddrs = 4096

// Lockouts is the lockout state of one app: recent failed logins per source
// address and the addresses blocked now. The zero value is empty.
type Lockouts struct {
	// Failures holds, per address, the times (ms since the epoch, oldest
	// first) of its last failed logins: at most Failures of them, all within
	// Window of the newest.
	Failures map[string][]int64 `json:"failures,omitempty"`
	// Blocked maps each blocked address to the end of its block.
	Blocked map[string]time.Time `json:"blocked,omitempty"`
}

// Failed records a failed login from addr at t (event time), as seen at now.
// When it is the policy's Failures-th within Window, the address is blocked
// until t + Duration, and Failed returns that time and true; a block that
// would already be over at now (an old event, read late) is not applied.
// Failures from an address blocked at t are ignored: the block stands.
func (l *Lockouts) Failed(p LockoutPolicy, addr netip.Addr, t, now time.Time) (time.Time, bool) {
	key := addr.Unmap().String()
	if until, ok := l.Blocked[key]; ok && until.After(t) {
		return time.Time{}, false
	}
	ms := t.UnixMilli()
	times := l.Failures[key]
	i, _ := slices.BinarySearch(times, ms)
	times = slices.Insert(times, i, ms)
	newest := times[len(times)-1]
	cut := 0
	for cut < len(times) && times[cut] < newest-p.Window.Milliseconds() {
		cut++
	}
	times = times[max(cut, len(times)-p.Failures):]
	if len(times) < p.Failures {
		if l.Failures == nil {
			l.Failures = map[string][]int64{}
		}
		l.Failures[key] = times
		if len(l.Failures) > maxTrackedAddrs {
			l.forgetOldest()
		}
		return time.Time{}, false
	}
	delete(l.Failures, key)
	until := time.UnixMilli(newest).Add(p.Duration).UTC()
	if !until.After(now) {
		return time.Time{}, false
	}
	if l.Blocked == nil {
		l.Blocked = map[string]time.Time{}
	}
	l.Blocked[key] = until
	return until, true
}

func (l *Lockouts) forgetOldest() {
	oldestKey, oldest := "", int64(0)
	for key, times := range l.Failures {
		if last := times[len(times)-1]; oldestKey == "" || last < oldest {
			oldestKey, oldest = key, last
		}
	}
	delete(l.Failures, oldestKey)
}

// Expire lifts the blocks that end at or before now, forgets failures older
// than the window (all of them when p is nil: lockout was switched off), and
// returns the lifted addresses in order.
func (l *Lockouts) Expire(p *LockoutPolicy, now time.Time) []netip.Addr {
	var lifted []netip.Addr
	for key, until := range l.Blocked {
		if p == nil || !until.After(now) {
			delete(l.Blocked, key)
			if a, err := netip.ParseAddr(key); err == nil {
				lifted = append(lifted, a)
			}
		}
	}
	for key, times := range l.Failures {
		if p == nil || len(times) == 0 || times[len(times)-1] < now.Add(-p.Window).UnixMilli() {
			delete(l.Failures, key)
		}
	}
	slices.SortFunc(lifted, netip.Addr.Compare)
	return lifted
}

// BlockedAddrs returns the blocked addresses in order.
func (l *Lockouts) BlockedAddrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(l.Blocked))
	for key := range l.Blocked {
		if a, err := netip.ParseAddr(key); err == nil {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// empty reports whether there is nothing to remember.
func (l *Lockouts) empty() bool { return len(l.Failures) == 0 && len(l.Blocked) == 0 }
