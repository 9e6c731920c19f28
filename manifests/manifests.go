// Package manifests embeds the example ServingApps and the generated JSON
// Schema, so servingctl dev works from any directory.
package manifests

import "embed"

// Examples holds examples/*.yaml.
//
//go:embed examples/*.yaml
var Examples embed.FS
