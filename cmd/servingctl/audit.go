package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/servingapp/servingapp/api/audit"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
)

// auditFilters are the flags tail and export share.
type auditFilters struct {
	apps  []string
	types []string
	user  string
}

func (f *auditFilters) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.apps, "app", nil, "only this app, NAMESPACE/NAME or NAMESPACE/* (repeatable)")
	fl.StringSliceVar(&f.types, "type", nil, "only these event types, e.g. login.failed, or families: login, session, invocation (repeatable)")
	fl.StringVar(&f.user, "user", "", "only events of this user (email address or OpenID subject)")
}

func (c *cli) auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the audit trail: logins and model invocations of every app",
		Long: `audit reads the SERVINGAPP_AUDIT stream without changing it: every read
uses an ephemeral ordered consumer that the server forgets when the command
ends. --since and --until select events by the time the stream stored them;
the times shown are when they happened (docs/audit-events.md).`,
	}
	cmd.AddCommand(c.auditTailCommand(), c.auditExportCommand(), c.auditSchemaCommand())
	return cmd
}

func (c *cli) auditTailCommand() *cobra.Command {
	var (
		f      auditFilters
		since  string
		follow bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print audit events in stream order, then follow new ones with -f",
		Example: `  servingctl audit tail --since 1h
  servingctl audit tail --app analytics/summarizer --type login.failed -f
  servingctl audit tail --user alice@example.com --since 2026-12-01T00:00:00Z -o ocsf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json", "ocsf"); err != nil {
				return err
			}
			q, err := f.query()
			if err != nil {
				return err
			}
			if q.since, err = parseAuditTime(since, "--since", c.now()); err != nil {
				return err
			}
			q.follow = follow
			q.envelopeOnly = output != "table"
			js, closeConn, err := c.connectAudit(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			w := newAuditWriter(c.out, output)
			n, err := readAudit(cmd.Context(), js, q, w.write)
			if ferr := w.flush(); err == nil {
				err = ferr
			}
			if err != nil {
				return err
			}
			if n == 0 && !follow {
				fmt.Fprintln(c.errOut, "No audit events match.")
			}
			return nil
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "1h", "start with events stored this long ago (1h, 2d) or since this time (RFC 3339); all: from the first")
	fl.BoolVarP(&follow, "follow", "f", false, "after the replay, keep printing new events until interrupted")
	fl.StringVarP(&output, "output", "o", "table", "table, json (CloudEvents) or ocsf (the OCSF event alone)")
	return cmd
}

func (c *cli) auditExportCommand() *cobra.Command {
	var (
		f            auditFilters
		since, until string
	)
	cmd := &cobra.Command{
		Use:   "export --since TIME [--until TIME]",
		Short: "Write audit events as OCSF JSON lines, for SIEM import",
		Long: `export writes one OCSF event per line to standard output, in stream order,
for the events the stream stored in [--since, --until). Windows select by
storage time, so consecutive exports ([t0,t1), then [t1,t2), ...) write every
event exactly once, also events a web app delivered late from its outbox.
A summary goes to standard error.`,
		Example: `  servingctl audit export --since 2026-12-02T00:00:00Z --until 2026-12-03T00:00:00Z > audit-2026-12-02.jsonl
  servingctl audit export --since 24h --app analytics/summarizer`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since == "" {
				return usagef("--since is required: a duration such as 24h, a time (RFC 3339), or all")
			}
			now := c.now()
			q, err := f.query()
			if err != nil {
				return err
			}
			if q.since, err = parseAuditTime(since, "--since", now); err != nil {
				return err
			}
			if q.until, err = parseAuditTime(until, "--until", now); err != nil {
				return err
			}
			if q.until.IsZero() {
				q.until = now
			}
			q.envelopeOnly = true
			if !q.since.IsZero() && !q.until.After(q.since) {
				return usagef("--until %s is not after --since %s", q.until.Format(time.RFC3339), q.since.Format(time.RFC3339))
			}
			js, closeConn, err := c.connectAudit(cmd.Context())
			if err != nil {
				return err
			}
			defer closeConn()
			w := newAuditWriter(c.out, "ocsf")
			n, err := readAudit(cmd.Context(), js, q, w.write)
			if ferr := w.flush(); err == nil {
				err = ferr
			}
			if err != nil {
				return err
			}
			from := "the first event"
			if !q.since.IsZero() {
				from = q.since.UTC().Format(time.RFC3339Nano)
			}
			fmt.Fprintf(c.errOut, "exported %d events stored from %s until %s\n", n, from, q.until.UTC().Format(time.RFC3339Nano))
			return nil
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "first storage time, inclusive: a duration ago (24h, 7d), a time (RFC 3339), or all")
	fl.StringVar(&until, "until", "", "last storage time, exclusive: a duration ago or a time (RFC 3339); default now")
	return cmd
}

func (c *cli) auditSchemaCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "schema [TYPE]",
		Short: "Print the JSON Schema of an audit event type, or list the types",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				for _, t := range audit.EventTypes {
					fmt.Fprintf(c.out, "%s\t%s\n", t, audit.SchemaID(t))
				}
				return nil
			}
			t := audit.EventType(args[0])
			if !t.Valid() {
				return usagef("unknown audit event type %q: use one of %s", args[0], auditTypeList())
			}
			b, err := audit.Schema(t)
			if err != nil {
				return err
			}
			_, err = c.out.Write(b)
			return err
		},
	}
}

// connectAudit opens JetStream without the API store: reading the audit
// trail needs no access to the store's buckets.
func (c *cli) connectAudit(ctx context.Context) (jetstream.JetStream, func(), error) {
	url := c.serverURL()
	nc, js, err := c.dialJetStream(url, "servingctl audit", "NATS", -1)
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := js.Stream(sctx, audit.AuditStream); err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, nil, fmt.Errorf("stream %s does not exist at %s: no controller has started there yet", audit.AuditStream, url)
		}
		return nil, nil, fmt.Errorf("open stream %s at %s: %w", audit.AuditStream, url, err)
	}
	return js, nc.Close, nil
}

// query turns the filter flags into subject filters: the server then reads
// only the matching subjects instead of the whole stream.
func (f *auditFilters) query() (auditQuery, error) {
	apps, err := parseAuditApps(f.apps)
	if err != nil {
		return auditQuery{}, err
	}
	types, err := parseAuditTypes(f.types)
	if err != nil {
		return auditQuery{}, err
	}
	if len(apps) == 0 {
		apps = []string{"*.*"}
	}
	if len(types) == 0 {
		types = []string{">"}
	}
	var subjects []string
	for _, a := range apps {
		for _, t := range types {
			subjects = append(subjects, audit.AuditSubjectRoot+"."+a+"."+t)
		}
	}
	if len(subjects) == 1 && subjects[0] == audit.AuditSubjectRoot+".*.*.>" {
		subjects = []string{audit.AuditSubjectRoot + ".>"}
	}
	return auditQuery{subjects: subjects, user: strings.TrimSpace(f.user)}, nil
}

// parseAuditApps reads NAMESPACE/NAME and NAMESPACE/* into subject tokens
// "ns.name" and "ns.*", dropping apps a namespace wildcard already covers
// (JetStream refuses overlapping filters).
func parseAuditApps(apps []string) ([]string, error) {
	wholeNS := map[string]bool{}
	var out []string
	for _, a := range apps {
		ns, name, ok := strings.Cut(a, "/")
		if !ok || !isDNSLabel(ns) || (name != "*" && !isDNSLabel(name)) {
			return nil, usagef("--app %q: want NAMESPACE/NAME or NAMESPACE/*", a)
		}
		if name == "*" {
			wholeNS[ns] = true
		}
	}
	for _, a := range apps {
		ns, name, _ := strings.Cut(a, "/")
		if wholeNS[ns] && name != "*" {
			continue
		}
		tok := ns + "." + name
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out, nil
}

// auditFamilies are the --type values that select several types.
var auditFamilies = []string{"login", "session", "invocation"}

// parseAuditTypes reads event types and families into subject suffixes:
// "login.failed", or "login.>" for the family, dropping types a family
// already covers.
func parseAuditTypes(types []string) ([]string, error) {
	families := map[string]bool{}
	for _, t := range types {
		switch {
		case slices.Contains(auditFamilies, t):
			families[t] = true
		case audit.EventType(t).Valid():
		default:
			return nil, usagef("--type %q: use one of %s, or a family: %s", t, auditTypeList(), strings.Join(auditFamilies, ", "))
		}
	}
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, t := range types {
		family, _, _ := strings.Cut(t, ".")
		switch {
		case families[t]:
			add(t + ".>")
		case families[family]:
		default:
			add(t)
		}
	}
	return out, nil
}

func auditTypeList() string {
	names := make([]string, len(audit.EventTypes))
	for i, t := range audit.EventTypes {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// parseAuditTime reads "" (zero), "all" (zero: from the first event), a
// duration before now ("1h", "2d"), or an RFC 3339 time.
func parseAuditTime(s, flag string, now time.Time) (time.Time, error) {
	switch s {
	case "", "all":
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := v1.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, usagef("%s %q: want a duration such as 1h or 2d, a time such as 2026-12-03T10:00:00Z, or all", flag, s)
	}
	return now.Add(-d), nil
}

// isDNSLabel reports whether s is an RFC 1123 label, as namespaces and
// names are.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1
		if !ok {
			return false
		}
	}
	return true
}
