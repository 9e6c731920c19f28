package usage

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	attacker = netip.MustParseAddr("198.51.100.23")
	neighbor = netip.MustParseAddr("198.51.100.24")
	policy5  = LockoutPolicy{Failures: 5, Window: 10 * time.Minute, Duration: 30 * time.Minute}
)

func TestLockoutBlocksAfterFailuresWithinTheWindow(t *testing.T) {
	tests := []struct {
		name      string
		failures  []time.Duration // event times after t0, from attacker
		now       time.Duration
		wantBlock bool
		wantUntil time.Duration
	}{
		{"four failures are not enough", []time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute}, 3 * time.Minute, false, 0},
		{"the fifth within 10m blocks for 30m from it", []time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute, 9 * time.Minute}, 9 * time.Minute, true, 39 * time.Minute},
		{"exactly 10m apart still counts", []time.Duration{0, 1, 2, 3, 10 * time.Minute}, 10 * time.Minute, true, 40 * time.Minute},
		{"spread over more than 10m does not", []time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute, 10*time.Minute + time.Millisecond}, 11 * time.Minute, false, 0},
		{"old failures read late: the block would be over, so none", []time.Duration{0, 1, 2, 3, 4}, 2 * time.Hour, false, 0},
		{"out of order events still count", []time.Duration{4 * time.Minute, 0, 3 * time.Minute, time.Minute, 2 * time.Minute}, 5 * time.Minute, true, 34 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l Lockouts
			var until time.Time
			blocked := false
			for _, f := range tt.failures {
				if u, ok := l.Failed(policy5, attacker, t0.Add(f), t0.Add(tt.now)); ok {
					blocked, until = true, u
				}
			}
			if blocked != tt.wantBlock || (blocked && !until.Equal(t0.Add(tt.wantUntil))) {
				t.Fatalf("blocked %v until %s; want %v until %s", blocked, until, tt.wantBlock, t0.Add(tt.wantUntil))
			}
			if got := slices.Equal(l.BlockedAddrs(), []netip.Addr{attacker}); got != tt.wantBlock {
				t.Fatalf("blocked addresses %v", l.BlockedAddrs())
			}
		})
	}
}

func TestLockoutCountsEachAddressAloneAndLiftsOnTime(t *testing.T) {
	var l Lockouts
	for i := range 4 {
		l.Failed(policy5, attacker, t0.Add(time.Duration(i)*time.Second), t0)
		l.Failed(policy5, neighbor, t0.Add(time.Duration(i)*time.Second), t0)
	}
	until, ok := l.Failed(policy5, attacker, t0.Add(5*time.Second), t0.Add(5*time.Second))
	if !ok || !until.Equal(t0.Add(30*time.Minute+5*time.Second)) {
		t.Fatalf("attacker not blocked: %v %s", ok, until)
	}
	// More failures during the block change nothing.
	if _, ok := l.Failed(policy5, attacker, t0.Add(time.Minute), t0.Add(time.Minute)); ok {
		t.Fatal("blocked again while blocked")
	}
	if got := l.BlockedAddrs(); !slices.Equal(got, []netip.Addr{attacker}) {
		t.Fatalf("blocked %v, want only the attacker", got)
	}
	if lifted := l.Expire(&policy5, until.Add(-time.Millisecond)); len(lifted) != 0 {
		t.Fatalf("lifted early: %v", lifted)
	}
	// The neighbor's failures leave the window; the block ends at until.
	lifted := l.Expire(&policy5, until)
	if !slices.Equal(lifted, []netip.Addr{attacker}) || !l.empty() {
		t.Fatalf("lifted %v; left %+v", lifted, l)
	}
}

func TestLockoutSwitchedOffLiftsEverything(t *testing.T) {
	var l Lockouts
	for i := range 5 {
		l.Failed(policy5, attacker, t0.Add(time.Duration(i)*time.Second), t0)
	}
	l.Failed(policy5, neighbor, t0, t0)
	if lifted := l.Expire(nil, t0); !slices.Equal(lifted, []netip.Addr{attacker}) || !l.empty() {
		t.Fatalf("lifted %v, left %+v", lifted, l)
	}
}
