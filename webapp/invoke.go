package webapp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/internal/databricks"
	"github.com/servingapp/servingapp/webapp/session"
)

// maxPendingText bounds a text typed before sign-in, which is kept
// server-side across the login. Anyone can post one without signing in, so
// it is small; a longer text can be summarized after signing in.
const maxPendingText = 32 << 10

// pendingSlots bounds the requests typed before sign-in that this replica
// stored and that may still be alive. The form needs no sign-in, so without
// a bound a script could fill the session store (and with it stop
// sign-ins); with it, a flood only turns away further texts typed before
// sign-in, and sign-ins go on. A slot is held until its request expires
// (taking the request after the login does not free it early), so at most
// max requests of this replica are alive at once.
type pendingSlots struct {
	max     int
	mu      sync.Mutex
	expires []time.Time // oldest first: every request lives LoginTTL
}

// take claims a slot for a request alive until until, if one is free at now.
func (s *pendingSlots) take(now, until time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.expires) && !now.Before(s.expires[i]) {
		i++
	}
	s.expires = append(s.expires[:0], s.expires[i:]...)
	if len(s.expires) >= s.max {
		return false
	}
	s.expires = append(s.expires, until)
	return true
}

// release gives back a slot taken with until whose request was not stored
// after all, so a store outage or a full store does not hold slots for a
// LoginTTL and turn away texts after the store recovers.
func (s *pendingSlots) release(until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.expires) - 1; i >= 0; i-- {
		if s.expires[i].Equal(until) {
			s.expires = append(s.expires[:i], s.expires[i+1:]...)
			return
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// handleSummarize runs the summarizer form: POST /summarize (text, csrf).
// Before sign-in, the text is kept and summarized right after the login.
func (a *App) handleSummarize(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxRequestBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			a.renderError(w, r, http.StatusRequestEntityTooLarge, "err_too_large", a.cfg.MaxRequestBytes)
			return
		}
		a.renderError(w, r, http.StatusBadRequest, "err_bad_form")
		return
	}
	text := r.PostForm.Get("text")
	l, err := a.currentSession(w, r)
	if err != nil {
		a.storeUnavailable(w, r, err)
		return
	}
	want := ""
	if l != nil {
		want = l.Session.CSRF
	} else {
		want = a.readLoginState(r).CSRF
	}
	if !validCSRF(csrfFrom(r), want) {
		a.log.Warn("form without a valid CSRF token refused", "request_id", info(r).id, "route", r.Pattern)
		a.renderError(w, r, http.StatusForbidden, "err_csrf")
		return
	}
	if strings.TrimSpace(text) == "" {
		d := a.pageData(r)
		d.CSRF = want
		d.Message = message(d.Lang, "err_empty")
		if l != nil {
			s := &l.Session
			d.User = userCard(d.Lang, s.Name, s.Email, s.UserID, s.Expires)
		}
		a.render(w, r, http.StatusBadRequest, "home", d)
		return
	}
	if l == nil {
		a.loginThenSummarize(w, r, text)
		return
	}
	a.summarize(w, r, l, text)
}

// loginThenSummarize keeps text server-side, names it in the login cookie
// and sends the browser to the continue page, whose sign-in returns to
// /resume, which summarizes it. A browser has one kept request at a time:
// a new one replaces the one before (a login already under way for that
// one then lands on the home page). Kept requests are bounded in size
// (maxPendingText), in lifetime (LoginTTL, which the store enforces too) and
// in number per replica (pendingSlots).
func (a *App) loginThenSummarize(w http.ResponseWriter, r *http.Request, text string) {
	if len(text) > maxPendingText {
		a.refusePending(w, r, http.StatusRequestEntityTooLarge, text, "err_pending_too_large", maxPendingText>>10)
		return
	}
	m := a.sessions.Load()
	if m == nil {
		a.renderError(w, r, http.StatusServiceUnavailable, "err_not_ready")
		return
	}
	now := a.clock.Now()
	expires := now.Add(a.cfg.LoginTTL)
	if !a.pendingSlots.take(now, expires) {
		a.log.Warn("too many requests kept for sign-in on this replica; refusing another", "request_id", info(r).id, "client_ip", info(r).clientIP, "max", a.pendingSlots.max)
		a.refusePending(w, r, http.StatusServiceUnavailable, text, "err_pending_busy")
		return
	}
	id, err := m.PutPending(r.Context(), session.Pending{Text: text, Expires: expires})
	if err != nil {
		a.pendingSlots.release(expires)
	}
	if errors.Is(err, session.ErrFull) {
		a.log.Warn("the session store is full; refusing a request kept for sign-in", "request_id", info(r).id, "err", err)
		a.refusePending(w, r, http.StatusServiceUnavailable, text, "err_pending_busy")
		return
	}
	if err != nil {
		a.storeUnavailable(w, r, err)
		return
	}
	st := a.readLoginState(r)
	replaced := []string{st.Pending}
	for i := range st.Logins {
		replaced = append(replaced, st.Logins[i].PendingID)
		st.Logins[i].PendingID = ""
	}
	st.Pending, st.PendingExpires = id, expires.Unix()
	if err := a.writeLoginState(w, st); err != nil {
		a.log.Error("write login cookie", "request_id", info(r).id, "err", err)
		a.renderError(w, r, http.StatusInternalServerError, "err_internal")
		return
	}
	for _, old := range replaced {
		if old == "" {
			continue
		}
		if err := m.DeletePending(r.Context(), old); err != nil {
			a.log.Warn("delete a replaced request kept for sign-in", "request_id", info(r).id, "err", err)
		}
	}
	// Not to the provider: a redirect there would answer a form submission,
	// which form-action 'self' forbids (see contentSecurityPolicy).
	http.Redirect(w, r, a.base+"/login/continue", http.StatusSeeOther)
}

// refusePending shows the home page again with the text in the form and
// why it could not be kept.
func (a *App) refusePending(w http.ResponseWriter, r *http.Request, status int, text, msgKey string, args ...any) {
	d := a.pageData(r)
	d.CSRF = a.readLoginState(r).CSRF
	d.Message = message(d.Lang, msgKey, args...)
	d.Text = text
	a.render(w, r, status, "home", d)
}

// handleResume runs the request typed before sign-in: GET /resume, where
// the callback sends the browser. The session's reference to it is cleared
// first, so a reload cannot run it twice.
func (a *App) handleResume(w http.ResponseWriter, r *http.Request) {
	l, err := a.currentSession(w, r)
	if err != nil {
		a.storeUnavailable(w, r, err)
		return
	}
	if l == nil || l.Session.PendingID == "" {
		http.Redirect(w, r, a.base+"/", http.StatusSeeOther)
		return
	}
	m := a.sessions.Load()
	id := l.Session.PendingID
	for attempt := 0; ; attempt++ {
		l.Session.PendingID = ""
		err = m.Save(r.Context(), l)
		if err == nil {
			break
		}
		if !errors.Is(err, session.ErrConflict) || attempt == 3 {
			a.storeUnavailable(w, r, err)
			return
		}
		fresh, lerr := m.Load(r.Context(), l.ID)
		if lerr != nil || fresh.Session.PendingID != id {
			http.Redirect(w, r, a.base+"/", http.StatusSeeOther)
			return
		}
		l = fresh
	}
	p, err := m.TakePending(r.Context(), id, a.clock.Now())
	if err != nil {
		d := a.pageData(r)
		s := &l.Session
		d.User = userCard(d.Lang, s.Name, s.Email, s.UserID, s.Expires)
		d.CSRF = s.CSRF
		d.Message = message(d.Lang, "err_pending_gone")
		a.render(w, r, http.StatusOK, "home", d)
		return
	}
	a.summarize(w, r, l, p.Text)
}

// summarize sends text to the endpoint as chat messages (system prompt,
// user text, max_tokens) and shows the result page.
func (a *App) summarize(w http.ResponseWriter, r *http.Request, l *session.Loaded, text string) {
	token, err := a.accessToken(w, r, l)
	if err != nil {
		if errors.Is(err, errSessionEnded) {
			a.loginThenSummarize(w, r, text)
			return
		}
		a.log.Warn("no access token for the invocation", "request_id", info(r).id, "err", err)
		a.renderError(w, r, http.StatusServiceUnavailable, "err_provider")
		return
	}
	body, err := json.Marshal(databricks.ChatRequest{
		Messages:  []databricks.ChatMessage{{Role: "system", Content: a.cfg.SystemPrompt}, {Role: "user", Content: text}},
		MaxTokens: a.cfg.MaxTokens,
	})
	if err != nil {
		a.renderError(w, r, http.StatusInternalServerError, "err_internal")
		return
	}
	inv := invocation{form: "summarizer", promptSHA: sha256Hex([]byte(text)), reqBytes: int64(len(body))}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.InvokeTimeout)
	defer cancel()
	start := time.Now()
	raw, err := a.ws.WithToken(databricks.StaticToken(token)).InvokeRaw(ctx, a.cfg.ServingEndpoint, body)
	inv.elapsed = time.Since(start)
	var resp databricks.ChatResponse
	if err == nil {
		if derr := json.Unmarshal(raw.Body, &resp); derr != nil {
			err = fmt.Errorf("decode the chat response: %w", derr)
		}
	}
	if err != nil {
		ie := a.recordFailure(ctx, r, l, inv, err)
		if ie.retryAfter > 0 {
			w.Header().Set("Retry-After", formatSeconds(ie.retryAfter))
		}
		returnTo := ""
		if ie.status == http.StatusUnauthorized {
			returnTo = a.base + "/"
		}
		a.renderErrorWithLogin(w, r, ie.status, returnTo, ie.key, ie.args...)
		return
	}
	inv.status, inv.respBytes, inv.servedModel = http.StatusOK, int64(len(raw.Body)), raw.ServedModel
	if resp.Usage != nil {
		inv.usage = &audit.TokenUsage{PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens, TotalTokens: resp.Usage.TotalTokens}
	}
	a.recordInvocation(r, l, inv)

	d := a.pageData(r)
	d.CSRF = l.Session.CSRF
	d.Summary = resp.Text()
	d.ServedModel = raw.ServedModel
	if d.ServedModel == "" {
		d.ServedModel = resp.Model
	}
	if inv.usage != nil {
		d.Usage = fmt.Sprintf("%d + %d = %d", inv.usage.PromptTokens, inv.usage.CompletionTokens, inv.usage.TotalTokens)
	}
	a.render(w, r, http.StatusOK, "result", d)
}

// handleAPIInvoke passes a JSON body (chat, completions or any model input)
// to the serving endpoint: POST /api/invoke with the session cookie and the
// X-CSRF-Token header from /api/me. With "stream": true the answer's
// server-sent events are passed through as they arrive.
func (a *App) handleAPIInvoke(w http.ResponseWriter, r *http.Request) {
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
	if !validCSRF(r.Header.Get("X-CSRF-Token"), l.Session.CSRF) {
		a.log.Warn("API call without a valid CSRF token refused", "request_id", info(r).id, "session", session.AuditID(l.ID))
		writeJSONError(w, http.StatusForbidden, "CSRF_TOKEN_INVALID", "Send the csrf_token from GET "+a.base+"/api/me in the X-CSRF-Token header.", 0)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeJSONError(w, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "Send the request body as application/json.", 0)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSONError(w, http.StatusRequestEntityTooLarge, "REQUEST_TOO_LARGE", fmt.Sprintf("The request body exceeds %d bytes.", a.cfg.MaxRequestBytes), 0)
			return
		}
		writeJSONError(w, http.StatusBadRequest, "MALFORMED_REQUEST", "The request body could not be read.", 0)
		return
	}
	var probe struct {
		Stream bool `json:"stream"`
	}
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' || json.Unmarshal(body, &probe) != nil {
		writeJSONError(w, http.StatusBadRequest, "MALFORMED_REQUEST", "The request body must be a JSON object (chat messages, prompt, inputs, ...).", 0)
		return
	}
	token, err := a.accessToken(w, r, l)
	if err != nil {
		if errors.Is(err, errSessionEnded) {
			writeJSONErrorWith(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Your session has ended; sign in again.", map[string]string{"login_url": a.base + "/login"})
			return
		}
		a.log.Warn("no access token for the invocation", "request_id", info(r).id, "err", err)
		writeJSONError(w, http.StatusServiceUnavailable, "TEMPORARILY_UNAVAILABLE", "Databricks sign-in is temporarily unreachable; try again in a moment.", 0)
		return
	}
	inv := invocation{form: "api", stream: probe.Stream, promptSHA: sha256Hex(body), reqBytes: int64(len(body))}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.InvokeTimeout)
	defer cancel()
	if probe.Stream {
		a.streamInvoke(ctx, w, r, l, token, body, inv)
		return
	}
	start := time.Now()
	raw, err := a.ws.WithToken(databricks.StaticToken(token)).InvokeRaw(ctx, a.cfg.ServingEndpoint, body)
	inv.elapsed = time.Since(start)
	if err != nil {
		a.invokeFailed(ctx, w, r, l, inv, err)
		return
	}
	inv.status, inv.respBytes, inv.servedModel = http.StatusOK, int64(len(raw.Body)), raw.ServedModel
	inv.usage = usageOf(raw.Body)
	if raw.ServedModel != "" {
		w.Header().Set("served-model-name", raw.ServedModel)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw.Body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(raw.Body)
	a.recordInvocation(r, l, inv)
}

// invokeFailed answers an API invocation's failure with a clear JSON error.
func (a *App) invokeFailed(ctx context.Context, w http.ResponseWriter, r *http.Request, l *session.Loaded, inv invocation, err error) {
	ie := a.recordFailure(ctx, r, l, inv, err)
	writeJSONError(w, ie.status, ie.code, ie.english(), ie.retryAfter)
}

// recordFailure classifies a failed invocation, audits and logs it (never
// with the endpoint's own words, see invokeError.audited and loggable), and
// returns what the user is to be told.
func (a *App) recordFailure(ctx context.Context, r *http.Request, l *session.Loaded, inv invocation, err error) invokeError {
	ie := a.classify(ctx, err)
	inv.status, inv.code, inv.message = ie.status, ie.code, ie.audited()
	a.recordInvocation(r, l, inv)
	a.log.Warn("invocation failed", "request_id", info(r).id, "status", ie.status, "code", ie.code, "err", loggable(err))
	return ie
}

// usageOf reads the token usage of a chat or completions answer, if any.
func usageOf(body []byte) *audit.TokenUsage {
	var v struct {
		Usage *audit.TokenUsage `json:"usage"`
	}
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	return v.Usage
}

// streamInvoke posts body to the endpoint asking for server-sent events and
// copies them to the client as they arrive, flushing after every event. The
// usage of the final chunk goes into the audit event.
func (a *App) streamInvoke(ctx context.Context, w http.ResponseWriter, r *http.Request, l *session.Loaded, token string, body []byte, inv invocation) {
	target := strings.TrimRight(a.cfg.DatabricksHost, "/") + "/serving-endpoints/" + url.PathEscape(a.cfg.ServingEndpoint) + "/invocations"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		a.invokeFailed(ctx, w, r, l, inv, err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", "servingapp-webapp/1")
	start := time.Now()
	resp, err := a.httpClient.Do(req)
	if err != nil {
		inv.elapsed = time.Since(start)
		a.invokeFailed(ctx, w, r, l, inv, err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		apiErr := upstreamError(resp, a.clock.Now)
		inv.elapsed = time.Since(start)
		a.invokeFailed(ctx, w, r, l, inv, apiErr)
		return
	}
	inv.servedModel = resp.Header.Get("served-model-name")
	if inv.servedModel != "" {
		w.Header().Set("served-model-name", inv.servedModel)
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "text/event-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var readErr error
	partial := false // the previous read ended inside a long line
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			n, werr := w.Write(line)
			inv.respBytes += int64(n)
			if werr != nil {
				readErr = fmt.Errorf("write to the client: %w", werr)
				break
			}
			if !partial && err == nil {
				if u := sseUsage(line); u != nil {
					inv.usage = u
				}
				if len(bytes.TrimSpace(line)) == 0 {
					_ = rc.Flush()
				}
			}
		}
		partial = errors.Is(err, bufio.ErrBufferFull)
		if partial {
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				readErr = err
			}
			break
		}
	}
	_ = rc.Flush()
	inv.elapsed = time.Since(start)
	inv.status = http.StatusOK
	if readErr != nil {
		inv.code, inv.message = "STREAM_INTERRUPTED", "The stream ended early: "+readErr.Error()
		a.log.Warn("stream interrupted", "request_id", info(r).id, "err", readErr)
	}
	a.recordInvocation(r, l, inv)
}

// sseUsage reads the usage from a "data: {...}" line that has one.
func sseUsage(line []byte) *audit.TokenUsage {
	data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:"))
	if !ok || !bytes.Contains(data, []byte(`"usage"`)) {
		return nil
	}
	return usageOf(bytes.TrimSpace(data))
}

// upstreamError turns a non-200 streaming answer into a *databricks.APIError.
func upstreamError(resp *http.Response, now func() time.Time) *databricks.APIError {
	e := &databricks.APIError{StatusCode: resp.StatusCode}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		ErrorCode json.RawMessage `json:"error_code"`
		Message   string          `json:"message"`
	}
	if json.Unmarshal(raw, &body) == nil {
		var s string
		if json.Unmarshal(body.ErrorCode, &s) == nil {
			e.ErrorCode = s
		} else {
			e.ErrorCode = strings.Trim(string(body.ErrorCode), `"`)
		}
		e.Message = body.Message
	}
	if e.ErrorCode == "" {
		e.ErrorCode = strings.ToUpper(strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "_"))
	}
	if v := resp.Header.Get("Retry-After"); v != "" {
		if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(v); err == nil && t.After(now()) {
			e.RetryAfter = t.Sub(now())
		}
	}
	return e
}

// invokeError is how a failed invocation is shown: HTTP status, error code,
// and a message (key and arguments in the UI catalog).
type invokeError struct {
	status     int
	code       string
	key        string
	args       []any
	retryAfter time.Duration
	// quotesEndpoint says args hold the endpoint's own words, which may
	// quote the user's input: the user is shown them, the audit trail and
	// the logs are not (they carry the prompt's hash, never its text).
	quotesEndpoint bool
}

// english is what the user is told, in English (the API's language).
func (e invokeError) english() string { return message("en", e.key, e.args...) }

// audited is what the audit event and the log say: english without the
// endpoint's own words, which become its error code.
func (e invokeError) audited() string {
	if e.quotesEndpoint {
		return message("en", e.key, "error code "+e.code)
	}
	return e.english()
}

// loggable describes err for the log: a Databricks error by its status and
// code only, since its message may quote the request.
func loggable(err error) string {
	var apiErr *databricks.APIError
	if errors.As(err, &apiErr) {
		return apiErrorSummary(err)
	}
	return err.Error()
}

// classify maps a serving endpoint failure to what the user is told.
func (a *App) classify(ctx context.Context, err error) invokeError {
	ep := a.cfg.ServingEndpoint
	var apiErr *databricks.APIError
	errors.As(err, &apiErr)
	retryAfter := time.Duration(0)
	if apiErr != nil {
		retryAfter = apiErr.RetryAfter
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (ctx.Err() != nil && apiErr == nil):
		return invokeError{status: http.StatusGatewayTimeout, code: "DEADLINE_EXCEEDED", key: "err_timeout"}
	case databricks.IsPermissionDenied(err):
		return invokeError{status: http.StatusForbidden, code: "PERMISSION_DENIED", key: "err_permission", args: []any{ep}}
	case databricks.IsTooManyRequests(err):
		return invokeError{status: http.StatusTooManyRequests, code: "REQUEST_LIMIT_EXCEEDED", key: "err_rate", retryAfter: max(retryAfter, time.Second)}
	case databricks.IsNotFound(err):
		return invokeError{status: http.StatusBadGateway, code: "ENDPOINT_NOT_FOUND", key: "err_endpoint_missing", args: []any{ep}}
	case databricks.IsUnauthenticated(err):
		return invokeError{status: http.StatusUnauthorized, code: "UNAUTHENTICATED", key: "err_session_ended"}
	case databricks.IsBadRequest(err) && apiErr != nil:
		return invokeError{status: http.StatusBadRequest, code: apiErr.ErrorCode, key: "err_bad_request", args: []any{truncate(apiErr.Message, 500)}, quotesEndpoint: true}
	case databricks.IsUnavailable(err):
		return invokeError{status: http.StatusServiceUnavailable, code: "TEMPORARILY_UNAVAILABLE", key: "err_unavailable", retryAfter: retryAfter}
	case errors.Is(err, databricks.ErrDeadlineExceeded):
		return invokeError{status: http.StatusGatewayTimeout, code: "DEADLINE_EXCEEDED", key: "err_timeout"}
	}
	return invokeError{status: http.StatusBadGateway, code: "UPSTREAM_ERROR", key: "err_upstream"}
}

// apiErrorSummary describes a Databricks failure without request details.
func apiErrorSummary(err error) string {
	var apiErr *databricks.APIError
	if errors.As(err, &apiErr) {
		return fmt.Sprintf("HTTP %d %s", apiErr.StatusCode, apiErr.ErrorCode)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return "request failed"
}
