//go:build !unix

package audit

import "os"

// lockFileExclusive does nothing where flock is unavailable: on such systems
// the caller must give every publisher its own outbox directory.
func lockFileExclusive(*os.File) error { return nil }
