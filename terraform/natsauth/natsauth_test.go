package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/zclconf/go-cty/cty"

	"github.com/servingapp/servingapp/api/audit"
	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/natstest"
)

func TestNewBundleIsCompleteAndChecks(t *testing.T) {
	b, err := NewBundle()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(); err != nil {
		t.Fatalf("new bundle fails its own check: %v", err)
	}
	for _, role := range Roles() {
		if !strings.Contains(b.Users[role].Creds, "BEGIN NATS USER JWT") || !strings.Contains(b.Users[role].Creds, "BEGIN USER NKEY SEED") {
			t.Errorf("%s creds are not a .creds file:\n%s", role, b.Users[role].Creds)
		}
	}
}

func TestRerunKeepsEveryKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nats-auth.json")
	var out strings.Builder
	if err := run([]string{"-bundle", path}, &out); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("bundle mode %v, want 0600: it holds seeds", fi.Mode().Perm())
	}
	out.Reset()
	if err := run([]string{"-bundle", path}, &out); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(path)
	if string(first) != string(second) || !strings.HasPrefix(out.String(), "unchanged") {
		t.Fatalf("a rerun changed the bundle (%q)", out.String())
	}
}

func TestChangedPermissionsRotateOnlyThatRole(t *testing.T) {
	b, err := NewBundle()
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for role, u := range b.Users {
		before[role] = u.PublicKey
	}
	b.Users[RoleWebapp].PermissionsDigest = "stale"
	changed, err := b.Reconcile(time.Now())
	if err != nil || !changed {
		t.Fatalf("Reconcile = %v, %v; want a change", changed, err)
	}
	for role, u := range b.Users {
		if rotated := u.PublicKey != before[role]; rotated != (role == RoleWebapp) {
			t.Errorf("%s rotated = %v", role, rotated)
		}
	}
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestRotateRevokesTheOldKey(t *testing.T) {
	b, err := NewBundle()
	if err != nil {
		t.Fatal(err)
	}
	oldCreds := b.Users[RoleAdmin].Creds
	if err := b.Rotate(RoleAdmin, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	c := startCluster(t, b, 3)
	if _, err := c.connect(oldCreds); err == nil {
		t.Fatal("the rotated-out admin creds still connect")
	}
	if _, err := c.connect(b.Users[RoleAdmin].Creds); err != nil {
		t.Fatalf("the new admin creds do not connect: %v", err)
	}
}

// TestRolesOnAThreeNodeCluster starts the JetStream cluster of production —
// three servers configured from terraform/templates/nats.conf.tftpl, TLS on
// clients and routes, operator-mode auth from a new bundle — and checks that
// each role can do its job and nothing it must not.
func TestRolesOnAThreeNodeCluster(t *testing.T) {
	b, err := NewBundle()
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, b, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The controller opens the store, the streams (R3) and its lease bucket,
	// and records a reconcile event.
	ctl := c.js(t, b.Users[RoleController].Creds)
	if _, err := store.New(ctx, ctl, store.Options{Replicas: 3}); err != nil {
		t.Fatalf("controller opens the store: %v", err)
	}
	if err := audit.EnsureStreams(ctx, ctl, audit.StreamOptions{Replicas: 3}); err != nil {
		t.Fatalf("controller ensures the streams: %v", err)
	}
	lease, err := ctl.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "servingapp-leases", Replicas: 3})
	if err != nil {
		t.Fatalf("controller creates the lease bucket: %v", err)
	}
	if _, err := lease.Put(ctx, "controller", []byte(`{"holder":"a"}`)); err != nil {
		t.Fatalf("controller writes its lease: %v", err)
	}
	if _, err := ctl.Publish(ctx, audit.EventsSubjectRoot+".analytics.summarizer", []byte(`{}`)); err != nil {
		t.Fatalf("controller records a reconcile event: %v", err)
	}

	// An admin applies and reads an app with servingctl's store.
	adm := c.js(t, b.Users[RoleAdmin].Creds)
	admStore, err := store.New(ctx, adm, store.Options{Replicas: 3})
	if err != nil {
		t.Fatalf("admin opens the store: %v", err)
	}
	data, err := os.ReadFile("../../manifests/examples/summarizer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	apps, err := v1.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := admStore.Apply(ctx, apps[0]); err != nil {
		t.Fatalf("admin applies an app: %v", err)
	}
	if _, err := admStore.List(ctx, store.ListOptions{}); err != nil {
		t.Fatalf("admin lists apps: %v", err)
	}

	// The controller watches what the admin applied.
	ctlStore, err := store.New(ctx, ctl, store.Options{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	w, err := ctlStore.Watch(ctx, store.ListOptions{})
	if err != nil {
		t.Fatalf("controller watches the store: %v", err)
	}
	select {
	case ev := <-w.Events():
		if ev.Object == nil || ev.Object.Metadata.Name != "summarizer" {
			t.Fatalf("controller's watch saw %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("controller's watch saw nothing")
	}
	w.Stop()

	// A web app publishes audit events and keeps sessions in its bucket.
	web := c.js(t, b.Users[RoleWebapp].Creds)
	if err := audit.EnsureStream(ctx, web, audit.AuditStreamConfig(audit.StreamOptions{Replicas: 3})); err != nil {
		t.Fatalf("web app ensures the audit stream: %v", err)
	}
	msg := &nats.Msg{Subject: audit.AuditSubjectRoot + ".analytics.summarizer.login.succeeded", Data: []byte(`{}`), Header: nats.Header{}}
	msg.Header.Set(nats.MsgIdHdr, "evt-1")
	if _, err := web.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("web app publishes an audit event: %v", err)
	}
	sessions, err := web.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "servingapp-sessions_analytics_summarizer", TTL: time.Hour, Replicas: 3})
	if err != nil {
		t.Fatalf("web app opens its session bucket: %v", err)
	}
	rev, err := sessions.Create(ctx, "abc", []byte("sealed"))
	if err != nil {
		t.Fatalf("web app creates a session: %v", err)
	}
	if _, err := sessions.Update(ctx, "abc", []byte("sealed2"), rev); err != nil {
		t.Fatalf("web app updates a session: %v", err)
	}
	if _, err := sessions.Get(ctx, "abc"); err != nil {
		t.Fatalf("web app reads a session: %v", err)
	}
	if err := sessions.Delete(ctx, "abc"); err != nil {
		t.Fatalf("web app deletes a session: %v", err)
	}

	// The admin reads the audit trail through an ephemeral consumer.
	cons, err := adm.OrderedConsumer(ctx, audit.AuditStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("admin opens an audit consumer: %v", err)
	}
	if m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || m.Headers().Get(nats.MsgIdHdr) != "evt-1" {
		t.Fatalf("admin reads the audit trail: %v", err)
	}

	denied := []struct {
		who  string
		role string
		do   func(ctx context.Context, js jetstream.JetStream) error
	}{
		{"webapp reads specs", RoleWebapp, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.KeyValue(ctx, "servingapp-specs")
			return err
		}},
		{"webapp reads specs directly", RoleWebapp, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.Conn().RequestWithContext(ctx, "$JS.API.DIRECT.GET.KV_servingapp-specs.$KV.servingapp-specs.analytics.summarizer", nil)
			return err
		}},
		{"webapp opens the store", RoleWebapp, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := store.New(ctx, js, store.Options{Replicas: 3})
			return err
		}},
		{"webapp takes the lease", RoleWebapp, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.Publish(ctx, "$KV.servingapp-leases.controller", []byte(`{"holder":"me"}`))
			return err
		}},
		{"webapp forges a reconcile event", RoleWebapp, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.Publish(ctx, audit.EventsSubjectRoot+".analytics.summarizer", []byte(`{}`))
			return err
		}},
		{"webapp reads the audit trail", RoleWebapp, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.OrderedConsumer(ctx, audit.AuditStream, jetstream.OrderedConsumerConfig{})
			return err
		}},
		{"webapp reconfigures the audit stream", RoleWebapp, func(ctx context.Context, js jetstream.JetStream) error {
			cfg := audit.AuditStreamConfig(audit.StreamOptions{Replicas: 3})
			cfg.DenyDelete, cfg.DenyPurge = false, false
			_, err := js.UpdateStream(ctx, cfg)
			return err
		}},
		{"webapp deletes the audit stream", RoleWebapp, func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, audit.AuditStream)
		}},
		{"admin deletes the audit stream", RoleAdmin, func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, audit.AuditStream)
		}},
		{"admin purges the events stream", RoleAdmin, func(ctx context.Context, js jetstream.JetStream) error {
			s, err := js.Stream(ctx, audit.EventsStream)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		}},
		{"admin forges an audit event", RoleAdmin, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.Publish(ctx, audit.AuditSubjectRoot+".analytics.summarizer.login.succeeded", []byte(`{}`))
			return err
		}},
		{"admin takes the lease", RoleAdmin, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.Publish(ctx, "$KV.servingapp-leases.controller", []byte(`{"holder":"me"}`))
			return err
		}},
		{"controller forges an audit event", RoleController, func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.Publish(ctx, audit.AuditSubjectRoot+".analytics.summarizer.login.succeeded", []byte(`{}`))
			return err
		}},
	}
	t.Run("denied", func(t *testing.T) {
		for _, d := range denied {
			t.Run(strings.ReplaceAll(d.who, " ", "_"), func(t *testing.T) {
				t.Parallel()
				violations := make(chan error, 16)
				nc, err := c.connect(b.Users[d.role].Creds, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
					if errors.Is(err, nats.ErrPermissionViolation) {
						violations <- err
					}
				}))
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				if err := d.do(ctx, js); err == nil {
					t.Fatalf("%s: allowed, want a permissions violation", d.who)
				}
				select {
				case <-violations:
				case <-time.After(3 * time.Second):
					t.Fatalf("%s failed, but not with a permissions violation", d.who)
				}
			})
		}
	})

	// Nothing the denied calls tried took effect.
	if _, err := adm.Stream(ctx, audit.AuditStream); err != nil {
		t.Fatalf("audit stream gone: %v", err)
	}
	info, err := ctl.Stream(ctx, audit.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := info.CachedInfo().Config; !cfg.DenyDelete || !cfg.DenyPurge || cfg.Replicas != 3 {
		t.Fatalf("audit stream config changed: %+v", cfg)
	}
	if e, err := lease.Get(ctx, "controller"); err != nil || string(e.Value()) != `{"holder":"a"}` {
		t.Fatalf("lease changed: %v", err)
	}
}

// cluster is a set of embedded servers configured like production.
type cluster struct {
	urls   []string
	caFile string
	dir    string
}

// startCluster renders the terraform NATS template for n nodes on loopback
// and starts them, waiting until JetStream answers.
func startCluster(t *testing.T, b *Bundle, n int) *cluster {
	t.Helper()
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	caFile := natstest.WritePKI(t, tlsDir)
	clientPorts, routePorts := freePorts(t, n), freePorts(t, n)
	var routes []cty.Value
	for _, p := range routePorts {
		routes = append(routes, cty.StringVal(fmt.Sprintf("127.0.0.1:%d", p)))
	}
	c := &cluster{caFile: caFile, dir: dir}
	for i := range n {
		name := fmt.Sprintf("nats-%d", i)
		conf := renderTemplate(t, map[string]cty.Value{
			"server_name":      cty.StringVal(name),
			"client_port":      cty.NumberIntVal(int64(clientPorts[i])),
			"cluster_port":     cty.NumberIntVal(int64(routePorts[i])),
			"http_port":        cty.NumberIntVal(int64(freePorts(t, 1)[0])),
			"tls_dir":          cty.StringVal(tlsDir),
			"store_dir":        cty.StringVal(filepath.Join(dir, name)),
			"max_memory_store": cty.NumberIntVal(64 << 20),
			"max_file_store":   cty.NumberIntVal(1 << 30),
			"cluster_name":     cty.StringVal("servingapp"),
			"route_user":       cty.StringVal("route"),
			"route_password":   cty.StringVal("route-password-from-random"),
			"routes":           cty.ListVal(routes),
			"operator_jwt":     cty.StringVal(b.Operator.JWT),
			"system_account":   cty.StringVal(b.SystemAccount.PublicKey),
			"accounts": cty.TupleVal([]cty.Value{
				cty.ObjectVal(map[string]cty.Value{"public_key": cty.StringVal(b.SystemAccount.PublicKey), "jwt": cty.StringVal(b.SystemAccount.JWT)}),
				cty.ObjectVal(map[string]cty.Value{"public_key": cty.StringVal(b.Account.PublicKey), "jwt": cty.StringVal(b.Account.JWT)}),
			}),
		})
		path := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("nats-server rejects the rendered config:\n%s\n%v", conf, err)
		}
		opts.NoLog, opts.NoSigs = true, true
		opts.Host = "127.0.0.1"
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("configure %s: %v", name, err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s not ready", name)
		}
		c.urls = append(c.urls, fmt.Sprintf("tls://127.0.0.1:%d", clientPorts[i]))
	}
	// Wait for the JetStream meta group: the first account-info answer.
	deadline := time.Now().Add(60 * time.Second)
	for {
		nc, err := c.connect(b.Users[RoleController].Creds)
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster not ready: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) connect(creds string, extra ...nats.Option) (*nats.Conn, error) {
	f, err := os.CreateTemp(c.dir, "*.creds")
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(creds); err != nil {
		return nil, err
	}
	f.Close()
	opts := []nats.Option{
		nats.UserCredentials(f.Name()), nats.RootCAs(c.caFile),
		nats.MaxReconnects(0), nats.Timeout(5 * time.Second),
		// Denials are asserted where they are expected; keep stderr quiet.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	}
	return nats.Connect(strings.Join(c.urls, ","), append(opts, extra...)...)
}

func (c *cluster) js(t *testing.T, creds string) jetstream.JetStream {
	t.Helper()
	nc, err := c.connect(creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// renderTemplate evaluates the template as terraform's templatefile does.
func renderTemplate(t *testing.T, vars map[string]cty.Value) string {
	t.Helper()
	const path = "../templates/nats.conf.tftpl"
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	expr, diags := hclsyntax.ParseTemplate(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	v, diags := expr.Value(&hcl.EvalContext{Variables: vars})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return v.AsString()
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
