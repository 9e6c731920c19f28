package oauth_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/controller/local"
	"github.com/servingapp/servingapp/controller/oauth"
	"github.com/servingapp/servingapp/internal/databricks"
)

// stalePatch is an AccountAPI whose first PATCH waits until every writer has
// read the integration and reached its own first PATCH, and returns only once
// all of those PATCHes are done: each writer has written a list merged from
// the same old read, and only the last one's list stands when they verify.
type stalePatch struct {
	oauth.AccountAPI
	first            sync.Once
	arrived, patched *sync.WaitGroup
}

func (s *stalePatch) UpdateCustomAppIntegration(ctx context.Context, id string, req databricks.UpdateCustomAppIntegrationRequest) error {
	var err error
	done := false
	s.first.Do(func() {
		s.arrived.Done()
		s.arrived.Wait()
		err = s.AccountAPI.UpdateCustomAppIntegration(ctx, id, req)
		s.patched.Done()
		s.patched.Wait()
		done = true
	})
	if done {
		return err
	}
	return s.AccountAPI.UpdateCustomAppIntegration(ctx, id, req)
}

// TestTwoControllersRegisteringOnASharedIntegrationAtOnceBothEndUpListed:
// two controllers (two processes, so no lock in common) add their redirect
// URLs to one existing integration at the same moment. Databricks' PATCH
// replaces the list, so one overwrites the other; the registrar's check
// after writing sees its URL gone and merges again.
func TestTwoControllersRegisteringOnASharedIntegrationAtOnceBothEndUpListed(t *testing.T) {
	f := newFixture(t)
	shared := f.adminIntegration(t)
	var arrived, patched sync.WaitGroup
	arrived.Add(2)
	patched.Add(2)
	var wg sync.WaitGroup
	urls := make([]string, 2)
	errs := make([]error, 2)
	for i, id := range []string{"eu-controller", "us-controller"} {
		reg := &oauth.Registrar{
			Account:      &stalePatch{AccountAPI: f.account, arrived: &arrived, patched: &patched},
			Secrets:      &local.Platform{Gateway: &local.Gateway{}, Secrets: &local.Secrets{}},
			Clock:        f.clock,
			ControllerID: id,
			Sleep:        func(context.Context, time.Duration) error { return nil },
		}
		app := testApp("app-"+id, v1.IntegrationExisting, shared.IntegrationID)
		urls[i] = app.OAuth.RedirectURL
		wg.Go(func() { _, errs[i] = reg.Register(context.Background(), app, &recorder{}) })
	}
	wg.Wait()
	in, _ := f.em.Integration(shared.IntegrationID)
	for i, u := range urls {
		if errs[i] != nil {
			t.Fatalf("register %s: %v", u, errs[i])
		}
		if !slices.Contains(in.RedirectURLs, u) {
			t.Errorf("%s lost to the concurrent writer: %v", u, in.RedirectURLs)
		}
	}
	if !slices.Contains(in.RedirectURLs, "https://other.example.com/callback") {
		t.Error("the admin's own redirect URL was lost")
	}
}
