package webapp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/webapp/login"
	"github.com/servingapp/servingapp/webapp/session"
)

var (
	// errSessionEnded: the session can no longer get a valid token (the
	// refresh was rejected, or there is no refresh token and the access token
	// expired). It was deleted and audited; the user must sign in again.
	errSessionEnded = errors.New("the session has ended")
	// errRefreshUnavailable: a refresh failed for now and the access token
	// has expired.
	errRefreshUnavailable = errors.New("the access token expired and could not be refreshed now")
)

const (
	// refreshMargin: tokens are refreshed when they expire within it.
	refreshMargin = time.Minute
	// refreshLease is how long a replica's claim to refresh a session holds.
	refreshLease = 20 * time.Second
	// refreshWait bounds how long a request waits for another replica's refresh.
	refreshWait = 10 * time.Second
)

// accessToken returns a valid access token of l, refreshing it first when it
// expires within refreshMargin. Concurrent requests of one session in this
// process share one refresh (single flight); replicas take turns through a
// compare-and-set claim on the session record. l is updated in place.
func (a *App) accessToken(w http.ResponseWriter, r *http.Request, l *session.Loaded) (string, error) {
	if a.clock.Now().Before(l.Session.AccessExpiry.Add(-refreshMargin)) {
		return l.Session.AccessToken, nil
	}
	ch := a.refreshes.DoChan(session.Key(l.ID), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
		defer cancel()
		return a.refresh(ctx, r, l.ID)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			if errors.Is(res.Err, errSessionEnded) {
				a.clearCookie(w, a.cookies.session)
			}
			return "", res.Err
		}
		if res.Shared {
			a.metrics.refreshes.WithLabelValues("shared").Inc()
		}
		*l = *res.Val.(*session.Loaded)
		return l.Session.AccessToken, nil
	case <-r.Context().Done():
		return "", fmt.Errorf("wait for token refresh: %w", r.Context().Err())
	}
}

// refresh brings session id's tokens up to date and returns it.
func (a *App) refresh(ctx context.Context, r *http.Request, id string) (*session.Loaded, error) {
	m := a.sessions.Load()
	p := a.provider.Load()
	if m == nil || p == nil {
		return nil, errNotReady
	}
	waitUntil := time.Now().Add(refreshWait)
	for attempt := 0; attempt < 50; attempt++ {
		l, err := m.Load(ctx, id)
		if errors.Is(err, session.ErrNotFound) {
			return nil, errSessionEnded
		}
		if err != nil {
			return nil, err
		}
		s := &l.Session
		now := a.clock.Now()
		switch {
		case now.Before(s.AccessExpiry.Add(-refreshMargin)):
			// Another replica refreshed meanwhile.
			a.metrics.refreshes.WithLabelValues("shared").Inc()
			return l, nil
		case s.RefreshToken == "":
			if now.Before(s.AccessExpiry) {
				return l, nil
			}
			a.metrics.refreshes.WithLabelValues("rejected").Inc()
			a.endSession(nil, r, l, audit.ExpiryRefreshRejected)
			return nil, errSessionEnded
		case s.RefreshingBy != "" && s.RefreshingBy != a.replicaID && now.Before(s.RefreshingUntil):
			// Another replica holds the claim: use the current token while it
			// lasts, else wait for the new one.
			if now.Before(s.AccessExpiry) {
				return l, nil
			}
			if time.Now().After(waitUntil) {
				return nil, errRefreshUnavailable
			}
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return nil, err
			}
			continue
		}
		s.RefreshingBy, s.RefreshingUntil = a.replicaID, now.Add(refreshLease)
		if err := m.Save(ctx, l); errors.Is(err, session.ErrConflict) {
			continue
		} else if err != nil {
			return nil, err
		}
		return a.redeem(ctx, r, m, p, l)
	}
	return nil, errRefreshUnavailable
}

// redeem uses the refresh token of l, whose claim this replica holds, and
// saves the new tokens (the rotated refresh token above all).
//
// Only a definitive answer ends the session: invalid_grant, or a refreshed
// ID token that verifies as wrong. A failure to check the ID token because
// the provider's keys are unreachable is temporary: the session keeps the
// refresh token the provider just issued (with single-use refresh tokens the
// old one is spent), but not the new access token, whose ID token is
// unchecked; the next request refreshes again.
func (a *App) redeem(ctx context.Context, r *http.Request, m *session.Manager, p *login.Provider, l *session.Loaded) (*session.Loaded, error) {
	s := &l.Session
	tokens, err := p.Refresh(ctx, s.RefreshToken, s.Subject)
	if err != nil {
		if errors.Is(err, login.ErrRefreshRejected) {
			a.metrics.refreshes.WithLabelValues("rejected").Inc()
			a.log.Info("refresh rejected; ending the session", "request_id", info(r).id, "session", session.AuditID(l.ID), "err", err)
			a.endSession(nil, r, l, audit.ExpiryRefreshRejected)
			return nil, errSessionEnded
		}
		a.metrics.refreshes.WithLabelValues("failed").Inc()
		a.log.Warn("token refresh failed", "request_id", info(r).id, "session", session.AuditID(l.ID), "err", err)
		l, serr := a.saveTokens(ctx, m, l, func(s *session.Session) {
			if tokens.RefreshToken != "" {
				s.RefreshToken = tokens.RefreshToken
			}
		})
		if serr != nil {
			a.log.Error("save the session after a failed refresh", "request_id", info(r).id, "session", session.AuditID(l.ID), "err", serr)
		}
		if a.clock.Now().Before(l.Session.AccessExpiry) {
			return l, nil
		}
		return nil, fmt.Errorf("%w: %w", errRefreshUnavailable, err)
	}
	l, err = a.saveTokens(ctx, m, l, func(s *session.Session) {
		s.AccessToken, s.AccessExpiry, s.RefreshToken = tokens.AccessToken, tokens.Expiry, tokens.RefreshToken
	})
	if err != nil {
		// This request still gets the new token; the session will ask for a
		// new login when the saved (now spent) refresh token is used.
		a.log.Error("save refreshed tokens", "request_id", info(r).id, "session", session.AuditID(l.ID), "err", err)
	}
	a.metrics.refreshes.WithLabelValues("refreshed").Inc()
	ev := a.event(audit.SessionRefreshed, r)
	ev.User = sessionUser(&l.Session)
	ev.Session = &audit.Session{UID: session.AuditID(l.ID), ExpirationTime: l.Session.Expires.UnixMilli()}
	a.emit(audit.SessionRefreshed, ev)
	return l, nil
}

// saveTokens applies set to the session, releases this replica's refresh
// claim and saves it. This replica holds the claim, so applying set to a
// newer version of the record (a LastSeen update) loses nothing; it retries
// on such conflicts. The returned session carries set's changes even when
// the save failed.
func (a *App) saveTokens(ctx context.Context, m *session.Manager, l *session.Loaded, set func(*session.Session)) (*session.Loaded, error) {
	for attempt := 0; ; attempt++ {
		set(&l.Session)
		l.Session.RefreshingBy, l.Session.RefreshingUntil = "", time.Time{}
		err := m.Save(ctx, l)
		if err == nil || !errors.Is(err, session.ErrConflict) || attempt == 5 {
			return l, err
		}
		fresh, lerr := m.Load(ctx, l.ID)
		if lerr != nil {
			return l, lerr
		}
		l = fresh
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
