package aws

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/servingapp/servingapp/internal/clock"
)

// describeBatch is the most services one DescribeServices call takes.
const describeBatch = 10

// serviceCache answers "what is service X" for Observe from DescribeServices
// calls shared across apps. A miss describes the missing service together
// with up to nine other known services whose answers are getting old (read
// ahead), so a resync of N apps costs about N/10 calls whatever order the
// workers take the apps in. Concurrent misses for a service wait for the
// call already under way. Answers serve for maxAge; this platform's own
// mutations replace them at once (put), and an answer read before such a
// write never overwrites it (generations).
type serviceCache struct {
	clk      clock.Clock
	maxAge   time.Duration
	describe func(ctx context.Context, names []string) (map[string]*ecstypes.Service, error)

	mu      sync.Mutex
	entries map[string]*serviceEntry
}

type serviceEntry struct {
	svc    *ecstypes.Service // nil: no ACTIVE or DRAINING service of that name
	at     time.Time         // when svc was read; zero: never
	gen    uint64            // bumped by every write
	flight *serviceFlight    // non-nil while a call describing it is under way
}

type serviceFlight struct {
	done chan struct{}
	err  error
}

func newServiceCache(clk clock.Clock, maxAge time.Duration, describe func(context.Context, []string) (map[string]*ecstypes.Service, error)) *serviceCache {
	return &serviceCache{clk: clk, maxAge: maxAge, describe: describe, entries: map[string]*serviceEntry{}}
}

func (c *serviceCache) entry(name string) *serviceEntry {
	e, ok := c.entries[name]
	if !ok {
		e = &serviceEntry{}
		c.entries[name] = e
	}
	return e
}

func (c *serviceCache) fresh(e *serviceEntry, now time.Time) bool {
	return !e.at.IsZero() && now.Sub(e.at) < c.maxAge
}

// get returns the service named name (nil when none is ACTIVE or DRAINING),
// describing it if the cached answer is missing or too old.
func (c *serviceCache) get(ctx context.Context, name string) (*ecstypes.Service, error) {
	for {
		c.mu.Lock()
		e := c.entry(name)
		now := c.clk.Now()
		if e.flight == nil && c.fresh(e, now) {
			svc := e.svc
			c.mu.Unlock()
			return svc, nil
		}
		if f := e.flight; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if f.err != nil {
				return nil, f.err
			}
			c.mu.Lock()
			svc, ok := e.svc, !e.at.IsZero()
			c.mu.Unlock()
			if ok {
				return svc, nil
			}
			continue
		}
		batch := append([]string{name}, c.readAheadLocked(name, now, describeBatch-1)...)
		f, gens := c.startLocked(batch)
		c.mu.Unlock()
		if err := c.fetch(ctx, batch, f, gens); err != nil {
			return nil, err
		}
		c.mu.Lock()
		svc := e.svc
		c.mu.Unlock()
		return svc, nil
	}
}

// readAheadLocked picks up to n other known services whose answers are
// older than half maxAge (never read first), oldest first.
func (c *serviceCache) readAheadLocked(except string, now time.Time, n int) []string {
	type cand struct {
		name string
		at   time.Time
	}
	var cands []cand
	for name, e := range c.entries {
		if name == except || e.flight != nil || (!e.at.IsZero() && now.Sub(e.at) < c.maxAge/2) {
			continue
		}
		cands = append(cands, cand{name, e.at})
	}
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.name, b.name))
	})
	out := make([]string, 0, min(n, len(cands)))
	for _, c := range cands[:min(n, len(cands))] {
		out = append(out, c.name)
	}
	return out
}

// startLocked marks batch as being described and remembers the entries'
// generations.
func (c *serviceCache) startLocked(batch []string) (*serviceFlight, []uint64) {
	f := &serviceFlight{done: make(chan struct{})}
	gens := make([]uint64, len(batch))
	for i, n := range batch {
		e := c.entry(n)
		e.flight = f
		gens[i] = e.gen
	}
	return f, gens
}

// fetch describes batch (at most 10 names, started with startLocked) in one
// call and stores the answers, except for entries written since it started.
func (c *serviceCache) fetch(ctx context.Context, batch []string, f *serviceFlight, gens []uint64) error {
	got, err := c.describe(ctx, batch)
	now := c.clk.Now()
	c.mu.Lock()
	for i, n := range batch {
		e := c.entry(n)
		if e.flight == f {
			e.flight = nil
		}
		if err == nil && e.gen == gens[i] {
			e.svc, e.at = got[n], now
		}
	}
	f.err = err
	close(f.done)
	c.mu.Unlock()
	return err
}

// refresh makes sure every one of names has an answer no older than maxAge,
// describing the others ten at a time (CollectOrphans primes the cache so).
func (c *serviceCache) refresh(ctx context.Context, names []string) error {
	for {
		c.mu.Lock()
		now := c.clk.Now()
		var stale []string
		var waits []*serviceFlight
		for _, n := range names {
			e := c.entry(n)
			switch {
			case e.flight != nil:
				waits = append(waits, e.flight)
			case !c.fresh(e, now) && !slices.Contains(stale, n):
				stale = append(stale, n)
			}
		}
		c.mu.Unlock()
		if len(stale) == 0 && len(waits) == 0 {
			return nil
		}
		for i := 0; i < len(stale); i += describeBatch {
			c.mu.Lock()
			var batch []string
			for _, n := range stale[i:min(i+describeBatch, len(stale))] {
				if c.entry(n).flight == nil {
					batch = append(batch, n)
				}
			}
			if len(batch) == 0 {
				c.mu.Unlock()
				continue
			}
			f, gens := c.startLocked(batch)
			c.mu.Unlock()
			if err := c.fetch(ctx, batch, f, gens); err != nil {
				return err
			}
		}
		for _, f := range waits {
			select {
			case <-f.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if f.err != nil {
				return f.err
			}
		}
		if len(waits) == 0 {
			return nil
		}
	}
}

// put records what a mutation returned (nil: the service is gone).
func (c *serviceCache) put(name string, svc *ecstypes.Service) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(name)
	e.svc, e.at = svc, c.clk.Now()
	e.gen++
}

// peek returns the cached answer without reading, and whether there is one.
func (c *serviceCache) peek(name string) (*ecstypes.Service, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[name]
	if !ok || e.at.IsZero() {
		return nil, false
	}
	return e.svc, true
}

// know adds names to the read-ahead candidates without reading them.
func (c *serviceCache) know(names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range names {
		c.entry(n)
	}
}

// forget drops a service that no longer needs watching (its app is gone).
func (c *serviceCache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[name]; ok && e.flight == nil {
		delete(c.entries, name)
	}
}
