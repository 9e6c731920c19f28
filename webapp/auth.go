package webapp

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/databricks"
	"github.com/servingapp/servingapp/webapp/login"
	"github.com/servingapp/servingapp/webapp/session"
)

// errNotReady: the session store is not open yet.
var errNotReady = errors.New("the session store is not open yet")

// newToken returns 256 random bits, base64url: CSRF tokens.
func (a *App) newToken() (string, error) {
	b := make([]byte, 32)
	if err := a.readRandom(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func validCSRF(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// touchEvery is how stale LastSeen may get before a request writes it: a
// tenth of the idle timeout, at most five minutes, so sessions in use are
// not written on every request.
func (a *App) touchEvery() time.Duration {
	return max(time.Second, min(a.cfg.IdleTimeout/10, 5*time.Minute))
}

// currentSession returns the signed-in session, or nil when there is none.
// A session past its idle or absolute timeout is ended here
// (session.expired). The error is for an unreachable store.
func (a *App) currentSession(w http.ResponseWriter, r *http.Request) (*session.Loaded, error) {
	c, err := r.Cookie(a.cookies.session)
	if err != nil || c.Value == "" {
		return nil, nil
	}
	m := a.sessions.Load()
	if m == nil {
		return nil, errNotReady
	}
	l, err := m.Load(r.Context(), c.Value)
	if errors.Is(err, session.ErrNotFound) {
		a.clearCookie(w, a.cookies.session)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := a.clock.Now()
	if reason, expired := l.Session.Expired(now, a.cfg.IdleTimeout); expired {
		a.endSession(w, r, l, reason)
		return nil, nil
	}
	if now.Sub(l.Session.LastSeen) >= a.touchEvery() {
		l.Session.LastSeen = now
		if err := m.Save(r.Context(), l); err != nil {
			// Another request wrote first; take its version.
			if fresh, lerr := m.Load(r.Context(), c.Value); lerr == nil {
				l = fresh
			}
		}
	}
	return l, nil
}

// endSession deletes a session that ended without logout and says so in
// the audit trail; w, when not nil, gets the cookie cleared.
func (a *App) endSession(w http.ResponseWriter, r *http.Request, l *session.Loaded, reason string) {
	if m := a.sessions.Load(); m != nil {
		if err := m.Delete(context.WithoutCancel(r.Context()), l.ID); err != nil {
			a.log.Warn("delete ended session", "request_id", info(r).id, "session", session.AuditID(l.ID), "err", err)
		}
	}
	if w != nil {
		a.clearCookie(w, a.cookies.session)
	}
	a.metrics.expired.WithLabelValues(reason).Inc()
	ev := a.event(audit.SessionExpired, r)
	ev.StatusDetail = reason
	ev.User = sessionUser(&l.Session)
	ev.Session = &audit.Session{UID: session.AuditID(l.ID), ExpirationTime: l.Session.Expires.UnixMilli()}
	a.emit(audit.SessionExpired, ev)
	a.log.Info("session ended", "request_id", info(r).id, "session", session.AuditID(l.ID), "reason", reason)
}

// handleHome shows the user card (or the sign-in button) and the summarizer.
func (a *App) handleHome(w http.ResponseWriter, r *http.Request) {
	l, err := a.currentSession(w, r)
	if err != nil {
		a.storeUnavailable(w, r, err)
		return
	}
	d := a.pageData(r)
	if l != nil {
		s := &l.Session
		d.User = userCard(d.Lang, s.Name, s.Email, s.UserID, s.Expires)
		d.CSRF = s.CSRF
	} else if d.CSRF, err = a.anonymousCSRF(w, r); err != nil {
		a.renderError(w, r, http.StatusInternalServerError, "err_internal")
		return
	}
	a.render(w, r, http.StatusOK, "home", d)
}

// anonymousCSRF returns the CSRF token of forms posted before sign-in,
// kept in the sealed login cookie.
func (a *App) anonymousCSRF(w http.ResponseWriter, r *http.Request) (string, error) {
	st := a.readLoginState(r)
	if st.CSRF != "" {
		return st.CSRF, nil
	}
	token, err := a.newToken()
	if err != nil {
		return "", err
	}
	st.CSRF = token
	if err := a.writeLoginState(w, st); err != nil {
		return "", err
	}
	return token, nil
}

func (a *App) storeUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Warn("session store unavailable", "request_id", info(r).id, "err", err)
	a.renderError(w, r, http.StatusServiceUnavailable, "err_store")
}

// handleLogin starts a sign-in: GET /login?return_to=<path of this app>.
// A return_to that is not a clean path of this app is ignored (the user
// lands on the home page), so the login can never redirect elsewhere. With
// resume=1 (the continue page's link) the login takes along the request
// typed before sign-in that the login cookie names.
func (a *App) handleLogin(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("return_to")
	returnTo := a.safeReturnTo(raw)
	if raw != "" && returnTo == "" {
		a.log.Warn("ignoring a return_to that is not a path of this app", "request_id", info(r).id, "client_ip", info(r).clientIP)
	}
	a.startLogin(w, r, returnTo, r.URL.Query().Get("resume") == "1")
}

// startLogin records a new authorization request in the login cookie and
// sends the browser to the provider. It is only ever reached by a plain
// navigation (GET), never as a redirect after a form submission, which the
// Content-Security-Policy's form-action would block.
func (a *App) startLogin(w http.ResponseWriter, r *http.Request, returnTo string, resume bool) {
	p := a.provider.Load()
	if p == nil {
		a.renderError(w, r, http.StatusServiceUnavailable, "err_not_ready")
		return
	}
	req, err := login.NewRequest(a.rand)
	if err != nil {
		a.log.Error("start sign-in", "request_id", info(r).id, "err", err)
		a.renderError(w, r, http.StatusInternalServerError, "err_internal")
		return
	}
	st := a.readLoginState(r)
	pendingID := ""
	if resume && st.Pending != "" {
		pendingID = st.Pending
		st.Pending, st.PendingExpires = "", 0
	}
	st.Logins = append(st.Logins, pendingLogin{
		Request:   req,
		ReturnTo:  returnTo,
		PendingID: pendingID,
		Expires:   a.clock.Now().Add(a.cfg.LoginTTL).Unix(),
	})
	if err := a.writeLoginState(w, st); err != nil {
		a.log.Error("write login cookie", "request_id", info(r).id, "err", err)
		a.renderError(w, r, http.StatusInternalServerError, "err_internal")
		return
	}
	http.Redirect(w, r, p.AuthCodeURL(req), http.StatusFound)
}

// handleContinue is the stop between the form posted before sign-in and the
// provider: GET /login/continue, where that form's answer redirects. It is a
// page of ours (so the redirect chain of the submission never leaves this
// origin) that moves on to /login?resume=1 by a meta refresh, and by a link
// for browsers that do not refresh.
func (a *App) handleContinue(w http.ResponseWriter, r *http.Request) {
	d := a.pageData(r)
	d.LoginURL = a.base + "/login?resume=1"
	d.Refresh = d.LoginURL
	a.render(w, r, http.StatusOK, "continue", d)
}

// handleCallback completes a sign-in: GET /oauth/callback?code=&state=.
func (a *App) handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st := a.readLoginState(r)
	pending, ok := st.take(q.Get("state"))
	if err := a.writeLoginState(w, st); err != nil {
		a.log.Error("write login cookie", "request_id", info(r).id, "err", err)
	}
	if !ok {
		a.loginFailed(w, r, audit.ReasonStateMismatch, "", "the state is missing, unknown or already used", nil, "")
		return
	}
	if e := q.Get("error"); e != "" {
		code := oauthErrorCode(e)
		detail := "the identity provider answered " + code
		if d := q.Get("error_description"); d != "" {
			detail += ": " + truncate(d, 256)
		}
		// Only access_denied is a refusal (the user or the provider said
		// no). Every other code (server_error, temporarily_unavailable,
		// invalid_scope, login_required, ...) means the sign-in itself
		// failed; the audit schema has no reason of its own for that, so it
		// is exchange_failed with the provider's code in status_code.
		reason := audit.ReasonExchangeFailed
		if code == "access_denied" {
			reason = audit.ReasonAccessDenied
		}
		a.loginFailed(w, r, reason, code, detail, nil, pending.ReturnTo)
		return
	}
	code := q.Get("code")
	if code == "" {
		a.loginFailed(w, r, audit.ReasonExchangeFailed, "", "the callback has no code", nil, pending.ReturnTo)
		return
	}
	p := a.provider.Load()
	m := a.sessions.Load()
	if p == nil || m == nil {
		a.renderError(w, r, http.StatusServiceUnavailable, "err_not_ready")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	tokens, ident, err := p.Exchange(ctx, code, pending.Request)
	if err != nil {
		var le *login.Error
		if errors.As(err, &le) {
			a.loginFailed(w, r, le.Reason, le.Code, le.Error(), nil, pending.ReturnTo)
		} else {
			a.loginFailed(w, r, audit.ReasonExchangeFailed, "", "exchange the code", nil, pending.ReturnTo)
		}
		return
	}
	user := &audit.User{UID: ident.Subject, EmailAddr: ident.Email, Name: ident.Name}
	userID := ident.Subject
	if ident.Email != "" && ident.EmailUnverified && len(a.cfg.AllowedEmailDomains) > 0 {
		// The provider says it has not checked that the user owns this
		// address, so its domain proves nothing: refuse rather than ask SCIM
		// Me, because a workspace provisioned from this same provider may
		// hold the same unchecked address. Without a domain policy the
		// email only labels the user and the sign-in goes on.
		a.loginFailed(w, r, audit.ReasonPolicyDenied, codeEmailUnverified, "the ID token says the email address is not verified (email_verified is false), so the allowed email domains cannot be checked", user, "")
		return
	}
	if user.EmailAddr == "" {
		me, err := a.ws.WithToken(databricks.StaticToken(tokens.AccessToken)).Me(ctx)
		if err != nil {
			a.loginFailed(w, r, audit.ReasonExchangeFailed, "identity_lookup_failed", "the ID token has no email and SCIM Me failed: "+apiErrorSummary(err), user, pending.ReturnTo)
			return
		}
		user.EmailAddr = me.PrimaryEmail()
		if user.Name == "" {
			user.Name = me.DisplayName
		}
		if me.ID != "" {
			userID = me.ID
		}
	}
	if user.Name == "" {
		user.Name = ident.PreferredUsername
	}
	if !a.emailAllowed(user.EmailAddr) {
		a.loginFailed(w, r, audit.ReasonPolicyDenied, "", "the email domain is not allowed", user, "")
		return
	}
	csrf, err := a.newToken()
	if err != nil {
		a.renderError(w, r, http.StatusInternalServerError, "err_internal")
		return
	}
	// A new session every time: an id planted before login is never reused,
	// and the session this browser had is gone.
	if old, err := r.Cookie(a.cookies.session); err == nil && old.Value != "" {
		if err := m.Delete(ctx, old.Value); err != nil {
			a.log.Warn("delete the session of a browser signing in again", "request_id", info(r).id, "session", session.AuditID(old.Value), "err", err)
		}
	}
	now := a.clock.Now()
	l, err := m.Create(ctx, session.Session{
		Subject:      ident.Subject,
		Email:        user.EmailAddr,
		Name:         user.Name,
		UserID:       userID,
		AccessToken:  tokens.AccessToken,
		AccessExpiry: tokens.Expiry,
		RefreshToken: tokens.RefreshToken,
		Created:      now,
		LastSeen:     now,
		Expires:      now.Add(a.cfg.SessionTTL),
		CSRF:         csrf,
		PendingID:    pending.PendingID,
	})
	if err != nil {
		a.storeUnavailable(w, r, err)
		return
	}
	// The cookie outlives the session, so the browser still sends it at the
	// absolute timeout and the app can say (and audit) that it ended.
	a.setCookie(w, a.cookies.session, l.ID, l.Session.Expires.Add(a.endedSessionGrace()))
	a.metrics.logins.WithLabelValues("succeeded").Inc()
	ev := a.event(audit.LoginSucceeded, r)
	ev.User = user
	ev.Session = &audit.Session{UID: session.AuditID(l.ID), ExpirationTime: l.Session.Expires.UnixMilli(), IsNew: true}
	a.emit(audit.LoginSucceeded, ev)
	a.log.Info("signed in", "request_id", info(r).id, "session", session.AuditID(l.ID), "user", user.EmailAddr)

	target := a.base + "/"
	switch {
	case pending.PendingID != "":
		target = a.base + "/resume"
	case pending.ReturnTo != "":
		target = pending.ReturnTo
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// codeEmailUnverified is the status code of a policy_denied login whose ID
// token said email_verified false.
const codeEmailUnverified = "email_unverified"

// emailAllowed applies the identity policy.
func (a *App) emailAllowed(email string) bool {
	if len(a.cfg.AllowedEmailDomains) == 0 {
		return true
	}
	at := strings.LastIndex(email, "@")
	if at < 0 {
		return false
	}
	domain := strings.ToLower(email[at+1:])
	for _, d := range a.cfg.AllowedEmailDomains {
		if domain == d {
			return true
		}
	}
	return false
}

// loginFailed audits a refused sign-in and shows why, with a way to retry.
func (a *App) loginFailed(w http.ResponseWriter, r *http.Request, reason, code, detail string, user *audit.User, returnTo string) {
	a.metrics.logins.WithLabelValues(reason).Inc()
	ev := a.event(audit.LoginFailed, r)
	ev.StatusDetail = reason
	ev.StatusCode = code
	ev.Message = detail
	ev.User = user
	a.emit(audit.LoginFailed, ev)
	a.log.Warn("sign-in failed", "request_id", info(r).id, "reason", reason, "code", code, "detail", detail)
	if returnTo == "" {
		returnTo = a.base + "/"
	}
	switch reason {
	case audit.ReasonStateMismatch:
		a.renderErrorWithLogin(w, r, http.StatusBadRequest, returnTo, "err_state")
	case audit.ReasonAccessDenied:
		a.renderErrorWithLogin(w, r, http.StatusForbidden, returnTo, "err_access_denied", code)
	case audit.ReasonPolicyDenied:
		if code == codeEmailUnverified {
			a.renderError(w, r, http.StatusForbidden, "err_email_unverified", user.EmailAddr)
			return
		}
		a.renderError(w, r, http.StatusForbidden, "err_policy", user.EmailAddr)
	case audit.ReasonInvalidIDToken:
		a.renderErrorWithLogin(w, r, http.StatusBadRequest, returnTo, "err_id_token")
	case audit.ReasonNonceMismatch:
		a.renderErrorWithLogin(w, r, http.StatusBadRequest, returnTo, "err_nonce")
	default:
		if code != "" {
			a.renderErrorWithLogin(w, r, http.StatusBadGateway, returnTo, "err_exchange_code", code)
			return
		}
		a.renderErrorWithLogin(w, r, http.StatusBadGateway, returnTo, "err_exchange")
	}
}

// oauthErrorCode returns a provider's error code as it may be recorded: at
// most 64 characters of the set RFC 6749 allows (printable ASCII but " and
// \), others replaced with '?'.
func oauthErrorCode(e string) string {
	b := []byte(truncate(e, 64))
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}

// handleLogout ends the session: POST /logout with the session's CSRF token.
func (a *App) handleLogout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	_ = r.ParseForm()
	l, err := a.currentSession(w, r)
	if err != nil {
		a.storeUnavailable(w, r, err)
		return
	}
	if l == nil {
		http.Redirect(w, r, a.base+"/", http.StatusSeeOther)
		return
	}
	if !validCSRF(csrfFrom(r), l.Session.CSRF) {
		a.log.Warn("logout without a valid CSRF token refused", "request_id", info(r).id, "session", session.AuditID(l.ID))
		a.renderError(w, r, http.StatusForbidden, "err_csrf")
		return
	}
	if err := a.sessions.Load().Delete(r.Context(), l.ID); err != nil {
		a.storeUnavailable(w, r, err)
		return
	}
	a.clearCookie(w, a.cookies.session)
	ev := a.event(audit.Logout, r)
	ev.User = sessionUser(&l.Session)
	ev.Session = &audit.Session{UID: session.AuditID(l.ID), ExpirationTime: l.Session.Expires.UnixMilli()}
	a.emit(audit.Logout, ev)
	a.log.Info("signed out", "request_id", info(r).id, "session", session.AuditID(l.ID))
	http.Redirect(w, r, a.base+"/", http.StatusSeeOther)
}

// csrfFrom reads the CSRF token of a form (csrf) or an API call (X-CSRF-Token).
func csrfFrom(r *http.Request) string {
	if v := r.Header.Get("X-CSRF-Token"); v != "" {
		return v
	}
	return r.PostFormValue("csrf")
}

// meResponse is the body of GET /api/me.
type meResponse struct {
	Subject          string    `json:"sub"`
	Email            string    `json:"email"`
	Name             string    `json:"name"`
	UserID           string    `json:"user_id"`
	SessionExpiresAt time.Time `json:"session_expires_at"`
	CSRFToken        string    `json:"csrf_token"`
}

// handleAPIMe answers who is signed in, and the CSRF token for /api/invoke.
func (a *App) handleAPIMe(w http.ResponseWriter, r *http.Request) {
	l, err := a.currentSession(w, r)
	if err != nil {
		a.log.Warn("session store unavailable", "request_id", info(r).id, "err", err)
		writeJSONError(w, http.StatusServiceUnavailable, "TEMPORARILY_UNAVAILABLE", "Sessions are temporarily unavailable; try again in a moment.", 0)
		return
	}
	if l == nil {
		a.loginRequired(w)
		return
	}
	s := &l.Session
	writeJSON(w, http.StatusOK, meResponse{
		Subject: s.Subject, Email: s.Email, Name: s.Name, UserID: s.UserID,
		SessionExpiresAt: s.Expires.UTC(), CSRFToken: s.CSRF,
	})
}

func (a *App) loginRequired(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Cookie realm="servingapp"`)
	writeJSONErrorWith(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Sign in first.", map[string]string{"login_url": a.base + "/login"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeJSONError writes {"error_code", "message"}, the shape Databricks uses.
func writeJSONError(w http.ResponseWriter, status int, code, msg string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", formatSeconds(retryAfter))
	}
	writeJSONErrorWith(w, status, code, msg, nil)
}

func writeJSONErrorWith(w http.ResponseWriter, status int, code, msg string, extra map[string]string) {
	body := map[string]string{"error_code": code, "message": msg}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, status, body)
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

func sessionUser(s *session.Session) *audit.User {
	return &audit.User{UID: s.Subject, EmailAddr: s.Email, Name: s.Name}
}
