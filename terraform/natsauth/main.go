// Command natsauth creates and keeps the NATS operator, accounts and per-role
// user credentials (controller, webapp, admin) of a servingapp installation in
// one JSON bundle, which terraform/nats.tf renders into the NATS servers'
// configuration and Secrets Manager. deploy.sh runs it before terraform.
//
//	go run ./terraform/natsauth [-bundle terraform/nats-auth.json] [-rotate ROLE]
//
// Without the file it creates a new bundle. With it, it keeps every key and
// only issues what is missing, or rotates a role whose permissions changed
// (new key, old key revoked), so reruns are no-ops. -rotate ROLE rotates one
// role on demand. The bundle holds secrets: it is written with mode 0600 and
// must not be committed (terraform/.gitignore, .dockerignore).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "natsauth:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("natsauth", flag.ContinueOnError)
	path := fl.String("bundle", "terraform/nats-auth.json", "bundle file to create or update")
	rotate := fl.String("rotate", "", "rotate this role's key (admin, controller or webapp)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	b, err := Load(*path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if *rotate != "" {
			return fmt.Errorf("-rotate %s: %s does not exist", *rotate, *path)
		}
		if b, err = NewBundle(); err != nil {
			return err
		}
		if err := Save(*path, b); err != nil {
			return err
		}
		fmt.Fprintf(out, "created %s: operator %s, account %s\n", *path, b.Operator.PublicKey, b.Account.PublicKey)
		return nil
	case err != nil:
		return err
	}
	changed, err := b.Reconcile(time.Now())
	if err != nil {
		return err
	}
	if *rotate != "" {
		if err := b.Rotate(*rotate, time.Now()); err != nil {
			return err
		}
		changed = true
	}
	if err := b.Check(); err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	if !changed {
		fmt.Fprintf(out, "unchanged %s\n", *path)
		return nil
	}
	if err := Save(*path, b); err != nil {
		return err
	}
	fmt.Fprintf(out, "updated %s (run terraform apply to roll it out)\n", *path)
	return nil
}

// Load reads and checks a bundle file.
func Load(path string) (*Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read NATS auth bundle: %w", err)
	}
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("decode NATS auth bundle %s: %w", path, err)
	}
	if err := b.Check(); err != nil {
		return nil, fmt.Errorf("NATS auth bundle %s: %w", path, err)
	}
	return &b, nil
}

// Save writes b to path with mode 0600, atomically.
func Save(path string, b *Bundle) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return fmt.Errorf("encode NATS auth bundle: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nats-auth-*.json")
	if err != nil {
		return fmt.Errorf("write NATS auth bundle: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write NATS auth bundle: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write NATS auth bundle: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write NATS auth bundle: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write NATS auth bundle: %w", err)
	}
	return nil
}
