package webapp

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/app.css
var appCSS []byte

// pages holds one template set per page, each the layout plus its content.
type pages struct {
	byName map[string]*template.Template
}

func parsePages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, name := range []string{"home", "result", "error", "continue"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse page %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// pageUser is the user card.
type pageUser struct {
	Name, Email, ID         string
	ExpiresISO, ExpiresText string
}

// pageData is what every page template sees.
type pageData struct {
	Lang        string
	L           map[string]string
	App         string
	Endpoint    string
	Base        string
	CSRF        string
	LoginURL    string
	User        *pageUser
	Text        string
	Message     string
	Summary     string
	ServedModel string
	Usage       string
	RequestID   string
	// Refresh, when set, is a path of this app the page moves on to at once
	// (a meta refresh: a navigation, not a form submission, and no script).
	Refresh string
}

func (a *App) pageData(r *http.Request) pageData {
	lang := preferredLanguage(r.Header.Get("Accept-Language"))
	return pageData{
		Lang:     lang,
		L:        catalog[lang],
		App:      a.cfg.Namespace + "/" + a.cfg.Name,
		Endpoint: a.cfg.ServingEndpoint,
		Base:     a.base,
		LoginURL: a.base + "/login",
	}
}

// render writes a page. Rendering into a buffer first means a template
// error becomes a clean 500, not half a page.
func (a *App) render(w http.ResponseWriter, r *http.Request, status int, page string, d pageData) {
	var buf bytes.Buffer
	if err := a.pages.byName[page].ExecuteTemplate(&buf, "layout", d); err != nil {
		a.log.Error("render page", "page", page, "request_id", info(r).id, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows the error page with the message msgKey (formatted with args).
func (a *App) renderError(w http.ResponseWriter, r *http.Request, status int, msgKey string, args ...any) {
	a.renderErrorWithLogin(w, r, status, "", msgKey, args...)
}

// renderErrorWithLogin also offers a button to sign in again, going back to returnTo.
func (a *App) renderErrorWithLogin(w http.ResponseWriter, r *http.Request, status int, returnTo, msgKey string, args ...any) {
	d := a.pageData(r)
	d.Message = message(d.Lang, msgKey, args...)
	d.RequestID = info(r).id
	if returnTo == "" {
		d.LoginURL = ""
	} else {
		d.LoginURL = a.base + "/login?return_to=" + url.QueryEscape(returnTo)
	}
	a.render(w, r, status, "error", d)
}

func userCard(lang string, name, email, id string, expires time.Time) *pageUser {
	layout := "2006-01-02 15:04 MST"
	if lang == "ja" {
		layout = "2006年1月2日 15:04 MST"
	}
	return &pageUser{Name: name, Email: email, ID: id, ExpiresISO: expires.UTC().Format(time.RFC3339), ExpiresText: expires.UTC().Format(layout)}
}

// preferredLanguage picks en or ja from Accept-Language (highest q wins,
// earlier entries break ties); English is the default.
func preferredLanguage(header string) string {
	best, bestQ := "en", -1.0
	for _, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(k) == "q" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				q = f
			}
		}
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if (primary == "en" || primary == "ja") && q > bestQ && q > 0 {
			best, bestQ = primary, q
		}
	}
	return best
}

func message(lang, key string, args ...any) string {
	s, ok := catalog[lang][key]
	if !ok {
		s = catalog["en"][key]
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

// catalog holds the UI strings in English and Japanese.
var catalog = map[string]map[string]string{
	"en": {
		"title":                 "Model Serving app",
		"endpoint":              "Serving endpoint",
		"intro":                 "Sign in with your Databricks account to summarize text with this app's serving endpoint. Requests run with your own permissions.",
		"login":                 "Sign in with Databricks",
		"login_again":           "Sign in again",
		"logout":                "Sign out",
		"signed_in":             "Signed in",
		"name":                  "Name",
		"email":                 "Email",
		"user_id":               "User ID",
		"session_expires":       "Session expires",
		"summarize_title":       "Summarize text",
		"text_label":            "Text",
		"summarize":             "Summarize",
		"login_first_hint":      "You will be asked to sign in first; your text is kept and summarized right after.",
		"summary_title":         "Summary",
		"model":                 "Model",
		"tokens":                "Tokens",
		"back":                  "Back",
		"error_title":           "Something went wrong",
		"request_id":            "Request ID",
		"continue_title":        "Signing in",
		"continue_text":         "Your text is kept while you sign in with Databricks; it is summarized right after.",
		"continue":              "Continue to sign-in",
		"err_state":             "The sign-in could not be completed: it did not start in this browser, was already used, or has expired. Please sign in again.",
		"err_access_denied":     "Databricks did not let you sign in (%s).",
		"err_policy":            "The account %s is not allowed to use this app.",
		"err_email_unverified":  "Your identity provider has not verified the email address %s, so this app cannot check it against the allowed domains.",
		"err_id_token":          "Databricks sent a sign-in answer that failed verification. Please sign in again.",
		"err_nonce":             "The sign-in answer does not belong to this sign-in. Please sign in again.",
		"err_exchange":          "The sign-in with Databricks could not be completed. Please try again.",
		"err_exchange_code":     "The sign-in with Databricks could not be completed (%s). Please try again.",
		"err_csrf":              "This form has expired or did not come from this app. Reload the page and try again.",
		"err_permission":        "You do not have permission to query the serving endpoint %q. Ask its owner for the CAN_QUERY permission.",
		"err_rate":              "The serving endpoint is receiving too many requests. Please try again later.",
		"err_unavailable":       "The serving endpoint is temporarily unavailable. Please try again later.",
		"err_timeout":           "The serving endpoint took too long to answer. Please try again later.",
		"err_endpoint_missing":  "The serving endpoint %q does not exist.",
		"err_bad_request":       "The serving endpoint rejected the request: %s",
		"err_upstream":          "The serving endpoint failed to answer. Please try again later.",
		"err_too_large":         "The text is too long (at most %d bytes).",
		"err_empty":             "Enter some text to summarize.",
		"err_bad_form":          "The form could not be read.",
		"err_pending_too_large": "This text is too long to keep while you sign in (at most %d KiB). Sign in first, then summarize it.",
		"err_pending_busy":      "Too many texts are waiting for a sign-in right now. Sign in first, then summarize your text.",
		"err_pending_gone":      "The text you typed before signing in has expired. Please enter it again.",
		"err_not_ready":         "The app is starting. Please try again in a moment.",
		"err_store":             "Sessions are temporarily unavailable. Please try again in a moment.",
		"err_session_ended":     "Your session has ended. Please sign in again.",
		"err_provider":          "Databricks sign-in is temporarily unreachable. Please try again in a moment.",
		"err_not_found":         "There is no such page.",
		"err_internal":          "An internal error occurred.",
	},
	"ja": {
		"title":                 "モデルサービングアプリ",
		"endpoint":              "サービングエンドポイント",
		"intro":                 "Databricks アカウントでサインインすると、このアプリのサービングエンドポイントでテキストを要約できます。リクエストはあなた自身の権限で実行されます。",
		"login":                 "Databricks でサインイン",
		"login_again":           "もう一度サインイン",
		"logout":                "サインアウト",
		"signed_in":             "サインイン中",
		"name":                  "名前",
		"email":                 "メールアドレス",
		"user_id":               "ユーザー ID",
		"session_expires":       "セッションの有効期限",
		"summarize_title":       "テキストを要約",
		"text_label":            "テキスト",
		"summarize":             "要約する",
		"login_first_hint":      "先にサインインを求められます。入力したテキストは保持され、サインイン直後に要約されます。",
		"summary_title":         "要約",
		"model":                 "モデル",
		"tokens":                "トークン",
		"back":                  "戻る",
		"error_title":           "エラーが発生しました",
		"request_id":            "リクエスト ID",
		"continue_title":        "サインイン",
		"continue_text":         "Databricks でサインインする間、入力したテキストは保持され、サインイン直後に要約されます。",
		"continue":              "サインインへ進む",
		"err_state":             "サインインを完了できませんでした。このブラウザで開始されていないか、使用済みか、期限切れです。もう一度サインインしてください。",
		"err_access_denied":     "Databricks でサインインが許可されませんでした（%s）。",
		"err_policy":            "アカウント %s はこのアプリを利用できません。",
		"err_email_unverified":  "ID プロバイダーがメールアドレス %s を確認していないため、このアプリは許可されたドメインかどうかを確認できません。",
		"err_id_token":          "Databricks からのサインイン応答を検証できませんでした。もう一度サインインしてください。",
		"err_nonce":             "サインイン応答がこのサインインのものではありません。もう一度サインインしてください。",
		"err_exchange":          "Databricks でのサインインを完了できませんでした。もう一度お試しください。",
		"err_exchange_code":     "Databricks でのサインインを完了できませんでした（%s）。もう一度お試しください。",
		"err_csrf":              "このフォームは期限切れか、このアプリから送信されたものではありません。ページを再読み込みしてもう一度お試しください。",
		"err_permission":        "サービングエンドポイント %q をクエリする権限がありません。所有者に CAN_QUERY 権限を依頼してください。",
		"err_rate":              "サービングエンドポイントへのリクエストが多すぎます。しばらくしてからもう一度お試しください。",
		"err_unavailable":       "サービングエンドポイントは一時的に利用できません。しばらくしてからもう一度お試しください。",
		"err_timeout":           "サービングエンドポイントの応答に時間がかかりすぎました。しばらくしてからもう一度お試しください。",
		"err_endpoint_missing":  "サービングエンドポイント %q は存在しません。",
		"err_bad_request":       "サービングエンドポイントがリクエストを拒否しました: %s",
		"err_upstream":          "サービングエンドポイントが応答できませんでした。しばらくしてからもう一度お試しください。",
		"err_too_large":         "テキストが長すぎます（最大 %d バイト）。",
		"err_empty":             "要約するテキストを入力してください。",
		"err_bad_form":          "フォームを読み取れませんでした。",
		"err_pending_too_large": "このテキストはサインイン中に保持するには長すぎます（最大 %d KiB）。先にサインインしてから要約してください。",
		"err_pending_busy":      "現在、サインインを待っているテキストが多すぎます。先にサインインしてから要約してください。",
		"err_pending_gone":      "サインイン前に入力したテキストの保持期限が切れました。もう一度入力してください。",
		"err_not_ready":         "アプリを起動中です。しばらくしてからもう一度お試しください。",
		"err_store":             "セッションが一時的に利用できません。しばらくしてからもう一度お試しください。",
		"err_session_ended":     "セッションが終了しました。もう一度サインインしてください。",
		"err_provider":          "Databricks のサインインに一時的に接続できません。しばらくしてからもう一度お試しください。",
		"err_not_found":         "ページが見つかりません。",
		"err_internal":          "内部エラーが発生しました。",
	},
}
