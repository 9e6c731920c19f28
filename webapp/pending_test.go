package webapp_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/servingapp/servingapp/webapp"
	"github.com/servingapp/servingapp/webapp/session"
)

// postBeforeSignIn posts text to the summarizer form from a browser that
// is not signed in, without following the answer's redirect.
func postBeforeSignIn(t *testing.T, b *browser, in *instance, text string) (*http.Response, string) {
	t.Helper()
	_, home := b.get(in.at("/"))
	saved := b.client.CheckRedirect
	b.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	defer func() { b.client.CheckRedirect = saved }()
	return b.postForm(in.at("/summarize"), url.Values{"text": {text}, "csrf": {csrfOf(t, home)}})
}

func TestRequestsTypedBeforeSignInAreBounded(t *testing.T) {
	store := session.NewMemoryStore(nil)
	h := newHarness(t, options{store: store, config: func(_ int, c *webapp.Config) { c.MaxPendingRequests = 3 }})
	in := h.instances[0]

	t.Run("size", func(t *testing.T) {
		tests := []struct {
			name   string
			text   string
			status int
		}{
			{"32 KiB is kept", strings.Repeat("a", 32<<10), http.StatusSeeOther},
			{"one byte more is refused, and stays in the form", strings.Repeat("a", 32<<10+1), http.StatusRequestEntityTooLarge},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := store.Len()
				resp, page := postBeforeSignIn(t, h.browser(), in, tt.text)
				if resp.StatusCode != tt.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
				}
				if tt.status == http.StatusSeeOther {
					if store.Len() != before+1 {
						t.Fatalf("%d records, want %d", store.Len(), before+1)
					}
					return
				}
				if store.Len() != before || elementText(page, "text") != tt.text || !strings.Contains(elementText(page, "form-error"), "32 KiB") {
					t.Fatalf("refused text: %d records (want %d), form error %q", store.Len(), before, elementText(page, "form-error"))
				}
			})
		}
	})

	h.clock.Advance(11 * time.Minute) // the slots of the size tests expire

	t.Run("one per browser, the newest wins", func(t *testing.T) {
		b := h.browser()
		postBeforeSignIn(t, b, in, "the first text")
		n := store.Len()
		resp, _ := postBeforeSignIn(t, b, in, summaryText)
		if resp.StatusCode != http.StatusSeeOther || store.Len() != n {
			t.Fatalf("second text: %d, %d records (want %d: replaced, not added)", resp.StatusCode, store.Len(), n)
		}
		resp, page := b.get(in.at("/login/continue"))
		resp, page = b.follow(resp, page)
		resp, page = b.chooseUser(resp, page, "alice@example.com")
		if resp.Request.URL.Path != prefix+"/resume" || elementText(page, "summary") == "" {
			t.Fatalf("after sign-in: %s\n%s", resp.Request.URL, page)
		}
	})

	t.Run("per replica, until the oldest expire", func(t *testing.T) {
		// "one per browser" used two of the three slots.
		if resp, _ := postBeforeSignIn(t, h.browser(), in, "third"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("third request: %d", resp.StatusCode)
		}
		resp, page := postBeforeSignIn(t, h.browser(), in, "fourth")
		if resp.StatusCode != http.StatusServiceUnavailable || elementText(page, "text") != "fourth" || !strings.Contains(elementText(page, "form-error"), "Sign in first") {
			t.Fatalf("fourth request: %d, form error %q", resp.StatusCode, elementText(page, "form-error"))
		}
		// Sign-in itself still works.
		if resp, page := h.browser().login(in, "bob@example.com"); elementText(page, "user-email") != "bob@example.com" {
			t.Fatalf("sign-in while the slots are taken: %d", resp.StatusCode)
		}
		h.clock.Advance(webapp.DefaultLoginTTL)
		if resp, _ := postBeforeSignIn(t, h.browser(), in, "later"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("once the oldest expired: %d", resp.StatusCode)
		}
	})

	t.Run("a kept request lives only as long as the login", func(t *testing.T) {
		b := h.browser()
		postBeforeSignIn(t, b, in, "typed, then forgotten")
		h.clock.Advance(webapp.DefaultLoginTTL + time.Second)
		resp, page := b.get(in.at("/login/continue"))
		resp, page = b.follow(resp, page)
		resp, page = b.chooseUser(resp, page, "alice@example.com")
		if resp.Request.URL.Path != prefix+"/" || strings.Contains(page, `id="summary"`) {
			t.Fatalf("an expired request ran: %s", resp.Request.URL)
		}
	})
}

// TestSessionBucketIsBoundedAndKeptRequestsExpireInJetStream: the bucket
// the app creates has a byte bound and per-key TTLs, and a request typed
// before sign-in carries the login's lifetime as its own TTL.
func TestSessionBucketIsBoundedAndKeptRequestsExpireInJetStream(t *testing.T) {
	h := newHarness(t, options{nats: true})
	in := h.instances[0]
	if resp, _ := postBeforeSignIn(t, h.browser(), in, summaryText); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("post: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bucket := session.BucketName(testNamespace, testName)
	stream, err := h.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxBytes != session.DefaultBucketMaxBytes || !info.Config.AllowMsgTTL {
		t.Fatalf("session bucket: MaxBytes %d, AllowMsgTTL %v", info.Config.MaxBytes, info.Config.AllowMsgTTL)
	}
	kv, err := h.js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pending []string
	for k := range keys.Keys() {
		if strings.HasPrefix(k, "p.") {
			pending = append(pending, k)
		}
	}
	if len(pending) != 1 {
		t.Fatalf("%d kept requests in the bucket, want 1", len(pending))
	}
	msg, err := stream.GetLastMsgForSubject(ctx, "$KV."+bucket+"."+pending[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get(jetstream.MsgTTLHeader); got != "10m0s" {
		t.Fatalf("the kept request's TTL is %q, want 10m0s (the login's lifetime)", got)
	}
}

// outageStore is a session store whose Create fails while down is set, as
// a session store that cannot be reached.
type outageStore struct {
	session.Store
	down atomic.Bool
}

func (o *outageStore) Create(ctx context.Context, key string, value []byte, expires time.Time) (uint64, error) {
	if o.down.Load() {
		return 0, errors.New("session store unreachable")
	}
	return o.Store.Create(ctx, key, value, expires)
}

// TestAFailedKeepDoesNotHoldASlot: texts typed before sign-in that the
// session store could not keep (unreachable, or full) do not count against
// the replica's bound, so once the store is back the next text is kept
// rather than turned away until the failed ones' slots would have expired.
func TestAFailedKeepDoesNotHoldASlot(t *testing.T) {
	store := &outageStore{Store: session.NewMemoryStore(nil)}
	h := newHarness(t, options{store: store, config: func(_ int, c *webapp.Config) { c.MaxPendingRequests = 2 }})
	in := h.instances[0]
	store.down.Store(true)
	for i := range 3 {
		if resp, _ := postBeforeSignIn(t, h.browser(), in, "typed while the store is down"); resp.StatusCode == http.StatusSeeOther {
			t.Fatalf("request %d was kept although the store is down", i)
		}
	}
	store.down.Store(false)
	for i := range 2 {
		if resp, _ := postBeforeSignIn(t, h.browser(), in, "typed once the store is back"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("request %d after the store came back: %d, want 303 (kept)", i, resp.StatusCode)
		}
	}
}
