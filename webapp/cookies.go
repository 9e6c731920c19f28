package webapp

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/servingapp/servingapp/webapp/login"
)

// cookieNames are the app's two cookies. Apps on one host (different path
// prefixes) get different names from a hash of namespace/name, because
// __Host- cookies must have Path=/.
type cookieNames struct {
	session string
	login   string
	secure  bool
}

func newCookieNames(namespace, name string, secure bool) cookieNames {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	prefix := "sa-"
	if secure {
		prefix = "__Host-sa-"
	}
	h := hex.EncodeToString(sum[:4])
	return cookieNames{session: prefix + h, login: prefix + h + "-login", secure: secure}
}

func (a *App) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	http.SetCookie(w, a.cookie(name, value, expires))
}

// cookie is a cookie of the app: host-only, HttpOnly, SameSite=Lax, Secure
// unless in dev mode, and a session cookie when expires is zero.
func (a *App) cookie(name, value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   a.cookies.secure,
		SameSite: http.SameSiteLaxMode,
	}
	if !expires.IsZero() {
		c.Expires = expires
		c.MaxAge = max(1, int(expires.Sub(a.clock.Now())/time.Second))
	}
	return c
}

func (a *App) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, Secure: a.cookies.secure, SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// maxPendingLogins bounds the logins one browser can have in flight (tabs):
// the oldest is forgotten when a new one starts.
const maxPendingLogins = 4

// maxCookieBytes bounds the login cookie's whole Set-Cookie value (name,
// value and attributes): browsers drop larger cookies (RFC 6265 section 6.1
// asks them to keep at least 4096 bytes).
const maxCookieBytes = 4096

// maxReturnTo bounds a return_to path.
const maxReturnTo = 512

// loginState is the content of the login cookie, sealed with the session key.
type loginState struct {
	// CSRF protects forms posted before sign-in.
	CSRF   string         `json:"c,omitempty"`
	Logins []pendingLogin `json:"l,omitempty"`
	// Pending names the request typed before sign-in that waits for the
	// login the continue page starts; PendingExpires is when it is gone
	// (Unix seconds).
	Pending        string `json:"p,omitempty"`
	PendingExpires int64  `json:"pe,omitempty"`
}

// pendingLogin is one started sign-in, waiting for its callback.
type pendingLogin struct {
	login.Request
	ReturnTo  string `json:"r,omitempty"`
	PendingID string `json:"p,omitempty"`
	Expires   int64  `json:"e"`
}

// readLoginState opens the login cookie; a missing or invalid one is empty.
// Expired logins are dropped.
func (a *App) readLoginState(r *http.Request) loginState {
	var st loginState
	c, err := r.Cookie(a.cookies.login)
	if err != nil || c.Value == "" {
		return st
	}
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return st
	}
	plain, err := a.loginSeal.Open(sealed, []byte(a.cookies.login))
	if err != nil || json.Unmarshal(plain, &st) != nil {
		return loginState{}
	}
	now := a.clock.Now().Unix()
	kept := st.Logins[:0]
	for _, l := range st.Logins {
		if l.Expires > now {
			kept = append(kept, l)
		}
	}
	st.Logins = kept
	if st.PendingExpires <= now {
		st.Pending, st.PendingExpires = "", 0
	}
	return st
}

// writeLoginState seals st into the login cookie. The cookie is measured
// as sent: while it exceeds maxCookieBytes the oldest pending logins are
// dropped, and when the newest alone is too big its return_to is (it then
// lands on the home page). Only the encoded size is a safe measure: JSON
// may escape a character of return_to into six bytes, and base64 adds a
// third.
func (a *App) writeLoginState(w http.ResponseWriter, st loginState) error {
	st.Logins = slices.Clone(st.Logins) // never change the caller's logins
	if len(st.Logins) > maxPendingLogins {
		st.Logins = st.Logins[len(st.Logins)-maxPendingLogins:]
	}
	for {
		c, err := a.loginCookie(st)
		if err != nil {
			return err
		}
		if len(c.String()) <= maxCookieBytes {
			http.SetCookie(w, c)
			return nil
		}
		switch {
		case len(st.Logins) > 1:
			st.Logins = st.Logins[1:]
		case len(st.Logins) == 1 && st.Logins[0].ReturnTo != "":
			st.Logins[0].ReturnTo = ""
		default:
			return fmt.Errorf("the login cookie needs %d bytes, more than %d", len(c.String()), maxCookieBytes)
		}
	}
}

// loginCookie seals st into a login cookie.
func (a *App) loginCookie(st loginState) (*http.Cookie, error) {
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	// The cookie is never HTML, so &, < and > need not cost six bytes each.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(st); err != nil {
		return nil, err
	}
	sealed, err := a.loginSeal.Seal(bytes.TrimSuffix(plain.Bytes(), []byte("\n")), []byte(a.cookies.login))
	if err != nil {
		return nil, err
	}
	return a.cookie(a.cookies.login, base64.RawURLEncoding.EncodeToString(sealed), time.Time{}), nil
}

// take removes and returns the login whose state is state.
func (st *loginState) take(state string) (pendingLogin, bool) {
	if state == "" {
		return pendingLogin{}, false
	}
	for i, l := range st.Logins {
		if subtle.ConstantTimeCompare([]byte(l.State), []byte(state)) == 1 {
			st.Logins = append(st.Logins[:i], st.Logins[i+1:]...)
			return l, true
		}
	}
	return pendingLogin{}, false
}

// safeReturnTo returns raw if it is a clean path of this app (under the
// path prefix, no scheme, host, backslash, dot segments, control characters,
// invalid UTF-8 or fragment), and "" otherwise. The query is kept.
func (a *App) safeReturnTo(raw string) string {
	if raw == "" || len(raw) > maxReturnTo || !strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "//") {
		return ""
	}
	if !utf8.ValidString(raw) {
		return "" // it would not survive the login cookie's JSON unchanged
	}
	for _, c := range raw {
		if c < 0x20 || c == 0x7f || c == '\\' || c == '#' {
			return ""
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return ""
	}
	p := u.Path
	if strings.ContainsAny(p, "\\") || strings.HasPrefix(p, "//") {
		return ""
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if clean != p {
		return ""
	}
	if a.base != "" && p != a.base && !strings.HasPrefix(p, a.base+"/") {
		return ""
	}
	// The raw form must not hide anything the parsed path does not show
	// (for example %2F%2F or an encoded backslash).
	if dec, err := url.PathUnescape(u.EscapedPath()); err != nil || dec != p || strings.Contains(u.EscapedPath(), "%5C") || strings.Contains(u.EscapedPath(), "%5c") || strings.Contains(u.EscapedPath(), "%2F") || strings.Contains(u.EscapedPath(), "%2f") {
		return ""
	}
	return raw
}
