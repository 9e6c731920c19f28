package emulator

import (
	"html/template"
	"net/http"
	"strings"
)

const pagesHTML = `
{{define "style"}}<style>
body{font-family:system-ui,sans-serif;background:#f5f5f5;margin:0;display:flex;justify-content:center}
main{background:#fff;margin-top:4rem;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px #0002;min-width:22rem}
h1{font-size:1.3rem;margin-top:0}
button{display:block;width:100%;margin:.5rem 0;padding:.7rem;font-size:1rem;border:1px solid #ccc;border-radius:6px;background:#fafafa;cursor:pointer;text-align:left}
button:hover{background:#eef}
.err{color:#b00020}
small{color:#666}
</style>{{end}}

{{define "login"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Databricks emulator</title>{{template "style"}}</head>
<body><main>
<h1>Sign in to {{.ClientName}}</h1>
<p><small>Databricks emulator: choose a dev user.</small></p>
{{if .Error}}<p id="login-error" class="err" role="alert">{{.Error}}</p>{{end}}
<form id="login-form" method="post" action="{{.Action}}">
{{range .Users}}<button type="submit" id="{{.ButtonID}}" name="user" value="{{.Email}}">{{.DisplayName}} <small>&lt;{{.Email}}&gt;</small></button>
{{end}}</form>
</main></body></html>
{{end}}

{{define "error"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in error - Databricks emulator</title>{{template "style"}}</head>
<body><main>
<h1>Sign-in error</h1>
<p>The application sent an invalid sign-in request; you were not redirected back to it.</p>
<p>Error: <code id="oauth-error">{{.Code}}</code></p>
<p id="oauth-error-description" class="err">{{.Description}}</p>
</main></body></html>
{{end}}
`

func parsePages() (*template.Template, error) {
	return template.New("pages").Parse(pagesHTML)
}

type loginUser struct {
	Email, DisplayName, ButtonID string
}

type loginPage struct {
	ClientName string
	Action     string
	Error      string
	Users      []loginUser
}

// LoginButtonID returns the id attribute of the login page button that signs
// in the user with email, e.g. "login-alice" for alice@example.com.
func LoginButtonID(email string) string {
	local, _, _ := strings.Cut(strings.ToLower(email), "@")
	var b strings.Builder
	b.WriteString("login-")
	for _, r := range local {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

func (e *Emulator) renderLogin(w http.ResponseWriter, status int, page loginPage) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := e.pages.ExecuteTemplate(w, "login", page); err != nil {
		e.log.Error("render emulator login page", "err", err)
	}
}

// renderAuthorizeError shows an error page instead of redirecting, as
// required when the client or redirect URI cannot be trusted.
func (e *Emulator) renderAuthorizeError(w http.ResponseWriter, code, description string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	if err := e.pages.ExecuteTemplate(w, "error", map[string]string{"Code": code, "Description": description}); err != nil {
		e.log.Error("render emulator error page", "err", err)
	}
}
