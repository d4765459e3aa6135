// Package kgatewaymigration embeds a kgateway 2.1 waypoint user's manifests
// (docs/migrating-from-kgateway.md), so the tests apply the same files.
package kgatewaymigration

import "embed"

// Manifests holds the manifests, by file name.
//
//go:embed *.yaml
var Manifests embed.FS
