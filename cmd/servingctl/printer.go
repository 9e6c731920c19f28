package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/servingapp/servingapp/api/audit"

	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// printer renders ServingApps for people and for scripts. Its clock is
// injected so ages are stable in golden tests.
type printer struct {
	now func() time.Time
}

func (p printer) table(w io.Writer, apps []*v1.ServingApp, withNS, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	var head []string
	if withNS {
		head = append(head, "NAMESPACE")
	}
	head = append(head, "NAME", "PHASE", "READY", "URL", "AGE")
	if wide {
		head = append(head, "GENERATION", "ENDPOINT", "ALLOWLIST", "IMAGE")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, a := range apps {
		var row []string
		if withNS {
			row = append(row, a.Metadata.Namespace)
		}
		st := a.Status
		row = append(row, a.Metadata.Name, orDash(string(phaseOf(a))),
			fmt.Sprintf("%d/%d", st.Replicas.Running, desiredOf(a)), orDash(st.URL), p.age(a.Metadata.CreationTimestamp))
		if wide {
			row = append(row,
				fmt.Sprintf("%d/%d", st.ObservedGeneration, a.Metadata.Generation),
				a.Spec.Databricks.ServingEndpoint,
				fmt.Sprintf("%d CIDRs", len(a.Spec.Allowlist)),
				orDefault(a.Spec.Image, "(default)"))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// phaseOf is the phase people should read: Deleting as soon as deletion is
// asked, Pending before the controller has seen the object.
func phaseOf(a *v1.ServingApp) v1.Phase {
	switch {
	case a.Metadata.DeletionTimestamp != nil:
		return v1.PhaseDeleting
	case a.Status.Phase == "":
		return v1.PhasePending
	}
	return a.Status.Phase
}

func desiredOf(a *v1.ServingApp) int32 {
	if a.Status.Replicas.Desired != 0 || a.Spec.Replicas == nil {
		return a.Status.Replicas.Desired
	}
	return *a.Spec.Replicas
}

func (p printer) yaml(w io.Writer, apps []*v1.ServingApp, single bool) error {
	for i, a := range apps {
		b, err := yaml.Marshal(a)
		if err != nil {
			return err
		}
		if i > 0 || !single && len(apps) > 1 {
			fmt.Fprintln(w, "---")
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func (p printer) json(w io.Writer, apps []*v1.ServingApp, single bool) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if single && len(apps) == 1 {
		return enc.Encode(apps[0])
	}
	if apps == nil {
		apps = []*v1.ServingApp{}
	}
	return enc.Encode(map[string]any{"apiVersion": v1.APIVersion, "kind": "ServingAppList", "items": apps})
}

func (p printer) describe(w io.Writer, a *v1.ServingApp) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	m, s, st := a.Metadata, a.Spec, a.Status
	line := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	line("Name:", m.Name)
	line("Namespace:", m.Namespace)
	line("Labels:", joinMap(m.Labels))
	if len(m.Annotations) > 0 {
		line("Annotations:", joinMap(m.Annotations))
	}
	line("UID:", m.UID)
	line("Generation:", fmt.Sprintf("%d (observed %d)", m.Generation, st.ObservedGeneration))
	if m.CreationTimestamp != nil {
		line("Created:", fmt.Sprintf("%s (%s ago)", m.CreationTimestamp.UTC().Format(time.RFC3339), p.age(m.CreationTimestamp)))
	}
	if m.DeletionTimestamp != nil {
		line("Deleting since:", fmt.Sprintf("%s, waiting for finalizers %s", m.DeletionTimestamp.UTC().Format(time.RFC3339), strings.Join(m.Finalizers, ", ")))
	}
	line("Phase:", string(phaseOf(a)))
	line("URL:", orDash(st.URL))
	if st.Message != "" {
		line("Message:", st.Message)
	}
	fmt.Fprintln(tw, "Spec:")
	line("  Image:", orDefault(s.Image, "(controller default)"))
	if s.Autoscaling != nil {
		line("  Replicas:", fmt.Sprintf("autoscaled %d–%d, %d invocations/replica/min", s.Autoscaling.MinReplicas, s.Autoscaling.MaxReplicas, s.Autoscaling.TargetInvocationsPerReplicaPerMinute))
	} else if s.Replicas != nil {
		line("  Replicas:", fmt.Sprint(*s.Replicas))
	}
	line("  Resources:", fmt.Sprintf("cpu %d, memory %d MiB", s.Resources.CPU, s.Resources.Memory))
	line("  Route:", orDefault(s.Route.Host, "(derived host)")+s.Route.PathPrefix)
	line("  Allowlist:", strings.Join(s.Allowlist, ", "))
	line("  Databricks:", s.Databricks.Host)
	line("  Endpoint:", s.Databricks.ServingEndpoint)
	oauth := string(s.Databricks.OAuth.Integration)
	if s.Databricks.OAuth.IntegrationID != "" {
		oauth += " " + s.Databricks.OAuth.IntegrationID
	}
	line("  OAuth:", oauth+", scopes "+strings.Join(s.Databricks.OAuth.Scopes, " "))
	if s.Identity != nil && len(s.Identity.AllowedEmailDomains) > 0 {
		line("  Email domains:", strings.Join(s.Identity.AllowedEmailDomains, ", "))
	}
	line("  Session TTL:", s.Session.TTL.String())
	if len(s.Env) > 0 {
		line("  Env:", joinMap(s.Env))
	}
	if len(s.Secrets) > 0 {
		keys := slices.Sorted(maps.Keys(s.Secrets))
		line("  Secrets:", strings.Join(keys, ", "))
	}
	line("  Deletion policy:", string(s.DeletionPolicy))
	line("Replicas:", fmt.Sprintf("desired %d, running %d, pending %d", st.Replicas.Desired, st.Replicas.Running, st.Replicas.Pending))
	r := st.Resources
	if r.TaskDefinitionARN+r.ServiceARN+r.TargetGroupARN+r.OAuthIntegrationID != "" || len(r.RuleARNs)+len(r.SecretARNs) > 0 {
		fmt.Fprintln(tw, "Resources:")
		optLine(line, "  Task definition:", r.TaskDefinitionARN)
		optLine(line, "  Service:", r.ServiceARN)
		optLine(line, "  Target group:", r.TargetGroupARN)
		for _, arn := range r.RuleARNs {
			line("  Listener rule:", arn)
		}
		for _, arn := range r.SecretARNs {
			line("  Secret:", arn)
		}
		optLine(line, "  OAuth integration:", r.OAuthIntegrationID)
	}
	u := st.Usage
	line("Usage (24h):", fmt.Sprintf("logins %d, failed logins %d, invocations %d, errors %d", u.Logins24h, u.FailedLogins24h, u.Invocations24h, u.Errors24h))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Conditions:")
	if len(st.Conditions) == 0 {
		fmt.Fprintln(w, "  (none yet: the controller has not reconciled this object)")
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tAGE\tMESSAGE")
	for _, c := range st.Conditions {
		t := c.LastTransitionTime
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, p.age(&t), c.Message)
	}
	return tw.Flush()
}

func optLine(line func(k, v string), k, v string) {
	if v != "" {
		line(k, v)
	}
}

// age formats like kubectl: 45s, 12m, 5h, 3d.
func (p printer) age(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := p.now().Sub(*t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func joinMap(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string { return orDefault(s, "-") }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// events prints the newest reconcile events, oldest first, as kubectl describe does.
func (p printer) events(w io.Writer, evs []audit.ReconcileEvent, times []time.Time) error {
	fmt.Fprintln(w, "Events:")
	if len(evs) == 0 {
		fmt.Fprintln(w, "  <none>")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tREASON\tAGE\tMESSAGE")
	for i, ev := range evs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", ev.Severity, ev.Reason, p.age(&times[i]), ev.Message)
	}
	return tw.Flush()
}
