package usage

import (
	"encoding/json"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

var (
	oneLogin      = Counts{Logins: 1}
	oneInvocation = Counts{Invocations: 1}
	oneError      = Counts{Invocations: 1, Errors: 1}
)

func TestWindowCountsTheLast24HoursToTheMinute(t *testing.T) {
	tests := []struct {
		name    string
		event   time.Time
		now     time.Time
		counted bool // at now
	}{
		{"just now", t0, t0, true},
		{"an hour ago", t0.Add(-time.Hour), t0, true},
		{"23h59m ago", t0.Add(-24*time.Hour + time.Minute), t0, true},
		{"exactly 24h ago, now on a minute boundary: its minute still runs", t0.Add(-Span), t0, true},
		{"24h and 1s ago: its minute ended 24h ago", t0.Add(-Span - time.Second), t0, false},
		{"24h30s ago at now+30s: the minute counts until it ends", t0.Add(-Span), t0.Add(30 * time.Second), true},
		{"exactly when its minute ends 24h ago", t0.Add(-Span), t0.Add(time.Minute), false},
		{"a day and a half ago", t0.Add(-36 * time.Hour), t0, false},
		{"from a clock 5m ahead: counts as now", t0.Add(5 * time.Minute), t0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Window
			added := w.Add(tt.event, tt.event, oneLogin) // read when it happened
			if !added {
				t.Fatal("an event is always counted when it happens")
			}
			w.Advance(tt.now)
			if got := w.Total().Logins == 1; got != tt.counted {
				t.Fatalf("counted at %s: %v, want %v", tt.now.Format(time.TimeOnly), got, tt.counted)
			}
			var late Window // the same event read only at now (a consumer catching up)
			if got := late.Add(tt.now, tt.event, oneLogin); got != tt.counted {
				t.Fatalf("late Add at %s: %v, want %v", tt.now.Format(time.TimeOnly), got, tt.counted)
			}
		})
	}
}

func TestWindowSlidesAndSumsEveryKind(t *testing.T) {
	var w Window
	now := t0
	// One event of each kind every 10 minutes for 30 hours.
	for i := 0; i < 30*6; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Minute)
		now = at
		w.Add(now, at, oneLogin)
		w.Add(now, at, Counts{FailedLogins: 1})
		w.Add(now, at, oneInvocation)
		w.Add(now, at, oneError)
		w.Advance(now)
	}
	// The last 24h hold 24*6 = 144 slots, plus the one exactly 24h ago,
	// whose minute has not ended yet.
	want := Counts{Logins: 145, FailedLogins: 145, Invocations: 290, Errors: 145}
	if got := w.Total(); got != want {
		t.Fatalf("total %+v, want %+v", got, want)
	}
	if len(w.Buckets) != 145 {
		t.Fatalf("%d buckets kept, want 145", len(w.Buckets))
	}
	// Nothing new for 23h50m: the last two slots are left; a minute after
	// the last one's minute left the window, none.
	if !w.Advance(now.Add(23*time.Hour+50*time.Minute)) || w.Total() != (Counts{Logins: 2, FailedLogins: 2, Invocations: 4, Errors: 2}) {
		t.Fatalf("after 23h50m: %+v", w.Total())
	}
	if !w.Advance(now.Add(Span+time.Minute)) || w.Total() != (Counts{}) || len(w.Buckets) != 0 {
		t.Fatalf("after 24h01m: %+v, %d buckets", w.Total(), len(w.Buckets))
	}
	if w.Advance(now.Add(48 * time.Hour)) {
		t.Fatal("Advance of an empty window reported a change")
	}
}

func TestWindowTakesLateEventsInTheirMinuteAndSurvivesJSON(t *testing.T) {
	var w Window
	w.Add(t0, t0, oneInvocation)
	w.Add(t0, t0.Add(-90*time.Minute), oneInvocation) // delivered late from an outbox
	w.Add(t0, t0.Add(-90*time.Minute+10*time.Second), oneError)
	w.Add(t0, t0.Add(-30*time.Minute), oneInvocation)
	if len(w.Buckets) != 3 || w.Buckets[0].Minute != unixMinute(t0.Add(-90*time.Minute)) || w.Buckets[0].Invocations != 2 {
		t.Fatalf("buckets %+v", w.Buckets)
	}
	b, err := json.Marshal(&w)
	if err != nil {
		t.Fatal(err)
	}
	var back Window
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Total() != w.Total() || back.Total().Invocations != 4 || back.Total().Errors != 1 {
		t.Fatalf("after JSON: %+v, want %+v", back.Total(), w.Total())
	}
}

func TestInvocationsPerMinuteTakesTheBusierOfLastAndCurrentMinute(t *testing.T) {
	tests := []struct {
		name          string
		last, curr    int
		now           time.Time
		wantPerMinute int64
	}{
		{"steady", 100, 100, t0.Add(30 * time.Second), 100},
		{"burst in the current minute counts at once", 10, 400, t0.Add(20 * time.Second), 400},
		{"a quiet start of a minute does not hide the last one", 300, 2, t0.Add(5 * time.Second), 300},
		{"idle", 0, 0, t0.Add(5 * time.Second), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Window
			for range tt.last {
				w.Add(tt.now, t0.Add(-time.Second), oneInvocation)
			}
			for range tt.curr {
				w.Add(tt.now, t0, oneInvocation)
			}
			w.Add(tt.now, t0.Add(-5*time.Minute), Counts{Invocations: 1000}) // older minutes never count
			if got := w.InvocationsPerMinute(tt.now); got != tt.wantPerMinute {
				t.Fatalf("%d/min, want %d", got, tt.wantPerMinute)
			}
		})
	}
}
