package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/servingapp/servingapp/api/store"
	"github.com/servingapp/servingapp/internal/natsconn"
)

// Exit codes, as documented in the README.
const (
	exitOK    = 0
	exitError = 1 // the command failed: unreachable server, invalid objects, not found
	exitUsage = 2 // the command line itself was wrong
)

// DefaultNATSURL is where servingctl looks for the API store unless told otherwise;
// servingctl dev listens there.
const DefaultNATSURL = "nats://127.0.0.1:4222"

type streams struct {
	in     io.Reader
	out    io.Writer
	errOut io.Writer
}

// cli holds what every command shares; tests build one with their own streams,
// environment and clock.
type cli struct {
	streams
	getenv func(string) string
	now    func() time.Time

	// storeOptions lets tests fix the store's clock and uids.
	storeOptions store.Options

	server  string
	creds   string
	ca      string
	timeout time.Duration
}

// usageError marks a wrong command line (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// silentError carries an exit code for output already printed.
type silentError struct{ code int }

func (e silentError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func run(ctx context.Context, args []string, s streams, getenv func(string) string, now func() time.Time) int {
	return (&cli{streams: s, getenv: getenv, now: now}).run(ctx, args)
}

func (c *cli) run(ctx context.Context, args []string) int {
	s := c.streams
	root := c.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var silent silentError
	if errors.As(err, &silent) {
		return silent.code
	}
	fmt.Fprintln(s.errOut, "error:", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(s.errOut, "run 'servingctl --help' for usage")
		return exitUsage
	}
	return exitError
}

// typeUsageErrors makes every way cobra can reject the command line of cmd
// or its subcommands return a usageError, so that exit code 2 never depends
// on the wording of cobra's messages. Flag errors go through the root's flag
// error func; argument checks (cobra.NoArgs, ExactArgs, ...) are wrapped
// here. A parent command's unknown subcommand is cobra's "legacy" check,
// which cannot be wrapped, so parents get their own check instead. (No flag
// is marked required: cobra would report a missing one untyped. Commands
// check their flags themselves and return usagef.)
func typeUsageErrors(cmd *cobra.Command) {
	if cmd.HasSubCommands() && !cmd.Runnable() {
		// cobra checks no arguments of a command it cannot run (it shows
		// help whatever they are), so make the parent runnable: its
		// arguments are checked, and with none it shows that same help.
		cmd.Args = unknownSubcommand
		cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	} else if check := cmd.Args; check != nil {
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			err := check(cmd, args)
			var ue usageError
			if err == nil || errors.As(err, &ue) {
				return err
			}
			return usageError{err}
		}
	}
	for _, sub := range cmd.Commands() {
		typeUsageErrors(sub)
	}
}

// unknownSubcommand rejects any argument of a parent command: it can only
// be a misspelt subcommand. The message is cobra's own.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default
	}
	if sugg := cmd.SuggestionsFor(args[0]); len(sugg) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(sugg, "\n\t")
	}
	return usageError{errors.New(msg)}
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "servingctl",
		Short: "Manage ServingApps: Databricks-backed web apps on Amazon ECS",
		Long: `servingctl applies, inspects and deletes ServingApp objects in the
servingapp API store (NATS JetStream), and runs the whole product on one
machine with 'servingctl dev'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(c.in)
	root.SetOut(c.out)
	root.SetErr(c.errOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&c.server, "server", "", "NATS URL of the API store (default $SERVINGAPP_NATS_URL or "+DefaultNATSURL+")")
	pf.StringVar(&c.creds, "creds", "", "NATS credentials file (default $SERVINGAPP_NATS_CREDS)")
	pf.StringVar(&c.ca, "ca", "", "PEM file of the CA that signed the NATS server's certificate, for a private CA (default $SERVINGAPP_NATS_CA; otherwise the system roots)")
	pf.DurationVar(&c.timeout, "request-timeout", 10*time.Second, "how long to wait for the server")
	root.AddCommand(
		c.applyCommand(),
		c.getCommand(),
		c.describeCommand(),
		c.deleteCommand(),
		c.validateCommand(),
		c.diffCommand(),
		c.schemaCommand(),
		c.devCommand(),
		c.auditCommand(),
	)
	// cobra adds these when it executes; add them now so that their
	// argument errors are typed too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	typeUsageErrors(root)
	return root
}

func (c *cli) serverURL() string {
	switch {
	case c.server != "":
		return c.server
	case c.getenv("SERVINGAPP_NATS_URL") != "":
		return c.getenv("SERVINGAPP_NATS_URL")
	}
	return DefaultNATSURL
}

// conn is an open connection to the API store.
type conn struct {
	store *store.Store
	js    jetstream.JetStream
	close func()
}

// natsAuth returns the connection options for the credentials (--creds or
// $SERVINGAPP_NATS_CREDS) and private CA (--ca or $SERVINGAPP_NATS_CA) every
// command that talks to NATS uses.
func (c *cli) natsAuth() ([]nats.Option, error) {
	creds, ca := c.creds, c.ca
	if creds == "" {
		creds = c.getenv("SERVINGAPP_NATS_CREDS")
	}
	if ca == "" {
		ca = c.getenv("SERVINGAPP_NATS_CA")
	}
	return natsconn.Options(creds, ca)
}

// dialJetStream connects to url as client name, with natsAuth's options, and
// opens JetStream: the one way every command reaches NATS. A failed
// connection is one line naming what it tried to reach and what to do.
func (c *cli) dialJetStream(url, name, what string, maxReconnects int) (*nats.Conn, jetstream.JetStream, error) {
	auth, err := c.natsAuth()
	if err != nil {
		return nil, nil, err
	}
	opts := []nats.Option{nats.Name(name), nats.Timeout(c.timeout), nats.MaxReconnects(maxReconnects)}
	nc, err := nats.Connect(url, append(opts, auth...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach %s at %s: %v (%s)", what, url, err, connectHint(err))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("open JetStream at %s: %w", url, err)
	}
	return nc, js, nil
}

// connect opens the API store. An unreachable server is one clear line.
func (c *cli) connect(ctx context.Context) (*conn, error) {
	url := c.serverURL()
	nc, js, err := c.dialJetStream(url, "servingctl", "the servingapp API store", 0)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	so := c.storeOptions
	so.OpenExisting = true // never resize the controller's buckets
	st, err := store.New(sctx, js, so)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("open the API store at %s: %w", url, err)
	}
	return &conn{store: st, js: js, close: nc.Close}, nil
}

// connectHint says what to do about a failed connection.
func connectHint(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return "check the credentials: --creds or $SERVINGAPP_NATS_CREDS"
	case errors.As(err, &unknownCA):
		return "the server's certificate is from a CA this machine does not trust: pass it with --ca or $SERVINGAPP_NATS_CA"
	case errors.As(err, &invalid), errors.As(err, &hostname):
		return "the server's certificate does not fit this address: check --server"
	}
	return "start one with 'servingctl dev', or pass --server"
}

// splitName reads "NAME" or "NS/NAME" with the namespace flag as default.
func splitName(arg, ns string) (string, string) {
	if i := strings.IndexByte(arg, '/'); i >= 0 {
		return arg[:i], arg[i+1:]
	}
	return ns, arg
}
