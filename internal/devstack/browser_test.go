package devstack_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// chromium finds the browser: $CHROMIUM, or Debian's chromium. The test fails
// rather than skips without it: CI installs it, and a skip would hide the one
// test that proves a real browser can log in.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium not found: install Debian's chromium (apt-get install chromium) or set $CHROMIUM; .ci/run installs it")
	return ""
}

// TestBrowserLogsInAndSummarizes drives real Chromium: the app's home page,
// a text typed before sign-in, the emulator's login page, the summary of
// that text after it, the user card, the summarizer form and its result.
func TestBrowserLogsInAndSummarizes(t *testing.T) {
	exe := chromium(t)
	s := startStack(t)
	ctx := context.Background()
	app := e2eApp("127.0.0.1/32", "::1/128")
	app.Metadata.Name = "browser"
	app.Spec.Route.PathPrefix = "/"
	if err := s.Seed([]*v1.ServingApp{app}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Store.Apply(ctx, app); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "browser app Ready", func() bool { return phase(s, "team", "browser") == v1.PhaseReady })
	got, _ := s.Store.Get(ctx, "team", "browser")
	appURL := got.Status.URL

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		// Dev mode serves apps at *.localhost, which browsers resolve to loopback.
		chromedp.Flag("host-resolver-rules", "MAP *.localhost 127.0.0.1"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// The first Do binds the browser's life to its context: start it on one
	// without a timeout, so that when the flow below times out the browser is
	// still there to take the failure screenshot.
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start Chromium %s: %v", exe, err)
	}
	bctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()

	const text = "The controller turns each ServingApp into an ECS service behind the load balancer. " +
		"End users log in with their Databricks identity through OpenID Connect. " +
		"Every invocation of the serving endpoint is recorded as an audit event on NATS JetStream. " +
		"Security teams read those events to see who called which model and when."
	var early, name, email, summary string
	// A text typed before signing in: the form posts to the app, which keeps
	// the text and sends the browser on through its continue page (CSP
	// form-action 'self' holds the whole redirect chain of a submission) to
	// the emulator's login page; after sign-in the summary is shown.
	err := chromedp.Do(bctx,
		chromedp.Navigate(appURL),
		chromedp.WaitVisible(chromedp.CSS("#login")),
		chromedp.SetValue(chromedp.CSS("#text"), text),
		chromedp.Click(chromedp.CSS("#summarize")),
		chromedp.WaitVisible(chromedp.CSS("#login-alice")),
		chromedp.Click(chromedp.CSS("#login-alice")),
		chromedp.WaitVisible(chromedp.CSS("#summary")),
	)
	if err == nil {
		early, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#summary")))
	}
	// Signed in now: the home page shows the user card, and the form works.
	if err == nil {
		err = chromedp.Do(bctx, chromedp.Navigate(appURL), chromedp.WaitVisible(chromedp.CSS("#user-name")))
	}
	if err == nil {
		name, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#user-name")))
	}
	if err == nil {
		email, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#user-email")))
	}
	if err == nil {
		err = chromedp.Do(bctx,
			chromedp.SetValue(chromedp.CSS("#text"), text),
			chromedp.Click(chromedp.CSS("#summarize")),
			chromedp.WaitVisible(chromedp.CSS("#summary")),
		)
	}
	if err == nil {
		summary, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#summary")))
	}
	if err == nil && (!strings.Contains(name, "Alice") || !strings.Contains(email, "alice@example.com") ||
		len(strings.TrimSpace(summary)) < 20 || strings.TrimSpace(early) != strings.TrimSpace(summary)) {
		err = fmt.Errorf("unexpected page content: name %q, email %q, summary %q, summary of the text typed before sign-in %q", name, email, summary, early)
	}
	if err != nil {
		sctx, scancel := context.WithTimeout(browser, 10*time.Second)
		defer scancel()
		png, serr := chromedp.Run(sctx, chromedp.FullScreenshot(90))
		if serr != nil {
			t.Logf("no failure screenshot: %v", serr)
		} else {
			dir := os.Getenv("SCREENSHOT_DIR")
			if dir == "" {
				dir = os.TempDir()
			}
			p := filepath.Join(dir, "servingapp-browser-failure.jpeg")
			if werr := os.WriteFile(p, png, 0o644); werr == nil {
				t.Logf("screenshot saved to %s", p)
			}
		}
		t.Fatalf("browser flow: %v", err)
	}
	t.Logf("user card: %s <%s>; summary: %.80s…", name, email, summary)
	if dir := os.Getenv("SCREENSHOT_DIR"); dir != "" { // for people who want to look at the page
		if png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "servingapp-summary.png"), png, 0o644)
		}
	}
}
