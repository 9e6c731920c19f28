package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/devstack"
	"github.com/servingapp/servingapp/manifests"
)

func (c *cli) devCommand() *cobra.Command {
	var (
		dataDir  string
		natsPort int
		gateway  string
		files    []string
		verbose  bool
		wait     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run servingapp on this machine with embedded defaults",
		Long: `dev runs the whole product in one process: an embedded NATS server with
JetStream (data in --data-dir, kept across restarts), a Databricks emulator
(OIDC login page, serving endpoints, account API), the controller on the local
platform, and a gateway that serves every app at http://<name>.<namespace>.localhost.
It applies the example ServingApps (or -f), prints each app's URL and the dev
logins, and serves until Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := c.now()
			srcs, err := c.devManifests(files)
			if err != nil {
				return err
			}
			log := slog.New(slog.DiscardHandler)
			if verbose {
				log = slog.New(slog.NewJSONHandler(c.errOut, nil))
			}
			ctx := cmd.Context()
			stack, err := devstack.Start(ctx, devstack.Options{DataDir: dataDir, NATSPort: natsPort, GatewayAddr: gateway, Log: log})
			if err != nil {
				return err
			}
			defer stack.Close()
			apps := make([]*v1.ServingApp, len(srcs))
			for i, s := range srcs {
				apps[i] = s.app
			}
			if err := stack.Seed(apps); err != nil {
				return err
			}
			for _, s := range srcs {
				_, outcome, err := stack.Store.Apply(ctx, s.app)
				if err != nil {
					return fmt.Errorf("apply %s from %s: %w", s.app.NamespacedName(), s.file, err)
				}
				fmt.Fprintf(c.out, "servingapp %s %s\n", s.app.NamespacedName(), outcomeWord(outcome))
			}
			firstReady, err := waitReady(ctx, stack.Store, apps, wait)
			if err != nil {
				return err
			}
			all, err := stack.Store.List(ctx, store.ListOptions{})
			if err != nil {
				return err
			}
			if len(files) == 0 {
				fmt.Fprintln(c.out, "(dev mode added 127.0.0.1/32 and ::1/128 to the built-in examples' allowlists so this machine can reach them)")
			}
			if firstReady.IsZero() {
				fmt.Fprintf(c.out, "\nservingapp dev is running, but no app became Ready within %s: servingctl describe NAME -n NAMESPACE says why.\n\n", wait)
			} else {
				fmt.Fprintf(c.out, "\nservingapp dev is running (first app Ready %s after start).\n\n", firstReady.Sub(start).Round(time.Millisecond))
			}
			c.printDevTable(all, stack)
			<-ctx.Done()
			fmt.Fprintln(c.out, "\nstopping…")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", filepath.Join(".servingapp", "dev"), "where specs, status and audit history are kept across restarts")
	f.IntVar(&natsPort, "nats-port", 4222, "port of the embedded NATS server (servingctl's default --server)")
	f.StringVar(&gateway, "gateway", "127.0.0.1:8080", "address the apps are served on")
	f.StringArrayVarP(&files, "filename", "f", nil, "apply these files instead of the built-in examples")
	f.BoolVarP(&verbose, "verbose", "v", false, "log the controller and the apps as JSON on stderr")
	f.DurationVar(&wait, "wait", 60*time.Second, "how long to wait for the apps to become Ready before printing the table")
	return cmd
}

// waitReady polls until every app is Ready or the wait is over, and returns
// when the first became Ready.
func waitReady(ctx context.Context, st *store.Store, apps []*v1.ServingApp, wait time.Duration) (time.Time, error) {
	deadline := time.Now().Add(wait)
	var first time.Time
	for {
		ready := 0
		for _, a := range apps {
			got, err := st.Get(ctx, a.Metadata.Namespace, a.Metadata.Name)
			if err == nil && got.Status.Phase == v1.PhaseReady {
				ready++
			}
		}
		if ready > 0 && first.IsZero() {
			first = time.Now()
		}
		if ready == len(apps) || time.Now().After(deadline) {
			return first, nil
		}
		select {
		case <-ctx.Done():
			return first, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *cli) printDevTable(apps []*v1.ServingApp, stack *devstack.Stack) {
	tw := tabwriter.NewWriter(c.out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "APP\tPHASE\tURL")
	for _, a := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.NamespacedName(), phaseOf(a), orDash(a.Status.URL))
	}
	_ = tw.Flush()
	var logins []string
	for _, u := range stack.Emulator.Users() {
		logins = append(logins, u.Email)
	}
	slices.Sort(logins)
	fmt.Fprintf(c.out, "\nDev logins (click one on the login page): %s\n", strings.Join(logins, ", "))
	fmt.Fprintf(c.out, "Databricks emulator: %s   API store: %s\n", stack.Emulator.URL, stack.NATSURL)
	fmt.Fprintf(c.out, "\nIn another terminal:\n  go run ./cmd/servingctl get -A\n  go run ./cmd/servingctl describe summarizer -n analytics\n  go run ./cmd/servingctl audit tail --follow\nPress Ctrl-C to stop.\n")
}

// devManifests reads -f when given, else the examples built into the binary.
func (c *cli) devManifests(files []string) ([]source, error) {
	if len(files) > 0 {
		return readManifests(files, c.in)
	}
	var out []source
	err := fs.WalkDir(manifests.Examples, "examples", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(manifests.Examples, p)
		if err != nil {
			return err
		}
		apps, err := v1.Load(data)
		if err != nil {
			return fmt.Errorf("built-in example %s: %w", p, err)
		}
		for _, a := range apps {
			// The examples admit office and VPN ranges; on a laptop the
			// browser comes from loopback, so let it in (and say so).
			for _, lo := range []string{"127.0.0.1/32", "::1/128"} {
				if !slices.Contains(a.Spec.Allowlist, lo) && len(a.Spec.Allowlist) < v1.MaxAllowlist {
					a.Spec.Allowlist = append(a.Spec.Allowlist, lo)
				}
			}
			out = append(out, source{app: a, file: path.Join("manifests", p)})
		}
		return nil
	})
	return out, err
}
