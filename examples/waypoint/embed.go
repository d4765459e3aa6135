// Package waypoint embeds the example manifests so the demo runs from any
// directory.
package waypoint

import "embed"

// Manifests holds the example manifests, by file name.
//
//go:embed *.yaml
var Manifests embed.FS
