package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/servingapp/servingapp/controller/model"
)

// CollectOrphans implements controller.OrphanCollector: it finds resources
// tagged by this controller whose app is not among live (listener rules and
// target groups from the listener snapshot, secrets from the listing, ECS
// services from ListServices and batched DescribeServices) and deletes all
// of such an app's resources, as Delete would, with an OrphanDeleted event
// for each. An app must be found orphaned by OrphanPasses consecutive calls
// first, so an app created while the resync was listing is never mistaken
// for a deleted one. The reads also prime Observe's caches for the resync.
func (p *Platform) CollectOrphans(ctx context.Context, live []model.Ref, rec model.Recorder) error {
	ctl := p.cfg.ControllerID
	alive := make(map[string]bool, len(live))
	var known []string
	for _, r := range live {
		alive[r.String()] = true
		known = append(known, p.names(r).Service)
	}
	p.services.know(known)

	orphans := map[string]model.Ref{}
	found := func(app, uid string) {
		if alive[app] {
			return
		}
		if ref, ok := refOf(app, uid); ok {
			orphans[app] = ref
		}
	}
	if err := p.listener.ensureFresh(ctx); err != nil {
		return fmt.Errorf("collect orphans: %w", err)
	}
	p.listener.mu.Lock()
	if s := p.listener.snap; s != nil {
		for _, r := range s.rules {
			if r.ours(ctl) {
				found(r.Tags[model.TagApp], r.Tags[model.TagUID])
			}
		}
		for _, t := range s.targetGroups {
			if t.ours(ctl) {
				found(t.Tags[model.TagApp], t.Tags[model.TagUID])
			}
		}
	}
	p.listener.mu.Unlock()
	if err := p.secrets.ensureFresh(ctx); err != nil {
		return fmt.Errorf("collect orphans: %w", err)
	}
	for _, e := range p.secrets.all(ctl) {
		if !e.Deleted {
			found(e.Tags[model.TagApp], e.Tags[model.TagUID])
		}
	}
	services, err := p.listOurServices(ctx)
	if err != nil {
		return fmt.Errorf("collect orphans: %w", err)
	}
	if err := p.services.refresh(ctx, services); err != nil {
		return fmt.Errorf("collect orphans: %w", err)
	}
	for _, name := range services {
		svc, ok := p.services.peek(name)
		if !ok || svc == nil || !serviceOurs(svc, ctl) || awssdk.ToString(svc.Status) != statusActive {
			continue
		}
		tags := fromECSTags(svc.Tags)
		found(tags[model.TagApp], tags[model.TagUID])
	}

	p.mu.Lock()
	var due []model.Ref
	for app := range p.orphanSeen {
		if _, still := orphans[app]; !still {
			delete(p.orphanSeen, app)
		}
	}
	for app, ref := range orphans {
		p.orphanSeen[app]++
		if p.orphanSeen[app] >= p.opts.OrphanPasses {
			due = append(due, ref)
		}
	}
	p.mu.Unlock()
	slices.SortFunc(due, func(a, b model.Ref) int { return strings.Compare(a.String(), b.String()) })

	var errs []error
	for _, ref := range due {
		if err := p.collect(ctx, ref, rec); err != nil {
			errs = append(errs, fmt.Errorf("collect resources of deleted app %s: %w", ref, err))
			continue
		}
		p.mu.Lock()
		delete(p.orphanSeen, ref.String())
		p.mu.Unlock()
	}
	return errors.Join(errs...)
}

// listOurServices lists the ACTIVE and DRAINING services of the cluster
// named like this controller's.
func (p *Platform) listOurServices(ctx context.Context) ([]string, error) {
	prefix := servicePrefix(p.cfg.ControllerID)
	var out []string
	pg := ecs.NewListServicesPaginator(p.c.ecs, &ecs.ListServicesInput{Cluster: awssdk.String(p.cfg.Cluster), MaxResults: awssdk.Int32(100)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, classify("list services of cluster "+p.cfg.Cluster, err)
		}
		for _, arn := range page.ServiceArns {
			name := arn[strings.LastIndexByte(arn, '/')+1:]
			if strings.HasPrefix(name, prefix) {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// collect deletes every resource of the deleted app ref.
func (p *Platform) collect(ctx context.Context, ref model.Ref, rec model.Recorder) error {
	app := &model.App{Ref: ref}
	obs, err := p.Observe(ctx, app)
	if err != nil {
		return err
	}
	st := obs.State.(*state)
	return p.remove(ctx, ref, st, func(kind, what string) {
		rec.Event(ctx, "OrphanDeleted", fmt.Sprintf("%s: app %s no longer exists", what, ref))
	})
}
