package main

import (
	"fmt"
	"io/fs"
	"path"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/servingapp/servingapp/api/store"
	v1 "github.com/servingapp/servingapp/api/v1alpha1"
	"github.com/servingapp/servingapp/internal/natsembed"
	"github.com/servingapp/servingapp/manifests"
)

func (c *cli) devCommand() *cobra.Command {
	var (
		dataDir  string
		natsPort int
		files    []string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run servingapp on this machine with embedded defaults",
		Long: `dev starts an embedded NATS server with JetStream (data in --data-dir),
applies the example ServingApps (or -f), and serves until Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srcs, err := c.devManifests(files)
			if err != nil {
				return err
			}
			ns, err := natsembed.Start(natsembed.Options{Port: natsPort, StoreDir: filepath.Join(dataDir, "nats")})
			if err != nil {
				return err
			}
			defer ns.Shutdown()
			nc, err := nats.Connect(ns.URL(), nats.Name("servingctl-dev"))
			if err != nil {
				return fmt.Errorf("connect to embedded NATS: %w", err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			st, err := store.New(cmd.Context(), js, store.Options{})
			if err != nil {
				return fmt.Errorf("open the API store: %w", err)
			}
			for _, s := range srcs {
				_, outcome, err := st.Apply(cmd.Context(), s.app)
				if err != nil {
					return fmt.Errorf("apply %s from %s: %w", s.app.NamespacedName(), s.file, err)
				}
				fmt.Fprintf(c.out, "servingapp %s %s\n", s.app.NamespacedName(), outcomeWord(outcome))
			}
			apps, err := st.List(cmd.Context(), store.ListOptions{})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "\nservingapp dev is running. API store: %s (data in %s)\n\n", ns.URL(), dataDir)
			if err := (printer{now: c.now}).table(c.out, apps, true, false); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "\nTry: servingctl get -A    servingctl describe summarizer -n analytics\nPress Ctrl-C to stop.")
			<-cmd.Context().Done()
			fmt.Fprintln(c.out, "\nstopping…")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", filepath.Join(".servingapp", "dev"), "where specs and audit history are kept across restarts")
	f.IntVar(&natsPort, "nats-port", 4222, "port of the embedded NATS server")
	f.StringArrayVarP(&files, "filename", "f", nil, "apply these files instead of the built-in examples")
	return cmd
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
			out = append(out, source{app: a, file: path.Join("manifests", p)})
		}
		return nil
	})
	return out, err
}
