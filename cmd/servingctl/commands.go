package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

func (c *cli) applyCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update ServingApps from YAML or JSON",
		Long: `apply validates every object first and stores none if any is invalid.
Then it creates or updates each one and prints created, configured or unchanged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srcs, err := readManifests(files, c.in)
			if err != nil {
				return err
			}
			conn, err := c.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.close()
			st := conn.store
			failed := 0
			for _, s := range srcs {
				_, outcome, err := st.Apply(cmd.Context(), s.app)
				if err != nil {
					failed++
					fmt.Fprintf(c.errOut, "error: apply %s (%s): %v\n", s.app.NamespacedName(), s.file, err)
					continue
				}
				fmt.Fprintf(c.out, "servingapp %s %s\n", s.app.NamespacedName(), outcomeWord(outcome))
			}
			if failed > 0 {
				return silentError{exitError}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - for stdin (repeatable)")
	return cmd
}

func outcomeWord(o store.Outcome) string {
	switch o {
	case store.Created:
		return "created"
	case store.Configured:
		return "configured"
	default:
		return "unchanged"
	}
}

func (c *cli) getCommand() *cobra.Command {
	var (
		ns, selector, output string
		all                  bool
	)
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List ServingApps, or show one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "table", "wide", "yaml", "json"); err != nil {
				return err
			}
			if all && len(args) == 1 {
				return usagef("a NAME cannot be combined with --all-namespaces")
			}
			conn, err := c.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.close()
			st := conn.store
			var apps []*v1.ServingApp
			if len(args) == 1 {
				n, name := splitName(args[0], ns)
				a, err := st.Get(cmd.Context(), n, name)
				if err != nil {
					return notFoundHint(err, n, name)
				}
				apps = []*v1.ServingApp{a}
			} else {
				listNS := ns
				if all {
					listNS = ""
				}
				apps, err = st.List(cmd.Context(), store.ListOptions{Namespace: listNS, Selector: selector})
				if err != nil {
					return err
				}
			}
			p := printer{now: c.now}
			switch output {
			case "yaml":
				return p.yaml(c.out, apps, len(args) == 1)
			case "json":
				return p.json(c.out, apps, len(args) == 1)
			}
			if len(apps) == 0 {
				if all {
					fmt.Fprintln(c.errOut, "No ServingApps found.")
				} else {
					fmt.Fprintf(c.errOut, "No ServingApps found in namespace %s.\n", ns)
				}
				return nil
			}
			return p.table(c.out, apps, all, output == "wide")
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ns, "namespace", "n", v1.DefaultNamespace, "namespace")
	f.BoolVarP(&all, "all-namespaces", "A", false, "list across all namespaces")
	f.StringVarP(&selector, "selector", "l", "", "label selector, e.g. team=analytics,tier!=internal")
	f.StringVarP(&output, "output", "o", "table", "table, wide, yaml or json")
	return cmd
}

func checkOutput(got string, allowed ...string) error {
	for _, a := range allowed {
		if got == a {
			return nil
		}
	}
	return usagef("unknown output format %q: use one of %v", got, allowed)
}

func notFoundHint(err error, ns, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("servingapp %s/%s not found", ns, name)
	}
	return err
}

func (c *cli) describeCommand() *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a ServingApp's spec summary, status and conditions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := c.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.close()
			st := conn.store
			n, name := splitName(args[0], ns)
			a, err := st.Get(cmd.Context(), n, name)
			if err != nil {
				return notFoundHint(err, n, name)
			}
			p := printer{now: c.now}
			if err := p.describe(c.out, a); err != nil {
				return err
			}
			envs, evs, err := audit.LastReconcileEvents(cmd.Context(), conn.js, n, name, 10)
			if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				// Events explain; they are not essential. Say so and go on.
				fmt.Fprintf(c.errOut, "warning: cannot read events: %v\n", err)
			}
			times := make([]time.Time, len(envs))
			for i, e := range envs {
				times[i] = e.Time
			}
			return p.events(c.out, evs, times)
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", v1.DefaultNamespace, "namespace")
	return cmd
}

func (c *cli) deleteCommand() *cobra.Command {
	var (
		ns    string
		files []string
		wait  bool
		limit time.Duration
	)
	cmd := &cobra.Command{
		Use:   "delete NAME | -f FILE",
		Short: "Delete ServingApps; with --wait, until the controller has cleaned up",
		RunE: func(cmd *cobra.Command, args []string) error {
			var targets [][2]string
			switch {
			case len(args) > 0 && len(files) > 0:
				return usagef("give NAME arguments or -f, not both")
			case len(files) > 0:
				srcs, err := readManifests(files, c.in)
				if err != nil {
					return err
				}
				for _, s := range srcs {
					targets = append(targets, [2]string{s.app.Metadata.Namespace, s.app.Metadata.Name})
				}
			case len(args) > 0:
				for _, a := range args {
					n, name := splitName(a, ns)
					targets = append(targets, [2]string{n, name})
				}
			default:
				return usagef("give a NAME or -f FILE")
			}
			conn, err := c.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.close()
			st := conn.store
			failed := 0
			for _, t := range targets {
				if err := c.deleteOne(cmd.Context(), st, t[0], t[1], wait, limit); err != nil {
					failed++
					fmt.Fprintf(c.errOut, "error: %v\n", err)
				}
			}
			if failed > 0 {
				return silentError{exitError}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ns, "namespace", "n", v1.DefaultNamespace, "namespace")
	f.StringArrayVarP(&files, "filename", "f", nil, "delete the objects named in these files")
	f.BoolVar(&wait, "wait", false, "wait until the object is gone (its finalizers removed)")
	f.DurationVar(&limit, "timeout", 5*time.Minute, "with --wait, give up after this long")
	return cmd
}

func (c *cli) deleteOne(ctx context.Context, st *store.Store, ns, name string, wait bool, limit time.Duration) error {
	if _, err := st.Delete(ctx, ns, name); err != nil {
		return fmt.Errorf("delete %s/%s: %w", ns, name, notFoundHint(err, ns, name))
	}
	if !wait {
		fmt.Fprintf(c.out, "servingapp %s/%s deleted\n", ns, name)
		return nil
	}
	fmt.Fprintf(c.out, "servingapp %s/%s deleting\n", ns, name)
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := st.Get(wctx, ns, name)
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(c.out, "servingapp %s/%s deleted\n", ns, name)
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("servingapp %s/%s still exists after %s: is the controller running? ('servingctl describe %s -n %s' shows what it waits for)", ns, name, limit, name, ns)
		case <-tick.C:
		}
	}
}

func (c *cli) validateCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR|-",
		Short: "Check ServingApp files offline; prints every problem",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			srcs, err := readManifests(files, c.in)
			if err != nil {
				return err
			}
			for _, s := range srcs {
				fmt.Fprintf(c.out, "%s: servingapp %s is valid\n", s.file, s.app.NamespacedName())
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - for stdin (repeatable)")
	return cmd
}

func (c *cli) diffCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "diff -f FILE|DIR|-",
		Short: "Show how the files differ from the stored specs (exit 1 when they do)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srcs, err := readManifests(files, c.in)
			if err != nil {
				return err
			}
			conn, err := c.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.close()
			st := conn.store
			differs := false
			for _, s := range srcs {
				var stored *v1.ServingApp
				cur, err := st.Get(cmd.Context(), s.app.Metadata.Namespace, s.app.Metadata.Name)
				switch {
				case errors.Is(err, store.ErrNotFound):
				case err != nil:
					return err
				default:
					stored = cur
				}
				d, err := specDiff(s.app.NamespacedName(), stored, s.app)
				if err != nil {
					return err
				}
				if d != "" {
					differs = true
					fmt.Fprint(c.out, d)
				}
			}
			if differs {
				return silentError{exitError}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - for stdin (repeatable)")
	return cmd
}

func (c *cli) schemaCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the ServingApp JSON Schema (for editors and CI linters)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b, err := v1.JSONSchema()
			if err != nil {
				return err
			}
			_, err = c.out.Write(b)
			return err
		},
	}
}
