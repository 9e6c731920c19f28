// Command servingctl is the admin's command line for ServingApps: apply, get,
// describe, delete, validate, diff, schema, and dev mode on embedded defaults.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], streams{in: os.Stdin, out: os.Stdout, errOut: os.Stderr}, os.Getenv, time.Now)
	stop()
	os.Exit(code)
}
