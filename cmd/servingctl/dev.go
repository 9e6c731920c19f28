package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
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
			// Ctrl-C while dev is still starting (most likely while it waits
			// for the apps) is a stop like any other, not a failure: whatever
			// step it interrupted, that step's error is its consequence.
			stopped := func(err error) error {
				if ctx.Err() != nil {
					fmt.Fprintln(c.out, "\nstopping…")
					return nil
				}
				return err
			}
			stack, err := devstack.Start(ctx, devstack.Options{DataDir: dataDir, NATSPort: natsPort, GatewayAddr: gateway, Log: log})
			if err != nil {
				return stopped(err)
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
					return stopped(fmt.Errorf("apply %s from %s: %w", s.app.NamespacedName(), s.file, err))
				}
				fmt.Fprintf(c.out, "servingapp %s %s\n", s.app.NamespacedName(), outcomeWord(outcome))
			}
			probe := newGatewayProbe(gateway, stack.GatewayPort)
			firstReady, err := waitReady(ctx, stack.Store, apps, wait, c.now, probe.serves)
			if err != nil {
				return stopped(err)
			}
			all, err := stack.Store.List(ctx, store.ListOptions{})
			if err != nil {
				return stopped(err)
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

// waitReady polls until every app is Ready and served by this run's
// gateway, or the wait is over, and returns when the first one was. Over an
// existing --data-dir the status still says what the previous run saw:
// Ready, with conditions whose transition times need not change when this
// run's controller brings the app back (Ready stays True), so the status
// alone cannot tell a restarted app from a stale one. The gateway can: it
// belongs to this process and routes an app only once this run's controller
// has started its instances. It times the wait and the first app with now,
// the clock dev's start was read from. It returns ctx's error when ctx ends
// first.
func waitReady(ctx context.Context, st *store.Store, apps []*v1.ServingApp, wait time.Duration, now func() time.Time, serves func(context.Context, *v1.ServingApp) bool) (time.Time, error) {
	deadline := now().Add(wait)
	var first time.Time
	ready := make(map[string]bool, len(apps))
	for {
		for _, a := range apps {
			if ready[a.Key()] {
				continue
			}
			got, err := st.Get(ctx, a.Metadata.Namespace, a.Metadata.Name)
			if err == nil && got.Status.Phase == v1.PhaseReady && serves(ctx, got) {
				ready[a.Key()] = true
			}
		}
		t := now()
		if len(ready) > 0 && first.IsZero() {
			first = t
		}
		if len(ready) == len(apps) || t.After(deadline) {
			return first, nil
		}
		select {
		case <-ctx.Done():
			return first, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// gatewayProbe asks the dev gateway for an app's health page, as a browser
// would, but connecting to the gateway whatever the app's host name
// resolves to and through no proxy.
type gatewayProbe struct {
	client *http.Client
	port   int
}

// newGatewayProbe reaches the gateway listening on listen (--gateway) at port.
func newGatewayProbe(listen string, port int) *gatewayProbe {
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	var d net.Dialer
	return &gatewayProbe{client: &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			DisableKeepAlives: true,
		},
		// A redirect (to a login page, say) is an answer from the app.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, port: port}
}

// serves reports whether the gateway serves a at its status URL. The
// gateway answers 404 until this run routed the app, 503 while the route has
// no instance and 502 while its instance does not answer; any other answer
// comes from the app, or is the gateway's 403 for an address off the
// allowlist, which it gives only on a route this run set up after starting
// the app's instances. An app asking for no instance at all is served by
// the 503. The URL must name this gateway's port too: after a restart on
// another port the status keeps the previous run's URL until this run's
// controller writes its own, and the table would print a dead link.
func (p *gatewayProbe) serves(ctx context.Context, a *v1.ServingApp) bool {
	u, err := url.Parse(a.Status.URL)
	if a.Status.URL == "" || err != nil {
		return false
	}
	port := u.Port()
	if port == "" && u.Scheme == "http" {
		port = "80"
	}
	if port != strconv.Itoa(p.port) {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.JoinPath("healthz").String(), nil)
	if err != nil {
		return false
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		return a.Spec.Autoscaling == nil && a.Spec.Replicas != nil && *a.Spec.Replicas == 0
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode >= 500:
		return false
	}
	return true
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
